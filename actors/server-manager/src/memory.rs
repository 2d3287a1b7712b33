//! What a server manager restarted after a crash takes over from the one before it.
//!
//! kameo restarts a supervised actor by building its arguments again from the same factory, so
//! a [`ManagerMemory`] in [`crate::ServerManagerArgs`] is the same one for every incarnation.
//! The manager writes to it as it goes: each server it launched (its spec and actor), whether
//! the server should run (a `StopServer` says no, a `RestartServer` yes again), and the event
//! hub whose subscribers (the gateway) hear every server.
//!
//! Invariants:
//! - A restarted manager first kills the actors of the manager before it and waits for them,
//!   and so for their processes (an actor's stop kills its process group): no server runs twice.
//! - It then launches again every server that should run, with the spec it was launched with.
//!   A server stopped on request is entered again as `Stopped`, not started.
//! - The subscribers move to a new hub: an actor of the manager before, still stopping, cannot
//!   send them an event about a server its successor has launched again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use fleet_protocol::ServerSpec;
use kameo::actor::{ActorId, ActorRef};

use crate::events::EventHub;
use crate::server::ServerActor;

/// Shared by every incarnation of one server manager; a new one (`Default`) is a first start.
#[derive(Clone, Default)]
pub struct ManagerMemory(Arc<Mutex<Memory>>);

#[derive(Default)]
struct Memory {
    /// Whether a manager has started with this memory before.
    started: bool,
    servers: BTreeMap<String, Remembered>,
    events: EventHub,
}

struct Remembered {
    spec: ServerSpec,
    actor: ActorRef<ServerActor>,
    /// Whether a restarted manager launches it again.
    run: bool,
}

/// What the manager before left: its servers' actors, to end, and each server's spec with
/// whether to start it.
pub(crate) struct Previous {
    pub(crate) actors: Vec<ActorRef<ServerActor>>,
    pub(crate) servers: Vec<(ServerSpec, bool)>,
}

impl ManagerMemory {
    fn lock(&self) -> MutexGuard<'_, Memory> {
        // Every update is one assignment or removal: a panic cannot leave it half done.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks a manager started; what the one before left, if there was one. The servers are
    /// forgotten: the new manager remembers those it launches again.
    pub(crate) fn take_previous(&self) -> Option<Previous> {
        let mut memory = self.lock();
        if !std::mem::replace(&mut memory.started, true) {
            return None;
        }
        let servers = std::mem::take(&mut memory.servers);
        let mut previous = Previous {
            actors: Vec::with_capacity(servers.len()),
            servers: Vec::with_capacity(servers.len()),
        };
        for server in servers.into_values() {
            previous.actors.push(server.actor);
            previous.servers.push((server.spec, server.run));
        }
        Some(previous)
    }

    /// The hub of this incarnation. After a restart, a new one with the old one's subscribers,
    /// which the old one loses.
    pub(crate) fn events(&self, restarted: bool) -> EventHub {
        let mut memory = self.lock();
        if restarted {
            let subscribers = std::mem::take(&mut *memory.events.lock());
            memory.events = EventHub::default();
            memory.events.lock().extend(subscribers);
        }
        memory.events.clone()
    }

    pub(crate) fn launched(&self, spec: ServerSpec, actor: ActorRef<ServerActor>, run: bool) {
        let name = spec.name.clone();
        let server = Remembered { spec, actor, run };
        self.lock().servers.insert(name, server);
    }

    /// Forgets a removed server, if `actor` is still the one launched under its name.
    pub(crate) fn removed(&self, name: &str, actor: ActorId) {
        let mut memory = self.lock();
        if memory
            .servers
            .get(name)
            .is_some_and(|s| s.actor.id() == actor)
        {
            memory.servers.remove(name);
        }
    }

    /// Whether a restarted manager should launch `name` again.
    pub(crate) fn set_run(&self, name: &str, run: bool) {
        if let Some(server) = self.lock().servers.get_mut(name) {
            server.run = run;
        }
    }

    /// No server should run again (the fleet is shutting down).
    pub(crate) fn stop_all(&self) {
        for server in self.lock().servers.values_mut() {
            server.run = false;
        }
    }
}
