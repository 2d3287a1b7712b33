//! Streamable HTTP at `/mcp`: turns each HTTP request into a gateway message and the reply into
//! a status code and a body (JSON, or an SSE stream).
//!
//! Checks, in order, each with a clear error body (a JSON-RPC error object):
//! 1. `Host` and `Origin` (DNS rebinding): names not allowed get 403.
//! 2. The bearer token, when one is configured: 401 (compared in constant time).
//! 3. `Accept` must allow both JSON and SSE for POST (SSE for GET): 406.
//!    `Content-Type` must be JSON: 415. The body is at most `max_body_bytes`: 413.
//! 4. The body must be one JSON-RPC message: 400 with -32700 (not JSON) or -32600 (a batch, or
//!    not a JSON-RPC message).
//! 5. 2026-07-28 requests: `Mcp-Method` and `Mcp-Name` must agree with the body: 400, -32020.
//! 6. The gateway's answer: 404 for an unknown session, 400 for a missing one or an
//!    unsupported `MCP-Protocol-Version`, 202 for notifications and responses.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use fleet_gateway::GatewayPort;
use fleet_protocol::FleetError;
use fleet_protocol::codec::FrameError;
use fleet_protocol::jsonrpc::{
    ErrorObject, Message, RequestId, Response as RpcResponse, error_codes,
};
use fleet_protocol::mcp;
use fleet_protocol::messages::gateway::{ClientMessage, ClientReply, CloseSession, OpenStream};
use futures::StreamExt;
use kameo::error::SendError;
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use mcp::headers::{
    METHOD as METHOD_HEADER, NAME as NAME_HEADER, SESSION as SESSION_HEADER,
    VERSION as VERSION_HEADER,
};

/// How `/mcp` guards itself.
#[derive(Debug, Clone)]
pub struct McpHttpConfig {
    /// The largest request body accepted.
    pub max_body_bytes: usize,
    /// Host names (without port) accepted in `Host` and `Origin`. Empty accepts any: only for a
    /// listener behind a proxy that checks them.
    pub allowed_hosts: Vec<String>,
    /// Required as `Authorization: Bearer <token>` when set.
    pub bearer_token: Option<String>,
    /// Messages buffered for an SSE response before progress is dropped.
    pub stream_buffer: usize,
    /// How long a request body may take to arrive once its headers have (408 after that), so
    /// that a client that stalls mid-body does not hold its connection for ever.
    pub body_timeout: Duration,
}

impl Default for McpHttpConfig {
    fn default() -> Self {
        McpHttpConfig {
            max_body_bytes: 4 * 1024 * 1024,
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()],
            bearer_token: None,
            stream_buffer: 64,
            body_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone)]
struct McpState {
    gateway: GatewayPort,
    config: Arc<McpHttpConfig>,
}

/// The `/mcp` route.
pub fn router(gateway: GatewayPort, config: McpHttpConfig) -> Router {
    let state = McpState {
        gateway,
        config: Arc::new(config),
    };
    Router::new()
        .route("/mcp", axum::routing::any(handle))
        .with_state(state)
}

/// An HTTP error with a JSON-RPC error body (no id: the request was not read).
fn error_response(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    rpc_error_response(status, None, ErrorObject::new(code, message))
}

/// An HTTP error answering the request `id`.
fn error_for(
    id: &Option<RequestId>,
    status: StatusCode,
    code: i64,
    message: impl Into<String>,
) -> Response {
    rpc_error_response(status, id.clone(), ErrorObject::new(code, message))
}

