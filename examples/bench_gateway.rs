//! The gateway benchmark of `cargo xtask bench`: requests per second and latency of
//! `tools/call echo` through `mcp-fleet run`, against the same backend driven directly over
//! stdio and fronted by three other MCP proxies (npm supergateway, npm mcp-proxy, PyPI
//! mcp-proxy), with the CPU and memory of each.
//!
//! `bench_gateway [--mode quick|full] [--out FILE] [--client raw|reqwest] [--client-threads N]
//! [--backends ref,everything] [--no-peers] [--measure-secs S] [--warm-up-secs S]
//! [--side-rounds N] [--fleet-env KEY=VALUE]... [--fleet-bin PATH] [--baseline-bin PATH]`
//!
//! Backends: the workspace's reference server (`ref`, both eras) and npm server-everything
//! (`everything`, 2025 era only), each run with the same command for every target. Targets, per
//! backend and per number of concurrent sessions C (1 = sequential, 16, 64):
//! - direct stdio: the backend's own process, C requests in flight on its stdin/stdout (ids
//!   matched), after the handshake of the era (the floor a proxy is measured against);
//! - mcp-fleet: release `mcp-fleet run` with a config of that one server, on a free loopback
//!   port; 2025-11-25 sessions (initialize, then `Mcp-Session-Id`) and 2026-07-28 stateless
//!   requests (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `_meta`);
//! - the peers, in 2025-11-25 sessions only (the comparison the issue asks for), each in
//!   stateful Streamable HTTP at `/mcp`;
//! - the floor: `bare_bridge` (`examples/bare_bridge.rs`), the least an HTTP-to-stdio bridge
//!   does, on mcp-fleet's HTTP stack, in 2025-11-25 sessions (what any bridge costs here);
//! - to split mcp-fleet's overhead by layer, the same call asked in-process (this program starts
//!   the actor system itself, no HTTP) of the server manager (`CallServer`) and of the gateway
//!   actor (`ClientMessage` in a session), and `ping` through `mcp-fleet run`, which the gateway
//!   answers without a backend (HTTP and the gateway's own actors only).
//!
//! The cells above run one target after another. For server-everything, direct stdio, mcp-fleet,
//! the bare bridge and (at C=16) the peers then also run at once and take turns in short slices,
//! round after round (`bench_gateway/side.rs`, `--side-rounds`, 0 for none), at C=1 and C=16: the
//! gateway's acceptance lines are decided from these, which the machine's drift moves least.
//! `--baseline-bin PATH` adds another `mcp-fleet` binary to these turns (say, a build of the
//! commit before a change), so that two builds are compared on the same machine minute.
//!
//! Each HTTP session is one keep-alive connection of a small hand-written HTTP/1.1 client (see
//! `bench_gateway/http.rs`), calling in a loop: a warm-up, then the measured window. Every
//! answer is checked (id, result, echoed text); anything else counts as an error. The peers and
//! the binaries come from `.ci/install-bench-peers` (`target/bench-peers/bench-peers.env`) and
//! from the release directory this program sits in. Every process is started in a process group
//! of its own and killed with its tree when done (also on error or Ctrl-C); at the end the
//! program checks that none is left.

#[path = "bench_gateway/http.rs"]
mod http;
#[path = "bench_gateway/load.rs"]
mod load;
#[path = "bench_gateway/mcp.rs"]
mod mcp;
#[path = "bench_gateway/phases.rs"]
mod phases;
#[path = "bench_gateway/procs.rs"]
mod procs;
#[path = "bench_gateway/side.rs"]
mod side;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use fleet_examples::bench::{BenchArgs, Mode, Report, Table, fmt_bytes, fmt_duration};
use tokio::time::Instant;

use http::{ClientKind, Conn};
use load::{CellResult, Session, Timing, Watch};
use mcp::{Era, HttpSession, StdioBackend};
use procs::ProcGuard;

/// mcp-fleet's allocator, for the in-process phases.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// The concurrency at which the throughput acceptance figures are decided.
const DECIDING_C: usize = 16;

fn main() -> anyhow::Result<()> {
    let args = BenchArgs::from_env()?;
    let opts = Options::parse(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.client_threads)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let result = tokio::select! {
            r = run(&args, &opts) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        };
        // Whatever happened, nothing we started may outlive us.
        let left = procs::leftovers(Duration::from_secs(5)).await;
        if !left.is_empty() {
            procs::kill_pids(&left);
            eprintln!("bench_gateway: killed processes left over: {left:?}");
        }
        let mut report = result?;
        if !left.is_empty() {
            bail!("processes were left over: {left:?}");
        }
        report.notes.push(format!(
            "Clean-up: {} processes were started by the benchmark or seen in the trees of what it started; none was running at the end.",
            procs::seen_count()
        ));
        report.finish(&args)
    })
}

/// This benchmark's own options (after `--mode` and `--out`).
#[derive(Debug, Clone)]
struct Options {
    client: ClientKind,
    client_threads: usize,
    backends: Vec<Backend>,
    peers: bool,
    timing: Timing,
    /// Environment variables for mcp-fleet (`RUST_LOG` is unset unless given here, so it logs
    /// with its default filter).
    fleet_env: Vec<(String, String)>,
    /// Another `mcp-fleet` binary to measure (for trying a change).
    fleet_bin: Option<PathBuf>,
    /// An `mcp-fleet` binary to measure side by side with the one measured (`side.rs`).
    baseline_bin: Option<PathBuf>,
    /// The side-by-side comparison (`side.rs`); no rounds, no comparison.
    side: side::Plan,
}

