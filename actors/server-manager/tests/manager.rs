//! The server manager driven through its protocol messages against real reference-server
//! processes: handshake in both eras, concurrent launches, forwarding with id remapping,
//! timeouts, crashes, bad input on stdout, stderr capture and ordered stops.

mod common;

use std::time::{Duration, Instant};

use common::{config, reference, spawn_manager, wait_for, wait_group_gone};
use fleet_protocol::messages::server::{
    CallServer, GetServerStatus, LaunchServer, ListServers, ProbeServer, RestartServer,
    StopAllServers, StopMethod, StopServer,
};
use fleet_protocol::{Era, FleetError, ServerSpec, ServerState};
use serde_json::json;

fn call(server: &str, method: &str, params: serde_json::Value) -> CallServer {
    CallServer::new(server, method, Some(params))
}

/// The reference server's `sleep` tool: answers after `ms`.
fn sleep(server: &str, ms: u64) -> CallServer {
    call(
        server,
        "tools/call",
        json!({"name": "sleep", "arguments": {"ms": ms}}),
    )
}

/// Asks `call` and expects a `Timeout` after `after`, within 10 s.
async fn assert_times_out(
    manager: &kameo::actor::ActorRef<fleet_server_manager::ServerManager>,
    call: CallServer,
    after: Duration,
) {
    let err = tokio::time::timeout(Duration::from_secs(10), manager.ask(call))
        .await
        .expect("the call's timeout ended it")
        .unwrap_err();
    assert!(
        matches!(
            &err,
            kameo::error::SendError::HandlerError(FleetError::Timeout { after: a, .. })
                if *a == after
        ),
        "{err:?}"
    );
}

fn echo(server: &str, message: &str) -> CallServer {
    call(
        server,
        "tools/call",
        json!({"name": "echo", "arguments": {"message": message}}),
    )
}

#[tokio::test]
async fn launches_concurrently_in_both_eras_and_serves_calls() {
    let manager = spawn_manager(config());
    let specs = [
        reference("modern", &["--slow-start-ms", "700"]),
        reference("legacy", &["--era", "legacy", "--slow-start-ms", "700"]),
        reference("both", &["--slow-start-ms", "700"]),
    ];
    let started = Instant::now();
    let launches = specs
        .into_iter()
        .map(|spec| manager.ask(LaunchServer { spec }).send());
    let results = futures::future::join_all(launches).await;
    let took = started.elapsed();
    for r in &results {
        let status = r.as_ref().expect("launch");
        assert_eq!(status.state, ServerState::Ready);
        let h = status.handshake.as_ref().unwrap();
        let names: Vec<_> = h.tool_names().collect();
        assert_eq!(names, ["echo", "add", "sleep"]);
    }
    // Three servers that each take 0.7 s to start: concurrent launches take about 0.7 s, a
    // serial launch would take at least 2.1 s.
    assert!(took < Duration::from_millis(2000), "launch took {took:?}");

    let modern = manager
        .ask(GetServerStatus {
            name: "modern".into(),
        })
        .await
        .unwrap();
    let legacy = manager
        .ask(GetServerStatus {
            name: "legacy".into(),
        })
        .await
        .unwrap();
    assert_eq!(modern.era(), Some(Era::Modern));
    assert_eq!(legacy.era(), Some(Era::Legacy));
    assert_eq!(
        legacy.handshake.as_ref().unwrap().protocol_version,
        "2025-11-25"
    );
    assert_eq!(
        legacy.handshake.as_ref().unwrap().server_info["name"],
        "legacy"
    );

    for name in ["modern", "legacy"] {
        let result = manager.ask(echo(name, "hello")).await.unwrap();
        assert_eq!(result.result["content"][0]["text"], "hello");
        let sum = manager
            .ask(call(
                name,
                "tools/call",
                json!({"name": "add", "arguments": {"a": 2, "b": 3}}),
            ))
            .await
            .unwrap();
        assert_eq!(sum.result["content"][0]["text"], "5");
        manager
            .ask(ProbeServer {
                name: name.into(),
                timeout: Duration::from_secs(5),
            })
            .await
            .unwrap();
    }

    let stopped = manager.ask(StopAllServers).await.unwrap();
    assert_eq!(stopped.len(), 3);
    for s in &stopped {
        assert_eq!(s.method, StopMethod::StdinClosed, "{s:?}");
        assert_eq!(s.exit.as_ref().unwrap().code, Some(0));
        wait_group_gone(s.pid.unwrap()).await;
    }
    let all = manager.ask(ListServers).await.unwrap();
    assert!(all.iter().all(|s| s.state == ServerState::Stopped));
}

