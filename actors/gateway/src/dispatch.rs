//! Answers one client request from the catalog and the servers: the MCP methods the gateway
//! serves itself (lists, ping, discover) and the ones it forwards to the owning server, with the
//! exposed name swapped for the server's own. Runs in a task, never in an actor's handler.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use fleet_protocol::FleetError;
use fleet_protocol::jsonrpc::{ErrorObject, Notification, Request, Response, error_codes};
use fleet_protocol::mcp::{self, methods};
use fleet_protocol::messages::gateway::ClientReply;
use fleet_protocol::messages::server::{CallAnswer, CallServer, DirectServer, LaneCall};
use kameo::actor::ReplyRecipient;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::GatewayConfig;
use crate::catalog::{Catalog, ListKind};

/// The 2025-era versions the gateway negotiates, newest first.
pub const LEGACY_VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Every version the gateway speaks, newest first.
pub fn supported_versions() -> Vec<String> {
    std::iter::once(mcp::MODERN_VERSION)
        .chain(LEGACY_VERSIONS)
        .map(str::to_owned)
        .collect()
}

/// Refuses an `MCP-Protocol-Version` header of no version the gateway speaks.
pub fn check_version(header: Option<&str>) -> Result<(), FleetError> {
    match header {
        Some(v) if v != mcp::MODERN_VERSION && !LEGACY_VERSIONS.contains(&v) => {
            Err(FleetError::UnsupportedVersion {
                version: v.to_owned(),
                supported: supported_versions(),
            })
        }
        _ => Ok(()),
    }
}

/// JSON-RPC error code for "resource not found" in the 2025 era (2026-07-28 uses -32602).
pub const RESOURCE_NOT_FOUND: i64 = -32002;

/// Methods of the 2025 era that 2026-07-28 removed.
const LEGACY_ONLY: [&str; 5] = [
    methods::INITIALIZE,
    methods::PING,
    methods::SET_LOG_LEVEL,
    methods::RESOURCES_SUBSCRIBE,
    methods::RESOURCES_UNSUBSCRIBE,
];

/// The methods the gateway forwards to the server that owns the name or URI; every other
/// method it answers itself.
pub const FORWARDED: [&str; 4] = [
    methods::TOOLS_CALL,
    methods::PROMPTS_GET,
    methods::RESOURCES_READ,
    methods::COMPLETE,
];

/// 2026-07-28 results that clients may cache: they carry `ttlMs` and `cacheScope`.
const CACHEABLE: [&str; 6] = [
    methods::TOOLS_LIST,
    methods::PROMPTS_LIST,
    methods::RESOURCES_LIST,
    methods::RESOURCE_TEMPLATES_LIST,
    methods::RESOURCES_READ,
    methods::DISCOVER,
];

/// The way to the servers.
pub type Servers = ReplyRecipient<CallServer, CallAnswer, FleetError>;

/// Each server's own actor by name, kept by the server manager (the same type as its
/// `ServerDirectory`; this crate names it without depending on the manager's). A call goes by
/// the server's lane when it is open, else to its actor.
pub type ServerDirectory = Arc<RwLock<HashMap<String, DirectServer<Servers>>>>;

/// Everything a request needs, cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    /// The server manager.
    pub servers: Servers,
    /// The servers' actors, asked directly when a server is in it.
    pub directory: Option<ServerDirectory>,
    pub config: Arc<GatewayConfig>,
}

/// One request and where its side messages go.
pub struct Call {
    pub request: Request,
    /// Whether the client speaks 2026-07-28 (results then carry `resultType`).
    pub modern: bool,
    pub catalog: Arc<Catalog>,
    pub progress: Option<mpsc::Sender<Notification>>,
    pub cancel: CancellationToken,
}

/// A client request handed back to whoever sent it, to be served in the sender's own task
/// (the port's: the HTTP request's) instead of a task of the actor's.
pub(crate) struct Prepared {
    pub(crate) dispatcher: Dispatcher,
    pub(crate) call: Call,
    pub(crate) session: Option<Arc<str>>,
    /// Dropped when the request ends, answered or abandoned (the session's in-flight entry).
    pub(crate) done: Option<Box<dyn Send + Sync>>,
}

impl Prepared {
    pub(crate) async fn run(self) -> Result<ClientReply, FleetError> {
        let response = self
            .dispatcher
            .dispatch_traced(self.call, self.session.as_deref())
            .await;
        drop(self.done);
        Ok(ClientReply::Response {
            response,
            session: None,
        })
    }
}

/// What an actor makes of a client message the port sends it ([`Serve`]).
#[derive(kameo::Reply)]
pub(crate) enum Served {
    /// The answer.
    Now(Result<ClientReply, FleetError>),
    /// A request for the port to run.
    Later(Prepared),
}

