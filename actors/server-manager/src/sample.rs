//! Reading a server's process tree from `/proc` (through `procfs`): resident memory, CPU time,
//! open file descriptors and the number of processes, for the per-process metrics.
//!
//! A server launched as `npx ...` or `uvx ...` is a launcher whose child does the work, so the
//! whole tree under the server's pid counts, found through `/proc/PID/task/TID/children`.

use std::collections::HashSet;

use fleet_protocol::messages::metrics::ProcessSample;
use procfs::process::Process;

/// The most processes one sample visits, so a fork bomb cannot make sampling unbounded.
pub const MAX_TREE: usize = 4096;

/// Reads the tree rooted at `pid`; `None` if the root is gone or unreadable. Processes that end
/// while the tree is walked are skipped. `in_flight` is left at 0 for the caller to fill in.
pub fn sample_tree(pid: u32) -> Option<ProcessSample> {
    let ticks = procfs::ticks_per_second().max(1) as f64;
    let page = procfs::page_size();
    let mut sample = ProcessSample::default();
    let mut seen = HashSet::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if seen.len() >= MAX_TREE || !seen.insert(p) {
            continue;
        }
        let Ok(process) = Process::new(p as i32) else {
            if p == pid {
                return None;
            }
            continue;
        };
        let Ok(stat) = process.stat() else {
            if p == pid {
                return None;
            }
            continue;
        };
        sample.processes += 1;
        sample.resident_bytes = sample
            .resident_bytes
            .saturating_add(stat.rss.saturating_mul(page));
        // Reaped children's time is in cutime/cstime; live children count on their own.
        let own = stat.utime + stat.stime;
        let reaped = (stat.cutime.max(0) + stat.cstime.max(0)) as u64;
        sample.cpu_seconds += (own + reaped) as f64 / ticks;
        sample.open_fds = sample
            .open_fds
            .saturating_add(process.fd_count().unwrap_or(0) as u64);
        if let Ok(tasks) = process.tasks() {
            for task in tasks.flatten() {
                if let Ok(children) = task.children() {
                    todo.extend(children);
                }
            }
        }
    }
    Some(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let s = sample_tree(std::process::id()).expect("our own process is readable");
        assert!(s.processes >= 1);
        assert!(s.resident_bytes > 0);
        assert!(s.open_fds >= 3, "stdin, stdout and stderr at least: {s:?}");
    }

    #[test]
    fn a_missing_process_gives_none() {
        // Pids are at most 2^22 on Linux.
        assert_eq!(sample_tree(u32::MAX / 2), None);
    }
}
