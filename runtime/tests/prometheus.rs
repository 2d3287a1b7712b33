//! The `mcp-fleet` binary scraped by a real Prometheus server (Debian's `prometheus` package,
//! which `.ci/run` installs): the target is up, `mcp_fleet_up` has one series per server, gateway
//! traffic shows up as a request rate, a p99 latency and an exact counter, and every PromQL
//! expression of the Grafana dashboard `dashboards/mcp-fleet.json` is accepted and evaluated.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{McpSession, free_port, metric_value, pids_with, scrape, spawn_fleet, wait_for};
use serde_json::{Value, json};

/// Prometheus' scrape and evaluation interval, in its configuration syntax.
const SCRAPE_INTERVAL: &str = "1s";
/// The range of every `rate()` in the test, and what the dashboard's `$__rate_interval` becomes.
const RATE_RANGE: &str = "10s";
/// The least time the gateway traffic lasts, and the pause between two of its calls.
const TRAFFIC_MIN: Duration = Duration::from_secs(4);
const TRAFFIC_PAUSE: Duration = Duration::from_millis(50);
/// The most time the gateway traffic lasts, whatever happens.
const TRAFFIC_MAX: Duration = Duration::from_secs(25);

/// A directory of its own under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path =
            std::env::temp_dir().join(format!("mcp-fleet-{tag}-{}-{nanos:09}", std::process::id()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process that is stopped and reaped when dropped, on a panic too: SIGTERM, up to
/// 10 s to exit, then SIGKILL. The test stops its processes itself on the way to success.
struct Guarded(Option<tokio::process::Child>);

impl Guarded {
    fn child(&mut self) -> &mut tokio::process::Child {
        self.0.as_mut().expect("the process is still guarded")
    }

    fn take(&mut self) -> tokio::process::Child {
        self.0.take().expect("the process is still guarded")
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Some(pid) = child.id() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        let exited = |child: &mut tokio::process::Child, limit: Duration| {
            let deadline = std::time::Instant::now() + limit;
            loop {
                if !matches!(child.try_wait(), Ok(None)) {
                    return true;
                }
                if std::time::Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        if !exited(&mut child, Duration::from_secs(10)) {
            let _ = child.start_kill();
            exited(&mut child, Duration::from_secs(5));
        }
    }
}

/// `prometheus` from Debian's package, which `.ci/run` installs.
fn prometheus_binary() -> PathBuf {
    common::on_path("prometheus", "Debian's `prometheus` package")
}

/// The last `lines` lines of a log file, for assertion messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    format!(
        "--- last {} lines of {} ---\n{}",
        all.len() - from,
        path.display(),
        all[from..].join("\n")
    )
}

/// A Prometheus server of the test's own, on a free loopback port, with its own storage.
struct Prometheus {
    process: Guarded,
    port: u16,
    log: PathBuf,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus scraping `127.0.0.1:{fleet_port}` every second as job `mcp-fleet`.
    fn start(binary: &Path, dir: &Path, fleet_port: u16) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  evaluation_interval: \
                 {SCRAPE_INTERVAL}\nscrape_configs:\n  - job_name: mcp-fleet\n    \
                 static_configs:\n      - targets: ['127.0.0.1:{fleet_port}']\n"
            ),
        )
        .unwrap();
        let log = dir.join("prometheus.log");
        let port = free_port();
        let child = tokio::process::Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            process: Guarded(Some(child)),
            port,
            log,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        }
    }

    /// Prometheus' log so far, for assertion messages.
    fn log_tail(&self) -> String {
        tail(&self.log, 30)
    }

    /// Panics with the log when Prometheus has already exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.process.child().try_wait() {
            panic!("prometheus exited ({status}):\n{}", self.log_tail());
        }
    }

    /// Whether `GET /-/ready` answers 200.
    async fn ready(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/-/ready", self.port);
        matches!(self.http.get(url).send().await, Ok(r) if r.status() == 200)
    }

    /// `GET /api/v1/query?query={expr}`: the whole JSON answer, whatever its status. `None` when
    /// Prometheus does not answer with JSON.
    async fn query(&self, expr: &str) -> Option<Value> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let response = self
            .http
            .get(url)
            .query(&[("query", expr)])
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// The instant vector of a query that must succeed: each series' labels and value.
    async fn vector(&self, expr: &str) -> Vec<(Value, f64)> {
        let answer = self
            .query(expr)
            .await
            .unwrap_or_else(|| panic!("no JSON answer to `{expr}`:\n{}", self.log_tail()));
        samples(expr, &answer)
    }
}

