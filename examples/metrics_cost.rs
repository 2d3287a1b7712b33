//! What recording one request's metrics costs, in ns: `cargo run --release --example metrics_cost`.
//!
//! Each request to an MCP server produces one `MetricEvent::Request`, which the server actor sends
//! to the metrics collector with `tell(RecordMetric { event }).try_send()` (since 386debc, in a
//! `MetricEvent::Batch` with others; this example sends one event per message). The collector applies it to
//! its `Aggregates` and records it through its `Exporter` (the `metrics` facade, into the
//! Prometheus recorder). The example installs that recorder as the `mcp-fleet` binary does
//! (`fleet_runtime::telemetry::install_prometheus()` inside a multi-threaded tokio runtime, with
//! jemalloc as the allocator) and measures, in one run (about 20 s in release mode):
//!
//! - (0) building the event as the server actor does: `String` clones of server, method, tool;
//! - (1) `Aggregates::apply` alone, for a `tools/call` event with a tool label;
//! - (2) `Exporter::record` alone (handles cached by a warm-up), same event; (1+2) both;
//! - (3) end to end: one sender task builds N = 1,000,000 events and sends each with
//!   `tell(..).try_send()` through a `Recipient<RecordMetric>` to a running `MetricsCollector`
//!   with mcp-fleet's mailbox (unbounded), then `ask(FlushMetrics)`; wall time / N. A full
//!   mailbox falls back to `tell(..).await` and is counted. (3b) the same with kameo's default
//!   bounded mailbox (64); (3c) the sender yields after each send, so the collector wakes up for
//!   each event, as when requests are few;
//! - (4) the baseline: the same events through a bare `tokio::sync::mpsc` unbounded channel to a
//!   task that only drops them; (4c) the same, yielding after each send.
//!
//! After every run of (3), the collector's `GetMetrics` and the Prometheus counters must show
//! exactly the N requests sent, or the example exits non-zero. Each row is the median and minimum
//! of 5 runs (after a warm-up); a CPU column gives the whole process's CPU time per request
//! (10 ms resolution). As an aside it times one scrape (`PrometheusHandle::render`) with
//! 100 servers × 5 tools of series. No network, no child process. Figures vary with the load of
//! the machine: run it on an idle one.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fleet_metrics_collector::export::{self, Exporter};
use fleet_metrics_collector::{Aggregates, MetricsCollector, MetricsCollectorConfig};
use fleet_protocol::mcp::methods;
use fleet_protocol::messages::metrics::{
    FlushMetrics, GetMetrics, MetricEvent, RecordMetric, RequestOutcome,
};
use kameo::actor::{ActorRef, Recipient, Spawn};
use kameo::error::SendError;
use kameo::mailbox;
use metrics_exporter_prometheus::PrometheusHandle;

/// The allocator of the `mcp-fleet` binary: the event's `String`s are allocated and freed with it.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Events per end-to-end and channel run.
const N: u64 = 1_000_000;
/// Events per run when the sender yields after each one.
const N_YIELDING: u64 = 200_000;
/// Iterations per run of the single-threaded loops.
const MICRO_N: u64 = 2_000_000;
/// Warm-up iterations before each single-threaded loop.
const MICRO_WARMUP: u64 = 100_000;
/// Events sent to each new collector (under another server name) before the timed run.
const COLLECTOR_WARMUP: u64 = 20_000;
/// Runs per measurement.
const REPEATS: usize = 5;
/// kameo's default mailbox capacity (`Spawn::spawn`).
const KAMEO_DEFAULT_MAILBOX: usize = 64;
const SERVER: &str = "github";
const TOOL: &str = "search_repositories";
const LATENCY: Duration = Duration::from_micros(1234);
const RENDER_SERVERS: usize = 100;
const RENDER_TOOLS: usize = 5;

