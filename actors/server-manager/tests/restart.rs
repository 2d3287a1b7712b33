//! Crashed servers come back: the restart policy in the real actor with real processes, the
//! crash loop, requests during a restart, the children's environment and the orphan sweep.

mod common;

use std::time::Duration;

use common::{config, quick_restarts, reference, spawn_manager, wait_for};
use fleet_protocol::messages::health::HealthChanged;
use fleet_protocol::messages::server::{
    CallServer, GetServerStatus, LaunchServer, RestartServer, StopAllServers, StopServer,
};
use fleet_protocol::{FleetError, ServerState, ServerStatus};
use fleet_server_manager::{INSTANCE_VAR, ServerManager, ServerManagerConfig, sweep_orphans};
use kameo::actor::ActorRef;
use serde_json::json;

fn echo(server: &str, message: &str) -> CallServer {
    CallServer::new(
        server,
        "tools/call",
        Some(json!({"name": "echo", "arguments": {"message": message}})),
    )
}

async fn status(manager: &ActorRef<ServerManager>, name: &str) -> ServerStatus {
    manager
        .ask(GetServerStatus { name: name.into() })
        .await
        .unwrap()
}

/// Asks for a restart in a task of its own, to be awaited later.
fn restart_in_background(
    manager: &ActorRef<ServerManager>,
    name: &str,
) -> tokio::task::JoinHandle<Result<ServerStatus, kameo::error::SendError<RestartServer, FleetError>>>
{
    let (manager, name) = (manager.clone(), name.to_string());
    tokio::spawn(async move { manager.ask(RestartServer { name }).await })
}

#[tokio::test]
async fn a_server_that_crashes_three_times_comes_back_each_time_with_growing_delays() {
    let manager = spawn_manager(config());
    // Answers the handshake's two requests and one call, then exits with code 3.
    let spec =
        reference("phoenix", &["--crash-after-requests", "3"]).with_restart(quick_restarts(5));
    let first = manager.ask(LaunchServer { spec }).await.unwrap();
    let mut pid = first.pid.unwrap();
    let mut delays = Vec::new();
    for round in 0..3 {
        manager
            .ask(echo("phoenix", &format!("r{round}")))
            .await
            .unwrap();
        let restarting = wait_for(Duration::from_secs(5), "the crash to be seen", || async {
            let s = status(&manager, "phoenix").await;
            (s.state == ServerState::Restarting).then_some(s)
        })
        .await;
        let exit = restarting.last_exit.clone().unwrap();
        assert_eq!(exit.code, Some(3));
        let due = restarting.next_restart_at.unwrap();
        delays.push(due.duration_since(exit.at).unwrap_or_default());
        let ready = wait_for(Duration::from_secs(10), "the restart", || async {
            let s = status(&manager, "phoenix").await;
            (s.state == ServerState::Ready && s.pid != Some(pid)).then_some(s)
        })
        .await;
        assert_eq!(ready.restarts, round + 1);
        pid = ready.pid.unwrap();
    }
    // 100 ms, 200 ms, 400 ms (no jitter), counted from a moment after the exit was stamped:
    // never less, and more only by how late the actor saw the exit (slack for a busy machine).
    for (d, nominal) in delays.iter().zip([100u64, 200, 400]) {
        let nominal = Duration::from_millis(nominal);
        assert!(
            *d >= nominal && *d <= nominal + Duration::from_millis(250),
            "delays {delays:?}"
        );
    }
    assert!(delays[0] < delays[2], "{delays:?}");
    let r = manager.ask(echo("phoenix", "back")).await.unwrap();
    assert_eq!(r.result["content"][0]["text"], "back");
    let s = status(&manager, "phoenix").await;
    assert_eq!(s.recent_exits.len(), 3);
    manager.ask(StopAllServers).await.unwrap();
}

