//! The gateway against an independent MCP client: rmcp, the official Rust SDK, over Streamable
//! HTTP. `mcp-fleet run` serves two reference servers (one in each protocol era); rmcp connects
//! to `/mcp`, sees both servers' tools under their namespaced names, calls one tool of each,
//! and closes its session (rmcp sends DELETE on close), in both of rmcp's lifecycles: the
//! 2025-11-25 session (`initialize`) and the stateless 2026-07-28 one (`server/discover`).

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The bound on every single rmcp operation (connect, list, call, close).
const STEP: Duration = Duration::from_secs(10);

/// A temporary config file, removed on drop.
struct TempConfig(std::path::PathBuf);

impl TempConfig {
    fn new(text: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("mcp-fleet-rmcp-client-{}.json", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempConfig(path)
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `mcp-fleet run` on a free loopback port, its stderr collected line by line.
struct Fleet {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Fleet {
    fn start(config: &std::path::Path) -> Self {
        let port = common::free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-fleet"))
            .args(["run", "--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Fleet { child, port, log }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, then a bounded wait for a clean exit.
    async fn stop(mut self) -> String {
        let status = common::sigterm(&mut self.child, Duration::from_secs(15))
            .await
            .expect("mcp-fleet exits within 15 s of SIGTERM");
        assert!(status.success(), "{status:?}\n{}", self.log());
        // The stderr reader sees EOF once the process is gone.
        common::wait_for(Duration::from_secs(5), "the end of stderr", || async {
            let log = self.log();
            log.contains("shutdown complete").then_some(log)
        })
        .await
    }
}

/// Connects rmcp to the gateway, retrying until it listens (bounded by `limit`).
async fn connect(
    url: &str,
    lifecycle: &ClientLifecycleMode,
    limit: Duration,
) -> RunningService<RoleClient, ()> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
        let attempt =
            tokio::time::timeout(STEP, ().serve_with_lifecycle(transport, lifecycle.clone())).await;
        match attempt {
            Ok(Ok(client)) => return client,
            Ok(Err(e)) if tokio::time::Instant::now() < deadline => {
                eprintln!("rmcp could not connect yet: {e}");
            }
            Ok(Err(e)) => panic!("rmcp could not connect to {url} within {limit:?}: {e}"),
            Err(_) => panic!("rmcp's connect to {url} took more than {STEP:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `tools/list` until both servers' tools are there (bounded by `limit`).
async fn wait_for_tools(client: &RunningService<RoleClient, ()>, limit: Duration) -> Vec<String> {
    let wanted = [
        "ref__echo",
        "ref__add",
        "ref__sleep",
        "old__echo",
        "old__add",
        "old__sleep",
    ];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let tools = tokio::time::timeout(STEP, client.list_all_tools())
            .await
            .expect("tools/list answers in time")
            .expect("tools/list succeeds");
        let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        names.sort();
        if wanted.iter().all(|w| names.iter().any(|n| n == w)) {
            return names;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {limit:?} tools/list still lacks some of {wanted:?}: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn call(
    client: &RunningService<RoleClient, ()>,
    name: &'static str,
    arguments: serde_json::Value,
) -> CallToolResult {
    let serde_json::Value::Object(arguments) = arguments else {
        panic!("arguments must be an object");
    };
    let params = CallToolRequestParams::new(name).with_arguments(arguments);
    tokio::time::timeout(STEP, client.call_tool(params))
        .await
        .unwrap_or_else(|_| panic!("tools/call {name} answers in time"))
        .unwrap_or_else(|e| panic!("tools/call {name} succeeds: {e}"))
}

fn text(result: &CallToolResult) -> &str {
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert_eq!(result.content.len(), 1, "{result:?}");
    &result.content[0]
        .as_text()
        .unwrap_or_else(|| panic!("a text result: {result:?}"))
        .text
}

/// Lists the tools, calls one tool of each server, and closes the client.
async fn exercise(client: RunningService<RoleClient, ()>, lifecycle: &str) {
    let names = wait_for_tools(&client, Duration::from_secs(20)).await;
    assert_eq!(
        names.len(),
        6,
        "{lifecycle}: only the two servers' tools: {names:?}"
    );

    let echo = call(
        &client,
        "ref__echo",
        json!({ "message": "hello from rmcp" }),
    )
    .await;
    assert_eq!(text(&echo), "hello from rmcp", "{lifecycle}");
    let add = call(&client, "old__add", json!({ "a": 2, "b": 3 })).await;
    assert_eq!(text(&add), "5", "{lifecycle}");

    let mut client = client;
    let quit = tokio::time::timeout(STEP, client.close())
        .await
        .unwrap_or_else(|_| panic!("{lifecycle}: rmcp closes within {STEP:?}"))
        .unwrap();
    eprintln!("{lifecycle}: rmcp closed: {quit:?}");
}

#[tokio::test]
async fn rmcp_lists_and_calls_tools_of_two_servers_through_the_gateway() {
    let bin = mcp_reference_server::binary_path();
    let config = TempConfig::new(&format!(
        r#"{{
  "mcpServers": {{
    "ref": {{ "command": "{bin}" }},
    "old": {{ "command": "{bin}", "args": ["--name", "old", "--era", "legacy"] }}
  }}
}}"#,
        bin = bin.display()
    ));
    let fleet = Fleet::start(&config.0);
    let url = fleet.url();

    // rmcp's default: `initialize`, then a session (`Mcp-Session-Id`) that close() DELETEs.
    let session = connect(
        &url,
        &ClientLifecycleMode::Initialize,
        Duration::from_secs(20),
    )
    .await;
    let info = session
        .peer_info()
        .expect("the gateway's initialize result");
    assert_eq!(
        info.protocol_version,
        ProtocolVersion::V_2025_11_25,
        "{info:?}"
    );
    exercise(session, "initialize").await;
    common::wait_for(
        Duration::from_secs(5),
        "the gateway to log the session's DELETE",
        || async {
            let log = fleet.log();
            (log.contains("session opened") && log.contains("session closed by the client"))
                .then_some(())
        },
    )
    .await;

    // The stateless 2026-07-28 lifecycle: `server/discover`, no session.
    let stateless = connect(
        &url,
        &ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
        STEP,
    )
    .await;
    let info = stateless
        .peer_info()
        .expect("the gateway's server/discover result");
    assert_eq!(
        info.protocol_version,
        ProtocolVersion::V_2026_07_28,
        "{info:?}"
    );
    exercise(stateless, "server/discover").await;

    let log = fleet.stop().await;
    assert!(
        !log.contains("ERROR"),
        "mcp-fleet logged no error while serving rmcp:\n{log}"
    );
}
