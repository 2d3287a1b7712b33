//! The actor layer's costs, beside bare kameo and bare tokio in the same run: tell throughput,
//! ask round trips (p50/p99), spawn time per actor, and resident memory per idle actor at
//! 100,000 actors of each kind. One of the benchmarks of `cargo xtask bench`.
//!
//! `cargo run --release --example bench_actors -- [--mode quick|full] [--out FILE] [--count N]`
//!
//! - Messaging runs in this process against a real fleet (`Fleet::start`, so every actor has
//!   the mailbox and supervision mcp-fleet gives it) with the Prometheus recorder installed as
//!   `mcp-fleet run` does. Each path runs R rounds of N messages, the paths interleaved within a
//!   round; a rate is the median over the rounds and a ratio is the median of the ratios taken
//!   round by round, so a change of the machine's load hits both sides of a ratio alike. Every
//!   measurement runs in a tokio task after a warm-up, on mcp-fleet's runtime: one worker
//!   thread, or `TOKIO_WORKER_THREADS` (`fleet_runtime::system::async_runtime`).
//! - Spawn time and memory are measured in a fresh child process per actor kind (this program
//!   re-run with `--child-kind KIND`), so the kinds do not share freed memory: baseline RSS,
//!   spawn `--count` actors (100,000 by default) and wait until every one has started, RSS again
//!   after a pause, then stop them all. Each kind runs in three such processes, in rounds over
//!   the kinds, and the one with the median spawn CPU stands for it: now and then a fresh
//!   process on this VM takes twice the CPU to fault its memory in, whatever it runs.
//!   `--count` is for trying things out; the report's figures are at 100,000.
//!
//! It talks to no network and starts no process other than its own children, which it waits
//! for (and kills past a time limit).

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use fleet_examples::bench::{
    BenchArgs, Latencies, Mode, Report, Table, fmt_bytes, fmt_duration, read_process,
};
use fleet_gateway::{Gateway, GatewayArgs, GatewayConfig, event_sink};
use fleet_health_monitor::{HealthMonitor, HealthMonitorArgs, HealthMonitorConfig};
use fleet_metrics_collector::{MetricsCollector, MetricsCollectorConfig};
use fleet_protocol::ServerSpec;
use fleet_protocol::jsonrpc::{Message, Outcome, Request};
use fleet_protocol::mcp::{self, methods};
use fleet_protocol::messages::gateway::{ClientMessage, ClientReply, GetGatewayStats};
use fleet_protocol::messages::health::{GetHealth, HealthChanged};
use fleet_protocol::messages::metrics::{
    FlushMetrics, GetMetrics, MetricEvent, RecordMetric, RequestOutcome,
};
use fleet_protocol::messages::server::{EventSink, LaunchServer, ListServers};
use fleet_protocol::messages::supervisor::{GetFleetStatus, Shutdown};
use fleet_runtime::{Fleet, FleetOptions, telemetry};
use fleet_server_manager::{ServerManager, ServerManagerArgs, ServerManagerConfig};
use fleet_supervisor::{
    HealthPort, MetricsPort, ServerManagerPort, Services, Supervisor, SupervisorArgs,
    SupervisorConfig,
};
use futures::StreamExt as _;
use kameo::Actor;
use kameo::actor::{ActorRef, Spawn};
use kameo::error::Infallible;
use kameo::mailbox;
use kameo::message::{Context, Message as KameoMessage};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The allocator of the `mcp-fleet` binary, so memory figures are the binary's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Actors per kind for spawn time and memory.
const DEFAULT_COUNT: usize = 100_000;
/// The mailbox of the server manager and the health monitor in mcp-fleet (runtime's
/// `SERVICE_MAILBOX`).
const SERVICE_MAILBOX: usize = 1024;
/// A session's mailbox (the gateway's `bounded(64)`), also kameo's default.
const SESSION_MAILBOX: usize = 64;
/// How many session opens or server launches are in flight at once in the memory runs.
const CONCURRENCY: usize = 64;
/// Long enough that no ticker, sweep or expiry fires while the idle actors are measured.
const IDLE: Duration = Duration::from_secs(24 * 3600);
/// A command `std::process::Command` refuses before it forks (it contains a NUL byte), so a
/// server launched with it fails at once and its actor stays up in `Failed`.
const NO_COMMAND: &str = "no-such-server\0";
const CHILD_FLAG: &str = "--child-kind";

// ---------------------------------------------------------------------------------------------
// Bare kameo and bare tokio: the references.

/// A bare kameo actor with trivial handlers: the reference for the project's actors.
struct Echo {
    count: u64,
    last: u64,
}

impl Actor for Echo {
    type Args = ();
    type Error = Infallible;

    async fn on_start(_: (), _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(Echo { count: 0, last: 0 })
    }
}

/// Ask: answered with its number.
struct Ping(u64);

impl KameoMessage<Ping> for Echo {
    type Reply = u64;

    async fn handle(&mut self, msg: Ping, _: &mut Context<Self, Self::Reply>) -> u64 {
        msg.0
    }
}

/// Tell: counted. Not zero-sized, so kameo boxes it with an allocation as it does real messages.
struct Bump(u64);

impl KameoMessage<Bump> for Echo {
    type Reply = ();

    async fn handle(&mut self, msg: Bump, _: &mut Context<Self, Self::Reply>) {
        self.count += 1;
        self.last = msg.0;
    }
}

/// Ask: how many `Bump`s so far (also the flush of a tell run: the mailbox is FIFO).
struct Count;

impl KameoMessage<Count> for Echo {
    type Reply = u64;

    async fn handle(&mut self, _: Count, _: &mut Context<Self, Self::Reply>) -> u64 {
        std::hint::black_box(self.last);
        self.count
    }
}

/// The smallest kameo actor: no state, no handler.
struct Idle;

impl Actor for Idle {
    type Args = ();
    type Error = Infallible;

    async fn on_start(_: (), _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(Idle)
    }
}

/// A tokio task answering each request over its oneshot: the floor of an ask.
fn tokio_echo() -> mpsc::Sender<(u64, oneshot::Sender<u64>)> {
    let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(SESSION_MAILBOX);
    tokio::spawn(async move {
        while let Some((n, reply)) = rx.recv().await {
            let _ = reply.send(n);
        }
    });
    tx
}

// ---------------------------------------------------------------------------------------------
// Messaging: the paths measured.

/// One ask path.
#[derive(Clone)]
enum AskTarget {
    Tokio(mpsc::Sender<(u64, oneshot::Sender<u64>)>),
    Kameo(ActorRef<Echo>),
    Metrics(ActorRef<MetricsCollector>),
    MetricsFlush(ActorRef<MetricsCollector>),
    Health(ActorRef<HealthMonitor>),
    Manager(ActorRef<ServerManager>),
    Gateway(ActorRef<Gateway>),
    Supervisor(ActorRef<Supervisor>),
    Session {
        gateway: ActorRef<Gateway>,
        id: String,
    },
}

