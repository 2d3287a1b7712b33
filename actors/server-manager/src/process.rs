//! The child process: spawning it in a process group of its own, reading its exit, and stopping it
//! in order (stdin closed, SIGTERM to the group, SIGKILL to the group).

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use fleet_protocol::ExitInfo;
use fleet_protocol::messages::server::StopMethod;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Spawns a stdio server: stdin, stdout and stderr piped, in a new process group (so a stop
/// reaches wrapper trees such as `sh -c` and `npx` whole), killed if the handle is dropped.
pub fn spawn_child(
    command: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&PathBuf>,
) -> std::io::Result<Child> {
    let mut cmd = Command::new(command);
    cmd.args(args)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.spawn()
}

pub fn exit_info(status: ExitStatus) -> ExitInfo {
    ExitInfo {
        code: status.code(),
        signal: status.signal(),
        at: SystemTime::now(),
    }
}

/// Sends `signal` to the child's process group. A group already gone is not an error.
pub fn signal_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(error) => tracing::warn!(pid, ?signal, %error, "could not signal process group"),
    }
}

/// Waits until the watch says the process exited, at most `limit`.
pub async fn wait_exit(
    exit: &mut watch::Receiver<Option<ExitInfo>>,
    limit: Duration,
) -> Option<ExitInfo> {
    let waited = tokio::time::timeout(limit, async {
        // The sender is gone only when the waiter task ended, which it does after sending.
        exit.wait_for(Option::is_some)
            .await
            .map(|v| v.clone())
            .ok()
            .flatten()
    })
    .await;
    match waited {
        Ok(Some(e)) => Some(e),
        Ok(None) => exit.borrow().clone(),
        Err(_) => None,
    }
}

/// The rest of a stop once stdin has been closed: wait `grace`, SIGTERM the group, wait `grace`,
/// SIGKILL the group, wait for the exit. Returns how it ended and how long it took.
pub async fn finish_stop(
    pid: u32,
    mut exit: watch::Receiver<Option<ExitInfo>>,
    grace: Duration,
) -> (StopMethod, Option<ExitInfo>, Duration) {
    let start = Instant::now();
    if let Some(e) = wait_exit(&mut exit, grace).await {
        // The leader exited on its own; anything it left in its group goes too.
        signal_group(pid, Signal::SIGKILL);
        return (StopMethod::StdinClosed, Some(e), start.elapsed());
    }
    signal_group(pid, Signal::SIGTERM);
    if let Some(e) = wait_exit(&mut exit, grace).await {
        signal_group(pid, Signal::SIGKILL);
        return (StopMethod::Terminated, Some(e), start.elapsed());
    }
    signal_group(pid, Signal::SIGKILL);
    // SIGKILL cannot be ignored; the bound only guards against a waiter that never reports.
    let e = wait_exit(&mut exit, Duration::from_secs(5)).await;
    (StopMethod::Killed, e, start.elapsed())
}
