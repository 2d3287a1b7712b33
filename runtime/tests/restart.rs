//! Supervision with all the real actors: a SIGSTOPped server is found out by the health monitor
//! and replaced, failing its in-flight request; 50 servers shut down in order within the grace
//! period and leave no process; a supervisor that stops takes every server with it.

mod common;

use std::time::{Duration, Instant};

use common::{process_running, reference, wait_for};
use fleet_protocol::messages::server::{CallServer, GetServerStatus, LaunchServer};
use fleet_protocol::messages::supervisor::{LaunchFleet, Shutdown};
use fleet_protocol::{RestartMode, RestartPolicy, ServerState};
use fleet_runtime::{Fleet, FleetOptions};
use serde_json::json;

#[tokio::test]
async fn a_sigstopped_server_is_detected_and_replaced_and_its_request_fails() {
    let mut options = FleetOptions::default();
    options.health.interval = Duration::from_millis(200);
    options.health.timeout = Duration::from_millis(300);
    options.health.failure_threshold = 2;
    options.server_manager.restart_wait = Duration::ZERO;
    let (interval, timeout, threshold) = (
        options.health.interval,
        options.health.timeout,
        options.health.failure_threshold,
    );
    let fleet = Fleet::start(options).await;
    let quick = RestartPolicy {
        mode: RestartMode::Always,
        backoff_base: Duration::from_millis(50),
        backoff_cap: Duration::from_secs(1),
        ..RestartPolicy::default()
    };
    let spec = reference("frozen", &[]).with_restart(quick);
    let status = fleet
        .server_manager
        .ask(LaunchServer { spec })
        .await
        .unwrap();
    let pid = status.pid.unwrap();

    // A request in flight when the process is stopped.
    let sm = fleet.server_manager.clone();
    let in_flight = tokio::spawn(async move {
        sm.ask(CallServer {
            timeout: Some(Duration::from_secs(30)),
            ..CallServer::new(
                "frozen",
                "tools/call",
                Some(json!({"name": "sleep", "arguments": {"ms": 3000}})),
            )
        })
        .await
    });
    // Let the request reach the server before it freezes.
    wait_for(Duration::from_secs(5), "the request in flight", || async {
        let s = fleet
            .server_manager
            .ask(GetServerStatus {
                name: "frozen".into(),
            })
            .await
            .unwrap();
        (s.in_flight == 1).then_some(())
    })
    .await;
    let stopped_at = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();

    let err = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight request ends")
        .unwrap()
        .unwrap_err();
    let detected = stopped_at.elapsed();
    assert!(format!("{err:?}").contains("ServerExited"), "{err:?}");
    let bound = interval * threshold + timeout;
    // Scheduling slack on a loaded 2-core machine (other tests run beside this one).
    assert!(
        detected <= bound + Duration::from_millis(800),
        "detected after {detected:?}, bound {bound:?}"
    );

    let replaced = wait_for(Duration::from_secs(10), "a new process", || async {
        let s = fleet
            .server_manager
            .ask(GetServerStatus {
                name: "frozen".into(),
            })
            .await
            .unwrap();
        (s.state == ServerState::Ready && s.pid != Some(pid)).then_some(s)
    })
    .await;
    assert_eq!(replaced.restarts, 1);
    assert_eq!(replaced.last_exit.as_ref().unwrap().signal, Some(9));
    assert!(!process_running(pid), "the stopped process is gone");
    fleet.supervisor.ask(Shutdown).await.unwrap();
}

#[tokio::test]
async fn fifty_servers_shut_down_within_the_grace_period() {
    let options = FleetOptions::default();
    let grace = options.server_manager.stop_grace;
    let fleet = Fleet::start(options).await;
    let specs = (0..50)
        .map(|i| reference(&format!("s{i:02}"), &[]))
        .collect::<Vec<_>>();
    let report = fleet.supervisor.ask(LaunchFleet { specs }).await.unwrap();
    let pids: Vec<u32> = report
        .results
        .iter()
        .map(|r| r.as_ref().unwrap().pid.unwrap())
        .collect();
    assert_eq!(pids.len(), 50);
    let shutdown = fleet.supervisor.ask(Shutdown).await.unwrap();
    assert_eq!(shutdown.servers.len(), 50);
    assert!(
        shutdown.took < grace,
        "shutdown took {:?}, grace {grace:?}",
        shutdown.took
    );
    for s in &shutdown.servers {
        assert_eq!(s.exit.as_ref().and_then(|e| e.code), Some(0), "{s:?}");
    }
    for pid in pids {
        assert!(!process_running(pid), "{pid} survived the shutdown");
    }
}

/// When the supervisor stops by itself (as it does when a service fails more often than its
/// restart limit allows, which the supervisor's own tests show), every service stops with it,
/// and once `ManagerMemory::servers_stopped` returns no server process is left: what
/// `mcp-fleet run` waits for before it exits 1. The manager was restarted first, so its first
/// `ActorRef` could not tell when the latest start's stop is over.
#[tokio::test]
async fn a_supervisor_that_stops_takes_every_server_with_it() {
    let mut options = FleetOptions::default();
    options.server_manager.stop_grace = Duration::from_millis(500);
    let fleet = Fleet::start(options).await;
    let report = fleet
        .supervisor
        .ask(LaunchFleet {
            specs: vec![reference("left", &[])],
        })
        .await
        .unwrap();
    let first = report.results[0].as_ref().unwrap().pid.unwrap();
    fleet.server_manager.kill();
    let pid = wait_for(
        Duration::from_secs(30),
        "the server launched again",
        || async {
            let status = fleet
                .server_manager
                .ask(GetServerStatus {
                    name: "left".into(),
                })
                .await
                .ok()?;
            (status.state == ServerState::Ready)
                .then_some(status.pid)
                .flatten()
                .filter(|&p| p != first)
        },
    )
    .await;

    fleet.supervisor.kill();
    tokio::time::timeout(
        Duration::from_secs(10),
        fleet.manager_memory.servers_stopped(),
    )
    .await
    .expect("the servers stop with the supervisor");
    assert!(!process_running(pid), "the server's process is gone");
    wait_for(
        Duration::from_secs(5),
        "the other services stopped",
        || async { (!fleet.gateway.is_alive() && !fleet.health.is_alive()).then_some(()) },
    )
    .await;
}
