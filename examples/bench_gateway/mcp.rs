//! The MCP side of the load client: `tools/call echo` over Streamable HTTP in a 2025-11-25
//! session or as 2026-07-28 stateless requests, and directly over a backend's stdio with many
//! requests in flight on one pipe (ids matched). Every answer is checked: the right id, a
//! result, and the echoed text (`msg`, or server-everything's `Echo: msg`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, oneshot};

use super::http::{ClientKind, Conn, HttpResponse};
use super::procs::ProcGuard;

pub const LEGACY: &str = "2025-11-25";
pub const MODERN: &str = "2026-07-28";
const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

/// The protocol era a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25: `initialize`, then requests in a session.
    Legacy,
    /// 2026-07-28: stateless requests carrying `_meta` (and, over HTTP, the headers).
    Modern,
}

impl Era {
    pub fn label(self) -> &'static str {
        match self {
            Era::Legacy => LEGACY,
            Era::Modern => MODERN,
        }
    }
}

/// A JSON-RPC message as far as the benchmark reads it.
#[derive(Debug, Deserialize)]
pub struct Rpc {
    #[serde(default)]
    pub id: Option<Value>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub result: Option<CallResult>,
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct CallResult {
    #[serde(default)]
    pub content: Vec<Content>,
    #[serde(default, rename = "isError")]
    pub is_error: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct Content {
    #[serde(default)]
    pub text: Option<String>,
}

/// The body of a `tools/call` of `tool` with `{message: msg}`.
pub fn call_body(id: u64, tool: &str, msg: &str, era: Era) -> String {
    match era {
        Era::Legacy => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"message":"{msg}"}}}}}}"#
        ),
        Era::Modern => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"message":"{msg}"}},{META}}}}}"#
        ),
    }
}

/// Checks that `rpc` answers request `id` with the echo of `msg`.
pub fn check_echo(rpc: &Rpc, id: u64, msg: &str) -> anyhow::Result<()> {
    if rpc.id.as_ref().and_then(Value::as_u64) != Some(id) {
        bail!("answer to id {:?}, expected {id}", rpc.id);
    }
    if let Some(e) = &rpc.error {
        bail!("JSON-RPC error {e}");
    }
    let result = rpc.result.as_ref().context("no result")?;
    if result.is_error == Some(true) {
        bail!("tool error");
    }
    let text = result
        .content
        .first()
        .and_then(|c| c.text.as_deref())
        .context("no text content")?;
    if text == msg || text.strip_prefix("Echo: ") == Some(msg) {
        Ok(())
    } else {
        bail!("echo {text:?} for {msg:?}")
    }
}

/// The JSON-RPC response to request `id` in an HTTP response (JSON, or SSE events).
fn response_for(r: &HttpResponse, id: u64) -> anyhow::Result<Rpc> {
    if r.status != 200 {
        bail!(
            "HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body[..r.body.len().min(200)])
        );
    }
    if !r.event_stream {
        return Ok(serde_json::from_slice(&r.body)?);
    }
    let text = std::str::from_utf8(&r.body)?;
    // Events are separated by a blank line; an event's data lines join with "\n".
    for event in text.split("\n\n") {
        let mut data = String::new();
        for line in event.lines() {
            if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
        }
        if data.trim().is_empty() {
            continue;
        }
        let rpc: Rpc = serde_json::from_str(&data)?;
        if rpc.method.is_none() && rpc.id.as_ref().and_then(Value::as_u64) == Some(id) {
            return Ok(rpc);
        }
    }
    bail!("no response to id {id} in the event stream")
}

/// One client session over HTTP: a keep-alive connection, and in the 2025 era a session id.
pub struct HttpSession {
    conn: Conn,
    era: Era,
    tool: String,
    session_id: Option<String>,
    next_id: u64,
    kind: ClientKind,
    addr: SocketAddr,
    path: String,
    ping: bool,
}

