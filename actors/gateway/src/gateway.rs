//! `Gateway`: the registry of sessions and the keeper of the catalog.
//!
//! - Sessions: `initialize` spawns a [`Session`] under a fresh id from the OS CSPRNG. Later
//!   messages reach it through the port and the session directory; one sent to the gateway is
//!   looked up by id and forwarded with the caller's reply sender, so the gateway never waits on
//!   a session. A sweep ends sessions idle past the TTL or never initialized.
//! - 2026-07-28 requests carry their version in `_meta` and need no session: the gateway hands
//!   each back to the port (`Serve`), whose caller runs it, or runs it in a task when asked
//!   `ClientMessage` directly.
//! - Catalog: the server manager's events say when a server is ready or stops serving, and when
//!   its lists change; the gateway lists the server again off its own path and rebuilds the
//!   catalog, then tells every session (and every 2026 listener) what changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fleet_protocol::counter::MessageCounter;
use fleet_protocol::jsonrpc::{Message, Notification, Request, RequestId, Response, error_codes};
use fleet_protocol::mcp::{self, methods};
use fleet_protocol::messages::gateway::{
    ClientMessage, ClientMessageReply, ClientReply, CloseSession, CloseSessionReply, GatewayStats,
    GetGatewayStats, GetGatewayStatsReply, OpenStream, OpenStreamReply,
};
use fleet_protocol::messages::metrics::{MetricEvent, RecordMetric, SessionEnd};
use fleet_protocol::messages::server::{
    CallAnswer, CallServer, Delivery, EventSink, GetServerStatus, ServerEvent,
    SubscribeServerEvents,
};
use fleet_protocol::{FleetError, ServerState, ServerStatus};
use kameo::Actor;
use kameo::actor::{ActorRef, Recipient, ReplyRecipient, Spawn, WeakActorRef};
use kameo::error::{ActorStopReason, Infallible, SendError};
use kameo::message::{BoxMessage, Context, Message as KameoMessage};
use kameo::reply::{BoxReplySender, DelegatedReply, ReplyError, ReplySender};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::GatewayConfig;
use crate::catalog::{Catalog, ListKind, ServerLists};
use crate::dispatch::{self, Call, Dispatcher, Prepared, Serve, Served, ServerDirectory};
use crate::port::{SessionDirectory, SessionSlot};
use crate::session::{Forwarded, ListsChanged, ServerLog, Session, SessionArgs, SessionCore};

/// What the gateway is started with (cloned for each start when it is supervised).
#[derive(Clone)]
pub struct GatewayArgs {
    /// Shared with its sessions. (An `Arc` here keeps the arguments small: kameo holds them in
    /// the actor's task, which every gateway allocates.)
    pub config: Arc<GatewayConfig>,
    /// The server manager: calls, and the capabilities of a server that became ready.
    pub servers: ReplyRecipient<CallServer, CallAnswer, FleetError>,
    pub status: ReplyRecipient<GetServerStatus, ServerStatus, FleetError>,
    /// Where metric events go, if anywhere: sessions created and ended, and the messages the
    /// gateway and its sessions handled.
    pub metrics: Option<Recipient<RecordMetric>>,
    /// The server manager's directory of server actors, if it keeps one: calls then go to the
    /// server's actor directly, one hop shorter than through the manager.
    pub directory: Option<ServerDirectory>,
    /// The directory of open sessions this gateway keeps, for [`GatewayPort`](crate::GatewayPort)s
    /// (`SessionDirectory::default()` when there are none).
    pub sessions: SessionDirectory,
    /// The server manager's subscription, if the gateway should subscribe itself: at each start,
    /// so that a gateway started again after a crash hears every server's state anew. The
    /// subscription holds the gateway's `ActorRef` and the gateway the manager's: such a gateway
    /// must be stopped, not merely dropped (the supervisor stops it at a shutdown).
    pub events: Option<Recipient<SubscribeServerEvents>>,
}

/// The actor kind under which sessions' handled messages are reported.
pub const SESSION_ACTOR_NAME: &str = "session";

/// An open 2026-07-28 `subscriptions/listen` stream and the list changes it asked for.
struct Listener {
    id: RequestId,
    kinds: Vec<ListKind>,
    tx: mpsc::Sender<Message>,
}

