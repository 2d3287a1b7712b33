//! A remote server over Streamable HTTP, behind the same pipe a child process has: the actor
//! writes JSON-RPC lines to a channel and gets every message back as a `StdoutItem`, so the
//! handshake, ids, progress, timeouts and health probes work unchanged.
//!
//! - Each request is its own POST, answered with JSON or an SSE stream (read until the answer to
//!   that request arrives; answers to other requests on it are dropped, and an event past the
//!   largest message ends it; one the server closes after an event id is resumed with a GET
//!   carrying `Last-Event-ID`, after the server's `retry`); requests run concurrently, each on
//!   a task kept by its wire id, which the actor's `notifications/cancelled` aborts.
//!   `notifications/initialized` is POSTed and waited for before the next request; other
//!   notifications and responses are POSTed in order by a task of their own. Redirects are not
//!   followed.
//! - A 2025-era session id (from the `initialize` answer) and the negotiated version go on every
//!   later POST; a 2026-era request gets `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` from
//!   its own body. After `notifications/initialized` a GET stream carries what the server sends
//!   unasked (a 405 means it has none). A 2026-era server's list changes come on the SSE answer
//!   of the actor's `subscriptions/listen`, a POST like any other whose stream stays open; when it
//!   closes, the actor gets an error answer for it.
//! - A request the server refuses (a 4xx/5xx that is not a JSON-RPC answer, a redirect) gets a
//!   JSON-RPC error naming the HTTP status. A session the server ended (404) is started again in
//!   the link (`renew`) and the POST sent once more. A server that cannot be reached, or whose
//!   new session fails too, ends the link: to the actor that is an exit, and the restart policy
//!   reconnects.
//! - The link ends when the actor drops its sender (a stop: the session is DELETEd), or when
//!   killed (`kill`; a health verdict). The end is published like a process exit.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fleet_protocol::ExitInfo;
use fleet_protocol::codec::{DecodedLine, FrameError, parse_line};
use fleet_protocol::jsonrpc::{Message, Outcome, Response, error_codes};
use fleet_protocol::mcp::{self, headers, methods};
use fleet_protocol::messages::server::StopMethod;
use futures::StreamExt;
use kameo::actor::ActorRef;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use sse_stream::SseStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::process;
use crate::server::{Exited, ServerActor, StdoutItem};

/// How long connecting to the remote server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a notification's or response's POST, and the closing DELETE, may take.
const SHORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a refusal's body an error message quotes.
const QUOTE_BYTES: usize = 300;

/// How long to wait before resuming a stream the server closed, unless it said (`retry`).
const RESUME_WAIT: Duration = Duration::from_secs(1);
/// The shortest wait before a resumption, whatever `retry` says: a server asking for none, and
/// closing each stream at once, is polled ten times a second, not in a tight loop.
const RESUME_WAIT_MIN: Duration = Duration::from_millis(100);

/// The exit code a link ends with when the remote cannot be reached or ended the session.
const LOST: i32 = 1;
/// The signal number a killed link reports, as a killed process would.
const KILLED: i32 = 9;

/// What the actor keeps of a running link.
pub struct RemoteLink {
    pub outgoing: mpsc::Sender<Bytes>,
    pub exit: watch::Receiver<Option<ExitInfo>>,
    pub kill: CancellationToken,
}

/// Where a link sends what it reads, and its configuration.
pub struct LinkArgs {
    pub server: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub max_message_bytes: usize,
    pub queue: usize,
    pub generation: u64,
    pub actor: ActorRef<ServerActor>,
}