#[tokio::test]
async fn concurrent_calls_are_remapped_and_answered_in_any_order() {
    let manager = spawn_manager(config());
    manager
        .ask(LaunchServer {
            spec: reference("a", &[]),
        })
        .await
        .unwrap();
    let slow = manager.ask(sleep("a", 400));
    let fast = async {
        let r = manager.ask(echo("a", "fast")).await.unwrap();
        (r, Instant::now())
    };
    let (slow, (fast, fast_at)) = tokio::join!(async { (slow.await, Instant::now()) }, fast);
    let (slow, slow_at) = slow;
    assert_eq!(fast.result["content"][0]["text"], "fast");
    assert_eq!(slow.unwrap().result["content"][0]["text"], "slept 400 ms");
    assert!(fast_at < slow_at, "the echo waited for the sleep");
    // Many concurrent echoes, each answered with its own text.
    let calls = (0..50).map(|i| {
        let m = manager.clone();
        async move { (i, m.ask(echo("a", &format!("m{i}"))).await.unwrap()) }
    });
    for (i, r) in futures::future::join_all(calls).await {
        assert_eq!(r.result["content"][0]["text"], format!("m{i}"));
    }
    manager.ask(StopAllServers).await.unwrap();
}

#[tokio::test]
async fn a_servers_own_request_timeout_replaces_the_managers_default() {
    let manager = spawn_manager(config());
    let spec = ServerSpec {
        request_timeout: Some(Duration::from_millis(300)),
        ..reference("own", &[])
    };
    manager.ask(LaunchServer { spec }).await.unwrap();
    // No timeout named by the caller: the spec's 300 ms applies, not the manager's 60 s.
    assert_times_out(&manager, sleep("own", 5000), Duration::from_millis(300)).await;
    manager.ask(StopAllServers).await.unwrap();
}

#[tokio::test]
async fn a_short_timeout_is_kept_while_a_longer_request_is_pending() {
    let manager = spawn_manager(config());
    manager
        .ask(LaunchServer {
            spec: reference("w", &[]),
        })
        .await
        .unwrap();
    // A timeout too large to add to now means "never", not a panic.
    let mut never = echo("w", "no deadline");
    never.timeout = Some(Duration::MAX);
    let r = manager.ask(never).await.unwrap();
    assert_eq!(r.result["content"][0]["text"], "no deadline");
    // The first request sets the watchdog's next look 60 s ahead; the second, due much
    // sooner, must bring it forward.
    let mut long = sleep("w", 30000);
    long.timeout = Some(Duration::from_secs(60));
    let m = manager.clone();
    let long = tokio::spawn(async move { m.ask(long).send().await });
    let mut short = sleep("w", 30000);
    short.timeout = Some(Duration::from_millis(300));
    assert_times_out(&manager, short, Duration::from_millis(300)).await;
    assert!(!long.is_finished(), "the long request is still pending");
    manager.ask(StopAllServers).await.unwrap();
    // Stopping the server answers the long request too.
    let answer = tokio::time::timeout(Duration::from_secs(10), long)
        .await
        .expect("the stop answered the pending request")
        .unwrap();
    assert!(answer.is_err(), "{answer:?}");
}

