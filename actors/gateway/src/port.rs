//! How client messages reach the gateway: [`GatewayPort`], over the gateway's
//! [`SessionDirectory`].
//!
//! A request of an open session is prepared by the session's core, found in the directory, and
//! run in the caller's task: neither the gateway's mailbox, which every other client message and
//! every server event passes through, nor the session's is on the path of each request. Another
//! message of an open session (a notification, `logging/setLevel`) goes to the session's actor.
//! Everything else (`initialize`, the stateless wire, a session the directory does not have) is
//! asked of the gateway, which answers as before.
//!
//! Invariants:
//! - Only the gateway adds and removes sessions; the port reads the directory and marks a
//!   session used (when it was last heard from, whether it finished `initialize`), which the
//!   gateway's sweep reads.
//! - The directory's lock is held for one map operation, never across an await.
//! - A session that ended between the lookup and the ask answers as an unknown session, as the
//!   gateway would a moment later; its core refuses requests once its actor has stopped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use fleet_protocol::FleetError;
use fleet_protocol::jsonrpc::Message;
use fleet_protocol::mcp::methods;
use fleet_protocol::messages::gateway::{ClientMessage, ClientReply};
use kameo::actor::ActorRef;
use kameo::error::{Infallible, SendError};

use crate::dispatch::{self, Serve, Served};
use crate::gateway::Gateway;
use crate::session::{Session, SessionCore};

/// One open session, as the gateway and the port share it.
pub(crate) struct SessionSlot {
    pub(crate) actor: ActorRef<Session>,
    /// Prepares the session's requests (shared with the actor).
    core: Arc<SessionCore>,
    /// When the client was last heard from, in milliseconds since the directory's epoch.
    last_seen: AtomicU64,
    /// The client sent `notifications/initialized` or a request.
    initialized: AtomicBool,
}

impl SessionSlot {
    pub(crate) fn initialized(&self) -> bool {
        self.initialized.load(Ordering::Relaxed)
    }

    /// Whether a request of the session is in flight.
    pub(crate) fn busy(&self) -> bool {
        self.core.busy()
    }
}

/// The open sessions by id: the gateway's, shared with its [`GatewayPort`]s. Cheap to clone.
/// One per gateway, shared by all its starts (a supervised gateway's factory clones it): it
/// also counts the starts.
#[derive(Clone)]
pub struct SessionDirectory(Arc<Shared>);

struct Shared {
    epoch: Instant,
    sessions: RwLock<HashMap<Arc<str>, Arc<SessionSlot>>>,
    /// How many times the gateway has started. Each start takes the next number, and what it
    /// leaves running (its event sink, its sweep ticker) stops once a later start has begun:
    /// kameo may run a restarted gateway's `on_start` before the crashed start's `on_stop`, so
    /// nothing may rely on that order.
    starts: AtomicU64,
}

impl Default for SessionDirectory {
    fn default() -> Self {
        SessionDirectory(Arc::new(Shared {
            epoch: Instant::now(),
            sessions: RwLock::new(HashMap::new()),
            starts: AtomicU64::new(0),
        }))
    }
}

impl std::fmt::Debug for SessionDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionDirectory")
            .field("sessions", &self.read().len())
            .finish()
    }
}

/// Gives back the memory of a map that many removals left mostly empty.
pub(crate) fn shrink_if_sparse<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to_fit();
    }
}