/// The state the link's tasks share.
struct Shared {
    server: String,
    url: String,
    client: reqwest::Client,
    /// The configured headers, checked once.
    extra: HeaderMap,
    max_message_bytes: usize,
    generation: u64,
    actor: ActorRef<ServerActor>,
    session: Mutex<Option<HeaderValue>>,
    /// The version `initialize` negotiated (2025 era).
    version: Mutex<Option<HeaderValue>>,
    /// Cancelled when the link is lost; the reason is kept.
    lost: CancellationToken,
    lost_reason: Mutex<Option<String>>,
    /// The session's `initialize` and `notifications/initialized`, as the actor sent them: a
    /// session the server ended (404) is started again with them, inside the link.
    handshake: Mutex<(Option<Bytes>, Option<Bytes>)>,
    /// One renewal of the session at a time.
    renewing: tokio::sync::Mutex<()>,
    /// Told when a renewed session wants its GET stream opened again.
    relisten: tokio::sync::Notify,
}

/// Checks configured headers: names and values must be valid HTTP.
pub fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("`{k}` is not a valid HTTP header name"))?;
        let value = HeaderValue::from_str(v)
            .map_err(|_| format!("the value of header `{k}` is not valid in HTTP"))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// Starts a link. Fails only on a configuration the HTTP client refuses.
pub fn connect(args: LinkArgs) -> Result<RemoteLink, String> {
    let extra = header_map(&args.headers)?;
    // Redirects are not followed: the configured headers (a token) must reach only the
    // configured origin, and reqwest's policy sends some of them on across origins.
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("could not build the HTTP client: {e}"))?;
    let shared = Arc::new(Shared {
        server: args.server,
        url: args.url,
        client,
        extra,
        max_message_bytes: args.max_message_bytes,
        generation: args.generation,
        actor: args.actor,
        session: Mutex::new(None),
        version: Mutex::new(None),
        lost: CancellationToken::new(),
        lost_reason: Mutex::new(None),
        handshake: Mutex::new((None, None)),
        renewing: tokio::sync::Mutex::new(()),
        relisten: tokio::sync::Notify::new(),
    });
    let (tx, rx) = mpsc::channel(args.queue);
    let (exit_tx, exit_rx) = watch::channel(None);
    let kill = CancellationToken::new();
    tokio::spawn(run(shared, rx, exit_tx, kill.clone()));
    Ok(RemoteLink {
        outgoing: tx,
        exit: exit_rx,
        kill,
    })
}