impl HttpSession {
    /// Connects; in the 2025 era also `initialize` and `notifications/initialized`.
    pub async fn open(
        kind: ClientKind,
        addr: SocketAddr,
        path: &str,
        era: Era,
        tool: &str,
    ) -> anyhow::Result<HttpSession> {
        let mut s = HttpSession {
            conn: Conn::connect(kind, addr, path).await?,
            era,
            tool: tool.to_owned(),
            session_id: None,
            next_id: 1,
            kind,
            addr,
            path: path.to_owned(),
            ping: false,
        };
        if era == Era::Legacy {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"{LEGACY}","capabilities":{{}},"clientInfo":{{"name":"bench_gateway","version":"1"}}}}}}"#
            );
            let r = s.conn.post(&[], body.as_bytes()).await?;
            let rpc = response_for(&r, 0).context("initialize")?;
            if let Some(e) = rpc.error {
                bail!("initialize: {e}");
            }
            let id = r.session_id.context("initialize: no Mcp-Session-Id")?;
            let r = s
                .conn
                .post(
                    &[("mcp-session-id", &id), ("mcp-protocol-version", LEGACY)],
                    br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
                )
                .await?;
            if r.status != 202 && r.status != 200 {
                bail!("notifications/initialized: HTTP {}", r.status);
            }
            s.session_id = Some(id);
        }
        Ok(s)
    }

    /// Makes [`call_echo`](Self::call_echo) send a `ping` instead (2025 era), which the gateway
    /// answers itself: the cost of HTTP and the gateway's own actors, without a backend.
    pub fn ping_instead(&mut self) {
        self.ping = true;
    }

    /// One `tools/call echo` (or `ping`), checked.
    pub async fn call_echo(&mut self, msg: &str) -> anyhow::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        if self.ping {
            let sid = self.session_id.as_deref().context("ping needs a session")?;
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
            let r = self
                .conn
                .post(
                    &[("mcp-session-id", sid), ("mcp-protocol-version", LEGACY)],
                    body.as_bytes(),
                )
                .await?;
            let rpc = response_for(&r, id)?;
            if rpc.id.as_ref().and_then(Value::as_u64) != Some(id) || rpc.error.is_some() {
                bail!("bad ping answer");
            }
            return Ok(());
        }
        let body = call_body(id, &self.tool, msg, self.era);
        let r = match (&self.session_id, self.era) {
            (Some(sid), _) => {
                self.conn
                    .post(
                        &[("mcp-session-id", sid), ("mcp-protocol-version", LEGACY)],
                        body.as_bytes(),
                    )
                    .await?
            }
            (None, Era::Modern) => {
                self.conn
                    .post(
                        &[
                            ("mcp-protocol-version", MODERN),
                            ("mcp-method", "tools/call"),
                            ("mcp-name", &self.tool),
                        ],
                        body.as_bytes(),
                    )
                    .await?
            }
            (None, Era::Legacy) => bail!("no session"),
        };
        check_echo(&response_for(&r, id)?, id, msg)
    }

    /// After a timed-out call the connection may hold half a response: start a new one.
    pub async fn reset(&mut self) -> anyhow::Result<()> {
        self.conn = Conn::connect(self.kind, self.addr, &self.path).await?;
        Ok(())
    }

    /// Ends the session (DELETE) in the 2025 era; errors are ignored.
    pub async fn close(mut self) {
        if let Some(sid) = self.session_id.take() {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                self.conn
                    .delete(&[("mcp-session-id", &sid), ("mcp-protocol-version", LEGACY)]),
            )
            .await;
        }
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Rpc>>>>;

/// A backend process driven directly over its stdin and stdout, with any number of requests in
/// flight (each waits for the answer with its id).
pub struct StdioBackend {
    pub guard: tokio::sync::Mutex<Option<ProcGuard>>,
    pub pid: u32,
    writer: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    next_id: AtomicU64,
    era: Era,
    tool: String,
}

