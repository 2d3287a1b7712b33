//! A 2026-07-28 server's tool list changes, followed on the `subscriptions/listen` the server's
//! actor keeps open to a real reference server (`--list-changes`).

mod common;

use std::time::Duration;

use common::{config, reference, spawn_manager, wait_for};
use fleet_protocol::messages::server::{CallServer, GetServerStatus, LaunchServer, StopServer};
use fleet_server_manager::ServerManager;
use kameo::actor::ActorRef;

const LIMIT: Duration = Duration::from_secs(10);

async fn logs(manager: &ActorRef<ServerManager>, name: &str) -> Vec<String> {
    common::server_logs(manager, name, 200).await
}

async fn tool_names(manager: &ActorRef<ServerManager>, name: &str) -> Vec<String> {
    let status = manager
        .ask(GetServerStatus { name: name.into() })
        .await
        .unwrap();
    let handshake = status.handshake.expect("a ready server has its handshake");
    handshake.tool_names().map(str::to_owned).collect()
}

/// Waits until the status of server `name` lists the tool `reference/add_tool` adds.
async fn wait_extra_tool(manager: &ActorRef<ServerManager>, name: &str) {
    wait_for(LIMIT, "the new tool in the status", || async {
        let names = tool_names(manager, name).await;
        names.iter().any(|n| n == "extra").then_some(())
    })
    .await
}

#[tokio::test]
async fn a_modern_servers_tool_changes_are_followed_and_its_listen_is_cancelled_on_stop() {
    let manager = spawn_manager(config());
    let flags = ["--list-changes", "--log-requests"];
    manager
        .ask(LaunchServer {
            spec: reference("l", &flags),
        })
        .await
        .unwrap();

    // Once ready, the actor asked for list changes; the server acknowledged, so the tools were
    // read once more, unchanged.
    let listen = wait_for(LIMIT, "the listen logged", || async {
        logs(&manager, "l")
            .await
            .into_iter()
            .find(|l| l.contains("request subscriptions/listen"))
    })
    .await;
    assert!(listen.contains(r#"protocol "2026-07-28""#), "{listen}");
    wait_for(
        LIMIT,
        "the tools read again after the acknowledgement",
        || async {
            let lists = logs(&manager, "l").await;
            (lists
                .iter()
                .filter(|l| l.contains("request tools/list"))
                .count()
                == 2)
                .then_some(())
        },
    )
    .await;
    assert_eq!(tool_names(&manager, "l").await, ["echo", "add", "sleep"]);

    // The server's list changes: announced on the listen, read by the actor.
    manager
        .ask(CallServer::new("l", "reference/add_tool", None))
        .await
        .unwrap();
    wait_extra_tool(&manager, "l").await;

    // A stop cancels the listen before it closes stdin.
    let id = listen
        .split("(id ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("the listen's id in the log")
        .to_owned();
    manager.ask(StopServer { name: "l".into() }).await.unwrap();
    let cancelled = format!("cancelled request {id}");
    wait_for(LIMIT, &cancelled, || async {
        let lines = logs(&manager, "l").await;
        lines.iter().any(|l| l.contains(&cancelled)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_legacy_server_is_not_asked_to_listen_and_its_changes_come_unasked() {
    let manager = spawn_manager(config());
    let flags = ["--list-changes", "--log-requests", "--era", "legacy"];
    manager
        .ask(LaunchServer {
            spec: reference("old", &flags),
        })
        .await
        .unwrap();
    // A call after the handshake: everything the actor sent before it is in the log by then.
    manager
        .ask(CallServer::new("old", "ping", None))
        .await
        .unwrap();
    // The server logs in the order it reads: once the ping is in, so would a listen be.
    let lines = wait_for(LIMIT, "the ping logged", || async {
        let lines = logs(&manager, "old").await;
        lines
            .iter()
            .any(|l| l.contains("request ping"))
            .then_some(lines)
    })
    .await;
    assert!(
        !lines.iter().any(|l| l.contains("subscriptions/listen")),
        "{lines:#?}"
    );
    // Its changes come unasked, and are followed all the same.
    manager
        .ask(CallServer::new("old", "reference/add_tool", None))
        .await
        .unwrap();
    wait_extra_tool(&manager, "old").await;
}

/// A server that announces tool changes faster than it answers is asked for its tools one
/// listing at a time, not once per change, and the list it ends with is the one applied.
#[tokio::test]
async fn a_burst_of_tool_changes_gets_one_listing_at_a_time() {
    let manager = spawn_manager(config());
    // `burst` sends 2,000 `tools/list_changed` at once; each `tools/list` takes 50 ms and is
    // counted; the count is in the tools' description.
    let spec = common::python_server(
        "b",
        r#"import time
lists = globals().setdefault("lists", [0])
if m["method"] == "initialize":
    out["result"] = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {"listChanged": True}}, "serverInfo": {"name": "b", "version": "1"}}
elif m["method"] == "tools/list":
    lists[0] += 1
    time.sleep(0.05)
    out["result"] = {"tools": [{"name": "burst", "description": str(lists[0]), "inputSchema": {"type": "object"}}]}
elif m["method"] == "tools/call":
    note = json.dumps({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
    sys.stdout.write((note + "\n") * 2000)
    out["result"] = {"content": []}
else:
    out["error"] = {"code": -32601, "message": "no"}"#,
    );
    manager.ask(LaunchServer { spec }).await.unwrap();
    let call = CallServer::new(
        "b",
        "tools/call",
        Some(serde_json::json!({"name": "burst", "arguments": {}})),
    );
    manager.ask(call).await.unwrap();
    let description = |status: fleet_protocol::ServerStatus| {
        status.handshake.expect("ready").tools[0]["description"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
    };
    // The handshake's listing is the first. Each change that comes while a listing runs asks
    // for one more after it, so the burst makes two: the count settles at 3 (it would climb
    // towards 2,001, 50 ms a listing, with one listing per change).
    let deadline = std::time::Instant::now() + LIMIT;
    let mut seen = Vec::new();
    let settled = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "not settled: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = manager
            .ask(GetServerStatus { name: "b".into() })
            .await
            .unwrap();
        seen.push(description(status));
        if let [.., a, b, c] = seen[..]
            && a > 1
            && a == b
            && b == c
        {
            break c;
        }
    };
    assert!(settled <= 3, "{settled} listings: {seen:?}");
    manager.ask(StopServer { name: "b".into() }).await.unwrap();
}