/// The event the server actor sends at the end of a `tools/call`; it clones its own `String`s
/// (`to_owned` of a `&str` costs the same: one allocation and a copy each).
fn request_event(server: &str, method: &str, tool: &str) -> MetricEvent {
    MetricEvent::Request {
        server: server.to_owned(),
        method: method.to_owned(),
        tool: Some(tool.to_owned()),
        latency: LATENCY,
        outcome: RequestOutcome::Ok,
    }
}

/// The measurements of one row, in ns per operation.
struct Row {
    label: String,
    ops: u64,
    wall_ns: Vec<f64>,
    /// Process CPU time per operation (all threads), for the multi-threaded rows.
    cpu_ns: Option<Vec<f64>>,
    note: String,
}

impl Row {
    fn single(label: &str, ops: u64, wall_ns: Vec<f64>) -> Row {
        Row {
            label: label.to_owned(),
            ops,
            wall_ns,
            cpu_ns: None,
            note: String::new(),
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// User + system CPU time of the whole process (every thread), from `/proc/self/stat`, in
/// clock ticks of 10 ms (USER_HZ is 100 on Linux).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), counted from the state (field 3) at index 0.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim())
        .to_owned();
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    format!("nproc = {cpus}, CPU: {model}, load average (1 min) at start: {load}")
}

/// Times `iters` calls of `f` after `MICRO_WARMUP` untimed ones; ns per call.
fn time_loop(iters: u64, mut f: impl FnMut()) -> f64 {
    for _ in 0..MICRO_WARMUP {
        f();
    }
    let begin = Instant::now();
    for _ in 0..iters {
        f();
    }
    begin.elapsed().as_nanos() as f64 / iters as f64
}

/// The value of the first sample line of `name` whose labels contain every one of `labels`.
fn prometheus_value(render: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    render
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Sends `n` request events for `server` as the server actor does: build the event from owned
/// strings, `tell(..).try_send()`. A full mailbox falls back to `tell(..).await`; returns how
/// many times that happened.
async fn send_requests(
    to: Recipient<RecordMetric>,
    server: String,
    n: u64,
    yield_each: bool,
) -> anyhow::Result<u64> {
    let method = methods::TOOLS_CALL.to_owned();
    let tool = TOOL.to_owned();
    let mut full = 0;
    for _ in 0..n {
        let msg = RecordMetric {
            event: request_event(&server, &method, &tool),
        };
        match to.tell(msg).try_send() {
            Ok(()) => {}
            Err(SendError::MailboxFull(msg)) => {
                full += 1;
                to.tell(msg)
                    .await
                    .map_err(|e| anyhow::anyhow!("tell after a full mailbox: {e}"))?;
            }
            Err(e) => anyhow::bail!("try_send: {e}"),
        }
        if yield_each {
            tokio::task::yield_now().await;
        }
    }
    Ok(full)
}

/// What one end-to-end run measured, per event.
struct EndToEnd {
    wall_ns: f64,
    cpu_ns: f64,
    /// Until the sender task ended (the collector may still be draining its mailbox).
    sender_ns: f64,
    /// Sends that found the mailbox full and fell back to `tell(..).await`.
    full: u64,
}

/// One end-to-end run: a new collector with `mailbox`, a warm-up, then `n` events from one
/// sender task (yielding after each send when `yield_each`) and a flush, timed. Checks that the
/// collector and the Prometheus counters saw exactly `n` requests.
async fn end_to_end_run(
    mailbox: (
        mailbox::MailboxSender<MetricsCollector>,
        mailbox::MailboxReceiver<MetricsCollector>,
    ),
    server: String,
    n: u64,
    yield_each: bool,
    handle: &PrometheusHandle,
) -> anyhow::Result<EndToEnd> {
    let collector: ActorRef<MetricsCollector> =
        MetricsCollector::spawn_with_mailbox(MetricsCollectorConfig::default(), mailbox);
    collector.wait_for_startup().await;
    let recipient: Recipient<RecordMetric> = collector.clone().recipient();

    send_requests(
        recipient.clone(),
        format!("{server}-warmup"),
        COLLECTOR_WARMUP,
        yield_each,
    )
    .await?;
    collector.ask(FlushMetrics).await?;

    let cpu_before = process_cpu();
    let begin = Instant::now();
    let full = tokio::spawn(send_requests(recipient, server.clone(), n, yield_each)).await??;
    let sender = begin.elapsed();
    collector.ask(FlushMetrics).await?;
    let wall = begin.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);

    let snapshot = collector.ask(GetMetrics).await?;
    let s = snapshot.servers.get(&server);
    let requests = s.map_or(0, |s| s.requests_ok);
    let latencies = s.map_or(0, |s| s.request_latency.count);
    let tool_calls = s.and_then(|s| s.tool_calls.get(TOOL).copied()).unwrap_or(0);
    if requests != n || latencies != n || tool_calls != n {
        anyhow::bail!(
            "collector for {server}: {requests} requests, {latencies} latencies, {tool_calls} tool \
             calls recorded; {n} sent"
        );
    }
    let render = handle.render();
    let labels = [
        ("server", server.as_str()),
        ("method", methods::TOOLS_CALL),
        ("outcome", "ok"),
    ];
    let counter = prometheus_value(&render, export::REQUESTS, &labels);
    if counter != Some(n as f64) {
        anyhow::bail!(
            "Prometheus {}{{server=\"{server}\",method=\"tools/call\",outcome=\"ok\"}} is {counter:?}, \
             expected {n}",
            export::REQUESTS
        );
    }
    let tool_counter = prometheus_value(
        &render,
        export::TOOL_CALLS,
        &[("server", &server), ("tool", TOOL), ("outcome", "ok")],
    );
    if tool_counter != Some(n as f64) {
        anyhow::bail!(
            "Prometheus {} for {server} is {tool_counter:?}, expected {n}",
            export::TOOL_CALLS
        );
    }
    collector.stop_gracefully().await?;
    collector.wait_for_shutdown().await;
    handle.run_upkeep();
    let per_event = |d: Duration| d.as_nanos() as f64 / n as f64;
    Ok(EndToEnd {
        wall_ns: per_event(wall),
        cpu_ns: per_event(cpu),
        sender_ns: per_event(sender),
        full,
    })
}

/// One baseline run: `n` events built the same way through a bare tokio unbounded channel to a
/// task that drops them, the sender yielding after each send when `yield_each`. Returns
/// (wall ns/event, CPU ns/event).
async fn channel_run(n: u64, yield_each: bool) -> anyhow::Result<(f64, f64)> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<RecordMetric>();
    let receiver = tokio::spawn(async move {
        let mut received = 0u64;
        while let Some(msg) = rx.recv().await {
            drop(black_box(msg));
            received += 1;
        }
        received
    });
    let cpu_before = process_cpu();
    let begin = Instant::now();
    let sender = tokio::spawn(async move {
        let (server, method, tool) = (
            SERVER.to_owned(),
            methods::TOOLS_CALL.to_owned(),
            TOOL.to_owned(),
        );
        for _ in 0..n {
            let msg = RecordMetric {
                event: request_event(&server, &method, &tool),
            };
            if tx.send(msg).is_err() {
                break;
            }
            if yield_each {
                tokio::task::yield_now().await;
            }
        }
    });
    sender.await?;
    let received = receiver.await?;
    let wall = begin.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
    if received != n {
        anyhow::bail!("channel baseline received {received} of {n}");
    }
    Ok((
        wall.as_nanos() as f64 / n as f64,
        cpu.as_nanos() as f64 / n as f64,
    ))
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("metrics_cost: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("metrics_cost: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let handle = fleet_runtime::telemetry::install_prometheus()?;
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: a debug build; run `cargo run --release --example metrics_cost` for figures"
        );
    }
    println!("metrics_cost: what recording one request's metrics costs");
    println!("machine: {}", machine());
    println!(
        "event: MetricEvent::Request {{ server: {SERVER:?}, method: \"tools/call\", tool: \
         Some({TOOL:?}), outcome: Ok }}; {REPEATS} runs per row"
    );
    println!();