/// The rest of a stop once the sender is dropped: wait `grace` for the link to end its session,
/// then kill it.
pub async fn finish_stop(
    kill: CancellationToken,
    mut exit: watch::Receiver<Option<ExitInfo>>,
    grace: Duration,
) -> (StopMethod, Option<ExitInfo>, Duration) {
    let start = std::time::Instant::now();
    if let Some(e) = process::wait_exit(&mut exit, grace).await {
        return (StopMethod::StdinClosed, Some(e), start.elapsed());
    }
    kill.cancel();
    let e = process::wait_exit(&mut exit, Duration::from_secs(5)).await;
    (StopMethod::Killed, e, start.elapsed())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn exit_info(code: Option<i32>, signal: Option<i32>, reason: Option<String>) -> ExitInfo {
    ExitInfo {
        code,
        signal,
        at: SystemTime::now(),
        reason,
    }
}

async fn run(
    shared: Arc<Shared>,
    mut outgoing: mpsc::Receiver<Bytes>,
    exit_tx: watch::Sender<Option<ExitInfo>>,
    kill: CancellationToken,
) {
    let (ordered, in_order) = mpsc::channel(ORDERED_QUEUE);
    let mut link = Link {
        tasks: JoinSet::new(),
        requests: HashMap::new(),
        ordered,
    };
    link.tasks.spawn(post_in_order(shared.clone(), in_order));
    let exit = loop {
        tokio::select! {
            () = kill.cancelled() => break exit_info(None, Some(KILLED), None),
            () = shared.lost.cancelled() => {
                let reason = lock(&shared.lost_reason).clone().unwrap_or_default();
                tracing::warn!(server = %shared.server, url = %shared.url, %reason, "remote server lost");
                break exit_info(Some(LOST), None, Some(format!("link lost: {reason}")));
            }
            () = shared.relisten.notified() => {
                link.tasks.spawn(listen(shared.clone()));
            }
            // Reap finished request tasks as they end.
            Some(_) = link.tasks.join_next(), if !link.tasks.is_empty() => {
                link.requests.retain(|_, task| !task.is_finished());
            }
            line = outgoing.recv() => match line {
                Some(line) => send(&shared, line, &mut link).await,
                None => {
                    // A stop: end the session politely, bounded, unless killed meanwhile.
                    tokio::select! {
                        () = end_session(&shared) => {}
                        () = kill.cancelled() => {}
                    }
                    break exit_info(Some(0), None, None);
                }
            },
        }
    };
    link.tasks.abort_all();
    let _ = exit_tx.send(Some(exit.clone()));
    let _ = shared
        .actor
        .tell(Exited {
            generation: shared.generation,
            exit,
        })
        .await;
}

/// Marks the link lost (the first reason wins).
fn lose(shared: &Shared, reason: String) {
    let mut r = lock(&shared.lost_reason);
    if r.is_none() {
        *r = Some(reason);
    }
    shared.lost.cancel();
}

/// The headers of a POST of `message`: the configured ones, the session and the version.
fn post_headers(shared: &Shared, message: &Value) -> HeaderMap {
    let mut h = shared.extra.clone();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(
        ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    if let Some(s) = lock(&shared.session).clone() {
        h.insert(headers::SESSION, s);
    }
    let method = message.get("method").and_then(Value::as_str);
    let params = message.get("params");
    let modern = params
        .and_then(mcp::meta_version)
        .and_then(|v| HeaderValue::from_str(v).ok());
    match (modern, method) {
        (Some(version), Some(method)) => {
            h.insert(headers::VERSION, version);
            if let Ok(v) = HeaderValue::from_str(method) {
                h.insert(headers::METHOD, v);
            }
            // A name or URI that is not plain ASCII goes as `=?base64?...?=`.
            let name = mcp::name_key(method)
                .and_then(|key| params?.get(key)?.as_str())
                .and_then(|n| HeaderValue::from_str(&mcp::encode_header_value(n)).ok());
            if let Some(name) = name {
                h.insert(headers::NAME, name);
            }
        }
        _ => {
            if let Some(v) = lock(&shared.version).clone() {
                h.insert(headers::VERSION, v);
            }
        }
    }
    h
}

/// What the link's loop holds: the tasks of requests under way (by wire id, to end the one
/// whose request is abandoned) and the queue of what is posted in order.
struct Link {
    tasks: JoinSet<()>,
    /// The task of each request under way, by its wire id's JSON text.
    requests: HashMap<String, tokio::task::AbortHandle>,
    ordered: mpsc::Sender<(Outgoing, Option<String>)>,
}

/// One message to POST: its line as the actor wrote it, and the line read.
#[derive(Clone)]
struct Outgoing {
    line: Bytes,
    message: Value,
}

impl Outgoing {
    /// The POST of it, with the session as it is now.
    fn post(&self, shared: &Shared) -> Result<reqwest::Request, String> {
        shared
            .client
            .post(&shared.url)
            .headers(post_headers(shared, &self.message))
            .body(self.line.clone())
            .build()
            .map_err(|e| format!("could not build a request to {}: {e}", shared.url))
    }
}

/// How many notifications and responses may wait for the ones before them to be posted.
const ORDERED_QUEUE: usize = 1024;

/// Sends one line: a request on a task of its own, `initialized` at once (the requests after
/// it must not come before it), anything else through the ordered queue, so that a server slow
/// to take a notification holds up neither the requests nor the loop (which must see a kill).
async fn send(shared: &Arc<Shared>, line: Bytes, link: &mut Link) {
    // The actor encoded it; it is valid JSON.
    let Ok(message) = serde_json::from_slice::<Value>(&line) else {
        return;
    };
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned);
    match method.as_deref() {
        Some(methods::INITIALIZE) => lock(&shared.handshake).0 = Some(line.clone()),
        Some(methods::INITIALIZED) => lock(&shared.handshake).1 = Some(line.clone()),
        _ => {}
    }
    let out = Outgoing { line, message };
    match (out.message.get("id").cloned(), method) {
        (Some(id), Some(method)) => {
            let shared = shared.clone();
            let key = id.to_string();
            let task = link
                .tasks
                .spawn(async move { request(&shared, out, id, &method).await });
            link.requests.insert(key, task);
        }
        (_, Some(method)) if method == methods::INITIALIZED => {
            if post_one(shared, out, &method).await {
                link.tasks.spawn(listen(shared.clone()));
            }
        }
        (_, method) => {
            if method.as_deref() == Some(methods::CANCELLED) {
                // The actor gave up the request (a timeout, the client's cancel): its POST
                // ends here, its connection closed. In the 2026-07-28 era that close is the
                // cancellation; a 2025-11-25 session (it negotiated a version) is told too.
                let id = out
                    .message
                    .pointer("/params/requestId")
                    .map(Value::to_string);
                if let Some(task) = id.and_then(|id| link.requests.remove(&id)) {
                    task.abort();
                }
                if lock(&shared.version).is_none() {
                    return;
                }
            }
            if link.ordered.try_send((out, method)).is_err() {
                tracing::warn!(server = %shared.server, "the remote server takes notifications slower than they come; one was dropped");
            }
        }
    }
}

/// Posts what the ordered queue holds, one after the other.
async fn post_in_order(shared: Arc<Shared>, mut queue: mpsc::Receiver<(Outgoing, Option<String>)>) {
    while let Some((out, method)) = queue.recv().await {
        post_one(&shared, out, method.as_deref().unwrap_or("a response")).await;
    }
}

/// The server answered 404 to session `stale`: it ended the session. A new one is started
/// with the session's own `initialize` and `notifications/initialized` (the spec's "MUST start
/// a new session"), once for every request that met the 404; whether there is one now. It runs
/// as a task of its own, so that a caller given up meanwhile (a cancelled call) cannot leave it
/// half done; the old session stays the one requests carry until the new one is in.
async fn renew(shared: &Arc<Shared>, stale: &HeaderValue) -> bool {
    tokio::spawn(renew_session(shared.clone(), stale.clone()))
        .await
        .unwrap_or(false)
}

async fn renew_session(shared: Arc<Shared>, stale: HeaderValue) -> bool {
    let _one = shared.renewing.lock().await;
    let current = lock(&shared.session).clone();
    if current.as_ref() != Some(&stale) {
        // Renewed meanwhile (or lost).
        return current.is_some();
    }
    let (Some(initialize), Some(initialized)) = lock(&shared.handshake).clone() else {
        return false;
    };
    tracing::info!(server = %shared.server, "the remote server ended the session (HTTP 404); starting a new one");
    let started = async {
        let out = Outgoing {
            message: serde_json::from_slice(&initialize).ok()?,
            line: initialize,
        };
        let mut post = out.post(&shared).ok()?;
        post.headers_mut().remove(headers::SESSION);
        let resp = shared.client.execute(post).await.ok()?;
        let session = resp.headers().get(headers::SESSION).cloned();
        if !resp.status().is_success() {
            return None;
        }
        // Its answer is the first `initialize`'s again: dropped.
        *lock(&shared.session) = Some(session?);
        let out = Outgoing {
            message: serde_json::from_slice(&initialized).ok()?,
            line: initialized,
        };
        let resp = shared.client.execute(out.post(&shared).ok()?).await.ok()?;
        resp.status().is_success().then_some(())
    };
    let renewed = tokio::time::timeout(SHORT_TIMEOUT, started)
        .await
        .ok()
        .flatten()
        .is_some();
    if renewed {
        shared.relisten.notify_one();
    } else {
        lose(
            &shared,
            "the server ended the session (HTTP 404), and a new one could not be started".into(),
        );
    }
    renewed
}

/// Why a POST got no response to read.
enum Unsent {
    /// The link is lost: the server cannot be reached, or ended the session and a new one could
    /// not be started.
    Lost(String),
    /// This POST failed (the link may serve others).
    Failed(String),
}

/// Sends `out` and, if the server ended the session (404), sends it again once in a new one.
async fn execute(shared: &Arc<Shared>, out: &Outgoing) -> Result<reqwest::Response, Unsent> {
    // The session's own handshake is not sent again after a renewal, which sends it itself.
    let renewable = !matches!(
        out.message.get("method").and_then(Value::as_str),
        Some(methods::INITIALIZE | methods::INITIALIZED)
    );
    for attempt in 0..2 {
        let stale = lock(&shared.session).clone();
        let post = out.post(shared).map_err(Unsent::Lost)?;
        let resp = match shared.client.execute(post).await {
            Ok(resp) => resp,
            Err(e) if e.is_connect() => {
                return Err(Unsent::Lost(format!("cannot reach {}: {e}", shared.url)));
            }
            Err(e) => return Err(Unsent::Failed(e.to_string())),
        };
        match stale {
            Some(stale) if resp.status() == StatusCode::NOT_FOUND => {
                if attempt == 0 && renewable && renew(shared, &stale).await {
                    continue;
                }
                return Err(Unsent::Lost(
                    "the server ended the session (HTTP 404), and a new one could not be started"
                        .into(),
                ));
            }
            _ => return Ok(resp),
        }
    }
    Err(Unsent::Lost(
        "the server ended the new session too (HTTP 404)".into(),
    ))
}

/// Posts a notification or a response, bounded; whether the server took it.
async fn post_one(shared: &Arc<Shared>, out: Outgoing, method: &str) -> bool {
    match tokio::time::timeout(SHORT_TIMEOUT, execute(shared, &out)).await {
        Ok(Ok(resp)) if resp.status().is_success() => return true,
        Ok(Ok(resp)) => {
            let status = resp.status();
            tracing::warn!(server = %shared.server, method, %status, "remote server refused a notification or response");
        }
        Ok(Err(Unsent::Lost(reason))) => lose(shared, reason),
        Ok(Err(Unsent::Failed(e))) => {
            tracing::warn!(server = %shared.server, method, error = %e, "posting to the remote server failed")
        }
        Err(_) => {
            tracing::warn!(server = %shared.server, method, "the remote server took over {SHORT_TIMEOUT:?} to accept a message")
        }
    }
    false
}

/// One request's POST and its answer.
async fn request(shared: &Arc<Shared>, out: Outgoing, id: Value, method: &str) {
    let resp = match execute(shared, &out).await {
        Ok(r) => r,
        Err(Unsent::Lost(reason)) => {
            lose(shared, reason);
            return;
        }
        Err(Unsent::Failed(e)) => {
            let message = format!("the request to the remote server failed: {e}");
            deliver(shared, error_answer(&id, message)).await;
            return;
        }
    };
    let status = resp.status();
    if method == methods::INITIALIZE
        && status.is_success()
        && let Some(s) = resp.headers().get(headers::SESSION)
    {
        *lock(&shared.session) = Some(s.clone());
    }
    if status.is_redirection() {
        let to = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .unwrap_or("nowhere said");
        let message = format!(
            "the remote server answered HTTP {status}, a redirect to {to}: mcp-fleet does not follow redirects (its headers are for the configured URL only); set `url` to where it points"
        );
        deliver(shared, error_answer(&id, message)).await;
        return;
    }
    if is_event_stream(&resp) && status.is_success() {
        read_stream(shared, resp, Some(&id), method).await;
        return;
    }
    let body = match read_body(resp, shared.max_message_bytes).await {
        Ok(b) => b,
        Err(e) => {
            deliver(shared, error_answer(&id, e)).await;
            return;
        }
    };
    // The answer in the body, whatever the status (servers answer refusals with JSON-RPC
    // errors). A refusal that answers no id of ours (`"id": null`) is quoted below instead.
    if let Ok(Message::Response(r)) = parse_line(&String::from_utf8_lossy(&body))
        && answers(&r, &id)
    {
        let answer = Ok(Message::Response(r));
        note_version(shared, method, &answer);
        deliver(shared, answer).await;
        return;
    }
    let message = if status.is_success() {
        format!("the remote server answered HTTP {status} without a JSON-RPC answer")
    } else {
        let quoted: String = String::from_utf8_lossy(&body)
            .chars()
            .take(QUOTE_BYTES)
            .collect();
        format!(
            "the remote server answered HTTP {status}: {}",
            quoted.trim()
        )
    };
    deliver(shared, error_answer(&id, message)).await;
}

/// Reads a JSON body of at most `max` bytes.
async fn read_body(resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut chunks = resp.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| format!("reading the remote server's answer failed: {e}"))?;
        if body.len() + chunk.len() > max {
            return Err(format!("the remote server's answer is over {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads an SSE stream, delivering each message; with `until`, stops after the answer to it.
/// A stream of a 2025-era server that ends (the server closed it, SEP-1699 polling, or the
/// connection broke) after an event with an id is resumed with a GET carrying `Last-Event-ID`,
/// after the wait the server asked for (`retry`, at least [`RESUME_WAIT_MIN`]), as long as the
/// server takes the GET, and within the session it was opened in. A request's own timeout
/// bounds its stream; a listen stream lives as long as the link. An event over the size limit
/// or one that does not parse ends the stream for good.
async fn read_stream(
    shared: &Shared,
    mut resp: reqwest::Response,
    until: Option<&Value>,
    method: &str,
) {
    let mut resume = Resume {
        last_id: None,
        wait: RESUME_WAIT,
    };
    // A stream belongs to its session: after a renewal its events are gone (and the renewal
    // opens a GET stream of its own). A 2026-era server has no sessions and no resumption.
    let session = lock(&shared.session).clone();
    let resumable = lock(&shared.version).is_some();
    loop {
        let ended = match read_events(shared, resp, until, method, &mut resume).await {
            Ended::Answered => return,
            Ended::Final(why) => why,
            Ended::Resumable(why) => match resume.last_id.as_ref().filter(|_| resumable) {
                None => why,
                Some(_) if *lock(&shared.session) != session => {
                    format!("{why}; not resumed: its session was renewed")
                }
                Some(last_id) => {
                    tracing::debug!(server = %shared.server, last_id = %last_id, wait_ms = resume.wait.as_millis() as u64, "resuming the remote server's event stream");
                    tokio::time::sleep(resume.wait.max(RESUME_WAIT_MIN)).await;
                    match resume_stream(shared, last_id, session.as_ref()).await {
                        Ok(again) => {
                            resp = again;
                            continue;
                        }
                        Err(e) => format!("{why}; resuming it failed: {e}"),
                    }
                }
            },
        };
        if let Some(id) = until {
            deliver(shared, error_answer(id, ended)).await;
        } else {
            tracing::debug!(server = %shared.server, reason = %ended, "the remote server's event stream ended");
        }
        return;
    }
}

/// Where a stream stands for its resumption: the last event id and the wait the server asked
/// for.
struct Resume {
    last_id: Option<String>,
    wait: Duration,
}

/// How one response's events ended.
enum Ended {
    /// The answer to the request was delivered (or the actor is gone).
    Answered,
    /// The stream ended, or its connection broke: it may be resumed.
    Resumable(String),
    /// An event over the size limit or one that does not parse: resuming would read it again.
    Final(String),
}

/// Reads one response's events, delivering each message.
async fn read_events(
    shared: &Shared,
    resp: reqwest::Response,
    until: Option<&Value>,
    method: &str,
    resume: &mut Resume,
) -> Ended {
    let max = shared.max_message_bytes;
    let mut event_bytes = EventBytes::new(max);
    let too_long = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cut = too_long.clone();
    // An event is refused once it is over the limit, before the rest of it is buffered.
    let body = resp.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        if event_bytes.over(&chunk) {
            cut.store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(std::io::Error::other(format!(
                "an event of the remote server's stream is over {max} bytes"
            )));
        }
        Ok(chunk)
    });
    let mut events = SseStream::from_bytes_stream(body);
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(server = %shared.server, error = %e, "remote event stream ended");
                let why = format!("the remote server's event stream failed: {e}");
                let broke = matches!(e, sse_stream::Error::Body(_))
                    && !too_long.load(std::sync::atomic::Ordering::Relaxed);
                return if broke {
                    Ended::Resumable(why)
                } else {
                    Ended::Final(why)
                };
            }
        };
        // An empty id resets the last one (the SSE standard).
        if let Some(id) = event.id {
            resume.last_id = (!id.is_empty()).then_some(id);
        }
        if let Some(ms) = event.retry {
            resume.wait = Duration::from_millis(ms);
        }
        let Some(data) = event.data.filter(|d| !d.trim().is_empty()) else {
            continue;
        };
        let item = if data.len() > shared.max_message_bytes {
            Err(FrameError::TooLong {
                limit: shared.max_message_bytes,
                answers: fleet_protocol::codec::answered_id(data.as_bytes()),
            })
        } else {
            parse_line(&data)
        };
        let done = match (&item, until) {
            (Ok(Message::Response(r)), Some(id)) => answers(r, id),
            _ => false,
        };
        // A stream carries the answer to its own request only (and a GET stream none): an
        // answer to another id would be taken for that request's, which may be another
        // client's.
        if !done && answers_another(&item, until) {
            tracing::warn!(server = %shared.server, "the remote server's event stream carried an answer to another request; dropped");
            continue;
        }
        if done {
            note_version(shared, method, &item);
        }
        if !deliver(shared, item).await || done {
            return Ended::Answered;
        }
    }
    Ended::Resumable("the remote server's event stream ended without an answer".to_string())
}

