//! The gateway actors alone: a scripted server manager (a test actor answering `CallServer` and
//! `GetServerStatus` as the real one would, for servers whose tools the test sets) and server
//! events sent by the test. Sessions, the catalog following events, list changes reaching open
//! streams, withdrawal, expiry, and the stateless path.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleet_gateway::{
    Gateway, GatewayArgs, GatewayConfig, GatewayPort, ServerDirectory, SessionDirectory, event_sink,
};
use fleet_protocol::jsonrpc::{ErrorObject, Message, Notification, Outcome, Request};
use fleet_protocol::messages::gateway::{
    ClientMessage, ClientReply, CloseSession, GetGatewayStats, OpenStream,
};
use fleet_protocol::messages::metrics::{MetricEvent, RecordMetric, SessionEnd};
use fleet_protocol::messages::server::{
    CallAnswer, CallServer, CallServerReply, Delivery, DirectServer, EventSink, GetServerStatus,
    LaneCall, ServerEvent, ServerLane,
};
use fleet_protocol::status::{Era, Handshake};
use fleet_protocol::{FleetError, ServerState, ServerStatus};
use kameo::Actor;
use kameo::actor::{ActorRef, Spawn};
use kameo::error::Infallible;
use kameo::mailbox;
use kameo::message::{Context, Message as KameoMessage};
use kameo::reply::DelegatedReply;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Servers by name, each with its tool names.
type Tools = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

/// Answers as the server manager would for the servers in `tools`.
struct ScriptedManager {
    tools: Tools,
}

impl Actor for ScriptedManager {
    type Args = Tools;
    type Error = Infallible;
    async fn on_start(tools: Tools, _: ActorRef<Self>) -> Result<Self, Infallible> {
        Ok(ScriptedManager { tools })
    }
}

impl KameoMessage<CallServer> for ScriptedManager {
    type Reply = DelegatedReply<CallServerReply>;
    async fn handle(
        &mut self,
        msg: CallServer,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        // The tools themselves come from the status, as the real manager lists them.
        if !self.tools.lock().unwrap().contains_key(&msg.server) {
            return ctx.reply(Err(FleetError::UnknownServer { name: msg.server }));
        }
        let params = msg.params.unwrap_or_default();
        match (msg.method.as_str(), params["name"].as_str().unwrap_or("")) {
            // Answers only when cancelled, as the real manager does for a call it abandons.
            ("tools/call", "slow") => {
                let cancel = msg.cancel.unwrap_or_default();
                ctx.spawn(async move {
                    cancel.cancelled().await;
                    Err(FleetError::Cancelled {
                        server: msg.server,
                        method: msg.method,
                    })
                })
            }
            // A server's error answer, with the top-level members the call came with and one
            // of its own.
            ("tools/call", "fails") => ctx.reply(Err(FleetError::Upstream {
                server: msg.server,
                error: Box::new(ErrorObject::new(-32000, "it failed")),
                extra: with_own_member(msg.extra),
            })),
            // The answer has the call's top-level members, as a server that echoes them would,
            // and one of its own.
            ("tools/call", name) => ctx.reply(Ok(CallAnswer {
                result: json!({"content": [{"type": "text", "text": format!("{}:{name}", msg.server)}], "extra": {"kept": 1}}),
                extra: with_own_member(msg.extra),
            })),
            (other, _) => ctx.reply(Err(FleetError::Unsupported { what: other.into() })),
        }
    }
}

/// The top-level members of a call, and `x-server`, the scripted server's own.
fn with_own_member(mut extra: Map<String, Value>) -> Map<String, Value> {
    extra.insert("x-server".into(), json!("scripted"));
    extra
}

impl KameoMessage<GetServerStatus> for ScriptedManager {
    type Reply = Result<ServerStatus, FleetError>;
    async fn handle(
        &mut self,
        msg: GetServerStatus,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let tools: Vec<Value> = self
            .tools
            .lock()
            .unwrap()
            .get(&msg.name)
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|t| json!({"name": t, "inputSchema": {"type": "object"}, "x-kept": true}))
            .collect();
        let mut st = ServerStatus::new(msg.name, ServerState::Ready);
        st.handshake = Some(Arc::new(Handshake {
            era: Era::Legacy,
            protocol_version: "2025-11-25".into(),
            server_info: json!({}),
            // A server named `p...` declares prompts too, which this manager cannot list.
            capabilities: if st.name.starts_with('p') {
                json!({"tools": {}, "prompts": {}})
            } else {
                json!({"tools": {}})
            },
            instructions: None,
            tools: Arc::from(tools),
            took: Duration::ZERO,
        }));
        Ok(st)
    }
}

