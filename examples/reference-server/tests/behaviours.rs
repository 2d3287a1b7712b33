//! Integration tests of the misbehaviours chosen by flags and environment variables, of the
//! process lifecycle (EOF, SIGTERM).

mod common;

use std::time::{Duration, Instant};

use common::{Launch, Server, call, request, text_of};
use serde_json::{Value, json};

fn ping(id: u64) -> Value {
    request(id, "ping", json!({}))
}

fn lines(messages: &[Value]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for message in messages {
        bytes.extend(serde_json::to_vec(message).unwrap());
        bytes.push(b'\n');
    }
    bytes
}

#[tokio::test]
async fn crash_after_requests_answers_exactly_n_then_exits_3() {
    let mut server = Server::spawn(&["--crash-after-requests", "2"]);
    // All three arrive together, so only the counter decides how many get answered.
    server.send_raw(&lines(&[ping(1), ping(2), ping(3)])).await;
    assert_eq!(server.recv().await["id"], 1);
    assert_eq!(server.recv().await["id"], 2);
    assert_eq!(
        server.read_line().await,
        None,
        "nothing after the second answer"
    );
    assert_eq!(server.wait().await.code(), Some(3));
}

#[tokio::test]
async fn crash_after_requests_comes_from_the_environment_and_the_flag_wins() {
    let mut from_env = Server::launch(Launch {
        envs: &[("MCP_REF_CRASH_AFTER_REQUESTS", "1")],
        ..Launch::default()
    });
    from_env.send(&ping(1)).await;
    assert_eq!(from_env.recv().await["id"], 1);
    assert_eq!(from_env.wait().await.code(), Some(3));

    let mut flag_wins = Server::launch(Launch {
        args: &["--crash-after-requests", "2"],
        envs: &[("MCP_REF_CRASH_AFTER_REQUESTS", "1")],
        ..Launch::default()
    });
    flag_wins.send(&ping(1)).await;
    assert_eq!(flag_wins.recv().await["id"], 1);
    flag_wins.send(&ping(2)).await;
    assert_eq!(flag_wins.recv().await["id"], 2);
    assert_eq!(flag_wins.wait().await.code(), Some(3));
}

#[tokio::test]
async fn crash_after_ms_exits_3_with_stdin_still_open() {
    let started = Instant::now();
    let mut server = Server::spawn(&["--crash-after-ms", "200"]);
    assert_eq!(
        server.request(1, "ping", json!({})).await["result"],
        json!({})
    );
    assert_eq!(server.wait().await.code(), Some(3));
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn exit_at_start_writes_a_line_and_exits_with_the_code() {
    let mut server = Server::launch(Launch {
        envs: &[("MCP_REF_EXIT_AT_START", "7")],
        capture_stderr: true,
        ..Launch::default()
    });
    let line = server.stderr_line().await.expect("a line on stderr");
    assert!(line.contains("exiting at start with code 7"), "{line}");
    assert_eq!(server.wait().await.code(), Some(7));
    assert_eq!(server.read_line().await, None);
}

#[tokio::test]
async fn hang_after_requests_stops_answering_but_keeps_running() {
    let mut server = Server::spawn(&["--hang-after-requests", "1"]);
    assert_eq!(
        server.request(1, "ping", json!({})).await["result"],
        json!({})
    );
    server.send(&ping(2)).await;
    let silence = server.read_line_within(Duration::from_millis(300)).await;
    assert_eq!(silence, None, "a hanging server must not answer");
    // It keeps reading, so far more than a pipe's worth of input still goes in.
    let flood: Vec<Value> = (3..3000).map(ping).collect();
    server.send_raw(&lines(&flood)).await;
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "still running"
    );
    server.kill().await;
}

#[tokio::test]
async fn hang_after_zero_requests_hangs_from_the_start() {
    let mut server = Server::launch(Launch {
        envs: &[("MCP_REF_HANG_AFTER_REQUESTS", "0")],
        ..Launch::default()
    });
    server.send(&ping(1)).await;
    server.send_raw(b"not json\n").await;
    let silence = server.read_line_within(Duration::from_millis(300)).await;
    assert_eq!(silence, None, "a hanging server must not answer");
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "still running"
    );
    // EOF still ends a hanging server cleanly.
    server.close_stdin();
    assert_eq!(server.wait().await.code(), Some(0));
}

#[tokio::test]
async fn garbage_stdout_precedes_each_real_answer() {
    let mut server = Server::spawn(&["--garbage-stdout"]);
    for id in 1..=3_u64 {
        server.send(&ping(id)).await;
        let garbage = server.read_line().await.expect("a garbage line");
        match id {
            1 => assert!(serde_json::from_slice::<Value>(&garbage).is_err()),
            2 => assert!(std::str::from_utf8(&garbage).is_err()),
            _ => {
                let json: Value = serde_json::from_slice(&garbage).expect("JSON garbage");
                assert!(json.get("jsonrpc").is_none(), "{json}");
            }
        }
        let answer = server.recv().await;
        assert_eq!(answer["id"], id);
        assert_eq!(answer["result"], json!({}));
    }
}

