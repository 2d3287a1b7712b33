//! The server manager's handlers, one per message of `fleet_protocol::messages::server`.
//! Status queries are answered from the manager's table; everything that touches a process is
//! told to that server's actor with the caller's reply sender, so the manager's mailbox never
//! waits on a child.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fleet_protocol::codec::JsonRpcCodec;
use fleet_protocol::messages::health::HealthChanged;
use fleet_protocol::messages::server::{
    CallServer, CallServerReply, DirectServer, GetServerLogs, GetServerLogsReply, GetServerStatus,
    GetServerStatusReply, LaunchServer, LaunchServerReply, ListServers, ListServersReply,
    ProbeServer, ProbeServerReply, RemoveServer, RemoveServerReply, RestartServer,
    RestartServerReply, ServerEvent, StopAllServers, StopAllServersReply, StopServer,
    StopServerReply, SubscribeServerEvents,
};
use fleet_protocol::{FleetError, ServerSpec, ServerState, ServerStatus};
use kameo::actor::{ActorRef, Spawn};
use kameo::error::SendError;
use kameo::message::{Context, Message};
use kameo::reply::DelegatedReply;

use crate::actor::{Entry, ServerManager, directory_write, send_error};
use crate::lane::Lane;
use crate::memory::Wanted;
use crate::pending::PendingTable;
use crate::server::{
    Forwarded, LaunchWait, LiveCounters, ServerActor, ServerActorArgs, StartAgain, StopProcess,
};
use crate::stderr;
use tokio::sync::watch;

impl ServerManager {
    fn entry(&self, name: &str) -> Result<&Entry, FleetError> {
        self.servers
            .get(name)
            .ok_or_else(|| FleetError::UnknownServer {
                name: name.to_string(),
            })
    }

    fn server_actor(&self, name: &str) -> Result<ActorRef<ServerActor>, FleetError> {
        self.entry(name).map(|e| e.actor.clone())
    }

    /// Hands `msg` and the caller's reply sender to the server's actor, which answers the
    /// caller itself: the manager's mailbox never waits on a child process, and the answer
    /// does not come back through the manager. Only a full mailbox is waited for, in a task.
    fn forward<M, T>(
        &self,
        name: &str,
        msg: M,
        ctx: &mut Context<Self, DelegatedReply<Result<T, FleetError>>>,
    ) -> DelegatedReply<Result<T, FleetError>>
    where
        M: Send + 'static,
        T: Send + 'static,
        ServerActor: Message<M, Reply = DelegatedReply<Result<T, FleetError>>>
            + Message<Forwarded<M, Result<T, FleetError>>, Reply = ()>,
    {
        let actor = match self.server_actor(name) {
            Err(e) => return ctx.reply(Err(e)),
            Ok(actor) => actor,
        };
        let (delegated, reply) = ctx.reply_sender();
        let Some(reply) = reply else {
            let _ = actor.tell(msg).try_send();
            return delegated;
        };
        match actor.tell(Forwarded { msg, reply }).try_send() {
            Ok(()) => {}
            Err(SendError::MailboxFull(forwarded)) => {
                let label = actor_label(name);
                tokio::spawn(async move {
                    if let Err(e) = actor.tell(forwarded).send().await {
                        forward_failed(e, &label);
                    }
                });
            }
            Err(e) => forward_failed(e, &actor_label(name)),
        }
        delegated
    }
}

/// Answers the caller of a message that could not be handed to a server's actor.
fn forward_failed<M, T>(e: SendError<Forwarded<M, Result<T, FleetError>>>, label: &str)
where
    T: Send + 'static,
{
    let (reply, e) = match e {
        SendError::ActorNotRunning(f) => (f.reply, SendError::ActorNotRunning(f.msg)),
        SendError::ActorRestarting(f) => (f.reply, SendError::ActorRestarting(f.msg)),
        SendError::MailboxFull(f) => (f.reply, SendError::MailboxFull(f.msg)),
        SendError::Timeout(Some(f)) => (f.reply, SendError::Timeout(Some(f.msg))),
        // The other kinds come only from a reply, and a tell waits for none.
        SendError::ActorStopped | SendError::HandlerError(_) | SendError::Timeout(None) => return,
    };
    reply.send(Err(send_error(e, label)));
}

