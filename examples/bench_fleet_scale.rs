//! Fleet scale: launch 1,000 reference servers at once with the release `mcp-fleet run` binary
//! and measure the time until all are ready, the manager's resident memory, and the CPU of the
//! health loop at a 1 s interval. One of the benchmarks of `cargo xtask bench`.
//!
//! `target/release/examples/bench_fleet_scale --mode quick|full [--out FILE]`
//!
//! It needs `target/release/mcp-fleet` and `target/release/mcp-reference-server` beside the
//! directory it runs from (`cargo build --release -p fleet-runtime -p mcp-reference-server -p
//! fleet-examples --examples`). It first reads the RSS of an `mcp-fleet` with no server. Then,
//! for each fleet size (1,000; the full mode also 2,000), it does two runs, each in a fresh
//! temporary directory with its own config, state file, free port on 127.0.0.1 and log:
//!
//! 1. `[health] interval_secs = 1`: the time from spawning `mcp-fleet` until `GET /readyz`
//!    answers 200 (polled every 50 ms, 60 s deadline), then `GET /api/servers` must show every
//!    server `ready`; the RSS and CPU of `mcp-fleet` and of its servers. After ready, a client
//!    of `/mcp` opens a session and reads `tools/list` until it offers every server's tools,
//!    then the program waits for `mcp-fleet` to go quiet (both bounded: quick 25 s, full
//!    120 s); then it reads mcp-fleet's CPU seconds over a window (quick 10 s, full 30 s), with
//!    the `mcp_fleet_probes_total` counters of `/metrics` before and after it;
//! 2. the same with `interval_secs = 86400`, so that no probe round falls in the window. The
//!    difference of the two windows' CPU is the health loop's cost.
//!
//! Each run ends with SIGTERM; mcp-fleet must exit and every server process of the run (found in
//! /proc by a variable only this run's servers carry in their `env`) must be gone within
//! deadlines. What is left is killed with SIGKILL and reported as a failure (and the program
//! exits non-zero after writing its report). A guard kills `mcp-fleet` and its servers on every
//! error path too. Quick mode takes about a minute on an idle 2-core machine.

use std::collections::HashMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use fleet_examples::bench::{
    BenchArgs, Latencies, Mode, Report, Table, fmt_bytes, fmt_duration, read_process,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// The variable every server of one run gets in its `env`, with the run's tag as its value.
const TAG_VAR: &str = "BENCH_FLEET_SCALE_RUN";
/// How often `/readyz` is polled during the launch.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// The longest wait for the whole fleet to be ready; a miss is a result, not a hang.
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long `mcp-fleet` may take to exit after SIGTERM (its own stop ladder is 3 s + 3 s).
const EXIT_DEADLINE: Duration = Duration::from_secs(30);
/// How long the servers may linger after `mcp-fleet` exited.
const LEFTOVER_DEADLINE: Duration = Duration::from_secs(10);
/// The acceptance bound on the launch of 1,000 servers.
const READY_BOUND: Duration = Duration::from_secs(10);
/// mcp-fleet counts as quiet after the launch once it used less than this share of a core over
/// one [`QUIET_SAMPLE`].
const QUIET_CPU: f64 = 0.25;
const QUIET_SAMPLE: Duration = Duration::from_secs(1);
/// How often the gateway's `tools/list` is read after ready, until it lists every tool.
const CATALOG_POLL: Duration = Duration::from_millis(200);
/// A health interval long enough that no probe round falls in the window.
const HEALTH_OFF_SECS: u64 = 86_400;
const ACCEPTANCE: &str =
    "1,000 reference servers are ready within 10 s of launch on this 2-core machine";

fn main() -> anyhow::Result<()> {
    let args = BenchArgs::from_env()?;
    if !args.rest.is_empty() {
        bail!(
            "unknown arguments {:?} (takes --mode quick|full, --out FILE)",
            args.rest
        );
    }
    let nofile = raise_nofile();
    let bins = Binaries::find()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(&args, &bins, &nofile))
}

/// The release binaries this benchmark runs.
struct Binaries {
    fleet: PathBuf,
    reference: PathBuf,
}

impl Binaries {
    /// `target/release/examples/bench_fleet_scale` -> `target/release/{mcp-fleet,
    /// mcp-reference-server}`.
    fn find() -> anyhow::Result<Binaries> {
        let exe = std::env::current_exe().context("cannot tell where this program is")?;
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .context("this program is not in a target/<profile>/examples directory")?;
        let fleet = dir.join("mcp-fleet");
        let reference = dir.join("mcp-reference-server");
        for bin in [&fleet, &reference] {
            if !bin.is_file() {
                bail!(
                    "{} is missing: build it first with `cargo build --release -p fleet-runtime \
                     -p mcp-reference-server -p fleet-examples --examples`",
                    bin.display()
                );
            }
        }
        Ok(Binaries { fleet, reference })
    }
}