#[tokio::test]
async fn a_request_times_out_and_the_server_keeps_serving() {
    let manager = spawn_manager(config());
    manager
        .ask(LaunchServer {
            spec: reference("t", &[]),
        })
        .await
        .unwrap();
    let mut slow = sleep("t", 5000);
    slow.timeout = Some(Duration::from_millis(200));
    let started = Instant::now();
    let err = manager.ask(slow).await.unwrap_err();
    assert!(
        matches!(
            err,
            kameo::error::SendError::HandlerError(FleetError::Timeout { .. })
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let r = manager.ask(echo("t", "still here")).await.unwrap();
    assert_eq!(r.result["content"][0]["text"], "still here");
    let unknown = manager
        .ask(call("t", "no/such", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, kameo::error::SendError::HandlerError(FleetError::Upstream { error, .. }) if error.code == -32601),
        "{unknown:?}"
    );
    manager.ask(StopAllServers).await.unwrap();
}

#[tokio::test]
async fn a_crash_fails_requests_at_once_and_marks_the_server_failed() {
    let manager = spawn_manager(config());
    // discover, tools/list (2 requests), then one echo; the next request crashes it. With the
    // restart policy `never`, it stays failed.
    let never = fleet_protocol::RestartPolicy {
        mode: fleet_protocol::RestartMode::Never,
        ..Default::default()
    };
    let spec = reference("c", &["--crash-after-requests", "3"]).with_restart(never);
    manager.ask(LaunchServer { spec }).await.unwrap();
    manager.ask(echo("c", "one")).await.unwrap();
    let started = Instant::now();
    let err = manager.ask(echo("c", "two")).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the request waited for a timeout"
    );
    let kameo::error::SendError::HandlerError(err) = err else {
        panic!("{err:?}")
    };
    assert!(matches!(err, FleetError::ServerExited { .. }), "{err:?}");
    assert!(err.to_string().contains("`c` exited"), "{err}");
    let status = wait_for(Duration::from_secs(5), "failed state", || async {
        let s = manager
            .ask(GetServerStatus { name: "c".into() })
            .await
            .unwrap();
        matches!(s.state, ServerState::Failed { .. }).then_some(s)
    })
    .await;
    assert_eq!(status.last_exit.as_ref().unwrap().code, Some(3));
    assert_eq!(status.pid, None);
    // A later request fails fast too, naming the exit.
    let err = manager.ask(echo("c", "three")).await.unwrap_err();
    assert!(format!("{err:?}").contains("ServerExited"), "{err:?}");
    // RestartServer brings it back.
    let again = manager
        .ask(RestartServer { name: "c".into() })
        .await
        .unwrap();
    assert_eq!(again.state, ServerState::Ready);
    assert_eq!(again.restarts, 1);
    manager.ask(StopAllServers).await.unwrap();
}

/// A server that crashes leaves nothing behind: what it started in its process group is killed
/// with it, though nobody asked for a stop.
#[tokio::test]
async fn a_crash_takes_what_the_server_started_in_its_group_with_it() {
    let manager = spawn_manager(config());
    let never = fleet_protocol::RestartPolicy {
        mode: fleet_protocol::RestartMode::Never,
        ..Default::default()
    };
    let bin = mcp_reference_server::binary_path();
    // A helper in the background, then the server, which exits with code 3 once it has
    // answered its 3rd request (the handshake's two, then one call).
    let script = format!(
        "sleep 777 & exec '{}' --name c --crash-after-requests 3",
        bin.display()
    );
    let spec = ServerSpec::stdio("c", "sh", ["-c".to_string(), script]).with_restart(never);
    let ready = manager.ask(LaunchServer { spec }).await.unwrap();
    let pgid = ready.pid.unwrap();
    manager.ask(echo("c", "one")).await.unwrap();
    wait_group_gone(pgid).await;
    manager.ask(StopAllServers).await.unwrap();
}

/// A probe the server answers with an error still shows it alive: it read and answered.
#[tokio::test]
async fn a_probe_answered_with_an_error_is_a_live_server() {
    let manager = spawn_manager(config());
    // A 2025-era server that implements `initialize` and nothing else, `ping` included.
    let spec = common::python_server(
        "p",
        r#"if m["method"] == "initialize":
    out["result"] = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "p", "version": "1"}}
else:
    out["error"] = {"code": -32601, "message": "no " + m["method"]}"#,
    );
    manager.ask(LaunchServer { spec }).await.unwrap();
    // Another whose error has no message: not valid JSON-RPC, but an answer all the same.
    let spec = common::python_server(
        "q",
        r#"if m["method"] == "initialize":
    out["result"] = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "q", "version": "1"}}
else:
    out["error"] = {"code": -32601}"#,
    );
    manager.ask(LaunchServer { spec }).await.unwrap();
    for name in ["p", "q"] {
        let probe = ProbeServer {
            name: name.into(),
            timeout: Duration::from_secs(5),
        };
        assert!(manager.ask(probe).await.is_ok(), "{name}");
    }
    manager.ask(StopAllServers).await.unwrap();
}

