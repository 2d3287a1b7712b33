//! The admin API, in JSON, on the listen address beside `/mcp` and `/metrics`:
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | 200 `{"status":"alive"}` while the process serves HTTP |
//! | `GET /readyz` | 200 when every enabled server of the config is ready (or unhealthy) or in a terminal state (stopped, failed); 503 with the servers still on their way otherwise |
//! | `GET /api/servers` | every server's status |
//! | `GET /api/servers/{name}` | one server's status; 404 if there is none |
//! | `GET /api/servers/{name}/logs?lines=N&after=T` | the newest N (default 200) lines of its stderr ring, only those after the first T; with `total` (the next `after`), `missed` and `log_id` |
//! | `POST /api/servers/{name}/restart` | stops it and starts it again; its status once ready |
//! | `POST /api/servers/{name}/start` | starts a stopped or failed server; a running one is left as it is |
//! | `POST /api/servers/{name}/stop` | stops it (it stays listed, `stopped`); how it ended |
//! | `GET /api/health` | the health monitor's view of each server: probes, failures, last latency |
//! | `POST /api/servers` | adds a server: `{"name": .., "command": .., "args": [..], "env": {..}, "cwd": ..}` (an `mcpServers` entry and its name); kept in the state file, so it is back after a restart; 201 with its status once launched, 409 if the name exists, 400 naming every problem |
//! | `DELETE /api/servers/{name}` | stops a server and removes it, from the config's servers too (kept in the state file); 404 if there is none |
//! | `POST /api/reload` | reads the config file again and restarts only the servers whose entry changed (as SIGHUP does); the report, or 422 with every error of the file |
//!
//! The same guards as `/mcp` apply to `/api/*`: the `Host` and `Origin` checks (a web page must
//! not reach the admin API through DNS rebinding) and the bearer token when one is set.
//! Errors are `{"error": "..."}` with a 4xx or 5xx status.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fleet_health_monitor::HealthMonitor;
use fleet_protocol::FleetError;
use fleet_protocol::messages::health::GetHealth;
use fleet_protocol::messages::server::{
    GetServerLogs, GetServerStatus, ListServers, RestartServer, StopServer,
};
use fleet_server_manager::ServerManager;
use kameo::actor::ActorRef;
use kameo::error::SendError;
use serde_json::json;
use tokio::sync::watch;

use crate::mcp_http::{McpHttpConfig, Refused, check_auth, check_origin};
use crate::reload::{ChangeError, ReloadError, Reloader};

#[derive(Clone)]
struct AdminState {
    manager: ActorRef<ServerManager>,
    health: ActorRef<HealthMonitor>,
    /// The enabled servers of the config now in force (updated by reloads).
    enabled: watch::Receiver<Vec<String>>,
    reloader: Arc<Reloader>,
    guard: Arc<McpHttpConfig>,
}

/// The routes above. The reloader's config names the servers `/readyz` waits for.
pub fn router(
    manager: ActorRef<ServerManager>,
    health: ActorRef<HealthMonitor>,
    reloader: Arc<Reloader>,
    guard: Arc<McpHttpConfig>,
) -> Router {
    let state = AdminState {
        manager,
        health,
        enabled: reloader.enabled(),
        reloader,
        guard,
    };
    // Every /api route is guarded once, here; the probes are open.
    let api = Router::new()
        .route("/api/servers", get(list).post(add))
        .route("/api/servers/{name}", get(one).delete(remove))
        .route("/api/servers/{name}/logs", get(logs))
        .route("/api/servers/{name}/restart", post(restart))
        .route("/api/servers/{name}/start", post(start))
        .route("/api/servers/{name}/stop", post(stop))
        .route("/api/health", get(health_report))
        .route("/api/reload", post(reload))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            |State(state): State<AdminState>, request: Request, next: Next| async move {
                if let Err(refused) = check_guards(&state, request.headers()) {
                    return refused.render(error);
                }
                match whole_body(request, state.guard.body_timeout).await {
                    Ok(request) => next.run(request).await,
                    Err(response) => response,
                }
            },
        ));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({"status": "alive"})) }),
        )
        .route("/readyz", get(readyz))
        .merge(api)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method (see `Allow`)",
            )
        })
        .with_state(state)
}

/// The largest admin request body: axum's default limit for `Json`, which would refuse more.
const ADMIN_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The request with its body read in full within `timeout`: a client that stalls mid-body gets
/// a 408 instead of holding its connection for ever; one whose body is too large, a 413.
async fn whole_body(request: Request, timeout: std::time::Duration) -> Result<Request, Response> {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, ADMIN_BODY_LIMIT)).await {
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
        Ok(Err(e)) if crate::mcp_http::over_limit(&e) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {ADMIN_BODY_LIMIT} bytes"),
        )),
        Ok(Err(e)) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("the body could not be read: {e}"),
        )),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {}s", timeout.as_secs_f64()),
        )),
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A failed ask as an HTTP error: an unknown server is 404; a server that would not start or
/// answer (a restart that failed) is 502, the fault of what the fleet runs rather than of the
/// fleet; the rest 500 or 503.
fn ask_error<M>(e: SendError<M, FleetError>) -> Response {
    match e {
        SendError::HandlerError(FleetError::UnknownServer { name }) => {
            error(StatusCode::NOT_FOUND, format!("no server named `{name}`"))
        }
        SendError::HandlerError(
            e @ (FleetError::Spawn { .. }
            | FleetError::Handshake { .. }
            | FleetError::ServerExited { .. }
            | FleetError::NotReady { .. }
            | FleetError::Timeout { .. }),
        ) => error(StatusCode::BAD_GATEWAY, e.to_string()),
        SendError::HandlerError(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        other => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the server manager is unavailable: {other}"),
        ),
    }
}