#[tokio::test]
async fn a_server_that_always_crashes_at_start_reaches_crash_loop_while_others_serve() {
    let manager = spawn_manager(config());
    manager
        .ask(LaunchServer {
            spec: reference("steady", &[]),
        })
        .await
        .unwrap();
    let doomed = reference("doomed", &["--exit-at-start", "1"]).with_restart(quick_restarts(3));
    let launch = manager
        .ask(LaunchServer { spec: doomed })
        .await
        .unwrap_err();
    assert!(format!("{launch:?}").contains("ServerExited"), "{launch:?}");
    let failed = wait_for(Duration::from_secs(10), "the crash loop", || async {
        let s = status(&manager, "doomed").await;
        matches!(s.state, ServerState::Failed { .. }).then_some(s)
    })
    .await;
    let ServerState::Failed { reason } = &failed.state else {
        unreachable!()
    };
    assert!(
        reason.contains("crash loop") && reason.contains("exit code 1"),
        "{reason}"
    );
    assert_eq!(failed.restarts, 3, "exactly the budget of restarts");
    assert_eq!(failed.pid, None);
    // It stays down...
    let err = manager.ask(echo("doomed", "x")).await.unwrap_err();
    assert!(format!("{err:?}").contains("doomed"), "{err:?}");
    // ...while the other server serves throughout.
    let r = manager.ask(echo("steady", "fine")).await.unwrap();
    assert_eq!(r.result["content"][0]["text"], "fine");
    // Stopped on request, it is `Stopped`: no longer a failure that needs attention.
    manager
        .ask(fleet_protocol::messages::server::StopServer {
            name: "doomed".into(),
        })
        .await
        .unwrap();
    assert_eq!(status(&manager, "doomed").await.state, ServerState::Stopped);
    manager.ask(StopAllServers).await.unwrap();
}