fn rpc_error_response(status: StatusCode, id: Option<RequestId>, error: ErrorObject) -> Response {
    let body = Message::Response(RpcResponse::error(id, error)).to_value();
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A request turned away before the gateway sees it (boxed: the rare path).
pub(crate) type Rejection = Box<Response>;

/// A request that failed the `Host`, `Origin` or token check: its status and why, which `/mcp`
/// answers as a JSON-RPC error and the admin API as its own `{"error": ..}`.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl Refused {
    /// The response `body` makes of it, with `WWW-Authenticate: Bearer` on a 401.
    pub(crate) fn render(self, body: impl FnOnce(StatusCode, String) -> Response) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut r = body(self.status, self.message);
        if unauthorized {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The host part of a `Host` value or an origin's authority, without the port (compared
/// ignoring case).
fn host_name(authority: &str) -> &str {
    let a = authority.trim();
    if a.starts_with('[') {
        // [::1]:port
        return a.split_inclusive(']').next().unwrap_or(a);
    }
    a.split(':').next().unwrap_or(a)
}

pub(crate) fn check_origin(config: &McpHttpConfig, headers: &HeaderMap) -> Result<(), Refused> {
    if config.allowed_hosts.is_empty() {
        return Ok(());
    }
    let allowed = |h: &str| {
        config
            .allowed_hosts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(h))
    };
    if let Some(host) = headers.get(header::HOST) {
        let host = host.to_str().map(host_name).unwrap_or_default();
        if !allowed(host) {
            return Err(Refused {
                status: StatusCode::FORBIDDEN,
                message: format!(
                    "Host `{}` is not allowed (DNS rebinding protection)",
                    host.to_ascii_lowercase()
                ),
            });
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = origin
            .split_once("://")
            .map(|(_, rest)| host_name(rest.split('/').next().unwrap_or("")))
            .unwrap_or_default();
        if !allowed(host) {
            return Err(Refused {
                status: StatusCode::FORBIDDEN,
                message: format!("Origin `{origin}` is not allowed (DNS rebinding protection)"),
            });
        }
    }
    Ok(())
}

pub(crate) fn check_auth(config: &McpHttpConfig, headers: &HeaderMap) -> Result<(), Refused> {
    let Some(token) = &config.bearer_token else {
        return Ok(());
    };
    // The scheme's name is case-insensitive (RFC 9110, 11.1); the token is not.
    let given = header_str(headers, header::AUTHORIZATION.as_str())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim_start());
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        return Ok(());
    }
    Err(Refused {
        status: StatusCode::UNAUTHORIZED,
        message: "a valid `Authorization: Bearer` token is required".into(),
    })
}

/// Whether `Accept` allows every one of `wanted` (`type/subtype` each), in one pass over the
/// header.
fn accepts<const N: usize>(headers: &HeaderMap, wanted: [&str; N]) -> bool {
    let mut allowed = [false; N];
    let types = wanted.map(|w| w.split_once('/').map_or(w, |(ty, _)| ty));
    let ranges = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|r| r.split_once(';').map_or(r, |(range, _)| range).trim());
    for range in ranges {
        for ((w, ty), allowed) in wanted.iter().zip(types).zip(&mut allowed) {
            *allowed |= range.eq_ignore_ascii_case(w)
                || range == "*/*"
                || range
                    .strip_suffix("/*")
                    .is_some_and(|t| t.eq_ignore_ascii_case(ty));
        }
        if allowed.iter().all(|a| *a) {
            return true;
        }
    }
    false
}

async fn handle(State(state): State<McpState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    if let Err(refused) =
        check_origin(&state.config, &headers).and_then(|()| check_auth(&state.config, &headers))
    {
        return refused.render(|status, message| {
            error_response(status, error_codes::INVALID_REQUEST, message)
        });
    }
    match parts.method {
        Method::POST => post(state, &headers, body).await,
        Method::GET => get(state, &headers).await,
        Method::DELETE => delete(state, &headers).await,
        _ => {
            let mut r = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                error_codes::INVALID_REQUEST,
                "use POST, GET or DELETE",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            r
        }
    }
}

/// The gateway's failure as an HTTP response.
fn fleet_error_response(e: FleetError) -> Response {
    fleet_error_for(&None, e)
}