/// The soft and hard `RLIMIT_NOFILE` before and after raising the soft limit to the hard one,
/// as text for the notes. mcp-fleet and its children inherit the raised limit: 1,000 children
/// with three pipes each need more than the usual 1,024.
fn raise_nofile() -> String {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => format!("raised from {soft} to {hard} (the hard limit)"),
            Err(e) => format!("{soft} (hard {hard}; raising it failed: {e})"),
        },
        Ok((soft, hard)) => format!("{soft} (hard {hard})"),
        Err(e) => format!("unknown ({e})"),
    }
}

/// What one run of `mcp-fleet` measured.
struct RunResult {
    servers: usize,
    health_secs: u64,
    /// Spawn of `mcp-fleet` to `/readyz` 200; `None` if the deadline passed.
    ready_after: Option<Duration>,
    /// Spawn to the first HTTP answer of any status.
    listening_after: Option<Duration>,
    /// `took_ms` of the log's "fleet launched" line: the `LaunchFleet` ask alone.
    launch_took: Option<Duration>,
    ready: usize,
    failed: usize,
    other: usize,
    /// First to last `started_at` of the servers: how long spawning them all took.
    spawn_spread: Option<Duration>,
    handshakes: Latencies,
    fleet_rss_ready: u64,
    /// CPU seconds from spawn to ready: mcp-fleet's, and its servers' together.
    fleet_cpu_launch: f64,
    children_cpu_launch: f64,
    /// Ready to quiet (under [`QUIET_CPU`]), and mcp-fleet's CPU seconds meanwhile; `quiet`
    /// false if the settle deadline passed first.
    busy_after_ready: Duration,
    /// What a client of `/mcp` saw after ready.
    gateway: GatewayWatch,
    tools_expected: usize,
    fleet_cpu_busy: f64,
    quiet: bool,
    fleet_rss_after: u64,
    children_rss: u64,
    children_counted: usize,
    window: Option<Window>,
    shutdown: Shutdown,
    log: PathBuf,
}

/// The CPU window.
struct Window {
    wall: Duration,
    fleet_cpu: f64,
    children_cpu: f64,
    probes_ok: f64,
    probes_failed: f64,
}

/// How the run ended.
#[derive(Default)]
struct Shutdown {
    /// SIGTERM to the exit of `mcp-fleet`.
    took: Option<Duration>,
    exit: Option<String>,
    /// Server processes still there after the deadlines (killed with SIGKILL).
    leftover: usize,
    /// Whether `mcp-fleet` had to be killed.
    killed: bool,
}

impl Shutdown {
    fn clean(&self) -> bool {
        self.leftover == 0 && !self.killed && self.exit.as_deref() == Some("exit code 0")
    }
}

async fn run(args: &BenchArgs, bins: &Binaries, nofile: &str) -> anyhow::Result<()> {
    let sizes: &[usize] = args.pick(&[1000], &[1000, 2000]);
    let window = args.pick(Duration::from_secs(10), Duration::from_secs(30));
    // The longest wait for mcp-fleet to go quiet after the launch.
    let settle = args.pick(Duration::from_secs(25), Duration::from_secs(120));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()?;

    eprintln!("bench_fleet_scale: an empty fleet ...");
    let empty_rss = empty_fleet_rss(&http, bins).await?;
    let mut results = Vec::new();
    for &n in sizes {
        for health_secs in [1, HEALTH_OFF_SECS] {
            eprintln!("bench_fleet_scale: {n} servers, health interval {health_secs} s ...");
            let r = run_fleet(&http, bins, n, health_secs, settle, window).await?;
            eprintln!(
                "bench_fleet_scale:   ready after {}, {} ready, {} failed; shutdown {}",
                r.ready_after
                    .map_or("(deadline missed)".into(), fmt_duration),
                r.ready,
                r.failed,
                r.shutdown.took.map_or("(killed)".into(), fmt_duration),
            );
            results.push(r);
        }
    }
    let report = build_report(args.mode, &results, empty_rss, window, settle, nofile);
    report.finish(args)?;
    if results.iter().any(|r| !r.shutdown.clean()) {
        bail!("a run did not shut down cleanly (see the tables)");
    }
    Ok(())
}

/// `mcp-fleet` and the tag of its servers; kills both if dropped before [`FleetGuard::stop`].
struct FleetGuard {
    child: Option<Child>,
    tag: String,
    /// The run's directory: its config and mcp-fleet's log, kept when the run fails.
    dir: PathBuf,
}