/// The series of a successful instant-vector answer to `expr`: labels and value.
fn samples(expr: &str, answer: &Value) -> Vec<(Value, f64)> {
    assert_eq!(answer["status"], "success", "`{expr}`: {answer}");
    assert_eq!(answer["data"]["resultType"], "vector", "`{expr}`: {answer}");
    answer["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("`{expr}`: no result array: {answer}"))
        .iter()
        .map(|series| {
            let text = series["value"][1]
                .as_str()
                .unwrap_or_else(|| panic!("`{expr}`: no value in {series}"));
            let value: f64 = text
                .parse()
                .unwrap_or_else(|e| panic!("`{expr}`: value {text:?}: {e}"));
            (series["metric"].clone(), value)
        })
        .collect()
}

/// The value of the one series of `vector` whose `label` is `value`.
fn value_for(vector: &[(Value, f64)], label: &str, value: &str) -> Option<f64> {
    vector
        .iter()
        .find(|(metric, _)| metric[label] == value)
        .map(|(_, v)| *v)
}

/// Every panel target's `expr` of a Grafana dashboard, panels nested in rows included, each
/// with its panel's title.
fn dashboard_exprs(panels: &[Value], out: &mut Vec<(String, String)>) {
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.to_owned(), expr.to_owned()));
            }
        }
        if let Some(nested) = panel["panels"].as_array() {
            dashboard_exprs(nested, out);
        }
    }
}

/// A dashboard expression with its Grafana variables replaced: `$server` (all servers) by `.*`,
/// the intervals by [`RATE_RANGE`].
fn substitute(expr: &str) -> String {
    let mut out = expr.to_owned();
    for (from, to) in [
        ("${server}", ".*"),
        ("[[server]]", ".*"),
        ("$server", ".*"),
        ("${__rate_interval}", RATE_RANGE),
        ("$__rate_interval", RATE_RANGE),
        ("${__interval}", RATE_RANGE),
        ("$__interval", RATE_RANGE),
        ("${__range}", RATE_RANGE),
        ("$__range", RATE_RANGE),
    ] {
        out = out.replace(from, to);
    }
    out
}

