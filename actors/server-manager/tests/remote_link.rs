//! Remote (`url`) servers that misbehave, served by a Python Streamable HTTP server
//! (`tests/remote/upstream.py`, 2025-11-25 sessions): a redirect, an answer to another request
//! on a call's event stream, an event that never ends, a call that is never answered, a
//! notification slow to be taken, a session that expires, a link lost and streams the server
//! closes early (SEP-1699).

mod common;

use std::time::Duration;

use common::{config, spawn_manager, wait_for};
use fleet_protocol::ServerSpec;
use fleet_protocol::messages::server::{CallServer, LaunchServer, StopAllServers};
use fleet_server_manager::{ServerManager, ServerManagerConfig};
use kameo::actor::ActorRef;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The upstream, killed when dropped.
struct Upstream {
    _child: tokio::process::Child,
    port: u16,
}

impl Upstream {
    async fn start() -> Upstream {
        Upstream::start_with(&[]).await
    }

    /// The upstream with these flags (`--listen`).
    async fn start_with(flags: &[&str]) -> Upstream {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/remote/upstream.py");
        let mut child = tokio::process::Command::new("python3")
            .arg(script)
            .args(flags)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        tokio::time::timeout(Duration::from_secs(10), out.read_line(&mut line))
            .await
            .expect("the upstream says its port")
            .unwrap();
        let port = line.trim().parse().expect("a port");
        Upstream {
            _child: child,
            port,
        }
    }

    fn spec(&self) -> ServerSpec {
        let mut spec = ServerSpec::http("up", format!("http://127.0.0.1:{}/mcp", self.port));
        if let fleet_protocol::Transport::Http { headers, .. } = &mut spec.transport {
            headers.insert("Authorization".into(), "Bearer s3cret".into());
        }
        spec
    }