/// The filter of a `subscriptions/listen`: which list changes the client wants, as the subset
/// the gateway honours (echoed in the acknowledgement) and as list kinds.
fn listen_filter(request: &Request) -> (Value, Vec<ListKind>) {
    let wanted = request
        .params
        .as_ref()
        .and_then(|p| p.get("notifications"))
        .cloned()
        .unwrap_or(Value::Null);
    let mut honoured = serde_json::Map::new();
    let mut kinds = Vec::new();
    for filter in mcp::LISTEN_FILTERS {
        if wanted.get(filter.key).and_then(Value::as_bool) == Some(true)
            && let Some(list) = ListKind::from_notification(filter.notification)
        {
            honoured.insert(filter.key.into(), Value::Bool(true));
            kinds.extend_from_slice(list);
        }
    }
    (Value::Object(honoured), kinds)
}

/// A notification on a listen stream carries the stream's id.
fn with_subscription(method: &str, id: &RequestId, params: Option<Value>) -> Message {
    let mut params = match params {
        Some(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    params.insert("_meta".into(), json!({ mcp::META_SUBSCRIPTION_ID: id }));
    Message::Notification(Notification::new(method, Some(Value::Object(params))))
}

struct SessionEntry {
    /// Its actor and when it was last used, shared with the directory.
    slot: Arc<SessionSlot>,
    created: Instant,
    /// The session's open stream, if any: a session with one is not idle.
    stream: Option<mpsc::Sender<Message>>,
}

#[derive(Default)]
struct ServerEntry {
    serving: bool,
    /// Bumped on every change, so a late listing of an older state is discarded.
    generation: u64,
    lists: Option<ServerLists>,
    /// The lists it had before it stopped serving: its items stay routed (`Catalog::build`
    /// with `serving` false), so a request by name or URI reaches it, to wait for it (starting,
    /// restarting) or to be told its state, rather than be told the name is unknown.
    withdrawn: Option<ServerLists>,
}

/// The catalog before any server is ready: one for every gateway (a catalog is never changed
/// in place; a rebuild sends a new one).
static EMPTY_CATALOG: std::sync::LazyLock<Arc<Catalog>> = std::sync::LazyLock::new(Arc::default);

/// The gateway: its state, boxed. kameo's actor task holds the state by value, in more than
/// one place, and copies it on every poll (once per message): inline, its 192 bytes made each
/// gateway's task about 512 bytes larger (and each poll a call to `memcpy`).
#[derive(derive_more::Deref, derive_more::DerefMut)]
#[deref(forward)]
#[deref_mut(forward)]
pub struct Gateway(Box<State>);

/// What the gateway keeps.
pub struct State {
    /// This start's number ([`SessionDirectory`] counts the starts).
    start: u64,
    config: Arc<GatewayConfig>,
    dispatcher: Dispatcher,
    sessions: HashMap<Arc<str>, SessionEntry>,
    /// The same sessions, shared with the `GatewayPort`s that send to them directly.
    directory: SessionDirectory,
    catalog: watch::Sender<Arc<Catalog>>,
    counter: MessageCounter,
    /// Messages every session handled since the last report; sessions add, the gateway reports.
    session_messages: Arc<AtomicU64>,
    /// The sweep ticker runs: it starts with the first client message, as until then there
    /// is nothing to sweep or report.
    sweeping: bool,
    lists: Lists,
    stats: GatewayStats,
    status: ReplyRecipient<GetServerStatus, ServerStatus, FleetError>,
    metrics: Option<Recipient<RecordMetric>>,
}

/// What the catalog is built from, and who hears of its changes.
struct Lists {
    servers: BTreeMap<String, ServerEntry>,
    /// 2026-07-28 `subscriptions/listen` streams.
    listeners: Vec<Listener>,
    /// Listings changed since the last rebuild of the catalog.
    rebuild_dirty: bool,
    /// A `Rebuild` is on its way: listings that arrive before it share its rebuild.
    rebuild_pending: bool,
    /// No new listing is merged before then, so that rebuilding (which takes time in
    /// proportion to everything listed) uses at most a fifth of the gateway's time while
    /// 1,000 servers become ready one by one.
    next_rebuild_at: Instant,
}

/// After a rebuild that took `d`, the next listing waits until `d` × this has passed.
const REBUILD_SPACING: u32 = 4;

/// The gateway's subscription to the server manager's events
/// ([`SubscribeServerEvents`](fleet_protocol::messages::server::SubscribeServerEvents)): each
/// event is told into the gateway's mailbox without waiting.
///
/// The gateway must then have an unbounded mailbox: a full one would lose the event (the
/// manager logs it). That costs no control over memory, as every other message the gateway
/// gets has a caller waiting on it (an HTTP request) or is its own (its sweep tick, a server's
/// fetched lists, a rebuild).
/// The sink holds a weak ref, so it never keeps the gateway alive; once the gateway is gone,
/// the manager forgets the sink.
pub fn event_sink(gateway: &ActorRef<Gateway>) -> EventSink {
    let gateway = gateway.downgrade();
    EventSink::new(move |event| match gateway.upgrade() {
        Some(gateway) => deliver(&gateway, event),
        None => Delivery::Gone,
    })
}

/// The sink of one start of the gateway, gone once a later start has begun: a gateway
/// restarted after a crash keeps its address and subscribes anew, so the sink of the start
/// before must not deliver twice. It holds the `ActorRef` the start got, which the next event
/// after it (or after the gateway stopped) releases: a weak ref of the one a restarted actor
/// gets would not outlive `on_start`.
fn start_sink(gateway: ActorRef<Gateway>, starts: SessionDirectory, start: u64) -> EventSink {
    EventSink::new(move |event| {
        if !starts.is_latest_start(start) {
            return Delivery::Gone;
        }
        deliver(&gateway, event)
    })
}

/// Tells `event` to the gateway without waiting.
fn deliver(gateway: &ActorRef<Gateway>, event: ServerEvent) -> Delivery {
    match gateway.tell(event).try_send() {
        Ok(()) => Delivery::Delivered,
        Err(SendError::MailboxFull(_)) => Delivery::Full,
        Err(_) => Delivery::Gone,
    }
}

impl Actor for Gateway {
    type Args = GatewayArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "Gateway"
    }

    async fn on_start(args: Self::Args, me: ActorRef<Self>) -> Result<Self, Self::Error> {
        let config = args.config;
        // A gateway started again with the same directory: its sessions ended with the last.
        args.sessions.clear();
        let start = args.sessions.begin_start();
        if let Some(events) = args.events {
            // The manager sends every server's state first: the catalog is built anew from it.
            let sink = start_sink(me, args.sessions.clone(), start);
            if let Err(e) = events.tell(SubscribeServerEvents { sink }).await {
                tracing::error!(error = %e, "the gateway could not subscribe to server events; it will list no server");
            }
        }
        Ok(Gateway(Box::new(State {
            start,
            directory: args.sessions,
            dispatcher: Dispatcher {
                servers: args.servers,
                directory: args.directory,
                config: config.clone(),
            },
            config,
            sessions: HashMap::new(),
            catalog: watch::Sender::new(EMPTY_CATALOG.clone()),
            counter: MessageCounter::new(Instant::now(), REPORT_EVERY),
            session_messages: Arc::new(AtomicU64::new(0)),
            sweeping: false,
            lists: Lists {
                servers: BTreeMap::new(),
                listeners: Vec::new(),
                rebuild_dirty: false,
                rebuild_pending: false,
                next_rebuild_at: Instant::now(),
            },
            stats: GatewayStats::default(),
            status: args.status,
            metrics: args.metrics,
        })))
    }

    async fn on_message(
        &mut self,
        msg: BoxMessage<Self>,
        actor_ref: ActorRef<Self>,
        tx: Option<BoxReplySender>,
        stop: &mut bool,
    ) -> Result<(), Box<dyn ReplyError>> {
        if let Some(count) = self.counter.record(Instant::now()) {
            self.report_messages(count);
        }
        msg.handle_dyn(self, actor_ref, tx, stop).await
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        _: ActorStopReason,
    ) -> Result<(), Self::Error> {
        // Sessions end with the gateway (the fleet shuts down, or the gateway crashed): they are
        // not counted as closed or expired. Only its own leave the directory: a start after a
        // crash may already have opened sessions of its own.
        let State {
            sessions,
            directory,
            ..
        } = &mut *self.0;
        for (id, s) in sessions.drain() {
            directory.remove(&id);
            s.slot.actor.kill();
        }
        let pending = self.counter.take(Instant::now()).unwrap_or(0);
        self.report_messages(pending);
        Ok(())
    }
}

/// How often the gateway reports handled-message counts (at the next message after this long;
/// each sweep reports too).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// A fresh session id: 128 bits from the OS CSPRNG, as 32 hex digits.
fn new_session_id() -> Result<String, FleetError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| FleetError::ActorUnavailable {
        actor: "gateway".into(),
        reason: format!("no randomness for a session id: {e}"),
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether a message is of the 2026-07-28 era: the header says so, or its `_meta` does.
fn is_modern(header: Option<&str>, message: &Message) -> bool {
    header == Some(mcp::MODERN_VERSION)
        || message.params().and_then(mcp::meta_version) == Some(mcp::MODERN_VERSION)
}

fn respond(response: Response, session: Option<String>) -> ClientMessageReply {
    Ok(ClientReply::Response { response, session })
}

impl Gateway {
    fn metric(&self, event: MetricEvent) {
        if let Some(m) = &self.metrics {
            // A busy or stopped collector must never hold up the gateway; the event is dropped.
            let _ = m.tell(RecordMetric { event }).try_send();
        }
    }

    /// Reports the gateway's own count and whatever the sessions handled since the last report.
    fn report_messages(&self, own: u64) {
        if own > 0 {
            self.metric(MetricEvent::MessagesHandled {
                actor: crate::ACTOR_NAME.into(),
                count: own,
            });
        }
        let sessions = self.session_messages.swap(0, Ordering::Relaxed);
        if sessions > 0 {
            self.metric(MetricEvent::MessagesHandled {
                actor: SESSION_ACTOR_NAME.into(),
                count: sessions,
            });
        }
    }

    fn open_session(&mut self, request: Request) -> ClientMessageReply {
        if self.sessions.len() >= self.config.max_sessions {
            tracing::warn!(
                sessions = self.sessions.len(),
                "session limit reached; initialize refused"
            );
            return Err(FleetError::TooManySessions {
                max: self.config.max_sessions,
            });
        }
        let requested = request
            .params
            .as_ref()
            .and_then(|p| p.get("protocolVersion"))
            .and_then(Value::as_str);
        let result = dispatch::initialize_result(requested);
        let id: Arc<str> = Arc::from(new_session_id()?);
        let core = SessionCore::new(
            id.clone(),
            self.dispatcher.clone(),
            self.catalog.subscribe(),
        );
        let actor = Session::spawn_with_mailbox(
            SessionArgs {
                core: core.clone(),
                handled: self.session_messages.clone(),
            },
            kameo::mailbox::bounded(64),
        );
        let slot = self.directory.open(id.clone(), actor, core);
        self.sessions.insert(
            id.clone(),
            SessionEntry {
                slot,
                created: Instant::now(),
                stream: None,
            },
        );
        self.stats.sessions_created += 1;
        self.metric(MetricEvent::SessionCreated);
        let client = request
            .params
            .as_ref()
            .and_then(|p| p.get("clientInfo"))
            .map(Value::to_string)
            .unwrap_or_default();
        tracing::info!(session = %id, version = %result["protocolVersion"], %client, "session opened");
        respond(Response::result(request.id, result), Some(id.to_string()))
    }

    /// Starts the ticker that sends `Sweep` every `sweep_every`; it holds a weak ref, so it
    /// never keeps the gateway alive. It ends when its `Sweep` cannot be told (the gateway
    /// stopped) or once a later start of the gateway has begun (which runs a ticker of its own).
    fn start_sweeping(&mut self, actor_ref: &ActorRef<Self>) {
        self.sweeping = true;
        let weak = actor_ref.downgrade();
        let every = self.config.sweep_every;
        let (starts, start) = (self.directory.clone(), self.start);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // A later start (after a crash) sweeps with a ticker of its own.
                if !starts.is_latest_start(start) {
                    break;
                }
                let Some(me) = weak.upgrade() else { break };
                if me.tell(Sweep).await.is_err() {
                    break;
                }
            }
        });
    }

    /// A listing changed: the catalog is rebuilt once the listings already queued are in, and
    /// not before `next_rebuild_at`.
    fn rebuild_soon(&mut self, actor_ref: &ActorRef<Self>) {
        self.lists.rebuild_dirty = true;
        if self.lists.rebuild_pending {
            return;
        }
        self.lists.rebuild_pending = true;
        let wait = self
            .lists
            .next_rebuild_at
            .saturating_duration_since(Instant::now());
        if wait.is_zero() {
            if actor_ref.tell(Rebuild).try_send().is_err() {
                self.rebuild();
            }
        } else {
            let me = actor_ref.downgrade();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                if let Some(me) = me.upgrade() {
                    let _ = me.tell(Rebuild).await;
                }
            });
        }
    }

    fn rebuild(&mut self) {
        let started = Instant::now();
        self.lists.rebuild_dirty = false;
        self.lists.rebuild_pending = false;
        // A serving server with its lists offers them; one not serving (or serving again,
        // before its lists came) routes with the lists it had.
        let lists = self.lists.servers.iter().filter_map(|(name, s)| {
            match (s.serving, &s.lists, &s.withdrawn) {
                (true, Some(lists), _) => Some((name.as_str(), lists, true)),
                (_, None, Some(had)) => Some((name.as_str(), had, false)),
                _ => None,
            }
        });
        let catalog = Catalog::build(lists, &self.config.separator);
        let changed = catalog.changed_kinds(&self.catalog.borrow());
        let servers = catalog.servers().len();
        self.catalog.send_replace(Arc::new(catalog));
        self.lists.next_rebuild_at = Instant::now() + started.elapsed() * REBUILD_SPACING;
        if changed.is_empty() {
            return;
        }
        tracing::info!(?changed, servers, "catalog changed");
        for s in self.sessions.values() {
            let _ = s
                .slot
                .actor
                .tell(ListsChanged {
                    kinds: changed.clone(),
                })
                .try_send();
        }
        self.lists.listeners.retain(|l| !l.tx.is_closed());
        for l in &self.lists.listeners {
            let wanted = changed.iter().copied().filter(|k| l.kinds.contains(k));
            for method in ListKind::changed_notifications(wanted) {
                let _ = l.tx.try_send(with_subscription(method, &l.id, None));
            }
        }
    }

    /// Lists a server again, off the gateway's path; the answer comes back as a message.
    fn fetch(&mut self, server: &str, actor_ref: &ActorRef<Self>) {
        let entry = self.lists.servers.entry(server.to_owned()).or_default();
        entry.generation += 1;
        let generation = entry.generation;
        let name = server.to_owned();
        let servers = self.dispatcher.servers.clone();
        let status = self.status.clone();
        let timeout = self.config.list_timeout;
        let me = actor_ref.clone();
        tokio::spawn(async move {
            let lists = fetch_lists(&servers, &status, &name, timeout).await;
            let _ = me
                .tell(ListsFetched {
                    server: name,
                    generation,
                    lists,
                })
                .await;
        });
    }
}

