//! Remote (`url`) servers, proxied over Streamable HTTP by the `mcp-fleet` binary:
//! - another mcp-fleet as the remote (2026-07-28 era), reached with a bearer token from the
//!   config's `headers`, lost when it stops and reconnected when it is back;
//! - npm server-everything's own Streamable HTTP server (2025-11-25 era, sessions), whose session
//!   the fleet opens, listens on (GET) and ends (DELETE) when it stops.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{
    McpSession, free_port, get_json, on_path, port_outside_ephemeral_range, sigterm,
    spawn_fleet_on, wait_for, wait_ready,
};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(30);

/// `mcp-fleet run` on the given port (the remote must come back on the same one).
fn fleet_on(
    config: &std::path::Path,
    port: u16,
    env: &[(&str, &str)],
    stderr: Stdio,
) -> tokio::process::Child {
    spawn_fleet_on(config, port, stderr, &[], &[], env)
}

/// The status of server `name` of the fleet at `port`.
async fn server_status(http: &reqwest::Client, port: u16, name: &str) -> Value {
    get_json(http, format!("http://127.0.0.1:{port}/api/servers/{name}")).await
}

/// Waits until server `name` of the fleet at `port` is in `state`.
async fn wait_state(http: &reqwest::Client, port: u16, name: &str, state: &str) -> Value {
    wait_for(LIMIT, &format!("{name} {state}"), || async {
        let s = server_status(http, port, name).await;
        (s["state"] == state).then_some(s)
    })
    .await
}

/// Waits until the gateway lists tool `name`.
async fn wait_tool(session: &McpSession, name: &str) {
    wait_for(LIMIT, &format!("tool {name} listed"), || async {
        let tools = session.call("tools/list", json!({})).await;
        tools["result"]["tools"]
            .as_array()?
            .iter()
            .any(|t| t["name"] == name)
            .then_some(())
    })
    .await
}

/// Stderr to the file `NAME.log` in `dir`.
fn log_to(dir: &std::path::Path, name: &str) -> Stdio {
    std::fs::File::create(dir.join(format!("{name}.log")))
        .expect("log file")
        .into()
}

/// Waits until the fleet `child` answers `/readyz` on `port`; if it exits first, fails at once
/// with its log (`NAME.log` in `dir`), so that a port it could not bind is named.
async fn wait_upstream(
    child: &tokio::process::Child,
    port: u16,
    dir: &std::path::Path,
    name: &str,
) {
    let pid = child.id().expect("the fleet was just started");
    // Each attempt is bounded, so that one that hangs cannot outlast the deadline.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    wait_for(LIMIT, &format!("{name} ready on port {port}"), || async {
        if !common::process_running(pid) {
            let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
            panic!("{name} exited before it was ready on port {port}; its log:\n{log}");
        }
        let r = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await
}

/// Calls the echo tool `tool` through `session` with `message`; the text it answered.
async fn echo(session: &McpSession, tool: &str, message: &str) -> String {
    let answer = session
        .call(
            "tools/call",
            json!({"name": tool, "arguments": {"message": message}}),
        )
        .await;
    text_of(&answer).to_owned()
}

/// Makes the fleet `child` read its config again.
fn sighup(child: &tokio::process::Child) {
    let pid = nix::unistd::Pid::from_raw(child.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
}

/// The text of a `tools/call` result.
fn text_of(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("not a text result: {answer}"))
}

