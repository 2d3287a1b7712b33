//! The server proper: reads requests line by line, answers them, and shuts down on EOF, signal or
//! simulated crash.

use std::collections::HashMap;
use std::future;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinError, JoinSet};

use crate::config::{Config, EraMode};
use crate::error::RpcError;
use crate::log::Log;
use crate::output::{Outgoing, OutputBehaviour, WriterEnd, write_loop};
use crate::protocol::{
    self, Incoming, LATEST_LEGACY_VERSION, LEGACY_VERSIONS, MODERN_VERSION,
    PROTOCOL_VERSION_META_KEY, SERVER_INFO_META_KEY, SUBSCRIPTION_ID_META_KEY,
};
use crate::tools::{self, ToolCall};

/// How long in-flight requests may still finish after stdin reaches EOF.
const EOF_GRACE: Duration = Duration::from_millis(100);
/// How long queued answers may take to reach stdout once reading has stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);
/// How long the last stderr lines may take to go out before the process exits.
const STDERR_LIMIT: Duration = Duration::from_millis(100);
/// The exit code of a simulated crash.
pub const CRASH_EXIT_CODE: i32 = 3;

const INSTRUCTIONS: &str = "Reference MCP server for mcp-fleet tests and demos. Tools: echo \
    (returns message), add (returns a + b), sleep (waits ms milliseconds, cancellable).";

/// How [`serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The input reached EOF and the answers were written: exit code 0.
    InputClosed,
    /// A simulated crash (`--crash-after-requests`, `--crash-after-ms`): exit code 3.
    Crashed,
    /// The output could not be written: exit code 1.
    OutputFailed,
}

impl Exit {
    /// The process exit code for this ending.
    pub fn code(self) -> i32 {
        match self {
            Self::InputClosed => 0,
            Self::Crashed => CRASH_EXIT_CODE,
            Self::OutputFailed => 1,
        }
    }
}

/// Runs the server on the process's stdin, stdout and stderr and returns the exit code.
///
/// SIGTERM and SIGINT end it with code 0.
pub async fn run(config: Config) -> i32 {
    if let Some(code) = config.exit_at_start {
        use std::io::Write as _;
        // A closed stderr must not turn the requested exit code into a panic.
        let _ = writeln!(
            std::io::stderr(),
            "{} {}: exiting at start with code {code} (simulated)",
            crate::BINARY_NAME,
            config.name
        );
        return i32::from(code);
    }
    // The handlers are installed before stdin is read, so a client that got an answer knows that
    // SIGTERM is a clean stop from then on.
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    tokio::select! {
        exit = serve(config, tokio::io::stdin(), tokio::io::stdout(), tokio::io::stderr()) => {
            exit.code()
        }
        () = received(&mut terminate) => 0,
        () = received(&mut interrupt) => 0,
    }
}

async fn received(signal: &mut Option<Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => future::pending().await,
    }
}

/// Serves one client over any byte streams until EOF, a simulated crash or an output failure.
///
/// This is what [`run`] does on stdio, usable in-process with `tokio::io::duplex`.
pub async fn serve<R, W, E>(config: Config, input: R, output: W, diagnostics: E) -> Exit
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
    E: AsyncWrite + Unpin + Send + 'static,
{
    let log = Log::spawn(&config.name, diagnostics, config.stderr_flood.unwrap_or(0));
    log.raw(format!(
        "{} {} starting (era={})",
        crate::BINARY_NAME,
        config.name,
        config.era
    ));

    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let mut writer = tokio::spawn(write_loop(
        output,
        out_rx,
        OutputBehaviour::from_config(&config),
        log.clone(),
    ));
    let crash_timer = async {
        match config.crash_after_ms {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => future::pending().await,
        }
    };
    let slow_start = config.slow_start_ms.map(Duration::from_millis);
    let reading = Session::new(&config, out_tx, log.clone()).read_loop(input, slow_start);
    tokio::pin!(crash_timer, reading);

    let exit = tokio::select! {
        end = &mut writer => writer_exit(end),
        () = &mut crash_timer => {
            log.line(&format!("crashing {} ms after start (simulated)", config.crash_after_ms.unwrap_or(0)));
            Exit::Crashed
        }
        () = &mut reading => {
            // The session and its tasks are gone, so the writer ends once it has written the rest.
            match tokio::time::timeout(DRAIN_LIMIT, &mut writer).await {
                Ok(end) => writer_exit(end),
                Err(_) => Exit::InputClosed,
            }
        }
    };
    log.line(&format!("exiting with code {}", exit.code()));
    let _ = tokio::time::timeout(STDERR_LIMIT, log.flush()).await;
    exit
}

