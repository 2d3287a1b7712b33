//! `ServerActor`: one per server. It owns the child process and everything on its pipes.
//!
//! Requests get ids of the actor's own (a counter) on the wire; the answer is matched by that id
//! and handed back to the caller, whose own id never reaches the server. Each process start is a
//! new *generation*: events from an older process (a late line, a late exit) are ignored.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use fleet_protocol::codec::{DecodedLine, FrameError, JsonRpcCodec};
use fleet_protocol::jsonrpc::{
    ErrorObject, Message as RpcMessage, Notification, Outcome, Request, RequestId, Response,
    error_codes,
};
use fleet_protocol::mcp::{self, methods};
use fleet_protocol::messages::health::HealthChanged;
use fleet_protocol::messages::metrics::{ExitReason, MetricEvent, RecordMetric};
use fleet_protocol::messages::server::{
    CallServer, CallServerReply, LaunchServerReply, ProbeServer, ServerEvent, StopMethod,
    StoppedServer,
};
use fleet_protocol::status::{Era, Handshake};
use fleet_protocol::{ExitInfo, FleetError, ServerSpec, ServerState, ServerStatus, Transport};
use futures::StreamExt;
use kameo::Actor;
use kameo::actor::{ActorRef, Recipient, WeakActorRef};
use kameo::error::{ActorStopReason, Infallible};
use kameo::message::{BoxMessage, Context, Message};
use kameo::reply::{BoxReplySender, DelegatedReply, ReplyError, ReplySender};
use nix::sys::signal::Signal;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use crate::actor::ServerManagerConfig;
use crate::events::EventHub;
use crate::handshake::{self, HandshakeError, HandshakeTimeouts, Wire};
use crate::pending::{Abandon, LaneOpen, PendingCall, PendingTable, Replier};
use crate::policy::{self, Decision, RestartTracker};
use crate::process;
use crate::remote;
use crate::stderr::{self, SharedStderr};

/// Counters the manager reads without asking the actor.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub in_flight: AtomicUsize,
}

pub struct ServerActorArgs {
    /// Set by the manager while it stops every server: their exits skip the search for what
    /// they left outside their process groups, which the manager does once for all.
    pub(crate) stopping_all: Arc<AtomicBool>,
    pub spec: ServerSpec,
    pub config: Arc<ServerManagerConfig>,
    pub metrics: Option<Recipient<RecordMetric>>,
    pub stderr: SharedStderr,
    pub counters: Arc<LiveCounters>,
    /// Where the actor publishes its status; the manager answers queries from the receiver.
    pub status: watch::Sender<ServerStatus>,
    pub(crate) events: EventHub,
    /// Shared with the manager, which reports it: each handled message adds one.
    pub(crate) handled: Arc<AtomicU64>,
    /// The table of pending requests, shared with the server's lane (made by the manager).
    pub(crate) table: PendingTable,
    /// Whether to start the server; if not, it begins `Stopped` (a server stopped on request
    /// that a restarted manager takes over).
    pub(crate) start: bool,
}

struct Running {
    handle: Handle,
    /// Dropping the sender closes the child's stdin once queued lines are written (or, for a
    /// remote server, ends its session).
    stdin: Option<mpsc::Sender<Bytes>>,
    exit: watch::Receiver<Option<ExitInfo>>,
}

/// What runs a server: a child process, or a link to a remote one.
#[derive(Clone)]
enum Handle {
    Process { pid: u32 },
    Remote { kill: CancellationToken },
}

impl Handle {
    /// Ends it at once: SIGKILL to the process group, or the link dropped.
    fn kill(&self) {
        match self {
            Handle::Process { pid } => process::signal_group(*pid, Signal::SIGKILL),
            Handle::Remote { kill } => kill.cancel(),
        }
    }
}

/// Where a request's progress notifications go, and the caller's token to restore on them.
struct ProgressRoute {
    token: Value,
    sink: mpsc::Sender<Notification>,
}

/// The progress token the actor puts on the wire for its request `id`.
fn wire_progress_token(id: u64) -> String {
    format!("mcp-fleet-{id}")
}

pub struct ServerActor {
    spec: ServerSpec,
    config: Arc<ServerManagerConfig>,
    metrics: Option<Recipient<RecordMetric>>,
    stderr: SharedStderr,
    counters: Arc<LiveCounters>,
    published: watch::Sender<ServerStatus>,
    codec: JsonRpcCodec,
    status: ServerStatus,
    generation: u64,
    running: Option<Running>,
    /// Set while a stop is under way, so the exit it causes is not reported as a crash.
    stopping: bool,
    /// Requests awaiting their answer, shared with the stdout reader and the watchdog.
    table: PendingTable,
    /// Ends the watchdog with the actor.
    watchdog: CancellationToken,
    /// Progress routes of pending requests, by the request's wire id.
    progress: HashMap<u64, ProgressRoute>,
    events: EventHub,
    ready_waiters: Vec<ReplySender<LaunchServerReply>>,
    launch_started: Instant,
    tracker: RestartTracker,
    /// Set when the actor kills its own process (it stopped answering probes, or failed its
    /// handshake after an automatic restart): the exit that follows is a failure with this
    /// reason.
    kill_reason: Option<String>,
    /// The running process was started by the restart policy, not by a launch or a request.
    automatic_start: bool,
    /// Names of the tools the server listed: the only values the `tool` metric label takes
    /// (shared with the lane).
    declared_tools: Arc<HashSet<String>>,
    /// The wire id of the open `subscriptions/listen` of a 2026-07-28 server, while it is open.
    listen: Option<u64>,
    /// How many times in a row that listen ended without being acknowledged: the backoff of
    /// asking again.
    listen_ends: u32,
    /// Whether a listing of the tools after a change is under way, and whether another change
    /// came meanwhile: one listing at a time, however many changes a server announces.
    listing_tools: bool,
    list_tools_again: bool,
    handled: Arc<AtomicU64>,
    stopping_all: Arc<AtomicBool>,
    /// The highest stop number of a `StopProcess` handled (see [`StartAgain`]).
    last_stop: u64,
    /// The highest `after` of a `StartAgain` that started the server: a stop numbered at most
    /// this was asked for before that restart, which has already stopped the process.
    started_after: u64,
    /// A `RestartServer` is stopping the process: calls that come meanwhile are held in
    /// `held` (up to `HELD_CALLS_MAX`) until its `StartAgain`, or a stop asked for, ends it.
    restart_stopping: bool,
    held: Vec<(CallServer, Option<ReplySender<CallServerReply>>)>,
    /// Answers to the server's own requests waiting for room in its input queue: their bytes
    /// and their count.
    answers_waiting: Arc<AtomicUsize>,
    answer_count: Arc<AtomicUsize>,
}

impl Actor for ServerActor {
    type Args = ServerActorArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "ServerActor"
    }

    async fn on_start(args: Self::Args, actor_ref: ActorRef<Self>) -> Result<Self, Self::Error> {
        let table = args.table;
        let start = args.start;
        let mut actor = ServerActor {
            status: ServerStatus {
                health: args.spec.health.clone(),
                ..ServerStatus::new(args.spec.name.clone(), ServerState::Starting)
            },
            codec: JsonRpcCodec::new(args.config.max_message_bytes),
            spec: args.spec,
            config: args.config,
            metrics: args.metrics,
            published: args.status,
            stderr: args.stderr,
            counters: args.counters,
            generation: 0,
            running: None,
            stopping: false,
            table,
            watchdog: CancellationToken::new(),
            progress: HashMap::new(),
            events: args.events,
            ready_waiters: Vec::new(),
            launch_started: Instant::now(),
            tracker: RestartTracker::default(),
            kill_reason: None,
            automatic_start: false,
            declared_tools: Arc::default(),
            listen: None,
            listen_ends: 0,
            listing_tools: false,
            list_tools_again: false,
            handled: args.handled,
            stopping_all: args.stopping_all,
            last_stop: 0,
            started_after: 0,
            restart_stopping: false,
            held: Vec::new(),
            answers_waiting: Arc::default(),
            answer_count: Arc::default(),
        };
        // The first state is set, not changed into: say it, so its series exist from the start.
        actor.metric(MetricEvent::StateChanged {
            server: actor.spec.name.clone(),
            state: actor.status.state.name(),
        });
        // What the server did not answer in time, or what its caller cancelled: the watchdog
        // answers the caller, and the actor tells the server.
        let weak = actor_ref.downgrade();
        tokio::spawn(
            actor
                .table
                .clone()
                .watch(actor.watchdog.clone(), move |ids| {
                    let weak = weak.clone();
                    async move {
                        if let Some(actor) = weak.upgrade() {
                            let _ = actor.tell(RequestsAbandoned { ids }).await;
                        }
                    }
                }),
        );
        if start {
            actor.start_process(&actor_ref, false);
        } else {
            actor.set_state(ServerState::Stopped);
        }
        Ok(actor)
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

    async fn on_link_died(
        &mut self,
        _: WeakActorRef<Self>,
        _: kameo::actor::ActorId,
        reason: ActorStopReason,
    ) -> Result<std::ops::ControlFlow<ActorStopReason>, Self::Error> {
        // The only link is to the manager: whenever it goes, for any reason, this goes too.
        Ok(std::ops::ControlFlow::Break(reason))
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        reason: ActorStopReason,
    ) -> Result<(), Self::Error> {
        // No process outlives its actor, whatever stopped the actor.
        self.table.close_lane();
        if let Some(r) = self.running.take() {
            tracing::debug!(server = %self.spec.name, pid = ?self.status.pid, ?reason, "actor stopping; killing its process group");
            r.handle.kill();
            // Whoever waits for this stop (a restarted manager about to launch the server
            // again) may count on the process being gone. (A remote link has no process: it
            // ends when its task sees the kill.)
            if let Handle::Process { pid } = r.handle {
                let mut exit = r.exit;
                if tokio::time::timeout(KILLED_EXIT_WAIT, exit.wait_for(Option::is_some))
                    .await
                    .is_err()
                {
                    tracing::warn!(server = %self.spec.name, pid, "the killed process has not exited yet");
                }
            }
        }
        self.watchdog.cancel();
        self.fail_pending(None);
        // The watchdog may have stopped before these were recorded, or stop after.
        self.table.flush_metrics(true);
        Ok(())
    }
}

