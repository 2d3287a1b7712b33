//! What an idle MCP client session costs in memory, and whether the memory comes back once the
//! gateway expires the session.
//!
//! `cargo run --release --example session_memory [-- --sessions N] [--concurrency C]
//! [--ttl-secs T] [--rounds R] [--direct]`
//!
//! It starts the actor system with one reference server, serves `/mcp` on 127.0.0.1 and opens
//! N 2025-era sessions over real HTTP (`initialize`, then `notifications/initialized`), 64 at a
//! time by default. It reads this process's resident memory (VmRSS) before, with half and all
//! of the sessions open, and after the gateway expired them (idle TTL); then it does it again
//! (3 rounds by default) to show whether freed memory is reused or the process keeps growing.
//! It also counts this process's child processes: sessions must never start one. `--direct` opens the sessions in-process (asks to the gateway actor, no
//! HTTP), which separates the actors' cost from the HTTP and connection cost.
//!
//! Everything runs in one process (client and server), so the figures include the client's
//! side of each request; it keeps nothing per session once the session is open.

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use fleet_gateway::Gateway;
use fleet_protocol::ServerSpec;
use fleet_protocol::jsonrpc::{Message, Notification, Request};
use fleet_protocol::mcp::{self, methods};
use fleet_protocol::messages::gateway::{GatewayStats, GetGatewayStats};
use fleet_protocol::messages::server::GetServerStatus;
use fleet_protocol::messages::supervisor::{LaunchFleet, Shutdown};
use fleet_runtime::mcp_http::{self, McpHttpConfig};
use fleet_runtime::{Fleet, FleetOptions, telemetry};
use futures::StreamExt as _;
use kameo::actor::ActorRef;
use serde_json::{Value, json};

const SERVER: &str = "reference";
/// Sessions opened and expired before the baseline is taken: enough to open every pooled
/// connection and run every code path once, small next to a round.
const WARM_UP: usize = 64;

struct Args {
    sessions: usize,
    concurrency: usize,
    ttl: Duration,
    direct: bool,
    rounds: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut sessions = 1000;
    let mut concurrency = 64;
    let mut ttl_secs: Option<u64> = None;
    let mut direct = false;
    let mut rounds = 3;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> anyhow::Result<u64> {
            it.next()
                .with_context(|| format!("{name} needs a value"))?
                .replace('_', "")
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--sessions" => sessions = value("--sessions")? as usize,
            "--concurrency" => concurrency = value("--concurrency")?.max(1) as usize,
            "--ttl-secs" => ttl_secs = Some(value("--ttl-secs")?),
            "--rounds" => rounds = value("--rounds")?.max(1) as usize,
            "--direct" => direct = true,
            other => bail!(
                "unknown argument `{other}`; use --sessions N, --concurrency C, --ttl-secs T, --rounds R, --direct"
            ),
        }
    }
    if sessions < 2 {
        bail!("--sessions must be at least 2");
    }
    // The TTL must outlast opening a whole round, or early sessions expire before the count.
    let ttl = Duration::from_secs(ttl_secs.unwrap_or(3 + sessions as u64 / 1000));
    Ok(Args {
        sessions,
        concurrency,
        ttl,
        direct,
        rounds,
    })
}

/// One reading of the process.
#[derive(Clone, Copy)]
struct Sample {
    rss_kib: u64,
    children: usize,
    threads: usize,
    fds: usize,
    active: usize,
}

fn status_field(name: &str) -> anyhow::Result<u64> {
    let status = fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .with_context(|| format!("no {name} in /proc/self/status"))?;
    line.trim_start_matches(':')
        .split_whitespace()
        .next()
        .context("empty field")?
        .parse()
        .with_context(|| format!("{name} is not a number"))
}

/// Processes whose parent is this process (any state, zombies included).
fn child_pids() -> Vec<u32> {
    let me = std::process::id();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(me)
        })
        .collect()
}

async fn sample(gateway: &ActorRef<Gateway>) -> anyhow::Result<Sample> {
    let stats = stats(gateway).await?;
    Ok(Sample {
        rss_kib: status_field("VmRSS")?,
        children: child_pids().len(),
        threads: status_field("Threads")? as usize,
        fds: fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0),
        active: stats.active_sessions,
    })
}

async fn stats(gateway: &ActorRef<Gateway>) -> anyhow::Result<GatewayStats> {
    gateway
        .ask(GetGatewayStats)
        .await
        .map_err(|e| anyhow::anyhow!("GetGatewayStats: {e}"))
}