#[tokio::test]
async fn a_remote_fleet_is_proxied_with_its_token_and_reconnected_after_it_comes_back() {
    let dir = tempdir();
    // Shown if the test fails; the directory is removed only when it passes.
    eprintln!("the fleets' logs: {}", dir.display());
    let upstream_config = dir.join("upstream.json");
    let bin = mcp_reference_server::binary_path();
    std::fs::write(
        &upstream_config,
        json!({"mcpServers": {"ref": {"command": bin, "args": ["--name", "ref"]}}}).to_string(),
    )
    .unwrap();
    // The remote comes back on this port after it stops, so it must not be one that an
    // outgoing connection can take meanwhile (see `port_outside_ephemeral_range`).
    let up_port = port_outside_ephemeral_range();
    let up_env = [("MCP_FLEET_TOKEN", "up-secret")];
    let mut upstream = fleet_on(&upstream_config, up_port, &up_env, log_to(&dir, "up-1"));
    wait_upstream(&upstream, up_port, &dir, "up-1").await;

    // The proxying fleet: probes every second, reconnects quickly and keeps trying.
    let config = dir.join("mcp-fleet.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[health]
interval_secs = 1
[restart]
backoff_base_ms = 100
backoff_cap_ms = 300
budget = 1000

[servers.up]
url = "http://127.0.0.1:{up_port}/mcp"
headers = {{ Authorization = "Bearer ${{env:UP_TOKEN}}" }}

[servers.wrong]
url = "http://127.0.0.1:{up_port}/mcp"
headers = {{ Authorization = "Bearer not-the-token" }}
restart = {{ mode = "never" }}
"#
        ),
    )
    .unwrap();
    let port = free_port();
    let mut fleet = fleet_on(
        &config,
        port,
        &[("UP_TOKEN", "up-secret")],
        log_to(&dir, "proxy"),
    );
    wait_ready(port, LIMIT).await;
    let http = reqwest::Client::new();

    let up = wait_state(&http, port, "up", "ready").await;
    assert_eq!(up["handshake"]["era"], "2026-07-28", "{up}");
    assert_eq!(up["pid"], Value::Null, "a remote server has no process");
    let wrong = server_status(&http, port, "wrong").await;
    assert_eq!(wrong["state"], "failed", "{wrong}");
    assert!(
        wrong["reason"].as_str().unwrap_or("").contains("401"),
        "the refusal names the HTTP status: {wrong}"
    );

    let session = McpSession::open(&format!("http://127.0.0.1:{port}/mcp")).await;
    wait_tool(&session, "up__ref__echo").await;
    assert_eq!(
        echo(&session, "up__ref__echo", "through two fleets").await,
        "through two fleets"
    );

    // The remote goes away: calls fail at once with a reason, the server leaves `ready`.
    sigterm(&mut upstream, LIMIT).await.expect("upstream stops");
    let failed = session
        .call(
            "tools/call",
            json!({"name": "up__ref__echo", "arguments": {"message": "x"}}),
        )
        .await;
    assert!(
        failed.get("error").is_some() || failed["result"]["isError"] == true,
        "a call to a lost remote fails: {failed}"
    );
    wait_for(LIMIT, "up no longer ready", || async {
        let s = server_status(&http, port, "up").await;
        (s["state"] != "ready").then_some(())
    })
    .await;

    // Back on the same address: the restart policy reconnects and calls work again.
    let mut upstream = fleet_on(&upstream_config, up_port, &up_env, log_to(&dir, "up-2"));
    wait_upstream(&upstream, up_port, &dir, "up-2").await;
    let up = wait_state(&http, port, "up", "ready").await;
    assert!(up["restarts"].as_u64().unwrap() >= 1, "{up}");
    // The gateway lists the server's tools again once it is ready (clients get list_changed).
    wait_tool(&session, "up__ref__echo").await;
    assert_eq!(echo(&session, "up__ref__echo", "again").await, "again");

    sigterm(&mut fleet, LIMIT).await.expect("fleet stops");
    sigterm(&mut upstream, LIMIT).await.expect("upstream stops");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 2026-07-28 remote's tools that appear after the fleet connected are listed: the fleet