impl ServerActor {
    fn metric(&self, event: MetricEvent) {
        if let Some(m) = &self.metrics {
            // A full or stopped collector must never hold up a server; the event is dropped.
            let _ = m.tell(RecordMetric { event }).try_send();
        }
    }

    fn set_state(&mut self, state: ServerState) {
        let changed = self.status.state != state;
        if changed {
            tracing::debug!(server = %self.spec.name, from = %self.status.state, to = %state, "state change");
            self.status.state = state;
        }
        self.sync_lane();
        self.push_status();
        if changed {
            self.events.publish(ServerEvent::StateChanged {
                server: self.spec.name.clone(),
                state: self.status.state.clone(),
            });
            self.metric(MetricEvent::StateChanged {
                server: self.spec.name.clone(),
                state: self.status.state.name(),
            });
        }
    }

    /// Opens the lane while the server serves, to the running process in its era with its
    /// declared tools, and closes it otherwise (see [`crate::lane`]).
    fn sync_lane(&self) {
        let stdin = self.running.as_ref().and_then(|r| r.stdin.as_ref());
        match (self.status.state.is_serving(), self.era(), stdin) {
            (true, Some(era), Some(stdin)) => self.table.open_lane(LaneOpen {
                era,
                stdin: stdin.downgrade(),
                tools: self.declared_tools.clone(),
            }),
            _ => self.table.close_lane(),
        }
    }

    /// Remembers the names of the tools the server declared.
    fn set_declared_tools(&mut self, tools: &[Value]) {
        self.declared_tools = Arc::new(
            tools
                .iter()
                .filter_map(|t| t.get("name")?.as_str().map(str::to_owned))
                .collect(),
        );
        self.sync_lane();
    }

    /// Publishes the status; the manager answers status queries from the latest published one.
    /// A watch channel keeps only the newest value, so no update can be lost or reordered.
    fn push_status(&self) {
        self.published.send_replace(self.status.clone());
    }