impl FleetGuard {
    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, then waits for `mcp-fleet` to exit and for the servers to be gone.
    async fn stop(&mut self) -> Shutdown {
        let mut out = Shutdown::default();
        let Some(mut child) = self.child.take() else {
            return out;
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let sent = Instant::now();
        let _ = kill(pid, Signal::SIGTERM);
        let status = wait_exit(&mut child, EXIT_DEADLINE).await;
        match status {
            Some(status) => {
                out.took = Some(sent.elapsed());
                out.exit = Some(describe_exit(status));
            }
            None => {
                out.killed = true;
                let _ = child.kill();
                let _ = child.wait();
                out.exit = Some("killed (no exit after SIGTERM)".into());
            }
        }
        let deadline = Instant::now() + LEFTOVER_DEADLINE;
        loop {
            let left = tagged_processes(&self.tag);
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                out.leftover = left.len();
                kill_all(&left);
                break;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        out
    }
}

impl Drop for FleetGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Not stopped by `stop`: an error cut the run short.
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "bench_fleet_scale: the run failed; kept {} for its log",
                self.dir.display()
            );
        }
        kill_all(&tagged_processes(&self.tag));
    }
}

async fn wait_exit(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + deadline;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => "unknown".into(),
    }
}

/// The processes whose environment holds `TAG_VAR=tag`: this run's servers, and nothing else.
fn tagged_processes(tag: &str) -> Vec<u32> {
    let needle = format!("{TAG_VAR}={tag}");
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
                && !is_zombie(*pid)
        })
        .collect()
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