/// How many pages of one list are read from a server (its tools are read by the manager).
const LIST_PAGES_MAX: usize = 100;

/// The server's tools (from its status) and every page of the other lists its capabilities
/// declare; a list that cannot be read is empty. Fails only when the status cannot be read.
async fn fetch_lists(
    servers: &ReplyRecipient<CallServer, CallAnswer, FleetError>,
    status: &ReplyRecipient<GetServerStatus, ServerStatus, FleetError>,
    server: &str,
    timeout: Duration,
) -> Result<ServerLists, String> {
    let status = status
        .ask(GetServerStatus {
            name: server.into(),
        })
        .await
        .map_err(|e| e.to_string())?;
    let Some(handshake) = status.handshake.as_ref() else {
        return Err("the server has no handshake (not ready)".into());
    };
    let caps = &handshake.capabilities;
    let mut lists = ServerLists::default();
    // The manager lists the tools itself (at the handshake and after each list_changed).
    lists
        .lists
        .insert(ListKind::Tools, handshake.tools.to_vec());
    for kind in [
        ListKind::Resources,
        ListKind::ResourceTemplates,
        ListKind::Prompts,
    ] {
        if caps.get(kind.capability()).is_none() {
            continue;
        }
        let mut items = Vec::new();
        let mut cursor: Option<Value> = None;
        // A server that pages forever is cut off after this many pages.
        for page_number in 0..LIST_PAGES_MAX {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let mut call = CallServer::new(server, kind.method(), Some(params));
            call.timeout = Some(timeout);
            let page = match servers.ask(call).await {
                Ok(page) => page.result,
                // A server may declare `resources` without templates: that list is just empty.
                Err(kameo::error::SendError::HandlerError(FleetError::Upstream {
                    error, ..
                })) if error.code == error_codes::METHOD_NOT_FOUND => {
                    break;
                }
                // One list that fails leaves it empty, not the server's other items (its tools
                // are known already): the next change of the server lists it again.
                Err(e) => {
                    tracing::warn!(server, method = kind.method(), error = %e, "could not list the server's items of this kind; it offers none of them for now");
                    items.clear();
                    break;
                }
            };
            if let Some(found) = page.get(kind.key()).and_then(Value::as_array) {
                items.extend(found.iter().cloned());
            }
            cursor = page.get("nextCursor").filter(|c| !c.is_null()).cloned();
            if cursor.is_none() {
                break;
            }
            if page_number + 1 == LIST_PAGES_MAX {
                tracing::warn!(
                    server,
                    method = kind.method(),
                    pages = LIST_PAGES_MAX,
                    items = items.len(),
                    "the server's list goes on past the page limit; the items after it are not offered"
                );
            }
        }
        lists.lists.insert(kind, items);
    }
    Ok(lists)
}

