//! Messages the server manager accepts (the closed set):
//!
//! | message | reply |
//! |---|---|
//! | [`LaunchServer`] | `Result<ServerStatus, FleetError>`, once ready or failed |
//! | [`StopServer`] | `Result<StoppedServer, FleetError>` |
//! | [`RemoveServer`] | `Result<StoppedServer, FleetError>`; the server is no longer listed |
//! | [`RestartServer`] | `Result<ServerStatus, FleetError>`, once ready again or failed |
//! | [`GetServerStatus`] | `Result<ServerStatus, FleetError>` |
//! | [`ListServers`] | `Vec<ServerStatus>`, sorted by name |
//! | [`CallServer`] | `Result<CallAnswer, FleetError>`: the server's result, or its error as `Upstream` (`BadAnswer` if its answer was not valid JSON-RPC) |
//! | [`ProbeServer`] | `Result<Duration, FleetError>`: the probe's round trip |
//! | [`GetServerLogs`] | `Result<ServerLogs, FleetError>`: lines of the stderr ring buffer, oldest first, with a cursor |
//! | [`StopAllServers`] | `Vec<StoppedServer>` |
//! | [`SubscribeServerEvents`] | `()`; the current state of every server follows through the sink |
//! | [`crate::messages::health::HealthChanged`] | `()` (marks a server unhealthy or ready again) |

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::ServerSpec;
use crate::error::FleetError;
use crate::jsonrpc::Notification;
use crate::status::{ExitInfo, ServerStatus};

/// Start a server: spawn its process, run the MCP handshake in its era, list its tools.
#[derive(Debug, Clone)]
pub struct LaunchServer {
    pub spec: ServerSpec,
}
pub type LaunchServerReply = Result<ServerStatus, FleetError>;

/// Stop a server: close its stdin, wait, SIGTERM, wait, SIGKILL. It stays listed as stopped.
#[derive(Debug, Clone)]
pub struct StopServer {
    pub name: String,
}
pub type StopServerReply = Result<StoppedServer, FleetError>;

/// Stop a server and forget it: once stopped, it is no longer listed, and its name is free.
#[derive(Debug, Clone)]
pub struct RemoveServer {
    pub name: String,
}
pub type RemoveServerReply = Result<StoppedServer, FleetError>;

/// Stop a server and start it again with the same spec.
#[derive(Debug, Clone)]
pub struct RestartServer {
    pub name: String,
}
pub type RestartServerReply = Result<ServerStatus, FleetError>;

/// The status of one server.
#[derive(Debug, Clone)]
pub struct GetServerStatus {
    pub name: String,
}
pub type GetServerStatusReply = Result<ServerStatus, FleetError>;

/// The status of every server, sorted by name.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListServers;
pub type ListServersReply = Vec<ServerStatus>;

/// Send a request to a server and wait for its answer. The manager gives the request an id of
/// its own on the wire and maps the answer back, so callers' ids never collide.
#[derive(Debug, Clone)]
pub struct CallServer {
    pub server: String,
    pub method: String,
    pub params: Option<Value>,
    /// Overrides the manager's default request timeout.
    pub timeout: Option<Duration>,
    /// Cancelling it abandons the call: the server is sent `notifications/cancelled` and the
    /// call fails with [`FleetError::Cancelled`].
    pub cancel: Option<CancellationToken>,
    /// Where the server's `notifications/progress` for this request go. The manager replaces
    /// `params._meta.progressToken` with a token of its own on the wire (two callers may pick
    /// the same token) and restores the caller's token on each notification. A full channel
    /// drops the notification: progress is advisory.
    pub progress: Option<mpsc::Sender<Notification>>,
    /// Top-level members of the request other than `jsonrpc`, `id`, `method` and `params` (a
    /// client's own), written with it as they came: the fleet passes on what it does not
    /// understand.
    pub extra: Map<String, Value>,
}

impl CallServer {
    /// A call with the manager's default timeout, no cancellation and no progress.
    pub fn new(
        server: impl Into<String>,
        method: impl Into<String>,
        params: Option<Value>,
    ) -> Self {
        CallServer {
            server: server.into(),
            method: method.into(),
            params,
            timeout: None,
            cancel: None,
            progress: None,
            extra: Map::new(),
        }
    }
}
pub type CallServerReply = Result<CallAnswer, FleetError>;

/// What a server answered a [`CallServer`] with: its `result`, and the top-level members of its
/// response other than `jsonrpc`, `id` and `result`, to be passed on as they came. (An error
/// answer's members are in [`FleetError::Upstream`].)
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallAnswer {
    pub result: Value,
    pub extra: Map<String, Value>,
}

impl From<Value> for CallAnswer {
    fn from(result: Value) -> Self {
        CallAnswer {
            result,
            extra: Map::new(),
        }
    }
}

/// A way to a server's process that skips its actor's mailbox: a [`CallServer`] sent from the
/// caller's own task. The server's actor opens it while its server serves and closes it
/// otherwise; the call is then written, answered, timed out, cancelled and recorded exactly as
/// the actor would, and its answer comes exactly once.
pub trait ServerLane: Send + Sync {
    /// Sends `call`, or hands it back when only the actor can serve it.
    fn call(&self, call: CallServer) -> LaneCall;
}

/// What became of a call given to a [`ServerLane`].
pub enum LaneCall {
    /// Sent: the receiver gets the answer, as an ask of the server's actor would.
    Sent(oneshot::Receiver<CallServerReply>),
    /// Not sent, and untouched: the lane is closed (the server is starting, restarting, stopping
    /// or gone), or the call has a progress sink. Ask the server's actor. (Boxed: the rarer
    /// way, and the larger.)
    HandedBack(Box<CallServer>),
}

