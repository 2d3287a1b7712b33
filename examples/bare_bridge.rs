//! The least an HTTP-to-stdio MCP bridge does, for `bench_gateway` to measure beside mcp-fleet
//! in the same run: the floor of what any such bridge costs on the machine, as bare kameo and
//! bare tokio are for the actor layer.
//!
//! `bare_bridge --listen 127.0.0.1:PORT -- PROGRAM [ARGS...]`
//!
//! It starts PROGRAM, does the 2025-11-25 handshake with it, and serves Streamable HTTP at
//! `/mcp` on the same stack as mcp-fleet (axum on hyper, tokio with one worker thread, jemalloc):
//! - `initialize` is answered with the backend's own `initialize` result and a new
//!   `Mcp-Session-Id`; a request of an unknown session gets 404, and one without a session 400;
//! - every other request is sent to the backend with an id of the bridge's own, and the answer
//!   goes back, with the client's id, as `application/json`;
//! - notifications get 202; `DELETE` ends the session.
//!
//! What it leaves out is what mcp-fleet adds: actors, supervision and restarts, several servers
//! and their catalog (names are passed as they are), health checks, metrics, cancellation,
//! progress and server-to-client messages, the 2026-07-28 era, and the HTTP checks (`Host`,
//! `Accept`, `Content-Type`). It is a benchmark baseline, not a product.
//!
//! When the backend exits, the bridge exits (code 1); it stops on SIGTERM or Ctrl-C, and its
//! backend with it (`kill_on_drop`, and the process group the benchmark puts it in).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, oneshot};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long a request waits for the backend's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

type Waiters = Mutex<HashMap<u64, oneshot::Sender<Value>>>;

struct Bridge {
    /// Lines for the backend's stdin.
    stdin: mpsc::UnboundedSender<Vec<u8>>,
    /// Shared with the reader of the backend's stdout.
    waiting: Arc<Waiters>,
    next_id: AtomicU64,
    sessions: Mutex<HashSet<String>>,
    next_session: AtomicU64,
    /// The backend's answer to our `initialize`, given to every client's.
    initialized: Value,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen: Option<SocketAddr> = None;
    let mut command = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => {
                listen = Some(
                    args.next()
                        .context("--listen needs an address")?
                        .parse()
                        .context("--listen")?,
                )
            }
            "--" => command.extend(args.by_ref()),
            other => bail!(
                "unknown argument {other}; usage: bare_bridge --listen ADDR -- PROGRAM [ARGS...]"
            ),
        }
    }
    let listen = listen.context("--listen ADDR is required")?;
    let (program, args) = command
        .split_first()
        .context("no backend command after --")?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(serve(listen, program, args))
}

async fn serve(listen: SocketAddr, program: &str, args: &[String]) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let stdin = child.stdin.take().context("no stdin")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, mut lines) = mpsc::unbounded_channel::<Vec<u8>>();
    // Writer: what is queued goes out in one flush.
    tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(64 * 1024, stdin);
        while let Some(line) = lines.recv().await {
            let mut ok = w.write_all(&line).await.is_ok();
            while let (true, Ok(more)) = (ok, lines.try_recv()) {
                ok = w.write_all(&more).await.is_ok();
            }
            if !ok || w.flush().await.is_err() {
                return;
            }
        }
    });
    let waiting: Arc<Waiters> = Arc::default();
    tokio::spawn(read_answers(stdout, waiting.clone(), tx.clone()));

    // The handshake, through the same table as every request (id 0; requests start at 1).
    let (answer, init) = oneshot::channel();
    lock(&waiting).insert(0, answer);
    let line = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "bare_bridge", "version": "1"}}});
    let _ = tx.send(format!("{line}\n").into_bytes());
    let init = tokio::time::timeout(Duration::from_secs(30), init)
        .await
        .context("the backend did not answer initialize within 30 s")?
        .context("the backend exited during initialize")?;
    let initialized = init
        .get("result")
        .cloned()
        .with_context(|| format!("initialize failed: {init}"))?;
    let _ = tx.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n".to_vec());
    let bridge = Arc::new(Bridge {
        stdin: tx,
        waiting,
        next_id: AtomicU64::new(1),
        sessions: Mutex::default(),
        next_session: AtomicU64::new(1),
        initialized,
    });

    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(post).delete(delete).with_state(bridge),
    );
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        match term {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    });
    tokio::select! {
        r = server => r.context("HTTP server")?,
        status = child.wait() => bail!("the backend exited: {status:?}"),
    }
    Ok(())
}