fn fleet_error_for(id: &Option<RequestId>, e: FleetError) -> Response {
    let status = match &e {
        FleetError::UnknownSession { .. } => StatusCode::NOT_FOUND,
        FleetError::MissingSession
        | FleetError::UnsupportedVersion { .. }
        | FleetError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
        FleetError::ActorUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        // Full: sessions that are never used end within a minute, idle ones with their TTL.
        FleetError::TooManySessions { .. } => {
            let mut r =
                rpc_error_response(StatusCode::SERVICE_UNAVAILABLE, id.clone(), e.to_jsonrpc());
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            return r;
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    rpc_error_response(status, id.clone(), e.to_jsonrpc())
}

/// A failed ask to the gateway: its own error, or 503 when it is not there to answer.
fn send_error<M>(id: &Option<RequestId>, e: SendError<M, FleetError>) -> Response {
    match e {
        SendError::HandlerError(e) => fleet_error_for(id, e),
        other => error_for(
            id,
            StatusCode::SERVICE_UNAVAILABLE,
            error_codes::INTERNAL_ERROR,
            format!("the gateway is unavailable: {other}"),
        ),
    }
}

/// The 2026-07-28 checks of a POST without a session: the version header names a version we
/// speak (-32022), `_meta` has what it must (-32602) and agrees with the header (-32020; a
/// missing header disagrees), and `Mcp-Method` and `Mcp-Name` say what the body says (-32020).
/// Each failure is a 400 answering the request's id.
fn check_modern(
    headers: &HeaderMap,
    message: &Message,
    header_version: &str,
) -> Result<(), Rejection> {
    let (id, method, params) = match message {
        Message::Request(r) => (Some(r.id.clone()), r.method.as_str(), r.params.as_ref()),
        Message::Notification(n) => (None, n.method.as_str(), n.params.as_ref()),
        Message::Response(_) => return Ok(()),
    };
    let bad = |code: i64, what: String| {
        Err(Box::new(error_for(
            &id,
            StatusCode::BAD_REQUEST,
            code,
            what,
        )))
    };
    if !header_version.is_empty() && header_version != mcp::MODERN_VERSION {
        // The versions this wire can use, as `server/discover` lists them; but an `initialize`,
        // which only a 2025-era client sends, is told every version, so that it finds its own.
        let e = match fleet_gateway::dispatch::check_version(Some(header_version)) {
            Err(every) if method == mcp::methods::INITIALIZE => every,
            // A version we speak, but the body's `_meta` asks for 2026-07-28: they disagree.
            Ok(_) => {
                return bad(
                    error_codes::HEADER_MISMATCH,
                    format!(
                        "`MCP-Protocol-Version: {header_version}` does not match _meta's {}",
                        mcp::MODERN_VERSION
                    ),
                );
            }
            Err(_) => FleetError::UnsupportedVersion {
                version: header_version.to_owned(),
                supported: vec![mcp::MODERN_VERSION.to_owned()],
            },
        };
        return Err(Box::new(fleet_error_for(&id, e)));
    }
    if id.is_some() {
        let meta = params.and_then(|p| p.get("_meta"));
        let meta_version = meta.and_then(|m| m.get(mcp::META_PROTOCOL_VERSION));
        let caps = meta.and_then(|m| m.get(mcp::META_CLIENT_CAPABILITIES));
        let (Some(meta_version), Some(_)) = (meta_version, caps) else {
            return bad(
                error_codes::INVALID_PARAMS,
                format!(
                    "2026-07-28 requests carry `{}` and `{}` in params._meta",
                    mcp::META_PROTOCOL_VERSION,
                    mcp::META_CLIENT_CAPABILITIES
                ),
            );
        };
        if meta_version.as_str() != Some(header_version) {
            return bad(
                error_codes::HEADER_MISMATCH,
                format!(
                    "`MCP-Protocol-Version: {header_version}` does not match _meta's {meta_version}"
                ),
            );
        }
    }
    match header_str(headers, METHOD_HEADER).map(str::trim) {
        Some(h) if h == method => {}
        Some(h) => {
            return bad(
                error_codes::HEADER_MISMATCH,
                format!("`Mcp-Method: {h}` does not match the body's method `{method}`"),
            );
        }
        None => {
            return bad(
                error_codes::HEADER_MISMATCH,
                format!("the `Mcp-Method` header is required (`{method}`)"),
            );
        }
    }
    let Some(key) = mcp::name_key(method) else {
        return Ok(());
    };
    let body = params.and_then(|p| p.get(key)).and_then(Value::as_str);
    // A name or URI that is not plain ASCII comes as `=?base64?...?=`, compared decoded.
    let header = headers
        .get(NAME_HEADER)
        .map(|v| (v, mcp::decode_header_value(v.as_bytes())));
    match (header, body) {
        (Some((_, Ok(h))), Some(b)) if h == b => Ok(()),
        (Some((_, Ok(h))), b) => bad(
            error_codes::HEADER_MISMATCH,
            match b {
                Some(b) => format!("`Mcp-Name: {h}` does not match the body's {key} `{b}`"),
                None => format!("`Mcp-Name: {h}` names a {key} the body does not give"),
            },
        ),
        (Some((raw, Err(why))), _) => bad(
            error_codes::HEADER_MISMATCH,
            format!(
                "the `Mcp-Name` header {:?} is malformed: {why}",
                String::from_utf8_lossy(raw.as_bytes())
            ),
        ),
        (None, _) => bad(
            error_codes::HEADER_MISMATCH,
            format!("the `Mcp-Name` header is required for `{method}`"),
        ),
    }
}

fn wants_progress(message: &Message) -> bool {
    matches!(message, Message::Request(r) if r.params.as_ref()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get("progressToken"))
        .is_some())
}

async fn post(state: McpState, headers: &HeaderMap, body: axum::body::Body) -> Response {
    if !accepts(headers, ["application/json", "text/event-stream"]) {
        return error_response(
            StatusCode::NOT_ACCEPTABLE,
            error_codes::INVALID_REQUEST,
            "`Accept` must list both application/json and text/event-stream",
        );
    }
    let content_type = header_str(headers, header::CONTENT_TYPE.as_str()).unwrap_or("");
    if !content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error_codes::INVALID_REQUEST,
            "`Content-Type` must be application/json",
        );
    }
    let limit = state.config.max_body_bytes;
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            error_codes::INVALID_REQUEST,
            format!("the body is larger than {limit} bytes"),
        )
    };
    // Refused before it is sent, rather than waited for and then refused.
    let declared = header_str(headers, header::CONTENT_LENGTH.as_str())
        .and_then(|l| l.trim().parse::<u64>().ok());
    if declared.is_some_and(|l| l > limit as u64) {
        return too_large();
    }
    let timeout = state.config.body_timeout;
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await;
    let Ok(read) = read else {
        return error_response(
            StatusCode::REQUEST_TIMEOUT,
            error_codes::INVALID_REQUEST,
            format!("the body did not arrive within {}s", timeout.as_secs_f64()),
        );
    };
    let body: Bytes = match read {
        Ok(b) => b,
        Err(e) if over_limit(&e) => return too_large(),
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                error_codes::INVALID_REQUEST,
                format!("the body could not be read: {e}"),
            );
        }
    };
    let message = match fleet_protocol::codec::parse_json(&body) {
        Ok(m) => m,
        Err(FrameError::NotJson { reason }) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                error_codes::PARSE_ERROR,
                format!("the body is not JSON: {reason}"),
            );
        }
        Err(e) => {
            // JSON that is not JSON-RPC (an invalid answer included): `parse_json` gives no
            // other error.
            let reason = match e {
                FrameError::NotJsonRpc(invalid) => invalid.to_string(),
                other => other.to_string(),
            };
            return error_response(
                StatusCode::BAD_REQUEST,
                error_codes::INVALID_REQUEST,
                reason,
            );
        }
    };
    let session = header_str(headers, SESSION_HEADER).map(str::to_owned);
    let protocol_version = header_str(headers, VERSION_HEADER).map(|v| v.trim().to_owned());
    // The eras do not mix: 2026-07-28 has no sessions, and a session's requests would be
    // served as 2025 ones (no `resultType`, `ping` allowed) while the client expects 2026's.
    if session.is_some() && protocol_version.as_deref() == Some(mcp::MODERN_VERSION) {
        return error_for(
            &message.request_id().cloned(),
            StatusCode::BAD_REQUEST,
            error_codes::INVALID_REQUEST,
            format!(
                "a {} request has no session: drop `Mcp-Session-Id`, or send the version the \
                 session was initialized with",
                mcp::MODERN_VERSION
            ),
        );
    }
    // A version header of no 2025 revision means the stateless wire (or an unsupported one).
    let modern = session.is_none()
        && (protocol_version
            .as_deref()
            .is_some_and(|v| !fleet_gateway::dispatch::LEGACY_VERSIONS.contains(&v))
            || message.params().and_then(mcp::meta_version) == Some(mcp::MODERN_VERSION));
    if modern
        && let Err(r) = check_modern(headers, &message, protocol_version.as_deref().unwrap_or(""))
    {
        return *r;
    }
    let id = message.request_id().cloned();
    // On the stateless wire, the method decides what a "method not found" means in HTTP.
    let modern = modern.then(|| message.method().unwrap_or("").to_owned());
    let progress = wants_progress(&message);
    let cancel = CancellationToken::new();
    if progress {
        return stream_response(state, session, protocol_version, message, cancel, modern).await;
    }
    // Dropping this handler (the client went away) cancels the request upstream.
    let _guard = cancel.clone().drop_guard();
    let sent = state.gateway.send(ClientMessage {
        session,
        protocol_version,
        message,
        progress: None,
        cancel,
    });
    match sent.await {
        Ok(reply) => client_reply(reply, modern.as_deref()),
        Err(e) => send_error(&id, e),
    }
}

