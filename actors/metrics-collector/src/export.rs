//! Records metric events through the `metrics` facade under Prometheus-style `mcp_fleet_*` names.
//!
//! This crate only uses the facade; runtime installs the recorder (the Prometheus exporter, with
//! [`LATENCY_BUCKETS`] for the `*_duration_seconds` histograms) before the collector starts.
//! Names already carry their unit and `_total` suffixes, so the exporter's unit suffixing must
//! stay off. README.md's metrics table documents each name, its labels and its meaning.
//!
//! The [`Exporter`] keeps a handle for every series it has recorded, so recording an event is a
//! map lookup and an atomic add, not a registry lookup with freshly built labels. A server's
//! fixed series (`up`, each `state`, each exit `reason`, the counters) are all registered at the
//! server's first event, so they read 0 rather than being absent until something happens.
//!
//! Label values are bounded: `server` and `actor` come from the configuration, `method` is one
//! of [`methods::REQUESTS`] or `other`, `tool` is a name the server declared or
//! [`UNDECLARED_TOOL`](fleet_protocol::messages::metrics::UNDECLARED_TOOL), and `state`,
//! `reason`, `outcome` and `status` are closed sets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use fleet_protocol::ServerState;
use fleet_protocol::mcp::methods;
use fleet_protocol::messages::metrics::{
    ExitReason, MetricEvent, ProcessSample, RequestOutcome, SessionEnd,
};
use metrics::{
    Counter, Gauge, Histogram, Recorder, Unit, counter, describe_counter, describe_gauge,
    describe_histogram, gauge, histogram,
};

use crate::actor::ACTOR_NAME;

pub const UP: &str = "mcp_fleet_up";
pub const SERVER_STATE: &str = "mcp_fleet_server_state";
pub const SERVER_STARTS: &str = "mcp_fleet_server_starts_total";
pub const SERVER_READY: &str = "mcp_fleet_server_ready_total";
pub const SERVER_LAUNCH_FAILURES: &str = "mcp_fleet_server_launch_failures_total";
pub const SERVER_STOPS: &str = "mcp_fleet_server_stops_total";
pub const SERVER_RESTARTS: &str = "mcp_fleet_server_restarts_total";
pub const SERVER_EXITS: &str = "mcp_fleet_server_exits_total";
pub const HANDSHAKE_DURATION: &str = "mcp_fleet_handshake_duration_seconds";
pub const PROBES: &str = "mcp_fleet_probes_total";
pub const PROBE_DURATION: &str = "mcp_fleet_probe_duration_seconds";
pub const REQUESTS: &str = "mcp_fleet_requests_total";
pub const REQUEST_DURATION: &str = "mcp_fleet_request_duration_seconds";
pub const TOOL_CALLS: &str = "mcp_fleet_tool_calls_total";
pub const TOOL_CALL_DURATION: &str = "mcp_fleet_tool_call_duration_seconds";
pub const REQUESTS_IN_FLIGHT: &str = "mcp_fleet_requests_in_flight";
pub const BAD_STDOUT_LINES: &str = "mcp_fleet_bad_stdout_lines_total";
pub const STDERR_LINES: &str = "mcp_fleet_stderr_lines_total";
pub const PROCESS_RESIDENT_MEMORY: &str = "mcp_fleet_process_resident_memory_bytes";
pub const PROCESS_CPU: &str = "mcp_fleet_process_cpu_seconds";
pub const PROCESS_OPEN_FDS: &str = "mcp_fleet_process_open_fds";
pub const PROCESS_COUNT: &str = "mcp_fleet_processes";
pub const SESSIONS_ACTIVE: &str = "mcp_fleet_gateway_sessions_active";
pub const SESSIONS_CREATED: &str = "mcp_fleet_gateway_sessions_created_total";
pub const SESSIONS_EXPIRED: &str = "mcp_fleet_gateway_sessions_expired_total";
pub const SESSIONS_CLOSED: &str = "mcp_fleet_gateway_sessions_closed_total";
pub const HTTP_RESPONSES: &str = "mcp_fleet_http_responses_total";
pub const ACTOR_MESSAGES: &str = "mcp_fleet_actor_messages_total";
pub const ACTOR_RESTARTS: &str = "mcp_fleet_actor_restarts_total";
pub const BUILD_INFO: &str = "mcp_fleet_build_info";