/// keeps a `subscriptions/listen` open to the remote, which announces the change, and opens it
/// again when the remote comes back, whether the remote was back before the fleet asked again
/// or the asking found it down and the fleet connected anew.
#[tokio::test]
async fn tools_a_remote_fleet_lists_after_the_connection_are_followed() {
    let dir = tempdir();
    eprintln!("the fleets' logs: {}", dir.display());
    // The remote starts with no server; a reload adds one once the fleet is connected.
    let upstream_config = dir.join("upstream.json");
    std::fs::write(&upstream_config, r#"{"mcpServers": {}}"#).unwrap();
    // It comes back on this port (see `port_outside_ephemeral_range`).
    let up_port = port_outside_ephemeral_range();
    let mut upstream = fleet_on(&upstream_config, up_port, &[], log_to(&dir, "up"));
    wait_upstream(&upstream, up_port, &dir, "up").await;

    let config = dir.join("mcp-fleet.toml");
    std::fs::write(
        &config,
        format!("[servers.up]\nurl = \"http://127.0.0.1:{up_port}/mcp\"\n"),
    )
    .unwrap();
    let port = free_port();
    let mut fleet = fleet_on(&config, port, &[], log_to(&dir, "proxy"));
    wait_ready(port, LIMIT).await;
    let http = reqwest::Client::new();
    let up = wait_state(&http, port, "up", "ready").await;
    assert_eq!(up["handshake"]["era"], "2026-07-28", "{up}");
    assert_eq!(up["handshake"]["tools"], json!([]), "{up}");

    let bin = mcp_reference_server::binary_path();
    std::fs::write(
        &upstream_config,
        json!({"mcpServers": {"ref": {"command": bin, "args": ["--name", "ref"]}}}).to_string(),
    )
    .unwrap();
    sighup(&upstream);

    // The fleet hears of the remote's new tools and offers them.
    let session = McpSession::open(&format!("http://127.0.0.1:{port}/mcp")).await;
    wait_tool(&session, "up__ref__echo").await;
    assert_eq!(echo(&session, "up__ref__echo", "later").await, "later");

    // The remote is killed and back at once, between two of the fleet's probes (every 30 s by
    // default): the listen's stream ended, so the fleet asks again, and a server the remote
    // gains afterwards is followed too.
    upstream.kill().await.unwrap();
    let two = json!({"mcpServers": {
        "ref": {"command": bin, "args": ["--name", "ref"]},
        "two": {"command": bin, "args": ["--name", "two"]},
    }});
    std::fs::write(&upstream_config, r#"{"mcpServers": {}}"#).unwrap();
    let mut upstream = fleet_on(&upstream_config, up_port, &[], log_to(&dir, "up-again"));
    wait_upstream(&upstream, up_port, &dir, "up-again").await;
    std::fs::write(&upstream_config, two.to_string()).unwrap();
    sighup(&upstream);
    wait_tool(&session, "up__two__echo").await;

    // The remote is killed and stays down: asking for the listen again finds no one, so the
    // link is lost and the server restarts (probes are 30 s apart: the loss is the re-ask's).
    // Once the remote is back the fleet connects again, listens again and follows a change.
    upstream.kill().await.unwrap();
    wait_for(LIMIT, "up no longer ready", || async {
        let s = server_status(&http, port, "up").await;
        (s["state"] != "ready").then_some(())
    })
    .await;
    let log = std::fs::read_to_string(dir.join("proxy.log")).unwrap();
    let asked = log.rfind("subscriptions/listen ended; asking again");
    let lost = log.rfind("remote server lost");
    assert!(
        asked.is_some() && lost > asked && log[lost.unwrap()..].contains("cannot reach"),
        "the listen was not asked again before the link was lost; the proxy's log:\n{log}"
    );
    std::fs::write(&upstream_config, two.to_string()).unwrap();
    let mut upstream = fleet_on(&upstream_config, up_port, &[], log_to(&dir, "up-third"));
    wait_upstream(&upstream, up_port, &dir, "up-third").await;
    wait_state(&http, port, "up", "ready").await;
    let three = json!({"mcpServers": {
        "ref": {"command": bin, "args": ["--name", "ref"]},
        "two": {"command": bin, "args": ["--name", "two"]},
        "three": {"command": bin, "args": ["--name", "three"]},
    }});
    std::fs::write(&upstream_config, three.to_string()).unwrap();
    sighup(&upstream);
    wait_tool(&session, "up__three__echo").await;
    assert_eq!(echo(&session, "up__three__echo", "third").await, "third");

    sigterm(&mut fleet, LIMIT).await.expect("fleet stops");
    sigterm(&mut upstream, LIMIT).await.expect("upstream stops");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn server_everything_over_streamable_http_gets_a_session_that_ends_with_the_fleet() {
    let program = on_path(
        "mcp-server-everything",
        "npm @modelcontextprotocol/server-everything",
    );
    let dir = tempdir();
    let log_path = dir.join("everything.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let remote_port = free_port();
    let mut remote = tokio::process::Command::new(program)
        .arg("streamableHttp")
        .env("PORT", remote_port.to_string())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for(LIMIT, "server-everything listening", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", remote_port))
            .await
            .ok()
    })
    .await;

    let config = dir.join("servers.json");
    std::fs::write(
        &config,
        json!({"mcpServers": {"everything": {
            "type": "http", "url": format!("http://127.0.0.1:{remote_port}/mcp")}}})
        .to_string(),
    )
    .unwrap();
    let port = free_port();
    let mut fleet = fleet_on(&config, port, &[], Stdio::null());
    wait_ready(port, LIMIT).await;
    let http = reqwest::Client::new();
    let status = wait_state(&http, port, "everything", "ready").await;
    assert_eq!(status["handshake"]["era"], "2025-11-25", "{status}");

    let session = McpSession::open(&format!("http://127.0.0.1:{port}/mcp")).await;
    wait_tool(&session, "everything__echo").await;
    assert_eq!(
        echo(&session, "everything__echo", "hello").await,
        "Echo: hello"
    );

    // The fleet opened the server's event stream, and ends the session when it stops.
    let logged = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_for(LIMIT, "the GET stream", || async {
        logged().contains("Received MCP GET request").then_some(())
    })
    .await;
    sigterm(&mut fleet, LIMIT).await.expect("fleet stops");
    wait_for(LIMIT, "the session's DELETE", || async {
        logged()
            .contains("Received session termination request")
            .then_some(())
    })
    .await;

    let _ = remote.start_kill();
    let _ = remote.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory under the system's temporary one.
fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mcp-fleet-remote-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