/// What the gateway makes of a client message.
enum Handled {
    Served(Served),
    /// A message of one of its sessions, for that session.
    Forward(ActorRef<Session>, ClientMessage),
}

impl KameoMessage<ClientMessage> for Gateway {
    type Reply = DelegatedReply<ClientMessageReply>;

    async fn handle(
        &mut self,
        msg: ClientMessage,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        match self.client_message(msg, ctx.actor_ref()) {
            Handled::Served(Served::Now(reply)) => ctx.reply(reply),
            Handled::Served(Served::Later(call)) => ctx.spawn(call.run()),
            Handled::Forward(session, msg) => {
                let (delegated, reply) = ctx.reply_sender();
                match reply {
                    Some(tx) => forward_to_session(&session, msg, tx),
                    None => {
                        let _ = session.tell(msg).try_send();
                    }
                }
                delegated
            }
        }
    }
}

impl KameoMessage<Serve> for Gateway {
    type Reply = DelegatedReply<Served>;

    async fn handle(&mut self, msg: Serve, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        match self.client_message(msg.0, ctx.actor_ref()) {
            Handled::Served(served) => ctx.reply(served),
            // The port sends a session's messages to the session; one it could not find in the
            // directory is answered here as an ask of the session would be.
            Handled::Forward(session, msg) => ctx.spawn(async move {
                let id = msg.session.clone().unwrap_or_default();
                Served::Now(
                    session
                        .ask(msg)
                        .await
                        .map_err(|e| crate::session_error(e, id)),
                )
            }),
        }
    }
}