/// A client message from the port, which serves a request itself (internal).
pub(crate) struct Serve(pub(crate) fleet_protocol::messages::gateway::ClientMessage);

/// What the gateway says it can do.
pub fn capabilities() -> Value {
    json!({
        "tools": { "listChanged": true },
        "resources": { "listChanged": true },
        "prompts": { "listChanged": true },
        "completions": {},
        "logging": {},
    })
}

pub fn server_info() -> Value {
    json!({ "name": "mcp-fleet", "title": "mcp-fleet gateway", "version": env!("CARGO_PKG_VERSION") })
}

pub const INSTRUCTIONS: &str = "mcp-fleet: the tools, resources and prompts of every server in the fleet. Tool and prompt names are `server__name`.";

/// The `initialize` result for the version the client asked for.
pub fn initialize_result(requested: Option<&str>) -> Value {
    let version = requested
        .filter(|v| LEGACY_VERSIONS.contains(v))
        .unwrap_or(LEGACY_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": capabilities(),
        "serverInfo": server_info(),
        "instructions": INSTRUCTIONS,
    })
}

/// The `server/discover` result (server information goes in `_meta` in this era).
pub fn discover_result() -> Value {
    json!({
        "resultType": "complete",
        "supportedVersions": [mcp::MODERN_VERSION],
        "capabilities": capabilities(),
        "instructions": INSTRUCTIONS,
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": { (mcp::META_SERVER_INFO): server_info() },
    })
}

/// A JSON-RPC error on its way to becoming a response, with the top-level members of a server's
/// error response that JSON-RPC does not define (boxed: errors are the rare path).
struct Failed {
    error: ErrorObject,
    extra: Map<String, Value>,
}

type Failure = Box<Failed>;

fn fail(code: i64, message: impl Into<String>) -> Failure {
    Box::new(Failed {
        error: ErrorObject::new(code, message),
        extra: Map::new(),
    })
}

/// A failed call's error for the client: a server's own error response passes as it came, its
/// other members with it; the fleet's failures become its JSON-RPC errors.
fn failed(e: FleetError) -> Failure {
    match e {
        FleetError::Upstream { error, extra, .. } => Box::new(Failed {
            error: *error,
            extra,
        }),
        e => Box::new(Failed {
            error: e.to_jsonrpc(),
            extra: Map::new(),
        }),
    }
}

fn error(request: &Request, code: i64, message: impl Into<String>) -> Response {
    Response::error(Some(request.id.clone()), ErrorObject::new(code, message))
}