/// Opens the stream again after `last_id` (GET with `Last-Event-ID`), in `session`.
async fn resume_stream(
    shared: &Shared,
    last_id: &str,
    session: Option<&HeaderValue>,
) -> Result<reqwest::Response, String> {
    let mut h = get_headers(shared);
    h.remove(headers::SESSION);
    if let Some(s) = session {
        h.insert(headers::SESSION, s.clone());
    }
    let id = HeaderValue::from_str(last_id).map_err(|_| "its last event id is no header value")?;
    h.insert(HeaderName::from_static("last-event-id"), id);
    let resp = shared
        .client
        .get(&shared.url)
        .headers(h)
        .send()
        .await
        .map_err(|e| format!("cannot reach {}: {e}", shared.url))?;
    if resp.status().is_success() && is_event_stream(&resp) {
        Ok(resp)
    } else {
        Err(format!("the remote server answered HTTP {}", resp.status()))
    }
}

/// Whether `resp` is an SSE stream (`Content-Type: text/event-stream`).
fn is_event_stream(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// Whether `item` answers a request other than `own` (any, on a stream of no request).
fn answers_another(item: &DecodedLine, own: Option<&Value>) -> bool {
    let id = match item {
        Ok(Message::Response(r)) => r.id.as_ref(),
        Err(FrameError::BadAnswer { id, .. }) => Some(id),
        Err(FrameError::TooLong { answers, .. }) => answers.as_ref(),
        _ => None,
    };
    let Some(id) = id.and_then(|i| serde_json::to_value(i).ok()) else {
        return false;
    };
    own != Some(&id)
}

/// The bytes of the server-sent event being read (since the last blank line), so that one
/// over the limit is refused before it is all buffered. The limit leaves room for the
/// `data: ` prefixes and line ends of an event holding a message of `max` bytes.
struct EventBytes {
    limit: usize,
    since_blank: usize,
    at_line_start: bool,
    after_cr: bool,
}

impl EventBytes {
    fn new(max: usize) -> Self {
        EventBytes {
            limit: max.saturating_add(64 * 1024),
            since_blank: 0,
            at_line_start: true,
            after_cr: false,
        }
    }

    /// Counts `chunk`; whether the event being read is over the limit.
    fn over(&mut self, chunk: &[u8]) -> bool {
        for &b in chunk {
            match b {
                // A line ends with CR, LF or CRLF (counted once).
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    if self.at_line_start {
                        self.since_blank = 0;
                    }
                    self.at_line_start = true;
                }
                _ => {
                    self.after_cr = false;
                    self.at_line_start = false;
                    self.since_blank += 1;
                }
            }
        }
        self.since_blank > self.limit
    }
}