/// Histogram bucket bounds in seconds for every `*_duration_seconds` metric: from 100 µs (a
/// local stdio round trip) to 60 s (a slow tool call near a typical timeout).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// The `method` label of a request method: the method itself when it is an MCP request method,
/// `other` for anything else.
pub fn method_label(method: &str) -> &'static str {
    METHOD_LABELS[method_index(method)]
}

/// Every `method` label: the MCP request methods, then `other`.
const METHOD_LABELS: [&str; METHODS] = {
    let mut labels = ["other"; METHODS];
    let mut i = 0;
    while i < methods::REQUESTS.len() {
        labels[i] = methods::REQUESTS[i];
        i += 1;
    }
    labels
};
const METHODS: usize = methods::REQUESTS.len() + 1;

/// A tool's name as a label value: a backslash, a quote or a control character becomes `_`.
/// The exporter takes `\\` and `\"` in a value as already escaped, so `x\y` and `x\\y` would
/// share one series (each overwriting the other's count), and a raw CR breaks some parsers.
/// Such a name shares its series with the one that has `_` in those places, whose counts add up.
pub fn tool_label(tool: &str) -> String {
    tool.chars()
        .map(|c| {
            if c == '\\' || c == '"' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The position of a method's label in [`METHOD_LABELS`].
fn method_index(method: &str) -> usize {
    methods::REQUESTS
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHODS - 1)
}

const OUTCOMES: usize = 5;

fn outcome_index(outcome: RequestOutcome) -> usize {
    match outcome {
        RequestOutcome::Ok => 0,
        RequestOutcome::Error => 1,
        RequestOutcome::Timeout => 2,
        RequestOutcome::Cancelled => 3,
        RequestOutcome::Failed => 4,
    }
}

/// A handle made on first use.
type Lazy<T> = Option<T>;

/// The recorder [`describe_once`] last described the metrics to, by address; 0 before the first.
static DESCRIBED: AtomicUsize = AtomicUsize::new(0);

/// Registers help text and units with the current recorder unless that was done already.
///
/// Descriptions belong to the recorder, not to a collector, so a collector started or restarted
/// under the same recorder has nothing to add; describing again cost each start some thirty name
/// sanitizations, allocations and write locks in the Prometheus recorder, a third of a
/// collector's spawn. The recorder is told apart by address, so one installed after an earlier
/// collector started (or a test's own) still gets the descriptions. Two collectors starting at
/// once may both describe; that is harmless.
pub fn describe_once() {
    let current = metrics::with_recorder(|r| std::ptr::from_ref::<dyn Recorder>(r).addr());
    if DESCRIBED.load(Ordering::Relaxed) != current {
        describe();
        DESCRIBED.store(current, Ordering::Relaxed);
    }
}

/// Registers help text and units for every metric with the installed recorder.
pub fn describe() {
    describe_gauge!(UP, "1 while the server is ready, 0 in every other state");
    describe_gauge!(
        SERVER_STATE,
        "1 for the server's current state, 0 for the other states"
    );
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
        SERVER_RESTARTS,
        Unit::Count,
        "Servers relaunched by the restart policy after an exit nobody asked for"
    );
    describe_counter!(
        SERVER_EXITS,
        Unit::Count,
        "Server processes that ended, by reason"
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
        TOOL_CALLS,
        Unit::Count,
        "tools/call requests, by tool the server declared and outcome"
    );
    describe_histogram!(
        TOOL_CALL_DURATION,
        Unit::Seconds,
        "tools/call latency, by tool the server declared"
    );
    describe_gauge!(
        REQUESTS_IN_FLIGHT,
        "Requests sent to the server and not answered yet (sampled)"
    );
    describe_counter!(
        BAD_STDOUT_LINES,
        Unit::Count,
        "Lines on a server's stdout that were not JSON-RPC"
    );
    describe_counter!(STDERR_LINES, Unit::Count, "Lines servers wrote to stderr");
    describe_gauge!(
        PROCESS_RESIDENT_MEMORY,
        Unit::Bytes,
        "Resident memory of the server's process and its descendants (sampled; 0 once exited)"
    );
    describe_gauge!(
        PROCESS_CPU,
        Unit::Seconds,
        "User and system CPU seconds used by the server's current process tree; starts again at \
         0 with each new process, so read it with rate()"
    );
    describe_gauge!(
        PROCESS_OPEN_FDS,
        "Open file descriptors of the server's process tree (sampled)"
    );
    describe_gauge!(
        PROCESS_COUNT,
        "Processes in the server's process tree, its own included (sampled)"
    );
    describe_gauge!(SESSIONS_ACTIVE, "Open MCP client sessions of the gateway");
    describe_counter!(SESSIONS_CREATED, Unit::Count, "MCP client sessions created");
    describe_counter!(
        SESSIONS_EXPIRED,
        Unit::Count,
        "Sessions ended by the idle TTL or the initialize timeout"
    );
    describe_counter!(
        SESSIONS_CLOSED,
        Unit::Count,
        "Sessions the client ended with DELETE"
    );
    describe_counter!(
        HTTP_RESPONSES,
        Unit::Count,
        "HTTP responses of the listener, by path and status code"
    );
    describe_counter!(
        ACTOR_MESSAGES,
        Unit::Count,
        "Messages handled, by actor kind"
    );
    describe_counter!(
        ACTOR_RESTARTS,
        Unit::Count,
        "Service actors restarted by their supervisor after a failure"
    );
    describe_gauge!(BUILD_INFO, "Always 1; the `version` label is mcp-fleet's");
}

/// Handles of one server's series.
struct ServerHandles {
    name: String,
    up: Gauge,
    states: [Gauge; ServerState::NAMES.len()],
    starts: Counter,
    ready: Counter,
    launch_failures: Counter,
    stops: Counter,
    restarts: Counter,
    exits: [Counter; ExitReason::ALL.len()],
    handshake: Histogram,
    probes_ok: Counter,
    probes_failed: Counter,
    probe_duration: Histogram,
    bad_stdout: Counter,
    stderr: Counter,
    in_flight: Gauge,
    resident: Gauge,
    cpu: Gauge,
    fds: Gauge,
    processes: Gauge,
    /// By method index, then outcome index: arrays, so a request costs no hashing.
    requests: [[Lazy<Counter>; OUTCOMES]; METHODS],
    request_duration: [Lazy<Histogram>; METHODS],
    tools: HashMap<String, ToolHandles>,
}

struct ToolHandles {
    duration: Histogram,
    calls: [Lazy<Counter>; OUTCOMES],
}

impl ServerHandles {
    fn new(server: &str) -> Self {
        let s = || server.to_owned();
        ServerHandles {
            name: s(),
            up: gauge!(UP, "server" => s()),
            states: ServerState::NAMES
                .map(|state| gauge!(SERVER_STATE, "server" => s(), "state" => state)),
            starts: counter!(SERVER_STARTS, "server" => s()),
            ready: counter!(SERVER_READY, "server" => s()),
            launch_failures: counter!(SERVER_LAUNCH_FAILURES, "server" => s()),
            stops: counter!(SERVER_STOPS, "server" => s()),
            restarts: counter!(SERVER_RESTARTS, "server" => s()),
            exits: ExitReason::ALL
                .map(|r| counter!(SERVER_EXITS, "server" => s(), "reason" => r.as_str())),
            handshake: histogram!(HANDSHAKE_DURATION, "server" => s()),
            probes_ok: counter!(PROBES, "server" => s(), "outcome" => "ok"),
            probes_failed: counter!(PROBES, "server" => s(), "outcome" => "failed"),
            probe_duration: histogram!(PROBE_DURATION, "server" => s()),
            bad_stdout: counter!(BAD_STDOUT_LINES, "server" => s()),
            stderr: counter!(STDERR_LINES, "server" => s()),
            in_flight: gauge!(REQUESTS_IN_FLIGHT, "server" => s()),
            resident: gauge!(PROCESS_RESIDENT_MEMORY, "server" => s()),
            cpu: gauge!(PROCESS_CPU, "server" => s()),
            fds: gauge!(PROCESS_OPEN_FDS, "server" => s()),
            processes: gauge!(PROCESS_COUNT, "server" => s()),
            requests: Default::default(),
            request_duration: Default::default(),
            tools: HashMap::new(),
        }
    }

    fn set_process(&self, p: &ProcessSample) {
        self.resident.set(p.resident_bytes as f64);
        self.cpu.set(p.cpu_seconds);
        self.fds.set(p.open_fds as f64);
        self.processes.set(p.processes as f64);
        self.in_flight.set(p.in_flight as f64);
    }

    fn request(&mut self, method: &str, tool: Option<&str>, seconds: f64, outcome: RequestOutcome) {
        let m = method_index(method);
        let o = outcome_index(outcome);
        let name = &self.name;
        let label = METHOD_LABELS[m];
        self.requests[m][o]
            .get_or_insert_with(|| {
                counter!(REQUESTS, "server" => name.clone(), "method" => label, "outcome" => outcome.as_str())
            })
            .increment(1);
        self.request_duration[m]
            .get_or_insert_with(
                || histogram!(REQUEST_DURATION, "server" => name.clone(), "method" => label),
            )
            .record(seconds);
        let Some(tool) = tool else { return };
        let record = |t: &mut ToolHandles| {
            t.duration.record(seconds);
            t.calls[o]
                .get_or_insert_with(|| {
                    counter!(TOOL_CALLS, "server" => name.clone(), "tool" => tool_label(tool), "outcome" => outcome.as_str())
                })
                .increment(1);
        };
        match self.tools.get_mut(tool) {
            Some(t) => record(t),
            None => {
                let mut t = ToolHandles {
                    duration: histogram!(TOOL_CALL_DURATION, "server" => name.clone(), "tool" => tool_label(tool)),
                    calls: Default::default(),
                };
                record(&mut t);
                self.tools.insert(tool.to_owned(), t);
            }
        }
    }

    /// Records an event about this server.
    fn record(&mut self, event: &MetricEvent) {
        match event {
            MetricEvent::ServerStarted { .. } => self.starts.increment(1),
            MetricEvent::ServerReady { handshake, .. } => {
                self.ready.increment(1);
                self.handshake.record(handshake.as_secs_f64());
            }
            MetricEvent::LaunchFailed { .. } => self.launch_failures.increment(1),
            MetricEvent::ServerStopped { .. } => self.stops.increment(1),
            MetricEvent::ServerExited { reason, .. } => {
                if let Some(i) = ExitReason::ALL.iter().position(|r| r == reason) {
                    self.exits[i].increment(1);
                }
                self.set_process(&ProcessSample::default());
            }
            MetricEvent::ServerRestarted { .. } => self.restarts.increment(1),
            MetricEvent::StateChanged { state, .. } => {
                for (gauge, name) in self.states.iter().zip(ServerState::NAMES) {
                    gauge.set(if name == *state { 1.0 } else { 0.0 });
                }
                self.up.set(if *state == "ready" { 1.0 } else { 0.0 });
            }
            MetricEvent::ProcessSampled { sample, .. } => self.set_process(sample),
            MetricEvent::Probe { latency, ok, .. } => {
                if *ok {
                    self.probes_ok.increment(1);
                } else {
                    self.probes_failed.increment(1);
                }
                self.probe_duration.record(latency.as_secs_f64());
            }
            MetricEvent::Request {
                method,
                tool,
                latency,
                outcome,
                ..
            } => self.request(method, tool.as_deref(), latency.as_secs_f64(), *outcome),
            MetricEvent::BadStdoutLine { .. } => self.bad_stdout.increment(1),
            MetricEvent::StderrLines { count, .. } => self.stderr.increment(*count),
            _ => {}
        }
    }
}

/// Handles of the gateway's series.
struct GatewayHandles {
    active: Gauge,
    created: Counter,
    expired: Counter,
    closed: Counter,
    http: HashMap<(&'static str, u16), Counter>,
}

/// Records events through the facade, keeping a handle per series. Never blocks; without an
/// installed recorder every handle is a no-op.
pub struct Exporter {
    servers: HashMap<String, ServerHandles>,
    actors: HashMap<String, (Counter, Counter)>,
    gateway: GatewayHandles,
    /// The collector's own message count, which it reports itself at every flush and every
    /// second: a handle of its own spares each report the actor map's lookup.
    own_messages: Lazy<Counter>,
}

impl Default for Exporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Exporter {
    /// Registers the build information and the gateway's series (at 0); servers' and actors'
    /// come with their first event.
    pub fn new() -> Self {
        gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        Exporter {
            servers: HashMap::new(),
            actors: HashMap::new(),
            gateway: GatewayHandles {
                active: gauge!(SESSIONS_ACTIVE),
                created: counter!(SESSIONS_CREATED),
                expired: counter!(SESSIONS_EXPIRED),
                closed: counter!(SESSIONS_CLOSED),
                http: HashMap::new(),
            },
            own_messages: None,
        }
    }

    /// Records `MessagesHandled { actor: ACTOR_NAME, count }` without the event: the
    /// collector's own count.
    pub fn record_own_messages(&mut self, count: u64) {
        self.own_messages
            .get_or_insert_with(|| counter!(ACTOR_MESSAGES, "actor" => ACTOR_NAME))
            .increment(count);
    }

    /// Records `event` with `server`'s handles, made at its first event.
    fn record_server(&mut self, server: &str, event: &MetricEvent) {
        match self.servers.get_mut(server) {
            Some(s) => s.record(event),
            None => {
                let mut s = ServerHandles::new(server);
                s.record(event);
                self.servers.insert(server.to_owned(), s);
            }
        }
    }

    fn actor(&mut self, actor: &str) -> &(Counter, Counter) {
        if !self.actors.contains_key(actor) {
            let handles = (
                counter!(ACTOR_MESSAGES, "actor" => actor.to_owned()),
                counter!(ACTOR_RESTARTS, "actor" => actor.to_owned()),
            );
            self.actors.insert(actor.to_owned(), handles);
        }
        &self.actors[actor]
    }

    /// Records one event.
    pub fn record(&mut self, event: &MetricEvent) {
        match event {
            MetricEvent::ServerStarted { server }
            | MetricEvent::ServerReady { server, .. }
            | MetricEvent::LaunchFailed { server }
            | MetricEvent::ServerStopped { server }
            | MetricEvent::ServerExited { server, .. }
            | MetricEvent::ServerRestarted { server }
            | MetricEvent::StateChanged { server, .. }
            | MetricEvent::ProcessSampled { server, .. }
            | MetricEvent::Probe { server, .. }
            | MetricEvent::Request { server, .. }
            | MetricEvent::BadStdoutLine { server }
            | MetricEvent::StderrLines { server, .. } => self.record_server(server, event),
            MetricEvent::MessagesHandled { actor, count } => self.actor(actor).0.increment(*count),
            MetricEvent::ActorRestarted { actor } => self.actor(actor).1.increment(1),
            MetricEvent::SessionCreated => {
                self.gateway.created.increment(1);
                self.gateway.active.increment(1.0);
            }
            MetricEvent::SessionEnded { reason } => {
                match reason {
                    SessionEnd::Expired => self.gateway.expired.increment(1),
                    SessionEnd::Closed => self.gateway.closed.increment(1),
                }
                self.gateway.active.decrement(1.0);
            }
            MetricEvent::HttpResponses {
                path,
                status,
                count,
            } => self
                .gateway
                .http
                .entry((*path, *status))
                .or_insert_with(
                    || counter!(HTTP_RESPONSES, "path" => *path, "status" => status.to_string()),
                )
                .increment(*count),
            MetricEvent::Batch(events) => events.iter().for_each(|e| self.record(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tool_label_has_nothing_the_exposition_would_misread() {
        assert_eq!(super::tool_label("echo"), "echo");
        assert_eq!(super::tool_label("x\\y\"z\r\n"), "x_y_z__");
        assert_eq!(super::tool_label("café.v2"), "café.v2");
    }
}