fn check_guards(state: &AdminState, headers: &HeaderMap) -> Result<(), Refused> {
    check_origin(&state.guard, headers)?;
    check_auth(&state.guard, headers)
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let Ok(servers) = state.manager.ask(ListServers).await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server manager is unavailable",
        );
    };
    let enabled = state.enabled.borrow().clone();
    let waiting: Vec<&str> = enabled
        .iter()
        .filter(|name| {
            !servers
                .iter()
                .any(|s| &s.name == *name && (s.state.is_serving() || s.state.is_terminal()))
        })
        .map(String::as_str)
        .collect();
    if waiting.is_empty() {
        Json(json!({"status": "ready", "servers": enabled.len()})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "starting", "waiting_for": waiting})),
        )
            .into_response()
    }
}

async fn list(State(state): State<AdminState>) -> Response {
    match state.manager.ask(ListServers).await {
        Ok(servers) => Json(servers).into_response(),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server manager is unavailable",
        ),
    }
}

async fn one(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    match state.manager.ask(GetServerStatus { name }).await {
        Ok(status) => Json(status).into_response(),
        Err(e) => ask_error(e),
    }
}

#[derive(serde::Deserialize)]
struct LogsQuery {
    lines: Option<usize>,
    after: Option<u64>,
}

async fn logs(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(r) => return error(r.status(), r.body_text()),
    };
    let max_lines = q.lines.unwrap_or(200).min(100_000);
    let ask = GetServerLogs {
        name,
        max_lines,
        after: q.after,
    };
    match state.manager.ask(ask).await {
        Ok(logs) => Json(logs).into_response(),
        Err(e) => ask_error(e),
    }
}

async fn restart(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    match state.manager.ask(RestartServer { name }).await {
        Ok(status) => Json(status).into_response(),
        Err(e) => ask_error(e),
    }
}

/// Starts a stopped or failed server; one that runs (or is on its way up or down) is left as
/// it is, and its status is the answer: a start must not end the calls it is serving.
async fn start(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    match state
        .manager
        .ask(GetServerStatus { name: name.clone() })
        .await
    {
        Ok(status) if !status.state.is_terminal() => Json(status).into_response(),
        Ok(_) => restart(State(state), Path(name)).await,
        Err(e) => ask_error(e),
    }
}

async fn reload(State(state): State<AdminState>) -> Response {
    match state.reloader.reload().await {
        Ok(report) => Json(report).into_response(),
        Err(ReloadError::Stopping) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "mcp-fleet is stopping; nothing was reloaded",
        ),
        Err(ReloadError::Config(errors)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "error": "the config has errors; nothing was changed",
                "errors": errors.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
    }
}

fn change_error(e: ChangeError) -> Response {
    let status = match &e {
        ChangeError::Exists(_) => StatusCode::CONFLICT,
        ChangeError::Unknown(_) => StatusCode::NOT_FOUND,
        ChangeError::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

/// The spec of a `POST /api/servers` body: its `name`, and the rest read as an `mcpServers`
/// entry by the config parser, so the API accepts and checks exactly what a config file does.
fn spec_from_body(body: serde_json::Value) -> Result<fleet_protocol::ServerSpec, Vec<String>> {
    let serde_json::Value::Object(mut entry) = body else {
        return Err(vec!["the body must be a JSON object".into()]);
    };
    let name = match entry.remove("name") {
        Some(serde_json::Value::String(n)) => n,
        _ => return Err(vec!["`name` (a string) is required".into()]),
    };
    let mut servers = serde_json::Map::new();
    servers.insert(name, serde_json::Value::Object(entry));
    let text = json!({ "mcpServers": servers }).to_string();
    let config =
        fleet_protocol::config::parse_mcp_servers_json_with_env("request body", &text, &|var| {
            std::env::var(var).ok()
        })
        .map_err(|errors| {
            errors
                .0
                .iter()
                .map(|e| format!("`{}`: {}", e.key, e.message))
                .collect::<Vec<_>>()
        })?;
    config
        .servers
        .into_iter()
        .next()
        .ok_or_else(|| vec!["a disabled server cannot be added".into()])
}

async fn add(
    State(state): State<AdminState>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    let body = match body {
        Ok(Json(body)) => body,
        Err(r) => return error(r.status(), r.body_text()),
    };
    let spec = match spec_from_body(body) {
        Ok(spec) => spec,
        Err(errors) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "the server is not valid", "errors": errors})),
            )
                .into_response();
        }
    };
    match state.reloader.add(spec).await {
        Ok(Ok(status)) => (StatusCode::CREATED, Json(status)).into_response(),
        // Added (and kept), but it did not start: say so, as a config file's server would.
        Ok(Err(e)) => (
            StatusCode::CREATED,
            Json(json!({"added": true, "started": false, "error": e.to_string()})),
        )
            .into_response(),
        Err(e) => change_error(e),
    }
}

async fn remove(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    match state.reloader.remove(&name).await {
        Ok(()) => Json(json!({"removed": name})).into_response(),
        Err(e) => change_error(e),
    }
}

async fn stop(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    match state.manager.ask(StopServer { name }).await {
        Ok(stopped) => Json(json!({
            "name": stopped.name,
            "pid": stopped.pid,
            "method": format!("{:?}", stopped.method),
            "exit": stopped.exit.as_ref().map(ToString::to_string),
            "took_ms": stopped.took.as_millis() as u64,
        }))
        .into_response(),
        Err(e) => ask_error(e),
    }
}

async fn health_report(State(state): State<AdminState>) -> Response {
    match state.health.ask(GetHealth).await {
        Ok(h) => Json(h).into_response(),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the health monitor is unavailable",
        ),
    }
}
