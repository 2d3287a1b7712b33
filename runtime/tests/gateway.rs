//! The gateway over real HTTP (reqwest) in front of real server processes: sessions, the
//! aggregated catalog, faithful results, progress and cancellation, items withdrawn and back
//! when a server dies and restarts, bad input, and 1,000 sessions without a process more.

mod common;

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{pids_with, reference, wait_for};
use fleet_gateway::GatewayConfig;
use fleet_protocol::messages::gateway::GetGatewayStats;
use fleet_protocol::messages::server::{
    GetServerLogs, GetServerStatus, ListServers, RemoveServer, StopServer,
};
use fleet_protocol::messages::supervisor::{GetFleetStatus, LaunchFleet, ServiceKind, Shutdown};
use fleet_protocol::{ServerSpec, ServerState};
use fleet_runtime::mcp_http::{self, McpHttpConfig};
use fleet_runtime::{Fleet, FleetOptions};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A fleet with its gateway served on a free loopback port.
struct Gw {
    fleet: Fleet,
    url: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

const ACCEPT: &str = "application/json, text/event-stream";

async fn start(specs: Vec<ServerSpec>, gateway: GatewayConfig, http: McpHttpConfig) -> Gw {
    let mut options = FleetOptions {
        gateway,
        ..FleetOptions::default()
    };
    options.server_manager.stop_grace = Duration::from_millis(500);
    let fleet = Fleet::start(options).await;
    let mut names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    names.sort();
    let report = fleet.supervisor.ask(LaunchFleet { specs }).await.unwrap();
    assert!(
        report.results.iter().all(Result::is_ok),
        "{:?}",
        report.results
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let router = mcp_http::router(fleet.gateway_port.clone(), http);
    // mcp-fleet's own listener, its timeouts included.
    let server = tokio::spawn(async move {
        let _ = fleet_runtime::http::serve(listener, router, std::future::pending()).await;
    });
    let gw = fleet.gateway.clone();
    wait_for(
        Duration::from_secs(30),
        "every server's items in the catalog",
        || {
            let gw = gw.clone();
            let names = names.clone();
            async move {
                let stats = gw.ask(GetGatewayStats).await.ok()?;
                (stats.servers == names).then_some(())
            }
        },
    )
    .await;
    Gw {
        fleet,
        url,
        http: reqwest::Client::new(),
        server,
    }
}

impl Gw {
    async fn stop(self) {
        self.fleet.supervisor.ask(Shutdown).await.unwrap();
        self.server.abort();
    }

    fn post(&self, session: Option<&str>, body: Value) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(s) = session {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        req
    }

    /// `initialize` and `notifications/initialized`; the session id.
    async fn open(&self) -> String {
        match self.try_open().await {
            Ok(id) => id,
            Err(status) => panic!("initialize answered {status}"),
        }
    }

    /// [`Gw::open`], or the status an `initialize` that did not open a session got.
    async fn try_open(&self) -> Result<String, StatusCode> {
        let r = self
            .post(
                None,
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "test", "version": "1"}}}),
            )
            .send()
            .await
            .unwrap();
        if r.status() != StatusCode::OK {
            return Err(r.status());
        }
        let id = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let init: Value = r.json().await.unwrap();
        assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
        let r = self
            .post(
                Some(&id),
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        Ok(id)
    }

    /// The session's GET stream, open.
    async fn stream(&self, session: &str) -> reqwest::Response {
        let stream = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", session)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), StatusCode::OK);
        stream
    }

    /// A request in a session; the JSON-RPC response.
    async fn call(&self, session: &str, method: &str, params: Value) -> Value {
        let r = self
            .post(
                Some(session),
                json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// The HTTP status of a `ping` in `session`.
    async fn ping_status(&self, session: &str) -> StatusCode {
        self.post(
            Some(session),
            json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        )
        .send()
        .await
        .unwrap()
        .status()
    }

    async fn tool_names(&self, session: &str) -> Vec<String> {
        let list = self.call(session, "tools/list", json!({})).await;
        list["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn quick_sessions() -> GatewayConfig {
    GatewayConfig {
        sweep_every: Duration::from_millis(100),
        ..GatewayConfig::default()
    }
}

#[tokio::test]
async fn aggregates_two_servers_and_routes_calls_to_the_owner() {
    let gw = start(
        vec![
            reference("ref", &[]),
            reference("old", &["--era", "legacy"]),
        ],
        quick_sessions(),
        McpHttpConfig::default(),
    )
    .await;
    let s = gw.open().await;
    assert_eq!(
        gw.tool_names(&s).await,
        [
            "old__echo",
            "old__add",
            "old__sleep",
            "ref__echo",
            "ref__add",
            "ref__sleep"
        ]
    );
    let r = gw
        .call(
            &s,
            "tools/call",
            json!({"name": "old__add", "arguments": {"a": 2, "b": 3}}),
        )
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "5");
    let r = gw
        .call(
            &s,
            "tools/call",
            json!({"name": "ref__echo", "arguments": {"message": "hi"}}),
        )
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "hi");
    let r = gw
        .call(&s, "tools/call", json!({"name": "nope__echo"}))
        .await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    gw.stop().await;
}

/// Reads one line from a child's stdout as JSON.
async fn read_json(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> Value {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("server-everything answers")
            .unwrap()
            .expect("server-everything is running");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v.get("id").is_some() {
            return v;
        }
    }
}

/// server-everything's tools, straight from its own stdio (no fleet code in between).
async fn everything_tools_direct() -> Vec<Value> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut child = tokio::process::Command::new("mcp-server-everything")
        .arg("stdio")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect(
            "mcp-server-everything is installed (npm i -g @modelcontextprotocol/server-everything)",
        );
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let send = |v: Value| format!("{v}\n");
    stdin
        .write_all(send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})).as_bytes())
        .await
        .unwrap();
    read_json(&mut lines).await;
    stdin
        .write_all(
            send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).as_bytes(),
        )
        .await
        .unwrap();
    stdin
        .write_all(send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).as_bytes())
        .await
        .unwrap();
    let list = read_json(&mut lines).await;
    drop(stdin);
    let _ = child.kill().await;
    list["result"]["tools"].as_array().unwrap().clone()
}