    /// What happened at the upstream so far.
    async fn seen(&self) -> Vec<String> {
        reqwest::get(format!("http://127.0.0.1:{}/seen", self.port))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

async fn linked(config: ServerManagerConfig) -> (Upstream, ActorRef<ServerManager>) {
    linked_to(Upstream::start().await, config).await
}

async fn linked_to(
    upstream: Upstream,
    config: ServerManagerConfig,
) -> (Upstream, ActorRef<ServerManager>) {
    let manager = spawn_manager(config);
    manager
        .ask(LaunchServer {
            spec: upstream.spec(),
        })
        .await
        .expect("the upstream is ready");
    (upstream, manager)
}

fn call(tool: &str) -> CallServer {
    CallServer::new(
        "up",
        "tools/call",
        Some(json!({"name": tool, "arguments": {}})),
    )
}

fn text(answer: &Value) -> &str {
    answer["content"][0]["text"].as_str().unwrap_or_default()
}

/// A session the server ended (404) is started again inside the link, and the call that met
/// the 404 sent again in it: the call is answered, and the server did not exit.
#[tokio::test]
async fn a_session_the_server_ended_is_started_again_and_the_call_answered() {
    let (upstream, manager) = linked(config()).await;
    assert_eq!(
        text(&manager.ask(call("echo")).await.unwrap().result),
        "echo"
    );
    reqwest::get(format!("http://127.0.0.1:{}/expire", upstream.port))
        .await
        .unwrap();
    let again = manager
        .ask(call("again"))
        .await
        .expect("answered in a new session");
    assert_eq!(text(&again.result), "again");
    let seen = upstream.seen().await;
    let initialized = seen.iter().filter(|s| *s == "initialize").count();
    assert_eq!(initialized, 2, "{seen:?}");
    let status = manager
        .ask(fleet_protocol::messages::server::GetServerStatus { name: "up".into() })
        .await
        .unwrap();
    assert_eq!(
        (status.restarts, &status.last_exit),
        (0, &None),
        "{status:?}"
    );
    manager.ask(StopAllServers).await.unwrap();
}

/// A link lost says why, in the error of the call that met the loss and in the server's last
/// exit, not only in the log.
#[tokio::test]
async fn a_lost_link_says_why_in_the_call_and_the_status() {
    let (upstream, manager) = linked(config()).await;
    let url = format!("http://127.0.0.1:{}/mcp", upstream.port);
    drop(upstream);
    // Calls that meet a pooled connection the upstream's death reset fail as requests; the
    // first that has to connect finds the server gone and loses the link, and says so.
    let mut errors = Vec::new();
    for _ in 0..10 {
        let e = manager.ask(call("echo")).await.unwrap_err().to_string();
        let lost = e.contains("link lost");
        errors.push(e);
        if lost {
            break;
        }
    }
    assert!(
        errors
            .last()
            .is_some_and(|e| e.contains("link lost: cannot reach") && e.contains(&url)),
        "{errors:?}"
    );
    let exit = wait_for(Duration::from_secs(10), "the exit recorded", || async {
        let status = manager
            .ask(fleet_protocol::messages::server::GetServerStatus { name: "up".into() })
            .await
            .unwrap();
        status.last_exit
    })
    .await;
    let reason = exit.reason.unwrap_or_default();
    assert!(
        reason.starts_with("link lost: cannot reach") && reason.contains(&url),
        "{reason}"
    );
    manager.ask(StopAllServers).await.unwrap();
}

/// A stream the server closes after a priming event (SEP-1699 polling) is resumed with a GET
/// carrying `Last-Event-ID`, after the `retry` the server asked for, as often as the server
/// closes it: the call gets its answer.
#[tokio::test]
async fn a_stream_the_server_closes_is_resumed_after_its_retry() {
    let (upstream, manager) = linked(config()).await;
    let answer = manager
        .ask(call("poll"))
        .await
        .expect("answered after two resumptions");
    assert_eq!(text(&answer.result), "polled");
    let seen = upstream.seen().await;
    let waits: Vec<u64> = seen
        .iter()
        .filter_map(|s| s.strip_prefix("resumed ")?.split(" after ").nth(1))
        .map(|ms| ms.trim_end_matches(" ms").parse().expect("a wait in ms"))
        .collect();
    assert_eq!(waits.len(), 2, "{seen:?}");
    // The server's `retry: 300` holds for the second resumption too (the SSE standard).
    assert!(
        waits.iter().all(|ms| *ms >= 295),
        "the retry of 300 ms is waited for: {seen:?}"
    );
    manager.ask(StopAllServers).await.unwrap();
}

/// The GET stream of what the server sends unasked is resumed too when the server closes it
/// after an event id (here with no `retry`: the default wait): the tools change the server
/// sends on the resumed stream makes the server's tools be listed again.
#[tokio::test]
async fn a_listen_stream_the_server_closes_is_resumed() {
    let (upstream, manager) = linked_to(Upstream::start_with(&["--listen"]).await, config()).await;
    let seen = wait_for(
        Duration::from_secs(10),
        "the tools listed again",
        || async {
            let seen = upstream.seen().await;
            (seen.iter().filter(|s| *s == "tools/list").count() == 2).then_some(seen)
        },
    )
    .await;
    assert_eq!(
        seen.iter().filter(|s| *s == "listen").count(),
        1,
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|s| s.starts_with("resumed L1 after")),
        "{seen:?}"
    );
    manager.ask(StopAllServers).await.unwrap();
}

/// A stream whose resumption the server refuses fails the call at once, and says why.
#[tokio::test]
async fn a_stream_whose_resumption_is_refused_fails_the_call_with_the_reason() {
    let (upstream, manager) = linked(config()).await;
    let err = manager.ask(call("vanish")).await.unwrap_err().to_string();
    assert!(
        err.contains("resuming it failed: the remote server answered HTTP 404"),
        "{err}"
    );
    let seen = upstream.seen().await;
    let tries = seen.iter().filter(|s| s.starts_with("resumed v")).count();
    assert_eq!(tries, 1, "{seen:?}");
    manager.ask(StopAllServers).await.unwrap();
}

/// A redirect is an error naming where it points, not followed: the configured headers (a
/// token) go to the configured URL only.
#[tokio::test]
async fn a_redirect_is_refused_not_followed() {
    let (upstream, manager) = linked(config()).await;
    let err = manager.ask(call("redirect")).await.unwrap_err().to_string();
    assert!(
        err.contains("307") && err.contains("/elsewhere") && err.contains("redirect"),
        "{err}"
    );
    let seen = upstream.seen().await;
    assert!(
        !seen.contains(&"followed the redirect".to_string()),
        "{seen:?}"
    );
    manager.ask(StopAllServers).await.unwrap();
}

/// An answer to another request on a call's event stream is dropped: that request (another
/// client's, maybe) gets its own answer.
#[tokio::test]
async fn an_answer_to_another_request_on_a_stream_is_dropped() {
    let (_upstream, manager) = linked(config()).await;
    let slow = tokio::spawn({
        let manager = manager.clone();
        async move { manager.ask(call("slow")).await }
    });
    wait_for(
        Duration::from_secs(5),
        "the slow call under way",
        || async {
            let s = manager
                .ask(fleet_protocol::messages::server::GetServerStatus { name: "up".into() })
                .await
                .ok()?;
            (s.in_flight == 1).then_some(())
        },
    )
    .await;
    let hijack = manager.ask(call("hijack")).await.unwrap();
    assert_eq!(text(&hijack.result), "hijack");
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(
        text(&slow.result),
        "slow",
        "its own answer, not the other stream's"
    );
    manager.ask(StopAllServers).await.unwrap();
}

/// An event that goes on past the message limit is cut off there, not buffered whole.
#[tokio::test]
async fn an_endless_event_is_cut_off_at_the_message_limit() {
    let (upstream, manager) = linked(ServerManagerConfig {
        max_message_bytes: 1024 * 1024,
        ..config()
    })
    .await;
    let err = manager.ask(call("huge")).await.unwrap_err().to_string();
    assert!(err.contains("over"), "{err}");
    wait_for(Duration::from_secs(10), "the upstream cut off", || async {
        upstream
            .seen()
            .await
            .contains(&"huge cut off".to_string())
            .then_some(())
    })
    .await;
    manager.ask(StopAllServers).await.unwrap();
}

/// A call given up (its timeout) ends its POST: the connection closes, and the 2025-11-25
/// session is told with `notifications/cancelled`, which the server is slow to take: the calls
/// after it do not wait for that.
#[tokio::test]
async fn a_call_given_up_closes_its_connection() {
    let (upstream, manager) = linked(config()).await;
    let mut stall = call("stall");
    stall.timeout = Some(Duration::from_millis(500));
    let err = manager.ask(stall).await.unwrap_err().to_string();
    assert!(err.contains("within 500ms"), "{err}");
    let mut echo = call("echo");
    echo.timeout = Some(Duration::from_secs(2));
    let echoed = manager
        .ask(echo)
        .await
        .expect("not held up by the cancellation");
    assert_eq!(text(&echoed.result), "echo");
    wait_for(Duration::from_secs(10), "the connection closed", || async {
        let seen = upstream.seen().await;
        (seen.contains(&"stall closed".to_string()) && seen.contains(&"cancelled".to_string()))
            .then_some(())
    })
    .await;
    manager.ask(StopAllServers).await.unwrap();
}