/// Asks a server's actor for a stop asked for (number `stop`); the reply is to come. The ask
/// is sent from the task that waits for it, not from the manager's handler: kameo 0.22's
/// `try_enqueue` panics on a full mailbox (it takes the message back as the wrong type), and a
/// server flooding its stdout keeps its actor's mailbox full, where waiting for room in the
/// handler would stall the manager. So a `RestartServer` asked for right after this stop may
/// reach the server first. The numbers keep the manager's order all the same: that restart's
/// `StartAgain` carries this stop's number, and the server answers a stop numbered at most that
/// with `StopMethod::Superseded`, leaving the restarted process running.
fn stop_process(
    actor: &ActorRef<ServerActor>,
    stop: u64,
    name: &str,
) -> futures::future::BoxFuture<
    'static,
    Result<fleet_protocol::messages::server::StoppedServer, FleetError>,
> {
    let (actor, label) = (actor.clone(), actor_label(name));
    Box::pin(async move {
        actor
            .ask(StopProcess { stop: Some(stop) })
            .await
            .map_err(|e| send_error(e, &label))
    })
}

fn actor_label(name: &str) -> String {
    format!("server `{name}`")
}

impl ServerManager {
    /// Spawns `spec`'s actor, which starts the server if `start` (else it is `Stopped`), and
    /// enters it in the table, the directory and the memory. Replaces an entry of the same name.
    pub(crate) async fn launch(
        &mut self,
        spec: ServerSpec,
        start: bool,
        me: &ActorRef<ServerManager>,
    ) -> ActorRef<ServerActor> {
        let name = spec.name.clone();
        let ring = stderr::shared(self.config.stderr_ring_bytes);
        let counters = Arc::new(LiveCounters::default());
        let table = PendingTable::new(name.clone(), self.metrics.clone(), counters.clone());
        let lane = Arc::new(Lane {
            table: table.clone(),
            codec: JsonRpcCodec::new(self.config.max_message_bytes),
            timeout: self.config.request_timeout_of(&spec),
        });
        let (status_tx, status_rx) =
            watch::channel(ServerStatus::new(name.clone(), ServerState::Starting));
        let args = ServerActorArgs {
            spec: spec.clone(),
            config: self.config.clone(),
            status: status_tx,
            metrics: self.metrics.clone(),
            stderr: ring.clone(),
            counters: counters.clone(),
            events: self.events.clone(),
            handled: self.server_messages.clone(),
            table,
            start,
            stopping_all: self.stopping_all.clone(),
        };
        let actor = ServerActor::spawn_link(me, args).await;
        self.memory.launched(spec, actor.clone(), start);
        if let Some(d) = &self.directory {
            let entry = DirectServer {
                actor: actor.clone().reply_recipient(),
                lane,
            };
            directory_write(d).insert(name.clone(), entry);
        }
        self.servers.insert(
            name,
            Entry {
                actor: actor.clone(),
                status: status_rx,
                died: None,
                stderr: ring,
                counters,
            },
        );
        actor
    }
}

impl Message<LaunchServer> for ServerManager {
    type Reply = DelegatedReply<LaunchServerReply>;

    async fn handle(
        &mut self,
        msg: LaunchServer,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.count();
        let name = msg.spec.name.clone();
        if let Some(existing) = self.servers.get(&name) {
            if !existing.status().state.is_terminal() {
                return ctx.reply(Err(FleetError::DuplicateServer { name }));
            }
            // A stopped or failed server of that name is replaced by the new launch; a restart
            // of the old one is not the new one's to join.
            existing.actor.kill();
            self.joinable.remove(&name);
        }
        let me = ctx.actor_ref().clone();
        let actor = self.launch(msg.spec, true, &me).await;
        ctx.spawn(async move {
            actor
                .ask(LaunchWait)
                .await
                .map_err(|e| send_error(e, &actor_label(&name)))
        })
    }
}

impl Message<StopServer> for ServerManager {
    type Reply = DelegatedReply<StopServerReply>;

    async fn handle(
        &mut self,
        msg: StopServer,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.count();
        match self.server_actor(&msg.name) {
            Err(e) => ctx.reply(Err(e)),
            Ok(actor) => {
                self.memory.want(&msg.name, Wanted::Stop);
                // A restart asked for after this stop starts anew, not joins one before it.
                self.joinable.remove(&msg.name);
                let stopped = stop_process(&actor, self.next_stop(), &msg.name);
                ctx.spawn(stopped)
            }
        }
    }
}