#[tokio::test]
async fn server_everything_tools_pass_through_unchanged_but_for_their_names() {
    let direct = everything_tools_direct().await;
    assert!(direct.len() >= 10, "{direct:?}");
    let gw = start(
        vec![ServerSpec::stdio(
            "everything",
            "mcp-server-everything",
            ["stdio"],
        )],
        quick_sessions(),
        McpHttpConfig::default(),
    )
    .await;
    let s = gw.open().await;
    let list = gw.call(&s, "tools/list", json!({})).await;
    let through = list["result"]["tools"].as_array().unwrap();
    assert_eq!(through.len(), direct.len());
    for (d, t) in direct.iter().zip(through) {
        let mut renamed = d.clone();
        renamed["name"] = json!(format!("everything__{}", d["name"].as_str().unwrap()));
        assert_eq!(&renamed, t, "tool objects differ beyond the name");
        // Members in the server's order, too.
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(d), keys(t));
    }
    // And a call's result is the server's.
    let r = gw
        .call(
            &s,
            "tools/call",
            json!({"name": "everything__echo", "arguments": {"message": "x"}}),
        )
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "Echo: x");
    gw.stop().await;
}

/// Collects SSE `data:` messages from a streaming response until `until` matches one.
async fn sse_until(
    resp: reqwest::Response,
    what: &str,
    until: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("no SSE message: {what}; seen {seen:?}"))
            .expect("stream open")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for line in event.lines() {
                if let Some(data) = line.strip_prefix("data: ") {
                    let v: Value = serde_json::from_str(data).unwrap();
                    let done = until(&v);
                    seen.push(v);
                    if done {
                        return seen;
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn progress_streams_and_a_client_that_goes_away_cancels_upstream() {
    let gw = start(
        vec![reference("ref", &["--log-requests"])],
        quick_sessions(),
        McpHttpConfig::default(),
    )
    .await;
    let s = gw.open().await;
    // An initialize that asks for progress still gets its session id.
    let r = gw
        .post(None, json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"},
            "_meta": {"progressToken": 1}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["mcp-session-id"].len(), 32);
    let resp = gw
        .post(Some(&s), json!({"jsonrpc": "2.0", "id": "p", "method": "tools/call",
            "params": {"name": "ref__sleep", "arguments": {"ms": 200}, "_meta": {"progressToken": 42}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let seen = sse_until(resp, "the response", |v| v.get("id").is_some()).await;
    let progress: Vec<_> = seen[..seen.len() - 1]
        .iter()
        .map(|n| {
            (
                n["params"]["progressToken"].clone(),
                n["params"]["progress"].clone(),
            )
        })
        .collect();
    assert_eq!(
        progress,
        [
            (json!(42), json!(1)),
            (json!(42), json!(2)),
            (json!(42), json!(3)),
            (json!(42), json!(4))
        ]
    );
    assert_eq!(
        seen.last().unwrap()["result"]["content"][0]["text"],
        "slept 200 ms"
    );

    // A client that gives up: its request is cancelled at the server.
    let slow = gw
        .post(
            Some(&s),
            json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "ref__sleep", "arguments": {"ms": 60000}}}),
        )
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(
        slow.is_err(),
        "the call was meant to time out at the client"
    );
    let sm = gw.fleet.server_manager.clone();
    wait_for(
        Duration::from_secs(10),
        "the server to be told of the cancellation",
        || {
            let sm = sm.clone();
            async move {
                let logs = sm
                    .ask(GetServerLogs {
                        name: "ref".into(),
                        max_lines: 100,
                        after: None,
                    })
                    .await
                    .ok()?;
                logs.lines
                    .iter()
                    .any(|l| l.contains("cancelled request"))
                    .then_some(())
            }
        },
    )
    .await;
    // notifications/cancelled from the client does the same.
    let gw_url = gw.url.clone();
    let http = gw.http.clone();
    let sid = s.clone();
    let pending = tokio::spawn(async move {
        http.post(&gw_url)
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .header("mcp-session-id", sid)
            .body(
                json!({"jsonrpc": "2.0", "id": "c1", "method": "tools/call",
                "params": {"name": "ref__sleep", "arguments": {"ms": 60000}}})
                .to_string(),
            )
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    wait_for(
        Duration::from_secs(10),
        "the sleep to reach the server",
        || {
            let sm = sm.clone();
            async move {
                let st = sm.ask(GetServerStatus { name: "ref".into() }).await.ok()?;
                (st.in_flight == 1).then_some(())
            }
        },
    )
    .await;
    // The same id again while the first is in flight: refused, and the first stays the one a
    // cancellation of that id reaches.
    let again = gw
        .post(
            Some(&s),
            json!({"jsonrpc": "2.0", "id": "c1", "method": "tools/call",
            "params": {"name": "ref__sleep", "arguments": {"ms": 10}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    let v: Value = again.json().await.unwrap();
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!("c1"), json!(-32600)),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("still in flight"),
        "{v}"
    );
    let r = gw
        .post(Some(&s), json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "c1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let answer = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("answered at once")
        .unwrap();
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{answer}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_dead_servers_tools_are_withdrawn_and_come_back_when_it_is_ready() {
    let gw = start(
        vec![reference("ref", &[]), reference("flaky", &[])],
        quick_sessions(),
        McpHttpConfig::default(),
    )
    .await;
    let s = gw.open().await;
    let stream = gw.stream(&s).await;
    let pid = gw
        .fleet
        .server_manager
        .ask(GetServerStatus {
            name: "flaky".into(),
        })
        .await
        .unwrap()
        .pid
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Withdrawn (told on the stream), then back once restarted (told again).
    let mut body = stream;
    let told = |v: &Value| v["method"] == "notifications/tools/list_changed";
    let first = sse_until_ref(&mut body, "list_changed after the kill", told).await;
    assert!(told(&first));
    let names = gw.tool_names(&s).await;
    assert!(names.iter().all(|n| n.starts_with("ref__")), "{names:?}");
    // Not listed while it restarts, but a call of its tool is not "unknown": it waits for the
    // server (`restart_wait`) and is served once it is back.
    let r = gw
        .call(
            &s,
            "tools/call",
            json!({"name": "flaky__echo", "arguments": {"message": "waited"}}),
        )
        .await;
    assert_eq!(r["result"]["content"][0]["text"], "waited", "{r}");
    sse_until_ref(&mut body, "list_changed after the restart", told).await;
    let names = gw.tool_names(&s).await;
    assert!(names.contains(&"flaky__echo".to_string()), "{names:?}");
    gw.stop().await;
}

/// Like `sse_until`, on a response kept for more reads; the matching message.
async fn sse_until_ref(
    resp: &mut reqwest::Response,
    what: &str,
    until: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut buf = String::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("no SSE message: {what}"))
            .unwrap()
            .expect("stream open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for line in event.lines() {
                if let Some(data) = line.strip_prefix("data: ") {
                    let v: Value = serde_json::from_str(data).unwrap();
                    if until(&v) {
                        return v;
                    }
                }
            }
        }
    }
}

/// A POST with the given `Accept` and `Content-Type`.
fn post_with(gw: &Gw, accept: &str, content_type: &str, body: &str) -> reqwest::RequestBuilder {
    gw.http
        .post(&gw.url)
        .header("accept", accept)
        .header("content-type", content_type)
        .body(body.to_owned())
}

#[tokio::test]
async fn bad_input_gets_clear_http_errors_and_leaks_nothing() {
    let gw = start(
        vec![reference("ref", &[])],
        quick_sessions(),
        McpHttpConfig {
            max_body_bytes: 64 * 1024,
            ..McpHttpConfig::default()
        },
    )
    .await;
    let raw = |body: &str| {
        gw.http
            .post(&gw.url)
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .body(body.to_owned())
    };
    async fn check(req: reqwest::RequestBuilder, status: StatusCode, code: Option<i64>) -> Value {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), status);
        let text = r.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some(code) = code {
            assert_eq!(v["error"]["code"], code, "{text}");
            assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        }
        v
    }
    check(raw("{not json"), StatusCode::BAD_REQUEST, Some(-32700)).await;
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#;
    check(raw(batch), StatusCode::BAD_REQUEST, Some(-32600)).await;
    check(
        raw(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#),
        StatusCode::BAD_REQUEST,
        Some(-32600),
    )
    .await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    check(
        post_with(&gw, "text/html", "application/json", &ping),
        StatusCode::NOT_ACCEPTABLE,
        Some(-32600),
    )
    .await;
    check(
        post_with(&gw, "application/json", "application/json", &ping),
        StatusCode::NOT_ACCEPTABLE,
        Some(-32600),
    )
    .await;
    check(
        post_with(&gw, ACCEPT, "text/plain", &ping),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Some(-32600),
    )
    .await;
    let huge =
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "y".repeat(100_000)}});
    check(
        raw(&huge.to_string()),
        StatusCode::PAYLOAD_TOO_LARGE,
        Some(-32600),
    )
    .await;
    // A chunked body cut by a malformed chunk is unreadable, not too large.
    let addr = gw
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: {addr}\r\naccept: {ACCEPT}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{{\"jso\r\nzz\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("could not be read"), "{answer}");
    check(raw(&ping), StatusCode::BAD_REQUEST, Some(-32600)).await; // no session
    let v = check(
        raw(&ping).header("mcp-session-id", "0123456789abcdef0123456789abcdef"),
        StatusCode::NOT_FOUND,
        Some(-32600),
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("initialize")
    );
    check(
        raw(&ping).header("origin", "http://evil.example.com"),
        StatusCode::FORBIDDEN,
        Some(-32600),
    )
    .await;
    check(
        raw(&ping).header("host", "evil.example.com"),
        StatusCode::FORBIDDEN,
        Some(-32600),
    )
    .await;
    check(
        gw.http.put(&gw.url),
        StatusCode::METHOD_NOT_ALLOWED,
        Some(-32600),
    )
    .await;
    check(
        gw.http.get(&gw.url).header("accept", "text/event-stream"),
        StatusCode::BAD_REQUEST,
        Some(-32600),
    )
    .await;
    check(
        gw.http.delete(&gw.url).header("mcp-session-id", "nope"),
        StatusCode::NOT_FOUND,
        Some(-32600),
    )
    .await;
    // A session-level bad version.
    let s = gw.open().await;
    check(
        raw(&ping)
            .header("mcp-session-id", &s)
            .header("mcp-protocol-version", "1999-01-01"),
        StatusCode::BAD_REQUEST,
        Some(-32022),
    )
    .await;
    // So is it on a GET or a DELETE, which leave the session as it was; and 2026-07-28 has
    // neither.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let request = || {
            gw.http
                .request(method.clone(), &gw.url)
                .header("accept", "text/event-stream")
                .header("mcp-session-id", &s)
        };
        let bogus = request().header("mcp-protocol-version", "1999-01-01");
        check(bogus, StatusCode::BAD_REQUEST, Some(-32022)).await;
        let modern = request().header("mcp-protocol-version", "2026-07-28");
        check(modern, StatusCode::METHOD_NOT_ALLOWED, Some(-32600)).await;
    }
    // Without a session, an unknown version is told every version the gateway speaks.
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let v = check(
        raw(&init.to_string()).header("mcp-protocol-version", "1999-01-01"),
        StatusCode::BAD_REQUEST,
        Some(-32022),
    )
    .await;
    assert_eq!(v["error"]["data"]["supported"][1], "2025-11-25", "{v}");
    // The gateway still serves, and none of it left a session behind.
    let r = gw.call(&s, "ping", json!({})).await;
    assert_eq!(r["result"], json!({}));
    let stats = gw.fleet.gateway.ask(GetGatewayStats).await.unwrap();
    assert_eq!((stats.active_sessions, stats.sessions_created), (1, 1));
    gw.stop().await;
}

/// What a raw HTTP request on its own connection gets, once the server closes it or 10 s pass.
async fn raw_exchange(url: &str, request: &str) -> String {
    let addr = url.trim_start_matches("http://").trim_end_matches("/mcp");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // The answer comes first; the connection may stay open after it.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_full_session_table_a_stalled_body_and_a_declared_huge_body_are_told_at_once() {
    let gw = start(
        vec![reference("ref", &[])],
        GatewayConfig {
            max_sessions: 2,
            ..quick_sessions()
        },
        McpHttpConfig {
            body_timeout: Duration::from_millis(300),
            ..McpHttpConfig::default()
        },
    )
    .await;
    let open = [gw.open().await, gw.open().await];
    // The table is full: 503 with Retry-After, not a 200 carrying an internal error.
    let r = gw
        .post(
            None,
            json!({"jsonrpc": "2.0", "id": 7, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "30");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], 7, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 2 sessions"),
        "{v}"
    );
    let addr = gw
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp");
    let head = |length: usize| {
        format!(
            "POST /mcp HTTP/1.1\r\nhost: {addr}\r\naccept: {ACCEPT}\r\n\
             content-type: application/json\r\ncontent-length: {length}\r\n\r\n"
        )
    };
    // A body declared over the limit is refused before it is sent.
    let answer = raw_exchange(&gw.url, &head(100_000_000)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A body that stops halfway gets a 408 once the body timeout has passed.
    let answer = raw_exchange(&gw.url, &format!("{}{{\"jsonrpc\"", head(100))).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 0.3s"), "{answer}");
    // The sessions open before are served still.
    for s in &open {
        let r = gw.call(s, "ping", json!({})).await;
        assert_eq!(r["result"], json!({}));
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_bearer_token_is_required_when_configured() {
    let gw = start(
        vec![reference("ref", &[])],
        quick_sessions(),
        McpHttpConfig {
            bearer_token: Some("s3cret".into()),
            ..McpHttpConfig::default()
        },
    )
    .await;
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let r = gw.post(None, init.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = gw
        .post(None, init.clone())
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The scheme's name in any case; not another scheme with the same token.
    for (authorization, status) in [
        ("bearer s3cret", StatusCode::OK),
        ("BEARER s3cret", StatusCode::OK),
        ("Basic s3cret", StatusCode::UNAUTHORIZED),
        ("Bearer S3CRET", StatusCode::UNAUTHORIZED),
    ] {
        let r = gw
            .post(None, init.clone())
            .header("authorization", authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{authorization}");
    }
    let r = gw
        .post(None, init)
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    gw.stop().await;
}

#[tokio::test]
async fn sessions_end_by_delete_and_by_ttl() {
    let gw = start(
        vec![reference("ref", &[])],
        GatewayConfig {
            session_idle_ttl: Duration::from_millis(600),
            initialize_timeout: Duration::from_millis(600),
            sweep_every: Duration::from_millis(100),
            ..GatewayConfig::default()
        },
        McpHttpConfig::default(),
    )
    .await;
    let s = gw.open().await;
    let r = gw
        .http
        .delete(&gw.url)
        .header("mcp-session-id", &s)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(gw.ping_status(&s).await, StatusCode::NOT_FOUND);

    // Idle sessions, and one never initialized, expire.
    let idle = gw.open().await;
    let r = gw
        .post(None, json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}))
        .send()
        .await
        .unwrap();
    let never = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    let gwref = gw.fleet.gateway.clone();
    wait_for(Duration::from_secs(10), "both sessions to expire", || {
        let g = gwref.clone();
        async move {
            let st = g.ask(GetGatewayStats).await.ok()?;
            (st.active_sessions == 0 && st.sessions_expired == 2).then_some(())
        }
    })
    .await;
    for s in [idle, never] {
        assert_eq!(gw.ping_status(&s).await, StatusCode::NOT_FOUND);
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_thousand_sessions_share_the_servers_processes() {
    let marker = format!("gw-thousand-{}", std::process::id());
    let gw = start(
        vec![
            reference(&format!("{marker}-a"), &[]),
            reference(&format!("{marker}-b"), &["--era", "legacy"]),
        ],
        quick_sessions(),
        McpHttpConfig::default(),
    )
    .await;
    let before = pids_with(&marker);
    assert_eq!(before.len(), 2);
    let gw = std::sync::Arc::new(gw);
    let sessions: Vec<String> = futures::stream::iter(0..1000)
        .map(|_| {
            let gw = gw.clone();
            async move { gw.open().await }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    // Every session is served, by the same two processes.
    let tool = format!("{marker}-b__echo");
    let answers: Vec<Value> = futures::stream::iter(sessions.iter().cloned())
        .map(|s| {
            let gw = gw.clone();
            let tool = tool.clone();
            async move {
                gw.call(
                    &s,
                    "tools/call",
                    json!({"name": tool, "arguments": {"message": "x"}}),
                )
                .await
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert!(
        answers
            .iter()
            .all(|a| a["result"]["content"][0]["text"] == "x")
    );
    assert_eq!(pids_with(&marker), before, "sessions started no process");
    let stats = gw.fleet.gateway.ask(GetGatewayStats).await.unwrap();
    assert_eq!(stats.active_sessions, 1000);
    let gw = std::sync::Arc::into_inner(gw).unwrap();
    gw.stop().await;
}

/// A client's id comes back exactly as sent, through a call the gateway forwards to a server
/// under an id of its own.
#[tokio::test]
async fn ids_come_back_digit_for_digit() {
    let gw = start(
        vec![reference("ref", &[])],
        quick_sessions(),
        McpHttpConfig::default(),
    )
    .await;
    let s = gw.open().await;
    for id in [
        "18446744073709551615",
        "123456789012345678901234567890",
        "-7",
        "0",
        "1e+2",
        "\"x\"",
        "\"\"",
    ] {
        let body: Value = serde_json::from_str(&format!(
            r#"{{"jsonrpc": "2.0", "id": {id}, "method": "tools/call",
                "params": {{"name": "ref__echo", "arguments": {{"message": "m"}}}}}}"#
        ))
        .unwrap();
        let r = gw.post(Some(&s), body).send().await.unwrap();
        let text = r.text().await.unwrap();
        assert!(text.contains(&format!(r#""id":{id}"#)), "{text}");
        assert!(text.contains(r#""text":"m""#), "{text}");
    }
    gw.stop().await;
}

/// A server manager that dies (killed here; a panic takes the same path) is restarted by the
/// supervisor with its servers: each launched again with its spec, the old processes gone, a
/// server stopped on request listed stopped, and the gateway still hearing the manager's events
/// and serving the sessions opened before.
#[tokio::test]
async fn a_crashed_server_manager_comes_back_with_its_servers() {
    let gw = start(
        vec![reference("a", &[]), reference("b", &[])],
        quick_sessions(),
        McpHttpConfig::default(),
    )
    .await;
    let s = gw.open().await;
    let sm = gw.fleet.server_manager.clone();
    sm.ask(StopServer { name: "b".into() }).await.unwrap();
    let status = sm.ask(GetServerStatus { name: "a".into() }).await.unwrap();
    let old = status.pid.expect("a runs");

    sm.kill();
    let servers = wait_for(
        Duration::from_secs(30),
        "server a launched again and ready",
        || {
            let sm = sm.clone();
            async move {
                let servers = sm.ask(ListServers).await.ok()?;
                let a = servers.iter().find(|s| s.name == "a")?;
                (a.state == ServerState::Ready && a.pid.is_some_and(|p| p != old))
                    .then_some(servers)
            }
        },
    )
    .await;
    let b = servers.iter().find(|s| s.name == "b");
    assert!(
        b.is_some_and(|b| b.state == ServerState::Stopped),
        "{servers:?}"
    );
    wait_for(Duration::from_secs(10), "a's old process gone", || async {
        (!fleet_server_manager::process_running(old)).then_some(())
    })
    .await;
    let restarts = gw
        .fleet
        .supervisor
        .ask(GetFleetStatus)
        .await
        .unwrap()
        .services
        .iter()
        .find(|s| s.kind == ServiceKind::ServerManager)
        .map(|s| s.restarts);
    assert_eq!(restarts, Some(1));

    // The session opened before the crash reaches the new process.
    let answer = gw
        .call(
            &s,
            "tools/call",
            json!({"name": "a__echo", "arguments": {"message": "again"}}),
        )
        .await;
    assert_eq!(answer["result"]["content"][0]["text"], "again", "{answer}");
    // The gateway still hears the manager: a removed server's tools go from the catalog.
    sm.ask(RemoveServer { name: "a".into() }).await.unwrap();
    wait_for(Duration::from_secs(10), "a's tools withdrawn", || async {
        (!gw.tool_names(&s).await.iter().any(|t| t == "a__echo")).then_some(())
    })
    .await;
    gw.stop().await;
}

/// The gateway is supervised too: killed, it comes back at the same address and is counted. Its
/// sessions ended with it (a client's old session id gets 404, as after a restart of the whole
/// fleet, and a new `initialize` works), it lists every server again from the manager's events,
/// and it keeps hearing them, each event once.
#[tokio::test]
async fn a_crashed_gateway_comes_back_and_lists_every_server_again() {
    let raw = ServerSpec::stdio("raw", "python3", ["-c", RAW_SERVER]);
    let gw = start(
        vec![reference("a", &[]), reference("b", &[]), raw],
        quick_sessions(),
        McpHttpConfig::default(),
    )
    .await;
    let old = gw.open().await;
    let listed = gw.tool_names(&old).await;
    assert!(listed.iter().any(|t| t == "a__echo"), "{listed:?}");
    assert!(listed.iter().any(|t| t == "b__echo"), "{listed:?}");

    gw.fleet.gateway.kill();
    let restarts = wait_for(Duration::from_secs(10), "the gateway restarted", || async {
        let status = gw.fleet.supervisor.ask(GetFleetStatus).await.ok()?;
        let gateway = status
            .services
            .iter()
            .find(|s| s.kind == ServiceKind::Gateway)?;
        (gateway.alive && gateway.restarts > 0).then_some(gateway.restarts)
    })
    .await;
    assert_eq!(restarts, 1);
    let r = gw
        .post(
            Some(&old),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "{:?}", r.text().await);
    let s = wait_for(Duration::from_secs(10), "a new session", || async {
        gw.try_open().await.ok()
    })
    .await;
    wait_for(
        Duration::from_secs(10),
        "both servers listed again",
        || async { (gw.tool_names(&s).await == listed).then_some(()) },
    )
    .await;
    let answer = gw
        .call(
            &s,
            "tools/call",
            json!({"name": "b__echo", "arguments": {"message": "back"}}),
        )
        .await;
    assert_eq!(answer["result"]["content"][0]["text"], "back", "{answer}");
    // Each server event reaches the session once: the sink of the start before the crash would
    // tell a server's log a second time.
    gw.call(&s, "logging/setLevel", json!({"level": "debug"}))
        .await;
    let stream = gw.stream(&s).await;
    for text in ["one", "two", "three"] {
        gw.call(
            &s,
            "tools/call",
            json!({"name": "raw__log", "arguments": {"text": text}}),
        )
        .await;
    }
    let seen = sse_until(stream, "the server's last log", |v| {
        v["params"]["data"] == "three"
    })
    .await;
    let logged: Vec<&Value> = seen
        .iter()
        .filter(|v| v["method"] == "notifications/message")
        .map(|v| &v["params"]["data"])
        .collect();
    assert_eq!(logged, [&json!("one"), &json!("two"), &json!("three")]);
    // It still hears the manager: a removed server's tools go from the catalog.
    gw.fleet
        .server_manager
        .ask(RemoveServer { name: "a".into() })
        .await
        .unwrap();
    wait_for(Duration::from_secs(10), "a's tools withdrawn", || async {
        (!gw.tool_names(&s).await.iter().any(|t| t.starts_with("a__"))).then_some(())
    })
    .await;
    gw.stop().await;
}

/// A stdio server in Python that answers `tools/call` of its tool `raw` with the line it read,
/// as text, and a `structuredContent` whose numbers it writes itself, digit for digit; its tool
/// `fail` answers with an error whose `data` is the line it read; its tool `log` sends a
/// `notifications/message` with its argument `text` as `data`, then answers. Every response has a
/// top-level member `x-server` of its own.
const RAW_SERVER: &str = r#"
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg or "method" not in msg:
        continue
    method, id = msg["method"], json.dumps(msg["id"])
    if method == "initialize":
        result = json.dumps({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                             "serverInfo": {"name": "raw", "version": "1"}})
    elif method == "tools/list":
        result = json.dumps({"tools": [{"name": "raw", "inputSchema": {"type": "object"}},
                                       {"name": "fail", "inputSchema": {"type": "object"}},
                                       {"name": "log", "inputSchema": {"type": "object"}}]})
    elif method == "tools/call" and msg["params"]["name"] == "fail":
        sys.stdout.write('{"jsonrpc":"2.0","id":' + id + ',"error":{"code":-32000,"message":"failed",'
                         '"data":' + json.dumps(line.strip()) + ',"x-in-error":1},'
                         '"x-server":{"failed":1.50}}\n')
        sys.stdout.flush()
        continue
    elif method == "tools/call" and msg["params"]["name"] == "log":
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
            "params": {"level": "info", "logger": "raw",
                       "data": msg["params"]["arguments"]["text"]}}) + "\n")
        result = json.dumps({"content": [{"type": "text", "text": "logged"}]})
    elif method == "tools/call":
        result = ('{"content":[{"type":"text","text":' + json.dumps(line.strip()) + '}],'
                  '"structuredContent":{"big":98765432109876543210987654321,"dec":2.50,"exp":1E+2}}')
    elif method == "ping":
        result = "{}"
    else:
        sys.stdout.write('{"jsonrpc":"2.0","id":' + id + ',"error":{"code":-32601,"message":"no"}}\n')
        sys.stdout.flush()
        continue
    sys.stdout.write('{"jsonrpc":"2.0","id":' + id + ',"result":' + result + ',"x-server":{"n":1.50}}\n')
    sys.stdout.flush()
"#;

/// Numbers pass through as written, both ways: beyond 64 bits, with trailing zeros, with an
/// exponent. Read as `f64` they would be rounded and rewritten (`1e2` as `100.0`). Only an
/// exponent's spelling is made canonical, as serde_json keeps a number's text: `1e2` and `1E+2`
/// are both written `1e+2`, every digit kept.
#[tokio::test]
async fn numbers_pass_through_digit_for_digit() {
    let spec = ServerSpec::stdio("raw", "python3", ["-c", RAW_SERVER]);
    let gw = start(vec![spec], quick_sessions(), McpHttpConfig::default()).await;
    let s = gw.open().await;
    let body: Value = serde_json::from_str(
        r#"{"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "raw__raw",
            "arguments": {"big": 123456789012345678901234567890, "dec": 1.50, "exp": 1e2,
                          "tiny": 4.9e-324, "neg": -0.0}}}"#,
    )
    .unwrap();
    let r = gw.post(Some(&s), body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    let seen = answer["result"]["content"][0]["text"].as_str().unwrap();
    for sent in [
        r#""big":123456789012345678901234567890"#,
        r#""dec":1.50"#,
        r#""exp":1e+2"#,
        r#""tiny":4.9e-324"#,
        r#""neg":-0.0"#,
    ] {
        assert!(seen.contains(sent), "the server read {seen}, not {sent}");
    }
    assert!(
        text.contains(
            r#""structuredContent":{"big":98765432109876543210987654321,"dec":2.50,"exp":1e+2}"#
        ),
        "{text}"
    );
    gw.stop().await;
}

/// Top-level members JSON-RPC does not define pass through both ways, as they came: a client's
/// reach the server with its request, a server's reach the client with its answer (a result or
/// an error), in a session and in a stateless request, by the server's lane and (a call with
/// progress) by its actor. Requests the gateway answers itself (lists) are its own, without the
/// members.
#[tokio::test]
async fn top_level_members_pass_through_both_ways() {
    let spec = ServerSpec::stdio("raw", "python3", ["-c", RAW_SERVER]);
    let gw = start(vec![spec], quick_sessions(), McpHttpConfig::default()).await;
    let s = gw.open().await;
    const MEMBER: &str = r#""x-client":{"trace":"t-1","n":2.50}"#;
    let call = |tool: &str| {
        serde_json::from_str::<Value>(&format!(
            r#"{{"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                "params": {{"name": "raw__{tool}", "arguments": {{}}}}, {MEMBER}}}"#
        ))
        .unwrap()
    };
    let r = gw.post(Some(&s), call("raw")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    let seen = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(seen.contains(MEMBER), "the server read {seen}");
    assert!(text.contains(r#""x-server":{"n":1.50}"#), "{text}");
    assert_eq!(answer["id"], 4);

    let r = gw.post(Some(&s), call("fail")).send().await.unwrap();
    let text = r.text().await.unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["error"]["code"], -32000, "{text}");
    assert_eq!(answer["error"]["x-in-error"], 1, "{text}");
    let seen = answer["error"]["data"].as_str().unwrap_or("");
    assert!(seen.contains(MEMBER), "the server read {seen}");
    assert!(text.contains(r#""x-server":{"failed":1.50}"#), "{text}");

    // A call with progress goes by the server's actor, which answers it after its progress.
    for (tool, key) in [("raw", "result"), ("fail", "error")] {
        let mut body = call(tool);
        body["params"]["_meta"] = json!({"progressToken": "p"});
        let r = gw.post(Some(&s), body).send().await.unwrap();
        // A stream once progress comes; this server sends none, so it is JSON.
        let answer: Value = if r.headers()["content-type"] == "text/event-stream" {
            let seen = sse_until(r, "the answer", |v| v.get("id").is_some()).await;
            seen.last().unwrap().clone()
        } else {
            r.json().await.unwrap()
        };
        let answer = &answer;
        let read = match key {
            "result" => &answer["result"]["content"][0]["text"],
            _ => &answer["error"]["data"],
        };
        assert!(read.as_str().unwrap_or("").contains(MEMBER), "{answer}");
        let own = answer["x-server"]
            .as_object()
            .and_then(|m| m.values().next());
        assert_eq!(
            own.map(Value::to_string).as_deref(),
            Some("1.50"),
            "{answer}"
        );
    }

    // A stateless 2026-07-28 request, its member passed on the same way.
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}});
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "x-client": "modern",
        "params": {"_meta": meta, "name": "raw__raw", "arguments": {}}});
    let r = gw
        .http
        .post(&gw.url)
        .header("accept", ACCEPT)
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "raw__raw")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap();
    let seen = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert!(seen.contains(r#""x-client":"modern""#), "{text}");
    assert!(text.contains(r#""x-server":{"n":1.50}"#), "{text}");

    // The gateway's own answer is its own: the server's members of an earlier answer are not in it.
    let r = gw
        .post(
            Some(&s),
            json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list", "x-client": 1}),
        )
        .send()
        .await
        .unwrap();
    let answer: Value = r.json().await.unwrap();
    assert!(answer.get("x-server").is_none(), "{answer}");
    assert!(answer.get("x-client").is_none(), "{answer}");
    gw.stop().await;
}

#[tokio::test]
async fn stateless_requests_need_no_session_and_their_headers_must_agree() {
    let gw = start(
        vec![reference("ref", &[])],
        quick_sessions(),
        McpHttpConfig::default(),
    )
    .await;
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}});
    let modern = |method: &str, params: Value| {
        gw.http
            .post(&gw.url)
            .header("accept", ACCEPT)
            .header("content-type", "application/json")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method)
            .body(
                json!({"jsonrpc": "2.0", "id": 3, "method": method, "params": params}).to_string(),
            )
    };
    let r = modern("tools/list", json!({"_meta": meta}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"]["resultType"], "complete");
    assert_eq!(v["result"]["ttlMs"], 0);
    assert_eq!(v["result"]["tools"][0]["name"], "ref__echo");
    let call = json!({"_meta": meta, "name": "ref__echo", "arguments": {"message": "m"}});
    let r = modern("tools/call", call.clone())
        .header("mcp-name", "ref__echo")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "m");
    // Headers that disagree with the body.
    let r = modern("tools/call", call.clone())
        .header("mcp-name", "ref__add")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["error"]["code"].clone(), v["id"].clone()),
        (json!(-32020), json!(3))
    );
    assert_eq!(
        v["error"]["message"],
        "`Mcp-Name: ref__add` does not match the body's name `ref__echo`"
    );
    let r = modern("tools/call", call.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A version the gateway speaks, but not the one the body's `_meta` asks for: they disagree
    // (-32020); it is not an unsupported version (-32022).
    let r = gw
        .http
        .post(&gw.url)
        .header("accept", ACCEPT)
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-method", "tools/list")
        .body(
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"_meta": meta}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32020, "{v}");
    // A name may come in base64 (as one that is not plain ASCII must): compared decoded.
    let r = modern("tools/call", call.clone())
        .header("mcp-name", "=?base64?cmVmX19lY2hv?=")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["result"]["content"][0]["text"], "m", "{v}");
    let cafe = json!({"_meta": meta, "name": "café", "arguments": {}});
    let r = modern("tools/call", cafe.clone())
        .header("mcp-name", "=?base64?Y2Fmw6k=?=")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_ne!(v["error"]["code"], -32020, "the headers agree: {v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("café"),
        "{v}"
    );
    // Sent raw, such a name is malformed, and said to be.
    let r = modern("tools/call", cafe)
        .header(
            "mcp-name",
            reqwest::header::HeaderValue::from_bytes("café".as_bytes()).unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32020);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("=?base64?"),
        "{v}"
    );
    // A 2026 body without the version header is refused, not served as a 2025 request.
    let r = gw
        .http
        .post(&gw.url)
        .header("accept", ACCEPT)
        .header("content-type", "application/json")
        .body(
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"_meta": meta}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32020);
    // The eras do not mix: a 2026-07-28 request with a session is refused, not served as a
    // 2025 one.
    let r = modern("tools/list", json!({"_meta": meta}))
        .header("mcp-session-id", "0123456789abcdef0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        (json!(3), json!(-32600)),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has no session"),
        "{v}"
    );
    // 2025-only methods do not exist here.
    let r = modern("ping", json!({"_meta": meta})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let stats = gw.fleet.gateway.ask(GetGatewayStats).await.unwrap();
    assert_eq!(stats.sessions_created, 0);
    gw.stop().await;
}
