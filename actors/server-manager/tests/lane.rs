//! A server's lane, driven as the gateway drives it: calls sent from the test's own task to real
//! reference-server processes, the server's actor asked only for a call the lane hands back.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{config, quick_restarts, reference, server_logs, wait_for};
use fleet_protocol::messages::server::{
    CallAnswer, CallServer, CallServerReply, GetServerStatus, LaneCall, LaunchServer,
    RestartServer, StopServer,
};
use fleet_protocol::{FleetError, ServerSpec, ServerState};
use fleet_server_manager::{
    DirectEntry, ServerDirectory, ServerManager, ServerManagerArgs, ServerManagerConfig,
};
use kameo::actor::{ActorRef, Spawn};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

fn spawn(config: ServerManagerConfig) -> (ActorRef<ServerManager>, ServerDirectory) {
    let directory = ServerDirectory::default();
    let manager = ServerManager::spawn(ServerManagerArgs {
        config: Arc::new(config),
        metrics: None,
        directory: Some(directory.clone()),
        memory: Default::default(),
    });
    (manager, directory)
}

/// Launches `spec` and returns its entry in the directory.
async fn launch(
    manager: &ActorRef<ServerManager>,
    directory: &ServerDirectory,
    spec: ServerSpec,
) -> DirectEntry {
    let name = spec.name.clone();
    manager.ask(LaunchServer { spec }).await.unwrap();
    let entry = directory.read().unwrap().get(&name).cloned();
    entry.expect("a launched server is in the directory")
}

fn tool(server: &str, name: &str, arguments: Value) -> CallServer {
    CallServer::new(
        server,
        "tools/call",
        Some(json!({"name": name, "arguments": arguments})),
    )
}

fn echo(server: &str, message: &str) -> CallServer {
    tool(server, "echo", json!({"message": message}))
}

fn sleep(server: &str, ms: u64) -> CallServer {
    tool(server, "sleep", json!({"ms": ms}))
}

/// The receiver of a call the lane sent.
fn sent(call: LaneCall) -> oneshot::Receiver<CallServerReply> {
    match call {
        LaneCall::Sent(rx) => rx,
        LaneCall::HandedBack(call) => panic!("the lane handed back {call:?}"),
    }
}

/// A call the lane handed back.
fn handed_back(call: LaneCall) -> CallServer {
    match call {
        LaneCall::Sent(_) => panic!("the lane sent the call"),
        LaneCall::HandedBack(call) => *call,
    }
}

/// The answer, which must come within 10 s.
async fn answer(rx: oneshot::Receiver<CallServerReply>) -> CallServerReply {
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("the lane's call was answered")
        .expect("the answer was sent, not dropped")
}

fn echoed(answer: &CallAnswer) -> &str {
    answer.result["content"][0]["text"].as_str().unwrap_or("")
}

#[tokio::test]
async fn the_lane_serves_calls_in_both_eras_beside_the_actor_and_hands_back_progress() {
    let (manager, directory) = spawn(config());
    for (name, flags) in [
        ("modern", &["--log-requests"][..]),
        ("legacy", &["--era", "legacy", "--log-requests"][..]),
    ] {
        let entry = launch(&manager, &directory, reference(name, flags)).await;
        let rx = sent(entry.lane.call(echo(name, "hi")));
        assert_eq!(echoed(&answer(rx).await.unwrap()), "hi");
        // On the wire, the lane's request is the era's: a 2026-07-28 request names its version
        // in `_meta` (the server logs what it read), a 2025-11-25 one carries no `_meta`.
        let logged = wait_for(Duration::from_secs(5), "the call logged", || async {
            server_logs(&manager, name, 100)
                .await
                .into_iter()
                .find(|l| l.contains("request tools/call echo"))
        })
        .await;
        let modern = r#"protocol "2026-07-28""#;
        assert_eq!(logged.contains(modern), name == "modern", "{logged}");

        // Calls by the lane and asks of the actor at once: one counter numbers both, so each
        // answer reaches its own caller.
        let mut lane_calls = Vec::new();
        let mut asks = Vec::new();
        for i in 0..20u32 {
            let message = format!("{name}-{i}");
            if i.is_multiple_of(2) {
                lane_calls.push((message.clone(), sent(entry.lane.call(echo(name, &message)))));
            } else {
                let actor = entry.actor.clone();
                let call = echo(name, &message);
                asks.push((message, tokio::spawn(async move { actor.ask(call).await })));
            }
        }
        for (message, rx) in lane_calls {
            assert_eq!(echoed(&answer(rx).await.unwrap()), message);
        }
        for (message, ask) in asks {
            assert_eq!(echoed(&ask.await.unwrap().unwrap()), message);
        }

        // Progress is forwarded by the actor: such a call comes back, untouched.
        let (progress, _notes) = tokio::sync::mpsc::channel(4);
        let mut call = echo(name, "with progress");
        call.progress = Some(progress);
        let back = handed_back(entry.lane.call(call));
        assert!(back.progress.is_some());
        assert_eq!(
            back.params.unwrap()["arguments"]["message"],
            "with progress"
        );
    }
}

#[tokio::test]
async fn a_stopped_servers_lane_hands_calls_back_and_a_restart_opens_it_again() {
    let (manager, directory) = spawn(config());
    let entry = launch(&manager, &directory, reference("s", &[])).await;
    manager.ask(StopServer { name: "s".into() }).await.unwrap();
    let back = handed_back(entry.lane.call(echo("s", "stopped")));
    // What the actor says of it is the answer the caller gets.
    let err = entry.actor.ask(back).await.unwrap_err();
    assert!(
        matches!(
            &err,
            kameo::error::SendError::HandlerError(FleetError::ServerExited { .. })
        ),
        "{err:?}"
    );

    let again = manager
        .ask(RestartServer { name: "s".into() })
        .await
        .unwrap();
    assert_eq!(again.state, ServerState::Ready);
    let rx = sent(entry.lane.call(echo("s", "again")));
    assert_eq!(echoed(&answer(rx).await.unwrap()), "again");
}