impl AskTarget {
    async fn ask(&self, i: u64) -> anyhow::Result<()> {
        match self {
            AskTarget::Tokio(tx) => {
                let (reply, answer) = oneshot::channel();
                tx.send((i, reply)).await.context("tokio echo gone")?;
                if answer.await.context("tokio echo dropped the reply")? != i {
                    bail!("tokio echo answered another number");
                }
            }
            AskTarget::Kameo(a) => {
                if a.ask(Ping(i)).await.map_err(|e| anyhow::anyhow!("{e:?}"))? != i {
                    bail!("kameo echo answered another number");
                }
            }
            AskTarget::Metrics(a) => {
                a.ask(GetMetrics)
                    .await
                    .map_err(|e| anyhow::anyhow!("GetMetrics: {e:?}"))?;
            }
            AskTarget::MetricsFlush(a) => {
                a.ask(FlushMetrics)
                    .await
                    .map_err(|e| anyhow::anyhow!("FlushMetrics: {e:?}"))?;
            }
            AskTarget::Health(a) => {
                a.ask(GetHealth)
                    .await
                    .map_err(|e| anyhow::anyhow!("GetHealth: {e:?}"))?;
            }
            AskTarget::Manager(a) => {
                a.ask(ListServers)
                    .await
                    .map_err(|e| anyhow::anyhow!("ListServers: {e:?}"))?;
            }
            AskTarget::Gateway(a) => {
                a.ask(GetGatewayStats)
                    .await
                    .map_err(|e| anyhow::anyhow!("GetGatewayStats: {e:?}"))?;
            }
            AskTarget::Supervisor(a) => {
                a.ask(GetFleetStatus)
                    .await
                    .map_err(|e| anyhow::anyhow!("GetFleetStatus: {e:?}"))?;
            }
            AskTarget::Session { gateway, id } => {
                let reply = gateway
                    .ask(ClientMessage {
                        session: Some(id.clone()),
                        protocol_version: Some(mcp::LEGACY_VERSION.into()),
                        message: Message::Request(Request::new(
                            i,
                            methods::SET_LOG_LEVEL,
                            Some(json!({ "level": "info" })),
                        )),
                        progress: None,
                        cancel: CancellationToken::new(),
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!("logging/setLevel: {e:?}"))?;
                match reply {
                    ClientReply::Response { response, .. }
                        if matches!(response.outcome, Outcome::Result(_)) => {}
                    other => bail!("logging/setLevel answered {other:?}"),
                }
            }
        }
        Ok(())
    }
}

/// One ask path in the table.
struct AskPath {
    label: &'static str,
    /// How the round trip goes, for the table.
    route: &'static str,
    /// A plain ask of one actor answered in its handler: these decide the acceptance line.
    single_hop: bool,
    target: AskTarget,
}

/// `n` asks in a row from one task; the latencies and the wall time of the whole run.
async fn ask_run(target: AskTarget, n: u64) -> anyhow::Result<(Latencies, Duration)> {
    tokio::spawn(async move {
        let mut lat = Latencies::new();
        let begin = Instant::now();
        for i in 0..n {
            let t = Instant::now();
            target.ask(i).await?;
            lat.record(t.elapsed());
        }
        Ok::<_, anyhow::Error>((lat, begin.elapsed()))
    })
    .await?
}

/// One tell path.
#[derive(Clone)]
enum TellTarget {
    TokioUnbounded,
    TokioBounded,
    KameoUnbounded(ActorRef<Echo>),
    KameoBounded(ActorRef<Echo>),
    /// `RecordMetric(SessionCreated)`: the cheapest real event (no strings).
    MetricsCheap(ActorRef<MetricsCollector>),
    /// `RecordMetric(Request { .. })`: the event of every request (three `String`s).
    MetricsRequest(ActorRef<MetricsCollector>),
    /// `HealthChanged` for a server not in the table (the manager handles it alone).
    Manager(ActorRef<ServerManager>),
}

enum TokioMsg {
    Bump(u64),
    Flush(oneshot::Sender<u64>),
}

/// `n` tells in a row from one task, then a flush (an ask behind them in the same FIFO
/// mailbox); the wall time until the flush is answered.
async fn tell_run(target: TellTarget, n: u64) -> anyhow::Result<Duration> {
    tokio::spawn(async move {
        let begin = Instant::now();
        match target {
            TellTarget::TokioUnbounded => {
                let (tx, mut rx) = mpsc::unbounded_channel::<TokioMsg>();
                let task = tokio::spawn(async move {
                    let mut count = 0u64;
                    while let Some(m) = rx.recv().await {
                        match m {
                            TokioMsg::Bump(b) => {
                                std::hint::black_box(b);
                                count += 1;
                            }
                            TokioMsg::Flush(r) => {
                                let _ = r.send(count);
                            }
                        }
                    }
                });
                for i in 0..n {
                    tx.send(TokioMsg::Bump(i)).context("tokio receiver gone")?;
                }
                let (r, answer) = oneshot::channel();
                tx.send(TokioMsg::Flush(r)).context("tokio receiver gone")?;
                if answer.await? != n {
                    bail!("the tokio receiver counted another number");
                }
                drop(tx);
                task.await?;
            }
            TellTarget::TokioBounded => {
                let (tx, mut rx) = mpsc::channel::<TokioMsg>(SERVICE_MAILBOX);
                let task = tokio::spawn(async move {
                    let mut count = 0u64;
                    while let Some(m) = rx.recv().await {
                        match m {
                            TokioMsg::Bump(b) => {
                                std::hint::black_box(b);
                                count += 1;
                            }
                            TokioMsg::Flush(r) => {
                                let _ = r.send(count);
                            }
                        }
                    }
                });
                for i in 0..n {
                    tx.send(TokioMsg::Bump(i))
                        .await
                        .map_err(|_| anyhow::anyhow!("tokio receiver gone"))?;
                }
                let (r, answer) = oneshot::channel();
                tx.send(TokioMsg::Flush(r))
                    .await
                    .map_err(|_| anyhow::anyhow!("tokio receiver gone"))?;
                if answer.await? != n {
                    bail!("the tokio receiver counted another number");
                }
                drop(tx);
                task.await?;
            }
            TellTarget::KameoUnbounded(a) | TellTarget::KameoBounded(a) => {
                let before = a.ask(Count).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
                for i in 0..n {
                    a.tell(Bump(i))
                        .send()
                        .await
                        .map_err(|e| anyhow::anyhow!("tell: {e:?}"))?;
                }
                let after = a.ask(Count).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
                if after.wrapping_sub(before) != n {
                    bail!("the kameo echo counted another number");
                }
            }
            TellTarget::MetricsCheap(ref a) | TellTarget::MetricsRequest(ref a) => {
                let request = matches!(target, TellTarget::MetricsRequest(_));
                let before = a
                    .ask(GetMetrics)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?
                    .events;
                let (server, method, tool) = (
                    "bench-server".to_owned(),
                    methods::TOOLS_CALL.to_owned(),
                    "echo".to_owned(),
                );
                for _ in 0..n {
                    let event = if request {
                        MetricEvent::Request {
                            server: server.clone(),
                            method: method.clone(),
                            tool: Some(tool.clone()),
                            latency: Duration::from_micros(150),
                            outcome: RequestOutcome::Ok,
                        }
                    } else {
                        MetricEvent::SessionCreated
                    };
                    // mcp-fleet's senders use `try_send`; the collector's mailbox is unbounded.
                    a.tell(RecordMetric { event })
                        .try_send()
                        .map_err(|e| anyhow::anyhow!("tell RecordMetric: {e:?}"))?;
                }
                a.ask(FlushMetrics)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                let after = a
                    .ask(GetMetrics)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?
                    .events;
                // Other actors record events too, so at least n more.
                if after.saturating_sub(before) < n {
                    bail!("the collector recorded {} of {n} events", after - before);
                }
            }
            TellTarget::Manager(a) => {
                for _ in 0..n {
                    a.tell(HealthChanged {
                        server: "not-in-the-table".into(),
                        healthy: true,
                        consecutive_failures: 0,
                        reason: None,
                        pid: None,
                        started_at: None,
                    })
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("tell HealthChanged: {e:?}"))?;
                }
                a.ask(ListServers)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            }
        }
        Ok::<_, anyhow::Error>(begin.elapsed())
    })
    .await?
}