    /// Spawns the process and its pipe tasks, then the handshake. Failure to spawn leaves the
    /// server failed with the OS error; it never stops the actor.
    fn start_process(&mut self, actor_ref: &ActorRef<Self>, automatic: bool) {
        self.generation += 1;
        self.automatic_start = automatic;
        self.stopping = false;
        self.listen = None;
        self.listen_ends = 0;
        // A listing of the last process ends unheard (its generation is past).
        self.listing_tools = false;
        self.list_tools_again = false;
        self.launch_started = Instant::now();
        let generation = self.generation;
        let name = self.spec.name.clone();
        let transport = self.spec.transport.clone();
        let (command, args, env, cwd) = match &transport {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => (command, args, env, cwd.as_ref()),
            Transport::Http { url, headers } => {
                return self.start_remote(actor_ref, url, headers);
            }
        };
        self.set_state(ServerState::Starting);
        let launch_id = process::new_launch_id();
        let child_env = process::ChildEnv {
            instance_id: &self.config.instance_id,
            inherit: &self.config.inherit_env,
            launch_id: &launch_id,
        };
        let mut child = match process::spawn_child(command, args, env, cwd, &child_env) {
            Ok(c) => c,
            // The OS says "No such file" for a missing working directory too: say which.
            Err(e) if cwd.is_some_and(|d| !d.is_dir()) => {
                let dir = cwd.map(|d| d.display().to_string()).unwrap_or_default();
                return self.launch_failed(format!(
                    "could not run `{command}`: its working directory `{dir}` is not a directory ({e})"
                ));
            }
            Err(e) => {
                return self.launch_failed(format!("could not run `{command}`: {e}"));
            }
        };
        let pid = child.id().unwrap_or(0);
        let (Some(stdin), Some(stdout), Some(stderr_pipe)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            // Cannot happen with piped stdio; if it did, the process is useless: end it.
            process::signal_group(pid, Signal::SIGKILL);
            return self.launch_failed("the child's pipes were not available".into());
        };
        tracing::info!(server = %name, pid, command = %self.spec.command_line(), "server process started");
        self.metric(MetricEvent::ServerStarted {
            server: name.clone(),
        });

        // Exit watcher: owns the child handle, publishes the exit.
        let (exit_tx, exit_rx) = watch::channel(None);
        let actor = actor_ref.clone();
        let stopping_all = self.stopping_all.clone();
        let server = name.clone();
        tokio::spawn(async move {
            let exit = match child.wait().await {
                Ok(status) => process::exit_info(status),
                Err(e) => ExitInfo {
                    code: None,
                    signal: None,
                    at: SystemTime::now(),
                    reason: Some(format!("waiting for the process failed: {e}")),
                },
            };
            // The leader is gone, however it ended: what it left in its group (helpers of a
            // server that crashed, a daemon it started) goes too, so that nothing outlives it.
            process::signal_group(pid, Signal::SIGKILL);
            // And what left the group (`setsid`): found by its launch tag, before the exit is
            // told, so that a stopped server has left nothing. When every server stops, one
            // sweep of the instance does it for all (`StopAllServers`).
            // The walk of /proc is bounded: reading a hung process's environment can block, and
            // the exit must be told all the same.
            if !stopping_all.load(Ordering::Relaxed) {
                let sweep =
                    tokio::task::spawn_blocking(move || process::end_launch(&launch_id, pid));
                match tokio::time::timeout(SWEEP_LIMIT, sweep).await {
                    Ok(Ok(ended)) => {
                        for p in ended {
                            tracing::warn!(%server, pid = p.pid, command = %p.command, "ended a process the server left outside its process group");
                        }
                    }
                    Ok(Err(_)) => {}
                    Err(_) => {
                        tracing::warn!(%server, "the search for processes the server left outside its group did not end in time")
                    }
                }
            }
            let _ = exit_tx.send(Some(exit.clone()));
            let _ = actor.tell(Exited { generation, exit }).await;
        });

        // stdin writer: one task owns the pipe, so a child that does not read never blocks us.
        // Lines queued while a write was under way go out together in one write: one system
        // call for us and one read for the child instead of one per line.
        let (stdin_tx, mut stdin_rx) = mpsc::channel::<Bytes>(self.config.stdin_queue);
        let writer_name = name.clone();
        tokio::spawn(async move {
            let mut stdin = stdin;
            let mut batch = BytesMut::new();
            while let Some(line) = stdin_rx.recv().await {
                let result = if let Ok(next) = stdin_rx.try_recv() {
                    batch.extend_from_slice(&line);
                    batch.extend_from_slice(&next);
                    while batch.len() < STDIN_BATCH_BYTES
                        && let Ok(next) = stdin_rx.try_recv()
                    {
                        batch.extend_from_slice(&next);
                    }
                    let r = stdin.write_all(&batch).await;
                    batch.clear();
                    r
                } else {
                    stdin.write_all(&line).await
                };
                if let Err(error) = result {
                    tracing::debug!(server = %writer_name, %error, "stdin write failed");
                    break;
                }
                if stdin.flush().await.is_err() {
                    break;
                }
            }
            // Dropping `stdin` here closes the pipe: the polite first step of a stop.
        });

        // stdout reader: it answers responses to pending requests itself; every other line
        // becomes a message to the actor, garbage included.
        let actor = actor_ref.clone();
        let codec = JsonRpcCodec::new(self.config.max_message_bytes);
        let table = self.table.clone();
        let mut exited = exit_rx.clone();
        tokio::spawn(async move {
            let mut frames = FramedRead::new(stdout, codec);
            loop {
                let Some(item) = frames.next().await else {
                    // Its stdout is closed: no answer can come any more. A process that is
                    // exiting closes it first; one that lives on without it is told about.
                    if process::wait_exit(&mut exited, STDOUT_CLOSED_GRACE)
                        .await
                        .is_none()
                    {
                        let _ = actor.tell(StdoutClosed { generation }).await;
                    }
                    break;
                };
                match item {
                    Ok(item) => {
                        let item = match item {
                            Ok(RpcMessage::Response(resp)) => match table.answer_direct(resp) {
                                None => continue,
                                Some(resp) => Ok(RpcMessage::Response(resp)),
                            },
                            other => other,
                        };
                        if actor.tell(StdoutItem { generation, item }).await.is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });

        // stderr reader: lines into the ring buffer and the log, with the server's name.
        let ring = self.stderr.clone();
        let metrics = self.metrics.clone();
        let stderr_name = name.clone();
        tokio::spawn(async move {
            let mut lines =
                stderr::CappedLines::new(BufReader::new(stderr_pipe), stderr::MAX_LINE_BYTES);
            // Lines are counted in batches: at most one metric event per interval, sent once the
            // interval has passed even if the server has gone quiet since.
            let mut unreported = 0u64;
            let mut due = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    next = lines.next_line() => {
                        let Ok(Some((raw, cut))) = next else { break };
                        let mut line = String::from_utf8_lossy(&raw).trim_end().to_string();
                        if cut > 0 {
                            line.push_str(&format!(" [{cut} more bytes of this line cut]"));
                        }
                        tracing::info!(target: "mcp_fleet::server_stderr", server = %stderr_name, "{line}");
                        stderr::lock(&ring).push(line);
                        if unreported == 0 {
                            due = tokio::time::Instant::now() + STDERR_REPORT_EVERY;
                        }
                        unreported += 1;
                    }
                    () = tokio::time::sleep_until(due), if unreported > 0 => {
                        report_stderr(&metrics, &stderr_name, &mut unreported);
                    }
                }
            }
            report_stderr(&metrics, &stderr_name, &mut unreported);
        });

        self.spawn_sampler(pid, exit_rx.clone());
        self.running = Some(Running {
            handle: Handle::Process { pid },
            stdin: Some(stdin_tx),
            exit: exit_rx,
        });
        self.status.pid = Some(pid);
        self.begin_handshake(actor_ref);
    }

    /// Connects to a remote server: a link stands in for the child's pipes, then the handshake
    /// runs as for a child.
    fn start_remote(
        &mut self,
        actor_ref: &ActorRef<Self>,
        url: &str,
        headers: &std::collections::BTreeMap<String, String>,
    ) {
        self.set_state(ServerState::Starting);
        let link = remote::connect(remote::LinkArgs {
            server: self.spec.name.clone(),
            url: url.to_owned(),
            headers: headers.clone(),
            max_message_bytes: self.config.max_message_bytes,
            queue: self.config.stdin_queue,
            generation: self.generation,
            actor: actor_ref.clone(),
        });
        let link = match link {
            Ok(l) => l,
            Err(reason) => return self.launch_failed(reason),
        };
        tracing::info!(server = %self.spec.name, %url, "connecting to remote server");
        self.metric(MetricEvent::ServerStarted {
            server: self.spec.name.clone(),
        });
        self.running = Some(Running {
            handle: Handle::Remote { kill: link.kill },
            stdin: Some(link.outgoing),
            exit: link.exit,
        });
        self.status.pid = None;
        self.begin_handshake(actor_ref);
    }

    /// Marks the server initializing and runs the handshake off the actor.
    fn begin_handshake(&mut self, actor_ref: &ActorRef<Self>) {
        let generation = self.generation;
        self.status.started_at = Some(SystemTime::now());
        self.status.handshake = None;
        self.set_state(ServerState::Initializing);

        let wire = ActorWire {
            actor: actor_ref.clone(),
            exit: self.running.as_ref().map(|r| r.exit.clone()),
        };
        let actor = actor_ref.clone();
        let timeouts = HandshakeTimeouts {
            discover: self.config.discover_timeout,
            initialize: self.config.handshake_timeout,
        };
        let started = self.launch_started;
        tokio::spawn(async move {
            let result = handshake::run(&wire, timeouts, started).await;
            let _ = actor.tell(HandshakeFinished { generation, result }).await;
        });
    }

    /// Reads the process tree every `sample_every` until the process exits, and reports it with
    /// the requests in flight. The exit itself zeroes the figures (in the collector).
    fn spawn_sampler(&self, pid: u32, mut exit: watch::Receiver<Option<ExitInfo>>) {
        let every = self.config.sample_every;
        let Some(metrics) = self.metrics.clone().filter(|_| !every.is_zero()) else {
            return;
        };
        let server = self.spec.name.clone();
        let counters = self.counters.clone();
        tokio::spawn(async move {
            // The first reading comes one interval after the spawn: a process caught between
            // fork and exec reads as 0 bytes resident.
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = exit.wait_for(Option::is_some) => break,
                }
                let Some(mut sample) = crate::sample::sample_tree(pid) else {
                    break;
                };
                if exit.borrow().is_some() {
                    break;
                }
                sample.in_flight = counters.in_flight.load(Ordering::Relaxed) as u64;
                let event = MetricEvent::ProcessSampled {
                    server: server.clone(),
                    sample,
                };
                if metrics.tell(RecordMetric { event }).try_send().is_err() {
                    tracing::trace!(server = %server, "process sample dropped: the collector is busy or gone");
                }
            }
        });
    }

    fn launch_failed(&mut self, reason: String) {
        tracing::error!(server = %self.spec.name, %reason, "server failed to start");
        self.metric(MetricEvent::LaunchFailed {
            server: self.spec.name.clone(),
        });
        self.set_state(ServerState::Failed {
            reason: reason.clone(),
        });
        let err = FleetError::Spawn {
            server: self.spec.name.clone(),
            reason,
        };
        for w in self.ready_waiters.drain(..) {
            w.send(Err(err.clone()));
        }
    }

    /// Writes a message to the child's stdin queue.
    fn write(&mut self, msg: &RpcMessage) -> Result<(), FleetError> {
        let name = self.spec.name.clone();
        let Some(stdin) = self.running.as_ref().and_then(|r| r.stdin.as_ref()) else {
            return Err(FleetError::ServerExited {
                server: name,
                exit: self.status.last_exit.clone(),
            });
        };
        let line = self
            .codec
            .encode_line(msg)
            .map_err(|e| FleetError::InvalidRequest {
                reason: e.to_string(),
            })?;
        stdin.try_send(line).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => FleetError::Overloaded { server: name },
            mpsc::error::TrySendError::Closed(_) => FleetError::ServerExited {
                server: name,
                exit: None,
            },
        })
    }

    /// Sends a request with an id of our own; `reply` gets the answer, from whoever takes it
    /// out of the table (the reader, the actor, the watchdog). With a progress sink, a
    /// `params._meta.progressToken` is replaced by a token of ours for the wire. If it cannot be
    /// sent, `reply` is answered at once with why.
    fn send_request(&mut self, request: OutgoingRequest, reply: Replier, record: bool) {
        let OutgoingRequest {
            method,
            mut params,
            timeout,
            cancel,
            progress,
            extra,
        } = request;
        let id = self.table.next_id();
        let mut call = PendingCall::new(
            reply,
            method,
            params.as_ref(),
            timeout,
            cancel,
            record.then_some(&*self.declared_tools),
        );
        let route = progress.and_then(|sink| {
            let token = params
                .as_mut()?
                .get_mut("_meta")?
                .get_mut("progressToken")?;
            let caller = std::mem::replace(token, Value::String(wire_progress_token(id)));
            Some(ProgressRoute {
                token: caller,
                sink,
            })
        });
        call.routed = route.is_some();
        let msg = RpcMessage::Request(Request {
            extra,
            ..Request::new(id, call.method.clone(), params)
        });
        // In the table before it is on the wire: the reader may see the answer at once.
        self.table.insert(id, call);
        if let Some(route) = route {
            self.progress.insert(id, route);
        }
        if let Err(e) = self.write(&msg) {
            self.progress.remove(&id);
            if let Some(call) = self.table.take(id) {
                self.table.finish(call, Err(e));
            }
        }
    }

    /// Asks a 2026-07-28 server whose capabilities offer list changes for them, on one
    /// `subscriptions/listen` that stays open while the process runs (a 2025-era server sends
    /// them unasked). It is not in the pending table: it has no caller and no deadline, and is
    /// not a request in flight. Its answer, if any (a refusal, or the stream's end), reaches
    /// [`Self::on_response`].
    fn listen_for_list_changes(&mut self) {
        let Some(handshake) = self.status.handshake.as_ref() else {
            return;
        };
        if handshake.era != Era::Modern {
            return;
        }
        let Some(notifications) = mcp::listen_filter_for(&handshake.capabilities) else {
            return;
        };
        let id = self.table.next_id();
        let params =
            mcp::params_for_era(Era::Modern, Some(json!({ "notifications": notifications })));
        let msg = RpcMessage::Request(Request::new(id, methods::SUBSCRIPTIONS_LISTEN, params));
        match self.write(&msg) {
            Ok(()) => self.listen = Some(id),
            Err(error) => {
                tracing::warn!(server = %self.spec.name, %error, "could not ask the server for its list changes")
            }
        }
    }

    /// Sends a request; the receiver gets the answer.
    fn request(&mut self, request: OutgoingRequest) -> oneshot::Receiver<CallServerReply> {
        let (tx, rx) = oneshot::channel();
        self.send_request(request, Replier::Oneshot(tx), false);
        rx
    }

    fn era(&self) -> Option<Era> {
        self.status.era()
    }

    fn not_serving(&self) -> FleetError {
        match &self.status.state {
            ServerState::Failed { .. } | ServerState::Stopped | ServerState::Restarting
                if self.status.last_exit.is_some() =>
            {
                FleetError::ServerExited {
                    server: self.spec.name.clone(),
                    exit: self.status.last_exit.clone(),
                }
            }
            state => FleetError::NotReady {
                server: self.spec.name.clone(),
                state: state.to_string(),
            },
        }
    }

    /// Fails every request in flight at once (the process is gone, or the actor is).
    fn fail_pending(&mut self, exit: Option<ExitInfo>) {
        self.progress.clear();
        for call in self.table.drain() {
            let error = FleetError::ServerExited {
                server: self.spec.name.clone(),
                exit: exit.clone(),
            };
            self.table.finish(call, Err(error));
        }
    }

    fn on_line(&mut self, actor_ref: &ActorRef<Self>, item: DecodedLine) {
        match item {
            Ok(RpcMessage::Response(resp)) => self.on_response(actor_ref, resp),
            Ok(RpcMessage::Request(req)) => self.on_server_request(req),
            Ok(RpcMessage::Notification(n)) => self.on_notification(actor_ref, n),
            Err(error) => {
                self.status.bad_stdout_lines += 1;
                tracing::warn!(server = %self.spec.name, %error, "server wrote a line that is not JSON-RPC on stdout; ignored");
                self.metric(MetricEvent::BadStdoutLine {
                    server: self.spec.name.clone(),
                });
                self.push_status();
                match &error {
                    FrameError::BadAnswer { id, problem } => {
                        self.on_bad_answer(actor_ref, id, &problem.to_string());
                    }
                    FrameError::TooLong {
                        limit,
                        answers: Some(id),
                    } => {
                        let reason =
                            format!("the answer is larger than the limit of {limit} bytes");
                        self.on_bad_answer(actor_ref, id, &reason);
                    }
                    _ => {}
                }
            }
        }
    }

    /// An answer to one of our requests that is not a valid response (an `error` without its
    /// `message`, say): the request fails at once, rather than at its timeout.
    fn on_bad_answer(&mut self, actor_ref: &ActorRef<Self>, id: &RequestId, reason: &str) {
        match self.answered(id.as_u64()) {
            Answered::Listen => {
                let error = ErrorObject::new(error_codes::INTERNAL_ERROR, reason);
                self.on_listen_ended(actor_ref, Outcome::Error(error));
            }
            Answered::Call(call) => {
                let error = FleetError::BadAnswer {
                    server: self.spec.name.clone(),
                    method: call.method.clone(),
                    reason: reason.to_owned(),
                };
                self.table.finish(call, Err(error));
            }
            Answered::Nothing => {}
        }
    }

    fn on_response(&mut self, actor_ref: &ActorRef<Self>, resp: Response) {
        let Some(id) = resp.id.as_ref().and_then(RequestId::as_u64) else {
            tracing::warn!(server = %self.spec.name, id = ?resp.id, "response with an id we never sent; ignored");
            return;
        };
        match self.answered(Some(id)) {
            Answered::Listen => self.on_listen_ended(actor_ref, resp.outcome),
            Answered::Call(call) => {
                let answer = self.table.outcome(resp);
                self.table.finish(call, answer);
            }
            Answered::Nothing => {
                tracing::debug!(server = %self.spec.name, id, "late response (timed out or cancelled); ignored");
            }
        }
    }

    /// What an answer to wire id `id` answers, taken out of where it waited: our listen, or a
    /// call of the table (its progress route dropped).
    fn answered(&mut self, id: Option<u64>) -> Answered {
        let Some(id) = id else {
            return Answered::Nothing;
        };
        if self.listen == Some(id) {
            self.listen = None;
            return Answered::Listen;
        }
        self.progress.remove(&id);
        self.table
            .take(id)
            .map_or(Answered::Nothing, Answered::Call)
    }

    /// Requests from the server to us (sampling, roots, elicitation, ping). The fleet offers no
    /// client capabilities yet, so only `ping` gets a result; the rest get "method not found"
    /// rather than silence, so the server never waits on us.
    fn on_server_request(&mut self, req: Request) {
        let answer = if req.method == methods::PING {
            Response::result(req.id, json!({}))
        } else {
            tracing::debug!(server = %self.spec.name, method = %req.method, "server request not supported by the fleet");
            Response::error(
                Some(req.id),
                ErrorObject::new(
                    error_codes::METHOD_NOT_FOUND,
                    format!("mcp-fleet does not support `{}` from servers", req.method),
                ),
            )
        };
        // An answer is never dropped for a full queue (the server would wait for it for ever,
        // a `ping` of its own say): it waits for room, off the actor's path.
        // At most `ANSWERS_WAITING_MAX` answers and `ANSWER_BYTES_WAITING_MAX` bytes wait so
        // (an answer repeats the request's id and method, which the server chooses): a server
        // that keeps asking without reading loses answers beyond that, rather than growing
        // our memory for ever.
        if let Err(FleetError::Overloaded { .. }) =
            self.write(&RpcMessage::Response(answer.clone()))
            && let Some(stdin) = self.running.as_ref().and_then(|r| r.stdin.clone())
            && let Ok(line) = self.codec.encode_line(&RpcMessage::Response(answer))
        {
            let waiting = self.answers_waiting.clone();
            let size = line.len();
            let before = waiting.fetch_add(size, Ordering::Relaxed);
            let count = self.answer_count.clone();
            if count.fetch_add(1, Ordering::Relaxed) >= ANSWERS_WAITING_MAX
                || before + size > ANSWER_BYTES_WAITING_MAX
            {
                waiting.fetch_sub(size, Ordering::Relaxed);
                count.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(server = %self.spec.name, "server asks faster than it reads its input; an answer to it was dropped");
                return;
            }
            tokio::spawn(async move {
                let _ = stdin.send(line).await;
                waiting.fetch_sub(size, Ordering::Relaxed);
                count.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }

    /// Progress goes to the request it belongs to, with the caller's token restored.
    fn on_progress(&mut self, mut n: Notification) {
        let id = n
            .params
            .as_ref()
            .and_then(|p| p.get("progressToken"))
            .and_then(Value::as_str)
            .and_then(|t| t.strip_prefix("mcp-fleet-"))
            .and_then(|t| t.parse::<u64>().ok());
        let Some(route) = id.and_then(|id| self.progress.get(&id)) else {
            tracing::debug!(server = %self.spec.name, "progress for no request of ours; ignored");
            return;
        };
        if let Some(token) = n.params.as_mut().and_then(|p| p.get_mut("progressToken")) {
            *token = route.token.clone();
        }
        if route.sink.try_send(n).is_err() {
            tracing::debug!(server = %self.spec.name, "progress dropped: its caller is not reading");
        }
    }

    fn on_notification(&mut self, actor_ref: &ActorRef<Self>, n: Notification) {
        tracing::debug!(server = %self.spec.name, method = %n.method, "notification from server");
        if n.method == methods::PROGRESS {
            return self.on_progress(n);
        }
        if n.method == methods::SUBSCRIPTIONS_ACKNOWLEDGED {
            return self.on_listen_acknowledged(actor_ref, &n);
        }
        self.on_change(actor_ref, n);
    }

    /// Our `subscriptions/listen` is acknowledged: the stream announces changes from now on. One
    /// made before it was open is caught by taking each list it will carry as changed.
    fn on_listen_acknowledged(&mut self, actor_ref: &ActorRef<Self>, n: &Notification) {
        let params = n.params.as_ref();
        let ours = match params
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(mcp::META_SUBSCRIPTION_ID))
        {
            Some(id) => self
                .listen
                .is_some_and(|listen| id.as_u64() == Some(listen)),
            None => self.listen.is_some(),
        };
        if !ours {
            tracing::debug!(server = %self.spec.name, "acknowledgement of no listen of ours; ignored");
            return;
        }
        self.listen_ends = 0;
        tracing::debug!(server = %self.spec.name, "subscriptions/listen acknowledged: following the server's list changes");
        for filter in mcp::acknowledged_filters(params) {
            self.on_change(actor_ref, Notification::new(filter.notification, None));
        }
    }

    /// Our `subscriptions/listen` got an answer. A result or a refusal is the server's choice,
    /// final for this process; an error otherwise (a remote's stream that closed) is followed by
    /// asking again, with the server's restart backoff, as long as the server serves.
    fn on_listen_ended(&mut self, actor_ref: &ActorRef<Self>, outcome: Outcome) {
        if self.stopping {
            return;
        }
        let name = &self.spec.name;
        let error = match outcome {
            Outcome::Error(e)
                if !matches!(
                    e.code,
                    error_codes::METHOD_NOT_FOUND | error_codes::INVALID_PARAMS
                ) =>
            {
                e
            }
            Outcome::Error(e) => {
                tracing::info!(server = %name, code = e.code, error = %e.message, "the server does not take subscriptions/listen: changes to its lists are not followed");
                return;
            }
            Outcome::Result(_) => {
                tracing::info!(server = %name, "the server ended subscriptions/listen: changes to its lists are not followed");
                return;
            }
        };
        let after = policy::delay(
            &self.spec.restart,
            self.listen_ends,
            process::jitter_sample(),
        );
        self.listen_ends = self.listen_ends.saturating_add(1);
        tracing::warn!(server = %name, reason = %error.message, after_ms = after.as_millis() as u64, "subscriptions/listen ended; asking again");
        let generation = self.generation;
        tell_after(actor_ref, after, ListenAgain { generation });
    }

    /// What a server announced: published to subscribers, and a tools change makes the actor
    /// list the tools again.
    fn on_change(&mut self, actor_ref: &ActorRef<Self>, n: Notification) {
        // A tools change is announced once the actor has the new list (`ToolsRefreshed`), so
        // subscribers read it from the status instead of listing the server again.
        if (n.method.ends_with("/list_changed") && n.method != methods::TOOLS_LIST_CHANGED)
            || n.method == methods::RESOURCE_UPDATED
            || n.method == methods::LOG_MESSAGE
        {
            self.events.publish(ServerEvent::Notified {
                server: self.spec.name.clone(),
                notification: Box::new(n.clone()),
            });
        }
        if n.method == methods::TOOLS_LIST_CHANGED {
            self.list_tools(actor_ref);
        }
    }

    /// Lists the tools again, off the actor's path; the answer comes back as `ToolsRefreshed`.
    /// While a listing is under way, a change only asks for one more after it: a server that
    /// announces changes faster than it answers gets one request at a time, not one per change.
    fn list_tools(&mut self, actor_ref: &ActorRef<Self>) {
        if self.listing_tools {
            self.list_tools_again = true;
            return;
        }
        let Some(era) = self.era() else { return };
        self.listing_tools = true;
        let wire = ActorWire {
            actor: actor_ref.clone(),
            exit: None,
        };
        let actor = actor_ref.clone();
        let generation = self.generation;
        let timeout = self.config.request_timeout_of(&self.spec);
        let server = self.spec.name.clone();
        tokio::spawn(async move {
            let tools = match handshake::list_tools(&wire, era, timeout).await {
                Ok(tools) => Some(tools),
                Err(error) => {
                    tracing::warn!(%server, %error, "could not list the tools again after a change");
                    None
                }
            };
            let _ = actor.tell(ToolsRefreshed { generation, tools }).await;
        });
    }

    fn reply_when_ready(&mut self, tx: Option<ReplySender<LaunchServerReply>>) {
        let Some(tx) = tx else { return };
        match &self.status.state {
            ServerState::Ready | ServerState::Unhealthy => tx.send(Ok(self.status.clone())),
            ServerState::Failed { reason } => tx.send(Err(FleetError::Spawn {
                server: self.spec.name.clone(),
                reason: reason.clone(),
            })),
            ServerState::Stopped => tx.send(Err(self.not_serving())),
            _ => self.ready_waiters.push(tx),
        }
    }

    /// An exit nobody asked for: the restart policy decides.
    /// `killed`: why mcp-fleet killed the process, if it did.
    fn on_unexpected_exit(
        &mut self,
        actor_ref: &ActorRef<Self>,
        exit: ExitInfo,
        killed: Option<String>,
    ) {
        let name = self.spec.name.clone();
        let failure = killed.is_some() || !exit.success();
        let why = killed.unwrap_or_else(|| format!("exited unexpectedly ({exit})"));
        tracing::error!(server = %name, %exit, reason = %why, "server process ended");
        self.status.recent_exits.push(exit);
        if self.status.recent_exits.len() > RECENT_EXITS {
            self.status.recent_exits.remove(0);
        }
        let policy = &self.spec.restart;
        // A run that never became ready (its handshake hung, or failed) was not a stable one,
        // however long it took: it must not reset the backoff and the budget.
        let ran_for = if self.status.handshake.is_some() {
            self.launch_started.elapsed()
        } else {
            Duration::ZERO
        };
        let decision = self.tracker.on_exit(
            policy,
            Instant::now(),
            ran_for,
            failure,
            process::jitter_sample(),
        );
        match decision {
            Decision::Restart { after, attempt } => {
                tracing::warn!(server = %name, attempt, after_ms = after.as_millis() as u64, "restarting after backoff");
                self.status.next_restart_at = Some(SystemTime::now() + after);
                self.set_state(ServerState::Restarting);
                let generation = self.generation;
                tell_after(actor_ref, after, RestartDue { generation });
            }
            Decision::CrashLoop { restarts } => {
                let exits: Vec<String> = self
                    .status
                    .recent_exits
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                let reason = format!(
                    "crash loop: {restarts} restarts within {:?} did not help; last exits: {}; \
                     stays down until restarted",
                    policy.window,
                    exits.join(", ")
                );
                tracing::error!(server = %name, %reason, "server gave up");
                self.set_state(ServerState::Failed { reason });
            }
            Decision::Stay => {
                self.set_state(ServerState::Failed { reason: why });
            }
        }
    }

    /// Begins a stop: stdin closed now; the signals follow in a task. `None` if nothing runs.
    fn begin_stop(
        &mut self,
    ) -> Option<impl Future<Output = (StopMethod, Option<ExitInfo>, Duration)> + Send + 'static>
    {
        self.running.as_ref()?;
        self.stopping = true;
        // Closed before stdin is, so that no call by the lane is written after the stop began.
        self.table.close_lane();
        // A process that finishes its requests before it exits must not wait for the listen (a
        // remote link's requests end with the link).
        if let Some(id) = self.listen.take()
            && matches!(
                self.running.as_ref().map(|r| &r.handle),
                Some(Handle::Process { .. })
            )
        {
            let cancel = Notification::new(
                methods::CANCELLED,
                Some(json!({"requestId": id, "reason": "the fleet stops the server"})),
            );
            let _ = self.write(&RpcMessage::Notification(cancel));
        }
        let running = self.running.as_mut()?;
        running.stdin.take();
        let handle = running.handle.clone();
        let exit = running.exit.clone();
        let grace = self.config.stop_grace;
        self.set_state(ServerState::Stopping);
        tracing::info!(server = %self.spec.name, pid = ?self.status.pid, "stopping server");
        Some(async move {
            match handle {
                Handle::Process { pid } => process::finish_stop(pid, exit, grace).await,
                Handle::Remote { kill } => remote::finish_stop(kill, exit, grace).await,
            }
        })
    }
}

/// Tells the actor `msg` once `after` has passed (a message of its own that carries the
/// generation it is for, so that a later process ignores it).
fn tell_after<M>(actor_ref: &ActorRef<ServerActor>, after: Duration, msg: M)
where
    ServerActor: Message<M>,
    M: Send + 'static,
{
    let actor = actor_ref.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let _ = actor.tell(msg).await;
    });
}