/// Answers go to whoever waits for their id; the backend's own requests get an answer (`ping`)
/// or an error; notifications are dropped.
async fn read_answers(
    stdout: tokio::process::ChildStdout,
    waiting: Arc<Waiters>,
    stdin: mpsc::UnboundedSender<Vec<u8>>,
) {
    let mut r = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let Ok(message) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        match (message.get("method"), message.get("id")) {
            (None, Some(id)) => {
                let waiter = id.as_u64().and_then(|id| lock(&waiting).remove(&id));
                if let Some(w) = waiter {
                    let _ = w.send(message);
                }
            }
            (Some(method), Some(id)) => {
                let method = method.as_str().unwrap_or("");
                let _ = stdin.send(fleet_examples::answer_server_request(method, id));
            }
            _ => {}
        }
    }
    // The backend is gone: every waiter learns it (its sender is dropped).
    lock(&waiting).clear();
}

const SESSION: &str = "mcp-session-id";

fn error(status: StatusCode, id: Option<&Value>, code: i64, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    json_response(status, &body)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn post(State(bridge): State<Arc<Bridge>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(Value::Object(mut message)) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            None,
            -32700,
            "not a JSON-RPC message",
        );
    };
    let Some(id) = message.get("id").cloned() else {
        // A notification (or a response): accepted, and not passed on.
        return StatusCode::ACCEPTED.into_response();
    };
    if message.get("method").and_then(Value::as_str) == Some("initialize") {
        let session = format!(
            "{:016x}",
            bridge.next_session.fetch_add(1, Ordering::Relaxed)
        );
        lock(&bridge.sessions).insert(session.clone());
        let answer = json!({"jsonrpc": "2.0", "id": id, "result": bridge.initialized});
        let mut response = json_response(StatusCode::OK, &answer);
        if let Ok(v) = session.parse() {
            response.headers_mut().insert(SESSION, v);
        }
        return response;
    }
    match headers.get(SESSION).and_then(|v| v.to_str().ok()) {
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                Some(&id),
                -32600,
                "Mcp-Session-Id is required",
            );
        }
        Some(s) if !lock(&bridge.sessions).contains(s) => {
            return error(StatusCode::NOT_FOUND, Some(&id), -32600, "unknown session");
        }
        Some(_) => {}
    }
    let ours = bridge.next_id.fetch_add(1, Ordering::Relaxed);
    message.insert("id".into(), ours.into());
    let mut line = match serde_json::to_vec(&message) {
        Ok(line) => line,
        Err(e) => return error(StatusCode::BAD_REQUEST, Some(&id), -32600, &e.to_string()),
    };
    line.push(b'\n');
    let (answer, rx) = oneshot::channel();
    lock(&bridge.waiting).insert(ours, answer);
    if bridge.stdin.send(line).is_err() {
        lock(&bridge.waiting).remove(&ours);
        return error(
            StatusCode::BAD_GATEWAY,
            Some(&id),
            -32603,
            "the backend is gone",
        );
    }
    match tokio::time::timeout(CALL_TIMEOUT, rx).await {
        Ok(Ok(mut answer)) => {
            if let Some(m) = answer.as_object_mut() {
                m.insert("id".into(), id);
            }
            json_response(StatusCode::OK, &answer)
        }
        Ok(Err(_)) => error(
            StatusCode::BAD_GATEWAY,
            Some(&id),
            -32603,
            "the backend is gone",
        ),
        Err(_) => {
            lock(&bridge.waiting).remove(&ours);
            error(
                StatusCode::GATEWAY_TIMEOUT,
                Some(&id),
                -32603,
                "no answer from the backend in time",
            )
        }
    }
}

async fn delete(State(bridge): State<Arc<Bridge>>, headers: HeaderMap) -> StatusCode {
    let session = headers.get(SESSION).and_then(|v| v.to_str().ok());
    match session.map(|s| lock(&bridge.sessions).remove(s)) {
        Some(true) => StatusCode::OK,
        Some(false) => StatusCode::NOT_FOUND,
        None => StatusCode::BAD_REQUEST,
    }
}
