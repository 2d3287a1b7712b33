//! The Claude Desktop config of the MCP documentation, run as it is: the filesystem and memory
//! servers through `npx -y` (downloaded from the npm registry on first use). Only the two
//! example directories are replaced by directories that exist here.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{McpSession, pids_with, spawn_fleet, wait_for, write_config};
use serde_json::json;

#[tokio::test]
async fn the_documented_filesystem_and_memory_servers_run_through_npx() {
    common::on_path("npx", "Node.js with npm");
    let root = std::env::temp_dir().join(format!("mcp-fleet-claude-{}", std::process::id()));
    let (desktop, downloads) = (root.join("Desktop"), root.join("Downloads"));
    std::fs::create_dir_all(&desktop).unwrap();
    std::fs::create_dir_all(&downloads).unwrap();
    std::fs::write(desktop.join("hello.txt"), "hello from the fleet").unwrap();
    let config = write_config(
        &common::DOCUMENTED_CONFIG
            .replace("/Users/username/Desktop", &desktop.display().to_string())
            .replace(
                "/Users/username/Downloads",
                &downloads.display().to_string(),
            ),
    );
    let (mut child, port) = spawn_fleet(&config.0, Stdio::null());
    let http = reqwest::Client::new();
    // npx may download both packages first.
    common::wait_ready(port, Duration::from_secs(180)).await;
    let servers: serde_json::Value =
        common::get_json(&http, format!("http://127.0.0.1:{port}/api/servers")).await;
    for s in servers.as_array().unwrap() {
        assert_eq!(s["state"], "ready", "{s}");
    }

    let session = McpSession::open(&format!("http://127.0.0.1:{port}/mcp")).await;
    let tools = session.call("tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"memory__create_entities"), "{names:?}");
    assert!(names.contains(&"filesystem__list_directory"), "{names:?}");
    let listed = session
        .call(
            "tools/call",
            json!({"name": "filesystem__list_directory", "arguments": {"path": desktop.display().to_string()}}),
        )
        .await;
    assert!(
        listed["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("hello.txt")),
        "{listed}"
    );

    common::stop_cleanly(&mut child, Duration::from_secs(30)).await;
    wait_for(
        Duration::from_secs(10),
        "no filesystem server left",
        || async {
            pids_with(&desktop.display().to_string())
                .is_empty()
                .then_some(())
        },
    )
    .await;
    std::fs::remove_dir_all(&root).unwrap();
}