struct TellPath {
    label: &'static str,
    mailbox: &'static str,
    target: TellTarget,
    /// Index of the bare kameo and tokio paths with the same kind of mailbox.
    kameo: usize,
    tokio: usize,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// A count with thousands separators: `1,234,567`.
fn fmt_count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with thousands separators: `1,234,567/s`.
fn fmt_rate(per_sec: f64) -> String {
    format!("{}/s", fmt_count(per_sec.round() as usize))
}

fn fmt_ratio(r: f64) -> String {
    format!("{r:.2}×")
}

/// What the messaging part found, for the acceptance line.
struct AskFigures {
    /// (label, median ratio of round-trip rates to bare kameo, p50 ratio) of the single-hop
    /// project asks.
    single_hop: Vec<(&'static str, f64, f64)>,
    /// The same for the multi-hop paths (reported, not judged).
    multi_hop: Vec<(&'static str, f64)>,
    kameo_rate: f64,
    kameo_p50: Duration,
}

async fn messaging(args: &BenchArgs, tables: &mut Vec<Table>) -> anyhow::Result<AskFigures> {
    let rounds = args.pick(5, 10);
    let ask_n: u64 = args.pick(20_000, 100_000);
    let tell_n: u64 = args.pick(200_000, 1_000_000);

    let mut options = FleetOptions::default();
    // A ListServers round every 10 s (with no server) would only add noise.
    options.health.interval = IDLE;
    let fleet = Fleet::start(options).await;

    // One 2025-era session, opened as a client would (initialize, then initialized).
    let session = fleet_examples::open_session(&fleet.gateway, "bench_actors").await?;

    let kameo_default = Echo::spawn(());
    let kameo_unbounded = Echo::spawn_with_mailbox((), mailbox::unbounded());
    let kameo_bounded = Echo::spawn_with_mailbox((), mailbox::bounded(SERVICE_MAILBOX));
    for a in [&kameo_default, &kameo_unbounded, &kameo_bounded] {
        a.wait_for_startup().await;
    }

    let asks = vec![
        AskPath {
            label: "tokio mpsc + oneshot (a task answering)",
            route: "channel(64) → task → oneshot",
            single_hop: false,
            target: AskTarget::Tokio(tokio_echo()),
        },
        AskPath {
            label: "bare kameo: `Ping(u64)` → `u64`",
            route: "1 actor, bounded(64)",
            single_hop: false,
            target: AskTarget::Kameo(kameo_default.clone()),
        },
        AskPath {
            label: "metrics-collector: `GetMetrics`",
            route: "1 actor, unbounded",
            single_hop: true,
            target: AskTarget::Metrics(fleet.metrics.clone()),
        },
        AskPath {
            label: "metrics-collector: `FlushMetrics`",
            route: "1 actor, unbounded",
            single_hop: true,
            target: AskTarget::MetricsFlush(fleet.metrics.clone()),
        },
        AskPath {
            label: "health-monitor: `GetHealth` (no server)",
            route: "1 actor, bounded(1024)",
            single_hop: true,
            target: AskTarget::Health(fleet.health.clone()),
        },
        AskPath {
            label: "server-manager: `ListServers` (no server)",
            route: "1 actor, bounded(1024)",
            single_hop: true,
            target: AskTarget::Manager(fleet.server_manager.clone()),
        },
        AskPath {
            label: "gateway: `GetGatewayStats`",
            route: "1 actor, unbounded",
            single_hop: true,
            target: AskTarget::Gateway(fleet.gateway.clone()),
        },
        AskPath {
            label: "supervisor: `GetFleetStatus`",
            route: "supervisor → task → `ListServers` to the manager",
            single_hop: false,
            target: AskTarget::Supervisor(fleet.supervisor.clone()),
        },
        AskPath {
            label: "session: `logging/setLevel` through the gateway",
            route: "gateway → task → session (answered in its handler)",
            single_hop: false,
            target: AskTarget::Session {
                gateway: fleet.gateway.clone(),
                id: session,
            },
        },
    ];
    let tells = vec![
        TellPath {
            label: "tokio mpsc unbounded",
            mailbox: "unbounded",
            target: TellTarget::TokioUnbounded,
            kameo: 2,
            tokio: 0,
        },
        TellPath {
            label: "tokio mpsc bounded",
            mailbox: "bounded(1024)",
            target: TellTarget::TokioBounded,
            kameo: 3,
            tokio: 1,
        },
        TellPath {
            label: "bare kameo: `Bump(u64)`",
            mailbox: "unbounded",
            target: TellTarget::KameoUnbounded(kameo_unbounded.clone()),
            kameo: 2,
            tokio: 0,
        },
        TellPath {
            label: "bare kameo: `Bump(u64)`",
            mailbox: "bounded(1024)",
            target: TellTarget::KameoBounded(kameo_bounded.clone()),
            kameo: 3,
            tokio: 1,
        },
        TellPath {
            label: "metrics-collector: `RecordMetric(SessionCreated)`",
            mailbox: "unbounded",
            target: TellTarget::MetricsCheap(fleet.metrics.clone()),
            kameo: 2,
            tokio: 0,
        },
        TellPath {
            label: "metrics-collector: `RecordMetric(Request {..})`",
            mailbox: "unbounded",
            target: TellTarget::MetricsRequest(fleet.metrics.clone()),
            kameo: 2,
            tokio: 0,
        },
        TellPath {
            label: "server-manager: `HealthChanged` (unknown server)",
            mailbox: "bounded(1024)",
            target: TellTarget::Manager(fleet.server_manager.clone()),
            kameo: 3,
            tokio: 1,
        },
    ];

    // Warm-up: every path, untimed.
    for p in &asks {
        ask_run(p.target.clone(), ask_n / 10).await?;
    }
    for p in &tells {
        tell_run(p.target.clone(), tell_n / 10).await?;
    }

    let mut ask_rates = vec![Vec::new(); asks.len()];
    let mut ask_lat: Vec<Latencies> = asks.iter().map(|_| Latencies::new()).collect();
    let mut ask_p50s = vec![Vec::new(); asks.len()];
    let mut tell_rates = vec![Vec::new(); tells.len()];
    for round in 0..rounds {
        for (i, p) in asks.iter().enumerate() {
            let (lat, took) = ask_run(p.target.clone(), ask_n).await?;
            ask_rates[i].push(ask_n as f64 / took.as_secs_f64());
            ask_p50s[i].push(lat.quantile(0.5).as_nanos() as f64);
            ask_lat[i].merge(&lat);
        }
        for (i, p) in tells.iter().enumerate() {
            let took = tell_run(p.target.clone(), tell_n).await?;
            tell_rates[i].push(tell_n as f64 / took.as_secs_f64());
        }
        eprintln!("bench_actors: messaging round {}/{rounds} done", round + 1);
    }

    // Per-round ratios, then their median.
    let ratio = |rates: &[Vec<f64>], i: usize, j: usize| -> f64 {
        let r: Vec<f64> = rates[i].iter().zip(&rates[j]).map(|(a, b)| a / b).collect();
        median(&r)
    };
    let (tokio_ask, kameo_ask) = (0, 1);

    let mut table = Table::new(
        format!(
            "Ask round trip ({rounds} rounds × {} asks)",
            fmt_count(ask_n as usize)
        ),
        &[
            "path",
            "route",
            "round trips/s",
            "p50",
            "p99",
            "rate vs bare kameo",
            "p50 vs bare kameo",
            "rate vs tokio",
        ],
    );
    let mut figures = AskFigures {
        single_hop: Vec::new(),
        multi_hop: Vec::new(),
        kameo_rate: median(&ask_rates[kameo_ask]),
        kameo_p50: ask_lat[kameo_ask].quantile(0.5),
    };
    for (i, p) in asks.iter().enumerate() {
        let vs_kameo = ratio(&ask_rates, i, kameo_ask);
        // A p50 ratio as a speed: bare kameo's p50 over this path's (above 1 is faster).
        let p50_vs_kameo = 1.0 / ratio(&ask_p50s, i, kameo_ask);
        table.row(vec![
            p.label.into(),
            p.route.into(),
            fmt_rate(median(&ask_rates[i])),
            fmt_duration(ask_lat[i].quantile(0.5)),
            fmt_duration(ask_lat[i].quantile(0.99)),
            fmt_ratio(vs_kameo),
            fmt_ratio(p50_vs_kameo),
            fmt_ratio(ratio(&ask_rates, i, tokio_ask)),
        ]);
        if p.single_hop {
            figures.single_hop.push((p.label, vs_kameo, p50_vs_kameo));
        } else if i != kameo_ask && i != tokio_ask {
            figures.multi_hop.push((p.label, vs_kameo));
        }
    }
    tables.push(table);

    let mut table = Table::new(
        format!(
            "Tell throughput ({rounds} rounds × {} tells)",
            fmt_count(tell_n as usize)
        ),
        &[
            "path",
            "mailbox",
            "messages/s",
            "per message",
            "vs bare kameo (same mailbox)",
            "vs tokio (same kind)",
        ],
    );
    for (i, p) in tells.iter().enumerate() {
        let rate = median(&tell_rates[i]);
        table.row(vec![
            p.label.into(),
            p.mailbox.into(),
            fmt_rate(rate),
            fmt_duration(Duration::from_secs_f64(1.0 / rate)),
            fmt_ratio(ratio(&tell_rates, i, p.kameo)),
            fmt_ratio(ratio(&tell_rates, i, p.tokio)),
        ]);
    }
    tables.push(table);

    for a in [kameo_default, kameo_unbounded, kameo_bounded] {
        a.kill();
        a.wait_for_shutdown().await;
    }
    // The supervisor's shutdown stops the gateway first.
    fleet
        .supervisor
        .ask(Shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("Shutdown: {e:?}"))?;
    fleet.supervisor.wait_for_shutdown().await;
    Ok(figures)
}

// ---------------------------------------------------------------------------------------------
// Spawn time and memory: one child process per kind.

/// The kinds measured, with how each is spawned (for the table).
const KINDS: [(&str, &str); 8] = [
    ("bare-kameo", "`Idle::spawn(())`: no state, bounded(64)"),
    (
        "supervisor",
        "`Supervisor::spawn`; its wiring hands back ports to one shared set of services",
    ),
    (
        "server-manager",
        "`spawn_with_mailbox(.., bounded(1024))`, no server, no metrics",
    ),
    (
        "health-monitor",
        "`spawn_with_mailbox(.., bounded(1024))`, with its ticker task; interval 24 h",
    ),
    (
        "metrics-collector",
        "`spawn_with_mailbox(.., unbounded())`, Prometheus recorder installed",
    ),
    (
        "gateway",
        "`spawn_with_mailbox(.., unbounded())`, with its event sink, as the server manager would hold it (its sweep ticker starts with the first client message)",
    ),
    (
        "server",
        "`LaunchServer` to one manager, 64 at a time; the command cannot run, so each `ServerActor` stays up in `Failed`",
    ),
    (
        "session",
        "`initialize` + `notifications/initialized` asked of one gateway, 64 at a time",
    ),
];

/// Fresh processes per kind for spawn time and memory; the median one stands for the kind.
const SPAWN_RUNS: usize = 3;

/// Kinds spawned with kameo's `spawn` by the benchmark itself: their spawn time decides the
/// acceptance line. The others are spawned inside a project actor's handler, so their time per
/// actor includes that handler's work and the asks that reach it.
const DIRECT_PROJECT_KINDS: [&str; 5] = [
    "supervisor",
    "server-manager",
    "health-monitor",
    "metrics-collector",
    "gateway",
];

/// What a child process measured, printed as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KindResult {
    kind: String,
    count: usize,
    baseline_bytes: u64,
    with_actors_bytes: u64,
    /// From the first spawn until every actor has started: wall-clock time, and the CPU time
    /// of the whole process (every thread, user and system) meanwhile.
    spawn_secs: f64,
    spawn_cpu_secs: f64,
    /// The same again after all were stopped (memory already there); full mode only.
    warm_spawn: Option<(f64, f64)>,
}

/// The fleet's other actors, shared by every actor of the measured kind that needs peers.
struct Shared {
    manager: ActorRef<ServerManager>,
    health: ActorRef<HealthMonitor>,
    metrics: ActorRef<MetricsCollector>,
}

impl Shared {
    async fn start() -> Shared {
        let metrics = MetricsCollector::spawn_with_mailbox(
            MetricsCollectorConfig::default(),
            mailbox::unbounded(),
        );
        let manager = ServerManager::spawn_with_mailbox(
            ServerManagerArgs {
                config: std::sync::Arc::new(ServerManagerConfig::default()),
                metrics: None,
                directory: None,
                memory: Default::default(),
            },
            mailbox::bounded(SERVICE_MAILBOX),
        );
        let health = HealthMonitor::spawn_with_mailbox(
            health_args(&manager),
            mailbox::bounded(SERVICE_MAILBOX),
        );
        metrics.wait_for_startup().await;
        manager.wait_for_startup().await;
        health.wait_for_startup().await;
        Shared {
            manager,
            health,
            metrics,
        }
    }