fn kill_all(pids: &[u32]) {
    for pid in pids {
        if let Ok(raw) = i32::try_from(*pid) {
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Writes the config of `n` reference servers and the `mcp-fleet.toml` into `dir`.
fn write_config(
    dir: &Path,
    bins: &Binaries,
    n: usize,
    health_secs: u64,
    port: u16,
    tag: &str,
) -> anyhow::Result<PathBuf> {
    let reference = bins.reference.to_str().context("non-UTF-8 binary path")?;
    let servers: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            (
                format!("s{i:04}"),
                json!({ "command": reference, "env": { TAG_VAR: tag } }),
            )
        })
        .collect();
    fs::write(
        dir.join("servers.json"),
        serde_json::to_vec_pretty(&json!({ "mcpServers": servers }))?,
    )?;
    let toml_path = dir.join("mcp-fleet.toml");
    fs::write(
        &toml_path,
        format!(
            "listen = \"127.0.0.1:{port}\"\nservers_file = \"servers.json\"\n\
             state = \"fleet.state.json\"\n\n[health]\ninterval_secs = {health_secs}\n"
        ),
    )?;
    Ok(toml_path)
}

/// A started `mcp-fleet` and what its launch took.
struct Started {
    guard: FleetGuard,
    spawned: Instant,
    dir: PathBuf,
    log: PathBuf,
    base: String,
    /// Spawn to the first HTTP answer of any status, and to `/readyz` 200.
    listening_after: Option<Duration>,
    ready_after: Option<Duration>,
}

/// Writes a config of `n` servers into a new temporary directory, starts `mcp-fleet run` on a
/// free port and polls `/readyz` until 200 or [`READY_DEADLINE`].
async fn start_fleet(
    http: &reqwest::Client,
    bins: &Binaries,
    n: usize,
    health_secs: u64,
) -> anyhow::Result<Started> {
    let tag = format!(
        "{}-{}-{}",
        std::process::id(),
        n,
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let dir = std::env::temp_dir().join(format!("bench-fleet-scale-{tag}"));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let port = free_port()?;
    let config = write_config(&dir, bins, n, health_secs, port, &tag)?;
    let log = dir.join("mcp-fleet.log");
    let log_file = fs::File::create(&log)?;
    let base = format!("http://127.0.0.1:{port}");

    let spawned = Instant::now();
    let child = Command::new(&bins.fleet)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("spawning {}", bins.fleet.display()))?;
    let mut guard = FleetGuard {
        child: Some(child),
        tag,
        dir: dir.clone(),
    };

    let mut listening_after = None;
    let mut ready_after = None;
    while spawned.elapsed() < READY_DEADLINE {
        if let Ok(resp) = http.get(format!("{base}/readyz")).send().await {
            listening_after.get_or_insert_with(|| spawned.elapsed());
            if resp.status() == reqwest::StatusCode::OK {
                ready_after = Some(spawned.elapsed());
                break;
            }
        }
        if let Some(Ok(Some(status))) = guard.child.as_mut().map(Child::try_wait) {
            bail!(
                "mcp-fleet exited during the launch ({}); see {}",
                describe_exit(status),
                log.display()
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    Ok(Started {
        guard,
        spawned,
        dir,
        log,
        base,
        listening_after,
        ready_after,
    })
}

/// The resident memory of a running `mcp-fleet` with no server, 2 s after it is ready.
async fn empty_fleet_rss(http: &reqwest::Client, bins: &Binaries) -> anyhow::Result<u64> {
    let mut started = start_fleet(http, bins, 0, 1).await?;
    if started.ready_after.is_none() {
        bail!(
            "an empty fleet was not ready within {} s",
            READY_DEADLINE.as_secs()
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = read_process(started.guard.pid()).map_or(0, |p| p.resident_bytes);
    let shutdown = started.guard.stop().await;
    if !shutdown.clean() {
        bail!("the empty fleet did not stop cleanly: {:?}", shutdown.exit);
    }
    let _ = fs::remove_dir_all(&started.dir);
    Ok(rss)
}

async fn run_fleet(
    http: &reqwest::Client,
    bins: &Binaries,
    n: usize,
    health_secs: u64,
    settle: Duration,
    window: Duration,
) -> anyhow::Result<RunResult> {
    let Started {
        mut guard,
        spawned,
        dir,
        log,
        base,
        listening_after,
        ready_after,
    } = start_fleet(http, bins, n, health_secs).await?;
    let fleet_pid = guard.pid();

    let at_ready = read_process(fleet_pid).unwrap_or_default();
    let fleet_rss_ready = at_ready.resident_bytes;

    // Every server's state, pid, spawn time and handshake.
    let servers: Vec<Value> = http
        .get(format!("{base}/api/servers"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
        .context("reading /api/servers")?;
    let mut ready = 0;
    let mut failed = 0;
    let mut pids = Vec::new();
    let mut started = Vec::new();
    let mut handshakes = Latencies::new();
    let mut tools_expected = 0;
    for s in &servers {
        tools_expected += s["handshake"]["tools"].as_array().map_or(0, Vec::len);
        match s["state"].as_str() {
            Some("ready") => ready += 1,
            Some("failed") => failed += 1,
            _ => {}
        }
        if let Some(pid) = s["pid"].as_u64().and_then(|p| u32::try_from(p).ok()) {
            pids.push(pid);
        }
        if let Some(t) = system_time(&s["started_at"]) {
            started.push(t);
        }
        if let Some(d) = duration(&s["handshake"]["took"]) {
            handshakes.record(d);
        }
    }
    let other = servers.len().saturating_sub(ready + failed) + n.saturating_sub(servers.len());
    let spawn_spread = match (started.iter().min(), started.iter().max()) {
        (Some(a), Some(b)) => b.duration_since(*a).ok(),
        _ => None,
    };
    let children: Vec<_> = pids.iter().filter_map(|p| read_process(*p)).collect();
    let children_rss = children.iter().map(|p| p.resident_bytes).sum();
    let children_counted = children.len();
    let children_cpu_launch = thread_runtimes(&pids).values().sum::<u64>() as f64 / 1e9;

    // The launch goes on inside mcp-fleet after /readyz (the gateway lists each server): wait
    // until it is quiet, so that the window sees the steady state, and until the gateway's
    // `tools/list` has every tool.
    let ready_at = spawned + ready_after.unwrap_or_else(|| spawned.elapsed());
    let (quiet_at, gateway) = if ready_after.is_some() {
        let deadline = ready_at + settle;
        // First the gateway, then the CPU: a quiet second alone can be another process taking
        // the cores.
        let gateway = watch_gateway(http, &base, tools_expected, ready_at, deadline).await;
        (wait_quiet(fleet_pid, ready_at, deadline).await, gateway)
    } else {
        (None, GatewayWatch::default())
    };
    let quiet = quiet_at.is_some();
    let (busy_after_ready, cpu_then) = quiet_at.unwrap_or_else(|| {
        (
            ready_at.elapsed(),
            read_process(fleet_pid).map_or(at_ready.cpu_seconds, |p| p.cpu_seconds),
        )
    });
    let fleet_cpu_busy = cpu_then - at_ready.cpu_seconds;

    // The health loop's CPU.
    let window_result = if ready_after.is_some() {
        let probes0 = probes(http, &base).await?;
        let kids0 = thread_runtimes(&pids);
        let cpu0 = read_process(fleet_pid).context("mcp-fleet is gone")?;
        let t0 = Instant::now();
        tokio::time::sleep(window).await;
        let cpu1 = read_process(fleet_pid).context("mcp-fleet is gone")?;
        let wall = t0.elapsed();
        let kids1 = thread_runtimes(&pids);
        let probes1 = probes(http, &base).await?;
        Some(Window {
            wall,
            fleet_cpu: cpu1.cpu_seconds - cpu0.cpu_seconds,
            children_cpu: runtime_since(&kids0, &kids1),
            probes_ok: probes1.0 - probes0.0,
            probes_failed: probes1.1 - probes0.1,
        })
    } else {
        None
    };
    let fleet_rss_after = read_process(fleet_pid).map_or(0, |p| p.resident_bytes);

    let shutdown = guard.stop().await;
    let launch_took = launch_took(&log);
    if ready_after.is_some() && shutdown.clean() {
        let _ = fs::remove_dir_all(&dir);
    } else {
        eprintln!(
            "bench_fleet_scale: kept {} for its log (the run missed the deadline or did not stop cleanly)",
            dir.display()
        );
    }
    Ok(RunResult {
        servers: n,
        health_secs,
        ready_after,
        listening_after,
        launch_took,
        ready,
        failed,
        other,
        spawn_spread,
        handshakes,
        fleet_rss_ready,
        fleet_cpu_launch: at_ready.cpu_seconds,
        children_cpu_launch,
        busy_after_ready,
        gateway,
        tools_expected,
        fleet_cpu_busy,
        quiet,
        fleet_rss_after,
        children_rss,
        children_counted,
        window: window_result,
        shutdown,
        log,
    })
}

/// A serde `SystemTime` (`{secs_since_epoch, nanos_since_epoch}`).
fn system_time(v: &Value) -> Option<SystemTime> {
    let secs = v["secs_since_epoch"].as_u64()?;
    let nanos = v["nanos_since_epoch"].as_u64()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, u32::try_from(nanos).ok()?))
}

/// A serde `Duration` (`{secs, nanos}`).
fn duration(v: &Value) -> Option<Duration> {
    let secs = v["secs"].as_u64()?;
    let nanos = v["nanos"].as_u64()?;
    Some(Duration::new(secs, u32::try_from(nanos).ok()?))
}

/// Samples mcp-fleet's CPU every [`QUIET_SAMPLE`] until it used less than [`QUIET_CPU`] of a
/// core over one sample. Returns when that was (since `since`) and mcp-fleet's CPU seconds
/// then; `None` if the deadline came first.
async fn wait_quiet(pid: u32, since: Instant, deadline: Instant) -> Option<(Duration, f64)> {
    let mut last = read_process(pid)?;
    let mut at = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(QUIET_SAMPLE).await;
        let now = read_process(pid)?;
        let rate = (now.cpu_seconds - last.cpu_seconds) / at.elapsed().as_secs_f64();
        last = now;
        at = Instant::now();
        if rate < QUIET_CPU {
            return Some((since.elapsed(), now.cpu_seconds));
        }
    }
    None
}

/// What a client of `/mcp` saw after ready.
#[derive(Default)]
struct GatewayWatch {
    /// Ready to the answer of `initialize`.
    initialize: Option<Duration>,
    /// Ready to the first `tools/list` that offers every server's tools.
    complete: Option<Duration>,
    /// The request that failed or timed out, if one did.
    error: Option<String>,
}

/// Opens a session on `/mcp` once the fleet is ready and reads `tools/list` every
/// [`CATALOG_POLL`] until it offers `expected` tools, or until the deadline.
async fn watch_gateway(
    http: &reqwest::Client,
    base: &str,
    expected: usize,
    since: Instant,
    deadline: Instant,
) -> GatewayWatch {
    let mut out = GatewayWatch::default();
    let result: anyhow::Result<()> = async {
        let session = open_session(http, base, deadline).await?;
        out.initialize = Some(since.elapsed());
        while Instant::now() < deadline {
            if gateway_tools(http, base, &session, deadline).await? >= expected {
                out.complete = Some(since.elapsed());
                break;
            }
            tokio::time::sleep(CATALOG_POLL).await;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        out.error = Some(format!("{e:#}"));
    }
    out
}

/// Opens a 2025-11-25 client session on the gateway: `initialize`, then
/// `notifications/initialized`. Returns its `Mcp-Session-Id`.
async fn open_session(
    http: &reqwest::Client,
    base: &str,
    deadline: Instant,
) -> anyhow::Result<String> {
    let resp = mcp_post(
        http,
        base,
        None,
        deadline,
        json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": { "name": "bench_fleet_scale", "version": "0" }
            }
        }),
    )
    .await?;
    let session = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .context("initialize: no Mcp-Session-Id")?
        .to_string();
    mcp_post(
        http,
        base,
        Some(&session),
        deadline,
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
    )
    .await?;
    Ok(session)
}

/// How many tools the gateway's `tools/list` offers now.
async fn gateway_tools(
    http: &reqwest::Client,
    base: &str,
    session: &str,
    deadline: Instant,
) -> anyhow::Result<usize> {
    let body: Value = mcp_post(
        http,
        base,
        Some(session),
        deadline,
        json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" }),
    )
    .await?
    .json()
    .await
    .context("tools/list: not JSON")?;
    Ok(body["result"]["tools"].as_array().map_or(0, Vec::len))
}

/// One POST to `/mcp`, given up at `deadline` (at least 1 s from now).
async fn mcp_post(
    http: &reqwest::Client,
    base: &str,
    session: Option<&str>,
    deadline: Instant,
    body: Value,
) -> anyhow::Result<reqwest::Response> {
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    let mut req = http
        .post(format!("{base}/mcp"))
        .timeout(timeout)
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(s) = session {
        req = req.header("mcp-session-id", s);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("POST /mcp {}", body["method"]))?;
    if !resp.status().is_success() {
        bail!("POST /mcp {}: {}", body["method"], resp.status());
    }
    Ok(resp)
}

/// The sum of `mcp_fleet_probes_total` over every server: (ok, failed).
async fn probes(http: &reqwest::Client, base: &str) -> anyhow::Result<(f64, f64)> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let mut ok = 0.0;
    let mut failed = 0.0;
    for line in text.lines() {
        if !line.starts_with("mcp_fleet_probes_total{") {
            continue;
        }
        let Some(value) = line
            .rsplit_once(' ')
            .and_then(|(_, v)| v.parse::<f64>().ok())
        else {
            continue;
        };
        if line.contains("outcome=\"ok\"") {
            ok += value;
        } else {
            failed += value;
        }
    }
    Ok((ok, failed))
}

/// The scheduler's exact runtime (ns) of every thread of the given processes, by (pid, tid),
/// from `/proc/PID/task/TID/schedstat`. `utime`/`stime` of /proc/PID/stat are sampled at the
/// clock tick and read 0 for processes that only run in short bursts, as idle servers
/// answering pings do.
fn thread_runtimes(pids: &[u32]) -> HashMap<(u32, u32), u64> {
    let mut out = HashMap::new();
    for pid in pids {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            let runtime = fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
            if let Some(ns) = runtime {
                out.insert((*pid, tid), ns);
            }
        }
    }
    out
}

/// CPU seconds from `before` to `after`, thread by thread: a thread that ended in between
/// (tokio's idle blocking threads do) takes its runtime with it and must not count negative.
fn runtime_since(before: &HashMap<(u32, u32), u64>, after: &HashMap<(u32, u32), u64>) -> f64 {
    let ns: u64 = after
        .iter()
        .map(|(k, t1)| t1.saturating_sub(before.get(k).copied().unwrap_or(0)))
        .sum();
    ns as f64 / 1e9
}

/// `took_ms` of the "fleet launched" line of mcp-fleet's text log.
fn launch_took(log: &Path) -> Option<Duration> {
    let text = fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("fleet launched"))?;
    let ms = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("took_ms="))?
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_millis(ms))
}