fn report_stderr(metrics: &Option<Recipient<RecordMetric>>, server: &str, count: &mut u64) {
    if *count == 0 {
        return;
    }
    if let Some(m) = metrics {
        let _ = m
            .tell(RecordMetric {
                event: MetricEvent::StderrLines {
                    server: server.to_string(),
                    count: *count,
                },
            })
            .try_send();
    }
    *count = 0;
}

/// The handshake's view of the actor: requests go through the actor's own id mapping.
struct ActorWire {
    actor: ActorRef<ServerActor>,
    exit: Option<watch::Receiver<Option<ExitInfo>>>,
}

impl Wire for ActorWire {
    async fn request(
        &self,
        method: &'static str,
        params: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, FleetError> {
        match self
            .actor
            .ask(WireRequest {
                method,
                params,
                timeout,
            })
            .await
        {
            Ok(answer) => Ok(answer.result),
            Err(e) => Err(crate::actor::send_error(e, "server actor")),
        }
    }

    async fn notify(&self, method: &'static str, params: Option<Value>) -> Result<(), FleetError> {
        match self.actor.ask(WireNotify { method, params }).await {
            Ok(()) => Ok(()),
            Err(e) => Err(crate::actor::send_error(e, "server actor")),
        }
    }

    fn exited(&self) -> bool {
        self.exit.as_ref().is_some_and(|e| e.borrow().is_some())
    }
}

/// A line from the child's stdout (internal).
pub struct StdoutItem {
    pub(crate) generation: u64,
    pub(crate) item: DecodedLine,
}

/// The child closed its stdout and was still running `STDOUT_CLOSED_GRACE` later (internal).
pub struct StdoutClosed {
    generation: u64,
}

impl Message<StdoutClosed> for ServerActor {
    type Reply = ();