fn writer_exit(end: Result<WriterEnd, JoinError>) -> Exit {
    match end {
        Ok(WriterEnd::Drained) => Exit::InputClosed,
        Ok(WriterEnd::Crashed) => Exit::Crashed,
        Ok(WriterEnd::Failed) | Err(_) => Exit::OutputFailed,
    }
}

/// The era a process has settled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Era {
    Legacy,
    Modern,
}

/// What answering a request takes.
enum Reply {
    /// The result is ready.
    Now(Value),
    /// A `subscriptions/listen`: acknowledged now, held open until cancelled or stdin ends.
    Held,
    /// The result comes after a wait, in its own task; `modern` marks it complete.
    After {
        wait: Duration,
        modern: bool,
        /// The caller's `_meta.progressToken`: progress is reported at each quarter.
        progress: Option<Value>,
    },
}

/// The state of one client connection, owned by the reading loop.
struct Session {
    name: String,
    mode: EraMode,
    latched: Option<Era>,
    log_requests: bool,
    list_changes: bool,
    /// The id of the open `subscriptions/listen`, on which list changes are announced.
    listen: Option<Value>,
    /// Set by `reference/add_tool`: `tools/list` offers the tool `extra` too.
    extra_tool: bool,
    out: mpsc::UnboundedSender<Outgoing>,
    log: Log,
    /// The requests that wait in their own task, by the JSON text of their id.
    in_flight: HashMap<String, AbortHandle>,
    tasks: JoinSet<String>,
}

impl Session {
    fn new(config: &Config, out: mpsc::UnboundedSender<Outgoing>, log: Log) -> Self {
        Self {
            name: config.name.clone(),
            mode: config.era,
            latched: None,
            log_requests: config.log_requests,
            list_changes: config.list_changes,
            listen: None,
            extra_tool: false,
            out,
            log,
            in_flight: HashMap::new(),
            tasks: JoinSet::new(),
        }
    }

