//! Shared helpers of the runtime tests.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use fleet_protocol::ServerSpec;

/// A spec running the reference server with the given flags.
pub fn reference(name: &str, flags: &[&str]) -> ServerSpec {
    let bin = mcp_reference_server::binary_path();
    let mut args = vec!["--name".to_string(), name.to_string()];
    args.extend(flags.iter().map(|s| s.to_string()));
    ServerSpec::stdio(name, bin.to_string_lossy(), args)
}

/// Waits until `check` returns `Some`, polling every 20 ms, failing after `limit`.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[allow(unused_imports)] // not every test file uses it
pub use fleet_server_manager::process_running;

/// Pids of running (not zombie) processes whose command line contains `marker`.
pub fn pids_with(marker: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            !zombie && String::from_utf8_lossy(&cmd).contains(marker)
        })
        .collect()
}

// ---- The `mcp-fleet` binary, run as a user would -------------------------------------------

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free port on 127.0.0.1 below the kernel's ephemeral range, for a server that must come
/// back on the same port after it stops. A port from [`free_port`] lies inside that range: while
/// its server is down, the kernel may give it to any outgoing connection on the machine as its
/// source port, and while that connection lasts the server's next bind fails (`EADDRINUSE`).
/// Ports below the range are never handed out that way.
pub fn port_outside_ephemeral_range() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // A window of up to 8,000 ports just below the range, entered at a point that differs
    // between test processes and between calls, so parallel tests rarely probe the same ports.
    let span = low.saturating_sub(1024).clamp(1, 8000);
    let first = low - span;
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seed = std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * 131);
    (0..u32::from(span))
        .map(|i| first + (seed.wrapping_add(i) % u32::from(span)) as u16)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free port below the ephemeral range")
}

/// One HTTP/1.0 GET, the whole response as text (the server closes the connection).
pub async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut body = Vec::new();
    stream.read_to_end(&mut body).await.ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// The `mcp-fleet` binary with `args`.
pub fn mcp_fleet<I, S>(args: I) -> tokio::process::Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-fleet"));
    command.args(args);
    command
}

/// `mcp-fleet check --config FILE` with these environment variables set (`Some`) or removed
/// (`None`); its whole output.
pub async fn check_config(
    config: &std::path::Path,
    env: &[(&str, Option<&str>)],
) -> std::process::Output {
    let mut command = mcp_fleet(["check", "--config"]);
    command.arg(config);
    for (k, v) in env {
        match v {
            Some(v) => command.env(k, v),
            None => command.env_remove(k),
        };
    }
    command.output().await.unwrap()
}

/// Starts `mcp-fleet run` on a free port with `config`; returns the child and the port.
pub fn spawn_fleet(
    config: &std::path::Path,
    stderr: std::process::Stdio,
) -> (tokio::process::Child, u16) {
    spawn_fleet_with(config, stderr, &[], &[], &[])
}

/// [`spawn_fleet`] with more arguments (global ones before `run`, and `run`'s own) and
/// environment variables.
pub fn spawn_fleet_with(
    config: &std::path::Path,
    stderr: std::process::Stdio,
    global_args: &[&str],
    run_args: &[&str],
    env: &[(&str, &str)],
) -> (tokio::process::Child, u16) {
    let port = free_port();
    let child = spawn_fleet_on(config, port, stderr, global_args, run_args, env);
    (child, port)
}

/// [`spawn_fleet_with`] on a given port (a fleet that must come back on the same address).
pub fn spawn_fleet_on(
    config: &std::path::Path,
    port: u16,
    stderr: std::process::Stdio,
    global_args: &[&str],
    run_args: &[&str],
    env: &[(&str, &str)],
) -> tokio::process::Child {
    mcp_fleet(global_args)
        .args(["run", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(run_args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

pub fn write_config(text: &str) -> TempFile {
    TempFile::new(text)
}

/// A temporary file removed on drop (std only).
pub struct TempFile(pub std::path::PathBuf);

impl TempFile {
    pub fn new(text: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("mcp-fleet-test-{}-{n}.json", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The value of one series in a Prometheus text exposition, `series` being the name with its
/// labels exactly as rendered (`name{a="b"}`); `None` when the series is absent.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

/// The body of a `GET /metrics` (no headers), if the fleet answers.
pub async fn scrape(port: u16) -> Option<String> {
    let response = http_get(port, "/metrics").await?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_owned()))
}

/// A 2025-era MCP client session over HTTP, as a real client drives the gateway.
pub struct McpSession {
    pub url: String,
    pub http: reqwest::Client,
    pub id: String,
}

impl McpSession {
    /// `initialize` and `notifications/initialized` at `url`.
    pub async fn open(url: &str) -> McpSession {
        let http = reqwest::Client::new();
        let post = |body: serde_json::Value| {
            http.post(url)
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "application/json")
                .body(body.to_string())
        };
        let r = post(
            serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
        let id = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let r = post(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .header("mcp-session-id", &id)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        McpSession {
            url: url.to_owned(),
            http,
            id,
        }
    }

    /// A request in the session; the JSON-RPC response.
    pub async fn call(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let r = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", "2025-11-25")
            .body(
                serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }
}

/// Sends SIGTERM to `child`, which must exit with code 0 within `limit` (mcp-fleet's clean
/// shutdown).
pub async fn stop_cleanly(child: &mut tokio::process::Child, limit: Duration) {
    let status = sigterm(child, limit)
        .await
        .unwrap_or_else(|| panic!("mcp-fleet did not exit within {limit:?} of SIGTERM"));
    assert!(status.success(), "{status:?}");
}

/// Sends SIGTERM to `child` and waits up to `limit` for it to exit; `None` if it did not.
pub async fn sigterm(
    child: &mut tokio::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let pid = nix::unistd::Pid::from_raw(child.id()? as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).ok()?;
    tokio::time::timeout(limit, child.wait()).await.ok()?.ok()
}

/// The path of `program` on `PATH`. A test that needs it fails (it is not skipped) when it is
/// missing, naming `package`, which `.ci/run` installs.
pub fn on_path(program: &str, package: &str) -> std::path::PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| panic!("`{program}` is not on PATH: install {package} (.ci/run does)"))
}

/// Waits until `GET /readyz` at `port` answers 200; its body.
pub async fn wait_ready(port: u16, limit: Duration) -> serde_json::Value {
    let http = reqwest::Client::new();
    wait_for(limit, "/readyz 200", || async {
        let r = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())?;
        r.json().await.ok()
    })
    .await
}

/// The Claude Desktop config of the MCP documentation
/// (https://modelcontextprotocol.io/quickstart/user), with the memory server of the servers
/// repository beside the filesystem one, exactly as the documents write them.
pub const DOCUMENTED_CONFIG: &str = r#"{
  "mcpServers": {
    "filesystem": {
      "command": "npx",
      "args": [
        "-y",
        "@modelcontextprotocol/server-filesystem",
        "/Users/username/Desktop",
        "/Users/username/Downloads"
      ]
    },
    "memory": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-memory"]
    }
  }
}"#;

/// `GET url`, its body as JSON (whatever the status).
pub async fn get_json(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> serde_json::Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}