/// The answer as JSON. On the stateless wire a method that does not exist is also an HTTP 404
/// (`modern` is `Some(method)` there); a server's own "method not found" for a forwarded
/// request is not.
fn json_response(response: RpcResponse, session: Option<String>, modern: Option<&str>) -> Response {
    let status = match (&response.outcome, modern) {
        (fleet_protocol::jsonrpc::Outcome::Error(e), Some(method))
            if e.code == error_codes::METHOD_NOT_FOUND
                && !fleet_gateway::dispatch::FORWARDED.contains(&method) =>
        {
            StatusCode::NOT_FOUND
        }
        _ => StatusCode::OK,
    };
    let body = serde_json::to_string(&Message::Response(response)).unwrap_or_default();
    let mut r = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(id) = session.and_then(|s| HeaderValue::from_str(&s).ok()) {
        r.headers_mut().insert(SESSION_HEADER, id);
    }
    r
}

fn event(message: &Message) -> Result<Event, Infallible> {
    Ok(Event::default()
        .event("message")
        .data(serde_json::to_string(message).unwrap_or_default()))
}

fn client_reply(reply: ClientReply, modern: Option<&str>) -> Response {
    match reply {
        ClientReply::Response { response, session } => json_response(response, session, modern),
        ClientReply::Accepted => StatusCode::ACCEPTED.into_response(),
        ClientReply::Stream { first, messages } => {
            let first = futures::stream::iter(first.into_iter().map(|m| event(&m)));
            let rest = tokio_stream_of(messages).map(|m| event(&m));
            sse(first.chain(rest))
        }
    }
}