impl Gateway {
    fn client_message(&mut self, msg: ClientMessage, me: &ActorRef<Self>) -> Handled {
        if !self.sweeping {
            self.start_sweeping(me);
        }
        let now = |reply| Handled::Served(Served::Now(reply));
        let header = msg.protocol_version.as_deref();
        if let Err(e) = dispatch::check_version(header) {
            return now(Err(e));
        }
        if let Some(id) = msg.session.as_deref() {
            let Some(entry) = self.sessions.get(id) else {
                let id = id.to_owned();
                return now(Err(FleetError::UnknownSession { id }));
            };
            self.directory.used(&entry.slot, &msg.message);
            return Handled::Forward(entry.slot.actor.clone(), msg);
        }
        let modern = is_modern(header, &msg.message);
        match msg.message {
            Message::Request(request) if !modern && request.method == methods::INITIALIZE => {
                now(self.open_session(request))
            }
            Message::Request(request) if modern => {
                if let Some(v) = request.params.as_ref().and_then(mcp::meta_version)
                    && v != mcp::MODERN_VERSION
                {
                    return now(Err(FleetError::UnsupportedVersion {
                        version: v.to_owned(),
                        supported: vec![mcp::MODERN_VERSION.into()],
                    }));
                }
                if request.method == methods::SUBSCRIPTIONS_LISTEN {
                    let (tx, rx) = mpsc::channel(self.config.stream_buffer);
                    let (honoured, kinds) = listen_filter(&request);
                    let ack = with_subscription(
                        methods::SUBSCRIPTIONS_ACKNOWLEDGED,
                        &request.id,
                        Some(json!({ "notifications": honoured })),
                    );
                    self.lists.listeners.retain(|l| !l.tx.is_closed());
                    self.lists.listeners.push(Listener {
                        id: request.id,
                        kinds,
                        tx,
                    });
                    return now(Ok(ClientReply::Stream {
                        first: Some(ack),
                        messages: rx,
                    }));
                }
                let call = Call {
                    request,
                    modern: true,
                    catalog: self.catalog.borrow().clone(),
                    progress: msg.progress,
                    cancel: msg.cancel,
                };
                Handled::Served(Served::Later(Prepared {
                    dispatcher: self.dispatcher.clone(),
                    call,
                    session: None,
                    done: None,
                }))
            }
            // A stateless client's notifications and responses need nothing from us.
            _ if modern => now(Ok(ClientReply::Accepted)),
            _ => now(Err(FleetError::MissingSession)),
        }
    }
}

