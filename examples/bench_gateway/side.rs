//! Side by side: direct stdio, mcp-fleet, the bare bridge and the peer proxies all running at
//! once against the same backend, measured in short slices that take turns, round after round,
//! at C=1 (without the peers) and at the deciding concurrency. The cells of the main table run
//! one target after another, minutes apart, and this machine's speed drifts over minutes by more
//! than the acceptance lines' margins. Slices a few seconds apart share whatever drift there is,
//! so it moves every target alike, and the figures over all rounds compare them on the same
//! machine. Single rounds still vary (the per-round columns show by how much). The gateway's
//! acceptance lines are decided here. With `--baseline-bin`, a second mcp-fleet takes its turns
//! too, and the two are compared round by round.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fleet_examples::bench::{Latencies, Table, fmt_duration};

use super::load::{self, Session, Timing, Watch};
use super::mcp::{Era, StdioBackend};
use super::procs::ProcGuard;
use super::{
    BASELINE, BRIDGE, Backend, DECIDING_C, DIRECT, FLEET, Options, PEERS, Paths, open_sessions,
    progress, start_bridge, start_fleet, start_peer,
};

/// How the comparison runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub rounds: usize,
    /// One target's turn: a warm-up (its caches are cold after the others' turns), then the
    /// measured slice.
    pub slice: Timing,
    /// Before the first round, each target's calls for this long, not measured.
    pub first_warm_up: Duration,
}

/// One target at one concurrency, over every round.
pub struct Target {
    pub name: String,
    pub c: usize,
    /// Every call measured in every round.
    pub latencies: Latencies,
    pub completed: u64,
    pub measured: Duration,
    /// The target's own process, CPU seconds over its measured slices.
    pub cpu_seconds: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Per round: p50 (none if no call was measured) and requests/s.
    pub rounds: Vec<(Option<Duration>, f64)>,
}

impl Target {
    fn new(name: String, c: usize) -> Target {
        Target {
            name,
            c,
            latencies: Latencies::new(),
            completed: 0,
            measured: Duration::ZERO,
            cpu_seconds: 0.0,
            errors: 0,
            first_error: None,
            rounds: Vec::new(),
        }
    }

    pub fn rps(&self) -> f64 {
        match self.measured.as_secs_f64() {
            s if s > 0.0 => self.completed as f64 / s,
            _ => 0.0,
        }
    }

    pub fn p50(&self) -> Duration {
        self.latencies.quantile(0.5)
    }

    /// Every call succeeded, and some were measured: its figures can decide a line.
    pub fn clean(&self) -> bool {
        self.errors == 0 && self.latencies.count() > 0
    }

    /// CPU time of the target's own process per completed request.
    pub fn cpu_per_request(&self) -> Option<Duration> {
        (self.completed > 0)
            .then(|| Duration::from_secs_f64(self.cpu_seconds / self.completed as f64))
    }
}

/// What the comparison measured: for each concurrency, direct stdio, mcp-fleet, the bridge and
/// (at the deciding C) the peers.
pub struct SideBySide {
    pub plan: Plan,
    pub by_c: Vec<Vec<Target>>,
    /// What was left out, and why.
    pub notes: Vec<String>,
}

impl SideBySide {
    pub fn find(&self, name: &str, c: usize) -> Option<&Target> {
        self.by_c
            .iter()
            .flatten()
            .find(|t| t.name == name && t.c == c)
    }
}

/// A target that is up: how to open its sessions, and whose process to read.
enum Up {
    Direct(std::sync::Arc<StdioBackend>),
    Http { addr: SocketAddr, tool: String },
}

/// A target that is up, with what reads and stops it.
struct Running {
    name: String,
    up: Up,
    watch: Watch,
    guard: Option<ProcGuard>,
    /// Measured at C=1 too (the peers are measured at the deciding C only).
    at_one: bool,
}