    let (server, method, tool) = (
        SERVER.to_owned(),
        methods::TOOLS_CALL.to_owned(),
        TOOL.to_owned(),
    );
    let event = request_event(&server, &method, &tool);
    let mut rows = Vec::new();

    // 0. The sender's part of building the event.
    let mut build = Vec::new();
    for _ in 0..REPEATS {
        build.push(time_loop(MICRO_N, || {
            drop(black_box(request_event(
                black_box(&server),
                black_box(&method),
                black_box(&tool),
            )))
        }));
    }
    rows.push((
        "0",
        Row::single(
            "build the event: 3 `String` clones + drop (sender side)",
            MICRO_N,
            build,
        ),
    ));

    // 1. Aggregates::apply alone.
    let mut apply = Vec::new();
    for _ in 0..REPEATS {
        let mut aggregates = Aggregates::new();
        apply.push(time_loop(MICRO_N, || aggregates.apply(black_box(&event))));
        black_box(&aggregates);
    }
    rows.push((
        "1",
        Row::single("`Aggregates::apply` alone", MICRO_N, apply),
    ));

    // 2. Exporter::record alone, its handles cached by the warm-up.
    let mut exporter = Exporter::new();
    let mut record = Vec::new();
    for _ in 0..REPEATS {
        record.push(time_loop(MICRO_N, || exporter.record(black_box(&event))));
        // The histograms keep every sample until upkeep drains them (every 5 s in mcp-fleet).
        handle.run_upkeep();
    }
    rows.push((
        "2",
        Row::single("`Exporter::record` alone (cached handles)", MICRO_N, record),
    ));