/// Hands a session's message and the caller's reply sender to the session, which answers the
/// caller itself: no task of ours and no hop back through the gateway. Only a full mailbox is
/// waited for, in a task, since the gateway's own mailbox must not wait on a session's; a
/// session that has ended answers as an unknown session, as it would a moment later.
fn forward_to_session(
    session: &ActorRef<Session>,
    msg: ClientMessage,
    tx: ReplySender<ClientMessageReply>,
) {
    // A message that could not be handed over comes back with the error; its session id says
    // which session in the answer.
    let failed = |e: SendError<Forwarded>| {
        let (Forwarded { reply, .. }, error) = match e {
            SendError::ActorNotRunning(f) | SendError::ActorRestarting(f) => {
                let id = f.msg.session.clone().unwrap_or_default();
                (f, FleetError::UnknownSession { id })
            }
            SendError::MailboxFull(f) | SendError::Timeout(Some(f)) => {
                let session = f.msg.session.clone().unwrap_or_default();
                let error = FleetError::ActorUnavailable {
                    actor: format!("session {session}"),
                    reason: "mailbox full".into(),
                };
                (f, error)
            }
            // The other kinds come only from a reply, and a tell waits for none.
            SendError::ActorStopped | SendError::HandlerError(_) | SendError::Timeout(None) => {
                return;
            }
        };
        reply.send(Err(error));
    };
    match session.tell(Forwarded { msg, reply: tx }).try_send() {
        Ok(()) => {}
        Err(SendError::MailboxFull(forwarded)) => {
            let session = session.clone();
            tokio::spawn(async move {
                if let Err(e) = session.tell(forwarded).send().await {
                    failed(e);
                }
            });
        }
        Err(e) => failed(e),
    }
}

