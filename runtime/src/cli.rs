//! The client side of the `mcp-fleet` commands that talk to a running fleet (`status`,
//! `servers`, `logs`, `tools`): requests to its admin API and its `/mcp` endpoint, and the
//! tables they print. The table code is pure, for tests.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

/// Why a command failed: the fleet could not be reached or failed, or the server did not start
/// (exit 1), or it refused the request as the user's mistake, a 4xx (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot reach mcp-fleet at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{message}")]
    Refused { status: u16, message: String },
    /// The fleet did what was asked, but the server it was about did not start (exit 1).
    #[error("{message}")]
    NotStarted { message: String },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused { status, .. } if (400..500).contains(status) => 2,
            _ => 1,
        }
    }
}

/// An error and each of its causes ("connection refused" is a cause of reqwest's error).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let cause = s.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = s.source();
    }
    text
}

/// `/api/servers/NAME[/REST...]`: the name as one path segment, percent-encoded, so that a name
/// with `#`, `?` or `/` in it names that server and no other.
pub fn server_path(name: &str, rest: &[&str]) -> String {
    let mut url = reqwest::Url::parse("http://fleet/api/servers").expect("a constant, valid URL");
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.push(name).extend(rest);
    }
    url.path().to_owned()
}

/// The `--url` of a running fleet: an http or https URL (anything else is a usage error).
pub fn parse_fleet_url(text: &str) -> Result<String, String> {
    match reqwest::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(text.to_owned())
        }
        Ok(u) => Err(format!(
            "`{text}` is not an http(s) URL (scheme `{}`)",
            u.scheme()
        )),
        Err(e) => Err(format!(
            "`{text}` is not a URL ({e}); for example http://127.0.0.1:7700"
        )),
    }
}

/// A running fleet's HTTP address, with the bearer token if one is needed.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::new(),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(120));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> Result<reqwest::Response, CliError> {
        r.send().await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            reason: with_causes(&e),
        })
    }

    /// A JSON answer of the admin API; a non-2xx status is an error carrying its message.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let mut r = self.request(method, path);
        if let Some(b) = body {
            r = r.json(b);
        }
        let response = self.send(r).await?;
        let status = response.status().as_u16();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let mut message = value["error"]
            .as_str()
            .or_else(|| value["error"]["message"].as_str())
            .unwrap_or("request failed")
            .to_owned();
        if let Some(errors) = value["errors"].as_array() {
            for e in errors {
                message.push_str("\n  ");
                message.push_str(e.as_str().unwrap_or_default());
            }
        }
        Err(CliError::Refused {
            status,
            message: format!("{message} (HTTP {status})"),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// The gateway's aggregated tools, as an MCP client sees them: a session is opened,
    /// `tools/list` asked and the session ended.
    pub async fn tools(&self) -> Result<Vec<Value>, CliError> {
        let mcp = |session: Option<&str>, body: Value| {
            let mut r = self
                .request(reqwest::Method::POST, "/mcp")
                .header("accept", "application/json, text/event-stream")
                .json(&body);
            if let Some(s) = session {
                r = r
                    .header("mcp-session-id", s)
                    .header("mcp-protocol-version", "2025-11-25");
            }
            r
        };
        let init = self
            .send(mcp(
                None,
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "mcp-fleet-cli", "version": env!("CARGO_PKG_VERSION")}}}),
            ))
            .await?;
        let refused = |status: u16, what: &str| CliError::Refused {
            status,
            message: format!("{what} failed (HTTP {status})"),
        };
        let status = init.status().as_u16();
        let session = init
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| refused(status, "initialize"))?;
        let _ = self
            .send(mcp(
                Some(&session),
                json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            ))
            .await?;
        let list = self
            .send(mcp(
                Some(&session),
                json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
            ))
            .await?;
        let status = list.status().as_u16();
        let list: Value = list
            .json()
            .await
            .map_err(|_| refused(status, "tools/list"))?;
        let _ = self
            .send(
                self.request(reqwest::Method::DELETE, "/mcp")
                    .header("mcp-session-id", &session),
            )
            .await;
        match list["result"]["tools"].as_array() {
            Some(tools) => Ok(tools.clone()),
            None => Err(CliError::Refused {
                status,
                message: format!("tools/list answered {list}"),
            }),
        }
    }
}

/// A serde `SystemTime` (`{"secs_since_epoch": .., "nanos_since_epoch": ..}`).
fn system_time(v: &Value) -> Option<SystemTime> {
    let secs = v["secs_since_epoch"].as_u64()?;
    let nanos = v["nanos_since_epoch"].as_u64().unwrap_or(0);
    Some(SystemTime::UNIX_EPOCH + Duration::new(secs, nanos as u32))
}

/// A serde `Duration` (`{"secs": .., "nanos": ..}`).
fn duration(v: &Value) -> Option<Duration> {
    Some(Duration::new(
        v["secs"].as_u64()?,
        v["nanos"].as_u64().unwrap_or(0) as u32,
    ))
}