#[tokio::test]
async fn lane_calls_time_out_and_are_cancelled_as_the_actors_are() {
    let (manager, directory) = spawn(config());
    let entry = launch(&manager, &directory, reference("t", &["--log-requests"])).await;

    let mut call = sleep("t", 5_000);
    call.timeout = Some(Duration::from_millis(200));
    let err = answer(sent(entry.lane.call(call))).await.unwrap_err();
    assert!(
        matches!(&err, FleetError::Timeout { after, .. } if *after == Duration::from_millis(200)),
        "{err:?}"
    );

    let cancel = CancellationToken::new();
    let mut call = sleep("t", 5_000);
    call.cancel = Some(cancel.clone());
    let rx = sent(entry.lane.call(call));
    cancel.cancel();
    let err = tokio::time::timeout(Duration::from_secs(2), rx)
        .await
        .expect("a cancellation is noticed within the watchdog's poll")
        .unwrap()
        .unwrap_err();
    assert!(matches!(&err, FleetError::Cancelled { .. }), "{err:?}");

    // The server was told of both (its stderr, read apart from its stdout, says so), and
    // serves on.
    wait_for(
        Duration::from_secs(5),
        "the server told of both",
        || async {
            let logs = server_logs(&manager, "t", 100).await;
            let told = logs.iter().filter(|l| l.contains("cancelled request"));
            (told.count() == 2).then_some(())
        },
    )
    .await;
    let rx = sent(entry.lane.call(echo("t", "still here")));
    assert_eq!(echoed(&answer(rx).await.unwrap()), "still here");
}

/// Many callers on the lane while the process is killed, on two worker threads: every call is
/// answered (by the server, or with why not) long before its 60 s timeout, so none was put in
/// the table after the drain; a call handed back meanwhile is answered by the actor once the
/// restart is done; and the restarted process serves the lane again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lane_call_is_answered_at_once_when_its_process_dies_and_the_next_process_serves() {
    let (manager, directory) = spawn(ServerManagerConfig {
        request_timeout: Duration::from_secs(60),
        restart_wait: Duration::from_secs(10),
        ..config()
    });
    let spec = reference("k", &[]).with_restart(quick_restarts(3));
    let entry = launch(&manager, &directory, spec).await;
    let status = manager.ask(GetServerStatus { name: "k".into() }).await;
    let pid = status.unwrap().pid.unwrap();

    let stop = CancellationToken::new();
    let served = Arc::new(AtomicU32::new(0));
    let callers: Vec<_> = (0..8)
        .map(|c| {
            let lane = entry.lane.clone();
            let actor = entry.actor.clone();
            let stop = stop.clone();
            let served = served.clone();
            tokio::spawn(async move {
                let (mut refused, mut handed_back) = (0u32, 0u32);
                let mut i = 0u32;
                while !stop.is_cancelled() {
                    i += 1;
                    let call = if i.is_multiple_of(4) {
                        sleep("k", 2)
                    } else {
                        echo("k", &format!("{c}-{i}"))
                    };
                    // As the gateway does: a call handed back is asked of the actor, which
                    // waits for the restart (`restart_wait`).
                    let answered = match lane.call(call) {
                        LaneCall::Sent(rx) => answer(rx).await,
                        LaneCall::HandedBack(call) => {
                            handed_back += 1;
                            let asked = actor.ask(*call);
                            match tokio::time::timeout(Duration::from_secs(10), asked).await {
                                Ok(Ok(v)) => Ok(v),
                                Ok(Err(kameo::error::SendError::HandlerError(e))) => Err(e),
                                other => panic!("the actor did not answer: {other:?}"),
                            }
                        }
                    };
                    match answered {
                        Ok(_) => {
                            served.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(FleetError::ServerExited { .. } | FleetError::Overloaded { .. }) => {
                            refused += 1
                        }
                        Err(other) => panic!("unexpected answer: {other:?}"),
                    }
                }
                (refused, handed_back)
            })
        })
        .collect();
    let served_at_least = |n: u32| {
        let served = served.clone();
        async move { (served.load(Ordering::Relaxed) >= n).then_some(()) }
    };

    wait_for(Duration::from_secs(20), "calls served", || {
        served_at_least(1_000)
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let restarted = wait_for(Duration::from_secs(10), "the restart", || async {
        let s = manager
            .ask(GetServerStatus { name: "k".into() })
            .await
            .unwrap();
        (s.state == ServerState::Ready && s.pid != Some(pid)).then_some(s)
    })
    .await;
    assert_eq!(restarted.restarts, 1);
    let before = served.load(Ordering::Relaxed);
    wait_for(
        Duration::from_secs(20),
        "calls served by the new process",
        || served_at_least(before + 1_000),
    )
    .await;
    stop.cancel();
    let (mut refused, mut handed_back) = (0, 0);
    for caller in callers {
        let (r, h) = caller.await.unwrap();
        refused += r;
        handed_back += h;
    }
    let served = served.load(Ordering::Relaxed);
    eprintln!("served {served}, refused {refused}, handed back {handed_back}");
    assert!(refused > 0, "the calls in flight at the kill failed");
    assert!(
        handed_back > 0,
        "calls came back while the server restarted"
    );

    let rx = sent(entry.lane.call(echo("k", "new process")));
    assert_eq!(echoed(&answer(rx).await.unwrap()), "new process");
}
