//! The metrics of the `mcp-fleet` binary as a scraper sees them: exact counters after real
//! traffic and a real kill, per-process figures from `/proc`, gateway sessions and HTTP statuses,
//! an exposition that Prometheus' own `promtool check metrics` accepts, and JSON logs whose
//! request spans carry the session, method and server.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{
    McpSession, metric_value, pids_with, scrape, spawn_fleet_with, wait_for, write_config,
};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

/// `promtool` ships with Debian's `prometheus` package, which `.ci/run` installs.
fn promtool() -> std::path::PathBuf {
    common::on_path("promtool", "Debian's `prometheus` package")
}

/// `promtool check metrics` on `exposition`: its exit status and everything it printed.
async fn promtool_check(exposition: &str) -> (bool, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(exposition.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("promtool finishes")
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// A series' value, 0 when it is absent.
fn value(exposition: &str, series: &str) -> f64 {
    metric_value(exposition, series).unwrap_or(0.0)
}

#[tokio::test]
async fn counters_are_exact_and_promtool_accepts_the_exposition() {
    const CALLS: usize = 37;
    let bin = mcp_reference_server::binary_path();
    let marker = format!("metrics-{}", std::process::id());
    // `wrapped` runs under a shell that does not exec, so its process tree has two processes.
    let config = write_config(&format!(
        r#"{{
  "mcpServers": {{
    "ref": {{ "command": "{bin}", "args": ["--name", "{marker}-ref"], "env": {{"MCP_REF_LOG_REQUESTS": "1"}} }},
    "wrapped": {{ "command": "sh", "args": ["-c", "{bin} --name {marker}-wrapped; true"] }}
  }}
}}"#,
        bin = bin.display()
    ));
    let (mut child, port) = spawn_fleet_with(
        &config.0,
        Stdio::piped(),
        &["--log-format", "json"],
        &[],
        &[("RUST_LOG", "info,fleet_gateway=debug")],
    );
    // Read stderr as it comes, so a full pipe never blocks the fleet.
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all).await;
        all
    });

    let ready = wait_for(Duration::from_secs(30), "both servers up", || async {
        let body = scrape(port).await?;
        (metric_value(&body, r#"mcp_fleet_up{server="ref"}"#) == Some(1.0)
            && metric_value(&body, r#"mcp_fleet_up{server="wrapped"}"#) == Some(1.0))
        .then_some(body)
    })
    .await;
    for (series, v) in [
        (r#"mcp_fleet_server_state{server="ref",state="ready"}"#, 1.0),
        (
            r#"mcp_fleet_server_state{server="ref",state="starting"}"#,
            0.0,
        ),
        (r#"mcp_fleet_server_starts_total{server="ref"}"#, 1.0),
        (r#"mcp_fleet_server_restarts_total{server="ref"}"#, 0.0),
        (
            r#"mcp_fleet_server_exits_total{server="ref",reason="signaled"}"#,
            0.0,
        ),
        ("mcp_fleet_gateway_sessions_active", 0.0),
    ] {
        assert_eq!(metric_value(&ready, series), Some(v), "{series}:\n{ready}");
    }
    assert!(ready.contains(&format!(
        "mcp_fleet_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));

    // The process figures come from /proc: the wrapper's tree is the shell and the server.
    let sampled = wait_for(
        Duration::from_secs(20),
        "the wrapped tree sampled",
        || async {
            let body = scrape(port).await?;
            // Both servers sampled: each has its own sampler, so one may read before the other.
            let ref_read = metric_value(&body, r#"mcp_fleet_processes{server="ref"}"#)
                .is_some_and(|n| n >= 1.0);
            (metric_value(&body, r#"mcp_fleet_processes{server="wrapped"}"#) == Some(2.0)
                && ref_read)
                .then_some(body)
        },
    )
    .await;
    for server in ["ref", "wrapped"] {
        let rss = value(
            &sampled,
            &format!(r#"mcp_fleet_process_resident_memory_bytes{{server="{server}"}}"#),
        );
        assert!(rss > 100_000.0, "{server}: resident {rss}");
        let fds = value(
            &sampled,
            &format!(r#"mcp_fleet_process_open_fds{{server="{server}"}}"#),
        );
        assert!(fds >= 3.0, "{server}: fds {fds}");
        assert!(sampled.contains(&format!(
            r#"mcp_fleet_process_cpu_seconds{{server="{server}"}}"#
        )));
    }

    // N tool calls through the gateway: the counters grow by exactly N.
    let calls = r#"mcp_fleet_requests_total{server="ref",method="tools/call",outcome="ok"}"#;
    let before = value(&sampled, calls);
    let session = McpSession::open(&format!("http://127.0.0.1:{port}/mcp")).await;
    for i in 0..CALLS {
        let r = session
            .call(
                "tools/call",
                json!({"name": "ref__echo", "arguments": {"message": format!("m{i}")}}),
            )
            .await;
        assert_eq!(r["result"]["content"][0]["text"], format!("m{i}"), "{r}");
    }
    let target = before + CALLS as f64;
    // Both counts reach the collector in batches, each within 100 ms of its events.
    let answered = r#"mcp_fleet_http_responses_total{path="/mcp",status="200"}"#;
    let after = wait_for(Duration::from_secs(10), "the calls counted", || async {
        let body = scrape(port).await?;
        (value(&body, calls) >= target && value(&body, answered) >= CALLS as f64 + 1.0)
            .then_some(body)
    })
    .await;
    assert_eq!(value(&after, calls), target, "{after}");
    assert_eq!(
        value(
            &after,
            r#"mcp_fleet_tool_calls_total{server="ref",tool="echo",outcome="ok"}"#
        ),
        CALLS as f64
    );
    assert_eq!(
        value(
            &after,
            r#"mcp_fleet_request_duration_seconds_count{server="ref",method="tools/call"}"#
        ),
        CALLS as f64
    );
    assert_eq!(
        value(
            &after,
            r#"mcp_fleet_tool_call_duration_seconds_count{server="ref",tool="echo"}"#
        ),
        CALLS as f64
    );
    assert_eq!(
        value(&after, "mcp_fleet_gateway_sessions_created_total"),
        1.0
    );
    assert_eq!(value(&after, "mcp_fleet_gateway_sessions_active"), 1.0);
    // initialize and the calls got 200; notifications/initialized got 202.
    assert_eq!(value(&after, answered), CALLS as f64 + 1.0);
    assert_eq!(
        value(
            &after,
            r#"mcp_fleet_http_responses_total{path="/mcp",status="202"}"#
        ),
        1.0
    );
    assert!(
        value(
            &after,
            r#"mcp_fleet_http_responses_total{path="/metrics",status="200"}"#
        ) >= 1.0
    );
    // `ref` logs each request on stderr; lines are counted in batches every 500 ms.
    wait_for(
        Duration::from_secs(5),
        "ref's stderr lines counted",
        || async {
            let body = scrape(port).await?;
            (value(&body, r#"mcp_fleet_stderr_lines_total{server="ref"}"#) >= CALLS as f64)
                .then_some(())
        },
    )
    .await;

    // One kill: exactly one restart, one exit by a signal, and up again.
    let pids = pids_with(&format!("{marker}-ref"));
    assert_eq!(pids.len(), 1, "{pids:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let restarts = r#"mcp_fleet_server_restarts_total{server="ref"}"#;
    let back = wait_for(Duration::from_secs(30), "ref restarted and up", || async {
        let body = scrape(port).await?;
        (value(&body, restarts) >= 1.0 && value(&body, r#"mcp_fleet_up{server="ref"}"#) == 1.0)
            .then_some(body)
    })
    .await;
    assert_eq!(value(&back, restarts), 1.0, "{back}");
    assert_eq!(
        value(
            &back,
            r#"mcp_fleet_server_exits_total{server="ref",reason="signaled"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&back, r#"mcp_fleet_server_starts_total{server="ref"}"#),
        2.0
    );
    assert_eq!(
        value(
            &back,
            r#"mcp_fleet_server_restarts_total{server="wrapped"}"#
        ),
        0.0
    );

    // Prometheus' own linter accepts the whole exposition.
    let (ok, printed) = promtool_check(&back).await;
    assert!(
        ok && printed.trim().is_empty(),
        "promtool: {printed}\n{back}"
    );

    // Stop, and read the JSON logs.
    let status = common::sigterm(&mut child, Duration::from_secs(15))
        .await
        .expect("mcp-fleet exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let logs = logs.await.unwrap();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["target"] == "mcp_fleet::server_stderr"
                && l["fields"]["server"] == "ref"
                && l["fields"]["message"].as_str().is_some()),
        "no stderr line of `ref` as an event:\n{logs}"
    );
    let in_span = lines
        .iter()
        .filter(|l| {
            let span = &l["span"];
            span["name"] == "mcp_request"
                && span["session"] == session.id.as_str()
                && span["method"] == "tools/call"
                && span["server"] == "ref"
        })
        .count();
    assert!(
        in_span >= CALLS,
        "{in_span} events in request spans, not {CALLS}:\n{logs}"
    );
    // Every call went by the server's lane: `ref` was serving, and none had a progress token.
    let answered: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["fields"]["message"] == "request answered"
                && l["span"]["session"] == session.id.as_str()
                && l["span"]["method"] == "tools/call"
        })
        .collect();
    assert_eq!(answered.len(), CALLS, "{logs}");
    assert!(
        answered.iter().all(|l| l["span"]["route"] == "lane"),
        "a call took another route than the lane: {answered:?}"
    );
}