/// The headers of a GET stream: the session's, and `Accept: text/event-stream`.
fn get_headers(shared: &Shared) -> HeaderMap {
    let mut h = shared.extra.clone();
    h.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    if let Some(s) = lock(&shared.session).clone() {
        h.insert(headers::SESSION, s);
    }
    if let Some(v) = lock(&shared.version).clone() {
        h.insert(headers::VERSION, v);
    }
    h
}

/// The GET stream of what the server sends unasked (2025 era).
async fn listen(shared: Arc<Shared>) {
    let h = get_headers(&shared);
    match shared.client.get(&shared.url).headers(h).send().await {
        Ok(resp) if resp.status().is_success() => {
            read_stream(&shared, resp, None, "").await;
        }
        Ok(resp) => {
            tracing::debug!(server = %shared.server, status = %resp.status(), "the remote server has no event stream")
        }
        Err(e) => {
            tracing::debug!(server = %shared.server, error = %e, "opening the remote event stream failed")
        }
    }
}

/// Whether `r` answers the request with wire id `id`.
fn answers(r: &Response, id: &Value) -> bool {
    r.id.as_ref()
        .and_then(|i| serde_json::to_value(i).ok())
        .as_ref()
        == Some(id)
}

/// Keeps the version an `initialize` answer negotiated, for the headers of later POSTs.
fn note_version(shared: &Shared, method: &str, item: &DecodedLine) {
    if method != methods::INITIALIZE {
        return;
    }
    if let Ok(Message::Response(r)) = item {
        let version = match &r.outcome {
            Outcome::Result(result) => result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .and_then(|v| HeaderValue::from_str(v).ok()),
            Outcome::Error(_) => None,
        };
        if let Some(v) = version {
            *lock(&shared.version) = Some(v);
        }
    }
}

