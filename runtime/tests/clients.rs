//! Acceptance tests of the `/mcp` gateway with real third-party clients: the Python SDK (PyPI
//! `mcp` 2.x) in its three modes, the inspector CLI, and the MCP conformance suite in both eras
//! against `conformance/baseline.yml`. Each test runs the real `mcp-fleet run` binary fronting the
//! reference server ("ref") and npm server-everything ("everything").
//!
//! The clients are installed by `.ci/install-peers` into `target/peers` (or the directory in
//! `MCP_FLEET_PEERS`); a test fails, and is never skipped, when they are missing. The tests take
//! one lock each so that they run one at a time: the conformance suite has timing checks (an SSE
//! event within 2 s) that a busy 2-core machine could miss.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// Held by every test for its whole run (see the module doc).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the gateway may take to list the tools of both backends.
const READY_WITHIN: Duration = Duration::from_secs(30);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the runtime crate sits in the workspace")
        .to_path_buf()
}

/// The third-party clients installed by `.ci/install-peers`.
struct Peers {
    dir: PathBuf,
    node: PathBuf,
    conformance_js: PathBuf,
    inspector_build: PathBuf,
    python: PathBuf,
}

fn peers() -> Peers {
    let dir = std::env::var_os("MCP_FLEET_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/peers"));
    let npm = dir.join("npm/node_modules/@modelcontextprotocol");
    let peers = Peers {
        node: dir.join("node/bin/node"),
        conformance_js: npm.join("conformance/dist/index.js"),
        inspector_build: npm.join("inspector-cli/build"),
        python: dir.join("venv/bin/python"),
        dir,
    };
    let missing: Vec<String> = [
        &peers.node,
        &peers.conformance_js,
        &peers.inspector_build.join("cli.js"),
        &peers.python,
    ]
    .into_iter()
    .filter(|p| !p.exists())
    .map(|p| p.display().to_string())
    .collect();
    assert!(
        missing.is_empty(),
        "the third-party MCP clients are not installed in {} (missing: {}). Run `bash .ci/install-peers` \
         from the repository root, or set MCP_FLEET_PEERS to the directory it installed them in.",
        peers.dir.display(),
        missing.join(", ")
    );
    peers
}

/// Fails with a clear message when npm server-everything is not installed.
fn require_server_everything() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|d| d.join("mcp-server-everything").is_file());
    assert!(
        found,
        "mcp-server-everything is not on PATH: install it with \
         `npm install -g @modelcontextprotocol/server-everything` (as .ci/run does)"
    );
}

/// `mcp-fleet run` on 127.0.0.1 with the two backends. Killed on drop if `stop` was not called;
/// its stderr goes to a log file that is kept (and named) when the test fails.
struct Fleet {
    child: Child,
    port: u16,
    config: PathBuf,
    log: PathBuf,
}

impl Fleet {
    async fn start() -> Fleet {
        require_server_everything();
        let port = common::free_port();
        let stem =
            std::env::temp_dir().join(format!("mcp-fleet-clients-{}-{port}", std::process::id()));
        let config = stem.with_extension("json");
        let log = stem.with_extension("log");
        let bin = mcp_reference_server::binary_path();
        let text = json!({
            "mcpServers": {
                "ref": { "command": bin.to_string_lossy() },
                "everything": { "command": "mcp-server-everything", "args": ["stdio"] },
            }
        });
        std::fs::write(&config, text.to_string()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mcp-fleet"))
            .args(["run", "--config"])
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut fleet = Fleet {
            child,
            port,
            config,
            log,
        };
        fleet.wait_until_both_backends_listed().await;
        fleet
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// The last lines of mcp-fleet's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!(
            "--- mcp-fleet log ({}), last lines ---\n{}",
            self.log.display(),
            strip_ansi(&tail)
        )
    }

