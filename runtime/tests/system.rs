//! The real actors composed by runtime, driving real reference-server processes: a fleet
//! launch with one bad command, health probes, a hung server killed and replaced, exact
//! metrics, and the ordered shutdown that leaves no process.

mod common;

use std::time::Duration;

use common::{process_running, reference, wait_for};
use fleet_protocol::ServerSpec;
use fleet_protocol::messages::gateway::GetGatewayStats;
use fleet_protocol::messages::health::GetHealth;
use fleet_protocol::messages::metrics::{FlushMetrics, GetMetrics, ServerMetrics};
use fleet_protocol::messages::server::{CallServer, GetServerStatus};
use fleet_protocol::messages::supervisor::{GetFleetStatus, LaunchFleet, Shutdown};
use fleet_runtime::{Fleet, FleetOptions};
use serde_json::json;

#[tokio::test]
async fn a_fleet_launches_is_probed_measured_and_shut_down() {
    let mut options = FleetOptions::default();
    options.health.interval = Duration::from_millis(100);
    options.health.timeout = Duration::from_millis(500);
    options.health.failure_threshold = 2;
    options.server_manager.stop_grace = Duration::from_millis(500);
    let fleet = Fleet::start(options).await;
    assert_eq!(fleet.startup.len(), 5);

    let specs = vec![
        reference("alpha", &["--log-requests"]),
        reference("beta", &[]),
        // discover + tools/list + one probe, then it stops answering.
        reference("hung", &["--hang-after-requests", "3"]),
        ServerSpec::stdio("missing", "/no/such/mcp-server", Vec::<String>::new()),
    ];
    let report = fleet.supervisor.ask(LaunchFleet { specs }).await.unwrap();
    assert!(report.results[0].is_ok());
    assert!(report.results[1].is_ok());
    assert!(report.results[2].is_ok());
    let err = report.results[3].as_ref().unwrap_err().to_string();
    assert!(
        err.contains("missing") && err.contains("No such file"),
        "{err}"
    );

    // N calls are counted as N requests. The gateway lists each ready server's items (requests
    // too): let it finish with beta first, and count from there.
    wait_for(
        Duration::from_secs(10),
        "the gateway to list beta",
        || async {
            let stats = fleet.gateway.ask(GetGatewayStats).await.ok()?;
            stats.servers.iter().any(|s| s == "beta").then_some(())
        },
    )
    .await;
    fleet.metrics.ask(FlushMetrics).await.unwrap();
    let before = fleet.metrics.ask(GetMetrics).await.unwrap().servers["beta"].clone();
    const N: u64 = 25;
    for i in 0..N {
        let r = fleet
            .server_manager
            .ask(CallServer::new(
                "beta",
                "tools/call",
                Some(json!({"name": "echo", "arguments": {"message": i.to_string()}})),
            ))
            .await
            .unwrap();
        assert_eq!(r.result["content"][0]["text"], i.to_string());
    }

    // The hung server is found out by the health monitor, killed and replaced.
    wait_for(
        Duration::from_secs(10),
        "hung to be killed and replaced",
        || async {
            let s = fleet
                .server_manager
                .ask(GetServerStatus {
                    name: "hung".into(),
                })
                .await
                .unwrap();
            (s.restarts >= 1 && s.last_exit.as_ref().is_some_and(|e| e.signal == Some(9)))
                .then_some(())
        },
    )
    .await;
    let health = wait_for(Duration::from_secs(10), "three probes of alpha", || async {
        let h = fleet.health.ask(GetHealth).await.unwrap();
        h.iter()
            .any(|h| h.server == "alpha" && h.probes >= 3)
            .then_some(h)
    })
    .await;
    let alpha = health.iter().find(|h| h.server == "alpha").unwrap();
    assert!(alpha.healthy && alpha.failures == 0, "{alpha:?}");
    assert!(
        !health.iter().any(|h| h.server == "missing"),
        "a failed server is not probed"
    );

    // A server's request metrics reach the collector in batches, within 100 ms: wait for the
    // N calls of `echo`. The gateway's listing requests may land in the same window, so the
    // requests in all are at least N, each with its latency.
    let echo = |m: &ServerMetrics| m.tool_calls.get("echo").copied().unwrap_or(0);
    let m = wait_for(Duration::from_secs(10), "beta's calls counted", || async {
        fleet.metrics.ask(FlushMetrics).await.ok()?;
        let m = fleet.metrics.ask(GetMetrics).await.ok()?;
        (echo(&m.servers["beta"]) >= echo(&before) + N).then_some(m)
    })
    .await;
    let beta = &m.servers["beta"];
    assert_eq!(echo(beta) - echo(&before), N);
    let ok = beta.requests_ok - before.requests_ok;
    assert!(ok >= N, "{ok} requests counted");
    assert_eq!(
        beta.request_latency.count - before.request_latency.count,
        ok
    );
    assert_eq!(beta.starts, 1);
    assert_eq!(beta.ready, 1);
    assert_eq!(m.servers["missing"].launch_failures, 1);
    assert!(m.servers["alpha"].probes_ok >= 3);
    assert!(m.servers["hung"].probes_failed >= 2);

    let status = fleet.supervisor.ask(GetFleetStatus).await.unwrap();
    assert_eq!(status.servers.len(), 4);
    assert!(status.services.iter().all(|s| s.alive && s.restarts == 0));
    let pids: Vec<u32> = status.servers.iter().filter_map(|s| s.pid).collect();
    // The hung server may be between processes (killed again, waiting out its backoff).
    assert!(pids.len() >= 2, "{pids:?}");

    let shutdown = fleet.supervisor.ask(Shutdown).await.unwrap();
    assert_eq!(shutdown.servers.len(), 4);
    fleet.supervisor.wait_for_shutdown().await;
    assert!(!fleet.server_manager.is_alive());
    assert!(!fleet.health.is_alive());
    assert!(!fleet.metrics.is_alive());
    for pid in pids {
        wait_for(
            Duration::from_secs(5),
            "server processes to end",
            || async { (!process_running(pid)).then_some(()) },
        )
        .await;
    }
}