    async fn handle(&mut self, msg: StdoutClosed, _: &mut Context<Self, ()>) {
        if msg.generation != self.generation || self.stopping {
            return;
        }
        let Some(r) = &self.running else { return };
        // Already reaped (its exit is on its way, after the search for what it left behind):
        // it exited, and is not to be taken for one that lived on.
        if let Handle::Process { pid } = r.handle
            && !process::process_running(pid)
        {
            return;
        }
        // Every call would wait for its timeout, and probes of a server that is not probed
        // never notice: end it, and the restart policy replaces it as after a crash.
        tracing::warn!(server = %self.spec.name, "server closed its stdout but kept running; killing it, as no answer can come");
        self.kill_reason = Some("it closed its stdout but kept running".into());
        r.handle.kill();
    }
}

/// The child exited, or a remote link ended (internal).
pub struct Exited {
    pub(crate) generation: u64,
    pub(crate) exit: ExitInfo,
}

/// The handshake ended (internal).
pub struct HandshakeFinished {
    generation: u64,
    result: Result<Handshake, HandshakeError>,
}

/// The watchdog answered these requests: timed out or cancelled (internal).
pub struct RequestsAbandoned {
    ids: Vec<(u64, Abandon)>,
}

/// What `send_request` sends.
struct OutgoingRequest {
    method: String,
    params: Option<Value>,
    timeout: Duration,
    cancel: Option<CancellationToken>,
    progress: Option<mpsc::Sender<Notification>>,
    /// Top-level members the caller's request had that JSON-RPC does not define.
    extra: Map<String, Value>,
}

impl OutgoingRequest {
    fn plain(method: String, params: Option<Value>, timeout: Duration) -> Self {
        OutgoingRequest {
            method,
            params,
            timeout,
            cancel: None,
            progress: None,
            extra: Map::new(),
        }
    }
}

/// A request of the handshake, allowed before the server is ready (internal).
pub struct WireRequest {
    method: &'static str,
    params: Option<Value>,
    timeout: Duration,
}

/// A notification of the handshake (internal).
pub struct WireNotify {
    method: &'static str,
    params: Option<Value>,
}

/// The tools after a `list_changed`, or `None` if listing them failed (internal).
pub struct ToolsRefreshed {
    generation: u64,
    tools: Option<Vec<Value>>,
}

/// What an answer from the server answers (see [`ServerActor::answered`]).
enum Answered {
    Listen,
    Call(PendingCall),
    Nothing,
}

/// Time to ask for list changes again after the listen ended (internal).
pub struct ListenAgain {
    generation: u64,
}

/// Start the process again after a stop (internal, used by restart). `after` is the manager's
/// stop number when the restart was asked: a stop asked for since then (it reaches this actor
/// while the restart's own stop runs) wins, and the process stays stopped.
pub struct StartAgain {
    pub(crate) after: u64,
}

/// A restart's backoff has passed (internal).
pub struct RestartDue {
    generation: u64,
}

/// How long a stopping actor waits for the exit of the process it killed.
const KILLED_EXIT_WAIT: Duration = Duration::from_secs(2);

/// Queued stdin lines are joined into one write up to about this size.
const STDIN_BATCH_BYTES: usize = 64 * 1024;

/// How many answers to a server's own requests may wait for room in its input queue.
const ANSWERS_WAITING_MAX: usize = 4096;
/// How many bytes of such answers may wait.
const ANSWER_BYTES_WAITING_MAX: usize = 4 * 1024 * 1024;

/// How long the search for what a server left outside its process group may take before its
/// exit is told anyway.
pub(crate) const SWEEP_LIMIT: Duration = Duration::from_secs(3);

/// How long a child that closed its stdout has to exit before it is taken for one that lives on
/// without it (and killed): an exiting process closes its stdout a moment before it is gone.
const STDOUT_CLOSED_GRACE: Duration = Duration::from_secs(1);

/// How long stderr lines are counted before the count goes to metrics.
const STDERR_REPORT_EVERY: Duration = Duration::from_millis(500);

/// How many calls may wait for a restart's stop to end (see `ServerActor::held`); more fail at
/// once with the server's state.
const HELD_CALLS_MAX: usize = 1024;

/// How many exits a status keeps.
const RECENT_EXITS: usize = 5;

impl Message<RestartDue> for ServerActor {
    type Reply = ();