    // 1+2. What the collector's handler does per event, without kameo.
    let mut both = Vec::new();
    for _ in 0..REPEATS {
        let mut aggregates = Aggregates::new();
        both.push(time_loop(MICRO_N, || {
            aggregates.apply(black_box(&event));
            exporter.record(black_box(&event));
        }));
        black_box(&aggregates);
        handle.run_upkeep();
    }
    rows.push((
        "1+2",
        Row::single(
            "`apply` + `record` in one loop (the handler's work, no kameo)",
            MICRO_N,
            both,
        ),
    ));

    // 3. End to end through the collector: production's unbounded mailbox, then kameo's default
    // bounded one, then one event at a time. The first run of each warms up and is not counted.
    let mut e2e = f64::NAN;
    for (id, name, bounded, n, yield_each) in [
        ("3", "unbounded", None, N, false),
        ("3b", "bounded", Some(KAMEO_DEFAULT_MAILBOX), N, false),
        ("3c", "yielding", None, N_YIELDING, true),
    ] {
        let (mut wall, mut cpu, mut sender, mut full) = (Vec::new(), Vec::new(), Vec::new(), 0);
        for rep in 0..=REPEATS {
            let mailbox = match bounded {
                None => mailbox::unbounded(),
                Some(n) => mailbox::bounded(n),
            };
            let run = end_to_end_run(
                mailbox,
                format!("bench-{name}-{rep}"),
                n,
                yield_each,
                &handle,
            )
            .await?;
            if rep > 0 {
                wall.push(run.wall_ns);
                cpu.push(run.cpu_ns);
                sender.push(run.sender_ns);
                full += run.full;
            }
        }
        let label = match (bounded, yield_each) {
            (None, false) => "end to end: build + `tell(..).try_send()` to a `MetricsCollector` \
                              (unbounded mailbox, as in mcp-fleet), N in a row, + \
                              `ask(FlushMetrics)`; wall / N"
                .to_owned(),
            (Some(cap), _) => format!(
                "the same with kameo's default bounded mailbox ({cap}); full → `tell(..).await`"
            ),
            (None, true) => "the same (unbounded), but the sender yields after each send, so \
                             the collector wakes for each event"
                .to_owned(),
        };
        let sender_median = median(&sender);
        let row = Row {
            label,
            ops: n,
            wall_ns: wall,
            cpu_ns: Some(cpu),
            note: format!(
                "the sender task alone ended after {sender_median:.0} ns per event (median); \
                 full mailbox → `tell(..).await`: {full} of {} sends",
                n * REPEATS as u64
            ),
        };
        if id == "3" {
            e2e = median(&row.wall_ns);
        }
        rows.push((id, row));
    }