    fn services(&self) -> Services {
        Services {
            server_manager: ServerManagerPort {
                launch: self.manager.clone().reply_recipient(),
                list: self.manager.clone().reply_recipient(),
                stop_all: self.manager.clone().reply_recipient(),
            },
            health: HealthPort {
                get_health: self.health.clone().reply_recipient(),
            },
            metrics: MetricsPort {
                record: self.metrics.clone().recipient(),
                get: self.metrics.clone().reply_recipient(),
                flush: self.metrics.clone().reply_recipient(),
            },
            gateway: None,
            startup: Vec::new(),
        }
    }
}

fn health_args(manager: &ActorRef<ServerManager>) -> HealthMonitorArgs {
    HealthMonitorArgs {
        config: HealthMonitorConfig {
            interval: IDLE,
            ..HealthMonitorConfig::default()
        },
        servers: manager.clone().reply_recipient(),
        probe: manager.clone().reply_recipient(),
        health_events: vec![manager.clone().recipient()],
        metrics: None,
    }
}

fn gateway_config(max_sessions: usize) -> GatewayConfig {
    GatewayConfig {
        session_idle_ttl: IDLE,
        initialize_timeout: IDLE,
        sweep_every: IDLE,
        max_sessions,
        ..GatewayConfig::default()
    }
}

fn spawn_gateway(shared: &Shared, max_sessions: usize) -> (ActorRef<Gateway>, EventSink) {
    let gateway = Gateway::spawn_with_mailbox(
        GatewayArgs {
            config: std::sync::Arc::new(gateway_config(max_sessions)),
            servers: shared.manager.clone().reply_recipient(),
            status: shared.manager.clone().reply_recipient(),
            metrics: None,
            directory: None,
            sessions: Default::default(),
            events: None,
        },
        mailbox::unbounded(),
    );
    let sink = event_sink(&gateway);
    (gateway, sink)
}

/// The actors of one kind while they are up. The vectors are filled with `None` before the
/// baseline is read, so their pages are not counted as the actors' memory.
enum Population {
    Kameo(Vec<Option<ActorRef<Idle>>>),
    Supervisor(Vec<Option<ActorRef<Supervisor>>>),
    Manager(Vec<Option<ActorRef<ServerManager>>>),
    Health(Vec<Option<ActorRef<HealthMonitor>>>),
    Metrics(Vec<Option<ActorRef<MetricsCollector>>>),
    Gateway(Vec<Option<(ActorRef<Gateway>, EventSink)>>),
    /// One manager holding every server's actor.
    Servers(Option<ActorRef<ServerManager>>),
    /// One gateway holding every session (and its event sink, which the server manager would
    /// hold).
    Sessions(Option<(ActorRef<Gateway>, EventSink)>),
}

impl Population {
    fn empty(kind: &str, n: usize) -> anyhow::Result<Population> {
        fn slots<T>(n: usize) -> Vec<Option<T>> {
            (0..n).map(|_| None).collect()
        }
        Ok(match kind {
            "bare-kameo" => Population::Kameo(slots(n)),
            "supervisor" => Population::Supervisor(slots(n)),
            "server-manager" => Population::Manager(slots(n)),
            "health-monitor" => Population::Health(slots(n)),
            "metrics-collector" => Population::Metrics(slots(n)),
            "gateway" => Population::Gateway(slots(n)),
            "server" => Population::Servers(None),
            "session" => Population::Sessions(None),
            other => bail!("unknown actor kind `{other}`"),
        })
    }

