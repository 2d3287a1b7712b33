//! Checks that the collector's events reach a real Prometheus recorder through the `metrics`
//! facade. The recorder is process-global, so this file holds exactly one test.

use std::future::IntoFuture;
use std::time::{Duration, SystemTime};

use fleet_metrics_collector::export::LATENCY_BUCKETS;
use fleet_metrics_collector::{MetricsCollector, MetricsCollectorConfig};
use fleet_protocol::ExitInfo;
use fleet_protocol::messages::metrics::{FlushMetrics, MetricEvent, RecordMetric, RequestOutcome};
use kameo::actor::Spawn;
use metrics_exporter_prometheus::PrometheusBuilder;

const DEADLINE: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl IntoFuture<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {DEADLINE:?}"),
    }
}

fn request(method: &str, latency_ms: u64, outcome: RequestOutcome) -> MetricEvent {
    MetricEvent::Request {
        server: "a".to_owned(),
        method: method.to_owned(),
        latency: Duration::from_millis(latency_ms),
        outcome,
    }
}

#[tokio::test]
async fn events_reach_the_prometheus_exposition() {
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .expect("the latency buckets are valid")
        .install_recorder()
        .expect("no other recorder is installed in this test binary");

    // Spawned after the recorder is installed, so its descriptions register with it.
    let actor = MetricsCollector::spawn(MetricsCollectorConfig {
        report_every: Duration::from_secs(3600),
    });
    let events = vec![
        MetricEvent::ServerStarted { server: "a".into() },
        MetricEvent::ServerReady {
            server: "a".into(),
            handshake: Duration::from_millis(120),
        },
        request("tools/call", 2, RequestOutcome::Ok),
        request("tools/call", 3, RequestOutcome::Ok),
        request("tools/call", 40, RequestOutcome::Ok),
        request("tools/list", 1, RequestOutcome::Error),
        MetricEvent::Probe {
            server: "a".into(),
            latency: Duration::from_millis(5),
            ok: false,
        },
        MetricEvent::StderrLines {
            server: "a".into(),
            count: 12,
        },
        MetricEvent::ServerExited {
            server: "b".into(),
            exit: ExitInfo {
                code: None,
                signal: Some(9),
                at: SystemTime::UNIX_EPOCH,
            },
            expected: false,
        },
        MetricEvent::ActorRestarted {
            actor: "health-monitor".into(),
        },
    ];
    let sent = events.len();
    for event in events {
        within("tell RecordMetric", actor.tell(RecordMetric { event }))
            .await
            .expect("the collector takes RecordMetric");
    }
    within("ask FlushMetrics", actor.ask(FlushMetrics))
        .await
        .expect("the collector answers FlushMetrics");

    let text = handle.render();
    let expect = |line: &str| {
        assert!(
            text.lines().any(|l| l == line),
            "missing line `{line}` in exposition:\n{text}"
        );
    };

    expect("# TYPE mcp_fleet_requests_total counter");
    expect("# HELP mcp_fleet_requests_total Requests to servers, by method and outcome");
    expect(r#"mcp_fleet_requests_total{server="a",method="tools/call",outcome="ok"} 3"#);
    expect(r#"mcp_fleet_requests_total{server="a",method="tools/list",outcome="error"} 1"#);
    expect(r#"mcp_fleet_server_starts_total{server="a"} 1"#);
    expect(r#"mcp_fleet_server_ready_total{server="a"} 1"#);
    expect("# TYPE mcp_fleet_server_up gauge");
    expect(r#"mcp_fleet_server_up{server="a"} 1"#);
    expect(r#"mcp_fleet_server_up{server="b"} 0"#);
    expect(r#"mcp_fleet_server_exits_total{server="b",expected="false"} 1"#);
    expect(r#"mcp_fleet_probes_total{server="a",outcome="failed"} 1"#);
    expect(r#"mcp_fleet_stderr_lines_total{server="a"} 12"#);
    expect(r#"mcp_fleet_actor_restarts_total{actor="health-monitor"} 1"#);
    // The sent events plus the FlushMetrics, reported by the flush.
    expect(&format!(
        r#"mcp_fleet_actor_messages_total{{actor="metrics-collector"}} {}"#,
        sent + 1
    ));

    // Histograms, with the configured buckets (cumulative counts).
    expect("# TYPE mcp_fleet_request_duration_seconds histogram");
    let bucket = |le: &str, n: u64| {
        expect(&format!(
            r#"mcp_fleet_request_duration_seconds_bucket{{server="a",method="tools/call",le="{le}"}} {n}"#
        ));
    };
    bucket("0.001", 0);
    bucket("0.0025", 1);
    bucket("0.005", 2);
    bucket("0.025", 2);
    bucket("0.05", 3);
    bucket("60", 3);
    bucket("+Inf", 3);
    expect(r#"mcp_fleet_request_duration_seconds_count{server="a",method="tools/call"} 3"#);
    for le in LATENCY_BUCKETS {
        let prefix = format!(
            r#"mcp_fleet_request_duration_seconds_bucket{{server="a",method="tools/list",le="{le}"}} "#
        );
        assert!(
            text.lines().any(|l| l.starts_with(&prefix)),
            "missing bucket {le} in exposition:\n{text}"
        );
    }
    expect(r#"mcp_fleet_handshake_duration_seconds_bucket{server="a",le="0.1"} 0"#);
    expect(r#"mcp_fleet_handshake_duration_seconds_bucket{server="a",le="0.25"} 1"#);
    expect(r#"mcp_fleet_probe_duration_seconds_count{server="a"} 1"#);
    expect("# HELP mcp_fleet_probe_duration_seconds Health probe latency, successful or failed");
}