/// An answer over the message limit cannot be read, but its first bytes name the request: that
/// call fails at once, saying why, rather than at its timeout as if nothing had come.
#[tokio::test]
async fn an_answer_over_the_limit_fails_its_call_at_once() {
    let manager = spawn_manager(fleet_server_manager::ServerManagerConfig {
        max_message_bytes: 4096,
        ..config()
    });
    let spec = common::python_server(
        "big",
        r#"if m["method"] == "initialize":
    out["result"] = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "big", "version": "1"}}
elif m["method"] == "tools/list":
    out["result"] = {"tools": [{"name": "big", "inputSchema": {"type": "object"}}]}
elif m["method"] == "tools/call":
    out["result"] = {"content": [{"type": "text", "text": "x" * 10000}]}
else:
    out["error"] = {"code": -32601, "message": "no"}"#,
    );
    manager.ask(LaunchServer { spec }).await.unwrap();
    let call = CallServer::new("big", "tools/call", Some(json!({"name": "big"})));
    let asked = std::time::Instant::now();
    let err = manager.ask(call).await.unwrap_err();
    // The request timeout of these tests is 10 s.
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let text = format!("{err}");
    assert!(
        text.contains("larger than the limit of 4096 bytes"),
        "{text}"
    );
    manager.ask(StopAllServers).await.unwrap();
}

/// The answers to a server's own requests (here its pings) are not dropped when its input
/// queue is full: they wait for room, since the server may wait for them for ever.
#[tokio::test]
async fn a_servers_pings_are_all_answered_even_when_its_input_is_full() {
    let manager = spawn_manager(fleet_server_manager::ServerManagerConfig {
        stdin_queue: 4,
        ..config()
    });
    // `block` sends 3,000 pings without reading (their answers fill the pipe, then the queue),
    // then reads until every ping is answered, and answers the call.
    let spec = common::python_server(
        "pinger",
        r#"import time
if m["method"] == "initialize":
    out["result"] = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "pinger", "version": "1"}}
elif m["method"] == "tools/list":
    out["result"] = {"tools": [{"name": "block", "inputSchema": {"type": "object"}}]}
elif m["method"] == "tools/call":
    pings = {"p%d" % i for i in range(3000)}
    sys.stdout.write("".join(json.dumps({"jsonrpc": "2.0", "id": p, "method": "ping"}) + "\n" for p in pings))
    sys.stdout.flush()
    time.sleep(1)
    while pings:
        pings.discard(json.loads(sys.stdin.readline()).get("id"))
    out["result"] = {"content": [{"type": "text", "text": "all answered"}]}
else:
    out["error"] = {"code": -32601, "message": "no"}"#,
    );
    manager.ask(LaunchServer { spec }).await.unwrap();
    let call = CallServer::new("pinger", "tools/call", Some(json!({"name": "block"})));
    let answer = tokio::time::timeout(Duration::from_secs(8), manager.ask(call))
        .await
        .expect("every ping answered, so the call is")
        .unwrap();
    assert_eq!(answer.result["content"][0]["text"], "all answered");
    manager.ask(StopAllServers).await.unwrap();
}