    /// Polls a stateless (2026-07-28) `tools/list` until it names a tool of each backend.
    async fn wait_until_both_backends_listed(&mut self) {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("mcp-fleet exited early ({status})\n{}", self.log_tail());
            }
            let last = match list_tools_stateless(&http, &self.url()).await {
                Ok(names) => {
                    if names.iter().any(|n| n == "ref__echo")
                        && names.iter().any(|n| n == "everything__echo")
                    {
                        return;
                    }
                    format!("tools: {names:?}")
                }
                Err(e) => e,
            };
            assert!(
                started.elapsed() < READY_WITHIN,
                "the gateway did not list ref__echo and everything__echo within {READY_WITHIN:?} \
                 (last: {last})\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then an ordered shutdown with exit code 0 within 20 s.
    async fn stop(mut self) {
        let status = common::sigterm(&mut self.child, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("mcp-fleet did not stop within 20 s\n{}", self.log_tail()));
        assert!(
            status.success(),
            "mcp-fleet exited with {status}\n{}",
            self.log_tail()
        );
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
        if std::thread::panicking() {
            eprintln!("mcp-fleet log kept at {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// One 2026-07-28 `tools/list` POST; the tool names, or why there are none.
async fn list_tools_stateless(http: &reqwest::Client, url: &str) -> Result<Vec<String>, String> {
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/list",
        "params": { "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": { "name": "clients-test", "version": "1" },
        }},
    });
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("POST tools/list: {e}"))?;
    let status = resp.status();
    let sse = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let text = resp
        .text()
        .await
        .map_err(|e| format!("reading tools/list: {e}"))?;
    // An SSE answer carries the response as the last `data:` line.
    let json = if sse {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .rfind(|d| !d.is_empty())
            .unwrap_or_default()
            .to_string()
    } else {
        text.clone()
    };
    let value: Value = serde_json::from_str(&json)
        .map_err(|e| format!("HTTP {status}, not JSON ({e}): {text}"))?;
    let tools = value["result"]["tools"]
        .as_array()
        .ok_or_else(|| format!("HTTP {status}, no result.tools: {text}"))?;
    Ok(tools
        .iter()
        .filter_map(|t| t["name"].as_str().map(String::from))
        .collect())
}

/// Runs `cmd` to completion within `limit` (its process group is killed if it overruns) and
/// returns its output.
async fn run_bounded(mut cmd: Command, limit: Duration, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .process_group(0)
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pgid = child.id();
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => out.unwrap_or_else(|e| panic!("{what}: {e}")),
        Err(_) => {
            // The child itself is killed on drop; this also ends whatever it started.
            if let Some(pgid) = pgid {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            panic!("{what} did not finish within {limit:?}");
        }
    }
}

/// Removes ANSI colour sequences (the conformance suite colours even a pipe).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // ESC [ parameters final-byte
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// stdout and stderr of a run, decoded and uncoloured.
fn text_of(out: &Output) -> String {
    strip_ansi(&format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The last `max` characters of `text` (on a char boundary).
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

// ---------------------------------------------------------------------------------------------
// Python SDK

/// Lists the tools and calls `ref__echo` and `everything__echo` with the Python SDK client in
/// `mode`, checking the era it settled on.
async fn python_sdk(mode: &str, expected_version: &str, expects_server_info: bool) {
    let _serial = SERIAL.lock().await;
    let peers = peers();
    let fleet = Fleet::start().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/py_client.py");
    let calls = json!([
        ["ref__echo", { "message": "hello ref" }],
        ["everything__echo", { "message": "hello everything" }],
    ]);
    let mut cmd = Command::new(&peers.python);
    cmd.arg(&script)
        .arg(fleet.url())
        .arg(mode)
        .arg(calls.to_string());
    let started = Instant::now();
    let out = run_bounded(cmd, Duration::from_secs(60), "the Python SDK client").await;
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let context = || {
        format!(
            "mode {mode}: exit {}\nstdout: {stdout}\nstderr: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            fleet.log_tail()
        )
    };
    assert!(out.status.success(), "{}", context());
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", context()));

    assert_eq!(v["protocol_version"], expected_version, "{}", context());
    if expects_server_info {
        assert_eq!(v["server_info"]["name"], "mcp-fleet", "{}", context());
    }
    let tools: Vec<&str> = v["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {}", context()))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for name in [
        "ref__echo",
        "ref__add",
        "everything__echo",
        "everything__get-sum",
    ] {
        assert!(tools.contains(&name), "{name} not listed: {}", context());
    }
    assert!(
        tools
            .iter()
            .all(|t| t.starts_with("ref__") || t.starts_with("everything__")),
        "every tool carries its server's prefix: {}",
        context()
    );
    let expected = [
        ("ref__echo", "hello ref"),
        ("everything__echo", "Echo: hello everything"),
    ];
    for (i, (name, text)) in expected.iter().enumerate() {
        let call = &v["calls"][i];
        assert_eq!(call["name"], *name, "{}", context());
        let result = &call["result"];
        assert_eq!(result["isError"], false, "{name}: {}", context());
        assert_eq!(
            result["content"],
            json!([{ "type": "text", "text": text }]),
            "{name}: {}",
            context()
        );
    }
    println!("Python SDK mode {mode}: list + 2 calls in {took:.2?} (process included)");
    fleet.stop().await;
}

#[tokio::test]
async fn python_sdk_auto_mode_discovers_2026_and_calls_both_backends() {
    python_sdk("auto", "2026-07-28", true).await;
}

#[tokio::test]
async fn python_sdk_legacy_mode_uses_a_2025_session_and_calls_both_backends() {
    python_sdk("legacy", "2025-11-25", true).await;
}

#[tokio::test]
async fn python_sdk_2026_mode_is_stateless_and_calls_both_backends() {
    // This mode sends no server/discover, so the client knows no server info.
    python_sdk("2026-07-28", "2026-07-28", false).await;
}

// ---------------------------------------------------------------------------------------------
// inspector-cli

/// Runs inspector-cli 1.0.3 (`cli.js --cli URL --transport http ARGS`) from its `build/`
/// directory, as it requires, with the peers' Node first on PATH; returns its stdout as JSON.
async fn inspector(peers: &Peers, fleet: &Fleet, args: &[&str]) -> Value {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![peers.dir.join("node/bin")];
    dirs.extend(std::env::split_paths(&path));
    let mut cmd = Command::new(&peers.node);
    cmd.current_dir(&peers.inspector_build)
        .env("PATH", std::env::join_paths(dirs).unwrap())
        .args(["cli.js", "--cli", &fleet.url(), "--transport", "http"])
        .args(args);
    let out = run_bounded(cmd, Duration::from_secs(60), "inspector-cli").await;
    let context = || {
        format!(
            "inspector-cli {args:?}: exit {}\n{}\n{}",
            out.status,
            text_of(&out),
            fleet.log_tail()
        )
    };
    assert!(out.status.success(), "{}", context());
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", context()))
}

#[tokio::test]
async fn inspector_cli_lists_both_backends_tools_and_calls_one_over_http() {
    let _serial = SERIAL.lock().await;
    let peers = peers();
    let fleet = Fleet::start().await;

    let started = Instant::now();
    let listed = inspector(&peers, &fleet, &["--method", "tools/list"]).await;
    let took = started.elapsed();
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {listed}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for name in [
        "ref__echo",
        "ref__add",
        "everything__echo",
        "everything__get-sum",
    ] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    assert!(
        listed["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["inputSchema"].is_object()),
        "every tool keeps its inputSchema: {listed}"
    );

    let called = inspector(
        &peers,
        &fleet,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "ref__echo",
            "--tool-arg",
            "message=from the inspector",
        ],
    )
    .await;
    assert_eq!(
        called["content"],
        json!([{ "type": "text", "text": "from the inspector" }]),
        "{called}"
    );
    println!("inspector-cli tools/list in {took:.2?} (process included)");
    fleet.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Conformance suite

/// What a conformance run printed, without colours.
struct Report {
    code: Option<i32>,
    /// The checks, the summary and the baseline verdict.
    stdout: String,
    /// Progress lines ("Running client scenario ...") and errors.
    stderr: String,
}

/// Runs `conformance server --url URL ARGS` (Node 22).
async fn conformance(peers: &Peers, fleet: &Fleet, args: &[&str]) -> Report {
    let mut cmd = Command::new(&peers.node);
    cmd.current_dir(workspace_root())
        .arg(&peers.conformance_js)
        .args(["server", "--url", &fleet.url()])
        .args(args);
    let started = Instant::now();
    let out = run_bounded(cmd, Duration::from_secs(240), "the conformance suite").await;
    println!(
        "conformance {}: exit {:?} in {:.2?}",
        args.join(" "),
        out.status.code(),
        started.elapsed()
    );
    Report {
        code: out.status.code(),
        stdout: strip_ansi(&String::from_utf8_lossy(&out.stdout)),
        stderr: strip_ansi(&String::from_utf8_lossy(&out.stderr)),
    }
}

/// The line of check `id` in the suite's pretty output (`<time> [<id>   ] <STATUS> ...`).
fn check_line<'a>(output: &'a str, id: &str) -> Option<&'a str> {
    output.lines().find(|l| {
        l.split_once('[')
            .and_then(|(_, rest)| rest.split_once(']'))
            .is_some_and(|(inside, _)| inside.trim() == id)
    })
}

#[tokio::test]
async fn conformance_dns_rebinding_protection_passes_in_both_eras() {
    let _serial = SERIAL.lock().await;
    let peers = peers();
    let fleet = Fleet::start().await;
    for era in ["2025-11-25", "2026-07-28"] {
        let report = conformance(
            &peers,
            &fleet,
            &[
                "--scenario",
                "dns-rebinding-protection",
                "--spec-version",
                era,
            ],
        )
        .await;
        let output = &report.stdout;
        let context = || {
            format!(
                "era {era}:\n{output}\n{}\n{}",
                report.stderr,
                fleet.log_tail()
            )
        };
        assert_eq!(report.code, Some(0), "{}", context());
        assert!(!output.contains("SKIPPED"), "{}", context());
        for id in [
            "localhost-host-rebinding-rejected",
            "localhost-host-valid-accepted",
        ] {
            let line = check_line(output, id)
                .unwrap_or_else(|| panic!("no check {id} in the output: {}", context()));
            assert!(line.contains("] SUCCESS "), "{line}\n{}", context());
        }
        assert!(
            output.contains("Passed: 2/2, 0 failed, 0 warnings"),
            "{}",
            context()
        );
    }
    fleet.stop().await;
}

/// `--requirements ERA` with `conformance/baseline.yml`: the suite exits 0 only when exactly the
/// baselined checks fail (a new failure or warning, or a baselined check that now passes, exits 1).
async fn conformance_requirements(era: &str) {
    let _serial = SERIAL.lock().await;
    let peers = peers();
    let fleet = Fleet::start().await;
    let baseline = workspace_root().join("conformance/baseline.yml");
    assert!(baseline.is_file(), "{} is missing", baseline.display());
    let started = Instant::now();
    let report = conformance(
        &peers,
        &fleet,
        &[
            "--requirements",
            era,
            "--expected-failures",
            baseline.to_str().unwrap(),
            "--timeout",
            "20000",
        ],
    )
    .await;
    let took = started.elapsed();
    let output = &report.stdout;
    // The summary, the baselined failures, and what differs from the baseline.
    let summary = output
        .find("=== SUMMARY ===")
        .map_or_else(|| tail(output, 12_000), |at| &output[at..]);
    let context = || {
        format!(
            "era {era}, exit {:?}; see CONFORMANCE.md.\n{summary}\n--- stderr, last part ---\n{}\n{}",
            report.code,
            tail(&report.stderr, 3_000),
            fleet.log_tail()
        )
    };
    assert_eq!(report.code, Some(0), "{}", context());
    assert!(
        output.contains("Baseline check passed: all failures are expected."),
        "{}",
        context()
    );
    assert!(
        output.contains("✓ dns-rebinding-protection: 2 passed, 0 failed"),
        "{}",
        context()
    );
    // The suite is quick (about 2 s for 2025-11-25 and 8 s for 2026-07-28 on 2 cores); a much
    // slower run means scenarios are running into their timeouts.
    assert!(
        took < Duration::from_secs(120),
        "the run took {took:?}: {}",
        context()
    );
    fleet.stop().await;
}

#[tokio::test]
async fn conformance_requirements_2025_11_25_fail_only_as_baselined() {
    conformance_requirements("2025-11-25").await;
}

#[tokio::test]
async fn conformance_requirements_2026_07_28_fail_only_as_baselined() {
    conformance_requirements("2026-07-28").await;
}