impl SessionDirectory {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Arc<SessionSlot>>> {
        // A poisoned lock still holds a usable map: every operation on it is one call.
        self.0
            .sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Arc<SessionSlot>>> {
        self.0
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.0.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A new start of the gateway: its number.
    pub(crate) fn begin_start(&self) -> u64 {
        self.0.starts.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Whether `start` is the gateway's latest start.
    pub(crate) fn is_latest_start(&self, start: u64) -> bool {
        self.0.starts.load(Ordering::Acquire) == start
    }

    /// A new session's slot, seen now, and listed.
    pub(crate) fn open(
        &self,
        id: Arc<str>,
        actor: ActorRef<Session>,
        core: Arc<SessionCore>,
    ) -> Arc<SessionSlot> {
        let slot = Arc::new(SessionSlot {
            actor,
            core,
            last_seen: AtomicU64::new(self.now()),
            initialized: AtomicBool::new(false),
        });
        self.write().insert(id, slot.clone());
        slot
    }

    pub(crate) fn remove(&self, id: &str) {
        let mut sessions = self.write();
        sessions.remove(id);
        shrink_if_sparse(&mut sessions);
    }

    pub(crate) fn clear(&self) {
        *self.write() = HashMap::new();
    }

    /// The session, marked used by `message`, and its id.
    fn route(&self, id: &str, message: &Message) -> Option<(Arc<str>, Arc<SessionSlot>)> {
        let sessions = self.read();
        let (id, slot) = sessions.get_key_value(id)?;
        self.used(slot, message);
        Some((id.clone(), slot.clone()))
    }

    /// The client was heard from: now, with `message`.
    pub(crate) fn used(&self, slot: &SessionSlot, message: &Message) {
        self.seen(slot);
        let initializes = match message {
            Message::Request(_) => true,
            Message::Notification(n) => n.method == methods::INITIALIZED,
            Message::Response(_) => false,
        };
        if initializes && !slot.initialized() {
            slot.initialized.store(true, Ordering::Relaxed);
        }
    }

    /// The session counts as used now.
    pub(crate) fn seen(&self, slot: &SessionSlot) {
        slot.last_seen.store(self.now(), Ordering::Relaxed);
    }

    /// How long since the client was last heard from.
    pub(crate) fn idle(&self, slot: &SessionSlot) -> Duration {
        let last = slot.last_seen.load(Ordering::Relaxed);
        Duration::from_millis(self.now().saturating_sub(last))
    }
}

/// What carries client messages in (`/mcp`): the gateway, and its directory of sessions.
#[derive(Clone)]
pub struct GatewayPort {
    gateway: ActorRef<Gateway>,
    sessions: SessionDirectory,
}

impl GatewayPort {
    /// `sessions` must be the directory the gateway was started with
    /// ([`GatewayArgs::sessions`](crate::GatewayArgs::sessions)).
    pub fn new(gateway: ActorRef<Gateway>, sessions: SessionDirectory) -> Self {
        GatewayPort { gateway, sessions }
    }

    /// The gateway itself, for everything but client messages.
    pub fn gateway(&self) -> &ActorRef<Gateway> {
        &self.gateway
    }

    /// Sends a client message and waits for its reply: as an ask of the gateway would, but a
    /// request of an open session is prepared by the session's core and served in the caller's
    /// task, another message of an open session goes to the session's actor, and a request the
    /// gateway hands back is served in the caller's task too. A full session mailbox is waited
    /// for here, where waiting holds up only this caller.
    pub async fn send(
        &self,
        msg: ClientMessage,
    ) -> Result<ClientReply, SendError<ClientMessage, FleetError>> {
        let session = match msg.session.as_deref() {
            Some(id) => self.sessions.route(id, &msg.message),
            None => None,
        };
        let served = match session {
            None if msg.session.is_some() => return self.gateway.ask(msg).await,
            None => self.gateway.ask(Serve(msg)).await,
            Some((id, slot)) => {
                dispatch::check_version(msg.protocol_version.as_deref())
                    .map_err(SendError::HandlerError)?;
                let unknown =
                    || SendError::HandlerError(FleetError::UnknownSession { id: id.to_string() });
                let msg = match msg.message {
                    Message::Request(request) if request.method != methods::SET_LOG_LEVEL => {
                        let prepared = slot
                            .core
                            .prepare(request, msg.progress, msg.cancel)
                            .map_err(SendError::HandlerError)?;
                        return prepared.run().await.map_err(SendError::HandlerError);
                    }
                    message => ClientMessage { message, ..msg },
                };
                match slot.actor.ask(Serve(msg)).await {
                    // Ended before or while it handled the message (DELETE, expiry).
                    Err(
                        SendError::ActorNotRunning(_)
                        | SendError::ActorRestarting(_)
                        | SendError::ActorStopped,
                    ) => return Err(unknown()),
                    other => other,
                }
            }
        };
        let served = served.map_err(|e| {
            e.map_msg(|Serve(msg)| msg)
                .map_err(|never: Infallible| match never {})
        })?;
        let reply = match served {
            Served::Now(reply) => reply,
            Served::Later(call) => call.run().await,
        };
        reply.map_err(SendError::HandlerError)
    }
}