    /// Reads and handles lines until EOF, then lets in-flight requests finish for a short while.
    async fn read_loop<R: AsyncRead + Unpin>(mut self, input: R, slow_start: Option<Duration>) {
        if let Some(delay) = slow_start {
            tokio::time::sleep(delay).await;
        }
        let mut input = BufReader::new(input);
        // The buffer outlives each read because a read interrupted by the other branch of the
        // select leaves its partial line here, to be completed by the next read.
        let mut line = Vec::new();
        loop {
            tokio::select! {
                biased;
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.forget(joined);
                }
                read = input.read_until(b'\n', &mut line) => match read {
                    Ok(0) => break,
                    Ok(_) => {
                        self.handle_line(&line);
                        line.clear();
                    }
                    Err(error) => {
                        self.log.line(&format!("cannot read stdin: {error}"));
                        break;
                    }
                },
            }
        }
        // A last line without a newline still counts.
        if !line.is_empty() {
            self.handle_line(&line);
        }
        let _ = tokio::time::timeout(EOF_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    fn forget(&mut self, joined: Result<(tokio::task::Id, String), JoinError>) {
        // A cancelled task was already forgotten when it was cancelled.
        if let Ok((task, key)) = joined
            && self
                .in_flight
                .get(&key)
                .is_some_and(|handle| handle.id() == task)
        {
            self.in_flight.remove(&key);
        }
    }

    fn send(&self, message: Outgoing) {
        // The writer only goes away when the process is ending, so a lost answer is moot.
        let _ = self.out.send(message);
    }

    fn handle_line(&mut self, line: &[u8]) {
        let line = line.trim_ascii();
        // Blank lines carry no message; answering them would only add noise.
        if line.is_empty() {
            return;
        }
        match protocol::parse_line(line) {
            Ok(Incoming::Request { id, method, params }) => {
                self.handle_request(id, &method, params.as_ref());
            }
            Ok(Incoming::Notification { method, params }) => {
                self.handle_notification(&method, params.as_ref());
            }
            Ok(Incoming::Response) => {
                if self.log_requests {
                    self.log
                        .line("ignored a response (this server sends no requests)");
                }
            }
            Err(rejected) => {
                if self.log_requests {
                    self.log
                        .line(&format!("rejected a line: {}", rejected.error));
                }
                self.send(Outgoing::Rejection(protocol::failure(
                    rejected.id,
                    &rejected.error,
                )));
            }
        }
    }

    fn handle_request(&mut self, id: Value, method: &str, params: Option<&Value>) {
        if self.log_requests {
            let tool = params
                .filter(|_| method == "tools/call")
                .and_then(|params| params.get("name"))
                .and_then(Value::as_str)
                .map(|name| format!(" {name}"))
                .unwrap_or_default();
            // The version a stateless request names in its `_meta`, so a test can see it sent.
            let version = params
                .and_then(|params| params.get("_meta"))
                .and_then(|meta| meta.get(PROTOCOL_VERSION_META_KEY))
                .map(|version| format!(", protocol {version}"))
                .unwrap_or_default();
            self.log
                .line(&format!("request {method}{tool} (id {id}{version})"));
        }
        match self.dispatch(method, params) {
            Ok(Reply::Now(result)) => self.send(Outgoing::Answer(protocol::success(id, result))),
            Ok(Reply::Held) => self.hold_listen(id),
            Ok(Reply::After {
                wait,
                modern,
                progress,
            }) => self.spawn_delayed(id, wait, modern, progress),
            Err(error) => self.send(Outgoing::Answer(protocol::failure(id, &error))),
        }
    }

    fn handle_notification(&mut self, method: &str, params: Option<&Value>) {
        if self.log_requests {
            self.log.line(&format!("notification {method}"));
        }
        // Unknown notifications, `notifications/initialized` included, need nothing from us.
        if method == "notifications/cancelled" {
            let request = params.and_then(|params| params.get("requestId"));
            if let Some(request) = request
                && let Some(task) = self.in_flight.remove(&request.to_string())
            {
                task.abort();
                if self.listen.as_ref() == Some(request) {
                    self.listen = None;
                }
                if self.log_requests {
                    self.log.line(&format!("cancelled request {request}"));
                }
            }
        }
    }

    /// Answers at once, or says how long to wait; era latching happens here, in arrival order.
    fn dispatch(&mut self, method: &str, params: Option<&Value>) -> Result<Reply, RpcError> {
        let params = protocol::params_object(params)?;
        match method {
            "initialize" => return self.initialize(params).map(Reply::Now),
            "server/discover" => return self.discover().map(Reply::Now),
            _ => {}
        }
        let modern = self.request_is_modern(params)?;
        let result = match method {
            "ping" => json!({}),
            "tools/list" => {
                let mut list = tools::list();
                if self.extra_tool
                    && let Value::Array(list) = &mut list
                {
                    list.push(tools::extra());
                }
                json!({ "tools": list })
            }
            "subscriptions/listen" if modern && self.list_changes => return Ok(Reply::Held),
            "reference/add_tool" if self.list_changes => {
                self.extra_tool = true;
                // Announced unasked in the 2025 era, on the open listen in the 2026 era.
                let mut note =
                    json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
                match (&self.listen, modern) {
                    (_, false) => self.send(Outgoing::Notification(note)),
                    (Some(listen), true) => {
                        note["params"] = json!({"_meta": {SUBSCRIPTION_ID_META_KEY: listen}});
                        self.send(Outgoing::Notification(note));
                    }
                    (None, true) => {}
                }
                json!({})
            }
            "tools/call" => match tools::prepare(params)? {
                ToolCall::Text(text) => tools::text_result(&text),
                ToolCall::Sleep(wait) => {
                    let progress = params
                        .and_then(|p| p.get("_meta"))
                        .and_then(|m| m.get("progressToken"))
                        .cloned();
                    return Ok(Reply::After {
                        wait,
                        modern,
                        progress,
                    });
                }
            },
            other => return Err(RpcError::MethodNotFound(other.into())),
        };
        Ok(Reply::Now(if modern {
            protocol::mark_complete(result)
        } else {
            result
        }))
    }

    fn era(&self) -> Option<Era> {
        match self.mode {
            EraMode::Legacy => Some(Era::Legacy),
            EraMode::Modern => Some(Era::Modern),
            EraMode::Both => self.latched,
        }
    }

    fn latch(&mut self, era: Era) {
        if self.mode == EraMode::Both && self.latched.is_none() {
            self.latched = Some(era);
            if self.log_requests {
                let era = match era {
                    Era::Legacy => "legacy",
                    Era::Modern => "modern",
                };
                self.log.line(&format!("era latched to {era}"));
            }
        }
    }

    fn server_info(&self) -> Value {
        json!({ "name": self.name, "version": env!("CARGO_PKG_VERSION") })
    }

    fn initialize(&mut self, params: Option<&Map<String, Value>>) -> Result<Value, RpcError> {
        let requested = params.and_then(|params| params.get("protocolVersion"));
        if self.era() == Some(Era::Modern) {
            return Err(RpcError::UnsupportedProtocolVersion(format!(
                "this server speaks only the stateless era ({MODERN_VERSION}); use server/discover"
            )));
        }
        let requested = requested.and_then(Value::as_str).ok_or_else(|| {
            RpcError::InvalidParams("initialize: protocolVersion must be a string".into())
        })?;
        let version = if LEGACY_VERSIONS.contains(&requested) {
            requested
        } else {
            LATEST_LEGACY_VERSION
        };
        self.latch(Era::Legacy);
        Ok(json!({
            "protocolVersion": version,
            "capabilities": { "tools": { "listChanged": self.list_changes } },
            "serverInfo": self.server_info(),
            "instructions": INSTRUCTIONS,
        }))
    }

    fn discover(&mut self) -> Result<Value, RpcError> {
        // A handshake-era server does not know this method, which is how clients detect one.
        if self.era() == Some(Era::Legacy) {
            return Err(RpcError::MethodNotFound("server/discover".into()));
        }
        self.latch(Era::Modern);
        let info = self.server_info();
        Ok(json!({
            "resultType": "complete",
            "supportedVersions": [MODERN_VERSION],
            "capabilities": { "tools": { "listChanged": self.list_changes } },
            "serverInfo": info,
            "_meta": { SERVER_INFO_META_KEY: info },
            "instructions": INSTRUCTIONS,
        }))
    }

    /// Whether a request is answered the stateless way, checking the version it names.
    fn request_is_modern(&mut self, params: Option<&Map<String, Value>>) -> Result<bool, RpcError> {
        let era = self.era();
        // A handshake-era process ignores `_meta`, as servers of that era do.
        if era == Some(Era::Legacy) {
            return Ok(false);
        }
        let version = params
            .and_then(|params| params.get("_meta"))
            .and_then(|meta| meta.get(PROTOCOL_VERSION_META_KEY));
        match version {
            None => Ok(era == Some(Era::Modern)),
            // A stateless client needs no handshake, so its first request settles the era too.
            Some(Value::String(version)) if version == MODERN_VERSION => {
                self.latch(Era::Modern);
                Ok(true)
            }
            Some(other) => Err(RpcError::UnsupportedProtocolVersion(format!(
                "{other} (this server speaks {MODERN_VERSION})"
            ))),
        }
    }

    /// Acknowledges a `subscriptions/listen` for tool list changes, the only ones this server
    /// offers, and holds it open as a request in flight (so that, like any other, the end of
    /// stdin waits a while for it), which a `notifications/cancelled` ends.
    fn hold_listen(&mut self, id: Value) {
        let ack = json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": {"toolsListChanged": true},
                "_meta": {SUBSCRIPTION_ID_META_KEY: id}}});
        self.send(Outgoing::Notification(ack));
        let key = id.to_string();
        let task_key = key.clone();
        let task = self.tasks.spawn(async move {
            std::future::pending::<()>().await;
            task_key
        });
        self.in_flight.insert(key, task);
        self.listen = Some(id);
    }

    fn spawn_delayed(&mut self, id: Value, wait: Duration, modern: bool, progress: Option<Value>) {
        let key = id.to_string();
        let out = self.out.clone();
        let task_key = key.clone();
        let task = self.tasks.spawn(async move {
            match progress {
                None => tokio::time::sleep(wait).await,
                Some(token) => {
                    for step in 1..=4u32 {
                        tokio::time::sleep(wait / 4).await;
                        let note = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/progress",
                            "params": {"progressToken": token, "progress": step, "total": 4}});
                        let _ = out.send(Outgoing::Notification(note));
                    }
                }
            }
            let text = format!("slept {} ms", wait.as_millis());
            let mut result = tools::text_result(&text);
            if modern {
                result = protocol::mark_complete(result);
            }
            let _ = out.send(Outgoing::Answer(protocol::success(id, result)));
            task_key
        });
        // A client reusing the id of a request still in flight can only cancel the newer one.
        self.in_flight.insert(key, task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

    const DEADLINE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn serves_in_process_over_duplex_streams() {
        let (mut client_in, server_in) = tokio::io::duplex(4096);
        let (server_out, client_out) = tokio::io::duplex(4096);
        let config = Config::well_behaved(EraMode::Both);
        let server = tokio::spawn(serve(config, server_in, server_out, tokio::io::sink()));
        client_in
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")
            .await
            .unwrap();
        let mut lines = BufReader::new(client_out).lines();
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            line.as_deref(),
            Some(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
        );
        drop(client_in);
        let exit = tokio::time::timeout(DEADLINE, server)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(exit, Exit::InputClosed);
    }

    #[tokio::test]
    async fn crash_after_requests_ends_serve_as_a_crash() {
        let (mut client_in, server_in) = tokio::io::duplex(4096);
        let mut config = Config::well_behaved(EraMode::Legacy);
        config.crash_after_requests = Some(1);
        let server = tokio::spawn(serve(
            config,
            server_in,
            tokio::io::sink(),
            tokio::io::sink(),
        ));
        client_in
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")
            .await
            .unwrap();
        let exit = tokio::time::timeout(DEADLINE, server)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(exit, Exit::Crashed);
        assert_eq!(exit.code(), CRASH_EXIT_CODE);
    }
}
