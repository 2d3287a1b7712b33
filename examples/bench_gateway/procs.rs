//! The processes the gateway benchmark starts: each in a process group of its own, killed with
//! its whole tree when its guard drops; readings of a process tree from /proc; and a final check
//! that nothing the benchmark started is still running.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Every process the benchmark saw in the trees it started: pid and start time (clock ticks
/// since boot), so a reused pid is not mistaken for one of ours.
static SEEN: Mutex<Vec<(u32, u64)>> = Mutex::new(Vec::new());

fn remember(procs: &[ProcInfo]) {
    let me = std::process::id();
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    // Never this process itself (a tree rooted here lists the backends it started in-process).
    for p in procs.iter().filter(|p| p.pid != me) {
        if !seen.contains(&(p.pid, p.start_time)) {
            seen.push((p.pid, p.start_time));
        }
    }
}

/// One process as /proc shows it.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub start_time: u64,
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    pub zombie: bool,
}

/// Every process on the machine (those that vanish while being read are skipped).
pub fn all_processes() -> Vec<ProcInfo> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let ticks = procfs::ticks_per_second() as f64;
    let page = procfs::page_size();
    all.flatten()
        .filter_map(|p| p.stat().ok())
        .map(|s| ProcInfo {
            pid: s.pid as u32,
            ppid: s.ppid as u32,
            start_time: s.starttime,
            rss_bytes: s.rss * page,
            cpu_seconds: (s.utime + s.stime) as f64 / ticks,
            zombie: s.state == 'Z',
        })
        .collect()
}

/// `root` and all its descendants (by parent pid), root first; empty if `root` is gone.
pub fn tree(root: u32) -> Vec<ProcInfo> {
    let all = all_processes();
    let mut children: HashMap<u32, Vec<&ProcInfo>> = HashMap::new();
    for p in &all {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut out = Vec::new();
    let Some(r) = all.iter().find(|p| p.pid == root) else {
        return out;
    };
    let mut stack = vec![r];
    let mut seen = HashSet::new();
    while let Some(p) = stack.pop() {
        if !seen.insert(p.pid) {
            continue;
        }
        out.push(p.clone());
        if let Some(c) = children.get(&p.pid) {
            stack.extend(c.iter().copied());
        }
    }
    remember(&out);
    out
}

/// CPU seconds and resident bytes of a set of processes, summed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
    pub processes: usize,
}

/// Sums the live processes among `pids` (as they are now).
pub fn usage_of(pids: &[u32]) -> Usage {
    let mut u = Usage::default();
    for p in all_processes() {
        if pids.contains(&p.pid) && !p.zombie {
            u.cpu_seconds += p.cpu_seconds;
            u.rss_bytes += p.rss_bytes;
            u.processes += 1;
        }
    }
    u
}

/// A started process, in a process group of its own. Dropping the guard SIGKILLs the group and
/// every process of its tree (some peers start their children in groups of their own).
pub struct ProcGuard {
    pub name: String,
    child: Option<Child>,
    pid: u32,
}

impl ProcGuard {
    /// Starts `command` (its own process group; stdin null unless set by the caller).
    pub fn spawn(
        name: &str,
        mut command: Command,
        log: Option<&Path>,
    ) -> anyhow::Result<ProcGuard> {
        command.process_group(0).kill_on_drop(true);
        match log {
            Some(path) => {
                let f = std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                command
                    .stdout(Stdio::from(f.try_clone()?))
                    .stderr(Stdio::from(f));
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let pid = child.id().context("the child has no pid")?;
        let guard = ProcGuard {
            name: name.to_owned(),
            child: Some(child),
            pid,
        };
        tree(pid);
        Ok(guard)
    }

    /// Wraps a child the caller configured (pipes); it must have been given its own group.
    pub fn adopt(name: &str, child: Child) -> anyhow::Result<ProcGuard> {
        let pid = child.id().context("the child has no pid")?;
        tree(pid);
        Ok(ProcGuard {
            name: name.to_owned(),
            child: Some(child),
            pid,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `Some(reason)` if the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited ({status})", self.name)),
            Ok(None) => None,
            Err(e) => Some(format!("{}: {e}", self.name)),
        }
    }

    /// SIGTERM to the leader, up to `grace` for it to exit, then everything is killed as on drop.
    pub async fn stop(mut self, grace: Duration) {
        let procs = tree(self.pid);
        if let Some(child) = self.child.as_mut() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
            let _ = tokio::time::timeout(grace, child.wait()).await;
        }
        kill_all(self.pid, &procs);
        if let Some(mut child) = self.child.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
    }
}

fn kill_all(pgid: u32, procs: &[ProcInfo]) {
    let _ = killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL);
    for p in procs {
        let _ = kill(Pid::from_raw(p.pid as i32), Signal::SIGKILL);
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        let procs = tree(self.pid);
        kill_all(self.pid, &procs);
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            // Reap it if it is already gone; tokio reaps it in the background otherwise.
            let _ = child.try_wait();
        }
    }
}

/// The processes this benchmark started (or saw in their trees) that still run, waiting up to
/// `limit` for them to go.
pub async fn leftovers(limit: Duration) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let seen = SEEN.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let alive: Vec<u32> = all_processes()
            .into_iter()
            .filter(|p| !p.zombie && seen.contains(&(p.pid, p.start_time)))
            .map(|p| p.pid)
            .collect();
        if alive.is_empty() || tokio::time::Instant::now() >= deadline {
            return alive;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills whatever [`leftovers`] found (the last resort of the benchmark's own clean-up).
pub fn kill_pids(pids: &[u32]) {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
    }
}

/// How many processes were seen in the trees of everything started.
pub fn seen_count() -> usize {
    SEEN.lock().unwrap_or_else(|e| e.into_inner()).len()
}