#[tokio::test]
async fn prometheus_scrapes_the_fleet_and_evaluates_the_dashboard() {
    let prometheus = prometheus_binary();
    let dir = TempDir::new("prometheus");
    let marker = format!("promtest-{}-ref", std::process::id());
    let bin = mcp_reference_server::binary_path();
    let mut servers = serde_json::Map::new();
    for name in ["alpha", "beta"] {
        servers.insert(
            name.into(),
            json!({"command": bin, "args": ["--name", format!("{marker}-{name}")]}),
        );
    }
    let config = dir.0.join("fleet.json");
    std::fs::write(&config, json!({ "mcpServers": servers }).to_string()).unwrap();
    let fleet_log = dir.0.join("mcp-fleet.log");
    let (child, fleet_port) =
        spawn_fleet(&config, std::fs::File::create(&fleet_log).unwrap().into());
    let mut fleet = Guarded(Some(child));

    // 1. The fleet is up, both servers ready, before Prometheus first scrapes it.
    wait_for(
        Duration::from_secs(20),
        "alpha and beta up in /metrics",
        || async {
            let body = scrape(fleet_port).await?;
            (metric_value(&body, r#"mcp_fleet_up{server="alpha"}"#) == Some(1.0)
                && metric_value(&body, r#"mcp_fleet_up{server="beta"}"#) == Some(1.0))
            .then_some(())
        },
    )
    .await;

    // 2. A real Prometheus of our own.
    let mut prom = Prometheus::start(&prometheus, &dir.0, fleet_port);
    let limit = Duration::from_secs(20);
    let deadline = tokio::time::Instant::now() + limit;
    while !prom.ready().await {
        prom.assert_running();
        assert!(
            tokio::time::Instant::now() < deadline,
            "prometheus not ready on 127.0.0.1:{} after {limit:?}:\n{}",
            prom.port,
            prom.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 3. The target is scraped; the samples of that scrape came in with `up`.
    let limit = Duration::from_secs(15);
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = Value::Null;
    loop {
        prom.assert_running();
        if let Some(answer) = prom.query(r#"up{job="mcp-fleet"}"#).await {
            if answer["status"] == "success"
                && samples("up", &answer).first().map(|(_, v)| *v) == Some(1.0)
            {
                break;
            }
            last = answer;
        }
        if tokio::time::Instant::now() >= deadline {
            let targets = match prom
                .http
                .get(format!("http://127.0.0.1:{}/api/v1/targets", prom.port))
                .send()
                .await
            {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(e) => e.to_string(),
            };
            panic!(
                "up{{job=\"mcp-fleet\"}} not 1 after {limit:?} (last answer {last});\n\
                 targets: {targets}\n{}",
                prom.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let up = prom.vector(r#"mcp_fleet_up{job="mcp-fleet"}"#).await;
    let mut servers_up: Vec<(String, f64)> = up
        .iter()
        .map(|(m, v)| (m["server"].as_str().unwrap_or("?").to_owned(), *v))
        .collect();
    servers_up.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        servers_up,
        [("alpha".to_owned(), 1.0), ("beta".to_owned(), 1.0)],
        "mcp_fleet_up as Prometheus stored it: {up:?}"
    );
    for (metric, _) in &up {
        assert_eq!(
            metric["instance"],
            format!("127.0.0.1:{fleet_port}"),
            "{metric}"
        );
    }

    // 4. Gateway traffic, one call every ~50 ms for at least 4 s so that several scrapes see
    //    the counters grow; it goes on (up to TRAFFIC_MAX) until the rate and the p99 are seen.
    let session = McpSession::open(&format!("http://127.0.0.1:{fleet_port}/mcp")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut traffic = Some(tokio::spawn({
        let stop = stop.clone();
        async move {
            let start = tokio::time::Instant::now();
            let mut calls = 0u64;
            while start.elapsed() < TRAFFIC_MAX
                && (start.elapsed() < TRAFFIC_MIN || !stop.load(Ordering::Relaxed))
            {
                let message = format!("m{calls}");
                let r = session
                    .call(
                        "tools/call",
                        json!({"name": "alpha__echo", "arguments": {"message": message}}),
                    )
                    .await;
                assert_eq!(r["result"]["content"][0]["text"], message, "{r}");
                calls += 1;
                tokio::time::sleep(TRAFFIC_PAUSE).await;
            }
            (session, calls)
        }
    }));
    let mut traffic_done = None;

    let rate_expr =
        format!(r#"sum(rate(mcp_fleet_requests_total{{method="tools/call"}}[{RATE_RANGE}]))"#);
    let p99_expr = format!(
        "histogram_quantile(0.99, sum by (le, server) \
         (rate(mcp_fleet_request_duration_seconds_bucket[{RATE_RANGE}])))"
    );
    let limit = Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + limit;
    let (rate, p99) = loop {
        prom.assert_running();
        // A failed call ends the traffic task: show its panic now rather than a timeout later.
        if traffic.as_ref().is_some_and(|t| t.is_finished()) {
            let task = traffic.take().unwrap();
            traffic_done = Some(task.await.expect("the traffic task"));
        }
        let rate = prom.vector(&rate_expr).await.first().map(|(_, v)| *v);
        let p99 = value_for(&prom.vector(&p99_expr).await, "server", "alpha");
        if let (Some(rate), Some(p99)) = (rate, p99)
            && rate > 0.0
            && p99.is_finite()
        {
            break (rate, p99);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {limit:?}: `{rate_expr}` = {rate:?}, p99 of alpha = {p99:?}\n{}\n{}",
            prom.log_tail(),
            tail(&fleet_log, 20)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let (session, calls) = match (traffic_done, traffic) {
        (Some(done), _) => done,
        (None, Some(task)) => task.await.expect("the traffic task"),
        (None, None) => unreachable!("the traffic task is awaited once"),
    };
    // One call per ~50 ms at most: 20/s, and some scrapes saw it.
    assert!(
        rate > 0.0 && rate <= 25.0,
        "`{rate_expr}` = {rate} with {calls} calls"
    );
    assert!(
        p99 > 0.0 && p99 < 5.0,
        "p99 request latency of alpha = {p99} s (`{p99_expr}`)"
    );
    assert!(
        calls >= 10,
        "only {calls} calls in at least {TRAFFIC_MIN:?}"
    );

    // Once a scrape after the last call is in, the stored counters are exact.
    let ok_calls = r#"mcp_fleet_requests_total{server="alpha",method="tools/call",outcome="ok"}"#;
    let stored = wait_for(Duration::from_secs(10), "every call counted", || async {
        let v = prom.vector(ok_calls).await.first().map(|(_, v)| *v)?;
        (v >= calls as f64).then_some(v)
    })
    .await;
    assert_eq!(stored, calls as f64, "{ok_calls}");
    for (expr, expected) in [
        (
            r#"mcp_fleet_tool_calls_total{server="alpha",tool="echo",outcome="ok"}"#,
            calls as f64,
        ),
        (
            r#"sum(mcp_fleet_requests_total{server="alpha",method="tools/call",outcome!="ok"}) or vector(0)"#,
            0.0,
        ),
        (
            r#"sum(mcp_fleet_requests_total{server="beta",method="tools/call"}) or vector(0)"#,
            0.0,
        ),
        ("mcp_fleet_gateway_sessions_active", 1.0),
        ("mcp_fleet_gateway_sessions_created_total", 1.0),
    ] {
        let vector = prom.vector(expr).await;
        assert_eq!(vector.len(), 1, "`{expr}`: {vector:?}");
        assert_eq!(vector[0].1, expected, "`{expr}`: {vector:?}");
    }

    // 5. Every expression of the Grafana dashboard parses and evaluates.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/mcp-fleet.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let dashboard: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let mut exprs = Vec::new();
    dashboard_exprs(
        dashboard["panels"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default(),
        &mut exprs,
    );
    assert!(
        exprs.len() >= 5,
        "only {} expressions in {}",
        exprs.len(),
        path.display()
    );
    let mut empty = Vec::new();
    for (title, expr) in &exprs {
        let query = substitute(expr);
        assert!(
            !query.contains('$'),
            "panel {title:?}: a Grafana variable the test does not know in `{expr}`"
        );
        let answer = prom.query(&query).await.unwrap_or_else(|| {
            panic!(
                "panel {title:?}: no JSON answer to `{query}`\n{}",
                prom.log_tail()
            )
        });
        assert_eq!(
            answer["status"], "success",
            "panel {title:?}: `{query}` (from `{expr}`): {answer}"
        );
        assert!(
            answer["warnings"].is_null(),
            "panel {title:?}: `{query}`: {answer}"
        );
        if answer["data"]["result"]
            .as_array()
            .is_some_and(Vec::is_empty)
        {
            empty.push(format!("{title}: {query}"));
        }
    }
    // Not an error (an idle server has no request series yet), but worth seeing in the log.
    if !empty.is_empty() {
        eprintln!(
            "{} of {} dashboard expressions returned no series:\n  {}",
            empty.len(),
            exprs.len(),
            empty.join("\n  ")
        );
    }

    // 6. Stop: mcp-fleet exits cleanly on SIGTERM, Prometheus is killed, nothing is left.
    drop(session);
    let mut child = fleet.take();
    let status = common::sigterm(&mut child, Duration::from_secs(15))
        .await
        .expect("mcp-fleet exits within 15 s of SIGTERM");
    assert!(
        status.success(),
        "mcp-fleet: {status}\n{}",
        tail(&fleet_log, 30)
    );
    prom.process.take().kill().await.unwrap();
    wait_for(
        Duration::from_secs(10),
        "no reference server left",
        || async { pids_with(&marker).is_empty().then_some(()) },
    )
    .await;
    drop(dir);
}