impl Options {
    fn parse(args: &BenchArgs) -> anyhow::Result<Options> {
        let mut o = Options {
            client: ClientKind::Raw,
            client_threads: 2,
            backends: vec![Backend::Everything, Backend::Reference],
            peers: true,
            timing: Timing {
                warm_up: args.pick(Duration::from_millis(500), Duration::from_secs(2)),
                measure: args.pick(Duration::from_millis(1500), Duration::from_secs(10)),
                call_timeout: Duration::from_secs(10),
            },
            fleet_env: Vec::new(),
            fleet_bin: None,
            baseline_bin: None,
            side: side::Plan {
                rounds: args.pick(6, 12),
                slice: Timing {
                    warm_up: args.pick(Duration::from_millis(150), Duration::from_millis(500)),
                    measure: args.pick(Duration::from_millis(400), Duration::from_secs(2)),
                    call_timeout: Duration::from_secs(10),
                },
                first_warm_up: args.pick(Duration::from_secs(1), Duration::from_secs(5)),
            },
        };
        let mut it = args.rest.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value"))
            };
            match a.as_str() {
                "--client" => {
                    o.client = match value("--client")?.as_str() {
                        "raw" => ClientKind::Raw,
                        "reqwest" => ClientKind::Reqwest,
                        other => bail!("--client takes raw or reqwest, not {other}"),
                    }
                }
                "--client-threads" => o.client_threads = value("--client-threads")?.parse()?,
                "--backends" => {
                    o.backends = value("--backends")?
                        .split(',')
                        .map(|b| match b {
                            "ref" => Ok(Backend::Reference),
                            "everything" => Ok(Backend::Everything),
                            other => bail!("unknown backend {other} (ref, everything)"),
                        })
                        .collect::<anyhow::Result<_>>()?
                }
                "--no-peers" => o.peers = false,
                "--fleet-bin" => o.fleet_bin = Some(PathBuf::from(value("--fleet-bin")?)),
                "--baseline-bin" => o.baseline_bin = Some(PathBuf::from(value("--baseline-bin")?)),
                "--fleet-env" => {
                    let kv = value("--fleet-env")?;
                    let (k, v) = kv.split_once('=').context("--fleet-env takes KEY=VALUE")?;
                    o.fleet_env.push((k.to_owned(), v.to_owned()));
                }
                "--measure-secs" => {
                    o.timing.measure = Duration::from_secs_f64(value("--measure-secs")?.parse()?)
                }
                "--side-rounds" => o.side.rounds = value("--side-rounds")?.parse()?,
                "--warm-up-secs" => {
                    o.timing.warm_up = Duration::from_secs_f64(value("--warm-up-secs")?.parse()?)
                }
                other => bail!("unknown argument {other}"),
            }
        }
        o.client_threads = o.client_threads.max(1);
        Ok(o)
    }
}

// ---- What runs -------------------------------------------------------------------------------

/// Where everything is.
struct Paths {
    fleet: PathBuf,
    reference: PathBuf,
    /// `examples/bare_bridge.rs`, built beside this program.
    bridge: PathBuf,
    /// `bench-peers.env`, if `.ci/install-bench-peers` ran.
    peers: HashMap<String, String>,
    logs: PathBuf,
}

impl Paths {
    fn find(args: &BenchArgs) -> anyhow::Result<Paths> {
        let exe = std::env::current_exe()?;
        // target/<profile>/examples/bench_gateway
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .context("the example sits in <target>/<profile>/examples")?;
        let target_dir = profile_dir.parent().context("no target directory")?;
        let fleet = profile_dir.join("mcp-fleet");
        let reference = profile_dir.join("mcp-reference-server");
        for p in [&fleet, &reference] {
            if !p.is_file() {
                bail!(
                    "{} is missing: build it first (cargo build --release -p fleet-runtime -p mcp-reference-server)",
                    p.display()
                );
            }
        }
        let peers_dir = std::env::var_os("BENCH_PEERS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| target_dir.join("bench-peers"));
        let peers = read_env_file(&peers_dir.join("bench-peers.env")).unwrap_or_default();
        let logs = match &args.out {
            Some(out) => out.parent().unwrap_or(Path::new(".")).join("gateway-logs"),
            None => target_dir.join("bench/gateway-logs"),
        };
        std::fs::create_dir_all(&logs)?;
        Ok(Paths {
            fleet,
            reference,
            bridge: exe.with_file_name("bare_bridge"),
            peers,
            logs,
        })
    }

    fn peer(&self, key: &str) -> Option<PathBuf> {
        self.peers
            .get(key)
            .map(PathBuf::from)
            .filter(|p| p.exists())
    }

    fn log(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }
}

/// `KEY='value'` lines of a file written by `.ci/install-bench-peers`.
fn read_env_file(path: &Path) -> Option<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('\'').to_owned()))
            .collect(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Reference,
    Everything,
}

impl Backend {
    /// Its name in the gateway's config (tools are `NAME__echo`).
    fn name(self) -> &'static str {
        match self {
            Backend::Reference => "ref",
            Backend::Everything => "everything",
        }
    }

    /// The eras it speaks.
    fn eras(self) -> &'static [Era] {
        match self {
            Backend::Reference => &[Era::Legacy, Era::Modern],
            Backend::Everything => &[Era::Legacy],
        }
    }

    /// The command that runs it (the same for every target).
    fn command(self, paths: &Paths) -> anyhow::Result<(PathBuf, Vec<String>)> {
        match self {
            Backend::Reference => Ok((paths.reference.clone(), Vec::new())),
            Backend::Everything => {
                let node = paths.peer("BENCH_NODE");
                let js = paths.peer("BENCH_EVERYTHING_JS");
                match (node, js) {
                    (Some(node), Some(js)) => {
                        Ok((node, vec![js.display().to_string(), "stdio".into()]))
                    }
                    _ => bail!(
                        "server-everything is not installed: run .ci/install-bench-peers (it writes target/bench-peers/bench-peers.env)"
                    ),
                }
            }
        }
    }

    fn title(self, paths: &Paths) -> String {
        match self {
            Backend::Reference => {
                "the reference server (examples/reference-server, release build)".to_owned()
            }
            Backend::Everything => format!(
                "npm @modelcontextprotocol/server-everything {} (2025 era only)",
                paths
                    .peers
                    .get("BENCH_EVERYTHING_VERSION")
                    .map(String::as_str)
                    .unwrap_or("?")
            ),
        }
    }
}

/// The three peer proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Supergateway,
    NpmMcpProxy,
    PyMcpProxy,
}

const PEERS: [Peer; 3] = [Peer::Supergateway, Peer::NpmMcpProxy, Peer::PyMcpProxy];

impl Peer {
    fn label(self, paths: &Paths) -> String {
        let v = |k: &str| paths.peers.get(k).cloned().unwrap_or_else(|| "?".into());
        match self {
            Peer::Supergateway => format!("supergateway {}", v("BENCH_SUPERGATEWAY_VERSION")),
            Peer::NpmMcpProxy => format!("npm mcp-proxy {}", v("BENCH_NPM_MCP_PROXY_VERSION")),
            Peer::PyMcpProxy => format!("PyPI mcp-proxy {}", v("BENCH_PY_MCP_PROXY_VERSION")),
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Peer::Supergateway => "supergateway",
            Peer::NpmMcpProxy => "npm-mcp-proxy",
            Peer::PyMcpProxy => "pypi-mcp-proxy",
        }
    }

