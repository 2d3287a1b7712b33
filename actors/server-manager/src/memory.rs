//! What a server manager restarted after a crash takes over from the one before it.
//!
//! kameo restarts a supervised actor by building its arguments again from the same factory, so
//! a [`ManagerMemory`] in [`crate::ServerManagerArgs`] is the same one for every incarnation.
//! The manager writes to it as it goes: each server it launched (its spec and actor), what
//! should become of the server (a `StopServer` says stop, a `RemoveServer` remove, a
//! `RestartServer` run again), and the event hub whose subscribers (the gateway) hear every
//! server.
//!
//! Invariants:
//! - A restarted manager first kills the actors of the manager before it and waits for their
//!   stop, which waits for their processes' exit: no server runs twice.
//! - It then takes over every server that was not being removed, with the spec it was launched
//!   with: started again, or entered as `Stopped` if it was stopped on request.
//! - The memory keeps every server until a launch under its name replaces it or its removal
//!   ends: a manager that fails again while taking over leaves the next one the same servers.
//! - The subscribers move to a new hub: an actor of the manager before, still stopping, cannot
//!   send them an event about a server its successor has launched again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use fleet_protocol::ServerSpec;
use kameo::actor::{ActorId, ActorRef};

use crate::events::EventHub;
use crate::server::ServerActor;

/// Shared by every incarnation of one server manager; a new one (`Default`) is a first start.
/// Two managers must not share one: each would end the other's servers when it starts.
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
    wanted: Wanted,
}

/// What should become of a server if the manager restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// Running: it is started again.
    Run,
    /// Stopped on request: it is entered again, `Stopped`.
    Stop,
    /// Being removed: it is not taken over.
    Remove,
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

    /// Marks a manager started; what the one before left, if there was one. A server being
    /// removed is forgotten; the others stay until the new manager launches them again.
    pub(crate) fn take_previous(&self) -> Option<Previous> {
        let mut memory = self.lock();
        if !std::mem::replace(&mut memory.started, true) {
            return None;
        }
        let mut previous = Previous {
            actors: Vec::with_capacity(memory.servers.len()),
            servers: Vec::with_capacity(memory.servers.len()),
        };
        memory.servers.retain(|_, server| {
            previous.actors.push(server.actor.clone());
            if server.wanted != Wanted::Remove {
                let start = server.wanted == Wanted::Run;
                previous.servers.push((server.spec.clone(), start));
            }
            server.wanted != Wanted::Remove
        });
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

    /// Remembers a launch, in place of any server of the same name.
    pub(crate) fn launched(&self, spec: ServerSpec, actor: ActorRef<ServerActor>, start: bool) {
        let name = spec.name.clone();
        let wanted = if start { Wanted::Run } else { Wanted::Stop };
        let server = Remembered {
            spec,
            actor,
            wanted,
        };
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

    /// What should become of `name` if the manager restarts. A removal under way stays one:
    /// only a new launch under the name, or the removal's end, replaces it.
    pub(crate) fn want(&self, name: &str, wanted: Wanted) {
        if let Some(server) = self.lock().servers.get_mut(name)
            && server.wanted != Wanted::Remove
        {
            server.wanted = wanted;
        }
    }

    /// Waits until the actor of every server this memory holds has stopped: each actor's stop
    /// kills its process group and waits (up to 2 s) for the exit. For a caller that outlives
    /// the manager: the manager's own `ActorRef` cannot tell it, once kameo restarted the
    /// manager, when the latest start's `on_stop` (which stops the servers) is over.
    pub async fn servers_stopped(&self) {
        let actors: Vec<ActorRef<ServerActor>> = self
            .lock()
            .servers
            .values()
            .map(|s| s.actor.clone())
            .collect();
        let stops = actors.iter().map(|actor| actor.wait_for_shutdown_result());
        futures::future::join_all(stops).await;
    }

    /// No server should run again (the fleet is shutting down); those being removed still go.
    pub(crate) fn stop_all(&self) {
        for server in self.lock().servers.values_mut() {
            if server.wanted == Wanted::Run {
                server.wanted = Wanted::Stop;
            }
        }
    }
}