/// A JSON-RPC error answering `id`.
fn error_answer(id: &Value, message: String) -> DecodedLine {
    let value = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": error_codes::INTERNAL_ERROR, "message": message },
    });
    Message::from_value(value).map_err(FrameError::NotJsonRpc)
}

/// Hands an item to the actor; false once the actor is gone.
async fn deliver(shared: &Shared, item: DecodedLine) -> bool {
    shared
        .actor
        .tell(StdoutItem {
            generation: shared.generation,
            item,
        })
        .await
        .is_ok()
}

/// DELETEs the session, if there is one, bounded.
async fn end_session(shared: &Shared) {
    let Some(session) = lock(&shared.session).clone() else {
        return;
    };
    let mut h = shared.extra.clone();
    h.insert(headers::SESSION, session);
    if let Some(v) = lock(&shared.version).clone() {
        h.insert(headers::VERSION, v);
    }
    let delete = shared.client.delete(&shared.url).headers(h).send();
    match tokio::time::timeout(SHORT_TIMEOUT, delete).await {
        Ok(Ok(resp)) => {
            tracing::debug!(server = %shared.server, status = %resp.status(), "remote session ended")
        }
        Ok(Err(e)) => {
            tracing::debug!(server = %shared.server, error = %e, "ending the remote session failed")
        }
        Err(_) => tracing::debug!(server = %shared.server, "ending the remote session timed out"),
    }
}