impl StdioBackend {
    /// Starts `program args`, does the handshake of `era`, and returns once it answered.
    pub async fn start(
        name: &str,
        program: &Path,
        args: &[String],
        era: Era,
        log: &Path,
    ) -> anyhow::Result<Arc<StdioBackend>> {
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(log)?))
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let guard = ProcGuard::adopt(name, child)?;
        let pid = guard.pid();
        let (writer, mut lines) = mpsc::unbounded_channel::<Vec<u8>>();
        let pending: Pending = Arc::default();

        // Writer: batches what is queued, flushes when the queue is empty.
        tokio::spawn(async move {
            let mut w = BufWriter::with_capacity(64 * 1024, stdin);
            while let Some(line) = lines.recv().await {
                if w.write_all(&line).await.is_err() {
                    return;
                }
                while let Ok(more) = lines.try_recv() {
                    if w.write_all(&more).await.is_err() {
                        return;
                    }
                }
                if w.flush().await.is_err() {
                    return;
                }
            }
        });
        // Reader: answers go to whoever waits for their id; the server's own requests (ping,
        // roots) get an answer; notifications are dropped.
        let p = pending.clone();
        let reply = writer.clone();
        tokio::spawn(async move {
            let mut r = BufReader::with_capacity(64 * 1024, stdout);
            let mut line = Vec::with_capacity(4096);
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let Ok(rpc) = serde_json::from_slice::<Rpc>(&line) else {
                    continue;
                };
                match (&rpc.method, &rpc.id) {
                    (None, Some(id)) => {
                        let Some(id) = id.as_u64() else { continue };
                        let waiter = p.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                        if let Some(w) = waiter {
                            let _ = w.send(rpc);
                        }
                    }
                    (Some(m), Some(id)) => {
                        let _ = reply.send(fleet_examples::answer_server_request(m, id));
                    }
                    _ => {}
                }
            }
            // The process is gone: fail every waiter.
            p.lock().unwrap_or_else(|e| e.into_inner()).clear();
        });

        let backend = Arc::new(StdioBackend {
            guard: tokio::sync::Mutex::new(Some(guard)),
            pid,
            writer,
            pending,
            next_id: AtomicU64::new(1),
            era,
            tool: "echo".to_owned(),
        });
        let handshake = async {
            match era {
                Era::Legacy => {
                    let init = format!(
                        r#"{{"protocolVersion":"{LEGACY}","capabilities":{{}},"clientInfo":{{"name":"bench_gateway","version":"1"}}}}"#
                    );
                    let rpc = backend.request("initialize", &init).await?;
                    if let Some(e) = rpc.error {
                        bail!("initialize: {e}");
                    }
                    backend
                        .writer
                        .send(
                            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}
"#
                            .to_vec(),
                        )
                        .ok()
                        .context("stdin closed")?;
                }
                Era::Modern => {
                    let rpc = backend
                        .request("server/discover", &format!("{{{META}}}"))
                        .await?;
                    if let Some(e) = rpc.error {
                        bail!("server/discover: {e}");
                    }
                }
            }
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(30), handshake)
            .await
            .context("handshake timed out")??;
        Ok(backend)
    }

    async fn request(&self, method: &str, params: &str) -> anyhow::Result<Rpc> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#);
        self.send(id, line).await
    }

    async fn send(&self, id: u64, mut line: String) -> anyhow::Result<Rpc> {
        line.push('\n');
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        if self.writer.send(line.into_bytes()).is_err() {
            self.forget(id);
            bail!("the backend's stdin is closed");
        }
        rx.await.context("the backend exited")
    }

    /// Forgets a request whose caller gave up.
    pub fn forget(&self, id: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// One `tools/call echo`, checked; `Err((id, error))` names the request to forget.
    pub async fn call_echo(&self, msg: &str) -> anyhow::Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = call_body(id, &self.tool, msg, self.era);
        let r = tokio::time::timeout(Duration::from_secs(10), self.send(id, body)).await;
        match r {
            Ok(r) => check_echo(&r?, id, msg),
            Err(_) => {
                self.forget(id);
                bail!("no answer within 10 s")
            }
        }
    }

    /// Stops the process: stdin closed by dropping the guard's tree (SIGKILL after a grace).
    pub async fn stop(&self) {
        if let Some(g) = self.guard.lock().await.take() {
            g.stop(Duration::from_secs(2)).await;
        }
    }
}
