//! `Session`: one actor per 2025-era client session, and its [`SessionCore`].
//!
//! The core prepares the session's requests for a server, each registered in flight so the
//! client can cancel it, to be run outside the actor, so a slow tool never holds up the session.
//! The port holds the core too and prepares requests itself, without asking the actor (one task
//! wake-up less per request, in each direction). The actor answers everything else: cancellation
//! and the other notifications, `logging/setLevel`, and the session's server-to-client stream.
//!
//! Invariant: once the actor stops, its core prepares nothing more: a request then gets
//! "unknown session", and every request prepared before is cancelled. Both happen under the lock
//! of the in-flight table, so no request slips in between.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fleet_protocol::FleetError;
use fleet_protocol::jsonrpc::{Message, Notification, Request, RequestId, Response};
use fleet_protocol::mcp::methods;
use fleet_protocol::messages::gateway::{
    ClientMessage, ClientMessageReply, ClientReply, OpenStream, OpenStreamReply,
};
use kameo::Actor;
use kameo::actor::ActorRef;
use kameo::error::Infallible;
use kameo::message::{BoxMessage, Context, Message as KameoMessage};
use kameo::reply::{BoxReplySender, DelegatedReply, ReplyError, ReplySender};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, ListKind};
use crate::dispatch::{Call, Dispatcher, Prepared, Serve, Served};

pub struct SessionArgs {
    /// Shared with the port, which prepares the session's requests itself.
    pub(crate) core: Arc<SessionCore>,
    /// Shared with the gateway, which reports it: each handled message adds one.
    pub handled: Arc<AtomicU64>,
}

/// What serving a session's requests takes, shared by the session's actor and the port.
pub(crate) struct SessionCore {
    id: Arc<str>,
    dispatcher: Dispatcher,
    catalog: watch::Receiver<Arc<Catalog>>,
    /// Requests being served, by the client's id, so `notifications/cancelled` can stop them.
    /// Whoever runs a request takes its entry out when it ends (a drop guard).
    in_flight: Mutex<InFlight>,
}

pub struct Session {
    core: Arc<SessionCore>,
    stream: Option<mpsc::Sender<Message>>,
    /// Server log messages at this level or above go to the stream (`logging/setLevel`).
    log_level: Option<usize>,
    handled: Arc<AtomicU64>,
}

impl Actor for Session {
    type Args = SessionArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "Session"
    }

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        tracing::debug!(session = %args.core.id, "session started");
        Ok(Session {
            core: args.core,
            stream: None,
            log_level: None,
            handled: args.handled,
        })
    }

    async fn on_message(
        &mut self,
        msg: BoxMessage<Self>,
        actor_ref: ActorRef<Self>,
        tx: Option<BoxReplySender>,
        stop: &mut bool,
    ) -> Result<(), Box<dyn ReplyError>> {
        self.handled.fetch_add(1, Ordering::Relaxed);
        msg.handle_dyn(self, actor_ref, tx, stop).await
    }

    async fn on_stop(
        &mut self,
        _: kameo::actor::WeakActorRef<Self>,
        reason: kameo::error::ActorStopReason,
    ) -> Result<(), Self::Error> {
        // Work for a client that is gone is cancelled upstream.
        self.core.end();
        tracing::debug!(session = %self.core.id, %reason, "session ended");
        Ok(())
    }
}

/// MCP log levels, least severe first.
const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The session's requests in flight.
#[derive(Default)]
struct InFlight {
    requests: HashMap<RequestId, CancellationToken>,
    /// The actor stopped: nothing more is prepared.
    ended: bool,
}

impl SessionCore {
    pub(crate) fn new(
        id: Arc<str>,
        dispatcher: Dispatcher,
        catalog: watch::Receiver<Arc<Catalog>>,
    ) -> Arc<SessionCore> {
        Arc::new(SessionCore {
            id,
            dispatcher,
            catalog,
            in_flight: Mutex::default(),
        })
    }