/// Keeps every metric event the gateway sends, in order (the collector is not under test here).
struct MetricSink {
    events: Arc<Mutex<Vec<MetricEvent>>>,
}

impl Actor for MetricSink {
    type Args = Arc<Mutex<Vec<MetricEvent>>>;
    type Error = Infallible;
    async fn on_start(events: Self::Args, _: ActorRef<Self>) -> Result<Self, Infallible> {
        Ok(MetricSink { events })
    }
}

impl KameoMessage<RecordMetric> for MetricSink {
    type Reply = ();
    async fn handle(&mut self, msg: RecordMetric, _: &mut Context<Self, ()>) {
        self.events.lock().unwrap().push(msg.event);
    }
}

struct Setup {
    gateway: ActorRef<Gateway>,
    /// The same gateway, as `/mcp` reaches it: open sessions directly.
    port: GatewayPort,
    /// The gateway's subscription, as the server manager holds it.
    events: EventSink,
    tools: Tools,
    metrics: Arc<Mutex<Vec<MetricEvent>>>,
}

fn setup(config: GatewayConfig) -> Setup {
    setup_with_directory(config, None)
}

fn setup_with_directory(config: GatewayConfig, directory: Option<ServerDirectory>) -> Setup {
    let tools: Tools = Arc::default();
    let manager = ScriptedManager::spawn(tools.clone());
    let metrics: Arc<Mutex<Vec<MetricEvent>>> = Arc::default();
    let sink = MetricSink::spawn(metrics.clone());
    let sessions = SessionDirectory::default();
    let gateway = Gateway::spawn_with_mailbox(
        GatewayArgs {
            config: Arc::new(config),
            servers: manager.clone().reply_recipient(),
            status: manager.reply_recipient(),
            metrics: Some(sink.recipient()),
            directory,
            sessions: sessions.clone(),
            events: None,
        },
        mailbox::unbounded(),
    );
    let events = event_sink(&gateway);
    Setup {
        port: GatewayPort::new(gateway.clone(), sessions),
        gateway,
        events,
        tools,
        metrics,
    }
}

impl Setup {
    fn server(&self, name: &str, tools: &[&str], state: ServerState) {
        self.tools
            .lock()
            .unwrap()
            .insert(name.into(), tools.iter().map(|t| t.to_string()).collect());
        let delivered = self.events.send(ServerEvent::StateChanged {
            server: name.into(),
            state,
        });
        assert_eq!(delivered, Delivery::Delivered);
    }

    async fn send(
        &self,
        session: Option<&str>,
        message: Message,
    ) -> Result<ClientReply, FleetError> {
        self.gateway
            .ask(client_message(session, None, message))
            .await
            .map_err(handler_error)
    }

    async fn request(&self, session: &str, method: &str, params: Value) -> Value {
        let msg = Message::Request(Request::new(1, method, Some(params)));
        match self.send(Some(session), msg).await.unwrap() {
            ClientReply::Response { response, .. } => match response.outcome {
                Outcome::Result(v) => v,
                Outcome::Error(e) => json!({"error": e.code, "message": e.message}),
            },
            other => panic!("{other:?}"),
        }
    }

    async fn open(&self) -> String {
        let init = Message::Request(Request::new(
            0,
            "initialize",
            Some(json!({"protocolVersion": "2025-06-18"})),
        ));
        match self.send(None, init).await.unwrap() {
            ClientReply::Response { response, session } => {
                let Outcome::Result(r) = response.outcome else {
                    panic!()
                };
                assert_eq!(
                    r["protocolVersion"], "2025-06-18",
                    "the client's version is kept"
                );
                session.unwrap()
            }
            other => panic!("{other:?}"),
        }
    }