impl Running {
    fn http(name: String, guard: ProcGuard, port: u16, tool: String, at_one: bool) -> Running {
        let pid = guard.pid();
        Running {
            name,
            up: Up::Http {
                addr: ([127, 0, 0, 1], port).into(),
                tool,
            },
            watch: Watch {
                process: pid,
                tree_root: pid,
            },
            guard: Some(guard),
            at_one,
        }
    }
}

/// Starts direct stdio, mcp-fleet, the bridge and (if `peers`) the peer proxies on `backend`
/// (2025-11-25 sessions), runs the rounds at C=1 and the deciding C, and stops them all.
pub async fn run(
    paths: &Paths,
    opts: &Options,
    backend: Backend,
    command: &(PathBuf, Vec<String>),
    plan: Plan,
    peers: bool,
) -> anyhow::Result<SideBySide> {
    let name = format!("side-direct-{}", backend.name());
    progress(&format!("side by side ({}): starting", backend.name()));
    let direct = StdioBackend::start(
        &name,
        &command.0,
        &command.1,
        Era::Legacy,
        &paths.log(&name),
    )
    .await?;
    let mut running = vec![Running {
        name: DIRECT.into(),
        up: Up::Direct(direct.clone()),
        watch: Watch {
            process: direct.pid,
            tree_root: direct.pid,
        },
        guard: None,
        at_one: true,
    }];
    let mut notes = Vec::new();
    let started = start_all(
        paths,
        opts,
        backend,
        command,
        peers,
        &mut running,
        &mut notes,
    )
    .await;
    let result = match started {
        Ok(()) => {
            let mut by_c = Vec::new();
            for c in [1, DECIDING_C] {
                let targets: Vec<&Running> =
                    running.iter().filter(|r| c != 1 || r.at_one).collect();
                match rounds(opts, &targets, c, plan, &mut notes).await {
                    Ok(t) => by_c.push(t),
                    Err(e) => notes.push(format!("side by side at C={c} failed: {e:#}")),
                }
            }
            if by_c.is_empty() {
                Err(anyhow::anyhow!("{}", notes.join("; ")))
            } else {
                Ok(SideBySide { plan, by_c, notes })
            }
        }
        Err(e) => Err(e),
    };
    direct.stop().await;
    for r in running {
        if let Some(g) = r.guard {
            g.stop(Duration::from_secs(10)).await;
        }
    }
    result
}

/// Starts mcp-fleet and the bridge (either failing fails the comparison) and the peers (one
/// failing is left out, with a note).
async fn start_all(
    paths: &Paths,
    opts: &Options,
    backend: Backend,
    command: &(PathBuf, Vec<String>),
    peers: bool,
    running: &mut Vec<Running>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let name = format!("side-mcp-fleet-{}", backend.name());
    let (guard, port, _) = start_fleet(paths, &paths.fleet, opts, backend, command, &name).await?;
    let tool = format!("{}__echo", backend.name());
    running.push(Running::http(FLEET.into(), guard, port, tool.clone(), true));
    if let Some(bin) = &opts.baseline_bin {
        let name = format!("side-mcp-fleet-baseline-{}", backend.name());
        let (guard, port, _) = start_fleet(paths, bin, opts, backend, command, &name).await?;
        running.push(Running::http(BASELINE.into(), guard, port, tool, true));
    }
    let name = format!("side-bare-bridge-{}", backend.name());
    let (guard, port) = start_bridge(paths, command, &name).await?;
    running.push(Running::http(
        BRIDGE.into(),
        guard,
        port,
        "echo".into(),
        true,
    ));
    if peers {
        for peer in PEERS {
            let label = peer.label(paths);
            let name = format!("side-{}-{}", peer.slug(), backend.name());
            match start_peer(paths, peer, command, &name).await {
                Ok((guard, port)) => {
                    running.push(Running::http(label, guard, port, "echo".into(), false))
                }
                Err(e) => notes.push(format!("{label} did not start, left out: {e:#}")),
            }
        }
    }
    Ok(())
}