impl KameoMessage<OpenStream> for Gateway {
    type Reply = DelegatedReply<OpenStreamReply>;

    async fn handle(
        &mut self,
        msg: OpenStream,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let state = &mut *self.0;
        let Some(entry) = state.sessions.get_mut(msg.session.as_str()) else {
            return ctx.reply(Err(FleetError::UnknownSession { id: msg.session }));
        };
        state.directory.seen(&entry.slot);
        entry.stream = Some(msg.sink.clone());
        let session = entry.slot.actor.clone();
        let id = msg.session.clone();
        ctx.spawn(async move {
            session
                .ask(msg)
                .await
                .map_err(|e| crate::session_error(e, id))
        })
    }
}

impl KameoMessage<CloseSession> for Gateway {
    type Reply = CloseSessionReply;

    async fn handle(
        &mut self,
        msg: CloseSession,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        match self.sessions.remove(msg.session.as_str()) {
            Some(entry) => {
                self.directory.remove(&msg.session);
                // Killed, not stopped in turn: its queued requests are moot, and the gateway
                // must not wait on a session's mailbox. `on_stop` cancels what is in flight.
                entry.slot.actor.kill();
                self.stats.sessions_closed += 1;
                self.metric(MetricEvent::SessionEnded {
                    reason: SessionEnd::Closed,
                });
                tracing::info!(session = %msg.session, "session closed by the client");
                Ok(())
            }
            None => Err(FleetError::UnknownSession { id: msg.session }),
        }
    }
}

impl KameoMessage<GetGatewayStats> for Gateway {
    type Reply = GetGatewayStatsReply;

    async fn handle(
        &mut self,
        _: GetGatewayStats,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let catalog = self.catalog.borrow().clone();
        Ok(GatewayStats {
            active_sessions: self.sessions.len(),
            tools: catalog.list(ListKind::Tools).len(),
            resources: catalog.list(ListKind::Resources).len(),
            resource_templates: catalog.list(ListKind::ResourceTemplates).len(),
            prompts: catalog.list(ListKind::Prompts).len(),
            servers: catalog.servers().to_vec(),
            ..self.stats.clone()
        })
    }
}

/// Time to end idle and never-initialized sessions (internal).
pub struct Sweep;