    async fn tool_names(&self, session: &str) -> Vec<String> {
        let list = self.request(session, "tools/list", json!({})).await;
        list["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Waits until `check` holds, failing after 5 s.
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_catalog_follows_server_events_and_sessions_are_told() {
    let s = setup(GatewayConfig::default());
    let session = s.open().await;
    assert_eq!(session.len(), 32, "128 bits as hex");
    assert!(session.chars().all(|c| c.is_ascii_hexdigit()));
    let (tx, mut stream) = mpsc::channel(16);
    s.gateway
        .ask(OpenStream {
            session: session.clone(),
            sink: tx,
        })
        .await
        .unwrap();

    s.server("b", &["echo"], ServerState::Ready);
    s.server("a", &["echo", "add"], ServerState::Ready);
    eventually("both servers listed", async || {
        s.tool_names(&session).await.len() == 3
    })
    .await;
    assert_eq!(
        s.tool_names(&session).await,
        ["a__echo", "a__add", "b__echo"]
    );
    let told = tokio::time::timeout(Duration::from_secs(5), stream.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(told.method(), Some("notifications/tools/list_changed"));

    // Calls go to the owner with its own name; the result is the server's, untouched.
    let r = s
        .request(&session, "tools/call", json!({"name": "b__echo"}))
        .await;
    assert_eq!(
        r,
        json!({"content": [{"type": "text", "text": "b:echo"}], "extra": {"kept": 1}})
    );

    // A server that restarts is withdrawn from the lists at once, but a call of its tool
    // still goes to it (the server manager waits a while for it to be ready): the name is
    // not unknown.
    s.server("a", &["echo", "add"], ServerState::Restarting);
    eventually("a withdrawn", async || {
        s.tool_names(&session).await == ["b__echo"]
    })
    .await;
    let r = s
        .request(&session, "tools/call", json!({"name": "a__add"}))
        .await;
    assert_eq!(r["content"][0]["text"], "a:add", "{r}");
    // So does one to a server that stopped: it says why it cannot serve.
    s.server("a", &["echo", "add"], ServerState::Stopped);
    let r = s
        .request(&session, "tools/call", json!({"name": "a__add"}))
        .await;
    assert_eq!(r["content"][0]["text"], "a:add", "{r}");
    // A name no server ever offered is unknown.
    let r = s
        .request(&session, "tools/call", json!({"name": "a__nope"}))
        .await;
    assert_eq!(r["error"], -32602);
    // Ready again: back.
    s.server("a", &["echo"], ServerState::Ready);
    eventually("a back", async || {
        s.tool_names(&session).await == ["a__echo", "b__echo"]
    })
    .await;
}

/// A removed server's tools are unknown names at once, not routes to a server that is gone.
#[tokio::test]
async fn a_removed_servers_tools_are_unknown() {
    let s = setup(GatewayConfig::default());
    let session = s.open().await;
    s.server("a", &["echo"], ServerState::Ready);
    s.server("b", &["echo"], ServerState::Ready);
    eventually("both listed", async || {
        s.tool_names(&session).await.len() == 2
    })
    .await;
    s.server("a", &["echo"], ServerState::Stopped);
    let delivered = s.events.send(ServerEvent::Removed { server: "a".into() });
    assert_eq!(delivered, Delivery::Delivered);
    eventually("a's tool unknown", async || {
        let r = s
            .request(&session, "tools/call", json!({"name": "a__echo"}))
            .await;
        r["error"] == -32602
    })
    .await;
    assert_eq!(s.tool_names(&session).await, ["b__echo"]);
}

/// A request's top-level members that JSON-RPC does not define go to its server with it, and
/// the server's come back with its answer, a result or an error. The gateway's own answers
/// (lists) have none.
#[tokio::test]
async fn top_level_members_go_to_the_server_and_its_come_back() {
    let s = setup(GatewayConfig::default());
    s.server("b", &["echo", "fails"], ServerState::Ready);
    let session = s.open().await;
    eventually("b listed", async || s.tool_names(&session).await.len() == 2).await;
    let mut extra = Map::new();
    extra.insert("x-trace".into(), json!({"id": "t-1"}));
    let send = async |method: &str, params: Value| {
        let request = Request {
            extra: extra.clone(),
            ..Request::new(7, method, Some(params))
        };
        match s.send(Some(&session), Message::Request(request)).await {
            Ok(ClientReply::Response { response, .. }) => response,
            other => panic!("{other:?}"),
        }
    };
    // The scripted manager answers with the members the call came with, and its own.
    let answered = with_own_member(extra.clone());
    let r = send("tools/call", json!({"name": "b__echo"})).await;
    assert!(matches!(r.outcome, Outcome::Result(_)), "{r:?}");
    assert_eq!(r.extra, answered);
    let r = send("tools/call", json!({"name": "b__fails"})).await;
    assert!(
        matches!(&r.outcome, Outcome::Error(e) if e.code == -32000),
        "{r:?}"
    );
    assert_eq!(r.extra, answered);
    let r = send("tools/list", json!({})).await;
    assert!(matches!(r.outcome, Outcome::Result(_)), "{r:?}");
    assert!(r.extra.is_empty(), "{r:?}");
    // A request with a response's member is refused, not forwarded.
    let request = Request {
        extra: [("result".to_owned(), json!({}))].into_iter().collect(),
        ..Request::new(8, "tools/call", Some(json!({"name": "b__echo"})))
    };
    let Ok(ClientReply::Response { response: r, .. }) =
        s.send(Some(&session), Message::Request(request)).await
    else {
        panic!("no response")
    };
    assert!(
        matches!(&r.outcome, Outcome::Error(e) if e.code == -32600 && e.message.contains("`result`")),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_list_that_cannot_be_read_leaves_the_servers_other_items() {
    let s = setup(GatewayConfig::default());
    // `p` declares prompts, and its prompts/list fails: its tools are offered all the same.
    s.server("p", &["echo"], ServerState::Ready);
    let a = s.open().await;
    eventually("p's tools listed", async || {
        s.tool_names(&a).await == ["p__echo"]
    })
    .await;
    let prompts = s.request(&a, "prompts/list", json!({})).await;
    assert_eq!(prompts["prompts"], json!([]), "{prompts}");
}

#[tokio::test]
async fn the_event_sink_is_gone_once_the_gateway_is() {
    let s = setup(GatewayConfig::default());
    let event = || ServerEvent::StateChanged {
        server: "a".into(),
        state: ServerState::Ready,
    };
    assert_eq!(s.events.send(event()), Delivery::Delivered);
    s.gateway.stop_gracefully().await.unwrap();
    s.gateway.wait_for_shutdown().await;
    assert_eq!(s.events.send(event()), Delivery::Gone);
}

#[tokio::test]
async fn sessions_are_found_by_id_and_end_by_delete_or_ttl() {
    let s = setup(GatewayConfig {
        session_idle_ttl: Duration::from_millis(300),
        sweep_every: Duration::from_millis(50),
        ..GatewayConfig::default()
    });
    let ping = || Message::Request(Request::new(5, "ping", None));
    assert!(matches!(
        s.send(None, ping()).await,
        Err(FleetError::MissingSession)
    ));
    assert!(matches!(
        s.send(Some("nope"), ping()).await,
        Err(FleetError::UnknownSession { .. })
    ));
    let a = s.open().await;
    let b = s.open().await;
    assert_ne!(a, b);
    assert_eq!(s.request(&a, "ping", json!({})).await, json!({}));
    s.gateway
        .ask(CloseSession { session: a.clone() })
        .await
        .unwrap();
    assert!(matches!(
        s.send(Some(&a), ping()).await,
        Err(FleetError::UnknownSession { .. })
    ));
    eventually("b to expire", async || {
        let st = s.gateway.ask(GetGatewayStats).await.unwrap();
        st.active_sessions == 0 && st.sessions_expired == 1 && st.sessions_closed == 1
    })
    .await;
    assert!(matches!(
        s.send(Some(&b), ping()).await,
        Err(FleetError::UnknownSession { .. })
    ));

    // The metrics say the same: two created, one closed, one expired; and the messages the
    // gateway and the sessions handled are reported (by the sweep, with nothing else to do).
    let count = |f: &dyn Fn(&MetricEvent) -> bool| -> usize {
        s.metrics.lock().unwrap().iter().filter(|e| f(e)).count()
    };
    eventually("session messages reported", async || {
        count(&|e| matches!(e, MetricEvent::MessagesHandled { actor, .. } if actor == "session"))
            > 0
    })
    .await;
    assert_eq!(count(&|e| matches!(e, MetricEvent::SessionCreated)), 2);
    assert_eq!(
        count(&|e| matches!(
            e,
            MetricEvent::SessionEnded {
                reason: SessionEnd::Closed
            }
        )),
        1
    );
    assert_eq!(
        count(&|e| matches!(
            e,
            MetricEvent::SessionEnded {
                reason: SessionEnd::Expired
            }
        )),
        1
    );
    let handled = |who: &str| -> u64 {
        s.metrics
            .lock()
            .unwrap()
            .iter()
            .map(|e| match e {
                MetricEvent::MessagesHandled { actor, count } if actor == who => *count,
                _ => 0,
            })
            .sum()
    };
    // Session a handled the ping; both handled nothing else that was counted yet.
    assert!(handled("session") >= 1, "{:?}", s.metrics.lock().unwrap());
    assert!(handled("gateway") >= 6, "{:?}", s.metrics.lock().unwrap());
}

/// A client message through the port, with an optional `MCP-Protocol-Version` header.
async fn via_port(
    s: &Setup,
    session: Option<&str>,
    version: Option<&str>,
    message: Message,
) -> Result<ClientReply, FleetError> {
    s.port
        .send(client_message(session, version, message))
        .await
        .map_err(handler_error)
}

/// A server's lane as the server manager's behaves at its edge: while `open`, it takes an
/// ordinary call and answers it itself (`lane:<tool>`); it hands back a call with a progress
/// sink, and every call while closed.
#[derive(Default)]
struct ScriptedLane {
    open: std::sync::atomic::AtomicBool,
    taken: std::sync::atomic::AtomicUsize,
}

impl ServerLane for ScriptedLane {
    fn call(&self, call: CallServer) -> LaneCall {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.open.load(Relaxed) || call.progress.is_some() {
            return LaneCall::HandedBack(Box::new(call));
        }
        self.taken.fetch_add(1, Relaxed);
        let name = call.params.as_ref().and_then(|p| p["name"].as_str());
        let text = format!("lane:{}", name.unwrap_or(""));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(Ok(
            json!({"content": [{"type": "text", "text": text}]}).into()
        ));
        LaneCall::Sent(rx)
    }
}

#[tokio::test]
async fn a_call_goes_by_the_servers_lane_when_it_takes_it_and_to_its_actor_when_handed_back() {
    use std::sync::atomic::Ordering::Relaxed;
    let directory = ServerDirectory::default();
    let s = setup_with_directory(GatewayConfig::default(), Some(directory.clone()));
    // The server's own actor: scripted as the manager is, answering `b:<tool>`.
    let actor = ScriptedManager::spawn(s.tools.clone());
    let lane = Arc::new(ScriptedLane::default());
    lane.open.store(true, Relaxed);
    directory.write().unwrap().insert(
        "b".into(),
        DirectServer {
            actor: actor.reply_recipient(),
            lane: lane.clone(),
        },
    );
    s.server("b", &["echo"], ServerState::Ready);
    let session = s.open().await;
    eventually("b listed", async || {
        s.tool_names(&session).await == ["b__echo"]
    })
    .await;
    let text = |r: ClientReply| match r {
        ClientReply::Response { response, .. } => match response.outcome {
            Outcome::Result(v) => v["content"][0]["text"].as_str().unwrap().to_owned(),
            Outcome::Error(e) => panic!("{e:?}"),
        },
        other => panic!("{other:?}"),
    };
    let call = || {
        let request = Request::new(1, "tools/call", Some(json!({"name": "b__echo"})));
        client_message(Some(&session), None, Message::Request(request))
    };

    // Through the port, as `/mcp` sends it: the lane takes it, with the server's own tool name.
    assert_eq!(text(s.port.send(call()).await.unwrap()), "lane:echo");
    assert_eq!(lane.taken.load(Relaxed), 1);
    // With a progress sink, the lane hands it back and the server's actor answers.
    let (progress, _notes) = mpsc::channel(4);
    let with_progress = ClientMessage {
        progress: Some(progress),
        ..call()
    };
    assert_eq!(text(s.port.send(with_progress).await.unwrap()), "b:echo");
    // A closed lane (the server restarting, stopping): the actor answers.
    lane.open.store(false, Relaxed);
    assert_eq!(text(s.port.send(call()).await.unwrap()), "b:echo");
    assert_eq!(lane.taken.load(Relaxed), 1);
}

fn client_message(session: Option<&str>, version: Option<&str>, message: Message) -> ClientMessage {
    ClientMessage {
        session: session.map(str::to_owned),
        protocol_version: version.map(str::to_owned),
        message,
        progress: None,
        cancel: CancellationToken::new(),
    }
}

/// The gateway's own error; any other failure of the ask fails the test.
fn handler_error(e: kameo::error::SendError<ClientMessage, FleetError>) -> FleetError {
    match e {
        kameo::error::SendError::HandlerError(e) => e,
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn the_port_sends_to_open_sessions_directly_and_they_count_as_used() {
    let s = setup(GatewayConfig {
        session_idle_ttl: Duration::from_millis(400),
        initialize_timeout: Duration::from_millis(400),
        sweep_every: Duration::from_millis(50),
        ..GatewayConfig::default()
    });
    s.server("a", &["echo"], ServerState::Ready);
    let init = Message::Request(Request::new(
        0,
        "initialize",
        Some(json!({"protocolVersion": "2025-11-25"})),
    ));
    // `initialize` has no session yet: the port hands it to the gateway.
    let Ok(ClientReply::Response {
        session: Some(a), ..
    }) = via_port(&s, None, None, init.clone()).await
    else {
        panic!("no session opened")
    };
    let Ok(ClientReply::Response {
        session: Some(idle),
        ..
    }) = via_port(&s, None, None, init).await
    else {
        panic!("no session opened")
    };
    let call = || {
        Message::Request(Request::new(
            7,
            "tools/call",
            Some(json!({"name": "a__echo"})),
        ))
    };
    eventually("a's tool served through the port", async || match via_port(
        &s,
        Some(&a),
        None,
        call(),
    )
    .await
    {
        Ok(ClientReply::Response { response, .. }) => {
            response.outcome
                == Outcome::Result(
                    json!({"content": [{"type": "text", "text": "a:echo"}], "extra": {"kept": 1}}),
                )
        }
        other => panic!("{other:?}"),
    })
    .await;

    // Used through the port for longer than the idle TTL and the initialize timeout, the
    // session stays; the one never used after `initialize` is swept meanwhile.
    let ping = || Message::Request(Request::new(8, "ping", None));
    let until = tokio::time::Instant::now() + Duration::from_millis(1000);
    let mut every = tokio::time::interval(Duration::from_millis(50));
    while every.tick().await < until {
        assert!(via_port(&s, Some(&a), None, ping()).await.is_ok());
    }
    let stats = s.gateway.ask(GetGatewayStats).await.unwrap();
    assert_eq!(stats.active_sessions, 1, "{stats:?}");
    assert_eq!(stats.sessions_expired, 1, "{stats:?}");
    assert!(matches!(
        via_port(&s, Some(&idle), None, ping()).await,
        Err(FleetError::UnknownSession { id }) if id == idle
    ));

    // The gateway's checks hold on the direct path too.
    assert!(matches!(
        via_port(&s, Some(&a), Some("2099-01-01"), ping()).await,
        Err(FleetError::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        via_port(&s, Some("nope"), None, ping()).await,
        Err(FleetError::UnknownSession { .. })
    ));
    s.gateway
        .ask(CloseSession { session: a.clone() })
        .await
        .unwrap();
    assert!(matches!(
        via_port(&s, Some(&a), None, ping()).await,
        Err(FleetError::UnknownSession { id }) if id == a
    ));
}

#[tokio::test]
async fn a_request_the_port_serves_ends_when_the_client_cancels_it_or_the_session_ends() {
    let s = setup(GatewayConfig::default());
    s.server("a", &["slow"], ServerState::Ready);
    let a = s.open().await;
    eventually("a's tool listed", async || {
        s.tool_names(&a).await == ["a__slow"]
    })
    .await;
    let slow = |id: u64| {
        let msg = client_message(
            Some(&a),
            None,
            Message::Request(Request::new(
                id,
                "tools/call",
                Some(json!({"name": "a__slow"})),
            )),
        );
        let port = s.port.clone();
        tokio::spawn(async move { port.send(msg).await.map_err(handler_error) })
    };

    // The client cancels: the port registered the request with the session, whose actor handles
    // the notification. It may overtake the request, so it is sent until the call ends.
    let call = slow(9);
    let cancelled = || {
        Message::Notification(Notification::new(
            "notifications/cancelled",
            Some(json!({"requestId": 9})),
        ))
    };
    eventually("the call cancelled", async || {
        assert!(matches!(
            via_port(&s, Some(&a), None, cancelled()).await,
            Ok(ClientReply::Accepted)
        ));
        call.is_finished()
    })
    .await;
    match call.await.unwrap() {
        Ok(ClientReply::Response { response, .. }) => {
            assert!(
                matches!(response.outcome, Outcome::Error(_)),
                "{response:?}"
            )
        }
        other => panic!("{other:?}"),
    }

    // The session ends: a call under way ends too (cancelled; or refused, had the end come
    // first), and the next one is refused.
    let call = slow(10);
    tokio::task::yield_now().await;
    s.gateway
        .ask(CloseSession { session: a.clone() })
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the call ended with its session")
        .unwrap();
    assert!(
        matches!(
            &ended,
            Ok(ClientReply::Response { response, .. }) if matches!(response.outcome, Outcome::Error(_))
        ) || matches!(&ended, Err(FleetError::UnknownSession { .. })),
        "{ended:?}"
    );
    assert!(matches!(
        slow(11).await.unwrap(),
        Err(FleetError::UnknownSession { id }) if id == a
    ));
}

#[tokio::test]
async fn a_session_with_a_request_in_flight_is_not_idle() {
    let s = setup(GatewayConfig {
        session_idle_ttl: Duration::from_millis(300),
        sweep_every: Duration::from_millis(50),
        ..GatewayConfig::default()
    });
    s.server("a", &["slow"], ServerState::Ready);
    let a = s.open().await;
    eventually("a's tool listed", async || {
        s.tool_names(&a).await == ["a__slow"]
    })
    .await;
    // A call that lasts until its HTTP request is dropped (the token), longer than the TTL.
    let mut msg = client_message(
        Some(&a),
        None,
        Message::Request(Request::new(
            9,
            "tools/call",
            Some(json!({"name": "a__slow"})),
        )),
    );
    let dropped = CancellationToken::new();
    msg.cancel = dropped.clone();
    let port = s.port.clone();
    let call = tokio::spawn(async move { port.send(msg).await.map_err(handler_error) });

    // A session opened after the call started expires: the sweep has passed the TTL counted
    // from a's last message, and a is still there, its call under way.
    let later = s.open().await;
    assert_eq!(s.request(&later, "ping", json!({})).await, json!({}));
    eventually("the later session to expire", async || {
        s.gateway
            .ask(GetGatewayStats)
            .await
            .unwrap()
            .sessions_expired
            == 1
    })
    .await;
    let stats = s.gateway.ask(GetGatewayStats).await.unwrap();
    assert_eq!(stats.active_sessions, 1, "{stats:?}");
    assert!(!call.is_finished(), "the call in flight was ended");
    assert!(matches!(
        via_port(
            &s,
            Some(&later),
            None,
            Message::Request(Request::new(2, "ping", None))
        )
        .await,
        Err(FleetError::UnknownSession { .. })
    ));

    // The call ends: a is idle from then on, and expires in its turn.
    dropped.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("the call ended with its request")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
    eventually("a to expire after its call", async || {
        s.gateway
            .ask(GetGatewayStats)
            .await
            .unwrap()
            .sessions_expired
            == 2
    })
    .await;
}

#[tokio::test]
async fn stateless_requests_are_served_without_a_session() {
    let s = setup(GatewayConfig::default());
    s.server("a", &["echo"], ServerState::Ready);
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    eventually("a listed", async || {
        let msg = Message::Request(Request::new(1, "tools/list", Some(json!({"_meta": meta}))));
        match s.send(None, msg).await {
            Ok(ClientReply::Response { response, session }) => {
                assert!(session.is_none());
                matches!(response.outcome, Outcome::Result(ref v) if v["tools"].as_array().is_some_and(|t| t.len() == 1)
                    && v["resultType"] == "complete" && v["cacheScope"] == "private")
            }
            other => panic!("{other:?}"),
        }
    })
    .await;
    let stats = s.gateway.ask(GetGatewayStats).await.unwrap();
    assert_eq!(stats.sessions_created, 0);
}