impl Message<RemoveServer> for ServerManager {
    type Reply = DelegatedReply<RemoveServerReply>;

    async fn handle(
        &mut self,
        msg: RemoveServer,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.count();
        match self.server_actor(&msg.name) {
            Err(e) => ctx.reply(Err(e)),
            Ok(actor) => {
                self.memory.want(&msg.name, Wanted::Remove);
                self.joinable.remove(&msg.name);
                let stopped = stop_process(&actor, self.next_stop(), &msg.name);
                let manager = ctx.actor_ref().clone();
                ctx.spawn(async move {
                    let stopped = stopped.await?;
                    let _ = manager
                        .tell(Forget {
                            name: msg.name,
                            actor: actor.id(),
                        })
                        .await;
                    Ok(stopped)
                })
            }
        }
    }
}

/// A removed server is stopped: drop its entry and its actor (internal).
pub struct Forget {
    name: String,
    actor: kameo::actor::ActorId,
}

impl Message<Forget> for ServerManager {
    type Reply = ();

    async fn handle(&mut self, msg: Forget, _: &mut Context<Self, ()>) {
        // Only the actor that was stopped: a launch of the same name since then stays.
        if self
            .servers
            .get(&msg.name)
            .is_some_and(|e| e.actor.id() == msg.actor)
            && let Some(entry) = self.servers.remove(&msg.name)
        {
            tracing::info!(server = %msg.name, "server removed");
            self.memory.removed(&msg.name, msg.actor);
            if let Some(d) = &self.directory {
                directory_write(d).remove(&msg.name);
            }
            entry.actor.kill();
            self.events
                .publish(ServerEvent::Removed { server: msg.name });
        }
    }
}

impl Message<RestartServer> for ServerManager {
    type Reply = DelegatedReply<RestartServerReply>;

    async fn handle(
        &mut self,
        msg: RestartServer,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.count();
        let actor = match self.server_actor(&msg.name) {
            Err(e) => return ctx.reply(Err(e)),
            Ok(actor) => actor,
        };
        let (delegated, reply) = ctx.reply_sender();
        // One restart of a server at a time: a second, asked while the first runs, would stop
        // the process the first has just started, and each would see the other's exit.
        let joined = self.joinable.get(&msg.name).copied();
        if let Some(waiting) = joined.and_then(|number| self.restarts.get_mut(&number)) {
            waiting.extend(reply);
            return delegated;
        }
        let number = self.next_restart;
        self.next_restart += 1;
        self.joinable.insert(msg.name.clone(), number);
        self.restarts.insert(number, reply.into_iter().collect());
        self.memory.want(&msg.name, Wanted::Run);
        // A stop asked for after this restart (it reaches the server while this restart's own
        // stop runs) wins over the start that ends the restart.
        let after = self.stops;
        let me = ctx.actor_ref().clone();
        tokio::spawn(async move {
            let label = actor_label(&msg.name);
            let result = match actor.ask(StopProcess { stop: None }).await {
                Err(e) => Err(send_error(e, &label)),
                Ok(_) => actor
                    .ask(StartAgain { after })
                    .await
                    .map_err(|e| send_error(e, &label)),
            };
            let _ = me
                .tell(RestartDone {
                    name: msg.name,
                    number,
                    result,
                })
                .await;
        });
        delegated
    }
}

/// A restart ended: its callers, the first and those who joined, get its result (internal).
pub struct RestartDone {
    name: String,
    number: u64,
    result: RestartServerReply,
}

impl Message<RestartDone> for ServerManager {
    type Reply = ();

    async fn handle(&mut self, msg: RestartDone, _: &mut Context<Self, ()>) {
        if self.joinable.get(&msg.name) == Some(&msg.number) {
            self.joinable.remove(&msg.name);
        }
        for caller in self.restarts.remove(&msg.number).unwrap_or_default() {
            caller.send(msg.result.clone());
        }
    }
}

impl Message<GetServerStatus> for ServerManager {
    type Reply = GetServerStatusReply;

    async fn handle(
        &mut self,
        msg: GetServerStatus,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.count();
        self.entry(&msg.name).map(Entry::status)
    }
}

impl Message<ListServers> for ServerManager {
    type Reply = ListServersReply;