impl Dispatcher {
    /// [`Dispatcher::dispatch`] inside a span `mcp_request` with the session (empty for a
    /// stateless request), the method, the client's request id and, once routed, the server and
    /// the way the call took to it (`route`: `lane`, `actor` or `manager`, see
    /// [`Dispatcher::forward`]); a debug event at the end says how it went and how long it took.
    ///
    /// The span is at `debug`: nothing inside a request logs at `info` or above, and at `info`
    /// the fmt layer would still format the span's fields for every request, about 1 % of the
    /// samples of a profile of the gateway under load (BENCHMARKS.md).
    pub async fn dispatch_traced(&self, call: Call, session: Option<&str>) -> Response {
        use tracing::Instrument;
        let span = tracing::debug_span!(
            "mcp_request",
            session = session.unwrap_or(""),
            method = %call.request.method,
            id = %call.request.id,
            server = tracing::field::Empty,
            route = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let response = self.dispatch(call).instrument(span.clone()).await;
        let _entered = span.enter();
        match &response.outcome {
            fleet_protocol::jsonrpc::Outcome::Error(e) => {
                tracing::debug!(code = e.code, error = %e.message, elapsed_us = started.elapsed().as_micros() as u64, "request answered with an error")
            }
            _ => tracing::debug!(
                elapsed_us = started.elapsed().as_micros() as u64,
                "request answered"
            ),
        }
        response
    }

    /// Answers the request. Never fails: every failure is a JSON-RPC error response.
    pub async fn dispatch(&self, call: Call) -> Response {
        let Call {
            mut request,
            modern,
            catalog,
            progress,
            cancel,
        } = call;
        // The codec keeps them among a request's other members; forwarded, a server could take
        // the request for an answer to one of its own.
        if let Some(member) = ["result", "error"]
            .into_iter()
            .find(|m| request.extra.contains_key(*m))
        {
            return error(
                &request,
                error_codes::INVALID_REQUEST,
                format!("a request has no `{member}` member (only a response does)"),
            );
        }
        if modern && LEGACY_ONLY.contains(&request.method.as_str()) {
            return error(
                &request,
                error_codes::METHOD_NOT_FOUND,
                format!(
                    "`{}` does not exist in {}",
                    request.method,
                    mcp::MODERN_VERSION
                ),
            );
        }
        let answer = match request.method.as_str() {
            methods::PING => Ok(json!({}).into()),
            methods::DISCOVER => Ok(discover_result().into()),
            methods::INITIALIZE => {
                return error(
                    &request,
                    error_codes::INVALID_REQUEST,
                    "this session is already initialized",
                );
            }
            methods::TOOLS_LIST => list(request.params.take(), &catalog, ListKind::Tools),
            methods::RESOURCES_LIST => list(request.params.take(), &catalog, ListKind::Resources),
            methods::RESOURCE_TEMPLATES_LIST => {
                list(request.params.take(), &catalog, ListKind::ResourceTemplates)
            }
            methods::PROMPTS_LIST => list(request.params.take(), &catalog, ListKind::Prompts),
            methods::TOOLS_CALL
            | methods::PROMPTS_GET
            | methods::RESOURCES_READ
            | methods::COMPLETE => match route(&mut request, &catalog, modern) {
                Ok((server, params)) => {
                    // The client's own members go with its request.
                    let extra = std::mem::take(&mut request.extra);
                    self.forward(&request, server, params, extra, progress, cancel)
                        .await
                }
                Err(e) => Err(e),
            },
            other => Err(fail(
                error_codes::METHOD_NOT_FOUND,
                format!("method `{other}` is not offered by mcp-fleet"),
            )),
        };
        match answer {
            Ok(CallAnswer { mut result, extra }) => {
                if modern {
                    mark_complete(&mut result, CACHEABLE.contains(&request.method.as_str()));
                }
                Response {
                    extra,
                    ..Response::result(request.id, result)
                }
            }
            Err(e) => {
                let Failed { error, extra } = *e;
                Response {
                    extra,
                    ..Response::error(Some(request.id), error)
                }
            }
        }
    }

    /// Sends the call to `server`: by the server's lane when it takes it (route `lane`), else
    /// to the server's actor (route `actor`: a call with progress, or a server that does not
    /// serve), else to the server manager (route `manager`: no directory, a server it lacks,
    /// or an actor that has just stopped).
    async fn forward(
        &self,
        request: &Request,
        server: Arc<str>,
        params: Value,
        extra: Map<String, Value>,
        progress: Option<mpsc::Sender<Notification>>,
        cancel: CancellationToken,
    ) -> Result<CallAnswer, Failure> {
        let span = tracing::Span::current();
        span.record("server", &*server);
        let call = CallServer {
            server: server.to_string(),
            method: request.method.clone(),
            params: Some(params),
            timeout: self.config.request_timeout,
            cancel: Some(cancel),
            progress,
            extra,
        };
        let direct = self.directory.as_ref().and_then(|d| {
            d.read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&*server)
                .cloned()
        });
        let lost = |e: &dyn std::fmt::Display| {
            fail(
                error_codes::INTERNAL_ERROR,
                // The manager hands the call on to the server's actor with our reply sender,
                // so a reply that never comes may be either one's.
                format!(
                    "server `{server}` could not be reached (its actor or the server manager stopped): {e}"
                ),
            )
        };
        let answer = match direct {
            Some(direct) => match direct.lane.call(call) {
                LaneCall::Sent(answer) => {
                    span.record("route", "lane");
                    // The server's table answers every call it takes; a dropped reply is lost.
                    return match answer.await {
                        Ok(Ok(v)) => Ok(v),
                        Ok(Err(e)) => Err(failed(e)),
                        Err(e) => Err(fail(
                            error_codes::INTERNAL_ERROR,
                            format!("server `{server}` dropped the call unanswered: {e}"),
                        )),
                    };
                }
                // A server's actor that has just stopped hands the call back: the manager then
                // answers with what it knows of the server.
                LaneCall::HandedBack(call) => {
                    span.record("route", "actor");
                    match direct.actor.ask(*call).await {
                        Err(kameo::error::SendError::ActorNotRunning(call)) => {
                            span.record("route", "manager");
                            self.servers.ask(call).await
                        }
                        other => other,
                    }
                }
            },
            None => {
                span.record("route", "manager");
                self.servers.ask(call).await
            }
        };
        match answer {
            Ok(v) => Ok(v),
            Err(kameo::error::SendError::HandlerError(e)) => Err(failed(e)),
            Err(e) => Err(lost(&e)),
        }
    }
}

/// A 2026-era result says whether it is complete, and a cacheable one for how long it may be
/// cached. A 2025-era server's result lacks these members; one that has them keeps its own.
fn mark_complete(result: &mut Value, cacheable: bool) {
    if let Value::Object(obj) = result {
        obj.entry("resultType")
            .or_insert_with(|| Value::String("complete".into()));
        if cacheable {
            obj.entry("ttlMs").or_insert_with(|| json!(0));
            obj.entry("cacheScope")
                .or_insert_with(|| Value::String("private".into()));
        }
    }
}