#[tokio::test]
async fn a_missing_command_fails_that_server_only() {
    let manager = spawn_manager(config());
    let bad = ServerSpec::stdio("ghost", "/nonexistent/mcp-server", Vec::<String>::new());
    let (bad, good) = tokio::join!(
        manager.ask(LaunchServer { spec: bad }).send(),
        manager
            .ask(LaunchServer {
                spec: reference("ok", &[])
            })
            .send()
    );
    let err = bad.unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("No such file or directory"), "{text}");
    assert_eq!(good.unwrap().state, ServerState::Ready);
    let ghost = manager
        .ask(GetServerStatus {
            name: "ghost".into(),
        })
        .await
        .unwrap();
    assert!(
        matches!(&ghost.state, ServerState::Failed { reason } if reason.contains("No such file")),
        "{:?}",
        ghost.state
    );
    let unknown = manager
        .ask(GetServerStatus {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert!(format!("{unknown:?}").contains("UnknownServer"));
    manager.ask(StopAllServers).await.unwrap();
}

#[tokio::test]
async fn garbage_and_over_long_lines_are_counted_and_the_server_carries_on() {
    let mut cfg = config();
    cfg.max_message_bytes = 64 * 1024;
    let manager = spawn_manager(cfg);
    manager
        .ask(LaunchServer {
            spec: reference("g", &["--garbage-stdout", "--long-line-bytes", "200000"]),
        })
        .await
        .unwrap();
    for i in 0..5 {
        let r = manager.ask(echo("g", &format!("x{i}"))).await.unwrap();
        assert_eq!(r.result["content"][0]["text"], format!("x{i}"));
    }
    let status = manager
        .ask(GetServerStatus { name: "g".into() })
        .await
        .unwrap();
    // One over-long line, and one garbage line before each of the 7 answers at least.
    assert!(status.bad_stdout_lines >= 8, "{}", status.bad_stdout_lines);
    assert_eq!(status.state, ServerState::Ready);
    manager.ask(StopAllServers).await.unwrap();
}

/// A server whose stdout floods keeps its actor's mailbox full, as the reader waits for room
/// with each line: the calls and probes the manager hands that actor wait for room too, and the
/// manager goes on serving it and every other server.
#[tokio::test]
async fn a_server_flooding_stdout_is_still_served_and_the_manager_carries_on() {
    let manager = spawn_manager(config());
    let bin = mcp_reference_server::binary_path();
    // One `echo` is one write of a whole line, which a pipe does not split.
    let script = format!(
        "(while :; do echo not-json; done) & exec '{}' --name flood",
        bin.display()
    );
    let flood = ServerSpec::stdio("flood", "sh", ["-c".to_string(), script]);
    manager.ask(LaunchServer { spec: flood }).await.unwrap();
    manager
        .ask(LaunchServer {
            spec: reference("calm", &[]),
        })
        .await
        .unwrap();
    for i in 0..20 {
        let probe = ProbeServer {
            name: "flood".into(),
            timeout: Duration::from_secs(10),
        };
        manager.ask(probe).await.unwrap();
        let r = manager.ask(echo("flood", &format!("f{i}"))).await.unwrap();
        assert_eq!(r.result["content"][0]["text"], format!("f{i}"));
        let r = manager.ask(echo("calm", &format!("c{i}"))).await.unwrap();
        assert_eq!(r.result["content"][0]["text"], format!("c{i}"));
    }
    let status = manager
        .ask(GetServerStatus {
            name: "flood".into(),
        })
        .await
        .unwrap();
    assert!(
        status.bad_stdout_lines > 1000,
        "{}",
        status.bad_stdout_lines
    );
    assert_eq!(status.state, ServerState::Ready);
    manager.ask(StopAllServers).await.unwrap();
}

/// Answers that serde_json alone would refuse: one with a lone UTF-16 surrogate (a string cut
/// inside an emoji, as JavaScript and Python write it) is read with U+FFFD in its place; an
/// invalid one (an error without its message) fails its request at once, not at its timeout.
#[tokio::test]
async fn answers_with_a_lone_surrogate_or_an_invalid_error_reach_the_caller_at_once() {
    let manager = spawn_manager(config());
    let spec = common::python_server(
        "s",
        r#"if m["method"] == "initialize":
    out["result"] = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "s", "version": "1"}}
elif m["method"] == "tools/list":
    out["result"] = {"tools": [{"name": "cut", "inputSchema": {"type": "object"}}, {"name": "bad", "inputSchema": {"type": "object"}}]}
elif m["method"] == "tools/call" and m["params"]["name"] == "cut":
    out["result"] = {"content": [{"type": "text", "text": "cut \ud83d"}]}
elif m["method"] == "tools/call":
    out["error"] = {"code": -32603}
else:
    out["error"] = {"code": -32601, "message": "no"}"#,
    );
    manager.ask(LaunchServer { spec }).await.unwrap();
    let r = manager
        .ask(call("s", "tools/call", json!({"name": "cut"})))
        .await
        .unwrap();
    assert_eq!(r.result["content"][0]["text"], "cut \u{fffd}");
    let started = Instant::now();
    let err = manager
        .ask(call("s", "tools/call", json!({"name": "bad"})))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited for the timeout"
    );
    let kameo::error::SendError::HandlerError(err) = err else {
        panic!("{err:?}")
    };
    assert!(matches!(err, FleetError::BadAnswer { .. }), "{err:?}");
    assert!(err.to_string().contains("message"), "{err}");
    manager.ask(StopAllServers).await.unwrap();
}