    // 4. The channel alone, both ways. The first run of each warms up and is not counted.
    let mut channel = f64::NAN;
    for (id, n, yield_each) in [("4", N, false), ("4c", N_YIELDING, true)] {
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        for rep in 0..=REPEATS {
            let (w, c) = channel_run(n, yield_each).await?;
            if rep > 0 {
                wall.push(w);
                cpu.push(c);
            }
        }
        let label = if yield_each {
            "the same baseline, the sender yielding after each send (compare with 3c)"
        } else {
            "baseline: build + bare `tokio::sync::mpsc` unbounded send → a task that drops it, N \
             in a row; wall / N"
        };
        if id == "4" {
            channel = median(&wall);
        }
        rows.push((
            id,
            Row {
                label: label.to_owned(),
                ops: n,
                wall_ns: wall,
                cpu_ns: Some(cpu),
                note: String::new(),
            },
        ));
    }

    println!(
        "| # | what is measured (per request) | ops per run | median ns | min ns | CPU ns, median (all threads) | ÷ end to end (3) | × channel (4) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (id, row) in &rows {
        let med = median(&row.wall_ns);
        let cpu = row
            .cpu_ns
            .as_deref()
            .map_or_else(|| "–".to_owned(), |c| format!("{:.0}", median(c)));
        println!(
            "| {id} | {} | {} | {med:.1} | {:.1} | {cpu} | {:.2} | {:.2} |",
            row.label,
            row.ops,
            min(&row.wall_ns),
            med / e2e,
            med / channel,
        );
    }
    println!();
    println!("Every run, ns per request:");
    for (id, row) in &rows {
        let runs: Vec<String> = row.wall_ns.iter().map(|v| format!("{v:.1}")).collect();
        let note = if row.note.is_empty() {
            String::new()
        } else {
            format!("; {}", row.note)
        };
        println!("- ({id}) {}{note}", runs.join(", "));
    }
    println!();
    println!(
        "Checked after every run of (3), (3b) and (3c): the collector's GetMetrics shows exactly \
         the N events sent as requests, latencies and tool calls of the run's server, and so do \
         the Prometheus counters {} and {}.",
        export::REQUESTS,
        export::TOOL_CALLS
    );
    println!();

    // Aside: the scrape cost with 100 servers × 5 tools of series.
    let mut scrape_exporter = Exporter::new();
    for s in 0..RENDER_SERVERS {
        let server = format!("server-{s:03}");
        let list = MetricEvent::Request {
            server: server.clone(),
            method: methods::TOOLS_LIST.to_owned(),
            tool: None,
            latency: LATENCY,
            outcome: RequestOutcome::Ok,
        };
        scrape_exporter.record(&list);
        for t in 0..RENDER_TOOLS {
            let call = request_event(&server, &method, &format!("tool_{t}"));
            scrape_exporter.record(&call);
        }
    }
    handle.run_upkeep();
    let rendered = handle.render();
    let mut renders = Vec::new();
    for _ in 0..REPEATS {
        let begin = Instant::now();
        let text = handle.render();
        renders.push(begin.elapsed().as_secs_f64() * 1e3);
        black_box(text);
    }
    let series = rendered
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    println!(
        "Aside, one scrape: `PrometheusHandle::render` with {RENDER_SERVERS} servers × \
         {RENDER_TOOLS} tools of series ({series} sample lines, {} KiB): median {:.2} ms, min \
         {:.2} ms",
        rendered.len() / 1024,
        median(&renders),
        min(&renders),
    );
    println!();
    println!(
        "target < 1 µs per request: {} ({e2e:.0} ns)",
        if e2e < 1000.0 { "met" } else { "not met" }
    );
    Ok(())
}