    async fn handle(&mut self, msg: RestartDue, ctx: &mut Context<Self, ()>) {
        if msg.generation == self.generation
            && self.status.state == ServerState::Restarting
            && self.running.is_none()
        {
            self.status.restarts += 1;
            self.status.next_restart_at = None;
            self.metric(MetricEvent::ServerRestarted {
                server: self.spec.name.clone(),
            });
            let actor_ref = ctx.actor_ref().clone();
            self.start_process(&actor_ref, true);
        }
    }
}

impl Message<StdoutItem> for ServerActor {
    type Reply = ();

    async fn handle(&mut self, msg: StdoutItem, ctx: &mut Context<Self, ()>) {
        if msg.generation == self.generation {
            self.on_line(ctx.actor_ref(), msg.item);
        }
    }
}

impl Message<Exited> for ServerActor {
    type Reply = ();

    async fn handle(&mut self, msg: Exited, ctx: &mut Context<Self, ()>) {
        if msg.generation != self.generation {
            return;
        }
        let expected = self.stopping;
        // Taken whether the exit was expected or not: it is this process's, not the next one's.
        let killed = self.kill_reason.take();
        let mut exit = msg.exit;
        // mcp-fleet's own reason for a kill it made is the exit's, for the status and callers.
        if exit.reason.is_none() {
            exit.reason.clone_from(&killed);
        }
        self.table.close_lane();
        self.running = None;
        self.status.pid = None;
        self.status.last_exit = Some(exit.clone());
        self.fail_pending(Some(exit.clone()));
        // A stop mcp-fleet made of its own accord (a handshake failed at a launch) is no stop
        // someone asked for: its exit counts as the kill it is.
        let asked = expected && killed.is_none();
        self.metric(MetricEvent::ServerExited {
            server: self.spec.name.clone(),
            exit: exit.clone(),
            reason: ExitReason::classify(&exit, asked, killed.is_some()),
        });
        if expected {
            tracing::info!(server = %self.spec.name, exit = %exit, "server stopped");
            if asked {
                self.metric(MetricEvent::ServerStopped {
                    server: self.spec.name.clone(),
                });
            }
            // A server stopped because its handshake failed stays failed, with that reason.
            if !matches!(self.status.state, ServerState::Failed { .. }) {
                self.set_state(ServerState::Stopped);
            } else {
                self.push_status();
            }
        } else {
            self.on_unexpected_exit(ctx.actor_ref(), exit, killed);
        }
        let err = self.not_serving();
        for w in self.ready_waiters.drain(..) {
            w.send(Err(err.clone()));
        }
    }
}

impl Message<HandshakeFinished> for ServerActor {
    type Reply = ();

