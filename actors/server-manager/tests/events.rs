//! What the gateway relies on: server events for subscribers, progress routed back to the caller
//! with its own token (two callers with the same token never cross), and cancellation reaching
//! the server. All against real reference-server processes.

mod common;

use std::time::Duration;

use common::{config, reference, spawn_manager};
use fleet_protocol::ServerState;
use fleet_protocol::messages::server::{
    CallServer, EventSink, LaunchServer, RemoveServer, ServerEvent, StopServer,
    SubscribeServerEvents,
};
use fleet_protocol::{FleetError, messages::server::GetServerLogs};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Receives the next event matching `want`, failing after 10 s.
async fn next_event(
    rx: &mut mpsc::UnboundedReceiver<ServerEvent>,
    what: &str,
    want: impl Fn(&ServerEvent) -> bool,
) -> ServerEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = rx.recv().await.expect("event stream ended");
            if want(&ev) {
                return ev;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event: {what}"))
}

fn state_is(ev: &ServerEvent, name: &str, want: ServerState) -> bool {
    matches!(ev, ServerEvent::StateChanged { server, state } if server == name && *state == want)
}

#[tokio::test]
async fn subscribers_get_the_current_states_then_every_change() {
    let manager = spawn_manager(config());
    manager
        .ask(LaunchServer {
            spec: reference("early", &[]),
        })
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    manager
        .ask(SubscribeServerEvents {
            sink: EventSink::channel(tx),
        })
        .await
        .unwrap();
    next_event(&mut rx, "early is ready (snapshot)", |e| {
        state_is(e, "early", ServerState::Ready)
    })
    .await;

    manager
        .ask(LaunchServer {
            spec: reference("late", &[]),
        })
        .await
        .unwrap();
    next_event(&mut rx, "late starts", |e| {
        state_is(e, "late", ServerState::Initializing)
    })
    .await;
    next_event(&mut rx, "late is ready", |e| {
        state_is(e, "late", ServerState::Ready)
    })
    .await;
    manager
        .ask(StopServer {
            name: "late".into(),
        })
        .await
        .unwrap();
    next_event(&mut rx, "late stopped", |e| {
        state_is(e, "late", ServerState::Stopped)
    })
    .await;
    // A removal is told once the server is gone, after its last state.
    manager
        .ask(RemoveServer {
            name: "early".into(),
        })
        .await
        .unwrap();
    next_event(&mut rx, "early stopped", |e| {
        state_is(e, "early", ServerState::Stopped)
    })
    .await;
    next_event(
        &mut rx,
        "early removed",
        |e| matches!(e, ServerEvent::Removed { server } if server == "early"),
    )
    .await;
}

fn sleep_call(
    token: serde_json::Value,
    ms: u64,
) -> (
    CallServer,
    mpsc::Receiver<fleet_protocol::jsonrpc::Notification>,
) {
    let (tx, rx) = mpsc::channel(16);
    let mut call = CallServer::new(
        "ref",
        "tools/call",
        Some(json!({"name": "sleep", "arguments": {"ms": ms}, "_meta": {"progressToken": token}})),
    );
    call.progress = Some(tx);
    (call, rx)
}

#[tokio::test]
async fn progress_comes_back_with_each_callers_own_token() {
    let manager = spawn_manager(config());
    manager
        .ask(LaunchServer {
            spec: reference("ref", &[]),
        })
        .await
        .unwrap();
    // Two callers pick the same token: each gets exactly its own four notifications.
    let (a, mut a_rx) = sleep_call(json!("same"), 200);
    let (b, mut b_rx) = sleep_call(json!("same"), 200);
    let (ra, rb) = tokio::join!(manager.ask(a).send(), manager.ask(b).send());
    ra.unwrap();
    rb.unwrap();
    for rx in [&mut a_rx, &mut b_rx] {
        let mut steps = Vec::new();
        while let Ok(n) = rx.try_recv() {
            let p = n.params.unwrap();
            assert_eq!(p["progressToken"], "same");
            steps.push(p["progress"].as_u64().unwrap());
        }
        assert_eq!(steps, [1, 2, 3, 4]);
    }
}

#[tokio::test]
async fn a_cancelled_call_fails_at_once_and_the_server_is_told() {
    let manager = spawn_manager(config());
    manager
        .ask(LaunchServer {
            spec: reference("ref", &["--log-requests"]),
        })
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    let mut call = CallServer::new(
        "ref",
        "tools/call",
        Some(json!({"name": "sleep", "arguments": {"ms": 30000}})),
    );
    call.cancel = Some(cancel.clone());
    let m = manager.clone();
    let pending = tokio::spawn(async move { m.ask(call).send().await });
    // Cancel once the server has the request.
    wait_for_log(&manager, "ref", "request tools/call sleep").await;
    cancel.cancel();
    let answer = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the cancelled call answers at once")
        .unwrap();
    assert!(
        matches!(
            answer,
            Err(kameo::error::SendError::HandlerError(
                FleetError::Cancelled { .. }
            ))
        ),
        "{answer:?}"
    );
    wait_for_log(&manager, "ref", "cancelled request").await;
}

/// Waits until a line of the server's stderr contains `needle`, failing after 10 s.
async fn wait_for_log(
    manager: &kameo::actor::ActorRef<fleet_server_manager::ServerManager>,
    server: &str,
    needle: &str,
) {
    common::wait_for(Duration::from_secs(10), needle, || {
        let m = manager.clone();
        async move {
            let logs = m
                .ask(GetServerLogs {
                    name: server.into(),
                    max_lines: 50,
                    after: None,
                })
                .await
                .ok()?;
            logs.lines.iter().any(|l| l.contains(needle)).then_some(())
        }
    })
    .await;
}