/// `plan.rounds` rounds at concurrency `c`. In round r the targets take their turns in a cycle
/// starting with target r mod n, so when the rounds are a multiple of n (6 and 12 rounds, 3 or
/// 6 targets) each takes every place in the order equally often. A peer whose sessions do not
/// open is left out with a note; any other target failing fails the rounds.
async fn rounds(
    opts: &Options,
    targets: &[&Running],
    c: usize,
    plan: Plan,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Target>> {
    let mut open: Vec<Option<Vec<Session>>> = Vec::new();
    for Running {
        name, up, at_one, ..
    } in targets.iter().copied()
    {
        let sessions = match up {
            Up::Direct(b) => Ok((0..c).map(|_| Session::Stdio(b.clone())).collect()),
            Up::Http { addr, tool } => open_sessions(opts, *addr, Era::Legacy, tool, c)
                .await
                .map(|v| v.into_iter().map(|s| Session::Http(Box::new(s))).collect()),
        };
        match sessions {
            Ok(s) => open.push(Some(s)),
            Err(e) if !at_one => {
                notes.push(format!(
                    "{name} left out at C={c}: opening {c} sessions: {e:#}"
                ));
                open.push(None);
            }
            Err(e) => {
                close(open).await;
                return Err(e.context(format!("{name}: opening {c} sessions")));
            }
        }
    }
    let mut out: Vec<Target> = targets
        .iter()
        .map(|r| Target::new(r.name.clone(), c))
        .collect();
    // A longer warm-up first: the node and Python proxies are still compiling their hot paths
    // for seconds after their start, and the comparison is with each at its best.
    for (k, target) in targets.iter().enumerate() {
        if let Some(sessions) = open[k].take() {
            let warm = Timing {
                warm_up: plan.first_warm_up,
                measure: Duration::ZERO,
                ..plan.slice
            };
            open[k] = Some(load::run_slice(sessions, warm, Some(target.watch)).await.1);
        }
    }
    let n = targets.len();
    for round in 0..plan.rounds {
        for turn in 0..n {
            let k = (round + turn) % n;
            let Some(sessions) = open[k].take() else {
                continue;
            };
            let (r, back) = load::run_slice(sessions, plan.slice, Some(targets[k].watch)).await;
            open[k] = Some(back);
            let t = &mut out[k];
            t.latencies.merge(&r.latencies);
            t.completed += r.completed;
            t.measured += r.window;
            t.cpu_seconds += r.process_cpu_seconds;
            t.errors += r.errors;
            if t.first_error.is_none() {
                t.first_error = r.first_error.clone();
            }
            let p50 = (r.latencies.count() > 0).then(|| r.latencies.quantile(0.5));
            t.rounds.push((p50, r.rps()));
        }
        progress(&format!(
            "side by side C={c}, round {}/{}: p50 {}",
            round + 1,
            plan.rounds,
            out.iter()
                .filter_map(|t| Some(format!("{} {}", t.name, fmt_duration(t.rounds.last()?.0?))))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    close(open).await;
    // Leave out the targets that never ran (a peer whose sessions did not open).
    Ok(out.into_iter().filter(|t| !t.rounds.is_empty()).collect())
}

async fn close(open: Vec<Option<Vec<Session>>>) {
    futures::future::join_all(open.into_iter().flatten().flatten().map(Session::close)).await;
}

/// Smallest, median and largest of `v`; none if it is empty.
fn spread(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = match n {
        0 => return None,
        n if n % 2 == 0 => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        n => v[n / 2],
    };
    Some((v[0], median, v[n - 1]))
}

impl SideBySide {
    /// What `target` adds to direct stdio's p50 at `c`, in µs: over every call, and per round
    /// (smallest, median, largest; rounds where either measured no call are left out). None if
    /// either measured no call at all.
    pub fn p50_added(&self, target: &str, c: usize) -> Option<(f64, (f64, f64, f64))> {
        self.p50_over(target, DIRECT, c)
    }

    /// `target`'s p50 less `base`'s at `c`, in µs, as [`SideBySide::p50_added`] is.
    pub fn p50_over(&self, target: &str, base: &str, c: usize) -> Option<(f64, (f64, f64, f64))> {
        let (t, d) = (self.find(target, c)?, self.find(base, c)?);
        if t.latencies.count() == 0 || d.latencies.count() == 0 {
            return None;
        }
        let us = |x: Duration| x.as_secs_f64() * 1e6;
        let rounds = t
            .rounds
            .iter()
            .zip(&d.rounds)
            .filter_map(|(t, d)| Some(us(t.0?) - us(d.0?)))
            .collect();
        Some((us(t.p50()) - us(d.p50()), spread(rounds)?))
    }

    /// `target`'s requests/s over direct stdio's at `c`: over every slice, and per round.
    pub fn rps_ratio(&self, target: &str, c: usize) -> Option<(f64, (f64, f64, f64))> {
        self.ratio(target, DIRECT, c)
    }

    /// The peer proxy that served the most requests/s at the deciding C, and mcp-fleet's
    /// requests/s over its: over every slice, and per round.
    pub fn over_best_peer(&self) -> Option<(&Target, f64, (f64, f64, f64))> {
        let best = self
            .by_c
            .iter()
            .flatten()
            .filter(|t| {
                t.c == DECIDING_C && ![DIRECT, FLEET, BRIDGE, BASELINE].contains(&t.name.as_str())
            })
            .max_by(|a, b| a.rps().total_cmp(&b.rps()))?;
        let (r, rounds) = self.ratio(FLEET, &best.name, DECIDING_C)?;
        Some((best, r, rounds))
    }

    /// `target`'s requests/s over `base`'s at `c`: over every slice, and per round.
    pub fn ratio(&self, target: &str, base: &str, c: usize) -> Option<(f64, (f64, f64, f64))> {
        let (t, d) = (self.find(target, c)?, self.find(base, c)?);
        let rounds = t
            .rounds
            .iter()
            .zip(&d.rounds)
            .filter(|(_, d)| d.1 > 0.0)
            .map(|(t, d)| t.1 / d.1)
            .collect();
        (d.rps() > 0.0).then_some(())?;
        Some((t.rps() / d.rps(), spread(rounds)?))
    }

    pub fn table(&self, backend: &str) -> Table {
        let cols = [
            "target",
            "C",
            "requests/s",
            "vs direct",
            "vs direct, per round (min / median / max)",
            "p50",
            "p50 over direct",
            "p50 over direct, per round (min / median / max)",
            "p99",
            "errors",
            "CPU µs/request (process)",
        ];
        let mut t = Table::new(
            format!(
                "Side by side: {backend}, 2025-11-25 sessions, {} rounds of {} slices",
                self.plan.rounds,
                fmt_duration(self.plan.slice.measure)
            ),
            &cols,
        );
        for x in self.by_c.iter().flatten() {
            let direct = x.name == DIRECT;
            let ratio = self.rps_ratio(&x.name, x.c).filter(|_| !direct);
            let added = self.p50_added(&x.name, x.c).filter(|_| !direct);
            let dash = || "-".to_owned();
            t.row(vec![
                x.name.clone(),
                x.c.to_string(),
                format!("{:.0}", x.rps()),
                ratio.map_or_else(dash, |r| format!("{:.2}×", r.0)),
                ratio.map_or_else(dash, |(_, (a, m, b))| format!("{a:.2} / {m:.2} / {b:.2}")),
                fmt_duration(x.p50()),
                added.map_or_else(dash, |a| format!("{:+.0} µs", a.0)),
                added.map_or_else(dash, |(_, (a, m, b))| {
                    format!("{a:+.0} / {m:+.0} / {b:+.0} µs")
                }),
                fmt_duration(x.latencies.quantile(0.99)),
                match &x.first_error {
                    Some(e) => format!("{} ({})", x.errors, super::truncate(e, 80)),
                    None => x.errors.to_string(),
                },
                x.cpu_per_request()
                    .map_or_else(dash, |d| format!("{:.0}", d.as_secs_f64() * 1e6)),
            ]);
        }
        t
    }
}