#[tokio::test]
async fn stderr_is_kept_in_a_ring_buffer() {
    let manager = spawn_manager(config());
    manager
        .ask(LaunchServer {
            spec: reference("noisy", &["--stderr-flood", "500"]),
        })
        .await
        .unwrap();
    let logs = wait_for(Duration::from_secs(5), "500 stderr lines", || async {
        let logs = common::server_logs(&manager, "noisy", 10).await;
        logs.iter()
            .any(|l| l.contains("flood line 499"))
            .then_some(logs)
    })
    .await;
    assert_eq!(logs.len(), 10);
    let status = manager
        .ask(GetServerStatus {
            name: "noisy".into(),
        })
        .await
        .unwrap();
    assert!(status.stderr_lines >= 500);
    manager.ask(StopAllServers).await.unwrap();
}

#[tokio::test]
async fn a_server_that_ignores_stdin_close_and_sigterm_is_killed_with_its_group() {
    let manager = spawn_manager(config());
    let bin = mcp_reference_server::binary_path();
    // A wrapper shell that ignores SIGTERM and lingers after the server exits.
    let script = format!("trap '' TERM; {} --name wrapped; sleep 30", bin.display());
    let spec = ServerSpec::stdio("wrapped", "sh", ["-c".to_string(), script]);
    let status = manager.ask(LaunchServer { spec }).await.unwrap();
    let pid = status.pid.unwrap();
    let stopped = manager
        .ask(StopServer {
            name: "wrapped".into(),
        })
        .await
        .unwrap();
    assert_eq!(stopped.method, StopMethod::Killed, "{stopped:?}");
    assert_eq!(stopped.exit.as_ref().unwrap().signal, Some(9));
    wait_group_gone(pid).await;
}

#[tokio::test]
async fn dropping_the_manager_kills_every_process() {
    let manager = spawn_manager(config());
    let mut pids = Vec::new();
    for name in ["k1", "k2"] {
        let s = manager
            .ask(LaunchServer {
                spec: reference(name, &[]),
            })
            .await
            .unwrap();
        pids.push(s.pid.unwrap());
    }
    manager.stop_gracefully().await.unwrap();
    manager.wait_for_shutdown().await;
    for pid in pids {
        wait_group_gone(pid).await;
    }
}

