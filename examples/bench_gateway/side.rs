//! Side by side: direct stdio, mcp-fleet and the bare bridge all running at once against the
//! same backend, measured in short slices that take turns, round after round, at C=1 and at the
//! deciding concurrency. The cells of the main table run one target after another, minutes
//! apart, and this machine's speed drifts over minutes by more than the acceptance lines'
//! margins; slices that take turns see the same drift, so their ratios and differences hold
//! still. The acceptance lines against direct stdio are decided here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use fleet_examples::bench::{Latencies, Table, fmt_duration};

use super::load::{self, Session, Timing, Watch};
use super::mcp::{Era, HttpSession, StdioBackend};
use super::{
    BRIDGE, Backend, DECIDING_C, DIRECT, FLEET, Options, Paths, progress, start_bridge, start_fleet,
};

/// How the comparison runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub rounds: usize,
    /// One target's turn: a warm-up (its caches are cold after the others' turns), then the
    /// measured slice.
    pub slice: Timing,
}

/// One target at one concurrency, over every round.
pub struct Target {
    pub name: &'static str,
    pub c: usize,
    /// Every call measured in every round.
    pub latencies: Latencies,
    pub completed: u64,
    pub measured: Duration,
    /// The target's own process, CPU seconds over its measured slices.
    pub cpu_seconds: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Per round: p50 and requests/s.
    pub rounds: Vec<(Duration, f64)>,
}

