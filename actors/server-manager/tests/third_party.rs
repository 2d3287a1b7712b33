//! The server manager against a third-party server: npm `@modelcontextprotocol/server-everything`
//! (installed by `.ci/run`; `npm install -g @modelcontextprotocol/server-everything`).

mod common;

use std::time::Duration;

use common::{config, spawn_manager, wait_group_gone};
use fleet_protocol::messages::server::{
    CallServer, LaunchServer, ProbeServer, StopAllServers, StopMethod,
};
use fleet_protocol::{Era, ServerSpec, ServerState};
use serde_json::json;

/// The command of server-everything, from PATH.
fn everything() -> ServerSpec {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("mcp-server-everything").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "mcp-server-everything is not on PATH; install it with \
         `npm install -g @modelcontextprotocol/server-everything` (as .ci/run does)"
    );
    ServerSpec::stdio("everything", "mcp-server-everything", ["stdio"])
}

#[tokio::test]
async fn server_everything_handshakes_lists_13_tools_and_echoes() {
    let manager = spawn_manager(config());
    let status = manager
        .ask(LaunchServer { spec: everything() })
        .await
        .expect("server-everything launches");
    assert_eq!(status.state, ServerState::Ready);
    let h = status.handshake.as_ref().unwrap();
    // npm servers speak the 2025 era only: `server/discover` gets -32601 and we fall back.
    assert_eq!(h.era, Era::Legacy);
    assert_eq!(
        h.tools.len(),
        13,
        "tools: {:?}",
        h.tool_names().collect::<Vec<_>>()
    );
    assert!(h.tool_names().any(|n| n == "echo"));

    let result = manager
        .ask(CallServer::new(
            "everything",
            "tools/call",
            Some(json!({"name": "echo", "arguments": {"message": "from the fleet"}})),
        ))
        .await
        .unwrap();
    let text = result.result["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("from the fleet"), "{text}");

    manager
        .ask(ProbeServer {
            name: "everything".into(),
            timeout: Duration::from_secs(5),
        })
        .await
        .expect("ping");

    let stopped = manager.ask(StopAllServers).await.unwrap();
    assert_eq!(stopped.len(), 1);
    assert_ne!(stopped[0].method, StopMethod::NotRunning);
    wait_group_gone(stopped[0].pid.unwrap()).await;
}