#[tokio::test]
async fn a_removed_server_is_stopped_and_no_longer_listed() {
    let manager = common::spawn_manager(common::config());
    let spec = common::reference("gone", &[]);
    let pid = manager
        .ask(fleet_protocol::messages::server::LaunchServer { spec: spec.clone() })
        .await
        .unwrap()
        .pid
        .unwrap();
    let stopped = manager
        .ask(fleet_protocol::messages::server::RemoveServer {
            name: "gone".into(),
        })
        .await
        .unwrap();
    assert_eq!(stopped.pid, Some(pid));
    assert!(!common::group_alive(pid));
    common::wait_for(Duration::from_secs(5), "the entry dropped", || async {
        manager
            .ask(fleet_protocol::messages::server::ListServers)
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(matches!(
        manager
            .ask(fleet_protocol::messages::server::RemoveServer {
                name: "gone".into()
            })
            .await,
        Err(kameo::error::SendError::HandlerError(
            fleet_protocol::FleetError::UnknownServer { .. }
        ))
    ));
    // The name is free again.
    manager
        .ask(fleet_protocol::messages::server::LaunchServer { spec })
        .await
        .unwrap();
    manager
        .ask(fleet_protocol::messages::server::StopAllServers)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_directory_holds_each_servers_actor_until_it_is_removed() {
    use kameo::actor::Spawn;
    let directory = fleet_server_manager::ServerDirectory::default();
    let manager =
        fleet_server_manager::ServerManager::spawn(fleet_server_manager::ServerManagerArgs {
            config: std::sync::Arc::new(config()),
            metrics: None,
            directory: Some(directory.clone()),
            memory: Default::default(),
        });
    manager
        .ask(fleet_protocol::messages::server::LaunchServer {
            spec: reference("direct", &[]),
        })
        .await
        .unwrap();
    // A call through the directory reaches the server's own actor and its process.
    let entry = directory.read().unwrap().get("direct").cloned();
    let entry = entry.expect("the launched server is in the directory");
    let echoed = entry.actor.ask(echo("direct", "hi")).await.unwrap();
    assert_eq!(echoed.result["content"][0]["text"], "hi", "{echoed:?}");
    manager
        .ask(fleet_protocol::messages::server::RemoveServer {
            name: "direct".into(),
        })
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(5),
        "the directory entry removed",
        || async { (!directory.read().unwrap().contains_key("direct")).then_some(()) },
    )
    .await;
    // A restarted manager starts with an empty directory.
    directory.write().unwrap().insert("stale".into(), entry);
    manager.stop_gracefully().await.unwrap();
    manager.wait_for_shutdown().await;
    let _again =
        fleet_server_manager::ServerManager::spawn(fleet_server_manager::ServerManagerArgs {
            config: std::sync::Arc::new(config()),
            metrics: None,
            directory: Some(directory.clone()),
            memory: Default::default(),
        });
    wait_for(Duration::from_secs(5), "the directory cleared", || async {
        directory.read().unwrap().is_empty().then_some(())
    })
    .await;
}

/// A parent for a supervised manager, as the supervisor is in the fleet.
struct Parent;

impl kameo::Actor for Parent {
    type Args = ();
    type Error = kameo::error::Infallible;

    async fn on_start(
        _: (),
        _: kameo::actor::ActorRef<Self>,
    ) -> Result<Self, kameo::error::Infallible> {
        Ok(Parent)
    }
}

/// A manager restarted by its supervisor after it died (killed here; a panic takes the same
/// path) launches again the servers the one before ran, with their specs, after their old
/// processes are gone. A server stopped on request is listed stopped, and starts when asked to.
/// The directory holds the new actors, and a subscriber of the one before hears the new one.
#[tokio::test]
async fn a_restarted_manager_launches_the_servers_of_the_one_before() {
    use fleet_protocol::messages::server::{EventSink, ServerEvent, SubscribeServerEvents};
    use kameo::actor::Spawn;
    let parent = Parent::spawn(());
    let directory = fleet_server_manager::ServerDirectory::default();
    let args = fleet_server_manager::ServerManagerArgs {
        config: std::sync::Arc::new(config()),
        metrics: None,
        directory: Some(directory.clone()),
        memory: Default::default(),
    };
    let manager =
        fleet_server_manager::ServerManager::supervise_with(&parent, move || args.clone())
            .restart_policy(kameo::supervision::RestartPolicy::Transient)
            .spawn()
            .await;
    for name in ["kept", "stopped"] {
        manager
            .ask(LaunchServer {
                spec: reference(name, &[]),
            })
            .await
            .unwrap();
    }
    manager
        .ask(StopServer {
            name: "stopped".into(),
        })
        .await
        .unwrap();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    manager
        .ask(SubscribeServerEvents {
            sink: EventSink::channel(tx),
        })
        .await
        .unwrap();
    let old = manager
        .ask(GetServerStatus {
            name: "kept".into(),
        })
        .await
        .unwrap()
        .pid
        .expect("kept runs");
    // What the subscriber was sent on joining (kept is ready) is not what is tested.
    while events.try_recv().is_ok() {}

    manager.kill();
    let servers = wait_for(Duration::from_secs(30), "kept launched again", || {
        let manager = manager.clone();
        async move {
            let servers = manager.ask(ListServers).await.ok()?;
            let kept = servers.iter().find(|s| s.name == "kept")?;
            (kept.state == ServerState::Ready && kept.pid.is_some_and(|p| p != old))
                .then_some(servers)
        }
    })
    .await;
    let stopped = servers.iter().find(|s| s.name == "stopped");
    assert!(
        stopped.is_some_and(|s| s.state == ServerState::Stopped && s.pid.is_none()),
        "{servers:?}"
    );
    assert!(!fleet_server_manager::process_running(old));
    let entry = directory.read().unwrap().get("kept").cloned();
    let echoed = entry
        .expect("the new actor is in the directory")
        .actor
        .ask(call(
            "kept",
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hi"}}),
        ))
        .await
        .unwrap();
    assert_eq!(echoed.result["content"][0]["text"], "hi", "{echoed:?}");
    // The subscriber hears the new server become ready.
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.recv().await {
            if let ServerEvent::StateChanged { server, state } = event
                && server == "kept"
                && state == ServerState::Ready
            {
                return;
            }
        }
        panic!("the events ended");
    })
    .await
    .expect("the subscriber heard kept ready again");
    let started = manager
        .ask(RestartServer {
            name: "stopped".into(),
        })
        .await
        .unwrap();
    assert_eq!(started.state, ServerState::Ready, "{started:?}");
    manager.ask(StopAllServers).await.unwrap();
}