    /// The command line fronting `backend` on `port`, stateful Streamable HTTP at /mcp, with its
    /// quietest logging.
    fn command(
        self,
        paths: &Paths,
        backend: (&Path, &[String]),
        port: u16,
    ) -> anyhow::Result<tokio::process::Command> {
        let missing =
            || anyhow::anyhow!("not installed: run .ci/install-bench-peers (target/bench-peers)");
        let (program, args) = backend;
        Ok(match self {
            Peer::Supergateway => {
                let node = paths.peer("BENCH_NODE").ok_or_else(missing)?;
                let js = paths.peer("BENCH_SUPERGATEWAY_JS").ok_or_else(missing)?;
                // --stdio is one shell command line.
                let mut line = shell_quote(&program.display().to_string());
                for a in args {
                    line.push(' ');
                    line.push_str(&shell_quote(a));
                }
                let mut c = tokio::process::Command::new(node);
                c.arg(js)
                    .args(["--stdio", &line])
                    .args(["--outputTransport", "streamableHttp", "--stateful"])
                    .args(["--port", &port.to_string(), "--logLevel", "none"]);
                c
            }
            Peer::NpmMcpProxy => {
                let node = paths.peer("BENCH_NODE").ok_or_else(missing)?;
                let js = paths.peer("BENCH_NPM_MCP_PROXY_JS").ok_or_else(missing)?;
                let mut c = tokio::process::Command::new(node);
                c.arg(js)
                    .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--server", "stream", "--"])
                    .arg(program)
                    .args(args);
                c
            }
            Peer::PyMcpProxy => {
                let bin = paths.peer("BENCH_PY_MCP_PROXY").ok_or_else(missing)?;
                let mut c = tokio::process::Command::new(bin);
                c.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--log-level", "WARNING", "--"])
                    .arg(program)
                    .args(args);
                c
            }
        })
    }
}

fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-=:".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something accepts connections on `port`, or the process exits, or `limit`.
async fn wait_listening(guard: &mut ProcGuard, port: u16, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Some(why) = guard.exited() {
            bail!("{why}");
        }
        if Instant::now() >= deadline {
            bail!("nothing listens on port {port} after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- Results ---------------------------------------------------------------------------------

/// One row of a table: a target at one concurrency, measured or failed.
struct Row {
    target: String,
    era: Option<Era>,
    c: usize,
    /// Sessions opened before the cell (how long it took), or why the target failed.
    open_took: Option<Duration>,
    result: Result<CellResult, String>,
}

struct BackendRows {
    backend: Backend,
    rows: Vec<Row>,
    notes: Vec<String>,
    /// The side-by-side comparison, for the backend of the acceptance lines.
    side: Option<Result<side::SideBySide, String>>,
}

impl BackendRows {
    fn find(&self, target: &str, era: Era, c: usize) -> Option<&CellResult> {
        self.rows
            .iter()
            .find(|r| r.target == target && r.era == Some(era) && r.c == c)
            .and_then(|r| r.result.as_ref().ok())
    }
}

const DIRECT: &str = "direct stdio";
const FLEET: &str = "mcp-fleet";
/// `CallServer` asked of the server manager in this process.
const IN_MANAGER: &str = "in-process: server manager";
/// `ClientMessage` asked of the gateway actor in this process, in a 2025 session.
const IN_GATEWAY: &str = "in-process: gateway actor";
/// `ping` in a 2025 session, which the gateway answers itself: HTTP and the gateway's actors.
const PING: &str = "mcp-fleet, ping (no backend)";
/// `examples/bare_bridge.rs`: the least an HTTP-to-stdio bridge does, on mcp-fleet's HTTP stack.
const BRIDGE: &str = "bare bridge (floor)";
/// `--baseline-bin`: another mcp-fleet binary, in the side-by-side turns.
const BASELINE: &str = "mcp-fleet, baseline";

fn progress(msg: &str) {
    eprintln!("bench_gateway: {msg}");
}

async fn run(args: &BenchArgs, opts: &Options) -> anyhow::Result<Report> {
    let mut paths = Paths::find(args)?;
    if let Some(bin) = &opts.fleet_bin {
        paths.fleet = bin.clone();
    }
    // As `mcp-fleet run` is started (its default filter `info` unless `--fleet-env RUST_LOG=..`,
    // text lines, the Prometheus recorder), for the actors this program runs in-process; the
    // lines go to a file, not to our stderr.
    let log = std::fs::File::create(paths.log("in-process"))?;
    let directive = opts
        .fleet_env
        .iter()
        .find(|(k, _)| k == "RUST_LOG")
        .map(|(_, v)| v.as_str())
        .unwrap_or("info");
    let filter = tracing_subscriber::EnvFilter::new(directive);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(log))
        .try_init();
    let _prometheus = fleet_runtime::telemetry::install_prometheus()?;
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let started = Instant::now();
    let mut all = Vec::new();
    for &backend in &opts.backends {
        let peers = opts.peers && (args.mode == Mode::Full || backend == Backend::Everything);
        let peer_c: &[usize] = match args.mode {
            Mode::Quick => &[1, 16],
            Mode::Full => &CONCURRENCY,
        };
        all.push(bench_backend(&paths, opts, backend, peers, peer_c).await);
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    Ok(report(
        args,
        opts,
        &paths,
        &all,
        &load_before,
        &load_after,
        started.elapsed(),
    ))
}

async fn bench_backend(
    paths: &Paths,
    opts: &Options,
    backend: Backend,
    peers: bool,
    peer_c: &[usize],
) -> BackendRows {
    let mut out = BackendRows {
        backend,
        rows: Vec::new(),
        notes: Vec::new(),
        side: None,
    };
    let command = match backend.command(paths) {
        Ok(c) => c,
        Err(e) => {
            out.notes.push(format!("{}: {e:#}", backend.name()));
            for t in [DIRECT, FLEET] {
                out.rows.push(Row {
                    target: t.into(),
                    era: None,
                    c: 0,
                    open_took: None,
                    result: Err(format!("{e:#}")),
                });
            }
            return out;
        }
    };

    // Direct stdio, one process per era (a process speaks one era).
    for &era in backend.eras() {
        let name = format!("direct-{}-{}", backend.name(), era.label());
        progress(&format!("{name}: starting"));
        match StdioBackend::start(&name, &command.0, &command.1, era, &paths.log(&name)).await {
            Ok(b) => {
                for c in CONCURRENCY {
                    let sessions = (0..c).map(|_| Session::Stdio(b.clone())).collect();
                    let watch = Watch {
                        process: b.pid,
                        tree_root: b.pid,
                    };
                    let r = load::run_cell(sessions, opts.timing, Some(watch)).await;
                    progress(&format!("{name} C={c}: {:.0}/s", r.rps()));
                    out.rows.push(Row {
                        target: DIRECT.into(),
                        era: Some(era),
                        c,
                        open_took: None,
                        result: Ok(r),
                    });
                }
                b.stop().await;
            }
            Err(e) => out.rows.push(Row {
                target: DIRECT.into(),
                era: Some(era),
                c: 0,
                open_took: None,
                result: Err(format!("{e:#}")),
            }),
        }
    }

    // The same call asked in-process of the actors, without HTTP.
    progress(&format!("in-process-{}: starting", backend.name()));
    match phases::InProcess::start(backend.name(), &command.0, &command.1).await {
        Ok(fleet) => {
            procs::tree(std::process::id());
            let me = std::process::id();
            let watch = Watch {
                process: me,
                tree_root: me,
            };
            let manager = Arc::new(phases::ManagerCaller {
                manager: fleet.fleet.server_manager.clone(),
                server: fleet.server.clone(),
            });
            for c in [1, DECIDING_C] {
                let sessions = (0..c).map(|_| Session::Manager(manager.clone())).collect();
                let r = load::run_cell(sessions, opts.timing, Some(watch)).await;
                progress(&format!("{IN_MANAGER} C={c}: {:.0}/s", r.rps()));
                out.rows.push(Row {
                    target: IN_MANAGER.into(),
                    era: Some(Era::Legacy),
                    c,
                    open_took: None,
                    result: Ok(r),
                });
            }
            for c in [1, DECIDING_C] {
                let tool = format!("{}__echo", backend.name());
                let opened = futures::future::join_all((0..c).map(|_| {
                    phases::GatewayCaller::open(fleet.fleet.gateway.clone(), tool.clone())
                }))
                .await;
                let sessions: anyhow::Result<Vec<Session>> = opened
                    .into_iter()
                    .map(|s| s.map(|s| Session::Gateway(Box::new(s))))
                    .collect();
                let result = match sessions {
                    Ok(sessions) => {
                        let r = load::run_cell(sessions, opts.timing, Some(watch)).await;
                        progress(&format!("{IN_GATEWAY} C={c}: {:.0}/s", r.rps()));
                        Ok(r)
                    }
                    Err(e) => Err(format!("{e:#}")),
                };
                out.rows.push(Row {
                    target: IN_GATEWAY.into(),
                    era: Some(Era::Legacy),
                    c,
                    open_took: None,
                    result,
                });
            }
            fleet.stop().await;
        }
        Err(e) => out.rows.push(Row {
            target: IN_MANAGER.into(),
            era: None,
            c: 0,
            open_took: None,
            result: Err(format!("{e:#}")),
        }),
    }

    // The gateway.
    let name = format!("mcp-fleet-{}", backend.name());
    match start_fleet(paths, &paths.fleet, opts, backend, &command, &name).await {
        Ok((guard, port, took)) => {
            out.notes.push(format!(
                "mcp-fleet ({}) was ready with `{}__echo` listed {} after its start.",
                backend.name(),
                backend.name(),
                fmt_duration(took)
            ));
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let tool = format!("{}__echo", backend.name());
            let watch = Watch {
                process: guard.pid(),
                tree_root: guard.pid(),
            };
            for era in [Era::Legacy, Era::Modern] {
                for c in CONCURRENCY {
                    let row = http_cell(opts, FLEET, addr, era, &tool, c, watch, false).await;
                    out.rows.push(row);
                }
            }
            for c in [1, DECIDING_C] {
                let row = http_cell(opts, PING, addr, Era::Legacy, &tool, c, watch, true).await;
                out.rows.push(row);
            }
            guard.stop(Duration::from_secs(10)).await;
        }
        Err(e) => out.rows.push(Row {
            target: FLEET.into(),
            era: None,
            c: 0,
            open_took: None,
            result: Err(format!("{e:#}")),
        }),
    }

    // The floor: the bare bridge, 2025-11-25 sessions.
    progress(&format!("bare-bridge-{}: starting", backend.name()));
    match start_bridge(paths, &command, &format!("bare-bridge-{}", backend.name())).await {
        Ok((guard, port)) => {
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let watch = Watch {
                process: guard.pid(),
                tree_root: guard.pid(),
            };
            for c in CONCURRENCY {
                let row = http_cell(opts, BRIDGE, addr, Era::Legacy, "echo", c, watch, false).await;
                out.rows.push(row);
            }
            guard.stop(Duration::from_secs(5)).await;
        }
        Err(e) => out.rows.push(Row {
            target: BRIDGE.into(),
            era: Some(Era::Legacy),
            c: 0,
            open_took: None,
            result: Err(format!("{e:#}")),
        }),
    }

    // The peers.
    if peers {
        for peer in PEERS {
            let label = peer.label(paths);
            let name = format!("{}-{}", peer.slug(), backend.name());
            progress(&format!("{name}: starting"));
            match start_peer(paths, peer, &command, &name).await {
                Ok((guard, port)) => {
                    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
                    let watch = Watch {
                        process: guard.pid(),
                        tree_root: guard.pid(),
                    };
                    for &c in peer_c {
                        let row =
                            http_cell(opts, &label, addr, Era::Legacy, "echo", c, watch, false)
                                .await;
                        out.rows.push(row);
                    }
                    guard.stop(Duration::from_secs(5)).await;
                }
                Err(e) => out.rows.push(Row {
                    target: label,
                    era: Some(Era::Legacy),
                    c: 0,
                    open_took: None,
                    result: Err(format!("{e:#}")),
                }),
            }
        }
    }

    // Direct stdio, mcp-fleet, the bridge and the peers side by side, for the acceptance lines.
    if backend == Backend::Everything && opts.side.rounds > 0 {
        let r = side::run(paths, opts, backend, &command, opts.side, peers).await;
        if let Err(e) = &r {
            progress(&format!("side by side: {e:#}"));
        }
        out.side = Some(r.map_err(|e| format!("{e:#}")));
    }
    out
}

/// Opens `c` sessions at `addr` and runs one cell (of `ping`s instead of echoes if `ping`).
#[allow(clippy::too_many_arguments)]
async fn http_cell(
    opts: &Options,
    target: &str,
    addr: SocketAddr,
    era: Era,
    tool: &str,
    c: usize,
    watch: Watch,
    ping: bool,
) -> Row {
    let t0 = Instant::now();
    let sessions = match open_sessions(opts, addr, era, tool, c).await {
        Ok(sessions) => sessions,
        Err(e) => {
            let f = format!("{e:#}");
            progress(&format!("{target} {} C={c}: {f}", era.label()));
            return Row {
                target: target.into(),
                era: Some(era),
                c,
                open_took: None,
                result: Err(f),
            };
        }
    };
    let open_took = t0.elapsed();
    let sessions = sessions
        .into_iter()
        .map(|mut s| {
            if ping {
                s.ping_instead();
            }
            Session::Http(Box::new(s))
        })
        .collect();
    let r = load::run_cell(sessions, opts.timing, Some(watch)).await;
    progress(&format!(
        "{target} {} C={c}: {:.0}/s, p50 {}, errors {}",
        era.label(),
        r.rps(),
        fmt_duration(r.latencies.quantile(0.5)),
        r.errors
    ));
    Row {
        target: target.into(),
        era: Some(era),
        c,
        open_took: Some(open_took),
        result: Ok(r),
    }
}

/// Opens `c` sessions of `era` at `addr` at once (120 s at most); if any fails, closes the
/// others and returns the first failure.
async fn open_sessions(
    opts: &Options,
    addr: SocketAddr,
    era: Era,
    tool: &str,
    c: usize,
) -> anyhow::Result<Vec<HttpSession>> {
    let opening = futures::future::join_all(
        (0..c).map(|_| HttpSession::open(opts.client, addr, "/mcp", era, tool)),
    );
    let Ok(opened) = tokio::time::timeout(Duration::from_secs(120), opening).await else {
        bail!("{c} sessions not opened within 120 s");
    };
    let mut sessions = Vec::new();
    let mut failure = None;
    for s in opened {
        match s {
            Ok(s) => sessions.push(s),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        None => Ok(sessions),
        Some(e) => {
            futures::future::join_all(sessions.into_iter().map(HttpSession::close)).await;
            Err(e.context("opening a session"))
        }
    }
}

/// `mcp-fleet run` with a config of exactly `backend`, as process `name` (its log and config
/// file are named after it); returns once `BACKEND__echo` is listed.
async fn start_fleet(
    paths: &Paths,
    bin: &Path,
    opts: &Options,
    backend: Backend,
    command: &(PathBuf, Vec<String>),
    name: &str,
) -> anyhow::Result<(ProcGuard, u16, Duration)> {
    let config = paths.logs.join(format!("{name}.json"));
    let text = serde_json::json!({
        "mcpServers": { backend.name(): { "command": command.0, "args": command.1 } }
    });
    std::fs::write(&config, text.to_string())?;
    let port = free_port()?;
    let mut c = tokio::process::Command::new(bin);
    c.args(["run", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdin(std::process::Stdio::null());
    c.env_remove("RUST_LOG");
    c.envs(opts.fleet_env.iter().map(|(k, v)| (k, v)));
    progress(&format!("{name}: starting"));
    let t0 = Instant::now();
    let mut guard = ProcGuard::spawn(name, c, Some(&paths.log(name)))?;
    wait_listening(&mut guard, port, Duration::from_secs(30)).await?;
    // Listed through the gateway: a 2026-07-28 tools/list until NAME__echo is there.
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut conn = Conn::connect(ClientKind::Raw, addr, "/mcp").await?;
    let want = format!("\"{}__echo\"", backend.name());
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = conn
            .post(
                &[
                    ("mcp-protocol-version", mcp::MODERN),
                    ("mcp-method", "tools/list"),
                ],
                body.as_bytes(),
            )
            .await;
        if r.is_ok_and(|r| String::from_utf8_lossy(&r.body).contains(&want)) {
            break;
        }
        if let Some(why) = guard.exited() {
            bail!("{why}; see {}", paths.log(name).display());
        }
        if Instant::now() >= deadline {
            bail!(
                "{want} not listed after 60 s; see {}",
                paths.log(name).display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((guard, port, t0.elapsed()))
}

/// mcp-fleet beside the `--baseline-bin` build, round by round: what it adds to the baseline's
/// p50 at C=1, and its requests/s over the baseline's at the deciding C.
fn beside_baseline(sb: &side::SideBySide) -> Option<String> {
    sb.find(BASELINE, 1)?;
    let p50 = sb
        .p50_over(FLEET, BASELINE, 1)
        .map(|(d, (lo, med, hi))| {
            format!("p50 at C=1 {d:+.0} µs (per round {lo:+.0} / {med:+.0} / {hi:+.0} µs, min / median / max)")
        })
        .unwrap_or_else(|| "p50 at C=1 not measured".into());
    let rps = sb
        .ratio(FLEET, BASELINE, DECIDING_C)
        .map(|(r, (lo, med, hi))| {
            format!(
                "requests/s at C={DECIDING_C} {r:.2}× (per round {lo:.2} / {med:.2} / {hi:.2}×)"
            )
        })
        .unwrap_or_else(|| format!("requests/s at C={DECIDING_C} not measured"));
    Some(format!("mcp-fleet beside the {BASELINE}: {p50}; {rps}."))
}

/// `bare_bridge` fronting `command` on a free port.
async fn start_bridge(
    paths: &Paths,
    command: &(PathBuf, Vec<String>),
    name: &str,
) -> anyhow::Result<(ProcGuard, u16)> {
    if !paths.bridge.is_file() {
        bail!(
            "{} is missing: build it (cargo build --release -p fleet-examples --examples)",
            paths.bridge.display()
        );
    }
    let port = free_port()?;
    let mut c = tokio::process::Command::new(&paths.bridge);
    c.args(["--listen", &format!("127.0.0.1:{port}"), "--"])
        .arg(&command.0)
        .args(&command.1)
        .stdin(std::process::Stdio::null());
    let mut guard = ProcGuard::spawn(name, c, Some(&paths.log(name)))?;
    wait_listening(&mut guard, port, Duration::from_secs(30))
        .await
        .with_context(|| format!("see {}", paths.log(name).display()))?;
    Ok((guard, port))
}

async fn start_peer(
    paths: &Paths,
    peer: Peer,
    command: &(PathBuf, Vec<String>),
    name: &str,
) -> anyhow::Result<(ProcGuard, u16)> {
    let port = free_port()?;
    let mut c = peer.command(paths, (&command.0, &command.1), port)?;
    c.stdin(std::process::Stdio::null());
    let mut guard = ProcGuard::spawn(name, c, Some(&paths.log(name)))?;
    wait_listening(&mut guard, port, Duration::from_secs(30))
        .await
        .with_context(|| format!("see {}", paths.log(name).display()))?;
    Ok((guard, port))
}

// ---- The report ------------------------------------------------------------------------------

fn pct(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

fn report(
    args: &BenchArgs,
    opts: &Options,
    paths: &Paths,
    all: &[BackendRows],
    load_before: &str,
    load_after: &str,
    took: Duration,
) -> Report {
    let mut report = Report::new(
        "Gateway: requests/s and latency through mcp-fleet, direct stdio and peer proxies",
    );
    let load = |s: &str| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    report.notes.push(format!(
        "Each cell: C client sessions (C = 1 is sequential) calling `tools/call echo` in a loop, a {} warm-up then a {} measured window; requests/s counts the answers completed in the window, latencies the calls started in it. Every answer is checked (id, result, echoed text); anything else, a timeout ({:?}) included, is an error. Mode {}; whole run {:.0} s; load average (1, 5, 15 min) {} before, {} after.",
        fmt_duration(opts.timing.warm_up),
        fmt_duration(opts.timing.measure),
        opts.timing.call_timeout,
        match args.mode {
            Mode::Quick => "quick",
            Mode::Full => "full",
        },
        took.as_secs_f64(),
        load(load_before),
        load(load_after),
    ));
    report.notes.push(format!(
        "Client: this program, Rust, {} worker threads, one keep-alive HTTP/1.1 connection per session ({}). Direct stdio: the backend process alone, C requests in flight on its stdin/stdout (ids matched), after the era's handshake; it is the floor a proxy is measured against. The client runs on the same 2-core machine as what it measures; its own CPU is the last column.",
        opts.client_threads,
        match opts.client {
            ClientKind::Raw => "a minimal hand-written client",
            ClientKind::Reqwest => "reqwest 0.12",
        }
    ));
    report.notes.push(
        "mcp-fleet: the release `mcp-fleet run` with a config of exactly that one server, default options (one tokio worker thread) and log filter, on a free 127.0.0.1 port; 2025-11-25 sessions (initialize, notifications/initialized, then `Mcp-Session-Id`) and 2026-07-28 stateless requests (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `_meta`). The gateway speaks to the reference server in 2026-07-28 (it discovers it) and to server-everything in 2025-11-25, whatever the client's era. CPU is a fraction of one core over the window (CPU seconds / wall seconds); \"CPU µs/request\" is the process's CPU time over the window divided by the requests completed in it; RSS is at the window's end. The rows \"in-process: server manager\" and \"in-process: gateway actor\" ask the same call of the actors in this program's own process (`Fleet::start` with default options, the binary's log filter, Prometheus recorder and allocator; no HTTP): `CallServer` of the server manager, and `ClientMessage` of the gateway actor in a 2025 session; their CPU columns are this whole process, load client included. The rows \"mcp-fleet, ping (no backend)\" send `ping` in 2025-11-25 sessions, which the gateway answers itself: the cost of HTTP and of the gateway's own actors, without the server manager and the backend. \"process\" is the proxy's own process (for mcp-fleet: mcp-fleet without its backend); \"tree\" is it with every descendant (backends included), summed from /proc. \"vs direct\" divides by direct stdio at the same C (same client era when measured, else 2025-11-25).".to_owned(),
    );
    report.notes.push(format!(
        "{BRIDGE}: `examples/bare_bridge.rs`, the least an HTTP-to-stdio MCP bridge does, on mcp-fleet's own stack (axum on hyper, tokio with one worker thread, jemalloc), 2025-11-25 sessions: it answers `initialize` with the backend's own result and a new session id, checks each request's session, swaps the request's id for one of its own on the way to the backend's stdin and back, and passes every other byte of the message through. It has none of mcp-fleet's actors, supervision, catalog and tool names, metrics, cancellation, progress or HTTP checks. It is what any such bridge costs on this machine: mcp-fleet's own share is the difference between its rows and these."
    ));
    report.notes.push(
        "Peers: 2025-11-25 sessions only (npm mcp-proxy 6.7 also offers 2026-07-28, not measured here), stateful Streamable HTTP at /mcp, their quietest logging: supergateway `--stdio CMD --outputTransport streamableHttp --stateful` (it starts one backend process per session, so its tree grows with C; it listens on every interface, having no host option, and the benchmark only connects to 127.0.0.1), npm mcp-proxy `--host 127.0.0.1 --server stream -- CMD` and PyPI mcp-proxy `--host 127.0.0.1 -- CMD` (each one backend process shared by every session). All run on the machine's node and python, with the backend command the other targets use.".to_owned(),
    );
    if opts.fleet_bin.is_some() || !opts.fleet_env.is_empty() {
        report.notes.push(format!(
            "Not the default mcp-fleet: binary {}, environment {:?}.",
            paths.fleet.display(),
            opts.fleet_env
        ));
    }
    if let Some(bin) = &opts.baseline_bin {
        report.notes.push(format!(
            "{BASELINE}: the mcp-fleet binary {}, measured side by side only, as mcp-fleet is (same options and environment).",
            bin.display()
        ));
    }
    let cols = [
        "target",
        "era",
        "C",
        "requests/s",
        "vs direct",
        "p50",
        "p99",
        "p999",
        "errors",
        "CPU (process)",
        "CPU µs/request",
        "RSS (process)",
        "CPU (tree)",
        "RSS (tree, processes)",
        "client CPU",
    ];
    for b in all {
        let mut t = Table::new(format!("Backend: {}", b.backend.title(paths)), &cols);
        for r in &b.rows {
            let era = r.era.map(Era::label).unwrap_or("-").to_owned();
            let c = if r.c == 0 {
                "-".into()
            } else {
                r.c.to_string()
            };
            match &r.result {
                Err(e) => {
                    let mut cells = vec![r.target.clone(), era, c, format!("failed: {e}")];
                    cells.resize(cols.len(), String::new());
                    t.row(cells);
                }
                Ok(x) => {
                    let direct = r.era.and_then(|era| {
                        b.find(DIRECT, era, r.c)
                            .or_else(|| b.find(DIRECT, Era::Legacy, r.c))
                    });
                    let ratio = match direct {
                        Some(d) if r.target != DIRECT && r.target != PING && d.rps() > 0.0 => {
                            format!("{:.2}×", x.rps() / d.rps())
                        }
                        _ => "-".into(),
                    };
                    let errors = match &x.first_error {
                        Some(e) => format!("{} ({})", x.errors, truncate(e, 80)),
                        None => x.errors.to_string(),
                    };
                    t.row(vec![
                        r.target.clone(),
                        era,
                        c,
                        format!("{:.0}", x.rps()),
                        ratio,
                        fmt_duration(x.latencies.quantile(0.5)),
                        fmt_duration(x.latencies.quantile(0.99)),
                        fmt_duration(x.latencies.quantile(0.999)),
                        errors,
                        pct(x.process_cpu),
                        match x.rps() {
                            r if r > 0.0 => format!("{:.0}", x.process_cpu * 1e6 / r),
                            _ => "-".into(),
                        },
                        fmt_bytes(x.process_rss as f64),
                        pct(x.tree_cpu),
                        format!("{} ({})", fmt_bytes(x.tree_rss as f64), x.tree_processes),
                        pct(x.client_cpu),
                    ]);
                }
            }
        }
        report.tables.push(t);
        for r in &b.rows {
            let Some(took) = r.open_took else { continue };
            if r.result.is_ok() && r.c > 1 && r.target != FLEET && r.target != PING {
                report.notes.push(format!(
                    "{} ({}): opening {} sessions took {}.",
                    r.target,
                    b.backend.name(),
                    r.c,
                    fmt_duration(took)
                ));
            }
        }
        report.notes.extend(b.notes.iter().cloned());
        match &b.side {
            Some(Ok(sb)) => {
                report.tables.push(sb.table(b.backend.name()));
                report.notes.push(format!(
                    "Side by side ({}): direct stdio, mcp-fleet, the {BRIDGE} and (at C={DECIDING_C} only) the peers run at once, each with its own backend process(es) and C sessions open, and take turns: after a first warm-up of {} each, in each of {} rounds each target runs a {} warm-up and a {} measured slice, the first target of a round rotating. The cells above run one target after another, minutes apart, while this machine's speed drifts by more than the lines' margins; turns a few seconds apart see the same machine, so the gateway's acceptance lines are decided here. \"Per round\" compares the slices of one round.",
                    b.backend.name(),
                    fmt_duration(sb.plan.first_warm_up),
                    sb.plan.rounds,
                    fmt_duration(sb.plan.slice.warm_up),
                    fmt_duration(sb.plan.slice.measure),
                ));
                report.notes.extend(sb.notes.iter().cloned());
                if let Some(note) = beside_baseline(sb) {
                    report.notes.push(note);
                }
            }
            Some(Err(e)) => report
                .notes
                .push(format!("Side by side ({}) failed: {e}", b.backend.name())),
            None => {}
        }
    }
    acceptance(&mut report, all);
    report
        .notes
        .push(format!("Logs of every process: {}.", paths.logs.display()));
    report
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn acceptance(report: &mut Report, all: &[BackendRows]) {
    let Some(b) = all.iter().find(|b| b.backend == Backend::Everything) else {
        report.accept(
            "server-everything through the gateway",
            false,
            "not measured (--backends without everything)",
        );
        return;
    };
    let legacy = Era::Legacy;

    let side = b.side.as_ref().and_then(|s| s.as_ref().ok());
    // Why a line falls back to the cells.
    let no_side = match &b.side {
        None => "not measured side by side (--side-rounds 0)",
        Some(Err(_)) => "the side-by-side comparison failed, see the notes",
        Some(Ok(_)) => "this line's targets are missing from the side-by-side table, see the notes",
    };

    // 1. At least 0.8× direct stdio.
    let mut figures = Vec::new();
    for era in [Era::Legacy, Era::Modern] {
        for c in CONCURRENCY {
            if let (Some(g), Some(d)) = (b.find(FLEET, era, c), b.find(DIRECT, legacy, c)) {
                figures.push(format!(
                    "{} C={c}: {:.0}/s vs {:.0}/s = {:.2}×",
                    era.label(),
                    g.rps(),
                    d.rps(),
                    g.rps() / d.rps().max(f64::MIN_POSITIVE)
                ));
            }
        }
    }
    let cells = format!("the cells of the table: {}", figures.join("; "));
    let side_ratio = side.and_then(|s| {
        let (r, (lo, _, hi)) = s.rps_ratio(FLEET, DECIDING_C)?;
        let (g, d) = (s.find(FLEET, DECIDING_C)?, s.find(DIRECT, DECIDING_C)?);
        let floor = s
            .rps_ratio(BRIDGE, DECIDING_C)
            .map(|(f, (flo, _, fhi))| format!("; the {BRIDGE}: {f:.2}× (per round {flo:.2}-{fhi:.2}×)"))
            .unwrap_or_default();
        Some((
            r,
            g.clean() && d.clean(),
            format!(
                "{r:.2}× side by side at C={DECIDING_C}, 2025-11-25: {:.0}/s vs {:.0}/s, per round {lo:.2}-{hi:.2}×{floor}. For comparison, {cells}",
                g.rps(),
                d.rps()
            ),
        ))
    });
    let (met, fig) = match side_ratio {
        Some((r, clean, fig)) => (r >= 0.8 && clean, fig),
        None => {
            let deciding = match (
                b.find(FLEET, legacy, DECIDING_C),
                b.find(DIRECT, legacy, DECIDING_C),
            ) {
                (Some(g), Some(d)) if d.rps() > 0.0 => {
                    Some((g.rps() / d.rps(), g.errors == 0 && d.errors == 0))
                }
                _ => None,
            };
            let floor = match (
                b.find(BRIDGE, legacy, DECIDING_C),
                b.find(DIRECT, legacy, DECIDING_C),
            ) {
                (Some(f), Some(d)) if d.rps() > 0.0 => format!(
                    ". In the same run, the {BRIDGE} at C={DECIDING_C}: {:.0}/s = {:.2}× direct stdio",
                    f.rps(),
                    f.rps() / d.rps()
                ),
                _ => String::new(),
            };
            match deciding {
                Some((r, clean)) => (
                    r >= 0.8 && clean,
                    format!("{r:.2}× ({no_side}); {cells}{floor}"),
                ),
                None => (false, "not measured".into()),
            }
        }
    };
    report.accept(
        format!(
            "Through the gateway, server-everything serves at least 0.8× the requests/s of direct stdio (decided at C={DECIDING_C}, 2025-11-25 sessions)"
        ),
        met,
        fig,
    );

    // 2. At least 10× the best peer.
    let best_peer = b
        .rows
        .iter()
        .filter(|r| {
            ![FLEET, DIRECT, PING, IN_MANAGER, IN_GATEWAY, BRIDGE].contains(&r.target.as_str())
                && r.c == DECIDING_C
        })
        .filter_map(|r| r.result.as_ref().ok().map(|x| (r.target.as_str(), x.rps())))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let gateway = b.find(FLEET, legacy, DECIDING_C);
    let floor = b.find(BRIDGE, legacy, DECIDING_C);
    let cells = match (gateway, best_peer) {
        (Some(g), Some((name, p))) => Some((
            g.rps() / p.max(f64::MIN_POSITIVE),
            g.errors == 0,
            format!(
                "{:.0}/s vs {name} {p:.0}/s = {:.1}× (C={DECIDING_C}, 2025-11-25){}",
                g.rps(),
                g.rps() / p.max(f64::MIN_POSITIVE),
                floor
                    .map(|f| format!(
                        "; the {BRIDGE}: {:.0}/s = {:.1}×",
                        f.rps(),
                        f.rps() / p.max(f64::MIN_POSITIVE)
                    ))
                    .unwrap_or_default()
            ),
        )),
        _ => None,
    };
    let side_peer = side.and_then(|s| {
        let (peer, r, (lo, _, hi)) = s.over_best_peer()?;
        let g = s.find(FLEET, DECIDING_C)?;
        let floor = s
            .ratio(BRIDGE, &peer.name, DECIDING_C)
            .map(|(f, _)| format!("; the {BRIDGE}: {f:.1}×"))
            .unwrap_or_default();
        Some((
            r,
            g.clean(),
            format!(
                "{r:.1}× side by side at C={DECIDING_C}, 2025-11-25: {:.0}/s vs {} {:.0}/s, per round {lo:.1}-{hi:.1}×{floor}",
                g.rps(),
                peer.name,
                peer.rps()
            ),
        ))
    });
    let (met, fig) = match (side_peer, cells) {
        (Some((r, clean, fig)), cells) => (
            r >= 10.0 && clean,
            match cells {
                Some((_, _, c)) => format!("{fig}. For comparison, the cells of the table: {c}"),
                None => fig,
            },
        ),
        (None, Some((r, clean, c))) => (r >= 10.0 && clean, format!("{c} ({no_side})")),
        (None, None) => (false, "not measured (the gateway or every peer)".into()),
    };
    report.accept(
        "Through the gateway, server-everything serves at least 10× the requests/s of the best peer proxy measured in the same run",
        met,
        fig,
    );

    // 3. p50 overhead at C=1.
    let cells = match (b.find(FLEET, legacy, 1), b.find(DIRECT, legacy, 1)) {
        (Some(g), Some(d)) => {
            let dp = d.latencies.quantile(0.5);
            // p50 of `target` at C=1 and what it adds to direct stdio's.
            let p50 = |target: &str, era: Era| {
                b.find(target, era, 1).map(|x| {
                    let p = x.latencies.quantile(0.5);
                    let added = (p.as_secs_f64() - dp.as_secs_f64()) * 1e6;
                    format!("p50 {} ({added:+.0} µs)", fmt_duration(p))
                })
            };
            let gp = g.latencies.quantile(0.5);
            let added = gp.as_secs_f64() - dp.as_secs_f64();
            let modern = p50(FLEET, Era::Modern)
                .map(|p| format!("; 2026-07-28: {p}"))
                .unwrap_or_default();
            let floor = p50(BRIDGE, legacy)
                .map(|p| format!("; the {BRIDGE}: {p}"))
                .unwrap_or_default();
            Some((
                added,
                g.errors == 0
                    && d.errors == 0
                    && g.latencies.count() > 0
                    && d.latencies.count() > 0,
                format!(
                    "sequential (C=1), 2025-11-25: p50 {} through the gateway vs {} direct = {:+.0} µs{modern}{floor}",
                    fmt_duration(gp),
                    fmt_duration(dp),
                    added * 1e6
                ),
            ))
        }
        _ => None,
    };
    let side_added = side.and_then(|s| {
        let (added, (lo, med, hi)) = s.p50_added(FLEET, 1)?;
        let (g, d) = (s.find(FLEET, 1)?, s.find(DIRECT, 1)?);
        let floor = s
            .p50_added(BRIDGE, 1)
            .map(|(f, (flo, _, fhi))| {
                format!("; the {BRIDGE}: {f:+.0} µs (per round {flo:+.0} to {fhi:+.0} µs)")
            })
            .unwrap_or_default();
        Some((
            added,
            g.clean() && d.clean(),
            format!(
                "side by side at C=1, 2025-11-25: p50 {} through the gateway vs {} direct = {added:+.0} µs, per round {lo:+.0} / {med:+.0} / {hi:+.0} µs (min / median / max){floor}",
                fmt_duration(g.p50()),
                fmt_duration(d.p50()),
            ),
        ))
    });
    let (met, fig) = match (side_added, cells) {
        (Some((added, clean, fig)), cells) => (
            added <= 100.0 && clean,
            match cells {
                Some((_, _, c)) => format!("{fig}. For comparison, the cells of the table: {c}"),
                None => fig,
            },
        ),
        (None, Some((added, clean, c))) => (added <= 100e-6 && clean, format!("{c} ({no_side})")),
        (None, None) => (false, "not measured".into()),
    };
    report.accept(
        "The gateway adds at most 100 µs to p50 latency over direct stdio (server-everything)",
        met,
        fig,
    );
}