    /// Spawns `n` actors and waits until each has started.
    async fn fill(&mut self, shared: &Shared, n: usize) -> anyhow::Result<()> {
        async fn started<A: Actor>(v: &[Option<ActorRef<A>>]) {
            for a in v.iter().flatten() {
                a.wait_for_startup().await;
            }
        }
        match self {
            Population::Kameo(v) => {
                for s in v.iter_mut() {
                    *s = Some(Idle::spawn(()));
                }
                started(v).await;
            }
            Population::Supervisor(v) => {
                for s in v.iter_mut() {
                    let services = shared.services();
                    *s = Some(Supervisor::spawn(SupervisorArgs {
                        config: SupervisorConfig::default(),
                        wiring: Box::new(move |_| Box::pin(async move { services })),
                    }));
                }
                started(v).await;
            }
            Population::Manager(v) => {
                let config = ServerManagerConfig::default();
                for s in v.iter_mut() {
                    *s = Some(ServerManager::spawn_with_mailbox(
                        ServerManagerArgs {
                            config: std::sync::Arc::new(config.clone()),
                            metrics: None,
                            directory: None,
                            memory: Default::default(),
                        },
                        mailbox::bounded(SERVICE_MAILBOX),
                    ));
                }
                started(v).await;
            }
            Population::Health(v) => {
                for s in v.iter_mut() {
                    *s = Some(HealthMonitor::spawn_with_mailbox(
                        health_args(&shared.manager),
                        mailbox::bounded(SERVICE_MAILBOX),
                    ));
                }
                started(v).await;
            }
            Population::Metrics(v) => {
                for s in v.iter_mut() {
                    *s = Some(MetricsCollector::spawn_with_mailbox(
                        MetricsCollectorConfig::default(),
                        mailbox::unbounded(),
                    ));
                }
                started(v).await;
            }
            Population::Gateway(v) => {
                for s in v.iter_mut() {
                    *s = Some(spawn_gateway(shared, 1));
                }
                for (g, _) in v.iter().flatten() {
                    g.wait_for_startup().await;
                }
            }
            Population::Servers(slot) => {
                let manager = ServerManager::spawn_with_mailbox(
                    ServerManagerArgs {
                        config: std::sync::Arc::new(ServerManagerConfig::default()),
                        metrics: None,
                        directory: None,
                        memory: Default::default(),
                    },
                    mailbox::bounded(SERVICE_MAILBOX),
                );
                manager.wait_for_startup().await;
                let m = manager.clone();
                let mut launches = futures::stream::iter(0..n)
                    .map(|i| {
                        let m = m.clone();
                        async move {
                            let spec = ServerSpec::stdio(
                                format!("s{i:06}"),
                                NO_COMMAND,
                                Vec::<String>::new(),
                            );
                            m.ask(LaunchServer { spec }).await
                        }
                    })
                    .buffer_unordered(CONCURRENCY);
                while let Some(r) = launches.next().await {
                    // The launch must fail (the command cannot run), and only that way.
                    match r {
                        Err(kameo::error::SendError::HandlerError(
                            fleet_protocol::FleetError::Spawn { .. },
                        )) => {}
                        other => bail!("a launch ended otherwise than as expected: {other:?}"),
                    }
                }
                *slot = Some(manager);
            }
            Population::Sessions(slot) => {
                let (gateway, events) = spawn_gateway(shared, n + 1);
                gateway.wait_for_startup().await;
                let g = gateway.clone();
                let mut opens = futures::stream::iter(0..n)
                    .map(|_| {
                        let g = g.clone();
                        async move {
                            fleet_examples::open_session(&g, "bench_actors")
                                .await
                                .map(drop)
                        }
                    })
                    .buffer_unordered(CONCURRENCY);
                while let Some(r) = opens.next().await {
                    r?;
                }
                *slot = Some((gateway, events));
            }
        }
        Ok(())
    }

