//! Records metric events through the `metrics` facade under Prometheus-style `mcp_fleet_*` names.
//!
//! This crate only uses the facade; runtime installs the recorder (the Prometheus exporter, with
//! [`LATENCY_BUCKETS`] for the `*_duration_seconds` histograms). Names already carry their unit
//! and `_total` suffixes, so the exporter's unit suffixing must stay off.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `mcp_fleet_server_starts_total` | counter | `server` |
//! | `mcp_fleet_server_ready_total` | counter | `server` |
//! | `mcp_fleet_server_launch_failures_total` | counter | `server` |
//! | `mcp_fleet_server_stops_total` | counter | `server` |
//! | `mcp_fleet_server_exits_total` | counter | `server`, `expected` (`true`/`false`) |
//! | `mcp_fleet_server_up` | gauge | `server` (1 on ready; 0 on stop, exit, launch failure) |
//! | `mcp_fleet_handshake_duration_seconds` | histogram | `server` |
//! | `mcp_fleet_probes_total` | counter | `server`, `outcome` (`ok`/`failed`) |
//! | `mcp_fleet_probe_duration_seconds` | histogram | `server` |
//! | `mcp_fleet_requests_total` | counter | `server`, `method`, `outcome` (`ok`/`error`/`timeout`/`failed`) |
//! | `mcp_fleet_request_duration_seconds` | histogram | `server`, `method` |
//! | `mcp_fleet_bad_stdout_lines_total` | counter | `server` |
//! | `mcp_fleet_stderr_lines_total` | counter | `server` |
//! | `mcp_fleet_actor_messages_total` | counter | `actor` |
//! | `mcp_fleet_actor_restarts_total` | counter | `actor` |

use fleet_protocol::messages::metrics::MetricEvent;
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

pub const SERVER_STARTS: &str = "mcp_fleet_server_starts_total";
pub const SERVER_READY: &str = "mcp_fleet_server_ready_total";
pub const SERVER_LAUNCH_FAILURES: &str = "mcp_fleet_server_launch_failures_total";
pub const SERVER_STOPS: &str = "mcp_fleet_server_stops_total";
pub const SERVER_EXITS: &str = "mcp_fleet_server_exits_total";
pub const SERVER_UP: &str = "mcp_fleet_server_up";
pub const HANDSHAKE_DURATION: &str = "mcp_fleet_handshake_duration_seconds";
pub const PROBES: &str = "mcp_fleet_probes_total";
pub const PROBE_DURATION: &str = "mcp_fleet_probe_duration_seconds";
pub const REQUESTS: &str = "mcp_fleet_requests_total";
pub const REQUEST_DURATION: &str = "mcp_fleet_request_duration_seconds";
pub const BAD_STDOUT_LINES: &str = "mcp_fleet_bad_stdout_lines_total";
pub const STDERR_LINES: &str = "mcp_fleet_stderr_lines_total";
pub const ACTOR_MESSAGES: &str = "mcp_fleet_actor_messages_total";
pub const ACTOR_RESTARTS: &str = "mcp_fleet_actor_restarts_total";