/// A request's params as an object (taken, not copied: the request is not sent on as it came).
fn params_object(params: Option<Value>) -> Result<Map<String, Value>, Failure> {
    match params {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(fail(
            error_codes::INVALID_PARAMS,
            "params must be an object",
        )),
    }
}

/// A merged list, in one page (the gateway issues no cursors).
fn list(params: Option<Value>, catalog: &Catalog, kind: ListKind) -> Result<CallAnswer, Failure> {
    let params = params_object(params)?;
    if params.get("cursor").is_some_and(|c| !c.is_null()) {
        return Err(fail(
            error_codes::INVALID_PARAMS,
            "invalid cursor: mcp-fleet lists everything in one page",
        ));
    }
    let mut result = Map::new();
    result.insert(kind.key().into(), Value::Array(catalog.list(kind).to_vec()));
    Ok(Value::Object(result).into())
}

/// The owning server of a request and the params to send it (taken from the request), with the
/// exposed name replaced by the server's own.
fn route(
    request: &mut Request,
    catalog: &Catalog,
    modern: bool,
) -> Result<(Arc<str>, Value), Failure> {
    let mut params = params_object(request.params.take())?;
    let invalid = |m: String| fail(error_codes::INVALID_PARAMS, m);
    let server = match request.method.as_str() {
        methods::TOOLS_CALL | methods::PROMPTS_GET => {
            let what = if request.method == methods::TOOLS_CALL {
                "tool"
            } else {
                "prompt"
            };
            let name = params
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("`name` must name a {what}")))?;
            // A server not serving now keeps its names: the call waits for it there, or is told
            // its state.
            let route = if request.method == methods::TOOLS_CALL {
                catalog.tool(name).or_else(|| catalog.withdrawn_tool(name))
            } else {
                catalog
                    .prompt(name)
                    .or_else(|| catalog.withdrawn_prompt(name))
            }
            .ok_or_else(|| invalid(format!("unknown {what} `{name}`")))?;
            let server = route.server.clone();
            params.insert("name".into(), Value::String(route.name.clone()));
            server
        }
        methods::RESOURCES_READ => {
            let uri = params
                .get("uri")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("`uri` must be a string".into()))?;
            catalog.resource_server(uri).cloned().ok_or_else(|| {
                let code = if modern {
                    error_codes::INVALID_PARAMS
                } else {
                    RESOURCE_NOT_FOUND
                };
                let mut e = fail(code, format!("resource not found: {uri}"));
                e.error.data = Some(json!({ "uri": uri }));
                e
            })?
        }
        _ => {
            // completion/complete: the reference names a prompt or a resource (template).
            let reference = params
                .get_mut("ref")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| invalid("`ref` must be an object".into()))?;
            match reference.get("type").and_then(Value::as_str) {
                Some("ref/prompt") => {
                    let name = reference.get("name").and_then(Value::as_str).unwrap_or("");
                    let route = catalog
                        .prompt(name)
                        .or_else(|| catalog.withdrawn_prompt(name))
                        .ok_or_else(|| invalid(format!("unknown prompt `{name}`")))?;
                    let server = route.server.clone();
                    reference.insert("name".into(), Value::String(route.name.clone()));
                    server
                }
                Some("ref/resource") => {
                    let uri = reference.get("uri").and_then(Value::as_str).unwrap_or("");
                    catalog
                        .resource_server(uri)
                        .cloned()
                        .ok_or_else(|| invalid(format!("no server offers `{uri}`")))?
                }
                other => return Err(invalid(format!("unknown reference type {other:?}"))),
            }
        }
    };
    Ok((server, Value::Object(params)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ServerLists;

    /// A completion of a prompt of a server that is not serving goes to it, as `prompts/get`
    /// does, to wait there or be told its state, rather than the prompt being unknown.
    #[test]
    fn a_completion_of_a_prompt_of_a_server_not_serving_goes_to_it() {
        let mut lists = ServerLists::default();
        lists
            .lists
            .insert(ListKind::Prompts, vec![json!({"name": "p0"})]);
        let catalog = Catalog::build([("gamma", &lists, false)], "__");
        let mut request = Request::new(
            1,
            methods::COMPLETE,
            Some(json!({"ref": {"type": "ref/prompt", "name": "gamma__p0"},
                "argument": {"name": "a", "value": ""}})),
        );
        let Ok((server, params)) = route(&mut request, &catalog, false) else {
            panic!("not routed");
        };
        assert_eq!((&*server, &params["ref"]["name"]), ("gamma", &json!("p0")));
    }
}
