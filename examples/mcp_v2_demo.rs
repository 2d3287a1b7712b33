//! The seed demo, for real: four actors launch, probe, measure and cleanly stop three real MCP
//! server processes.
//!
//! `cargo run --example mcp_v2_demo` (add `--release` for representative figures;
//! `RUST_LOG=debug` shows the actors' logs). The three servers are instances of this
//! workspace's reference MCP server (`examples/reference-server`), named docker, kubernetes and
//! prometheus as in the original demo; they are not Docker, Kubernetes or Prometheus servers.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use fleet_protocol::messages::health::GetHealth;
use fleet_protocol::messages::metrics::GetMetrics;
use fleet_protocol::messages::server::{CallServer, GetServerStatus};
use fleet_protocol::messages::supervisor::{LaunchFleet, Shutdown};
use fleet_protocol::{ServerSpec, ServerState};
use fleet_runtime::{Fleet, FleetOptions, telemetry};
use fleet_server_manager::process_running;
use serde_json::json;

const SERVERS: [&str; 3] = ["docker", "kubernetes", "prometheus"];
const ROUND_TRIPS: usize = 10_000;
const TOOL_CALLS: usize = 1_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_logging("warn", telemetry::LogFormat::Text);
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("mcp-fleet V2 actor demo ({build} build)\n");

    // Build (or find) the reference server before the clock starts.
    let reference = mcp_reference_server::binary_path();

    // 1. The actor system.
    println!("1. Starting the actor system");
    let mut options = FleetOptions::default();
    options.health.interval = Duration::from_millis(500);
    options.health.timeout = Duration::from_secs(2);
    options.server_manager.stop_grace = Duration::from_secs(2);
    let begin = Instant::now();
    let fleet = Fleet::start(options).await;
    for (actor, took) in &fleet.startup {
        println!("   {actor:<18} started in {:>8.1} µs", micros(*took));
    }
    println!(
        "   {} actors up in {:.2} ms\n",
        fleet.startup.len(),
        millis(begin.elapsed())
    );

    // 2. Three servers, launched concurrently.
    println!("2. Launching 3 MCP servers concurrently (instances of the reference server:");
    println!("   {})", reference.display());
    let specs: Vec<ServerSpec> = SERVERS
        .iter()
        .map(|name| {
            ServerSpec::stdio(
                *name,
                reference.to_string_lossy(),
                ["--name", name, "--slow-start-ms", "200"],
            )
        })
        .collect();
    let report = fleet
        .supervisor
        .ask(LaunchFleet { specs })
        .await
        .context("launch the fleet")?;
    let mut slowest = Duration::ZERO;
    for result in &report.results {
        let status = result.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
        let h = status
            .handshake
            .as_ref()
            .context("a ready server has a handshake")?;
        slowest = slowest.max(h.took);
        println!(
            "   {:<11} pid {:>7}  MCP {} ({})  ready in {:>6.1} ms  tools: {}",
            status.name,
            status.pid.unwrap_or(0),
            h.protocol_version,
            h.server_info["name"].as_str().unwrap_or("?"),
            millis(h.took),
            h.tool_names().collect::<Vec<_>>().join(", ")
        );
    }
    println!(
        "   all 3 ready in {:.1} ms (the slowest alone took {:.1} ms: launches ran concurrently)\n",
        millis(report.took),
        millis(slowest)
    );

    // 3. Health monitoring with real MCP probes.
    println!("3. Health monitoring for 3 seconds (a probe round every 500 ms)");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let health = fleet.health.ask(GetHealth).await.context("health")?;
    for h in &health {
        println!(
            "   {:<11} {:<9} probes {:>2}  failures {}  last latency {:>7.1} µs",
            h.server,
            if h.healthy { "healthy" } else { "UNHEALTHY" },
            h.probes,
            h.failures,
            h.last_latency.map(micros).unwrap_or(f64::NAN)
        );
    }
    println!();

    // Some real MCP traffic through the actor system to the child processes.
    let calls_begin = Instant::now();
    let mut call_latencies = Vec::with_capacity(TOOL_CALLS);
    for i in 0..TOOL_CALLS {
        let server = SERVERS[i % SERVERS.len()];
        let t = Instant::now();
        let result = fleet
            .server_manager
            .ask(CallServer::new(
                server,
                "tools/call",
                Some(json!({"name": "echo", "arguments": {"message": format!("call {i}")}})),
            ))
            .await
            .map_err(|e| anyhow::anyhow!("tools/call echo on {server}: {e:?}"))?
            .result;
        call_latencies.push(t.elapsed());
        if result["content"][0]["text"] != format!("call {i}") {
            bail!("{server} answered {result} to call {i}");
        }
    }
    let calls_took = calls_begin.elapsed();

    // 4. Metrics.
    println!("4. Metrics (GetMetrics snapshot)");
    // A server's request metrics reach the collector in batches, within 100 ms: wait (at most
    // 5 s) until the snapshot counts every call.
    let counted = Instant::now() + Duration::from_secs(5);
    let m = loop {
        let m = fleet.metrics.ask(GetMetrics).await.context("metrics")?;
        let echoes: u64 = m
            .servers
            .values()
            .filter_map(|s| s.tool_calls.get("echo"))
            .sum();
        if echoes >= TOOL_CALLS as u64 || Instant::now() >= counted {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "   {:<11} {:>6} {:>9} {:>7} {:>11} {:>9} {:>11} {:>7}",
        "server", "starts", "handshake", "probes", "probe mean", "requests", "req mean", "stderr"
    );
    for (name, s) in &m.servers {
        println!(
            "   {:<11} {:>6} {:>7.1}ms {:>7} {:>9.1}µs {:>9} {:>9.1}µs {:>7}",
            name,
            s.starts,
            s.handshake.mean().map(millis).unwrap_or(0.0),
            s.probes_ok + s.probes_failed,
            s.probe_latency.mean().map(micros).unwrap_or(0.0),
            s.requests_ok + s.requests_error + s.requests_timeout + s.requests_failed,
            s.request_latency.mean().map(micros).unwrap_or(0.0),
            s.stderr_lines
        );
    }
    for (actor, a) in &m.actors {
        println!(
            "   actor {actor:<18} messages {:>6}  restarts {}",
            a.messages, a.restarts
        );
    }
    println!(
        "   {TOOL_CALLS} tools/call echo round trips to the child processes: {:.0}/s, p50 {:.1} µs, p99 {:.1} µs\n",
        TOOL_CALLS as f64 / calls_took.as_secs_f64(),
        micros(percentile(&mut call_latencies, 50.0)),
        micros(percentile(&mut call_latencies, 99.0))
    );

    // 5. Message passing: asks with the reply awaited.
    println!(
        "5. Message passing: {ROUND_TRIPS} request/reply round trips (ask GetServerStatus to the server manager)"
    );
    // The loop runs as a task on the runtime's workers, like any actor's caller; from the
    // `main` thread every ask would also pay a cross-thread wake-up of its own.
    let server_manager = fleet.server_manager.clone();
    let (latencies, took) = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(ROUND_TRIPS);
        let begin = Instant::now();
        for i in 0..ROUND_TRIPS {
            let t = Instant::now();
            let status = server_manager
                .ask(GetServerStatus {
                    name: SERVERS[i % SERVERS.len()].into(),
                })
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            latencies.push(t.elapsed());
            if status.state != ServerState::Ready {
                bail!("{} is {}", status.name, status.state);
            }
        }
        anyhow::Ok((latencies, begin.elapsed()))
    })
    .await??;
    let mut latencies = latencies;
    println!(
        "   {:.0} round trips/s; p50 {:.2} µs, p99 {:.2} µs (total {:.1} ms)\n",
        ROUND_TRIPS as f64 / took.as_secs_f64(),
        micros(percentile(&mut latencies, 50.0)),
        micros(percentile(&mut latencies, 99.0)),
        millis(took)
    );

    // 6. Graceful shutdown.
    println!("6. Graceful shutdown");
    let pids: Vec<u32> = {
        let mut v = Vec::new();
        for name in SERVERS {
            if let Ok(s) = fleet
                .server_manager
                .ask(GetServerStatus { name: name.into() })
                .await
            {
                v.extend(s.pid);
            }
        }
        v
    };
    let report = fleet
        .supervisor
        .ask(Shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    for s in &report.servers {
        println!(
            "   {:<11} pid {:>7}  {}  after {:?} ({:.1} ms)",
            s.name,
            s.pid.unwrap_or(0),
            s.exit
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "no exit status".into()),
            s.method,
            millis(s.took)
        );
    }
    fleet.supervisor.wait_for_shutdown().await;
    let survivors: Vec<u32> = pids.into_iter().filter(|&p| process_running(p)).collect();
    if !survivors.is_empty() {
        bail!("processes still running after shutdown: {survivors:?}");
    }
    println!(
        "   all actors stopped in {:.1} ms; no server process left",
        millis(report.took)
    );
    Ok(())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}