    /// Held for a map operation only, never across an await; a poisoned lock still holds a
    /// usable table.
    fn lock(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A request for a server, registered in flight so the client can cancel it, to be run by
    /// the caller. Refused once the session has ended (`UnknownSession`), and when a request
    /// of the session with the same id is still in flight (`InvalidRequest`): MCP forbids
    /// reusing an id in a session, and the second would take the first's entry, so that a
    /// cancellation reached the wrong one and the first counted as done.
    pub(crate) fn prepare(
        self: &Arc<Self>,
        request: Request,
        progress: Option<mpsc::Sender<Notification>>,
        cancel: CancellationToken,
    ) -> Result<Prepared, FleetError> {
        let id = request.id.clone();
        {
            let mut in_flight = self.lock();
            if in_flight.ended {
                return Err(FleetError::UnknownSession {
                    id: self.id.to_string(),
                });
            }
            match in_flight.requests.entry(id.clone()) {
                std::collections::hash_map::Entry::Occupied(_) => {
                    return Err(FleetError::InvalidRequest {
                        reason: format!(
                            "request id {id} is still in flight in this session; ids must not be reused"
                        ),
                    });
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(cancel.clone());
                }
            }
        }
        let call = Call {
            request,
            modern: false,
            catalog: self.catalog.borrow().clone(),
            progress,
            cancel,
        };
        Ok(Prepared {
            dispatcher: self.dispatcher.clone(),
            call,
            session: Some(self.id.clone()),
            done: Some(Box::new(InFlightEntry {
                core: self.clone(),
                id,
            })),
        })
    }

    /// Whether a request of the session is in flight.
    pub(crate) fn busy(&self) -> bool {
        !self.lock().requests.is_empty()
    }

    /// The client cancelled request `id`.
    fn cancel(&self, id: &RequestId) {
        // The entry stays until the request has ended (its `InFlightEntry` takes it out): the
        // id is not free for another request before that, and the other's entry is never
        // the one taken out.
        let token = self.lock().requests.get(id).cloned();
        if let Some(token) = token {
            tracing::debug!(session = %self.id, "client cancelled a request");
            token.cancel();
        }
    }

    /// The session ended: nothing more is prepared, and what is in flight is cancelled.
    fn end(&self) {
        let requests = {
            let mut in_flight = self.lock();
            in_flight.ended = true;
            std::mem::take(&mut in_flight.requests)
        };
        for (_, c) in requests {
            c.cancel();
        }
    }
}

fn level_rank(level: &str) -> Option<usize> {
    LOG_LEVELS.iter().position(|l| *l == level)
}

impl Session {
    fn push(&mut self, message: Message) {
        if let Some(stream) = &self.stream
            && stream.try_send(message).is_err()
        {
            tracing::debug!(session = %self.core.id, "stream full or closed; message dropped");
            if stream.is_closed() {
                self.stream = None;
            }
        }
    }
}

impl KameoMessage<ClientMessage> for Session {
    type Reply = DelegatedReply<ClientMessageReply>;

    async fn handle(
        &mut self,
        msg: ClientMessage,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        match self.serve(msg) {
            Served::Now(reply) => ctx.reply(reply),
            // Served in a task of its own, so a slow tool never holds up the session.
            Served::Later(call) => ctx.spawn(call.run()),
        }
    }
}

impl KameoMessage<Forwarded> for Session {
    type Reply = ();

    async fn handle(&mut self, msg: Forwarded, _: &mut Context<Self, ()>) {
        let Forwarded { msg, reply } = msg;
        match self.serve(msg) {
            Served::Now(answer) => reply.send(answer),
            // Served in a task of its own, so a slow tool never holds up the session.
            Served::Later(call) => {
                tokio::spawn(async move { reply.send(call.run().await) });
            }
        }
    }
}

/// A client message the gateway hands over with its caller's reply sender, which the session
/// answers (internal). It is told: kameo 0.22's `try_forward` and `forward` panic when the
/// mailbox is full or closed (they take the message back as the wrong type), while a told
/// message that cannot be delivered comes back whole, to be answered with why.
pub struct Forwarded {
    pub(crate) msg: ClientMessage,
    pub(crate) reply: ReplySender<ClientMessageReply>,
}

impl KameoMessage<Serve> for Session {
    type Reply = Served;

