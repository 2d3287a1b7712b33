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

/// The variables a child gets from the manager's environment whatever its config says: what
/// `npx`, `uvx` and friends need to find programs, caches, certificates and proxies.
pub const BASE_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TMPDIR",
    "TZ",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_DATA_HOME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// The variable that tags every child with its fleet's instance id.
pub const INSTANCE_VAR: &str = "MCP_FLEET_INSTANCE";
/// The variable that tells a child's manager pid, so a sweep can tell a live fleet's child from
/// an orphan.
pub const MANAGER_PID_VAR: &str = "MCP_FLEET_MANAGER_PID";
/// The variable that tags a child with its launch (a random id per process started): what the
/// server's own processes share once some have left its process group.
pub const LAUNCH_VAR: &str = "MCP_FLEET_LAUNCH";

/// How a child is started, beyond its spec.
pub struct ChildEnv<'a> {
    pub instance_id: &'a str,
    pub inherit: &'a [String],
    /// A fresh [`new_launch_id`] for each process.
    pub launch_id: &'a str,
}

/// Spawns a stdio server: stdin, stdout and stderr piped, in a new process group (so a stop
/// reaches wrapper trees such as `sh -c` and `npx` whole), killed if the handle is dropped, and
/// on Linux killed by the kernel if the manager dies. Its environment is the base set, the
/// inherit list, its config's `env`, and the fleet's tag; not the manager's whole environment.
pub fn spawn_child(
    command: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&PathBuf>,
    child_env: &ChildEnv<'_>,
) -> std::io::Result<Child> {
    let mut cmd = Command::new(command);
    cmd.env_clear();
    for key in BASE_ENV
        .iter()
        .copied()
        .chain(child_env.inherit.iter().map(String::as_str))
    {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.envs(env)
        .env(INSTANCE_VAR, child_env.instance_id)
        .env(MANAGER_PID_VAR, std::process::id().to_string())
        .env(LAUNCH_VAR, child_env.launch_id);
    die_with_parent(&mut cmd);
    cmd.args(args)
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

/// Asks the kernel to SIGKILL the child when the thread that spawned it dies (Linux
/// `PR_SET_PDEATHSIG`), so a manager killed with SIGKILL leaves no direct child behind. Children
/// are spawned from tokio worker threads, which live as long as the runtime.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only makes the prctl system
    // call, which is async-signal-safe; it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: &mut Command) {}

/// A fresh random instance id (128 bits, hex). The randomness comes from std's per-`RandomState`
/// random keys: enough to tell fleet instances apart; not a secret.
pub fn new_instance_id() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

/// A fresh launch id (64 bits, hex), for [`LAUNCH_VAR`].
pub fn new_launch_id() -> String {
    format!("{:016x}", random_u64())
}

/// A random number from std's randomly keyed hasher.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A uniform sample in `[0, 1)`, for backoff jitter.
pub fn jitter_sample() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A process left behind by an earlier fleet instance that was killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub pid: u32,
    pub instance: String,
    pub command: String,
}

/// The fleet's tags in a process's environment.
#[derive(Default)]
struct Tags {
    instance: Option<String>,
    manager: Option<u32>,
    launch: Option<String>,
}

/// Every process that carries a fleet's tags (unreadable ones are not ours: skipped), with its
/// tags. Reads `/proc`; on a system without it, none.
fn tagged_processes() -> Vec<(u32, Tags)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let mut tags = Tags::default();
        for var in environ.split(|b| *b == 0) {
            let Some((name, value)) = std::str::from_utf8(var)
                .ok()
                .and_then(|v| v.split_once('='))
            else {
                continue;
            };
            match name {
                INSTANCE_VAR => tags.instance = Some(value.to_owned()),
                MANAGER_PID_VAR => tags.manager = value.parse().ok(),
                LAUNCH_VAR => tags.launch = Some(value.to_owned()),
                _ => {}
            }
        }
        if tags.instance.is_some() {
            found.push((pid, tags));
        }
    }
    found
}