/// One server of a directory of servers, for callers that reach a server without its manager:
/// `actor`, the caller's handle on the server's actor (a type of the caller's actor framework),
/// and its [`ServerLane`].
#[derive(Clone)]
pub struct DirectServer<A> {
    pub actor: A,
    pub lane: Arc<dyn ServerLane>,
}

/// A health probe in the server's own era, over its existing connection (never a new process or
/// session).
#[derive(Debug, Clone)]
pub struct ProbeServer {
    pub name: String,
    pub timeout: Duration,
}
pub type ProbeServerReply = Result<Duration, FleetError>;

/// The last lines the server wrote to stderr.
#[derive(Debug, Clone)]
pub struct GetServerLogs {
    pub name: String,
    /// At most this many of the newest lines.
    pub max_lines: usize,
    /// Only the lines written after the first `after` (the `total` of an earlier answer): a
    /// follower asks with the last answer's `total` and sees each line once.
    pub after: Option<u64>,
}
pub type GetServerLogsReply = Result<ServerLogs, FleetError>;

/// Lines of a server's stderr, read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerLogs {
    /// Oldest first.
    pub lines: Vec<String>,
    /// How many lines this log holds so far, these included (every line the server wrote to
    /// stderr since its actor was launched): the cursor (`after`) of the next ask.
    pub total: u64,
    /// Names this log. Another one means the log began anew (the server was launched again,
    /// its manager or the fleet restarted): a cursor of the old one means nothing in it. At
    /// most 2^53 - 1, so that JSON readers holding numbers as doubles read it exactly.
    pub log_id: u64,
    /// Lines after the cursor that are not in `lines`: dropped from the ring buffer (it keeps
    /// the newest bytes) or beyond `max_lines`.
    pub missed: u64,
}

/// Stop every server (concurrently), for shutdown.
#[derive(Debug, Clone, Copy, Default)]
pub struct StopAllServers;
pub type StopAllServersReply = Vec<StoppedServer>;

/// Subscribe to what happens to servers. The manager first sends the current state of every
/// server it knows, then every change as it happens, in order per server. A subscriber whose
/// sink answers [`Delivery::Gone`] is forgotten.
#[derive(Debug, Clone)]
pub struct SubscribeServerEvents {
    pub sink: EventSink,
}

/// Where a subscriber hears server events: a function the publisher calls with each event.
///
/// It is called while the publisher holds the lock that orders events, so it must hand the
/// event over without waiting: an unbounded channel ([`EventSink::channel`]) or an actor's
/// unbounded mailbox, as the runtime wires the gateway. An event it cannot take without
/// waiting ([`Delivery::Full`]) is lost, and the publisher logs it.
#[derive(Clone)]
pub struct EventSink(Arc<dyn Fn(ServerEvent) -> Delivery + Send + Sync>);

/// What became of one event handed to an [`EventSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The subscriber has it.
    Delivered,
    /// The subscriber is there but could not take it without waiting: it is lost.
    Full,
    /// The subscriber is gone: forget it.
    Gone,
}

impl EventSink {
    /// A sink that calls `deliver` with each event (without waiting; see [`EventSink`]).
    pub fn new(deliver: impl Fn(ServerEvent) -> Delivery + Send + Sync + 'static) -> Self {
        EventSink(Arc::new(deliver))
    }

    /// A sink that sends into an unbounded channel; gone once the receiver is dropped.
    pub fn channel(tx: mpsc::UnboundedSender<ServerEvent>) -> Self {
        EventSink::new(move |event| match tx.send(event) {
            Ok(()) => Delivery::Delivered,
            Err(_) => Delivery::Gone,
        })
    }

    /// Hands over one event.
    pub fn send(&self, event: ServerEvent) -> Delivery {
        (self.0)(event)
    }
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventSink")
    }
}

/// What subscribers of [`SubscribeServerEvents`] hear.
#[derive(Debug, Clone)]
pub enum ServerEvent {
    /// The server's lifecycle state changed (or, right after subscribing, is this).
    StateChanged {
        server: String,
        state: crate::status::ServerState,
    },
    /// The server sent a notification that belongs to no request: `notifications/*/list_changed`,
    /// `notifications/resources/updated`, `notifications/message`. `tools/list_changed` comes
    /// once the manager has listed the tools again and found them changed: the status then has
    /// the new list. A 2026-era server's acknowledgement of the fleet's `subscriptions/listen`
    /// counts as a `list_changed` of each list it acknowledges.
    /// (Boxed: it is the large variant, and every subscriber's channel allocates room for
    /// events 32 at a time.)
    Notified {
        server: String,
        notification: Box<Notification>,
    },
    /// The server was removed (`RemoveServer`): it is stopped and the manager no longer has
    /// it. What subscribers kept about it can go.
    Removed { server: String },
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopMethod {
    /// It exited after its stdin was closed.
    StdinClosed,
    /// It needed SIGTERM.
    Terminated,
    /// It needed SIGKILL.
    Killed,
    /// There was no process to stop.
    NotRunning,
    /// A restart asked for after this stop had already stopped the process and started
    /// another, which was left running: the later request wins. (A removal superseded so
    /// still removes the server, and with it that process.)
    Superseded,
}

/// The end of one server's process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoppedServer {
    pub name: String,
    pub pid: Option<u32>,
    pub method: StopMethod,
    pub exit: Option<ExitInfo>,
    pub took: Duration,
}
