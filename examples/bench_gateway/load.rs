//! One cell of the benchmark: C sessions, each calling `tools/call echo` in a loop for a warm-up
//! and then a measured window; latencies, errors, and the CPU and memory of the target's
//! processes over the window.

use std::sync::Arc;
use std::time::Duration;

use fleet_examples::bench::{Latencies, read_process};
use tokio::time::Instant;

use super::mcp::{HttpSession, StdioBackend};
use super::phases::{GatewayCaller, ManagerCaller};
use super::procs::{self, Usage};

/// A client session of a cell.
pub enum Session {
    Http(Box<HttpSession>),
    /// A slot of C in flight on one backend's stdio.
    Stdio(Arc<StdioBackend>),
    /// In-process: `CallServer` asked of the server manager.
    Manager(Arc<ManagerCaller>),
    /// In-process: `ClientMessage` asked of the gateway actor in a 2025 session.
    Gateway(Box<GatewayCaller>),
}

impl Session {
    async fn call(&mut self, msg: &str) -> anyhow::Result<()> {
        match self {
            Session::Http(s) => s.call_echo(msg).await,
            Session::Stdio(b) => b.call_echo(msg).await,
            Session::Manager(m) => m.call_echo(msg).await,
            Session::Gateway(g) => g.call_echo(msg).await,
        }
    }

    async fn reset(&mut self) {
        if let Session::Http(s) = self {
            let _ = s.reset().await;
        }
    }

    pub async fn close(self) {
        if let Session::Http(s) = self {
            s.close().await;
        }
    }
}

/// How long a cell runs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warm_up: Duration,
    pub measure: Duration,
    pub call_timeout: Duration,
}

/// Whose resources a cell reads: the target's own process, and the root of its tree.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    pub process: u32,
    pub tree_root: u32,
}

/// What one cell measured.
pub struct CellResult {
    pub completed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub latencies: Latencies,
    pub window: Duration,
    /// The target process alone: CPU over the window (fraction of one core), RSS at its end.
    pub process_cpu: f64,
    /// The target process's CPU seconds over the window.
    pub process_cpu_seconds: f64,
    pub process_rss: u64,
    /// The target's whole process tree (its backends included).
    pub tree_cpu: f64,
    pub tree_rss: u64,
    pub tree_processes: usize,
    /// This benchmark process (the load client) over the window.
    pub client_cpu: f64,
}

impl CellResult {
    pub fn rps(&self) -> f64 {
        self.completed as f64 / self.window.as_secs_f64()
    }
}

struct WorkerResult {
    completed: u64,
    errors: u64,
    first_error: Option<String>,
    latencies: Latencies,
}

/// Runs `sessions` against the target for `timing`, then closes them.
pub async fn run_cell(sessions: Vec<Session>, timing: Timing, watch: Option<Watch>) -> CellResult {
    let (result, sessions) = run_slice(sessions, timing, watch).await;
    // Only after the readings (some peers stop a backend per ended session).
    futures::future::join_all(sessions.into_iter().map(Session::close)).await;
    result
}

/// Runs `sessions` against the target for `timing` and hands them back open, for the next
/// slice of an interleaved comparison.
pub async fn run_slice(
    sessions: Vec<Session>,
    timing: Timing,
    watch: Option<Watch>,
) -> (CellResult, Vec<Session>) {
    let start = Instant::now();
    let measure_start = start + timing.warm_up;
    let end = measure_start + timing.measure;
    let mut handles = Vec::new();
    for (w, mut session) in sessions.into_iter().enumerate() {
        handles.push(tokio::spawn(async move {
            let mut r = WorkerResult {
                completed: 0,
                errors: 0,
                first_error: None,
                latencies: Latencies::new(),
            };
            let mut n: u64 = 0;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                n += 1;
                let msg = format!("w{w}-{n}");
                let outcome = tokio::time::timeout(timing.call_timeout, session.call(&msg)).await;
                let done = Instant::now();
                let failed = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(format!("{e:#}")),
                    Err(_) => Some(format!("no answer within {:?}", timing.call_timeout)),
                };
                if let Some(e) = &failed {
                    session.reset().await;
                    if t0 >= measure_start {
                        r.errors += 1;
                        r.first_error.get_or_insert_with(|| e.clone());
                    }
                    // Do not spin on a target that fails at once.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                if t0 >= measure_start {
                    r.latencies.record(done - t0);
                }
                if done >= measure_start && done <= end {
                    r.completed += 1;
                }
            }
            (r, session)
        }));
    }

    // Readings at the window's start and end.
    tokio::time::sleep_until(measure_start).await;
    let pids: Vec<u32> = watch
        .map(|w| procs::tree(w.tree_root).iter().map(|p| p.pid).collect())
        .unwrap_or_default();
    let tree0 = procs::usage_of(&pids);
    let proc0 = watch
        .and_then(|w| read_process(w.process))
        .unwrap_or_default();
    let self0 = read_process(std::process::id()).unwrap_or_default();
    let t0 = Instant::now();
    tokio::time::sleep_until(end).await;
    let wall = t0.elapsed().as_secs_f64();
    let tree1 = procs::usage_of(&pids);
    let proc1 = watch
        .and_then(|w| read_process(w.process))
        .unwrap_or_default();
    let self1 = read_process(std::process::id()).unwrap_or_default();
    // Re-read the tree at the end, so processes started during the window are counted in RSS.
    let tree_end: Usage = watch
        .map(|w| {
            let pids: Vec<u32> = procs::tree(w.tree_root).iter().map(|p| p.pid).collect();
            procs::usage_of(&pids)
        })
        .unwrap_or_default();

    let mut sessions = Vec::new();
    let mut total = WorkerResult {
        completed: 0,
        errors: 0,
        first_error: None,
        latencies: Latencies::new(),
    };
    for h in handles {
        match h.await {
            Ok((r, session)) => {
                sessions.push(session);
                total.completed += r.completed;
                total.errors += r.errors;
                if total.first_error.is_none() {
                    total.first_error = r.first_error;
                }
                total.latencies.merge(&r.latencies);
            }
            Err(e) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert_with(|| format!("worker: {e}"));
            }
        }
    }
    let per_core = |a: f64, b: f64| {
        if wall > 0.0 {
            (b - a).max(0.0) / wall
        } else {
            0.0
        }
    };
    let result = CellResult {
        completed: total.completed,
        errors: total.errors,
        first_error: total.first_error,
        latencies: total.latencies,
        window: timing.measure,
        process_cpu: per_core(proc0.cpu_seconds, proc1.cpu_seconds),
        process_cpu_seconds: (proc1.cpu_seconds - proc0.cpu_seconds).max(0.0),
        process_rss: proc1.resident_bytes,
        tree_cpu: per_core(tree0.cpu_seconds, tree1.cpu_seconds),
        tree_rss: tree_end.rss_bytes,
        tree_processes: tree_end.processes,
        client_cpu: per_core(self0.cpu_seconds, self1.cpu_seconds),
    };
    (result, sessions)
}
