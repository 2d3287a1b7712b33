//! Checks that the collector's events reach a real Prometheus recorder through the `metrics`
//! facade. The recorder is process-global, so this file holds exactly one test.

use std::future::IntoFuture;
use std::time::{Duration, SystemTime};

use fleet_metrics_collector::export::LATENCY_BUCKETS;
use fleet_metrics_collector::{MetricsCollector, MetricsCollectorConfig};
use fleet_protocol::ExitInfo;
use fleet_protocol::messages::metrics::{
    ExitReason, FlushMetrics, MetricEvent, ProcessSample, RecordMetric, RequestOutcome, SessionEnd,
};
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
        tool: (method == "tools/call").then(|| "echo".to_owned()),
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
        MetricEvent::StateChanged {
            server: "a".into(),
            state: "starting",
        },
        MetricEvent::ServerStarted { server: "a".into() },
        MetricEvent::ServerReady {
            server: "a".into(),
            handshake: Duration::from_millis(120),
        },
        MetricEvent::StateChanged {
            server: "a".into(),
            state: "ready",
        },
        MetricEvent::StateChanged {
            server: "b".into(),
            state: "restarting",
        },
        MetricEvent::ServerRestarted { server: "b".into() },
        MetricEvent::ProcessSampled {
            server: "a".into(),
            sample: ProcessSample {
                resident_bytes: 4096,
                cpu_seconds: 1.5,
                open_fds: 7,
                processes: 2,
                in_flight: 3,
            },
        },
        request("made/up", 1, RequestOutcome::Error),
        request("tools/call", 9, RequestOutcome::Cancelled),
        MetricEvent::SessionCreated,
        MetricEvent::SessionCreated,
        MetricEvent::SessionEnded {
            reason: SessionEnd::Expired,
        },
        MetricEvent::HttpResponses {
            path: "/mcp",
            status: 200,
            count: 1,
        },
        MetricEvent::HttpResponses {
            path: "/mcp",
            status: 200,
            count: 1,
        },
        MetricEvent::HttpResponses {
            path: "other",
            status: 404,
            count: 1,
        },
        // Sent as a server sends its requests: in one batch.
        MetricEvent::Batch(vec![
            request("tools/call", 2, RequestOutcome::Ok),
            request("tools/call", 3, RequestOutcome::Ok),
            request("tools/call", 40, RequestOutcome::Ok),
            request("tools/list", 1, RequestOutcome::Error),
        ]),
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
                reason: None,
            },
            reason: ExitReason::Signaled,
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
    expect("# TYPE mcp_fleet_up gauge");
    expect(r#"mcp_fleet_up{server="a"} 1"#);
    expect(r#"mcp_fleet_up{server="b"} 0"#);
    expect(r#"mcp_fleet_server_state{server="a",state="ready"} 1"#);
    expect(r#"mcp_fleet_server_state{server="a",state="starting"} 0"#);
    expect(r#"mcp_fleet_server_state{server="b",state="restarting"} 1"#);
    expect(r#"mcp_fleet_server_restarts_total{server="b"} 1"#);
    expect(r#"mcp_fleet_server_restarts_total{server="a"} 0"#);
    expect(r#"mcp_fleet_server_exits_total{server="b",reason="signaled"} 1"#);
    // Every reason of a known server is there from its first event, at 0 until it happens.
    expect(r#"mcp_fleet_server_exits_total{server="a",reason="exited_error"} 0"#);
    expect(r#"mcp_fleet_server_exits_total{server="b",reason="stopped"} 0"#);
    // Methods outside MCP's request set are labelled `other`.
    expect(r#"mcp_fleet_requests_total{server="a",method="other",outcome="error"} 1"#);
    expect(r#"mcp_fleet_requests_total{server="a",method="tools/call",outcome="cancelled"} 1"#);
    expect(r#"mcp_fleet_tool_calls_total{server="a",tool="echo",outcome="ok"} 3"#);
    expect(r#"mcp_fleet_tool_calls_total{server="a",tool="echo",outcome="cancelled"} 1"#);
    expect(r#"mcp_fleet_tool_call_duration_seconds_count{server="a",tool="echo"} 4"#);
    expect(r#"mcp_fleet_process_resident_memory_bytes{server="a"} 4096"#);
    expect(r#"mcp_fleet_process_cpu_seconds{server="a"} 1.5"#);
    expect(r#"mcp_fleet_process_open_fds{server="a"} 7"#);
    expect(r#"mcp_fleet_processes{server="a"} 2"#);
    expect(r#"mcp_fleet_requests_in_flight{server="a"} 3"#);
    // An exit zeroes the process figures.
    expect(r#"mcp_fleet_process_resident_memory_bytes{server="b"} 0"#);
    expect("mcp_fleet_gateway_sessions_created_total 2");
    expect("mcp_fleet_gateway_sessions_expired_total 1");
    expect("mcp_fleet_gateway_sessions_closed_total 0");
    expect("mcp_fleet_gateway_sessions_active 1");
    expect(r#"mcp_fleet_http_responses_total{path="/mcp",status="200"} 2"#);
    expect(r#"mcp_fleet_http_responses_total{path="other",status="404"} 1"#);
    expect(r#"mcp_fleet_probes_total{server="a",outcome="failed"} 1"#);
    expect(r#"mcp_fleet_stderr_lines_total{server="a"} 12"#);
    expect(r#"mcp_fleet_actor_restarts_total{actor="health-monitor"} 1"#);
    // The messages sent (a batch is one) plus the FlushMetrics, reported by the flush.
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
    bucket("0.01", 3);
    bucket("0.025", 3);
    bucket("0.05", 4);
    bucket("60", 4);
    bucket("+Inf", 4);
    expect(r#"mcp_fleet_request_duration_seconds_count{server="a",method="tools/call"} 4"#);
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