    async fn handle(&mut self, _: ListServers, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.count();
        self.servers.values().map(Entry::status).collect()
    }
}

impl Message<CallServer> for ServerManager {
    type Reply = DelegatedReply<CallServerReply>;

    async fn handle(
        &mut self,
        msg: CallServer,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.count();
        let name = msg.server.clone();
        self.forward(&name, msg, ctx)
    }
}

impl Message<ProbeServer> for ServerManager {
    type Reply = DelegatedReply<ProbeServerReply>;

    async fn handle(
        &mut self,
        msg: ProbeServer,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.count();
        let name = msg.name.clone();
        self.forward(&name, msg, ctx)
    }
}

impl Message<GetServerLogs> for ServerManager {
    type Reply = GetServerLogsReply;

    async fn handle(
        &mut self,
        msg: GetServerLogs,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.count();
        let entry = self.entry(&msg.name)?;
        Ok(stderr::lock(&entry.stderr).since(msg.after, msg.max_lines))
    }
}

impl Message<StopAllServers> for ServerManager {
    type Reply = DelegatedReply<StopAllServersReply>;

    async fn handle(
        &mut self,
        _: StopAllServers,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.count();
        self.memory.stop_all();
        self.stopping_all.store(true, Ordering::Relaxed);
        self.joinable.clear();
        let actors: Vec<_> = self
            .servers
            .iter()
            .map(|(name, e)| (name.clone(), e.actor.clone()))
            .collect();
        let instance = self.config.instance_id.clone();
        let stopping_all = self.stopping_all.clone();
        let stop = self.next_stop();
        let stops: Vec<_> = actors
            .into_iter()
            .map(|(name, actor)| {
                let stopped = stop_process(&actor, stop, &name);
                async move {
                    stopped
                        .await
                        .inspect_err(|e| tracing::warn!(server = %name, error = %e, "stop failed"))
                        .ok()
                }
            })
            .collect();
        ctx.spawn(async move {
            let stopped: Vec<fleet_protocol::messages::server::StoppedServer> =
                futures::future::join_all(stops)
                    .await
                    .into_iter()
                    .flatten()
                    .collect();
            let groups = stopped.iter().filter_map(|s| s.pid).collect();
            end_left_behind(instance, groups).await;
            // Servers launched after this (the fleet goes on) search on their own again.
            stopping_all.store(false, Ordering::Relaxed);
            stopped
        })
    }
}

impl Message<HealthChanged> for ServerManager {
    type Reply = ();

    async fn handle(&mut self, msg: HealthChanged, _: &mut Context<Self, Self::Reply>) {
        self.count();
        if let Ok(actor) = self.server_actor(&msg.server) {
            // A verdict comes once per change: if the mailbox is full, it waits for room.
            if let Err(SendError::MailboxFull(msg)) = actor.tell(msg).try_send() {
                tokio::spawn(async move { actor.tell(msg).send().await });
            }
        }
    }
}

impl Message<SubscribeServerEvents> for ServerManager {
    type Reply = ();

    async fn handle(&mut self, msg: SubscribeServerEvents, _: &mut Context<Self, Self::Reply>) {
        self.count();
        // Under the hub's lock, so no server publishes between the snapshot and the joining.
        let mut subs = self.events.lock();
        for (name, entry) in &self.servers {
            let event = ServerEvent::StateChanged {
                server: name.clone(),
                state: entry.status().state,
            };
            if !crate::events::deliver(&msg.sink, event) {
                return;
            }
        }
        subs.push(msg.sink);
    }
}

/// Once every server has stopped: ends what they left outside their process groups, in one
/// sweep of the instance's processes rather than one per server. Not when the manager stops
/// for a restart: its next start may have launched processes of the same instance already;
/// each server's exit watcher searches by its own launch then.
pub(crate) async fn end_left_behind(instance: String, groups: Vec<u32>) {
    let sweep =
        tokio::task::spawn_blocking(move || crate::process::end_instance(&instance, &groups));
    match tokio::time::timeout(crate::server::SWEEP_LIMIT, sweep).await {
        Ok(Ok(ended)) => {
            for p in ended {
                tracing::warn!(pid = p.pid, command = %p.command, "ended a process a server left outside its process group");
            }
        }
        Ok(Err(_)) => {}
        Err(_) => tracing::warn!(
            "the search for processes the servers left outside their groups did not end in time"
        ),
    }
}