/// `1h02m`, `3m05s`, `42s`.
fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The `status` table: one row per server of `GET /api/servers`, with the probe latency from
/// `GET /api/health`, times relative to `now`.
pub fn status_table(servers: &Value, health: &Value, now: SystemTime) -> String {
    let mut rows = vec![
        [
            "NAME",
            "STATE",
            "PID",
            "UPTIME",
            "RESTARTS",
            "LAST EXIT",
            "NEXT RETRY",
            "PROBE",
            "TOOLS",
        ]
        .map(str::to_owned),
    ];
    for s in servers.as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or("?");
        let probe = health
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["server"] == name)
            .and_then(|h| duration(&h["last_latency"]))
            .map(|d| format!("{:.1}ms", d.as_secs_f64() * 1000.0))
            .unwrap_or_else(|| "-".into());
        let pid = s["pid"].as_u64().map(|p| p.to_string());
        let uptime = pid
            .as_ref()
            .and_then(|_| system_time(&s["started_at"]))
            .and_then(|t| now.duration_since(t).ok())
            .map(short);
        let last_exit = match (
            s["last_exit"]["code"].as_i64(),
            s["last_exit"]["signal"].as_i64(),
        ) {
            (Some(code), _) => Some(format!("code {code}")),
            (None, Some(sig)) => Some(format!("signal {sig}")),
            _ => None,
        };
        let last_exit = match (last_exit, s["last_exit"]["reason"].as_str()) {
            (Some(exit), Some(reason)) => Some(format!("{exit}: {reason}")),
            (exit, reason) => exit.or(reason.map(str::to_owned)),
        };
        let next = system_time(&s["next_restart_at"]).map(|t| {
            t.duration_since(now)
                .map(short)
                .unwrap_or_else(|_| "now".into())
        });
        let mut state = s["state"].as_str().unwrap_or("?").to_owned();
        if let Some(reason) = s["reason"].as_str() {
            state = format!("{state}: {reason}");
        }
        let tools = s["handshake"]["tools"]
            .as_array()
            .map(|t| t.len().to_string());
        let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        rows.push([
            name.to_owned(),
            state,
            dash(pid),
            dash(uptime),
            s["restarts"].as_u64().unwrap_or(0).to_string(),
            dash(last_exit),
            dash(next),
            probe,
            dash(tools),
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_server_name_is_one_path_segment_whatever_it_holds() {
        assert_eq!(super::server_path("a", &[]), "/api/servers/a");
        assert_eq!(
            super::server_path("prod#canary", &[]),
            "/api/servers/prod%23canary"
        );
        assert_eq!(
            super::server_path("a/b?c d", &["logs"]),
            "/api/servers/a%2Fb%3Fc%20d/logs"
        );
    }

    #[test]
    fn the_fleet_url_must_be_http() {
        assert!(super::parse_fleet_url("http://127.0.0.1:7700").is_ok());
        assert!(super::parse_fleet_url("https://fleet.example").is_ok());
        assert!(super::parse_fleet_url("127.0.0.1:7700").is_err());
        assert!(super::parse_fleet_url("ftp://x").is_err());
    }

    use super::*;

    #[test]
    fn the_status_table_reads_the_api_as_it_is() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let servers = json!([
            {"name": "a", "state": "ready", "pid": 42, "restarts": 1,
             "started_at": {"secs_since_epoch": 9_000, "nanos_since_epoch": 0},
             "last_exit": {"code": null, "signal": 9, "at": {"secs_since_epoch": 8_999, "nanos_since_epoch": 0}},
             "handshake": {"tools": [{}, {}, {}]}},
            {"name": "broken", "state": "failed", "reason": "could not run `x`", "pid": null, "restarts": 0,
             "next_restart_at": null},
            {"name": "far", "state": "restarting", "pid": null, "restarts": 2,
             "last_exit": {"code": 1, "signal": null, "at": {"secs_since_epoch": 8_999, "nanos_since_epoch": 0},
                           "reason": "link lost: cannot reach http://127.0.0.1:9/mcp"}}
        ]);
        let health = json!([{"server": "a", "last_latency": {"secs": 0, "nanos": 1_500_000}}]);
        let table = status_table(&servers, &health, now);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{table}");
        assert!(
            lines[1].contains("ready") && lines[1].contains("42"),
            "{table}"
        );
        assert!(lines[1].contains("16m40s"), "{table}");
        assert!(
            lines[1].contains("signal 9") && lines[1].contains("1.5ms"),
            "{table}"
        );
        assert!(lines[2].contains("failed: could not run `x`"), "{table}");
        assert!(
            lines[3].contains("code 1: link lost: cannot reach http://127.0.0.1:9/mcp"),
            "{table}"
        );
        assert_eq!(lines.len(), 4);
    }
}
