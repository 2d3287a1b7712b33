//! Shared helpers of the server-manager tests: spawning the manager, reference-server specs,
//! and waiting for a condition with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use fleet_protocol::ServerSpec;
use fleet_server_manager::{ServerManager, ServerManagerArgs, ServerManagerConfig};
use kameo::actor::{ActorRef, Spawn};

pub fn config() -> ServerManagerConfig {
    ServerManagerConfig {
        request_timeout: Duration::from_secs(10),
        handshake_timeout: Duration::from_secs(20),
        discover_timeout: Duration::from_secs(5),
        stop_grace: Duration::from_millis(500),
        // Fail at once while a server restarts, unless a test asks for the wait.
        restart_wait: Duration::ZERO,
        ..ServerManagerConfig::default()
    }
}

pub fn spawn_manager(config: ServerManagerConfig) -> ActorRef<ServerManager> {
    ServerManager::spawn(ServerManagerArgs {
        config: std::sync::Arc::new(config),
        metrics: None,
        directory: None,
        memory: Default::default(),
    })
}

/// A restart policy with short delays for tests.
pub fn quick_restarts(budget: u32) -> fleet_protocol::RestartPolicy {
    fleet_protocol::RestartPolicy {
        mode: fleet_protocol::RestartMode::Always,
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_secs(2),
        jitter: 0.0,
        budget,
        window: Duration::from_secs(60),
        stable_after: Duration::from_secs(60),
    }
}

/// A spec running the reference server with the given flags.
pub fn reference(name: &str, flags: &[&str]) -> ServerSpec {
    let bin = mcp_reference_server::binary_path();
    let mut args = vec!["--name".to_string(), name.to_string()];
    args.extend(flags.iter().map(|s| s.to_string()));
    ServerSpec::stdio(name, bin.to_string_lossy(), args)
}

/// Waits until no process of the group `pgid` runs, failing after 5 s.
pub async fn wait_group_gone(pgid: u32) {
    wait_for(
        Duration::from_secs(5),
        "the process group to end",
        || async { (!group_alive(pgid)).then_some(()) },
    )
    .await;
}

/// Waits until `check` returns `Some`, polling every 20 ms, failing after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether any process of the process group `pgid` is still running (zombies, already dead and
/// waiting to be reaped by whoever adopted them, do not count).
pub fn group_alive(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

/// The last `max_lines` lines server `name` wrote to its stderr, as the manager keeps them.
pub async fn server_logs(
    manager: &ActorRef<ServerManager>,
    name: &str,
    max_lines: usize,
) -> Vec<String> {
    manager
        .ask(fleet_protocol::messages::server::GetServerLogs {
            name: name.into(),
            max_lines,
            after: None,
        })
        .await
        .unwrap()
        .lines
}

/// A stdio server in Python for answers no real server gives: for each request `m`, `answer`
/// (Python, with `m` and `out = {"jsonrpc": "2.0", "id": m["id"]}` in scope) sets `out`'s
/// `result` or `error`, and `out` is written. Notifications get nothing.
pub fn python_script(answer: &str) -> String {
    let body: String = answer.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "import json, sys\n\
         for line in sys.stdin:\n    \
         m = json.loads(line)\n    \
         if \"id\" not in m or \"method\" not in m:\n        continue\n    \
         out = {{\"jsonrpc\": \"2.0\", \"id\": m[\"id\"]}}\n\
         {body}    \
         print(json.dumps(out), flush=True)\n"
    )
}

/// [`python_script`] run as server `name`.
pub fn python_server(name: &str, answer: &str) -> ServerSpec {
    ServerSpec::stdio(name, "python3", ["-c".to_string(), python_script(answer)])
}