fn opt_duration(d: Option<Duration>) -> String {
    d.map_or("-".into(), fmt_duration)
}

fn health_label(secs: u64) -> String {
    if secs >= HEALTH_OFF_SECS {
        "off (86400 s)".into()
    } else {
        format!("{secs} s")
    }
}

fn build_report(
    mode: Mode,
    results: &[RunResult],
    empty_rss: u64,
    window: Duration,
    settle: Duration,
    nofile: &str,
) -> Report {
    let mut report = Report::new("Fleet scale: 1,000 reference servers");
    let mode = match mode {
        Mode::Quick => "quick",
        Mode::Full => "full",
    };
    report.notes.push(format!(
        "Each run starts the release `mcp-fleet run` binary with an `mcp-fleet.toml` of N \
         reference servers (`mcp-reference-server` with no arguments: the plain echo server), \
         its own state file and a free port on 127.0.0.1, with `RUST_LOG=info` and its log in a \
         file. *Time to all ready* is from spawning `mcp-fleet` until `GET /readyz` answers 200 \
         (polled every {} ms, {} s deadline); `GET /api/servers` must then show every server \
         `ready`. *HTTP up* is the first answer of any status; *LaunchFleet* is the `took_ms` \
         of mcp-fleet's own \"fleet launched\" log line; *spawn spread* is first to last \
         `started_at` of the servers; *handshake* is each server's spawn to the end of its \
         `tools/list` (`handshake.took`). The soft `RLIMIT_NOFILE` the fleet inherits: {nofile}.",
        POLL_EVERY.as_millis(),
        READY_DEADLINE.as_secs()
    ));
    report.notes.push(format!(
        "Launch CPU: mcp-fleet's user+system seconds (/proc/PID/stat) from its spawn to ready, \
         and the servers' together (the scheduler's runtime of their live threads, \
         /proc/PID/task/*/schedstat, thread by thread: /proc/PID/stat reads 0 for processes \
         that run only in short bursts; the servers' CPU in the window below is read the same \
         way). After ready, a client of `/mcp` opens a 2025-11-25 session \
         (*initialize answered*: from ready to the answer) and reads `tools/list` every {} ms \
         after each answer until it offers every tool of every server (*lists every tool*). \
         *Busy after ready*: from ready until, after that, mcp-fleet used less than {:.0} % of \
         a core over {} s; and its CPU seconds meanwhile. Both wait at most {} s.",
        CATALOG_POLL.as_millis(),
        QUIET_CPU * 100.0,
        QUIET_SAMPLE.as_secs(),
        settle.as_secs()
    ));
    report.notes.push(format!(
        "Memory: resident set (VmRSS, /proc) of the `mcp-fleet` process alone, once all are \
         ready and again after the CPU window; *per server* is the latter, less the RSS of an \
         `mcp-fleet` with no server ({}, 2 s after ready), divided by N. The children's RSS is the sum over the server processes whose pids `/api/servers` lists, \
         for information.",
        fmt_bytes(empty_rss as f64)
    ));
    report.notes.push(format!(
        "Health loop: once mcp-fleet is quiet after the launch, its CPU seconds over a {win} s \
         window ({mode} mode) with `[health] interval_secs = 1`, and on a second run of the same \
         fleet with `interval_secs = 86400`, so that no probe round falls in its window. \
         Everything else (the process sampler every 5 s, metrics upkeep) runs in both. The \
         *health loop* figures are the difference of the two runs' CPU rates, divided by the \
         rounds due in the window (one a second) and by N for a probe. The probes that ran are \
         counted by `mcp_fleet_probes_total` in `/metrics`, scraped just before and after the \
         window (the scrapes take a moment, so they count a little more than the window's). \
         The servers' CPU (answering the pings) is shown apart. Each run ends with SIGTERM: *shutdown* is SIGTERM to the exit \
         of mcp-fleet, and no server process of the run may remain ({exit} s + {left} s \
         deadlines; leftovers are killed and reported).",
        win = window.as_secs(),
        exit = EXIT_DEADLINE.as_secs(),
        left = LEFTOVER_DEADLINE.as_secs(),
    ));

    let mut launch = Table::new(
        "Launch",
        &[
            "servers",
            "health interval",
            "time to all ready",
            "ready / failed / other",
            "HTTP up",
            "LaunchFleet",
            "spawn spread",
            "handshake p50 / p99 / max",
        ],
    );
    let mut work = Table::new(
        "Launch CPU, after the launch, shutdown",
        &[
            "servers",
            "health interval",
            "mcp-fleet CPU to ready",
            "servers' CPU to ready",
            "/mcp initialize answered",
            "/mcp lists every tool",
            "busy after ready",
            "mcp-fleet CPU meanwhile",
            "shutdown",
            "left over",
        ],
    );
    let mut memory = Table::new(
        "Memory",
        &[
            "servers",
            "health interval",
            "mcp-fleet RSS at ready",
            "mcp-fleet RSS after window",
            "per server (less the empty fleet's)",
            "children RSS total",
            "per child",
        ],
    );
    let mut cpu = Table::new(
        "Health loop CPU",
        &[
            "servers",
            "health interval",
            "window",
            "mcp-fleet CPU",
            "probes in window (ok / failed)",
            "probe rounds (probes / N)",
            "servers' CPU",
            "health loop CPU",
            "CPU per round",
            "CPU per probe",
        ],
    );
    for r in results {
        let hs = if r.handshakes.count() > 0 {
            format!(
                "{} / {} / {}",
                fmt_duration(r.handshakes.quantile(0.5)),
                fmt_duration(r.handshakes.quantile(0.99)),
                fmt_duration(r.handshakes.quantile(1.0))
            )
        } else {
            "-".into()
        };
        launch.row(vec![
            r.servers.to_string(),
            health_label(r.health_secs),
            r.ready_after.map_or(
                format!("> {} s (deadline)", READY_DEADLINE.as_secs()),
                fmt_duration,
            ),
            format!("{} / {} / {}", r.ready, r.failed, r.other),
            opt_duration(r.listening_after),
            opt_duration(r.launch_took),
            opt_duration(r.spawn_spread),
            hs,
        ]);
        work.row(vec![
            r.servers.to_string(),
            health_label(r.health_secs),
            format!("{:.2} s", r.fleet_cpu_launch),
            format!("{:.2} s", r.children_cpu_launch),
            r.gateway.initialize.map_or(
                format!("> {:.0} s after ready", settle.as_secs_f64()),
                |d| format!("{:.1} s after ready", d.as_secs_f64()),
            ),
            r.gateway.complete.map_or(
                format!("> {:.0} s after ready", settle.as_secs_f64()),
                |d| {
                    format!(
                        "{:.1} s after ready ({} tools)",
                        d.as_secs_f64(),
                        r.tools_expected
                    )
                },
            ),
            if r.quiet {
                format!("{:.1} s", r.busy_after_ready.as_secs_f64())
            } else {
                format!("> {:.1} s (not quiet)", r.busy_after_ready.as_secs_f64())
            },
            format!("{:.2} s", r.fleet_cpu_busy),
            match (&r.shutdown.took, &r.shutdown.exit) {
                (Some(t), Some(e)) => format!("{} ({e})", fmt_duration(*t)),
                (_, Some(e)) => e.clone(),
                _ => "-".into(),
            },
            r.shutdown.leftover.to_string(),
        ]);
        memory.row(vec![
            r.servers.to_string(),
            health_label(r.health_secs),
            fmt_bytes(r.fleet_rss_ready as f64),
            fmt_bytes(r.fleet_rss_after as f64),
            fmt_bytes(r.fleet_rss_after.saturating_sub(empty_rss) as f64 / r.servers as f64),
            fmt_bytes(r.children_rss as f64),
            fmt_bytes(r.children_rss as f64 / r.children_counted.max(1) as f64),
        ]);
        let Some(w) = &r.window else {
            continue;
        };
        let wall = w.wall.as_secs_f64();
        let probed_rounds = (w.probes_ok + w.probes_failed) / r.servers as f64;
        // The rounds due in the window; the scrapes around it count a little more.
        let rounds = wall / r.health_secs as f64;
        // The health loop's cost: this run's CPU rate less that of the run without probes.
        let baseline = results
            .iter()
            .find(|b| b.servers == r.servers && b.health_secs >= HEALTH_OFF_SECS)
            .and_then(|b| b.window.as_ref());
        let (loop_pct, per_round, per_probe) = match baseline {
            Some(b) if r.health_secs < HEALTH_OFF_SECS => {
                let extra = w.fleet_cpu / wall - b.fleet_cpu / b.wall.as_secs_f64();
                let per_round = extra * wall / rounds;
                (
                    format!("{:.1} % of a core", extra * 100.0),
                    format!("{:.1} ms", per_round * 1e3),
                    format!("{:.1} µs", per_round * 1e6 / r.servers as f64),
                )
            }
            _ => ("-".into(), "-".into(), "-".into()),
        };
        cpu.row(vec![
            r.servers.to_string(),
            health_label(r.health_secs),
            format!("{wall:.1} s"),
            format!(
                "{:.2} s ({:.1} % of a core)",
                w.fleet_cpu,
                w.fleet_cpu / wall * 100.0
            ),
            format!("{:.0} / {:.0}", w.probes_ok, w.probes_failed),
            format!("{probed_rounds:.1}"),
            format!(
                "{:.2} s ({:.1} % of a core)",
                w.children_cpu,
                w.children_cpu / wall * 100.0
            ),
            loop_pct,
            per_round,
            per_probe,
        ]);
    }
    report.tables.push(launch);
    report.tables.push(work);
    report.tables.push(memory);
    report.tables.push(cpu);

    let thousand: Vec<&RunResult> = results.iter().filter(|r| r.servers == 1000).collect();
    let all_ready = thousand.iter().all(|r| r.ready == 1000);
    let worst = thousand
        .iter()
        .map(|r| r.ready_after.unwrap_or(Duration::MAX))
        .max()
        .unwrap_or(Duration::MAX);
    let figures = thousand
        .iter()
        .map(|r| {
            format!(
                "{} with health {} ({} ready, {} failed)",
                r.ready_after
                    .map_or(format!("> {} s", READY_DEADLINE.as_secs()), fmt_duration),
                health_label(r.health_secs),
                r.ready,
                r.failed
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    report.accept(
        ACCEPTANCE,
        all_ready && worst <= READY_BOUND,
        format!("spawn of mcp-fleet to /readyz 200, every run: {figures}"),
    );
    for r in results.iter().filter(|r| r.ready_after.is_none()) {
        report.notes.push(format!(
            "The run of {} servers (health {}) missed the {} s deadline; its log is {}.",
            r.servers,
            health_label(r.health_secs),
            READY_DEADLINE.as_secs(),
            r.log.display()
        ));
    }
    for r in results.iter().filter(|r| !r.shutdown.clean()) {
        report.notes.push(format!(
            "Failure: the run of {} servers (health {}) did not shut down cleanly: mcp-fleet {}, \
             {} server process(es) left over and killed.",
            r.servers,
            health_label(r.health_secs),
            r.shutdown.exit.as_deref().unwrap_or("unknown"),
            r.shutdown.leftover
        ));
    }
    for r in results {
        if let Some(e) = &r.gateway.error {
            report.notes.push(format!(
                "The run of {} servers (health {}): a request to `/mcp` after ready failed: {e}.",
                r.servers,
                health_label(r.health_secs)
            ));
        }
    }
    for r in results
        .iter()
        .filter(|r| r.ready_after.is_some() && !r.quiet)
    {
        report.notes.push(format!(
            "The run of {} servers (health {}) was not quiet {} s after ready; its CPU window \
             includes the rest of the launch's work.",
            r.servers,
            health_label(r.health_secs),
            settle.as_secs()
        ));
    }
    report
}