impl Target {
    fn new(name: &'static str, c: usize) -> Target {
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

    /// CPU time of the target's own process per completed request.
    pub fn cpu_per_request(&self) -> Option<Duration> {
        (self.completed > 0)
            .then(|| Duration::from_secs_f64(self.cpu_seconds / self.completed as f64))
    }
}

/// What the comparison measured: for each concurrency, direct stdio, mcp-fleet and the bridge.
pub struct SideBySide {
    pub plan: Plan,
    pub by_c: Vec<Vec<Target>>,
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

/// Starts the three targets on `backend` (2025-11-25 sessions), runs the rounds, stops them.
pub async fn run(
    paths: &Paths,
    opts: &Options,
    backend: Backend,
    command: &(PathBuf, Vec<String>),
    plan: Plan,
) -> anyhow::Result<SideBySide> {
    let era = Era::Legacy;
    let name = format!("side-direct-{}", backend.name());
    progress(&format!("side by side ({}): starting", backend.name()));
    let direct = StdioBackend::start(&name, &command.0, &command.1, era, &paths.log(&name)).await?;
    let fleet = start_fleet(paths, opts, backend, command).await;
    let bridge_name = format!("side-bare-bridge-{}", backend.name());
    let bridge = start_bridge(paths, command, &bridge_name).await;
    let result = match (&fleet, &bridge) {
        (Ok((fleet_guard, fleet_port, _)), Ok((bridge_guard, bridge_port))) => {
            let targets = [
                (
                    DIRECT,
                    Up::Direct(direct.clone()),
                    Watch {
                        process: direct.pid,
                        tree_root: direct.pid,
                    },
                ),
                (
                    FLEET,
                    Up::Http {
                        addr: ([127, 0, 0, 1], *fleet_port).into(),
                        tool: format!("{}__echo", backend.name()),
                    },
                    Watch {
                        process: fleet_guard.pid(),
                        tree_root: fleet_guard.pid(),
                    },
                ),
                (
                    BRIDGE,
                    Up::Http {
                        addr: ([127, 0, 0, 1], *bridge_port).into(),
                        tool: "echo".into(),
                    },
                    Watch {
                        process: bridge_guard.pid(),
                        tree_root: bridge_guard.pid(),
                    },
                ),
            ];
            let mut by_c = Vec::new();
            let mut failed = None;
            for c in [1, DECIDING_C] {
                match rounds(opts, &targets, c, plan).await {
                    Ok(t) => by_c.push(t),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                Some(e) => Err(e),
                None => Ok(SideBySide { plan, by_c }),
            }
        }
        (Err(e), _) | (_, Err(e)) => Err(anyhow::anyhow!("{e:#}")),
    };
    direct.stop().await;
    if let Ok((guard, _, _)) = fleet {
        guard.stop(Duration::from_secs(10)).await;
    }
    if let Ok((guard, _)) = bridge {
        guard.stop(Duration::from_secs(5)).await;
    }
    result
}

/// `plan.rounds` rounds at concurrency `c`; in round r the targets take their turns starting
/// with target r mod 3, so each is first, second and last equally often.
async fn rounds(
    opts: &Options,
    targets: &[(&'static str, Up, Watch)],
    c: usize,
    plan: Plan,
) -> anyhow::Result<Vec<Target>> {
    let mut open: Vec<Option<Vec<Session>>> = Vec::new();
    for (name, up, _) in targets {
        let sessions = match up {
            Up::Direct(b) => Ok((0..c).map(|_| Session::Stdio(b.clone())).collect()),
            Up::Http { addr, tool } => futures::future::join_all(
                (0..c).map(|_| HttpSession::open(opts.client, *addr, "/mcp", Era::Legacy, tool)),
            )
            .await
            .into_iter()
            .map(|s| s.map(|s| Session::Http(Box::new(s))))
            .collect::<anyhow::Result<Vec<_>>>(),
        };
        match sessions {
            Ok(s) => open.push(Some(s)),
            Err(e) => {
                close(open).await;
                return Err(e.context(format!("{name}: opening {c} sessions")));
            }
        }
    }
    let mut out: Vec<Target> = targets
        .iter()
        .map(|(name, _, _)| Target::new(name, c))
        .collect();
    let n = targets.len();
    for round in 0..plan.rounds {
        for turn in 0..n {
            let k = (round + turn) % n;
            let Some(sessions) = open[k].take() else {
                continue;
            };
            let (r, back) = load::run_slice(sessions, plan.slice, Some(targets[k].2)).await;
            open[k] = Some(back);
            let t = &mut out[k];
            t.latencies.merge(&r.latencies);
            t.completed += r.completed;
            t.measured += r.window;
            t.cpu_seconds += r.process_cpu * r.window.as_secs_f64();
            t.errors += r.errors;
            if t.first_error.is_none() {
                t.first_error = r.first_error.clone();
            }
            t.rounds.push((r.latencies.quantile(0.5), r.rps()));
        }
        progress(&format!(
            "side by side C={c}, round {}/{}: p50 {}",
            round + 1,
            plan.rounds,
            out.iter()
                .map(|t| format!(
                    "{} {}",
                    t.name,
                    fmt_duration(t.rounds.last().map_or(Duration::ZERO, |r| r.0))
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    close(open).await;
    Ok(out)
}

async fn close(open: Vec<Option<Vec<Session>>>) {
    futures::future::join_all(open.into_iter().flatten().flatten().map(Session::close)).await;
}

/// Smallest, median and largest of `v` (not empty).
fn spread(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some((v[0], v[v.len() / 2], v[v.len() - 1]))
}

impl SideBySide {
    /// What `target` adds to direct stdio's p50 at `c`, in µs: over every call, and per round
    /// (smallest, median, largest).
    pub fn p50_added(&self, target: &str, c: usize) -> Option<(f64, (f64, f64, f64))> {
        let (t, d) = (self.find(target, c)?, self.find(DIRECT, c)?);
        let us = |x: Duration| x.as_secs_f64() * 1e6;
        let rounds = t
            .rounds
            .iter()
            .zip(&d.rounds)
            .map(|(t, d)| us(t.0) - us(d.0))
            .collect();
        Some((us(t.p50()) - us(d.p50()), spread(rounds)?))
    }

    /// `target`'s requests/s over direct stdio's at `c`: over every slice, and per round.
    pub fn rps_ratio(&self, target: &str, c: usize) -> Option<(f64, (f64, f64, f64))> {
        let (t, d) = (self.find(target, c)?, self.find(DIRECT, c)?);
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
            let ratio = self.rps_ratio(x.name, x.c).filter(|_| !direct);
            let added = self.p50_added(x.name, x.c).filter(|_| !direct);
            let dash = || "-".to_owned();
            t.row(vec![
                x.name.to_owned(),
                x.c.to_string(),
                format!("{:.0}", x.rps()),
                ratio.map_or_else(dash, |r| format!("{:.2}×", r.0)),
                ratio.map_or_else(dash, |(_, (a, m, b))| format!("{a:.2} / {m:.2} / {b:.2}")),
                fmt_duration(x.p50()),
                added.map_or_else(dash, |a| format!("+{:.0} µs", a.0)),
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