/// SIGKILL to `pid` and to its process group if it leads another than ours: wrapper trees share
/// the group of the server they wrap.
fn kill_with_group(pid: u32) {
    let Ok(raw) = i32::try_from(pid) else { return };
    let _ = nix::sys::signal::kill(Pid::from_raw(raw), Signal::SIGKILL);
    if let Ok(pgid) = nix::unistd::getpgid(Some(Pid::from_raw(raw)))
        && pgid.as_raw() > 1
        && pgid != nix::unistd::getpgrp()
    {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
}

fn command_of(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Finds every process tagged by another fleet instance whose manager is gone, and kills it
/// with its process group. Processes of a live fleet (its manager pid still runs) are left
/// alone. Returns what it ended, for the caller to report.
pub fn sweep_orphans(own_instance: &str) -> Vec<Orphan> {
    let mut ended = Vec::new();
    for (pid, tags) in tagged_processes() {
        let Some(instance) = tags.instance else {
            continue;
        };
        if instance == own_instance || tags.manager.is_some_and(process_running) {
            continue;
        }
        let command = command_of(pid);
        kill_with_group(pid);
        ended.push(Orphan {
            pid,
            instance,
            command,
        });
    }
    ended
}

/// Kills every process of this fleet instance still running, with its process group: what the
/// servers left outside their process groups (`setsid`, a daemon), once every server has
/// stopped. `killed_groups` are the servers' own groups, already sent SIGKILL: their members
/// are on their way out, not left behind. Returns what it ended.
pub fn end_instance(own_instance: &str, killed_groups: &[u32]) -> Vec<Orphan> {
    end_where(
        |tags| tags.instance.as_deref() == Some(own_instance),
        killed_groups,
    )
}

/// Kills every process of one launch still running, with its process group: what a server's
/// process left outside its group (`group`, already sent SIGKILL). Returns what it ended.
pub fn end_launch(launch_id: &str, group: u32) -> Vec<Orphan> {
    end_where(|tags| tags.launch.as_deref() == Some(launch_id), &[group])
}

fn end_where(ours: impl Fn(&Tags) -> bool, killed_groups: &[u32]) -> Vec<Orphan> {
    let mut ended = Vec::new();
    for (pid, tags) in tagged_processes() {
        // Not ourselves, were we started by a fleet too (pid reuse aside, never tagged ours).
        if pid == std::process::id() || !ours(&tags) || !process_running(pid) {
            continue;
        }
        let group = i32::try_from(pid)
            .ok()
            .and_then(|raw| nix::unistd::getpgid(Some(Pid::from_raw(raw))).ok());
        if group.is_some_and(|g| killed_groups.contains(&(g.as_raw() as u32))) {
            continue;
        }
        let command = command_of(pid);
        kill_with_group(pid);
        ended.push(Orphan {
            pid,
            instance: tags.instance.unwrap_or_default(),
            command,
        });
    }
    // SIGKILL takes a moment: the caller may say they are gone once this returns.
    let deadline = Instant::now() + Duration::from_secs(2);
    while ended.iter().any(|o| process_running(o.pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    ended
}

/// Whether `pid` runs and is not a zombie.
pub fn process_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

pub fn exit_info(status: ExitStatus) -> ExitInfo {
    ExitInfo {
        code: status.code(),
        signal: status.signal(),
        at: SystemTime::now(),
        reason: None,
    }
}

/// Sends `signal` to the child's process group. A group already gone is not an error. A pid
/// of 0 or 1 is no child's (`killpg(0)` would signal our own group).
pub fn signal_group(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if raw <= 1 {
        return;
    }
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
    // Once the leader has exited, its exit watcher has killed the rest of its group.
    if let Some(e) = wait_exit(&mut exit, grace).await {
        return (StopMethod::StdinClosed, Some(e), start.elapsed());
    }
    signal_group(pid, Signal::SIGTERM);
    if let Some(e) = wait_exit(&mut exit, grace).await {
        return (StopMethod::Terminated, Some(e), start.elapsed());
    }
    signal_group(pid, Signal::SIGKILL);
    // SIGKILL cannot be ignored; the bound only guards against a waiter that never reports.
    let e = wait_exit(&mut exit, Duration::from_secs(5)).await;
    (StopMethod::Killed, e, start.elapsed())
}