    async fn handle(&mut self, msg: HandshakeFinished, _: &mut Context<Self, ()>) {
        if msg.generation != self.generation || self.status.state != ServerState::Initializing {
            return;
        }
        match msg.result {
            Ok(handshake) => {
                tracing::info!(
                    server = %self.spec.name,
                    era = %handshake.era,
                    version = %handshake.protocol_version,
                    tools = handshake.tools.len(),
                    took_ms = handshake.took.as_millis() as u64,
                    "server ready"
                );
                self.metric(MetricEvent::ServerReady {
                    server: self.spec.name.clone(),
                    handshake: handshake.took,
                });
                self.set_declared_tools(&handshake.tools);
                self.status.handshake = Some(Arc::new(handshake));
                self.set_state(ServerState::Ready);
                self.listen_for_list_changes();
                for w in self.ready_waiters.drain(..) {
                    w.send(Ok(self.status.clone()));
                }
            }
            // The exit's own message decides what happens next.
            Err(HandshakeError::Exited) => {}
            Err(HandshakeError::Failed(reason)) => {
                tracing::error!(server = %self.spec.name, %reason, "MCP handshake failed");
                self.metric(MetricEvent::LaunchFailed {
                    server: self.spec.name.clone(),
                });
                // After an automatic restart the server has served before, and what failed may
                // pass (a slow start, a download): the run counts as a failure and the restart
                // policy decides, with its backoff and budget. At a launch or a restart someone
                // asked for, the failure is reported as it is.
                if self.automatic_start
                    && let Some(r) = &self.running
                {
                    self.kill_reason = Some(format!("handshake failed: {reason}"));
                    r.handle.kill();
                    return;
                }
                let err = FleetError::Handshake {
                    server: self.spec.name.clone(),
                    reason: reason.clone(),
                };
                // A server that cannot speak MCP is of no use: end its process.
                if let Some(stop) = self.begin_stop() {
                    self.kill_reason = Some(format!("handshake failed: {reason}"));
                    tokio::spawn(stop);
                }
                self.set_state(ServerState::Failed {
                    reason: format!("handshake failed: {reason}"),
                });
                for w in self.ready_waiters.drain(..) {
                    w.send(Err(err.clone()));
                }
            }
        }
    }
}

impl Message<RequestsAbandoned> for ServerActor {
    type Reply = ();

    async fn handle(&mut self, msg: RequestsAbandoned, _: &mut Context<Self, ()>) {
        for (id, why) in msg.ids {
            self.progress.remove(&id);
            // Tell the server to stop working on it; its late answer will be ignored anyway.
            let cancel = Notification::new(
                methods::CANCELLED,
                Some(json!({"requestId": id, "reason": why.reason()})),
            );
            let _ = self.write(&RpcMessage::Notification(cancel));
        }
    }
}

impl Message<WireRequest> for ServerActor {
    type Reply = DelegatedReply<CallServerReply>;

    async fn handle(
        &mut self,
        msg: WireRequest,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let (delegated, tx) = ctx.reply_sender();
        let reply = tx.map_or(Replier::Nobody, Replier::Caller);
        self.send_request(
            OutgoingRequest::plain(msg.method.to_string(), msg.params, msg.timeout),
            reply,
            false,
        );
        delegated
    }
}

impl Message<WireNotify> for ServerActor {
    type Reply = Result<(), FleetError>;

    async fn handle(&mut self, msg: WireNotify, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.write(&RpcMessage::Notification(Notification::new(
            msg.method, msg.params,
        )))
    }
}

impl Message<ToolsRefreshed> for ServerActor {
    type Reply = ();

    async fn handle(&mut self, msg: ToolsRefreshed, ctx: &mut Context<Self, ()>) {
        if msg.generation != self.generation {
            return;
        }
        self.listing_tools = false;
        if std::mem::take(&mut self.list_tools_again) {
            self.list_tools(ctx.actor_ref());
        }
        let Some(tools) = msg.tools else { return };
        if let Some(h) = &self.status.handshake {
            // A list read again only to be sure (see `SUBSCRIPTIONS_ACKNOWLEDGED`) may not have
            // changed: nothing to announce then.
            if *h.tools == *tools {
                return;
            }
            let mut h = (**h).clone();
            self.set_declared_tools(&tools);
            h.tools = Arc::from(tools);
            tracing::info!(server = %self.spec.name, tools = h.tools.len(), "tool list changed");
            self.status.handshake = Some(Arc::new(h));
            self.push_status();
            self.events.publish(ServerEvent::Notified {
                server: self.spec.name.clone(),
                notification: Box::new(Notification::new(methods::TOOLS_LIST_CHANGED, None)),
            });
        }
    }
}

impl Message<ListenAgain> for ServerActor {
    type Reply = ();

    async fn handle(&mut self, msg: ListenAgain, _: &mut Context<Self, ()>) {
        if msg.generation == self.generation
            && self.status.state.is_serving()
            && !self.stopping
            && self.listen.is_none()
        {
            self.listen_for_list_changes();
        }
    }
}

impl Message<LaunchWait> for ServerActor {
    type Reply = DelegatedReply<LaunchServerReply>;

    async fn handle(&mut self, _: LaunchWait, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let (delegated, tx) = ctx.reply_sender();
        self.reply_when_ready(tx);
        delegated
    }
}

/// Reply once the server is ready or has failed (internal; the manager forwards launches here).
pub struct LaunchWait;

impl Message<StartAgain> for ServerActor {
    type Reply = DelegatedReply<LaunchServerReply>;

    async fn handle(
        &mut self,
        msg: StartAgain,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.restart_stopping = false;
        if self.last_stop > msg.after {
            self.release_held(ctx.actor_ref());
            return ctx.reply(Err(FleetError::NotReady {
                server: self.spec.name.clone(),
                state: "stopped: a stop was asked for after this restart".into(),
            }));
        }
        // A restart whose start comes after the fleet began to stop every server: no process
        // may start once `StopAllServers` has stopped them.
        if self.stopping_all.load(Ordering::Relaxed) {
            self.release_held(ctx.actor_ref());
            return ctx.reply(Err(FleetError::NotReady {
                server: self.spec.name.clone(),
                state: "stopping: the fleet stops every server".into(),
            }));
        }
        self.started_after = self.started_after.max(msg.after);
        // Someone asked: a fresh start, with the restart history forgotten.
        self.tracker.reset();
        self.status.next_restart_at = None;
        if self.running.is_none() {
            self.status.restarts += 1;
            let actor_ref = ctx.actor_ref().clone();
            self.start_process(&actor_ref, false);
        }
        // Calls held while the restart stopped the process now wait for the new one.
        self.release_held(ctx.actor_ref());
        let (delegated, tx) = ctx.reply_sender();
        self.reply_when_ready(tx);
        delegated
    }
}

impl Message<CallServer> for ServerActor {
    type Reply = DelegatedReply<CallServerReply>;

    async fn handle(
        &mut self,
        msg: CallServer,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let (delegated, reply) = ctx.reply_sender();
        self.call_server(msg, reply, ctx.actor_ref());
        delegated
    }
}

impl Message<Forwarded<CallServer, CallServerReply>> for ServerActor {
    type Reply = ();

    async fn handle(
        &mut self,
        msg: Forwarded<CallServer, CallServerReply>,
        ctx: &mut Context<Self, ()>,
    ) {
        self.call_server(msg.msg, Some(msg.reply), ctx.actor_ref());
    }
}

/// A message the manager hands to this actor together with its caller's reply sender, which
/// the actor answers (internal). It is told: kameo 0.22's `try_forward` and `forward` panic
/// when the mailbox is full or closed (they take the message back as the wrong type), while a
/// told message that cannot be delivered comes back whole, to be answered with why.
pub struct Forwarded<M, R> {
    pub(crate) msg: M,
    pub(crate) reply: ReplySender<R>,
}

/// A call that does not wait for a restart (internal; after the wait is over).
pub struct CallNow(CallServer);

impl Message<CallNow> for ServerActor {
    type Reply = DelegatedReply<CallServerReply>;