impl KameoMessage<Sweep> for Gateway {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, _: &mut Context<Self, ()>) {
        let now = Instant::now();
        let (ttl, init) = (self.config.session_idle_ttl, self.config.initialize_timeout);
        // A stream that closed counts as use until now: the client may be reconnecting. So
        // does a request in flight, however long the server takes: the session is idle from
        // the end of its last request, not from its start.
        let state = &mut *self.0;
        for s in state.sessions.values_mut() {
            if s.stream.as_ref().is_some_and(|t| t.is_closed()) {
                s.stream = None;
                state.directory.seen(&s.slot);
            } else if s.slot.busy() {
                state.directory.seen(&s.slot);
            }
        }
        let expired: Vec<Arc<str>> = self
            .sessions
            .iter()
            .filter(|(_, s)| {
                let streaming = s.stream.as_ref().is_some_and(|t| !t.is_closed());
                (!s.slot.initialized() && now.duration_since(s.created) > init)
                    || (!streaming && self.directory.idle(&s.slot) > ttl)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(entry) = self.sessions.remove(&id) {
                self.directory.remove(&id);
                entry.slot.actor.kill();
                self.stats.sessions_expired += 1;
                self.metric(MetricEvent::SessionEnded {
                    reason: SessionEnd::Expired,
                });
                tracing::info!(session = %id, idle = ?self.directory.idle(&entry.slot), "session expired");
            }
        }
        // Sessions count their messages as they go; an idle gateway still reports them here.
        let own = self.counter.take(now).unwrap_or(0);
        self.report_messages(own);
        crate::port::shrink_if_sparse(&mut self.sessions);
    }
}

/// A server's lists, fetched (internal).
pub struct ListsFetched {
    server: String,
    generation: u64,
    lists: Result<ServerLists, String>,
}

impl KameoMessage<ListsFetched> for Gateway {
    type Reply = ();

    async fn handle(&mut self, msg: ListsFetched, ctx: &mut Context<Self, ()>) {
        let Some(entry) = self.lists.servers.get_mut(&msg.server) else {
            return;
        };
        if entry.generation != msg.generation || !entry.serving {
            return;
        }
        match msg.lists {
            Ok(lists) => {
                entry.lists = Some(lists);
                entry.withdrawn = None;
                self.rebuild_soon(ctx.actor_ref());
            }
            Err(error) => {
                tracing::warn!(server = %msg.server, %error, "could not list the server's items; it offers none until it is ready again");
            }
        }
    }
}

/// Rebuilds the catalog once for every listing that arrived since the last rebuild.
pub struct Rebuild;

impl KameoMessage<Rebuild> for Gateway {
    type Reply = ();

    async fn handle(&mut self, _: Rebuild, _: &mut Context<Self, ()>) {
        if self.lists.rebuild_dirty {
            self.rebuild();
        }
        self.lists.rebuild_pending = false;
    }
}

impl KameoMessage<ServerEvent> for Gateway {
    type Reply = ();

    async fn handle(&mut self, msg: ServerEvent, ctx: &mut Context<Self, ()>) {
        match msg {
            ServerEvent::StateChanged { server, state } => {
                let serving = state == ServerState::Ready;
                let entry = self.lists.servers.entry(server.clone()).or_default();
                let was = entry.serving;
                entry.serving = serving;
                if serving && !was {
                    self.fetch(&server, ctx.actor_ref());
                } else if !serving && was {
                    // Withdrawn at once; listed again when it is ready.
                    entry.generation += 1;
                    // What it had, or, down again before its lists came, what it had before.
                    entry.withdrawn = entry.lists.take().or(entry.withdrawn.take());
                    tracing::info!(server = %server, %state, "server's items withdrawn");
                    self.rebuild();
                }
            }
            ServerEvent::Notified {
                server,
                notification,
            } => {
                if ListKind::from_notification(&notification.method).is_some() {
                    if self.lists.servers.get(&server).is_some_and(|s| s.serving) {
                        self.fetch(&server, ctx.actor_ref());
                    }
                } else if notification.method == methods::LOG_MESSAGE {
                    let mut n = *notification;
                    // Say which server logged it, without touching the server's own fields.
                    if let Some(Value::Object(p)) = n.params.as_mut() {
                        if let Some(Value::Object(meta)) = p.get_mut("_meta") {
                            meta.insert("mcp-fleet/server".into(), Value::String(server.clone()));
                        } else if !p.contains_key("_meta") {
                            p.insert("_meta".into(), json!({ "mcp-fleet/server": server }));
                        }
                    }
                    for s in self.sessions.values() {
                        let _ = s
                            .slot
                            .actor
                            .tell(ServerLog {
                                notification: n.clone(),
                            })
                            .try_send();
                    }
                }
            }
            ServerEvent::Removed { server } => {
                // Its routes go: a call of its tools is now of an unknown name.
                if self.lists.servers.remove(&server).is_some() {
                    tracing::info!(server = %server, "server removed; its items go");
                    self.rebuild();
                }
            }
        }
    }
}