#[tokio::test]
async fn long_line_bytes_writes_one_long_line_first() {
    let mut server = Server::spawn(&["--long-line-bytes", "1000000"]);
    let line = server.read_line().await.expect("the long line");
    assert_eq!(line.len(), 1_000_000);
    let json: Value = serde_json::from_slice(&line).expect("the long line is JSON");
    assert_eq!(json["method"], "notifications/message");
    assert_eq!(
        server.request(1, "ping", json!({})).await["result"],
        json!({})
    );
}

#[tokio::test]
async fn stderr_flood_does_not_hold_up_stdout() {
    const FLOOD: u64 = 50_000;
    let mut server = Server::launch(Launch {
        args: &["--stderr-flood", "50000"],
        capture_stderr: true,
        ..Launch::default()
    });
    // Nobody reads stderr yet, so it fills up; answers must come all the same.
    let echo = server
        .request(1, "tools/call", call("echo", json!({ "message": "ok" })))
        .await;
    assert_eq!(text_of(&echo), "ok");
    let mut flood_lines = 0;
    let mut last = String::new();
    while flood_lines < FLOOD {
        let line = server
            .stderr_line()
            .await
            .expect("stderr ended during the flood");
        if line.starts_with("flood line ") {
            flood_lines += 1;
            last = line;
        }
    }
    assert_eq!(last, format!("flood line {FLOOD}"));
    server.close_stdin();
    assert_eq!(server.wait().await.code(), Some(0));
}

#[tokio::test]
async fn slow_start_delays_reading() {
    let started = Instant::now();
    let mut server = Server::spawn(&["--slow-start-ms", "300"]);
    assert_eq!(
        server.request(1, "ping", json!({})).await["result"],
        json!({})
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn name_and_logging_come_from_the_environment_and_flags() {
    let mut server = Server::launch(Launch {
        args: &["--name", "beta", "--era", "legacy"],
        envs: &[("MCP_REF_NAME", "alpha"), ("MCP_REF_LOG_REQUESTS", "1")],
        capture_stderr: true,
    });
    let startup = server.stderr_line().await.expect("a startup line");
    assert_eq!(startup, "mcp-reference-server beta starting (era=legacy)");
    let init = server.handshake().await;
    assert_eq!(init["serverInfo"]["name"], "beta");
    server
        .request(1, "tools/call", call("add", json!({ "a": 1, "b": 2 })))
        .await;
    server.stderr_until("request initialize").await;
    server.stderr_until("request tools/call add").await;

    let mut env_only = Server::launch(Launch {
        envs: &[("MCP_REF_NAME", "alpha")],
        ..Launch::default()
    });
    assert_eq!(env_only.handshake().await["serverInfo"]["name"], "alpha");
}

#[tokio::test]
async fn stdin_eof_exits_0_after_quick_requests_finish() {
    let mut server = Server::spawn(&[]);
    server.handshake().await;
    server
        .send(&request(
            1,
            "tools/call",
            call("sleep", json!({ "ms": 10 })),
        ))
        .await;
    server.close_stdin();
    let answer = server.recv().await;
    assert_eq!(text_of(&answer), "slept 10 ms");
    assert_eq!(server.read_line().await, None);
    assert_eq!(server.wait().await.code(), Some(0));
}

#[tokio::test]
async fn stdin_eof_exits_0_promptly_despite_a_long_sleep() {
    let mut server = Server::spawn(&[]);
    server
        .send(&request(
            1,
            "tools/call",
            call("sleep", json!({ "ms": 60_000 })),
        ))
        .await;
    assert_eq!(
        server.request(2, "ping", json!({})).await["result"],
        json!({})
    );
    let closed = Instant::now();
    server.close_stdin();
    assert_eq!(
        server.read_line().await,
        None,
        "the long sleep is not answered"
    );
    assert_eq!(server.wait().await.code(), Some(0));
    assert!(
        closed.elapsed() < Duration::from_secs(2),
        "{:?}",
        closed.elapsed()
    );
}

#[tokio::test]
async fn sigterm_exits_0() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let mut server = Server::spawn(&[]);
    // An answer proves the handlers are installed, since they come before reading stdin.
    assert_eq!(
        server.request(1, "ping", json!({})).await["result"],
        json!({})
    );
    let pid = server.child.id().expect("the server is running");
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"));
    kill(pid, Signal::SIGTERM).expect("send SIGTERM");
    assert_eq!(server.wait().await.code(), Some(0));
}