    async fn handle(&mut self, msg: Serve, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.serve(msg.0)
    }
}

/// Takes a request out of the session's in-flight table when it ends, however it ends.
struct InFlightEntry {
    core: Arc<SessionCore>,
    id: RequestId,
}

impl Drop for InFlightEntry {
    fn drop(&mut self) {
        self.core.lock().requests.remove(&self.id);
    }
}

impl Session {
    /// Answers what the session answers itself; a request for a server comes back to be run
    /// by the caller, registered as in flight so the client can cancel it.
    fn serve(&mut self, msg: ClientMessage) -> Served {
        match msg.message {
            Message::Request(request) => {
                if request.method == methods::SET_LOG_LEVEL {
                    let level = request
                        .params
                        .as_ref()
                        .and_then(|p| p.get("level"))
                        .and_then(Value::as_str)
                        .and_then(level_rank);
                    let response = match level {
                        Some(rank) => {
                            self.log_level = Some(rank);
                            Response::result(request.id, json!({}))
                        }
                        None => Response::error(
                            Some(request.id),
                            fleet_protocol::jsonrpc::ErrorObject::new(
                                fleet_protocol::jsonrpc::error_codes::INVALID_PARAMS,
                                format!("`level` must be one of {}", LOG_LEVELS.join(", ")),
                            ),
                        ),
                    };
                    return Served::Now(Ok(ClientReply::Response {
                        response,
                        session: None,
                    }));
                }
                match self.core.prepare(request, msg.progress, msg.cancel) {
                    Ok(prepared) => Served::Later(prepared),
                    Err(e) => Served::Now(Err(e)),
                }
            }
            Message::Notification(n) => {
                if n.method == methods::CANCELLED {
                    let id = n
                        .params
                        .as_ref()
                        .and_then(|p| p.get("requestId"))
                        .cloned()
                        .and_then(RequestId::from_json);
                    if let Some(id) = id {
                        self.core.cancel(&id);
                    }
                }
                Served::Now(Ok(ClientReply::Accepted))
            }
            // The gateway sends clients no requests, so a response answers nothing.
            Message::Response(_) => Served::Now(Ok(ClientReply::Accepted)),
        }
    }
}

impl KameoMessage<OpenStream> for Session {
    type Reply = OpenStreamReply;

    async fn handle(&mut self, msg: OpenStream, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        // A newer stream replaces the older one: each message goes to exactly one stream.
        self.stream = Some(msg.sink);
        Ok(())
    }
}

/// Lists changed: tell the client (internal, from the gateway).
#[derive(Clone)]
pub struct ListsChanged {
    pub kinds: Vec<ListKind>,
}

impl KameoMessage<ListsChanged> for Session {
    type Reply = ();

    async fn handle(&mut self, msg: ListsChanged, _: &mut Context<Self, ()>) {
        for method in ListKind::changed_notifications(msg.kinds) {
            self.push(Message::Notification(Notification::new(method, None)));
        }
    }
}

/// A server's log message (internal, from the gateway).
#[derive(Clone)]
pub struct ServerLog {
    pub notification: Notification,
}

impl KameoMessage<ServerLog> for Session {
    type Reply = ();

    async fn handle(&mut self, msg: ServerLog, _: &mut Context<Self, ()>) {
        let Some(min) = self.log_level else { return };
        let rank = msg
            .notification
            .params
            .as_ref()
            .and_then(|p| p.get("level"))
            .and_then(Value::as_str)
            .and_then(level_rank)
            .unwrap_or(0);
        if rank >= min {
            self.push(Message::Notification(msg.notification));
        }
    }
}