/// An SSE response that proxies must not buffer.
fn sse(
    events: impl futures::Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Response {
    let mut r = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

fn tokio_stream_of<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A request whose progress the client wants: an SSE stream of the progress notifications,
/// then the response. The client closing the stream cancels the request upstream.
async fn stream_response(
    state: McpState,
    session: Option<String>,
    protocol_version: Option<String>,
    message: Message,
    cancel: CancellationToken,
    modern: Option<String>,
) -> Response {
    let id = message.request_id().cloned();
    let (ptx, mut prx) = mpsc::channel(state.config.stream_buffer);
    let (out_tx, out_rx) = mpsc::channel::<Message>(state.config.stream_buffer);
    let gateway = state.gateway.clone();
    let msg = ClientMessage {
        session,
        protocol_version,
        message,
        progress: Some(ptx),
        cancel: cancel.clone(),
    };
    // Errors before the request runs (unknown session, ...) are HTTP errors, not a stream: the
    // ask is started here and its early failure mapped below.
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<First>();
    let task_modern = modern.clone();
    tokio::spawn(async move {
        let modern = task_modern;
        let _guard = cancel.drop_guard();
        let ask = gateway.send(msg);
        tokio::pin!(ask);
        let mut first_tx = Some(first_tx);
        loop {
            tokio::select! {
                // Progress first: none is left behind when the answer is ready too.
                biased;
                Some(n) = prx.recv() => {
                    if let Some(tx) = first_tx.take() {
                        let _ = tx.send(First::Stream);
                    }
                    if out_tx.send(Message::Notification(n)).await.is_err() {
                        return; // the client went away: the guard cancels upstream
                    }
                }
                answer = &mut ask => {
                    let (response, session) = match answer {
                        Ok(ClientReply::Response { response, session }) => (response, session),
                        Ok(other) => {
                            // Not a plain response (a listen stream): answer it as such.
                            if let Some(tx) = first_tx.take() {
                                let _ = tx.send(First::Refused(client_reply(other, modern.as_deref())));
                            }
                            return;
                        }
                        Err(e) => {
                            match first_tx.take() {
                                Some(tx) => { let _ = tx.send(First::Refused(send_error(&id, e))); }
                                None => {
                                    let error = match e {
                                        SendError::HandlerError(e) => e.to_jsonrpc(),
                                        other => ErrorObject::new(error_codes::INTERNAL_ERROR, other.to_string()),
                                    };
                                    let _ = out_tx.send(Message::Response(RpcResponse::error(id.clone(), error))).await;
                                }
                            }
                            return;
                        }
                    };
                    let rest: Vec<_> = std::iter::from_fn(|| prx.try_recv().ok()).collect();
                    match first_tx.take() {
                        // No progress came: answer with plain JSON.
                        Some(tx) if rest.is_empty() => {
                            let _ = tx.send(First::Json(response, session));
                            return;
                        }
                        Some(tx) => { let _ = tx.send(First::Stream); }
                        None => {}
                    }
                    for n in rest {
                        let _ = out_tx.send(Message::Notification(n)).await;
                    }
                    let _ = out_tx.send(Message::Response(response)).await;
                    return;
                }
                () = out_tx.closed() => return,
            }
        }
    });
    match first_rx.await {
        Ok(First::Json(response, session)) => json_response(response, session, modern.as_deref()),
        Ok(First::Stream) => sse(tokio_stream_of(out_rx).map(|m| event(&m))),
        Ok(First::Refused(r)) => r,
        Err(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            error_codes::INTERNAL_ERROR,
            "the request ended without an answer",
        ),
    }
}

/// How a request with progress starts to be answered.
enum First {
    /// No progress came: the response, as plain JSON (with the session it opened, if any).
    Json(RpcResponse, Option<String>),
    /// Progress came: an SSE stream follows.
    Stream,
    /// Refused before it ran (unknown session, ...).
    Refused(Response),
}

/// Whether reading a body failed for its size, rather than for a malformed or cut-off body.
pub(crate) fn over_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// What a GET or DELETE of the 2026-07-28 wire, or of a version we do not speak, gets: 405 with
/// `Allow: POST`, or 400 with -32022 and the versions we speak.
fn not_for_this_version(headers: &HeaderMap, what: &str) -> Option<Response> {
    let version = header_str(headers, VERSION_HEADER).map(str::trim);
    if version == Some(mcp::MODERN_VERSION) {
        let mut r = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            error_codes::INVALID_REQUEST,
            format!("2026-07-28 has no {what}"),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return Some(r);
    }
    fleet_gateway::dispatch::check_version(version)
        .err()
        .map(fleet_error_response)
}

async fn get(state: McpState, headers: &HeaderMap) -> Response {
    if let Some(r) = not_for_this_version(headers, "GET stream; use subscriptions/listen") {
        return r;
    }
    if !accepts(headers, ["text/event-stream"]) {
        return error_response(
            StatusCode::NOT_ACCEPTABLE,
            error_codes::INVALID_REQUEST,
            "`Accept` must list text/event-stream",
        );
    }
    let Some(session) = header_str(headers, SESSION_HEADER).map(str::to_owned) else {
        return fleet_error_response(FleetError::MissingSession);
    };
    let (tx, rx) = mpsc::channel(state.config.stream_buffer);
    match state
        .gateway
        .gateway()
        .ask(OpenStream { session, sink: tx })
        .await
    {
        Ok(()) => sse(tokio_stream_of(rx).map(|m| event(&m))),
        Err(e) => send_error(&None, e),
    }
}

async fn delete(state: McpState, headers: &HeaderMap) -> Response {
    if let Some(r) = not_for_this_version(headers, "sessions to end") {
        return r;
    }
    let Some(session) = header_str(headers, SESSION_HEADER).map(str::to_owned) else {
        return fleet_error_response(FleetError::MissingSession);
    };
    match state.gateway.gateway().ask(CloseSession { session }).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => send_error(&None, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_accept(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn accept_lists_both_types_in_any_form() {
        let both = ["application/json", "text/event-stream"];
        for ok in [
            &["application/json, text/event-stream"][..],
            &["text/event-stream;q=0.5,application/json;q=0.9"],
            &["Application/JSON", "TEXT/Event-Stream"],
            &["*/*"],
            &["application/*, text/*"],
        ] {
            assert!(accepts(&with_accept(ok), both), "{ok:?}");
        }
        for refused in [
            &[][..],
            &["application/json"],
            &["text/event-stream, text/html"],
            &["application/json-seq, text/event-stream"],
            &["image/*, text/event-stream"],
        ] {
            assert!(!accepts(&with_accept(refused), both), "{refused:?}");
        }
        assert!(accepts(&with_accept(&["text/*"]), ["text/event-stream"]));
    }

    #[test]
    fn host_names_lose_the_port_and_keep_ipv6_brackets() {
        assert_eq!(host_name("LocalHost:8080"), "LocalHost");
        assert_eq!(host_name(" 127.0.0.1 "), "127.0.0.1");
        assert_eq!(host_name("[::1]:3000"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name(""), "");
    }
}