fn initialize_params() -> Value {
    json!({
        "protocolVersion": mcp::LEGACY_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "session_memory", "version": "0.1.0"},
    })
}

/// Opens one session over HTTP: `initialize`, then `notifications/initialized`.
async fn open_http(client: reqwest::Client, url: Arc<str>) -> anyhow::Result<()> {
    let init = Message::Request(Request::new(
        1u64,
        methods::INITIALIZE,
        Some(initialize_params()),
    ));
    let r = client
        .post(&*url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(init.to_value().to_string())
        .send()
        .await
        .context("POST initialize")?;
    if r.status() != reqwest::StatusCode::OK {
        bail!("initialize: HTTP {}", r.status());
    }
    let session = r
        .headers()
        .get(mcp_http::SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .context("no Mcp-Session-Id on the initialize response")?
        .to_owned();
    let body: Value = r.json().await.context("initialize body")?;
    if body["result"]["protocolVersion"] != mcp::LEGACY_VERSION {
        bail!("initialize answered {body}");
    }
    let initialized = Message::Notification(Notification::new(methods::INITIALIZED, None));
    let r = client
        .post(&*url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header(mcp_http::SESSION_HEADER, &session)
        .header(mcp_http::VERSION_HEADER, mcp::LEGACY_VERSION)
        .body(initialized.to_value().to_string())
        .send()
        .await
        .context("POST notifications/initialized")?;
    if r.status() != reqwest::StatusCode::ACCEPTED {
        bail!("notifications/initialized: HTTP {}", r.status());
    }
    Ok(())
}

enum Transport {
    Http {
        client: reqwest::Client,
        url: Arc<str>,
    },
    Direct,
}

/// Opens `n` sessions, at most `concurrency` at a time (each open a task of its own).
async fn open_sessions(
    transport: &Transport,
    gateway: &ActorRef<Gateway>,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let begin = Instant::now();
    let mut opens = futures::stream::iter(0..n)
        .map(|_| match transport {
            Transport::Http { client, url } => tokio::spawn(open_http(client.clone(), url.clone())),
            Transport::Direct => {
                let g = gateway.clone();
                tokio::spawn(async move {
                    fleet_examples::open_session(&g, "session_memory")
                        .await
                        .map(drop)
                })
            }
        })
        .buffer_unordered(concurrency);
    while let Some(result) = opens.next().await {
        result.context("an open task panicked")??;
    }
    Ok(begin.elapsed())
}

/// Waits (at most `bound` after `since`) until no session is left and `expired` sessions have
/// expired in all. Returns how long after `since` that was.
async fn wait_expired(
    gateway: &ActorRef<Gateway>,
    expired: u64,
    since: Instant,
    bound: Duration,
) -> anyhow::Result<(Duration, GatewayStats)> {
    let begin = since;
    loop {
        let s = stats(gateway).await?;
        if s.active_sessions == 0 && s.sessions_expired >= expired {
            if s.sessions_expired != expired {
                bail!(
                    "{} sessions expired, {expired} expected",
                    s.sessions_expired
                );
            }
            return Ok((begin.elapsed(), s));
        }
        if begin.elapsed() > bound {
            bail!(
                "sessions did not expire within {bound:?}: {} active, {} expired of {expired}",
                s.active_sessions,
                s.sessions_expired
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long after the sessions expired memory is read: jemalloc's default decay time (10 s)
/// and a margin.
const PURGE_WAIT: Duration = Duration::from_secs(12);

/// Lets killed session tasks finish dropping before memory is read.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

struct Round {
    took: Duration,
    mid: Sample,
    open: Sample,
    waited: Duration,
    expired: Sample,
    expired_total: u64,
}

struct Table {
    baseline: Option<u64>,
}

impl Table {
    fn header(&self) {
        println!(
            "   {:<34} {:>10} {:>11} {:>8} {:>7} {:>5} {:>8}",
            "stage", "VmRSS KiB", "vs base KiB", "children", "threads", "fds", "sessions"
        );
    }

    fn row(&self, stage: &str, s: &Sample) {
        let delta = self
            .baseline
            .map(|b| format!("{:+}", s.rss_kib as i64 - b as i64))
            .unwrap_or_else(|| "-".into());
        println!(
            "   {:<34} {:>10} {:>11} {:>8} {:>7} {:>5} {:>8}",
            stage, s.rss_kib, delta, s.children, s.threads, s.fds, s.active
        );
    }
}

fn per_session(after: &Sample, baseline: &Sample, n: usize) -> f64 {
    (after.rss_kib as f64 - baseline.rss_kib as f64) * 1024.0 / n as f64
}

/// The allocator of the `mcp-fleet` binary, so the figures are those of the binary.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_logging("warn", telemetry::LogFormat::Text);
    fleet_runtime::telemetry::return_freed_memory();
    let args = parse_args()?;
    let n = args.sessions;
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let how = if args.direct {
        "in-process asks to the gateway actor, no HTTP"
    } else {
        "real HTTP on 127.0.0.1"
    };
    println!("mcp-fleet gateway: memory per idle session ({build} build)");
    println!(
        "   {} rounds of {n} sessions, {} at a time, {how}; idle TTL {:?}, sweep every 250 ms\n",
        args.rounds, args.concurrency, args.ttl
    );

    let mut options = FleetOptions::default();
    options.gateway.session_idle_ttl = args.ttl;
    options.gateway.sweep_every = Duration::from_millis(250);
    options.gateway.max_sessions = n.max(WARM_UP) + 1000;
    options.server_manager.stop_grace = Duration::from_secs(2);
    let fleet = Fleet::start(options).await;

    // Whatever happens while measuring, the fleet is stopped and its server with it.
    let measured = measure(&args, &fleet).await;
    let stopped = shutdown(fleet).await;
    let children_ok = measured?;
    stopped?;
    if !children_ok {
        bail!("the child-process count changed while sessions were open");
    }
    Ok(())
}

/// The server's launch, the warm-up, the baseline and the rounds. Returns whether the
/// child-process count stayed at the baseline's throughout.
async fn measure(args: &Args, fleet: &Fleet) -> anyhow::Result<bool> {
    let n = args.sessions;
    let gateway = &fleet.gateway;
    // Built (or found) before anything is measured: the build is a child process of its own.
    let reference = mcp_reference_server::binary_path();
    let report = fleet
        .supervisor
        .ask(LaunchFleet {
            specs: vec![ServerSpec::stdio(
                SERVER,
                reference.to_string_lossy(),
                ["--name", SERVER],
            )],
        })
        .await
        .context("launch the reference server")?;
    for result in &report.results {
        result.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let server_pid = fleet
        .server_manager
        .ask(GetServerStatus {
            name: SERVER.into(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .pid
        .context("the reference server has a pid")?;
    // The gateway lists the server's tools once it is ready.
    let begin = Instant::now();
    let catalog = loop {
        let s = stats(gateway).await?;
        if s.servers.iter().any(|s| s == SERVER) {
            break s;
        }
        if begin.elapsed() > Duration::from_secs(10) {
            bail!("the gateway did not list the reference server within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "   reference server pid {server_pid}; the gateway offers {} tools from {:?}",
        catalog.tools, catalog.servers
    );

    // Dropping the sender (also on an early return) stops the HTTP server.
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let (transport, http) = if args.direct {
        (Transport::Direct, None)
    } else {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let router = mcp_http::router(fleet.gateway_port.clone(), McpHttpConfig::default());
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = http_stopped.await;
                })
                .await
        });
        // Connections stay open between rounds, so their count is the same at every reading.
        let client = reqwest::Client::builder()
            .pool_idle_timeout(None)
            .build()
            .context("HTTP client")?;
        let url: Arc<str> = Arc::from(format!("http://{addr}/mcp"));
        println!("   /mcp served at {url}");
        (Transport::Http { client, url }, Some(server))
    };
    println!();

    let table_bound = args.ttl + Duration::from_secs(10);
    let mut table = Table { baseline: None };
    table.header();
    let start = sample(gateway).await?;
    table.row("started (fleet, 1 server)", &start);

    // Warm up: the allocator, the connection pool and every code path, then back to idle.
    let expired_before = stats(gateway).await?.sessions_expired;
    open_sessions(&transport, gateway, WARM_UP, args.concurrency).await?;
    wait_expired(
        gateway,
        expired_before + WARM_UP as u64,
        Instant::now(),
        table_bound,
    )
    .await?;
    settle().await;
    let baseline = sample(gateway).await?;
    table.baseline = Some(baseline.rss_kib);
    table.row(
        &format!("baseline ({WARM_UP} opened and expired)"),
        &baseline,
    );

    // Each round opens half the sessions, reads, opens the other half, reads, and lets them
    // all expire. The second half's cost is the marginal cost of a session: memory freed by
    // the warm-up (or an earlier round) and reused is used up by then.
    let half = n / 2;
    let mut rounds: Vec<Round> = Vec::new();
    for round in 1..=args.rounds {
        let before = stats(gateway).await?;
        let begin = Instant::now();
        open_sessions(&transport, gateway, half, args.concurrency).await?;
        let took_half = begin.elapsed();
        settle().await;
        let mid = sample(gateway).await?;
        table.row(&format!("round {round}: {half} sessions open"), &mid);
        let took_rest = open_sessions(&transport, gateway, n - half, args.concurrency).await?;
        let last_open = Instant::now();
        settle().await;
        let open = sample(gateway).await?;
        table.row(&format!("round {round}: {n} sessions open"), &open);
        if open.active != n || mid.active != half {
            bail!(
                "{} and {} sessions active, {half} and {n} expected (raise --ttl-secs if opening \
                 took longer than the TTL)",
                mid.active,
                open.active
            );
        }
        let (waited, after_stats) = wait_expired(
            gateway,
            before.sessions_expired + n as u64,
            last_open,
            table_bound,
        )
        .await?;
        // jemalloc returns freed pages to the OS after its decay time (10 s by default), from
        // its background thread.
        tokio::time::sleep(PURGE_WAIT).await;
        let expired = sample(gateway).await?;
        table.row(&format!("round {round}: all expired"), &expired);
        rounds.push(Round {
            took: took_half + took_rest,
            mid,
            open,
            waited,
            expired,
            expired_total: after_stats.sessions_expired,
        });
    }
    println!();

    let children_ok = rounds.iter().all(|r| {
        [r.mid, r.open, r.expired]
            .iter()
            .all(|s| s.children == baseline.children)
    });
    println!(
        "   {:<7} {:>10} {:>14} {:>16} {:>14} {:>16}",
        "round", "sessions/s", "B/session", "B/session", "expired after", "after expiry"
    );
    println!(
        "   {:<7} {:>10} {:>14} {:>16} {:>14} {:>16}",
        "", "(open)", "(vs baseline)", "(2nd half only)", "(last open)", "(KiB vs base)"
    );
    for (i, r) in rounds.iter().enumerate() {
        let marginal = (r.open.rss_kib as f64 - r.mid.rss_kib as f64) * 1024.0 / (n - half) as f64;
        println!(
            "   {:<7} {:>10.0} {:>14.0} {:>16.0} {:>12.1} s {:>+16}",
            i + 1,
            n as f64 / r.took.as_secs_f64(),
            per_session(&r.open, &baseline, n),
            marginal,
            r.waited.as_secs_f64(),
            r.expired.rss_kib as i64 - baseline.rss_kib as i64,
        );
    }
    let last = rounds.last().context("at least one round")?;
    println!(
        "   every round's {n} sessions expired ({} expired in all, warm-up included)",
        last.expired_total
    );
    if rounds.len() > 1 {
        let deltas: Vec<String> = rounds
            .windows(2)
            .map(|w| format!("{:+}", w[1].open.rss_kib as i64 - w[0].open.rss_kib as i64))
            .collect();
        println!(
            "   VmRSS with {n} sessions open, change from the round before: {} KiB",
            deltas.join(", ")
        );
    }
    println!(
        "   child processes: {} at baseline, {} with {n} sessions open: {}",
        baseline.children,
        rounds[0].open.children,
        if children_ok {
            "sessions started none"
        } else {
            "SESSIONS STARTED PROCESSES"
        }
    );
    println!();

    // HTTP stops first, then the gateway (its sessions), then the supervisor and the server.
    drop(transport);
    let _ = stop_http.send(());
    if let Some(server) = http {
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => bail!("the HTTP server failed: {e}"),
            Ok(Err(e)) => bail!("the HTTP server task failed: {e}"),
            Err(_) => bail!("the HTTP server did not stop within 5 s"),
        }
    }
    Ok(children_ok)
}

/// Shuts the fleet down (the gateway and its sessions first, then the server manager, which
/// stops the server), and checks that no child process is left.
async fn shutdown(fleet: Fleet) -> anyhow::Result<()> {
    let report = fleet
        .supervisor
        .ask(Shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    fleet.supervisor.wait_for_shutdown().await;
    // Zombies count too: a stopped server must also have been reaped.
    let left = child_pids();
    if !left.is_empty() {
        bail!("child processes left after shutdown: {left:?}");
    }
    println!(
        "   stopped in {:.1} ms; no child process left",
        report.took.as_secs_f64() * 1e3
    );
    Ok(())
}