    /// Stops every actor of the kind and waits until each has stopped.
    async fn clear(&mut self) {
        async fn stop<A: Actor>(v: &mut [Option<ActorRef<A>>]) {
            for a in v.iter().flatten() {
                a.kill();
            }
            for s in v.iter_mut() {
                if let Some(a) = s.take() {
                    a.wait_for_shutdown().await;
                }
            }
        }
        match self {
            Population::Kameo(v) => stop(v).await,
            Population::Supervisor(v) => stop(v).await,
            Population::Manager(v) => stop(v).await,
            Population::Health(v) => stop(v).await,
            Population::Metrics(v) => stop(v).await,
            Population::Gateway(v) => {
                for (g, _) in v.iter().flatten() {
                    g.kill();
                }
                for s in v.iter_mut() {
                    if let Some((g, _)) = s.take() {
                        g.wait_for_shutdown().await;
                    }
                }
            }
            // The manager's `on_stop` kills every server's actor and waits for them.
            Population::Servers(slot) => {
                if let Some(m) = slot.take() {
                    m.kill();
                    m.wait_for_shutdown().await;
                }
            }
            // The gateway's `on_stop` kills every session.
            Population::Sessions(slot) => {
                if let Some((g, _events)) = slot.take() {
                    g.kill();
                    g.wait_for_shutdown().await;
                }
            }
        }
    }
}

/// CPU seconds this process has used (every thread, user and system; 10 ms resolution).
fn cpu() -> anyhow::Result<f64> {
    Ok(read_process(std::process::id())
        .context("cannot read this process from /proc")?
        .cpu_seconds)
}

fn rss() -> anyhow::Result<u64> {
    Ok(read_process(std::process::id())
        .context("cannot read this process from /proc")?
        .resident_bytes)
}

/// The child process: spawn time and memory of `n` actors of `kind`.
async fn child(kind: &str, n: usize, mode: Mode) -> anyhow::Result<KindResult> {
    let settle = match mode {
        Mode::Quick => Duration::from_millis(500),
        Mode::Full => Duration::from_secs(2),
    };
    let _prometheus = telemetry::install_prometheus()?;
    let shared = Shared::start().await;

    // Warm-up: the code paths and the allocator's structures, then back to idle.
    let mut warm = Population::empty(kind, 256)?;
    warm.fill(&shared, 256).await?;
    warm.clear().await;
    drop(warm);

    let mut pop = Population::empty(kind, n)?;
    tokio::time::sleep(settle).await;
    let baseline_bytes = rss()?;
    let (spawn_secs, spawn_cpu_secs) = timed_fill(&mut pop, &shared, n).await?;
    tokio::time::sleep(settle).await;
    let with_actors_bytes = rss()?;
    pop.clear().await;

    let warm_spawn = match mode {
        Mode::Quick => None,
        Mode::Full => {
            tokio::time::sleep(settle).await;
            let took = timed_fill(&mut pop, &shared, n).await?;
            pop.clear().await;
            Some(took)
        }
    };
    shared.health.kill();
    shared.manager.kill();
    shared.metrics.kill();
    Ok(KindResult {
        kind: kind.to_owned(),
        count: n,
        baseline_bytes,
        with_actors_bytes,
        spawn_secs,
        spawn_cpu_secs,
        warm_spawn,
    })
}

/// Fills `pop` with `n` actors; the wall-clock and CPU seconds it took.
async fn timed_fill(pop: &mut Population, shared: &Shared, n: usize) -> anyhow::Result<(f64, f64)> {
    let cpu_before = cpu()?;
    let begin = Instant::now();
    pop.fill(shared, n).await?;
    let wall = begin.elapsed().as_secs_f64();
    Ok((wall, cpu()? - cpu_before))
}

/// Runs this program again as the child of `kind`; its result, or why there is none.
fn run_child(kind: &str, n: usize, mode: Mode) -> anyhow::Result<KindResult> {
    let exe = std::env::current_exe().context("cannot find this program")?;
    let mode_arg = match mode {
        Mode::Quick => "quick",
        Mode::Full => "full",
    };
    let limit = match mode {
        Mode::Quick => Duration::from_secs(120),
        Mode::Full => Duration::from_secs(600),
    };
    let out_file =
        std::env::temp_dir().join(format!("bench_actors-{}-{kind}.json", std::process::id()));
    let mut child = Command::new(exe)
        .args([
            "--mode",
            mode_arg,
            CHILD_FLAG,
            kind,
            "--count",
            &n.to_string(),
        ])
        .arg("--child-out")
        .arg(&out_file)
        .stdin(Stdio::null())
        .spawn()
        .context("cannot start the child process")?;
    let begin = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if begin.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the child for `{kind}` took longer than {limit:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&out_file);
    let _ = std::fs::remove_file(&out_file);
    if !status.success() {
        bail!("the child for `{kind}` failed ({status})");
    }
    serde_json::from_str(&text.context("the child wrote no result")?)
        .context("the child's result is not valid")
}

// ---------------------------------------------------------------------------------------------

struct Options {
    count: usize,
    child_kind: Option<String>,
    child_out: Option<std::path::PathBuf>,
}

fn options(args: &BenchArgs) -> anyhow::Result<Options> {
    let mut o = Options {
        count: DEFAULT_COUNT,
        child_kind: None,
        child_out: None,
    };
    let mut it = args.rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--count" => {
                o.count = it
                    .next()
                    .context("--count needs a number")?
                    .replace('_', "")
                    .parse()
                    .context("--count needs a number")?;
            }
            CHILD_FLAG => o.child_kind = Some(it.next().context("--child-kind KIND")?.clone()),
            "--child-out" => {
                o.child_out = Some(it.next().context("--child-out FILE")?.into());
            }
            other => bail!("unknown argument `{other}`; use --mode, --out, --count"),
        }
    }
    if o.count == 0 {
        bail!("--count must be at least 1");
    }
    Ok(o)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_actors: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = BenchArgs::from_env()?;
    let opts = options(&args)?;
    // mcp-fleet's own runtime (one worker thread unless TOKIO_WORKER_THREADS says otherwise),
    // so that the actors are measured as mcp-fleet runs them.
    let workers = fleet_runtime::config::worker_threads().map_err(anyhow::Error::msg)?;
    let runtime = fleet_runtime::system::async_runtime(workers)?;
    telemetry::return_freed_memory();
    if let Some(kind) = opts.child_kind.clone() {
        let mode = args.mode;
        let n = opts.count;
        let result = runtime.block_on(async move {
            tokio::spawn(async move { child(&kind, n, mode).await }).await?
        })?;
        let text = serde_json::to_string(&result)?;
        match &opts.child_out {
            Some(path) => std::fs::write(path, text)?,
            None => println!("{text}"),
        }
        // The actors are stopped; the runtime's remaining tasks (the recorder's upkeep) end here.
        runtime.shutdown_timeout(Duration::from_secs(1));
        return Ok(());
    }

    if cfg!(debug_assertions) {
        eprintln!("bench_actors: warning: a debug build; use --release for figures");
    }
    let mut report = Report::new("Actor layer: messaging, spawn time, memory per idle actor");
    let parent_args = args.clone();
    let (figures, tables) = runtime.block_on(async move {
        tokio::spawn(async move {
            // As `mcp-fleet run` does: the collector records into the Prometheus recorder.
            let _handle = telemetry::install_prometheus()?;
            let mut tables = Vec::new();
            let figures = messaging(&parent_args, &mut tables).await?;
            Ok::<_, anyhow::Error>((figures, tables))
        })
        .await?
    })?;
    report.tables.extend(tables);
    runtime.shutdown_timeout(Duration::from_secs(1));

    // Spawn time and memory: each kind in SPAWN_RUNS fresh child processes, in rounds over the
    // kinds; the run with the median spawn CPU stands for the kind.
    let mut runs: Vec<Vec<KindResult>> = KINDS.iter().map(|_| Vec::new()).collect();
    for round in 1..=SPAWN_RUNS {
        for (k, (kind, _)) in KINDS.iter().enumerate() {
            eprintln!(
                "bench_actors: {kind}: {} actors in a child process ({round}/{SPAWN_RUNS})",
                opts.count
            );
            let r = run_child(kind, opts.count, args.mode)
                .with_context(|| format!("spawn and memory of `{kind}`"))?;
            runs[k].push(r);
        }
    }
    let mut all_cpu = Vec::new();
    let mut results = Vec::new();
    for mut r in runs {
        r.sort_by(|a, b| a.spawn_cpu_secs.total_cmp(&b.spawn_cpu_secs));
        all_cpu.push(r.iter().map(|x| x.spawn_cpu_secs).collect::<Vec<_>>());
        results.push(r.swap_remove(r.len() / 2));
    }
    let n = opts.count;
    let mut table = Table::new(
        format!(
            "Spawn time and resident memory per idle actor ({} actors of each kind)",
            fmt_count(n)
        ),
        &[
            "kind",
            "how they are spawned",
            "spawn per actor: wall",
            "CPU",
            "CPU, each run (sorted)",
            "warm spawn: wall / CPU",
            "RSS per idle actor",
            "RSS before → with the actors",
        ],
    );
    let per_actor =
        |r: &KindResult| (r.with_actors_bytes as f64 - r.baseline_bytes as f64) / r.count as f64;
    let per = |secs: f64, r: &KindResult| Duration::from_secs_f64(secs / r.count as f64);
    let spawn_of = |r: &KindResult| per(r.spawn_secs, r);
    let spawn_cpu_of = |r: &KindResult| per(r.spawn_cpu_secs, r);
    for (r, cpus) in results.iter().zip(&all_cpu) {
        let how = KINDS
            .iter()
            .find(|(k, _)| *k == r.kind)
            .map_or("", |(_, h)| *h);
        table.row(vec![
            r.kind.clone(),
            how.into(),
            fmt_duration(spawn_of(r)),
            fmt_duration(spawn_cpu_of(r)),
            cpus.iter()
                .map(|c| fmt_duration(per(*c, r)))
                .collect::<Vec<_>>()
                .join(" / "),
            r.warm_spawn.map_or("(full mode)".into(), |(wall, cpu)| {
                format!(
                    "{} / {}",
                    fmt_duration(per(wall, r)),
                    fmt_duration(per(cpu, r))
                )
            }),
            fmt_bytes(per_actor(r)),
            format!(
                "{} → {}",
                fmt_bytes(r.baseline_bytes as f64),
                fmt_bytes(r.with_actors_bytes as f64)
            ),
        ]);
    }
    report.tables.push(table);

    // Acceptance lines.
    let worst_ask = figures
        .single_hop
        .iter()
        .copied()
        .min_by(|a, b| a.2.total_cmp(&b.2));
    let ask_list = figures
        .single_hop
        .iter()
        .map(|(l, r, p)| format!("{l} {} (rate {})", fmt_ratio(*p), fmt_ratio(*r)))
        .collect::<Vec<_>>()
        .join("; ");
    let multi_list = figures
        .multi_hop
        .iter()
        .map(|(l, r)| format!("{l} {}", fmt_ratio(*r)))
        .collect::<Vec<_>>()
        .join("; ");
    match worst_ask {
        Some((label, _, p)) => report.accept(
            "The project's actor ask is at least 0.8× a bare kameo ask measured in the same run",
            p >= 0.8,
            format!(
                "Compared by p50 round trip (bare kameo's p50 over the project's, median of the \
                 per-round ratios; the p50 is not moved by the preemptions other load causes, \
                 the rate is); bare kameo {} at p50 {}; slowest single-actor ask: {label} at {}; \
                 all single-actor asks: {ask_list}. Not judged, as they pass through more than \
                 one actor or task (rate ratios): {multi_list}",
                fmt_rate(figures.kameo_rate),
                fmt_duration(figures.kameo_p50),
                fmt_ratio(p)
            ),
        ),
        None => report.accept(
            "The project's actor ask is at least 0.8× a bare kameo ask measured in the same run",
            false,
            "no single-actor ask was measured",
        ),
    }

    let direct: Vec<&KindResult> = results
        .iter()
        .filter(|r| DIRECT_PROJECT_KINDS.contains(&r.kind.as_str()))
        .collect();
    let worst_spawn = direct
        .iter()
        .max_by(|a, b| a.spawn_cpu_secs.total_cmp(&b.spawn_cpu_secs))
        .map(|r| (r.kind.clone(), spawn_cpu_of(r), spawn_of(r)));
    let spawn_list = results
        .iter()
        .map(|r| {
            format!(
                "{} {} ({} wall)",
                r.kind,
                fmt_duration(spawn_cpu_of(r)),
                fmt_duration(spawn_of(r))
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let limit = Duration::from_micros(10);
    match worst_spawn {
        Some((kind, cpu, wall)) => report.accept(
            "Spawning an actor takes at most 10 µs",
            cpu <= limit,
            format!(
                "Judged on the CPU time the process spent per actor (every thread, user and \
                 system), from the first spawn until all {} have started in a fresh process, \
                 the median of {SPAWN_RUNS} such processes per kind; wall-clock time is shown \
                 too but moves with the machine's other load. Slowest \
                 of the project's actors spawned directly ({}): {kind} at {} CPU ({} wall). All \
                 kinds: {spawn_list}; server and session include the launch or `initialize` \
                 that spawns them",
                fmt_count(n),
                DIRECT_PROJECT_KINDS.join(", "),
                fmt_duration(cpu),
                fmt_duration(wall)
            ),
        ),
        None => report.accept(
            "Spawning an actor takes at most 10 µs",
            false,
            "no spawn was measured",
        ),
    }

    match results.iter().find(|r| r.kind == "session") {
        Some(r) => {
            let bytes = per_actor(r);
            let kameo = results
                .iter()
                .find(|r| r.kind == "bare-kameo")
                .map(per_actor);
            report.accept(
                "An idle session actor costs at most 8 KiB",
                bytes <= 8192.0,
                format!(
                    "{} of resident memory per idle session at {} sessions (the `Session` actor \
                     and the gateway's entry for it); a bare kameo actor: {}",
                    fmt_bytes(bytes),
                    fmt_count(r.count),
                    kameo.map_or("not measured".into(), fmt_bytes)
                ),
            );
        }
        None => report.accept(
            "An idle session actor costs at most 8 KiB",
            false,
            "sessions were not measured",
        ),
    }

    report.notes = notes(&args, n, workers);
    report.finish(&args)
}

fn notes(args: &BenchArgs, n: usize, workers: usize) -> Vec<String> {
    let (rounds, ask_n, tell_n) = (
        args.pick(5, 10),
        args.pick(20_000usize, 100_000),
        args.pick(200_000usize, 1_000_000),
    );
    let (n, ask_n, tell_n) = (fmt_count(n), fmt_count(ask_n), fmt_count(tell_n));
    vec![
        format!(
            "`examples/bench_actors.rs`, release build, jemalloc (the allocator of `mcp-fleet`, \
             with its background purging) on mcp-fleet's tokio runtime: {workers} worker \
             thread{plural} (`TOKIO_WORKER_THREADS`, default 1, as `mcp-fleet run`). Messaging \
             runs in one process against a real fleet (`Fleet::start`: every actor with the \
             mailbox and supervision mcp-fleet gives it, the Prometheus recorder installed) \
             beside a bare kameo 0.22 actor and bare tokio channels. The paths are \
             interleaved, {rounds} rounds of {ask_n} asks and {tell_n} tells each, after a \
             warm-up; every measurement runs in a tokio task on the runtime's worker \
             thread{plural}.",
            plural = if workers == 1 { "" } else { "s" }
        ),
        "Ask: one task asks, awaits the reply, and asks again. The bare kameo actor answers \
         `Ping(u64)` with its number. The project's rows are real queries: `GetMetrics` copies \
         the collector's aggregates (which the tell rows fill with one server's and every \
         actor's figures), `FlushMetrics` applies the collector's own pending message count, \
         `GetHealth` and `ListServers` run with no server, `GetGatewayStats` copies the \
         gateway's counters. `GetFleetStatus` asks the server manager `ListServers` from a task \
         of the supervisor's; the session row is a `logging/setLevel` request as `POST /mcp` \
         hands it over (the gateway looks the session up and asks it from a task; the session \
         answers in its handler). Rate ratios are the row's rate over the reference's; the p50 \
         ratio is bare kameo's p50 over the row's; above 1 is faster than the reference. Each \
         ask is timed with `Instant::now()` around it, which adds the same few tens of ns to \
         every row."
            .into(),
        "Tell: one task sends N messages in a row, then asks once behind them (FIFO), and the \
         time until that answer is divided by N. Unbounded mailboxes are sent to with \
         `try_send` (the collector's mailbox is unbounded and mcp-fleet's senders use \
         `try_send`), bounded ones with `send().await`, which waits for room. The collector's \
         rows include its real work per event (aggregates and the Prometheus recorder); \
         `Request` builds three `String`s per event as a server actor does. The manager's \
         `HealthChanged` names a server it does not have, so the manager handles it alone."
            .into(),
        format!(
            "Spawn and memory: for each kind a fresh child process (`--child-kind KIND`) starts \
             the peers the kind needs (one server manager, health monitor and metrics \
             collector, not counted), spawns and stops 256 actors as a warm-up, reads its \
             resident memory (RSS, /proc), spawns {n} actors and waits until every one has \
             started, reads RSS again after a pause, then stops them all. Spawn per actor is \
             that time / {n}, as wall-clock time and as the CPU time of the whole process \
             (every thread, user and system, which includes the kernel's page faults for the \
             new memory); RSS per idle actor is the difference / {n}. Timers that would wake \
             idle actors (health probe interval, gateway sweep, session expiry) are set to \
             24 h; no actor sends metrics. The server actors are spawned by one manager's \
             `LaunchServer` with a command containing a NUL byte, which \
             `std::process::Command` refuses before forking: no process is started and each \
             `ServerActor` stays up in `Failed`; their memory includes the manager's table \
             entry, status channel and stderr ring of each server, and its memory's copy of \
             the spec (for a restart of the manager). Sessions are opened through \
             one gateway as `POST /mcp` would, without HTTP; their memory includes the \
             gateway's entry for each session. Warm spawn (full mode) is the same spawn again \
             after all were stopped, into memory the process already has. Each kind runs in \
             {SPAWN_RUNS} such processes, in {SPAWN_RUNS} rounds over the kinds; the table shows \
             the run with the median spawn CPU, and every run's spawn CPU. On this VM a fresh \
             process now and then takes twice the CPU to fault its memory in, whatever kind it \
             runs (bare kameo included); the median leaves such a run out."
        ),
        "The machine's other load moves wall-clock figures and rates a lot on a shared \
         machine; the ratios, taken within each round, the p50s and the CPU times move less."
            .into(),
    ]
}
