//! The subscribers of server events, shared by the manager and every server's actor.
//!
//! A server's actor updates its status first and then publishes under the hub's lock; a new
//! subscriber is sent the current states and added under the same lock. So a subscriber never
//! sees a state older than one it has already seen. It may see the same state twice (in the
//! snapshot and as the event that was waiting for the lock): subscribers treat a repeated
//! state as no change.

use std::sync::{Arc, Mutex, MutexGuard};

use fleet_protocol::messages::server::ServerEvent;
use tokio::sync::mpsc;

#[derive(Clone, Default)]
pub(crate) struct EventHub {
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<ServerEvent>>>>,
}

impl EventHub {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<mpsc::UnboundedSender<ServerEvent>>> {
        // A panic while holding this lock cannot leave the list inconsistent: use it anyway.
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends an event to every subscriber; forgets those that went away.
    pub(crate) fn publish(&self, event: ServerEvent) {
        let mut subs = self.lock();
        if subs.is_empty() {
            return;
        }
        subs.retain(|s| s.send(event.clone()).is_ok());
    }
}