/// Histogram bucket bounds in seconds for every `*_duration_seconds` metric: from 100 µs (a
/// local stdio round trip) to 60 s (a slow tool call near a typical timeout).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Registers help text and units for every metric with the installed recorder.
pub fn describe() {
    describe_counter!(SERVER_STARTS, Unit::Count, "Server processes spawned");
    describe_counter!(
        SERVER_READY,
        Unit::Count,
        "Servers that finished the MCP handshake"
    );
    describe_counter!(
        SERVER_LAUNCH_FAILURES,
        Unit::Count,
        "Servers that could not be spawned or failed the MCP handshake"
    );
    describe_counter!(SERVER_STOPS, Unit::Count, "Servers stopped on request");
    describe_counter!(
        SERVER_EXITS,
        Unit::Count,
        "Server processes that ended, by whether a stop asked for it"
    );
    describe_gauge!(
        SERVER_UP,
        Unit::Count,
        "Whether the server is ready (1) or down (0)"
    );
    describe_histogram!(
        HANDSHAKE_DURATION,
        Unit::Seconds,
        "Time from spawn to the end of the MCP handshake"
    );
    describe_counter!(PROBES, Unit::Count, "Health probes, by outcome");
    describe_histogram!(
        PROBE_DURATION,
        Unit::Seconds,
        "Health probe latency, successful or failed"
    );
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "Requests to servers, by method and outcome"
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Request latency, by method"
    );
    describe_counter!(
        BAD_STDOUT_LINES,
        Unit::Count,
        "Lines on a server's stdout that were not JSON-RPC"
    );
    describe_counter!(STDERR_LINES, Unit::Count, "Lines servers wrote to stderr");
    describe_counter!(
        ACTOR_MESSAGES,
        Unit::Count,
        "Messages handled, by actor kind"
    );
    describe_counter!(
        ACTOR_RESTARTS,
        Unit::Count,
        "Service actors restarted by their supervisor after a panic"
    );
}

/// Records one event through the facade. Never blocks; a no-op when no recorder is installed.
pub fn record(event: &MetricEvent) {
    match event {
        MetricEvent::ServerStarted { server } => {
            counter!(SERVER_STARTS, "server" => server.clone()).increment(1);
        }
        MetricEvent::ServerReady { server, handshake } => {
            counter!(SERVER_READY, "server" => server.clone()).increment(1);
            gauge!(SERVER_UP, "server" => server.clone()).set(1.0);
            histogram!(HANDSHAKE_DURATION, "server" => server.clone())
                .record(handshake.as_secs_f64());
        }
        MetricEvent::LaunchFailed { server } => {
            counter!(SERVER_LAUNCH_FAILURES, "server" => server.clone()).increment(1);
            gauge!(SERVER_UP, "server" => server.clone()).set(0.0);
        }
        MetricEvent::ServerStopped { server } => {
            counter!(SERVER_STOPS, "server" => server.clone()).increment(1);
            gauge!(SERVER_UP, "server" => server.clone()).set(0.0);
        }
        MetricEvent::ServerExited {
            server, expected, ..
        } => {
            let expected = if *expected { "true" } else { "false" };
            counter!(SERVER_EXITS, "server" => server.clone(), "expected" => expected).increment(1);
            gauge!(SERVER_UP, "server" => server.clone()).set(0.0);
        }
        MetricEvent::Probe {
            server,
            latency,
            ok,
        } => {
            let outcome = if *ok { "ok" } else { "failed" };
            counter!(PROBES, "server" => server.clone(), "outcome" => outcome).increment(1);
            histogram!(PROBE_DURATION, "server" => server.clone()).record(latency.as_secs_f64());
        }
        MetricEvent::Request {
            server,
            method,
            latency,
            outcome,
        } => {
            counter!(
                REQUESTS,
                "server" => server.clone(),
                "method" => method.clone(),
                "outcome" => outcome.as_str()
            )
            .increment(1);
            histogram!(REQUEST_DURATION, "server" => server.clone(), "method" => method.clone())
                .record(latency.as_secs_f64());
        }
        MetricEvent::BadStdoutLine { server } => {
            counter!(BAD_STDOUT_LINES, "server" => server.clone()).increment(1);
        }
        MetricEvent::StderrLines { server, count } => {
            counter!(STDERR_LINES, "server" => server.clone()).increment(*count);
        }
        MetricEvent::MessagesHandled { actor, count } => {
            counter!(ACTOR_MESSAGES, "actor" => actor.clone()).increment(*count);
        }
        MetricEvent::ActorRestarted { actor } => {
            counter!(ACTOR_RESTARTS, "actor" => actor.clone()).increment(1);
        }
    }
}
