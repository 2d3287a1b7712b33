//! `Session`: one actor per 2025-era client session. It serves the session's requests outside
//! the actor (run by the port's caller, or in a task when asked `ClientMessage`), so a slow tool
//! never holds up the session; cancels them when the client says so; and owns the session's
//! server-to-client stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fleet_protocol::jsonrpc::{Message, Notification, RequestId, Response};
use fleet_protocol::mcp::methods;
use fleet_protocol::messages::gateway::{
    ClientMessage, ClientMessageReply, ClientReply, OpenStream, OpenStreamReply,
};
use kameo::Actor;
use kameo::actor::ActorRef;
use kameo::error::Infallible;
use kameo::message::{BoxMessage, Context, Message as KameoMessage};
use kameo::reply::{BoxReplySender, DelegatedReply, ReplyError};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, ListKind};
use crate::dispatch::{Call, Dispatcher, Prepared, Serve, Served};

pub struct SessionArgs {
    pub id: Arc<str>,
    pub dispatcher: Dispatcher,
    pub catalog: watch::Receiver<Arc<Catalog>>,
    /// Shared with the gateway, which reports it: each handled message adds one.
    pub handled: Arc<AtomicU64>,
}

pub struct Session {
    id: Arc<str>,
    dispatcher: Dispatcher,
    catalog: watch::Receiver<Arc<Catalog>>,
    stream: Option<mpsc::Sender<Message>>,
    /// Requests being served, by the client's id, so `notifications/cancelled` can stop them.
    /// Whoever runs a request takes its entry out when it ends (a drop guard), with no message
    /// to us.
    in_flight: InFlight,
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
        tracing::debug!(session = %args.id, "session started");
        Ok(Session {
            id: args.id,
            dispatcher: args.dispatcher,
            catalog: args.catalog,
            stream: None,
            in_flight: InFlight::default(),
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
        for (_, c) in self.in_flight.lock().drain() {
            c.cancel();
        }
        tracing::debug!(session = %self.id, %reason, "session ended");
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

/// The session's requests in flight, shared with their tasks.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<HashMap<RequestId, CancellationToken>>>);

impl InFlight {
    /// Held for a map operation only, never across an await; a poisoned lock still holds a
    /// usable map.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, CancellationToken>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
            tracing::debug!(session = %self.id, "stream full or closed; message dropped");
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

impl KameoMessage<Serve> for Session {
    type Reply = Served;

    async fn handle(&mut self, msg: Serve, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.serve(msg.0)
    }
}

/// Takes a request out of the session's in-flight table when it ends, however it ends.
struct InFlightEntry {
    in_flight: InFlight,
    id: RequestId,
}

impl Drop for InFlightEntry {
    fn drop(&mut self) {
        self.in_flight.lock().remove(&self.id);
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
                let id = request.id.clone();
                self.in_flight.lock().insert(id.clone(), msg.cancel.clone());
                let call = Call {
                    request,
                    modern: false,
                    catalog: self.catalog.borrow().clone(),
                    progress: msg.progress,
                    cancel: msg.cancel,
                };
                Served::Later(Prepared {
                    dispatcher: self.dispatcher.clone(),
                    call,
                    session: Some(self.id.clone()),
                    done: Some(Box::new(InFlightEntry {
                        in_flight: self.in_flight.clone(),
                        id,
                    })),
                })
            }
            Message::Notification(n) => {
                if n.method == methods::CANCELLED {
                    let id = n
                        .params
                        .as_ref()
                        .and_then(|p| p.get("requestId"))
                        .cloned()
                        .and_then(|v| serde_json::from_value::<RequestId>(v).ok());
                    let token = id.and_then(|id| self.in_flight.lock().remove(&id));
                    if let Some(token) = token {
                        tracing::debug!(session = %self.id, "client cancelled a request");
                        token.cancel();
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
