//! The `mcp-fleet` binary end to end: a Claude Desktop style config, `/metrics` over real HTTP,
//! SIGTERM for an ordered shutdown that leaves no process, and exit code 2 for a bad config.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{http_get, pids_with, sigterm, spawn_fleet, wait_for, write_config};
use serde_json::json;

/// Every start of `mcp-fleet run` ends the orphans of any earlier instance that was killed,
/// machine-wide. The test that leaves one on purpose, to see its own next start end it, takes
/// this lock alone; the other tests that start the binary share it.
static SWEEPS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn runs_a_config_serves_metrics_and_stops_on_sigterm() {
    let _shared = SWEEPS.read().await;
    let bin = mcp_reference_server::binary_path();
    let marker = format!("cli-run-{}", std::process::id());
    let config = write_config(&format!(
        r#"{{
  "mcpServers": {{
    "one": {{ "command": "{bin}", "args": ["--name", "{marker}-one"] }},
    "two": {{ "command": "sh", "args": ["-c", "exec {bin} --name {marker}-two"], "env": {{"MCP_REF_LOG_REQUESTS": "1"}} }},
    "broken": {{ "command": "/no/such/server" }},
    "off": {{ "command": "{bin}", "disabled": true }}
  }}
}}"#,
        bin = bin.display()
    ));
    let (mut child, port) = spawn_fleet(&config.0, Stdio::piped());

    let metrics = wait_for(
        Duration::from_secs(20),
        "both servers up in /metrics",
        || async {
            let body = http_get(port, "/metrics").await?;
            (body.contains(r#"mcp_fleet_up{server="one"} 1"#)
                && body.contains(r#"mcp_fleet_up{server="two"} 1"#))
            .then_some(body)
        },
    )
    .await;
    assert!(metrics.starts_with("HTTP/1.0 200") || metrics.starts_with("HTTP/1.1 200"));
    assert!(metrics.contains("mcp_fleet_server_launch_failures_total{server=\"broken\"} 1"));
    assert!(!metrics.contains("server=\"off\""));
    assert_eq!(pids_with(&marker).len(), 2, "two server processes run");

    common::stop_cleanly(&mut child, Duration::from_secs(15)).await;
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("shutdown complete"), "{stderr}");
    assert!(
        stderr.contains("broken"),
        "the failed server is logged: {stderr}"
    );
    wait_for(Duration::from_secs(5), "no server process left", || async {
        pids_with(&marker).is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_bad_config_names_file_line_and_key_and_exits_2() {
    let config = write_config(
        "{\n  \"mcpServers\": {\n    \"a\": { \"command\": \"x\", \"argz\": [] }\n  }\n}\n",
    );
    let out = common::mcp_fleet(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config.0)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = config.0.display().to_string();
    assert!(err.contains(&format!("{file}:3:")), "{err}");
    assert!(err.contains("mcpServers.a.argz"), "{err}");
    assert!(err.contains("unknown field `argz`"), "{err}");

    let syntax = write_config("{ \"mcpServers\": { \"a\": { \"command\": \"x\", } } }");
    let out = common::mcp_fleet(["run", "--config"])
        .arg(&syntax.0)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{}:1:", syntax.0.display())));

    // Beyond loopback, the admin API would be open to the network: refused without a token.
    let good = write_config("{ \"mcpServers\": {} }");
    let open = common::mcp_fleet(["run", "--listen", "0.0.0.0:0", "--config"])
        .arg(&good.0)
        .env_remove("MCP_FLEET_TOKEN")
        .output()
        .await
        .unwrap();
    assert_eq!(open.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&open.stderr).contains("needs a bearer token"));

    // A RUST_LOG that is no filter is said, not ignored in silence.
    let missing = common::mcp_fleet(["run", "--config", "/no/such/config.json"])
        .env("RUST_LOG", "nonsense[")
        .output()
        .await
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("cannot read the file"), "{err}");
    assert!(
        err.contains(r#"RUST_LOG="nonsense[" is not a valid log filter"#),
        "{err}"
    );
}

#[tokio::test]
async fn after_sigkill_no_server_survives_and_the_next_start_sweeps_what_could() {
    let _alone = SWEEPS.write().await;
    let bin = mcp_reference_server::binary_path();
    let marker = format!("cli-kill-{}", std::process::id());
    // A survivor on purpose: a background child of a wrapper shell, which neither the kernel's
    // parent-death signal nor a closed pipe reaches. Only the next start's sweep can end it.
    let survivor = format!("1000.{}", std::process::id());
    let mut servers = Vec::new();
    for i in 0..20 {
        let entry = if i % 2 == 0 {
            format!(
                r#""d{i}": {{ "command": "{}", "args": ["--name", "{marker}-{i}"] }}"#,
                bin.display()
            )
        } else {
            // A wrapper that does not exec: the server is the shell's child.
            format!(
                r#""w{i}": {{ "command": "sh", "args": ["-c", "{} --name {marker}-{i}; true"] }}"#,
                bin.display()
            )
        };
        servers.push(entry);
    }
    servers.push(format!(
        r#""bg": {{ "command": "sh", "args": ["-c", "(trap '' TERM HUP; exec sleep {survivor}) & exec {} --name {marker}-bg"] }}"#,
        bin.display()
    ));
    let config = write_config(&format!(
        "{{ \"mcpServers\": {{ {} }} }}",
        servers.join(",\n")
    ));
    let (mut child, port) = spawn_fleet(&config.0, Stdio::null());
    wait_for(Duration::from_secs(30), "21 servers up", || async {
        let body = http_get(port, "/metrics").await?;
        (body.matches(" 1\n").count() > 0
            && (0..20).all(|i| {
                let name = if i % 2 == 0 {
                    format!("d{i}")
                } else {
                    format!("w{i}")
                };
                body.contains(&format!("mcp_fleet_up{{server=\"{name}\"}} 1"))
            }))
        .then_some(())
    })
    .await;
    // 10 direct servers, 10 wrapper shells with their servers, and the exec'd `bg` server.
    wait_for(Duration::from_secs(10), "31 processes", || async {
        (pids_with(&marker).len() == 31).then_some(())
    })
    .await;
    assert_eq!(pids_with(&survivor).len(), 1);

    child.kill().await.unwrap(); // SIGKILL
    let killed_at = std::time::Instant::now();
    wait_for(
        Duration::from_secs(2),
        "every server to die within 2 s",
        || async { pids_with(&marker).is_empty().then_some(()) },
    )
    .await;
    assert!(killed_at.elapsed() <= Duration::from_secs(2));
    assert_eq!(
        pids_with(&survivor).len(),
        1,
        "the deliberate survivor lives on"
    );

    // The next start ends it and says so.
    let empty = write_config(r#"{ "mcpServers": {} }"#);
    let (mut next, _port) = spawn_fleet(&empty.0, Stdio::piped());
    wait_for(
        Duration::from_secs(5),
        "the sweep to end the survivor",
        || async { pids_with(&survivor).is_empty().then_some(()) },
    )
    .await;
    sigterm(&mut next, Duration::from_secs(10))
        .await
        .expect("mcp-fleet exits after SIGTERM");
    let mut stderr = String::new();
    next.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(
        stderr.contains("ended an orphan") && stderr.contains(&survivor),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_worker_threads_variable_is_read_and_a_bad_value_is_a_usage_error() {
    let claude = write_config(common::DOCUMENTED_CONFIG);
    for good in ["1", "3"] {
        let out = common::check_config(&claude.0, &[("TOKIO_WORKER_THREADS", Some(good))]).await;
        assert_eq!(out.status.code(), Some(0), "{good}: {out:?}");
    }
    for bad in ["0", "two", ""] {
        let out = common::check_config(&claude.0, &[("TOKIO_WORKER_THREADS", Some(bad))]).await;
        assert_eq!(out.status.code(), Some(2), "{bad}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "TOKIO_WORKER_THREADS must be a positive integer, not `{bad}`"
            )),
            "{err}"
        );
    }
}

#[tokio::test]
async fn check_validates_claude_desktop_and_vs_code_configs_without_starting_anything() {
    // The example of the MCP documentation, unchanged.
    let claude = write_config(common::DOCUMENTED_CONFIG);
    let out = common::check_config(&claude.0, &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("2 server(s) to run"), "{stdout}");
    assert!(
        stdout.contains("npx -y @modelcontextprotocol/server-filesystem /Users/username/Desktop"),
        "{stdout}"
    );

    // VS Code's form, with `${env:..}` from mcp-fleet's own environment.
    let vscode = write_config(
        r#"{ "servers": { "gh": { "type": "stdio", "command": "${env:FLEET_TEST_BIN}", "args": ["--token", "${env:FLEET_TEST_TOKEN}"] } } }"#,
    );
    let out = common::check_config(
        &vscode.0,
        &[
            ("FLEET_TEST_BIN", Some("/opt/gh-server")),
            ("FLEET_TEST_TOKEN", Some("abc")),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("/opt/gh-server --token abc"), "{stdout}");

    // Without the variables: exit 2, naming file, line, key and variable.
    let out = common::check_config(
        &vscode.0,
        &[("FLEET_TEST_BIN", None), ("FLEET_TEST_TOKEN", None)],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:1:16: `servers.gh.command`: environment variable `FLEET_TEST_BIN` is not set",
            vscode.0.display()
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn sighup_restarts_only_the_server_whose_entry_changed_and_sessions_go_on() {
    let _shared = SWEEPS.read().await;
    let bin = mcp_reference_server::binary_path();
    let marker = format!("cli-hup-{}", std::process::id());
    let entry = |name: &str, tag: &str| {
        format!(
            r#""{name}": {{ "command": "{}", "args": ["--name", "{marker}-{name}-{tag}"] }}"#,
            bin.display()
        )
    };
    let text = |b_tag: &str, extra: &str| {
        format!(
            "{{ \"mcpServers\": {{ {}, {}{extra} }} }}",
            entry("a", "v1"),
            entry("b", b_tag)
        )
    };
    let config = write_config(&text("v1", ""));
    let (mut child, port) = spawn_fleet(&config.0, Stdio::null());
    wait_for(Duration::from_secs(30), "a and b up", || async {
        let body = common::scrape(port).await?;
        (body.contains(r#"mcp_fleet_up{server="a"} 1"#)
            && body.contains(r#"mcp_fleet_up{server="b"} 1"#))
        .then_some(())
    })
    .await;
    let a_pids = pids_with(&format!("{marker}-a-v1"));
    assert_eq!(a_pids.len(), 1);
    let session = common::McpSession::open(&format!("http://127.0.0.1:{port}/mcp")).await;
    let echo = |msg: &str| json!({"name": "a__echo", "arguments": {"message": msg}});
    assert_eq!(
        session.call("tools/call", echo("before")).await["result"]["content"][0]["text"],
        "before"
    );

    // b's arguments change and c is added: SIGHUP.
    std::fs::write(&config.0, text("v2", &format!(", {}", entry("c", "v1")))).unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for(
        Duration::from_secs(30),
        "b restarted, c started",
        || async {
            (pids_with(&format!("{marker}-b-v1")).is_empty()
                && pids_with(&format!("{marker}-b-v2")).len() == 1
                && pids_with(&format!("{marker}-c-v1")).len() == 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        pids_with(&format!("{marker}-a-v1")),
        a_pids,
        "a was not touched"
    );
    // The session opened before the reload goes on.
    assert_eq!(
        session.call("tools/call", echo("after")).await["result"]["content"][0]["text"],
        "after"
    );

    // c is removed: only c stops.
    std::fs::write(&config.0, text("v2", "")).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for(Duration::from_secs(30), "c stopped", || async {
        pids_with(&format!("{marker}-c-v1"))
            .is_empty()
            .then_some(())
    })
    .await;
    assert_eq!(pids_with(&format!("{marker}-a-v1")), a_pids);
    assert_eq!(pids_with(&format!("{marker}-b-v2")).len(), 1);

    // A reload that waits on a slow server does not hold up a SIGTERM (the handshake's
    // timeout, a minute, would have): the fleet stops within the bound below.
    let slow = format!(
        r#", "d": {{ "command": "{}", "args": ["--name", "{marker}-d", "--slow-start-ms", "100000"] }}"#,
        bin.display()
    );
    std::fs::write(&config.0, text("v2", &slow)).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for(Duration::from_secs(30), "d starting", || async {
        (pids_with(&format!("{marker}-d")).len() == 1).then_some(())
    })
    .await;

    common::stop_cleanly(&mut child, Duration::from_secs(15)).await;
    wait_for(Duration::from_secs(5), "no server left", || async {
        pids_with(&marker).is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_admin_api_reports_restarts_and_guards_itself() {
    let _shared = SWEEPS.read().await;
    let bin = mcp_reference_server::binary_path();
    let marker = format!("cli-admin-{}", std::process::id());
    let config = write_config(&format!(
        r#"{{ "mcpServers": {{
    "a": {{ "command": "{bin}", "args": ["--name", "{marker}-a"], "env": {{"MCP_REF_LOG_REQUESTS": "1"}} }},
    "broken": {{ "command": "/no/such/server" }}
}} }}"#,
        bin = bin.display()
    ));
    let (mut child, port) = common::spawn_fleet_with(
        &config.0,
        Stdio::null(),
        &[],
        &[],
        &[("MCP_FLEET_TOKEN", "s3cret")],
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).bearer_auth("s3cret");

    // Ready once `a` serves and `broken` has failed (a terminal state).
    let ready = common::wait_ready(port, Duration::from_secs(30)).await;
    assert_eq!(ready, json!({"status": "ready", "servers": 2}));
    let alive = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(alive.status(), 200);

    let servers: serde_json::Value = get("/api/servers")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let states: Vec<(&str, &str)> = servers
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("a", "ready"), ("broken", "failed")]);
    let a: serde_json::Value = get("/api/servers/a")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pid = a["pid"].as_u64().unwrap();
    assert_eq!(a["handshake"]["tools"].as_array().unwrap().len(), 3);

    let missing = get("/api/servers/nope").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "no server named `nope`");
    // A route that does not exist is a JSON error too, as the CLI prints it.
    let no_route = get("/api/nope").send().await.unwrap();
    assert_eq!(no_route.status(), 404);
    let body: serde_json::Value = no_route.json().await.unwrap();
    assert_eq!(body["error"], "no such route");
    // A restart of a server that cannot start: the server's fault, told as 502 with why.
    let failed = http
        .post(format!("{base}/api/servers/broken/restart"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 502);
    let body: serde_json::Value = failed.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("/no/such/server"),
        "{body}"
    );

    // The guards: a token, and a Host that is ours.
    let no_token = http
        .get(format!("{base}/api/servers"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
    assert_eq!(no_token.headers()["www-authenticate"], "Bearer");
    let body: serde_json::Value = no_token.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
    let rebinding = get("/api/servers")
        .header("host", "evil.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(rebinding.status(), 403);
    let body: serde_json::Value = rebinding.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("Host"), "{body}");
    // Every refusal of the admin API is JSON with an error: a bad query, a wrong method.
    let bad_query = get("/api/servers/a/logs?lines=many").send().await.unwrap();
    assert_eq!(bad_query.status(), 400);
    let body: serde_json::Value = bad_query.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("lines"), "{body}");
    let wrong_method = http
        .put(format!("{base}/api/servers/a"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert!(wrong_method.headers().contains_key("allow"));
    let body: serde_json::Value = wrong_method.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");

    // A restart on request: a new pid, and the old process is gone.
    let restarted = http
        .post(format!("{base}/api/servers/a/restart"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(restarted.status(), 200);
    let restarted: serde_json::Value = restarted.json().await.unwrap();
    assert_eq!(restarted["state"], "ready");
    assert_ne!(restarted["pid"].as_u64().unwrap(), pid);
    assert_eq!(pids_with(&format!("{marker}-a")).len(), 1);

    // POST /api/reload: a file with errors changes nothing (422, every error listed)...
    let original = std::fs::read_to_string(&config.0).unwrap();
    std::fs::write(&config.0, "{ \"mcpServers\": { \"a\": {} } }").unwrap();
    let post = |path: &str| {
        http.post(format!("{base}{path}"))
            .bearer_auth("s3cret")
            .send()
    };
    let refused = post("/api/reload").await.unwrap();
    assert_eq!(refused.status(), 422);
    let refused: serde_json::Value = refused.json().await.unwrap();
    assert!(
        refused["errors"][0]
            .as_str()
            .unwrap()
            .contains("mcpServers.a"),
        "{refused}"
    );
    // ... and a new server is started, the others untouched.
    let a_pid = restarted["pid"].as_u64().unwrap();
    std::fs::write(
        &config.0,
        original.replace(
            r#""broken""#,
            &format!(
                r#""b": {{ "command": "{}", "args": ["--name", "{marker}-b"] }}, "broken""#,
                bin.display()
            ),
        ),
    )
    .unwrap();
    let report: serde_json::Value = post("/api/reload").await.unwrap().json().await.unwrap();
    assert_eq!(report["started"], json!(["b"]), "{report}");
    assert_eq!(report["unchanged"], json!(["a", "broken"]), "{report}");
    let a: serde_json::Value = get("/api/servers/a")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["pid"].as_u64(), Some(a_pid));
    assert_eq!(pids_with(&format!("{marker}-b")).len(), 1);

    let logs: serde_json::Value = get("/api/servers/a/logs?lines=5")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(logs["lines"].as_array().unwrap().len() <= 5, "{logs}");

    common::stop_cleanly(&mut child, Duration::from_secs(15)).await;
}

#[tokio::test]
async fn servers_added_and_removed_through_the_api_survive_a_sigkill() {
    let _shared = SWEEPS.read().await;
    let bin = mcp_reference_server::binary_path();
    let marker = format!("cli-state-{}", std::process::id());
    let config = write_config(&format!(
        r#"{{ "mcpServers": {{ "keep": {{ "command": "{bin}", "args": ["--name", "{marker}-keep"] }},
            "drop": {{ "command": "{bin}", "args": ["--name", "{marker}-drop"] }} }} }}"#,
        bin = bin.display()
    ));
    let state = config.0.with_extension("state-test.json");
    let state_arg = state.display().to_string();
    let start = || async {
        let (child, port) =
            common::spawn_fleet_with(&config.0, Stdio::null(), &[], &["--state", &state_arg], &[]);
        common::wait_ready(port, Duration::from_secs(30)).await;
        (child, format!("http://127.0.0.1:{port}"))
    };
    let http = reqwest::Client::new();

    let (mut first, base) = start().await;
    // Add one, remove one of the config's.
    let added = http
        .post(format!("{base}/api/servers"))
        .json(&json!({"name": "extra", "command": bin.display().to_string(), "args": ["--name", format!("{marker}-extra")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let added: serde_json::Value = added.json().await.unwrap();
    assert_eq!(added["state"], "ready", "{added}");
    let again = http
        .post(format!("{base}/api/servers"))
        .json(&json!({"name": "extra", "command": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409);
    let not_json = http
        .post(format!("{base}/api/servers"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let body: serde_json::Value = not_json.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("JSON"), "{body}");
    let bad = http
        .post(format!("{base}/api/servers"))
        .json(&json!({"name": "bad", "command": "x", "argz": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad: serde_json::Value = bad.json().await.unwrap();
    assert!(
        bad["errors"][0]
            .as_str()
            .unwrap()
            .contains("mcpServers.bad.argz"),
        "{bad}"
    );
    let removed = http
        .delete(format!("{base}/api/servers/drop"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    assert_eq!(
        http.delete(format!("{base}/api/servers/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    wait_for(Duration::from_secs(10), "drop stopped", || async {
        pids_with(&format!("{marker}-drop"))
            .is_empty()
            .then_some(())
    })
    .await;
    let listed: serde_json::Value = common::get_json(&http, format!("{base}/api/servers")).await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["name"] != "drop"),
        "a removed server is no longer listed: {listed}"
    );

    // SIGKILL: nothing gets to save anything now.
    first.kill().await.unwrap();
    wait_for(
        Duration::from_secs(5),
        "the servers gone with it",
        || async { pids_with(&marker).is_empty().then_some(()) },
    )
    .await;

    let (mut second, base) = start().await;
    let servers: serde_json::Value = common::get_json(&http, format!("{base}/api/servers")).await;
    let names: Vec<&str> = servers
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["extra", "keep"], "{servers}");
    assert_eq!(pids_with(&format!("{marker}-extra")).len(), 1);
    assert!(pids_with(&format!("{marker}-drop")).is_empty());

    let status = sigterm(&mut second, Duration::from_secs(15))
        .await
        .expect("mcp-fleet exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_file(&state);
}

/// `POST /api/reload` of the fleet at `base`: its report.
async fn reload_through_the_api(base: &str) -> serde_json::Value {
    let answer = reqwest::Client::new()
        .post(format!("{base}/api/reload"))
        .send()
        .await
        .unwrap();
    answer.json().await.unwrap()
}

/// `mcp-fleet run` of `config`, its log written to `log`, once its HTTP server answers (its
/// launch may still run): the child and its base URL.
async fn fleet_logging_to(
    config: &std::path::Path,
    log: &std::path::Path,
) -> (tokio::process::Child, String) {
    let stderr = Stdio::from(std::fs::File::create(log).unwrap());
    let (child, port) = common::spawn_fleet_with(config, stderr, &[], &[], &[]);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for(Duration::from_secs(10), "the API up", || async {
        let up = http.get(format!("{base}/healthz")).send().await;
        up.ok().map(drop)
    })
    .await;
    (child, base)
}

/// A reload asked for through the API while the fleet launches waits for the launch: it does
/// not stop a server the launch is starting (which the launch would report as failed).
#[tokio::test]
async fn a_reload_during_the_launch_runs_after_it() {
    let _shared = SWEEPS.read().await;
    let bin = mcp_reference_server::binary_path();
    let entry = |extra: &str| {
        format!(
            r#"{{ "mcpServers": {{ "slow": {{ "command": "{}", "args": ["--slow-start-ms", "1500"{extra}] }} }} }}"#,
            bin.display()
        )
    };
    let config = write_config(&entry(""));
    let log = config.0.with_extension("launch.log");
    let (mut child, base) = fleet_logging_to(&config.0, &log).await;
    std::fs::write(&config.0, entry(r#", "--name", "changed""#)).unwrap();
    let report = reload_through_the_api(&base).await;
    assert_eq!(report["restarted"], json!(["slow"]), "{report}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("reload asked for during the launch")
            && text.contains("fleet launched")
            && !text.contains("did not start"),
        "{text}"
    );
    common::stop_cleanly(&mut child, Duration::from_secs(15)).await;
    let _ = std::fs::remove_file(&log);
}

/// A reload waiting for the launch does not hold up a SIGTERM: it is refused (503), and
/// mcp-fleet stops as it would without it.
#[tokio::test]
async fn a_reload_waiting_for_the_launch_does_not_hold_up_the_shutdown() {
    let _shared = SWEEPS.read().await;
    let bin = mcp_reference_server::binary_path();
    let config = write_config(&format!(
        r#"{{ "mcpServers": {{ "slow": {{ "command": "{}", "args": ["--slow-start-ms", "8000"] }} }} }}"#,
        bin.display()
    ));
    let log = config.0.with_extension("stop.log");
    let (mut child, base) = fleet_logging_to(&config.0, &log).await;
    let http = reqwest::Client::new();
    let reload = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.post(format!("{base}/api/reload"))
                .send()
                .await
                .map(|r| r.status())
        }
    });
    wait_for(Duration::from_secs(10), "the reload waiting", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("reload asked for during the launch")
            .then_some(())
    })
    .await;
    common::stop_cleanly(&mut child, Duration::from_secs(15)).await;
    let answer = reload.await.unwrap();
    assert_eq!(answer.ok(), Some(reqwest::StatusCode::SERVICE_UNAVAILABLE));
    let _ = std::fs::remove_file(&log);
}

/// An addition waits for its server's launch without holding up other changes: a server whose
/// handshake hangs can be removed at once, not after the handshake's timeout.
#[tokio::test]
async fn a_server_whose_launch_hangs_can_be_removed_meanwhile() {
    let _shared = SWEEPS.read().await;
    let bin = mcp_reference_server::binary_path();
    let config = write_config(r#"{ "mcpServers": {} }"#);
    let state = config.0.with_extension("hang-state.json");
    let (mut child, port) = common::spawn_fleet_with(
        &config.0,
        Stdio::null(),
        &[],
        &["--state", &state.display().to_string()],
        &[],
    );
    common::wait_ready(port, Duration::from_secs(30)).await;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let add = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        let body = json!({"name": "hang", "command": bin, "args": ["--hang-after-requests", "0"]});
        async move {
            http.post(format!("{base}/api/servers"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    wait_for(
        Duration::from_secs(10),
        "the hanging server listed",
        || async {
            let one = http
                .get(format!("{base}/api/servers/hang"))
                .send()
                .await
                .ok()?;
            (one.status() == 200).then_some(())
        },
    )
    .await;
    let removed = tokio::time::timeout(
        Duration::from_secs(10),
        http.delete(format!("{base}/api/servers/hang")).send(),
    )
    .await
    .expect("removed without waiting for the hanging launch")
    .unwrap();
    assert_eq!(removed.status(), 200);
    let added = tokio::time::timeout(Duration::from_secs(10), add)
        .await
        .expect("the addition answers once its server is removed")
        .unwrap();
    assert_eq!(added, 201, "added, did not start");
    common::stop_cleanly(&mut child, Duration::from_secs(15)).await;
    let _ = std::fs::remove_file(&state);
}

/// `mcp-fleet COMMAND --url URL ARGS...`: exit code and stdout (stderr appended on failure).
async fn fleet_cli(url: &str, args: &[&str]) -> (i32, String) {
    let out = common::mcp_fleet([args[0]])
        .args(["--url", url])
        .args(&args[1..])
        .env_remove("MCP_FLEET_TOKEN")
        .output()
        .await
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn the_cli_operates_a_running_fleet_through_its_api() {
    let _shared = SWEEPS.read().await;
    let bin = mcp_reference_server::binary_path();
    let marker = format!("cli-ctl-{}", std::process::id());
    let config = write_config(&format!(
        r#"{{ "mcpServers": {{ "a": {{ "command": "{bin}", "args": ["--name", "{marker}-a"], "env": {{"MCP_REF_LOG_REQUESTS": "1"}} }} }} }}"#,
        bin = bin.display()
    ));
    let state = config.0.with_extension("ctl-state.json");
    let state_arg = state.display().to_string();
    let (mut child, port) =
        common::spawn_fleet_with(&config.0, Stdio::null(), &[], &["--state", &state_arg], &[]);
    let url = format!("http://127.0.0.1:{port}");
    wait_for(Duration::from_secs(30), "a up", || async {
        let body = common::scrape(port).await?;
        body.contains(r#"mcp_fleet_up{server="a"} 1"#).then_some(())
    })
    .await;

    let bin_s = bin.display().to_string();
    let b_name = format!("{marker}-b");
    let (code, out) = fleet_cli(&url, &["servers", "add", "b", &bin_s, "--name", &b_name]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("added b: ready, pid "), "{out}");

    let (code, out) = fleet_cli(&url, &["status"]).await;
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("PROBE"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("a ") && lines[1].contains("ready"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("b ") && lines[2].ends_with('3'),
        "3 tools: {out}"
    );

    let (code, out) = fleet_cli(&url, &["tools"]).await;
    assert_eq!(code, 0, "{out}");
    for name in ["a__echo", "a__add", "a__sleep", "b__echo"] {
        assert!(out.lines().any(|l| l.starts_with(name)), "{name}: {out}");
    }

    let (code, out) = fleet_cli(&url, &["servers", "stop", "b"]).await;
    assert_eq!((code, out.trim()), (0, "stopped b"));
    assert!(pids_with(&b_name).is_empty());
    let (code, out) = fleet_cli(&url, &["servers", "start", "b"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("started b: ready"), "{out}");
    assert_eq!(pids_with(&b_name).len(), 1);
    // Started again while it runs: left as it is, not restarted.
    let running = pids_with(&b_name);
    let (code, out) = fleet_cli(&url, &["servers", "start", "b"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(pids_with(&b_name), running, "the same process: {out}");

    // `a` logs each request it gets (the handshake's and the tool listing's at least).
    let (code, out) = fleet_cli(&url, &["logs", "a", "-n", "2"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");

    // `logs -f` prints every line once, in order: it asks with the last answer's cursor.
    // Restarts of `a` write request lines (each with an id of its own) while it follows.
    let mut follower = common::mcp_fleet(["logs"])
        .args(["--url", &url, "a", "-n", "0", "-f"])
        .env_remove("MCP_FLEET_TOKEN")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut printed_out = follower.stdout.take().unwrap();
    for _ in 0..3 {
        let (code, out) = fleet_cli(&url, &["servers", "restart", "a"]).await;
        assert_eq!(code, 0, "{out}");
    }
    let written: serde_json::Value = reqwest::get(format!("{url}/api/servers/a/logs?lines=100000"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let written: Vec<&str> = written["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let last = *written.last().unwrap();
    let mut printed = String::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        while !printed.lines().any(|l| l == last) {
            let n = printed_out.read(&mut buf).await.unwrap();
            assert!(n > 0, "the follower ended: {printed}");
            printed.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the follower printed {printed:?}, not {last:?}"));
    follower.kill().await.unwrap();
    let mut followed: Vec<&str> = printed.lines().collect();
    followed.truncate(followed.iter().position(|l| *l == last).unwrap() + 1);
    assert!(
        followed.len() >= 6,
        "three restarts' requests: {followed:?}"
    );
    assert!(
        written.ends_with(&followed),
        "each line once, in order: {followed:?} of {written:?}"
    );

    let (code, out) = fleet_cli(&url, &["servers", "restart", "nope"]).await;
    assert_eq!(code, 2, "a 404 is the user's mistake: {out}");
    assert!(out.contains("no server named `nope`"), "{out}");
    // A name with `#` in it names that server, not `b` (the name is one path segment).
    let (code, out) = fleet_cli(&url, &["servers", "add", "b#2", &bin_s]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = fleet_cli(&url, &["servers", "remove", "b#2"]).await;
    assert_eq!((code, out.trim()), (0, "removed b#2"));
    let (code, out) = fleet_cli(&url, &["status"]).await;
    assert!(
        code == 0 && out.lines().any(|l| l.starts_with("b ")),
        "{out}"
    );
    // A relative --cwd is this command's, not the fleet's: `sub` exists only beside the CLI.
    let here = std::env::temp_dir().join(format!("mcp-fleet-cli-cwd-{}", std::process::id()));
    std::fs::create_dir_all(here.join("sub")).unwrap();
    let out = common::mcp_fleet(["servers", "--url", &url])
        .args(["add", "--cwd", "sub", "in-sub", &bin_s])
        .current_dir(&here)
        .env_remove("MCP_FLEET_TOKEN")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, out) = fleet_cli(&url, &["servers", "remove", "in-sub"]).await;
    assert_eq!(code, 0, "{out}");
    // A working directory that is missing is named as such, not as a missing command.
    let (code, out) = fleet_cli(
        &url,
        &[
            "servers",
            "add",
            "--cwd",
            "/nonexistent-dir",
            "no-dir",
            &bin_s,
        ],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("working directory `/nonexistent-dir` is not a directory"),
        "{out}"
    );
    let (code, out) = fleet_cli(&url, &["servers", "remove", "no-dir"]).await;
    assert_eq!(code, 0, "{out}");
    std::fs::remove_dir_all(&here).unwrap();
    // A server that is added but cannot start is a failure.
    let (code, out) = fleet_cli(&url, &["servers", "add", "broken", "/nonexistent/bin"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("did not start"), "{out}");
    let (code, out) = fleet_cli(&url, &["servers", "remove", "broken"]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = fleet_cli(&url, &["servers", "remove", "b"]).await;
    assert_eq!((code, out.trim()), (0, "removed b"));

    common::stop_cleanly(&mut child, Duration::from_secs(15)).await;
    let (code, out) = fleet_cli(&url, &["status"]).await;
    assert_eq!(code, 1, "nothing listens any more: {out}");
    assert!(out.contains("cannot reach mcp-fleet"), "{out}");
    assert!(
        out.to_lowercase().contains("connection refused"),
        "the cause: {out}"
    );
    let (code, out) = fleet_cli("127.0.0.1:7700", &["status"]).await;
    assert_eq!(code, 2, "not a URL: {out}");
    let _ = std::fs::remove_file(&state);
}

#[tokio::test]
async fn a_long_launch_reports_its_progress() {
    let _shared = SWEEPS.read().await;
    let bin = mcp_reference_server::binary_path();
    let marker = format!("cli-progress-{}", std::process::id());
    let config = write_config(&format!(
        r#"{{ "mcpServers": {{
    "quick": {{ "command": "{bin}", "args": ["--name", "{marker}-quick"] }},
    "slow": {{ "command": "{bin}", "args": ["--name", "{marker}-slow", "--slow-start-ms", "3000"] }}
}} }}"#,
        bin = bin.display()
    ));
    let (mut child, port) = spawn_fleet(&config.0, Stdio::piped());
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all).await;
        all
    });
    wait_for(Duration::from_secs(30), "both up", || async {
        let body = common::scrape(port).await?;
        (body.contains(r#"mcp_fleet_up{server="quick"} 1"#)
            && body.contains(r#"mcp_fleet_up{server="slow"} 1"#))
        .then_some(())
    })
    .await;
    common::stop_cleanly(&mut child, Duration::from_secs(15)).await;
    let log = log.await.unwrap();
    // At 2 s, the quick server is ready and the slow one still starting.
    let progress = log
        .lines()
        .find(|l| l.contains("launching: 1/2 ready"))
        .unwrap_or_else(|| panic!("no progress line:\n{log}"));
    assert!(progress.contains("slow"), "{progress}");
    assert!(log.contains("fleet launched"), "{log}");
}

#[tokio::test]
async fn a_fleet_toml_sets_the_listen_address_the_policies_and_joins_a_json_file() {
    let _shared = SWEEPS.read().await;
    let bin = mcp_reference_server::binary_path();
    let marker = format!("cli-toml-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("mcp-fleet-toml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("claude.json"),
        format!(
            r#"{{ "mcpServers": {{ "json": {{ "command": "{}", "args": ["--name", "{marker}-json"] }} }} }}"#,
            bin.display()
        ),
    )
    .unwrap();
    let port = common::free_port();
    let toml = dir.join("mcp-fleet.toml");
    std::fs::write(
        &toml,
        format!(
            r#"listen = "127.0.0.1:{port}"
servers_file = "claude.json"
state = "run.state.json"

[restart]
backoff_base_ms = 100

[servers.once]
command = "{bin}"
args = ["--name", "{marker}-once"]
restart = {{ mode = "never" }}
"#,
            bin = bin.display()
        ),
    )
    .unwrap();

    let out = common::check_config(&toml, &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("2 server(s) to run"), "{stdout}");

    // No --listen: the TOML's address is used.
    let mut child = common::mcp_fleet(["run", "--config"])
        .arg(&toml)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(30),
        "both up on the TOML's port",
        || async {
            let body = common::scrape(port).await?;
            (body.contains(r#"mcp_fleet_up{server="once"} 1"#)
                && body.contains(r#"mcp_fleet_up{server="json"} 1"#))
            .then_some(())
        },
    )
    .await;
    // `once` has `restart = { mode = "never" }`; the JSON file's server has the TOML's policy.
    for name in ["once", "json"] {
        let pids = pids_with(&format!("{marker}-{name}"));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pids[0] as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    wait_for(
        Duration::from_secs(10),
        "json restarted, once failed",
        || async {
            let body = common::scrape(port).await?;
            (body.contains(r#"mcp_fleet_server_restarts_total{server="json"} 1"#)
                && body.contains(r#"mcp_fleet_server_state{server="once",state="failed"} 1"#))
            .then_some(())
        },
    )
    .await;
    assert!(pids_with(&format!("{marker}-once")).is_empty());
    // A server added through the API gets the TOML's `[restart]` too, kept in the state file.
    let added = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/servers"))
        .json(&json!({"name": "added", "command": bin, "args": ["--name", format!("{marker}-added")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run.state.json")).unwrap()).unwrap();
    let restart = &state["added"][0]["restart"];
    assert_eq!(restart["backoff_base"]["nanos"], 100_000_000, "{state}");
    // The TOML's `[restart]` changes: a reload gives it to the added server too, which restarts
    // with it like the servers of the files.
    // The same reload reads a fleet option that only a start applies, and a server of the
    // file named as the one added at runtime: the report says it applied neither.
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        text.replace("backoff_base_ms = 100", "backoff_base_ms = 200")
            .replace("state = ", "stop_grace_secs = 3\nstate = ")
            + &format!("\n[servers.added]\ncommand = \"{}\"\n", bin.display()),
    )
    .unwrap();
    let report = reload_through_the_api(&format!("http://127.0.0.1:{port}")).await;
    let restarted = report["restarted"].as_array().unwrap();
    assert!(
        restarted.contains(&json!("added")) && restarted.contains(&json!("json")),
        "{report}"
    );
    assert_eq!(
        report["notes"],
        json!([
            "`stop_grace_secs` changed: it takes effect when mcp-fleet starts again",
            "`added` of the file is not used: the server of that name added at runtime stands in for it (kept in the state file)"
        ]),
        "{report}"
    );
    common::stop_cleanly(&mut child, Duration::from_secs(15)).await;

    // An error in the TOML: file, line and key, exit 2.
    std::fs::write(
        &toml,
        "listen = \"127.0.0.1:1\"\n\n[health]\ninterval = 5\n",
    )
    .unwrap();
    let out = common::check_config(&toml, &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:4:1: `health.interval`: unknown field `interval`",
            toml.display()
        )),
        "{err}"
    );

    // What `run` would refuse, `check` refuses too: an address beyond loopback with no token,
    // and an address that is none.
    for (listen, expected) in [
        ("0.0.0.0:7700", "beyond loopback, needs a bearer token"),
        ("nonsense", "1:1: `listen`: \"nonsense\" is not an address"),
    ] {
        std::fs::write(&toml, format!("listen = \"{listen}\"\n")).unwrap();
        let out = common::check_config(&toml, &[("MCP_FLEET_TOKEN", None)]).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{listen}: {err}");
        assert!(err.contains(expected), "{listen}: {err}");
    }

    // A name in both files is an error, a disabled entry of the JSON file's included; the error
    // points at the JSON file's entry.
    std::fs::write(
        dir.join("claude.json"),
        "{\"mcpServers\": {\n  \"once\": {\"command\": \"z\", \"disabled\": true}}}",
    )
    .unwrap();
    std::fs::write(
        &toml,
        "servers_file = \"claude.json\"\n[servers.once]\ncommand = \"x\"\n",
    )
    .unwrap();
    let out = common::check_config(&toml, &[]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}:2:3: `once` is also a server of {}",
            dir.join("claude.json").display(),
            toml.display()
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A closed stderr (`mcp-fleet run ... 2>&1 | head`, a log shipper gone) costs the log lines
/// only: the fleet serves on and stops in order on SIGTERM (exit 0), in both log formats.
/// tracing-subscriber used to report the failed write with `eprintln!`, which panicked on the
/// same closed pipe (exit 101, no orderly stop).
#[tokio::test]
async fn a_closed_stderr_does_not_take_the_fleet_down() {
    let bin = mcp_reference_server::binary_path();
    for format in ["text", "json"] {
        let config = write_config(&format!(
            r#"{{ "mcpServers": {{ "a": {{ "command": "{}" }} }} }}"#,
            bin.display()
        ));
        let (mut child, port) = common::spawn_fleet_with(
            &config.0,
            Stdio::piped(),
            &["--log-format", format],
            &[],
            &[],
        );
        drop(child.stderr.take());
        wait_for(Duration::from_secs(30), "a up", || async {
            let body = common::scrape(port).await?;
            body.contains(r#"mcp_fleet_up{server="a"} 1"#).then_some(())
        })
        .await;
        common::stop_cleanly(&mut child, Duration::from_secs(15)).await;
    }
}

/// A client that holds a connection open (half a request's headers; a body shorter than its
/// `Content-Length`; an event stream it stops reading) cannot hold up mcp-fleet's exit after
/// SIGTERM beyond the HTTP drain limit (5 s): it used to wait for the header timeout (120 s),
/// the body deadline, or for ever.
#[tokio::test]
async fn stalled_clients_do_not_hold_up_the_exit() {
    use tokio::io::AsyncWriteExt;
    let bin = mcp_reference_server::binary_path();
    let config = write_config(&format!(
        r#"{{ "mcpServers": {{ "a": {{ "command": "{}" }} }} }}"#,
        bin.display()
    ));
    let (mut child, port) = common::spawn_fleet_with(&config.0, Stdio::null(), &[], &[], &[]);
    wait_for(Duration::from_secs(30), "a up", || async {
        let body = common::scrape(port).await?;
        body.contains(r#"mcp_fleet_up{server="a"} 1"#).then_some(())
    })
    .await;
    let mut stalled = Vec::new();
    for start in [
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_string(),
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{{"
        ),
    ] {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream.write_all(start.as_bytes()).await.unwrap();
        stalled.push(stream);
    }
    // Both are accepted once a later connection is answered: the listener accepts in the
    // order the connections were made (a connection still in the backlog at the signal would
    // not be waited for, and the test could not fail).
    let healthz = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert!(healthz.status().is_success());
    common::stop_cleanly(&mut child, Duration::from_secs(12)).await;
    drop(stalled);
}
