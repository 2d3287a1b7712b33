//! The subscribers of server events, shared by the manager and every server's actor.
//!
//! A server's actor updates its status first and then publishes under the hub's lock; a new
//! subscriber is sent the current states and added under the same lock. So a subscriber never
//! sees a state older than one it has already seen. It may see the same state twice (in the
//! snapshot and as the event that was waiting for the lock): subscribers treat a repeated
//! state as no change.

use std::sync::{Arc, Mutex, MutexGuard};

use fleet_protocol::messages::server::{Delivery, EventSink, ServerEvent};

#[derive(Clone, Default)]
pub(crate) struct EventHub {
    subscribers: Arc<Mutex<Vec<EventSink>>>,
}

/// Hands `event` to `sink`; whether to keep the subscriber. A lost event is logged.
pub(crate) fn deliver(sink: &EventSink, event: ServerEvent) -> bool {
    match sink.send(event) {
        Delivery::Delivered => true,
        Delivery::Full => {
            tracing::warn!(
                "a subscriber of server events could not take one without waiting: it is lost"
            );
            true
        }
        Delivery::Gone => false,
    }
}

impl EventHub {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<EventSink>> {
        // A panic while holding this lock cannot leave the list inconsistent: use it anyway.
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends an event to every subscriber; forgets those that went away.
    pub(crate) fn publish(&self, event: ServerEvent) {
        let mut subs = self.lock();
        if subs.is_empty() {
            return;
        }
        subs.retain(|s| deliver(s, event.clone()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use fleet_protocol::ServerState;

    use super::*;

    fn event() -> ServerEvent {
        ServerEvent::StateChanged {
            server: "a".into(),
            state: ServerState::Ready,
        }
    }

    /// A sink that always answers `delivery`, counting its calls.
    fn sink(delivery: Delivery) -> (EventSink, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let sink = EventSink::new(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
            delivery
        });
        (sink, calls)
    }

    #[test]
    fn a_gone_subscriber_is_forgotten_and_a_full_one_kept() {
        let hub = EventHub::default();
        let (delivered, delivered_calls) = sink(Delivery::Delivered);
        let (full, full_calls) = sink(Delivery::Full);
        let (gone, gone_calls) = sink(Delivery::Gone);
        hub.lock().extend([delivered, full, gone]);

        hub.publish(event());
        hub.publish(event());

        assert_eq!(hub.lock().len(), 2);
        assert_eq!(delivered_calls.load(Ordering::Relaxed), 2);
        assert_eq!(full_calls.load(Ordering::Relaxed), 2);
        assert_eq!(gone_calls.load(Ordering::Relaxed), 1);
    }
}