/// A server that comes back from a crash but fails its handshake once (a registry download, a
/// slow start) is not given up on: that run counts as a failure, and the restart policy starts
/// it again within its budget.
#[tokio::test]
async fn a_handshake_that_fails_after_a_restart_is_retried_by_the_policy() {
    let manager = spawn_manager(config());
    let dir = std::env::temp_dir().join(format!("fleet-flaky-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let count = dir.join("starts");
    // Answers every request with an error: its handshake fails.
    let broken = common::python_script(
        r#"out["error"] = {"code": -32603, "message": "temporarily broken"}"#,
    );
    // Start 1 serves and crashes; start 2 is broken; start 3 serves.
    let script = format!(
        "n=$(cat '{count}' 2>/dev/null || echo 0); echo $((n+1)) > '{count}'
         if [ \"$n\" = 1 ]; then exec python3 -c '{broken}'; fi
         exec '{bin}' --name flaky --crash-after-requests 3",
        count = count.display(),
        bin = mcp_reference_server::binary_path().display(),
    );
    let spec = fleet_protocol::ServerSpec::stdio("flaky", "sh", ["-c".to_string(), script])
        .with_restart(quick_restarts(5));
    manager.ask(LaunchServer { spec }).await.unwrap();
    manager.ask(echo("flaky", "one")).await.unwrap();
    manager.ask(echo("flaky", "two")).await.unwrap_err();
    let back = wait_for(Duration::from_secs(20), "flaky ready again", || async {
        let s = status(&manager, "flaky").await;
        (s.state == ServerState::Ready && s.restarts == 2).then_some(s)
    })
    .await;
    assert_eq!(back.recent_exits.len(), 2, "{back:?}");
    // The broken run's exit says why mcp-fleet ended it.
    let reason = back.recent_exits[1].reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("handshake failed") && reason.contains("temporarily broken"),
        "{back:?}"
    );
    let r = manager.ask(echo("flaky", "three")).await.unwrap();
    assert_eq!(r.result["content"][0]["text"], "three");
    manager.ask(StopAllServers).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A launch whose handshake fails ends the process, and its exit says why, as the state does.
#[tokio::test]
async fn a_launch_whose_handshake_fails_says_why_in_the_exit() {
    let manager = spawn_manager(config());
    let broken = common::python_script(r#"out["error"] = {"code": -32603, "message": "broken"}"#);
    let spec = fleet_protocol::ServerSpec::stdio("broken", "python3", ["-c".to_string(), broken]);
    manager.ask(LaunchServer { spec }).await.unwrap_err();
    let exit = wait_for(Duration::from_secs(10), "the exit recorded", || async {
        status(&manager, "broken").await.last_exit
    })
    .await;
    let reason = exit.reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("handshake failed") && reason.contains("broken"),
        "{exit:?}"
    );
    manager.ask(StopAllServers).await.unwrap();
}

/// A server that comes back from a crash with a handshake that hangs, longer than the policy's
/// `stable_after`, is not taken for stable: its backoff and budget run on, to a crash loop.
#[tokio::test]
async fn a_hung_handshake_after_a_restart_does_not_reset_the_budget() {
    let manager = spawn_manager(fleet_server_manager::ServerManagerConfig {
        handshake_timeout: Duration::from_millis(1200),
        discover_timeout: Duration::from_millis(300),
        ..config()
    });
    let dir = std::env::temp_dir().join(format!("fleet-hung-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let count = dir.join("starts");
    // Start 1 serves and crashes; every later start reads nothing and answers nothing.
    let script = format!(
        "n=$(cat '{count}' 2>/dev/null || echo 0); echo $((n+1)) > '{count}'
         if [ \"$n\" != 0 ]; then exec sleep 100; fi
         exec '{bin}' --name hung --crash-after-requests 3",
        count = count.display(),
        bin = mcp_reference_server::binary_path().display(),
    );
    let policy = fleet_protocol::RestartPolicy {
        stable_after: Duration::from_millis(500),
        ..quick_restarts(2)
    };
    let spec = fleet_protocol::ServerSpec::stdio("hung", "sh", ["-c".to_string(), script])
        .with_restart(policy);
    manager.ask(LaunchServer { spec }).await.unwrap();
    manager.ask(echo("hung", "one")).await.unwrap();
    let failed = wait_for(Duration::from_secs(30), "hung in a crash loop", || async {
        let s = status(&manager, "hung").await;
        matches!(&s.state, ServerState::Failed { reason } if reason.contains("crash loop"))
            .then_some(s)
    })
    .await;
    assert_eq!(failed.restarts, 2, "{failed:?}");
    manager.ask(StopAllServers).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A restart asked for right after a stop wins, whichever of the two reaches the server's actor
/// first (the stop's ask is sent from a task of its own): the server is left running. Rounds
/// from a stopped server, whose restart does not wait for a process to stop and so can overtake
/// the stop most easily, and from a running one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_asked_right_after_a_stop_leaves_the_server_running() {
    let manager = spawn_manager(config());
    let spec = reference("r", &[]);
    manager.ask(LaunchServer { spec }).await.unwrap();
    for round in 0..60 {
        if round % 2 == 0 {
            manager.ask(StopServer { name: "r".into() }).await.unwrap();
        }
        let stop = manager
            .ask(StopServer { name: "r".into() })
            .enqueue()
            .await
            .unwrap();
        let restarted = manager.ask(RestartServer { name: "r".into() }).await;
        let stopped = stop.await.unwrap();
        let restarted = restarted.unwrap_or_else(|e| panic!("round {round}: {e}; {stopped:?}"));
        let now = status(&manager, "r").await;
        assert!(
            now.state == ServerState::Ready && now.pid == restarted.pid,
            "round {round}: {now:?} after {stopped:?}"
        );
    }
    let r = manager.ask(echo("r", "still")).await.unwrap();
    assert_eq!(r.result["content"][0]["text"], "still");
    manager.ask(StopAllServers).await.unwrap();
}

/// A health verdict names the process it was about: one about a process that has since been
/// replaced leaves the new one alone, while one about the current process kills it.
#[tokio::test]
async fn a_verdict_about_a_replaced_process_spares_its_successor() {
    let manager = spawn_manager(config());
    let spec = reference("h", &[]).with_restart(quick_restarts(5));
    let first = manager.ask(LaunchServer { spec }).await.unwrap();
    let again = manager
        .ask(RestartServer { name: "h".into() })
        .await
        .unwrap();
    assert_ne!(again.pid, first.pid);
    let verdict = |about: &ServerStatus| HealthChanged {
        server: "h".into(),
        healthy: false,
        consecutive_failures: 3,
        reason: Some("probe failed".into()),
        pid: about.pid,
        started_at: about.started_at,
    };
    manager.tell(verdict(&first)).await.unwrap();
    // The server's actor takes the call after the verdict: it still serves.
    let r = manager.ask(echo("h", "still")).await.unwrap();
    assert_eq!(r.result["content"][0]["text"], "still");
    assert_eq!(status(&manager, "h").await.pid, again.pid);
    manager.tell(verdict(&again)).await.unwrap();
    let replaced = wait_for(
        Duration::from_secs(10),
        "the unhealthy process replaced",
        || async {
            let s = status(&manager, "h").await;
            (s.state == ServerState::Ready && s.pid != again.pid && s.pid.is_some()).then_some(s)
        },
    )
    .await;
    // The status says why the process before it ended: mcp-fleet killed it, and what for.
    let exit = replaced.last_exit.expect("the killed process's exit");
    assert_eq!(exit.signal, Some(9), "{exit:?}");
    assert_eq!(
        exit.reason.as_deref(),
        Some("unhealthy: 3 probes failed in a row (probe failed)"),
        "{exit:?}"
    );
    manager.ask(StopAllServers).await.unwrap();
}

#[tokio::test]
async fn a_request_during_a_restart_waits_a_bounded_time() {
    let mut cfg = config();
    cfg.restart_wait = Duration::from_secs(5);
    let manager = spawn_manager(cfg);
    let spec = reference("slow", &["--crash-after-requests", "3"]).with_restart(quick_restarts(5));
    manager.ask(LaunchServer { spec }).await.unwrap();
    manager.ask(echo("slow", "one")).await.unwrap();
    wait_for(Duration::from_secs(5), "the restart to begin", || async {
        (status(&manager, "slow").await.state == ServerState::Restarting).then_some(())
    })
    .await;
    // Sent while the server is down: it waits for the new process and is answered.
    let r = manager.ask(echo("slow", "after")).await.unwrap();
    assert_eq!(r.result["content"][0]["text"], "after");

    // With no wait configured, the same request fails at once, naming the server.
    let manager = spawn_manager(config());
    let spec = reference("fast", &["--crash-after-requests", "3"]).with_restart(quick_restarts(5));
    manager.ask(LaunchServer { spec }).await.unwrap();
    manager.ask(echo("fast", "one")).await.unwrap();
    wait_for(Duration::from_secs(5), "the restart to begin", || async {
        (status(&manager, "fast").await.state == ServerState::Restarting).then_some(())
    })
    .await;
    let err = manager.ask(echo("fast", "now")).await.unwrap_err();
    let kameo::error::SendError::HandlerError(err) = err else {
        panic!("{err:?}")
    };
    assert!(matches!(err, FleetError::ServerExited { .. }), "{err:?}");
    assert!(err.to_string().contains("`fast` exited"), "{err}");
    manager.ask(StopAllServers).await.unwrap();
}

/// A server that closes its stdout and lives on can answer nothing more: the call in flight
/// fails at once rather than at its timeout, even with no health probe to notice, and the
/// process is replaced as after a crash.
#[tokio::test]
async fn a_server_that_closes_its_stdout_but_lives_on_is_replaced() {
    let manager = spawn_manager(config());
    let spec = common::python_server(
        "mute",
        r#"import os, time
if m["method"] == "initialize":
    out["result"] = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "mute", "version": "1"}}
elif m["method"] == "tools/list":
    out["result"] = {"tools": [{"name": "mute", "inputSchema": {"type": "object"}}]}
elif m["method"] == "tools/call":
    os.close(1)
    time.sleep(100)
else:
    out["error"] = {"code": -32601, "message": "no"}"#,
    )
    .with_restart(quick_restarts(3));
    manager.ask(LaunchServer { spec }).await.unwrap();
    let first = status(&manager, "mute").await.pid.unwrap();
    let call = CallServer::new(
        "mute",
        "tools/call",
        Some(json!({"name": "mute", "arguments": {}})),
    );
    let asked = std::time::Instant::now();
    let err = manager.ask(call).await.unwrap_err();
    // The request timeout is 10 s; the grace before the kill is 1 s.
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert!(format!("{err:?}").contains("mute"), "{err:?}");
    common::wait_group_gone(first).await;
    let back = wait_for(Duration::from_secs(20), "mute ready again", || async {
        let s = status(&manager, "mute").await;
        (s.state == ServerState::Ready && s.restarts == 1).then_some(s)
    })
    .await;
    assert_ne!(back.pid, Some(first));
    manager.ask(StopAllServers).await.unwrap();
}

#[tokio::test]
async fn children_get_a_minimal_tagged_environment() {
    let mut cfg = config();
    cfg.instance_id = "test-instance".into();
    cfg.inherit_env = vec!["CARGO_PKG_NAME".into()];
    let manager = spawn_manager(cfg);
    let spec = reference("env", &[]).with_env("FROM_CONFIG", "yes");
    let s = manager.ask(LaunchServer { spec }).await.unwrap();
    let environ = std::fs::read(format!("/proc/{}/environ", s.pid.unwrap())).unwrap();
    let vars: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let has = |prefix: &str| vars.iter().any(|v| v.starts_with(prefix));
    assert!(has("PATH="));
    assert!(has("FROM_CONFIG=yes"));
    assert!(has(&format!("{INSTANCE_VAR}=test-instance")));
    assert!(has("CARGO_PKG_NAME="), "the inherit list is honoured");
    // cargo sets CARGO_MANIFEST_DIR for this test process; the child must not see it.
    assert!(!has("CARGO_MANIFEST_DIR="), "{vars:?}");
    manager.ask(StopAllServers).await.unwrap();
}

#[tokio::test]
async fn the_sweep_ends_orphans_of_a_dead_fleet_and_spares_live_ones() {
    // A manager pid that is certainly dead: a process that has exited and been reaped.
    let dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    let mut dead = dead;
    dead.wait().unwrap();

    let spawn_tagged = |instance: &str, manager_pid: u32| {
        std::process::Command::new("sleep")
            .arg("60")
            .env(INSTANCE_VAR, instance)
            .env("MCP_FLEET_MANAGER_PID", manager_pid.to_string())
            .process_group(0)
            .spawn()
            .unwrap()
    };
    use std::os::unix::process::CommandExt as _;
    let mut orphan = spawn_tagged("old-instance", dead_pid);
    let mut live = spawn_tagged("other-live-instance", std::process::id());

    let ended = sweep_orphans("this-instance");
    let ended_pids: Vec<u32> = ended.iter().map(|o| o.pid).collect();
    assert!(ended_pids.contains(&orphan.id()), "{ended:?}");
    assert!(
        !ended_pids.contains(&live.id()),
        "a live fleet's child was swept"
    );
    let orphan_status = orphan.wait().unwrap();
    assert!(orphan_status.code().is_none(), "killed by a signal");
    let o = ended.iter().find(|o| o.pid == orphan.id()).unwrap();
    assert_eq!(o.instance, "old-instance");
    assert!(o.command.contains("sleep"), "{o:?}");
    live.kill().unwrap();
    live.wait().unwrap();
}

/// The pids written to `file`, one a line.
fn pids_in(file: &std::path::Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// A process a server starts in a session of its own (`setsid`) is out of its process group,
/// where the group kill cannot reach it. It ends with the server all the same: when the server
/// crashes (found by its launch tag) and when every server stops (by the instance's tag).
#[tokio::test]
async fn what_a_server_starts_outside_its_process_group_ends_with_it() {
    let manager = spawn_manager(config());
    let dir = std::env::temp_dir().join(format!("fleet-setsid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pids = dir.join("escaped");
    let script = format!(
        "setsid sleep 300 & echo $! >> '{pids}'; exec '{bin}' --name escape",
        pids = pids.display(),
        bin = mcp_reference_server::binary_path().display(),
    );
    let spec = fleet_protocol::ServerSpec::stdio("escape", "sh", ["-c".to_string(), script])
        .with_restart(quick_restarts(3));
    manager.ask(LaunchServer { spec }).await.unwrap();
    let leader = status(&manager, "escape").await.pid.unwrap();
    let first = wait_for(Duration::from_secs(5), "the first escaped pid", || async {
        pids_in(&pids).first().copied()
    })
    .await;
    assert!(fleet_server_manager::process_running(first));
    // `setsid` runs in the background child a moment after its pid is written.
    wait_for(
        Duration::from_secs(5),
        "it to leave the server's group",
        || async {
            let group =
                nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(first as i32))).ok()?;
            (group.as_raw() as u32 != leader).then_some(())
        },
    )
    .await;

    // A crash: the leader is killed from outside.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(leader as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(Duration::from_secs(20), "escape ready again", || async {
        let s = status(&manager, "escape").await;
        (s.state == ServerState::Ready && s.restarts == 1).then_some(())
    })
    .await;
    wait_for(
        Duration::from_secs(5),
        "the first escaped process gone",
        || async { (!fleet_server_manager::process_running(first)).then_some(()) },
    )
    .await;

    // Every server stopped: the second launch's escaped process goes too.
    let second = wait_for(Duration::from_secs(5), "the second escaped pid", || async {
        pids_in(&pids).get(1).copied()
    })
    .await;
    assert!(fleet_server_manager::process_running(second));
    manager.ask(StopAllServers).await.unwrap();
    assert!(
        !fleet_server_manager::process_running(second),
        "gone once StopAllServers has answered"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stop makes the restart under way unjoinable: a restart asked for after it starts anew
/// and ends with the server ready, instead of getting the stopped restart's failure.
#[tokio::test]
async fn a_restart_after_a_stop_does_not_join_the_one_before_it() {
    let manager = spawn_manager(config());
    manager
        .ask(LaunchServer {
            spec: reference("again", &["--slow-start-ms", "1000"]),
        })
        .await
        .unwrap();
    let first = status(&manager, "again").await.pid.unwrap();
    let one = restart_in_background(&manager, "again");
    wait_for(
        Duration::from_secs(10),
        "the next process started",
        || async {
            let s = status(&manager, "again").await;
            s.pid.filter(|pid| *pid != first).map(|_| ())
        },
    )
    .await;
    // In this order in the manager's mailbox: the stop, then another restart.
    manager
        .tell(fleet_protocol::messages::server::StopServer {
            name: "again".into(),
        })
        .await
        .unwrap();
    let three = manager
        .ask(RestartServer {
            name: "again".into(),
        })
        .await;
    assert!(one.await.unwrap().is_err(), "the first restart was stopped");
    let three = three.expect("the restart after the stop starts anew");
    assert_eq!(three.state, ServerState::Ready, "{three:?}");
    manager.ask(StopAllServers).await.unwrap();
}

/// A server whose every stop takes the whole grace: the shell outlives its stdin closing and
/// ignores SIGTERM (as does its `sleep`), so the group's SIGKILL ends it.
fn stubborn(name: &str) -> fleet_protocol::ServerSpec {
    let script = format!(
        "trap '' TERM; '{bin}' --name {name}; sleep 30",
        bin = mcp_reference_server::binary_path().display(),
    );
    fleet_protocol::ServerSpec::stdio(name, "sh", ["-c".to_string(), script])
}

/// A call that comes while a restart stops the process waits for the process the restart
/// starts, as one during the start does, instead of failing because the server is stopping.
#[tokio::test]
async fn a_call_during_a_restarts_stop_waits_for_the_new_process() {
    let manager = spawn_manager(ServerManagerConfig {
        restart_wait: Duration::from_secs(10),
        ..config()
    });
    let first = manager
        .ask(LaunchServer {
            spec: stubborn("patient"),
        })
        .await
        .unwrap()
        .pid;
    let restart = restart_in_background(&manager, "patient");
    wait_for(Duration::from_secs(5), "the restart's stop", || async {
        (status(&manager, "patient").await.state == ServerState::Stopping).then_some(())
    })
    .await;
    let answer = manager.ask(echo("patient", "held")).await;
    let answer = answer.expect("the call waits for the restarted server");
    assert_eq!(answer.result["content"][0]["text"], "held");
    let restarted = restart.await.unwrap().unwrap();
    assert_ne!(restarted.pid, first, "{restarted:?}");
    manager.ask(StopAllServers).await.unwrap();
}

/// A stop asked for while a restart stops the process (an operator changes their mind) wins:
/// the restart does not start the server again once its own stop is done.
#[tokio::test]
async fn a_stop_asked_during_a_restart_is_not_undone_by_its_start() {
    let manager = spawn_manager(config());
    manager
        .ask(LaunchServer {
            spec: stubborn("stubborn"),
        })
        .await
        .unwrap();
    let restart = restart_in_background(&manager, "stubborn");
    wait_for(Duration::from_secs(5), "the restart's stop", || async {
        (status(&manager, "stubborn").await.state == ServerState::Stopping).then_some(())
    })
    .await;
    let stopped = manager
        .ask(fleet_protocol::messages::server::StopServer {
            name: "stubborn".into(),
        })
        .await;
    assert!(stopped.is_ok(), "{stopped:?}");
    let restarted = restart.await.unwrap();
    assert!(
        matches!(&restarted, Err(kameo::error::SendError::HandlerError(FleetError::NotReady { state, .. })) if state.contains("stop")),
        "the restart gives way to the stop: {restarted:?}"
    );
    let s = status(&manager, "stubborn").await;
    assert_eq!((&s.state, s.pid), (&ServerState::Stopped, None), "{s:?}");
    manager.ask(StopAllServers).await.unwrap();
}

/// A restart asked for while another is under way (an impatient operator, two scripts) joins
/// it: both get the server's status once it is ready, neither an error about the other's stop.
#[tokio::test]
async fn a_restart_asked_during_another_joins_it() {
    let manager = spawn_manager(config());
    manager
        .ask(LaunchServer {
            spec: reference("busy", &["--slow-start-ms", "1000"]),
        })
        .await
        .unwrap();
    let first = status(&manager, "busy").await.pid.unwrap();
    let one = restart_in_background(&manager, "busy");
    // The first restart has stopped the process and started the next, which takes a second to
    // be ready: the second restart comes in that second.
    wait_for(
        Duration::from_secs(10),
        "the next process started",
        || async {
            let s = status(&manager, "busy").await;
            s.pid.filter(|pid| *pid != first).map(|_| ())
        },
    )
    .await;
    let two = manager
        .ask(RestartServer {
            name: "busy".into(),
        })
        .await;
    let one = one.await.unwrap();
    for answer in [&one, &two] {
        let s = answer
            .as_ref()
            .expect("both restarts answer with the status");
        assert_eq!(s.state, ServerState::Ready, "{s:?}");
    }
    assert_eq!(
        status(&manager, "busy").await.restarts,
        1,
        "one restart for the two"
    );
    manager.ask(StopAllServers).await.unwrap();
}

/// The search by launch tag ends what left the server's group, not what is in it: those were
/// sent SIGKILL with the group and are on their way out (reporting them would be noise).
#[test]
fn the_launch_search_spares_the_killed_group_and_ends_the_rest() {
    use std::os::unix::process::CommandExt as _;
    let tagged = |launch: &str| {
        std::process::Command::new("sleep")
            .arg("60")
            .env(INSTANCE_VAR, "launch-test")
            // A live manager: the orphan sweep of the test beside this one spares them.
            .env("MCP_FLEET_MANAGER_PID", std::process::id().to_string())
            .env(fleet_server_manager::LAUNCH_VAR, launch)
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let launch = format!("launch-{}", std::process::id());
    let mut in_group = tagged(&launch);
    let mut escaped = tagged(&launch);
    let ended = fleet_server_manager::end_launch(&launch, in_group.id());
    let ended: Vec<u32> = ended.iter().map(|o| o.pid).collect();
    assert_eq!(ended, [escaped.id()]);
    assert!(escaped.wait().unwrap().code().is_none(), "killed");
    assert!(fleet_server_manager::process_running(in_group.id()));
    in_group.kill().unwrap();
    in_group.wait().unwrap();
}
