//! Shared harness for the integration tests: spawns the real binary and talks JSON-RPC to it.

#![allow(dead_code)] // Each test file uses a different part of the harness.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

/// The longest any single expected event may take; generous because CI machines are slow.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Every variable the server reads, removed so that a developer's shell cannot change a test.
const SERVER_VARS: [&str; 11] = [
    "MCP_REF_NAME",
    "MCP_REF_ERA",
    "MCP_REF_CRASH_AFTER_REQUESTS",
    "MCP_REF_CRASH_AFTER_MS",
    "MCP_REF_EXIT_AT_START",
    "MCP_REF_HANG_AFTER_REQUESTS",
    "MCP_REF_SLOW_START_MS",
    "MCP_REF_GARBAGE_STDOUT",
    "MCP_REF_LONG_LINE_BYTES",
    "MCP_REF_STDERR_FLOOD",
    "MCP_REF_LOG_REQUESTS",
];

/// The version of the stateless era.
pub const MODERN: &str = "2026-07-28";

/// Waits for `future`, failing the test with `what` if it takes longer than [`DEADLINE`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {DEADLINE:?} waiting for {what}"),
    }
}

/// A JSON-RPC request.
pub fn request(id: impl Into<Value>, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id.into(), "method": method, "params": params })
}

/// A JSON-RPC notification.
pub fn notification(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

/// The params of a `tools/call`.
pub fn call(tool: &str, arguments: Value) -> Value {
    json!({ "name": tool, "arguments": arguments })
}

/// The params of a legacy `initialize`.
pub fn initialize_params(version: &str) -> Value {
    json!({
        "protocolVersion": version,
        "capabilities": {},
        "clientInfo": { "name": "reference-server-tests", "version": "0" }
    })
}

/// Adds the stateless era's `_meta` to a params object.
pub fn modern(mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    params
}

/// The text of the first content item of a tool result.
pub fn text_of(answer: &Value) -> &str {
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("not a text tool result: {answer}"))
}

/// The error code of an error answer.
pub fn error_code(answer: &Value) -> i64 {
    answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error answer: {answer}"))
}

/// How to start a server.
#[derive(Default)]
pub struct Launch<'a> {
    pub args: &'a [&'a str],
    pub envs: &'a [(&'a str, &'a str)],
    pub capture_stderr: bool,
}

/// A running server process, killed when dropped.
pub struct Server {
    pub child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Option<BufReader<ChildStderr>>,
}

impl Server {
    /// Starts the server with these flags, stderr discarded.
    pub fn spawn(args: &[&str]) -> Self {
        Self::launch(Launch {
            args,
            ..Launch::default()
        })
    }

    /// Starts the server as described.
    pub fn launch(launch: Launch<'_>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-reference-server"));
        command
            .args(launch.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if launch.capture_stderr {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true);
        for var in SERVER_VARS {
            command.env_remove(var);
        }
        command.envs(launch.envs.iter().copied());
        let mut child = command.spawn().expect("spawn mcp-reference-server");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let stderr = child.stderr.take().map(BufReader::new);
        Self {
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    /// Writes bytes to the server's stdin.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        within("writing to stdin", async {
            stdin.write_all(bytes).await.expect("write to stdin");
            stdin.flush().await.expect("flush stdin");
        })
        .await;
    }

    /// Writes one message as a line.
    pub async fn send(&mut self, message: &Value) {
        let mut line = serde_json::to_vec(message).expect("serialise");
        line.push(b'\n');
        self.send_raw(&line).await;
    }

    /// Closes stdin, which tells the server to shut down.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Reads the next stdout line without its newline, or None at EOF.
    pub async fn read_line(&mut self) -> Option<Vec<u8>> {
        self.read_line_within(DEADLINE)
            .await
            .unwrap_or_else(|| panic!("no stdout line within {DEADLINE:?}"))
    }

    /// Like [`Server::read_line`], but gives up (returning None) after `limit`.
    pub async fn read_line_within(&mut self, limit: Duration) -> Option<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let read = tokio::time::timeout(limit, self.stdout.read_until(b'\n', &mut line)).await;
        match read {
            Err(_) => None,
            Ok(read) => {
                let count = read.expect("read stdout");
                if count == 0 {
                    return Some(None);
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Some(Some(line))
            }
        }
    }

    /// Reads the next stdout line as JSON.
    pub async fn recv(&mut self) -> Value {
        let line = self
            .read_line()
            .await
            .expect("stdout ended while an answer was expected");
        serde_json::from_slice(&line).unwrap_or_else(|error| {
            panic!(
                "stdout line is not JSON ({error}): {}",
                String::from_utf8_lossy(&line)
            )
        })
    }

    /// Sends a request and returns its answer, which must be the next line.
    pub async fn request(&mut self, id: impl Into<Value>, method: &str, params: Value) -> Value {
        let id = id.into();
        self.send(&request(id.clone(), method, params)).await;
        let answer = self.recv().await;
        assert_eq!(answer["id"], id, "answer to the wrong request: {answer}");
        answer
    }

    /// Performs the legacy handshake and returns the `initialize` result.
    pub async fn handshake(&mut self) -> Value {
        let answer = self
            .request(0, "initialize", initialize_params("2025-11-25"))
            .await;
        self.send(&notification("notifications/initialized", json!({})))
            .await;
        answer["result"].clone()
    }

    /// Reads the next stderr line, or None at EOF.
    pub async fn stderr_line(&mut self) -> Option<String> {
        let stderr = self.stderr.as_mut().expect("stderr was captured");
        let mut line = String::new();
        let count = within("a stderr line", stderr.read_line(&mut line))
            .await
            .expect("read stderr");
        (count > 0).then(|| line.trim_end_matches('\n').to_owned())
    }

    /// Reads stderr lines until one contains `needle`, and returns it.
    pub async fn stderr_until(&mut self, needle: &str) -> String {
        loop {
            match self.stderr_line().await {
                Some(line) if line.contains(needle) => return line,
                Some(_) => {}
                None => panic!("stderr ended before a line containing {needle:?}"),
            }
        }
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> ExitStatus {
        within("the server to exit", self.child.wait())
            .await
            .expect("wait for the server")
    }

    /// Kills the process and reaps it.
    pub async fn kill(&mut self) {
        within("the server to be killed", self.child.kill())
            .await
            .expect("kill the server");
    }
}