    async fn handle(&mut self, msg: CallNow, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let (delegated, reply) = ctx.reply_sender();
        self.call_now(msg.0, reply);
        delegated
    }
}

impl ServerActor {
    /// A call for the server: sent now, or, while the server (re)starts, after a bounded wait
    /// for it to be ready, off the actor's path.
    fn call_server(
        &mut self,
        msg: CallServer,
        reply: Option<ReplySender<CallServerReply>>,
        me: &ActorRef<Self>,
    ) {
        let starting = matches!(
            self.status.state,
            ServerState::Starting | ServerState::Initializing | ServerState::Restarting
        );
        let wait = self.config.restart_wait;
        if self.restart_stopping && !wait.is_zero() && self.held.len() < HELD_CALLS_MAX {
            self.held.push((msg, reply));
            return;
        }
        if !starting || wait.is_zero() {
            return self.call_now(msg, reply);
        }
        let mut status = self.published.subscribe();
        let actor = me.clone();
        let label = self.spec.name.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                wait,
                status.wait_for(|s| {
                    !matches!(
                        s.state,
                        ServerState::Starting | ServerState::Initializing | ServerState::Restarting
                    )
                }),
            )
            .await;
            let answer = actor
                .ask(CallNow(msg))
                .await
                .map_err(|e| crate::actor::send_error(e, &label));
            if let Some(reply) = reply {
                reply.send(answer);
            }
        });
    }

    /// Hands the calls held during a restart's stop to `call_server` again: they wait for the
    /// process the restart started, or fail with the state if none was.
    fn release_held(&mut self, me: &ActorRef<Self>) {
        for (msg, reply) in std::mem::take(&mut self.held) {
            self.call_server(msg, reply, me);
        }
    }

    /// Sends the call if the server serves; otherwise answers at once with why not. The
    /// caller's reply sender goes into the table: the answer reaches it from the reader.
    fn call_now(&mut self, msg: CallServer, reply: Option<ReplySender<CallServerReply>>) {
        let Some(era) = self.era().filter(|_| self.status.state.is_serving()) else {
            if let Some(reply) = reply {
                reply.send(Err(self.not_serving()));
            }
            return;
        };
        let request = OutgoingRequest {
            params: mcp::params_for_era(era, msg.params),
            timeout: msg
                .timeout
                .unwrap_or_else(|| self.config.request_timeout_of(&self.spec)),
            method: msg.method,
            cancel: msg.cancel,
            progress: msg.progress,
            extra: msg.extra,
        };
        self.send_request(
            request,
            reply.map_or(Replier::Nobody, Replier::Caller),
            true,
        );
    }
}

impl Message<ProbeServer> for ServerActor {
    type Reply = DelegatedReply<Result<Duration, FleetError>>;

    async fn handle(
        &mut self,
        msg: ProbeServer,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let (delegated, reply) = ctx.reply_sender();
        self.probe(msg, reply);
        delegated
    }
}

impl Message<Forwarded<ProbeServer, Result<Duration, FleetError>>> for ServerActor {
    type Reply = ();

    async fn handle(
        &mut self,
        msg: Forwarded<ProbeServer, Result<Duration, FleetError>>,
        _: &mut Context<Self, ()>,
    ) {
        self.probe(msg.msg, Some(msg.reply));
    }
}

impl ServerActor {
    /// Sends the era's probe; the reply is its round trip, or why it failed.
    fn probe(
        &mut self,
        msg: ProbeServer,
        reply: Option<ReplySender<Result<Duration, FleetError>>>,
    ) {
        let Some(era) = self.era().filter(|_| self.status.state.is_serving()) else {
            if let Some(reply) = reply {
                reply.send(Err(self.not_serving()));
            }
            return;
        };
        let (method, params) = mcp::probe_method(era);
        let started = Instant::now();
        let answer = self.request(OutgoingRequest::plain(
            method.to_string(),
            params,
            msg.timeout,
        ));
        let name = self.spec.name.clone();
        tokio::spawn(async move {
            let result = match answer.await {
                // Any answer shows the server reads and answers: one that refuses the probe
                // (a `ping` it does not implement), even in a malformed error, is alive.
                Ok(Ok(_) | Err(FleetError::Upstream { .. } | FleetError::BadAnswer { .. })) => {
                    Ok(started.elapsed())
                }
                Ok(Err(e)) => Err(e),
                // The actor dropped the request: it stopped without answering.
                Err(_) => Err(FleetError::ServerExited {
                    server: name,
                    exit: None,
                }),
            };
            if let Some(reply) = reply {
                reply.send(result);
            }
        });
    }
}

impl Message<StopProcess> for ServerActor {
    type Reply = DelegatedReply<Result<StoppedServer, FleetError>>;

    async fn handle(
        &mut self,
        msg: StopProcess,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        match msg.stop {
            // The stop's ask was sent from a task of its own (`handlers::stop_process`), so a
            // restart asked for after it can be here first; that restart has stopped the
            // process already, and the one it started stays.
            Some(number) if number <= self.started_after => {
                tracing::debug!(server = %self.spec.name, stop = number, "stop superseded by a later restart");
                return ctx.reply(Ok(StoppedServer {
                    name: self.spec.name.clone(),
                    pid: None,
                    method: StopMethod::Superseded,
                    exit: None,
                    took: Duration::ZERO,
                }));
            }
            Some(number) => {
                self.last_stop = self.last_stop.max(number);
                // No restart follows: the calls it held fail with the state.
                self.restart_stopping = false;
                self.release_held(ctx.actor_ref());
            }
            None => self.restart_stopping = true,
        }
        let name = self.spec.name.clone();
        let pid = self.status.pid;
        let mut published = self.published.subscribe();
        match self.begin_stop() {
            Some(stop) => ctx.spawn(async move {
                let (method, exit, took) = stop.await;
                // Reply only once the actor has handled the exit (it publishes `pid: None`), so
                // the exit's metrics and state are in before a shutdown goes on to stop actors.
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    published.wait_for(|s| s.pid.is_none()),
                )
                .await;
                Ok(StoppedServer {
                    name,
                    pid,
                    method,
                    exit,
                    took,
                })
            }),
            None => {
                // A stop asked for of a server that failed leaves it stopped, as asked: its
                // state (and the metrics' `failed`) no longer says it needs attention.
                if !self.status.state.is_terminal()
                    || (msg.stop.is_some() && self.status.state != ServerState::Stopped)
                {
                    self.set_state(ServerState::Stopped);
                }
                ctx.reply(Ok(StoppedServer {
                    name,
                    pid: None,
                    method: StopMethod::NotRunning,
                    exit: self.status.last_exit.clone(),
                    took: Duration::ZERO,
                }))
            }
        }
    }
}

/// Stop the process (internal; the manager forwards `StopServer` and restarts here). `stop` is
/// the manager's number for a stop asked for (a stop, a removal, every server stopping), which
/// a restart asked for before it must not undo; a restart's own stop has none.
pub struct StopProcess {
    pub(crate) stop: Option<u64>,
}

impl Message<HealthChanged> for ServerActor {
    type Reply = ();

    async fn handle(&mut self, msg: HealthChanged, _: &mut Context<Self, ()>) {
        // A round's verdict arrives when the whole round ends: the process it probed may have
        // exited and been replaced meanwhile, and the new one is not to pay for it.
        let named = msg.pid.is_some() || msg.started_at.is_some();
        if named && (msg.pid, msg.started_at) != (self.status.pid, self.status.started_at) {
            tracing::debug!(server = %self.spec.name, healthy = msg.healthy, "health verdict about an earlier process; ignored");
            return;
        }
        match (&self.status.state, msg.healthy) {
            (ServerState::Ready, false) => {
                tracing::warn!(server = %self.spec.name, failures = msg.consecutive_failures, reason = ?msg.reason, "server unhealthy; killing it so the restart policy can replace it");
                self.set_state(ServerState::Unhealthy);
                // A hung (or stopped) server answers nothing; only a new process helps.
                // SIGKILL works on a SIGSTOPped process too.
                if let Some(r) = &self.running {
                    self.kill_reason = Some(format!(
                        "unhealthy: {} probes failed in a row ({})",
                        msg.consecutive_failures,
                        msg.reason.as_deref().unwrap_or("no reason given")
                    ));
                    r.handle.kill();
                }
            }
            (ServerState::Unhealthy, true) => {
                tracing::info!(server = %self.spec.name, "server healthy again");
                self.set_state(ServerState::Ready);
            }
            _ => {}
        }
    }
}
