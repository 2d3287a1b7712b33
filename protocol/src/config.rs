//! Server specifications, and the `mcpServers` JSON that Claude Desktop and Cursor write.
//!
//! Parsing works on text so that only runtime touches files; every error names the source
//! (a file path), the line and column, and the key (`mcpServers.docker.args`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the fleet talks to a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Transport {
    /// A child process speaking newline-delimited JSON-RPC on stdin/stdout.
    Stdio {
        command: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        #[serde(default)]
        cwd: Option<PathBuf>,
    },
    /// A remote server over Streamable HTTP (proxied in a later version; refused at launch now).
    Http { url: String },
}

/// One MCP server the fleet runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSpec {
    pub name: String,
    pub transport: Transport,
    /// What happens when it exits on its own.
    #[serde(default)]
    pub restart: RestartPolicy,
}

/// When an exit that nobody asked for leads to a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartMode {
    /// After any exit nobody asked for (an MCP server that exits on its own, even with 0, is gone).
    Always,
    /// Only after a failure: a non-zero exit code, a signal, or a kill for being unhealthy.
    OnFailure,
    /// Never.
    Never,
}

/// Restart policy of one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestartPolicy {
    pub mode: RestartMode,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// The largest share of a delay that jitter may add or remove, in `[0, 1]`.
    pub jitter: f64,
    /// Restarts allowed within `window` before the server enters a crash loop.
    pub budget: u32,
    pub window: Duration,
    /// A process that ran this long before exiting resets backoff and budget.
    pub stable_after: Duration,
}

impl Default for RestartPolicy {
    /// In line with the field: ToolHive backs off from seconds to a minute and resets after 30 s
    /// of stable running; systemd allows 5 starts in 10 s; 1MCP gives up after 5 attempts.
    fn default() -> Self {
        RestartPolicy {
            mode: RestartMode::Always,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            jitter: 0.2,
            budget: 5,
            window: Duration::from_secs(300),
            stable_after: Duration::from_secs(30),
        }
    }
}

impl ServerSpec {
    /// A stdio server with no environment or working directory of its own.
    pub fn stdio(
        name: impl Into<String>,
        command: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        ServerSpec {
            name: name.into(),
            transport: Transport::Stdio {
                command: command.into(),
                args: args.into_iter().map(Into::into).collect(),
                env: BTreeMap::new(),
                cwd: None,
            },
            restart: RestartPolicy::default(),
        }
    }

    /// Replaces the restart policy.
    pub fn with_restart(mut self, restart: RestartPolicy) -> Self {
        self.restart = restart;
        self
    }

    /// Adds an environment variable (stdio servers only).
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        if let Transport::Stdio { env, .. } = &mut self.transport {
            env.insert(key.into(), value.into());
        }
        self
    }

    /// The command line, for logs and status.
    pub fn command_line(&self) -> String {
        match &self.transport {
            Transport::Stdio { command, args, .. } => std::iter::once(command.as_str())
                .chain(args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
            Transport::Http { url } => url.clone(),
        }
    }
}

/// The servers of a configuration file, in file order. Disabled entries are listed apart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetConfig {
    pub servers: Vec<ServerSpec>,
    pub disabled: Vec<String>,
}

/// One problem in a configuration source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or other source) the text came from.
    pub source: String,
    pub line: usize,
    pub column: usize,
    /// The dotted path of the offending key, e.g. `mcpServers.docker.args`; empty at the top.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.source, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The file as Claude Desktop and Cursor write it: `{"mcpServers": {"name": {...}}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct McpServersFile {
    mcp_servers: serde_json::Map<String, serde_json::Value>,
}

/// One entry of `mcpServers`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct McpServerEntry {
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    url: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    disabled: bool,
}

/// Parses an `mcpServers` JSON document. `source` names it in errors (usually the file path).
pub fn parse_mcp_servers_json(source: &str, text: &str) -> Result<FleetConfig, ConfigErrors> {
    let file: McpServersFile = deserialize_at(source, text, "")?;
    let mut config = FleetConfig::default();
    let mut errors = Vec::new();
    for (name, value) in file.mcp_servers {
        let key = format!("mcpServers.{name}");
        // The entry's own position: find its key in the text for a useful line number.
        let (line, column) = locate_key(text, &name);
        let entry_text = value.to_string();
        let entry: McpServerEntry = match deserialize_at(source, &entry_text, &key) {
            Ok(e) => e,
            Err(ConfigErrors(errs)) => {
                errors.extend(errs.into_iter().map(|e| ConfigError { line, column, ..e }));
                continue;
            }
        };
        let mut problem = |message: String, field: &str| {
            errors.push(ConfigError {
                source: source.to_string(),
                line,
                column,
                key: format!("{key}{field}"),
                message,
            })
        };
        if name.trim().is_empty() {
            problem("a server name must not be empty".into(), "");
            continue;
        }
        if entry.disabled {
            config.disabled.push(name);
            continue;
        }
        let transport = match (entry.command, entry.url, entry.kind.as_deref()) {
            (Some(command), None, None | Some("stdio")) => {
                if command.trim().is_empty() {
                    problem("`command` must not be empty".into(), ".command");
                    continue;
                }
                Transport::Stdio {
                    command,
                    args: entry.args,
                    env: entry.env,
                    cwd: entry.cwd,
                }
            }
            (None, Some(url), None | Some("http" | "streamable-http" | "streamableHttp")) => {
                Transport::Http { url }
            }
            (None, Some(_), Some(other)) => {
                problem(
                    format!("unsupported `type` \"{other}\" (expected \"http\" or \"stdio\")"),
                    ".type",
                );
                continue;
            }
            (Some(_), Some(_), _) => {
                problem("give either `command` or `url`, not both".into(), "");
                continue;
            }
            (Some(_), None, Some(other)) => {
                problem(
                    format!("`type` \"{other}\" does not fit an entry with `command`"),
                    ".type",
                );
                continue;
            }
            (None, None, _) => {
                problem(
                    "missing `command` (or `url` for a remote server)".into(),
                    "",
                );
                continue;
            }
        };
        config.servers.push(ServerSpec {
            name,
            transport,
            restart: RestartPolicy::default(),
        });
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn deserialize_at<T: serde::de::DeserializeOwned>(
    source: &str,
    text: &str,
    prefix: &str,
) -> Result<T, ConfigErrors> {
    let mut de = serde_json::Deserializer::from_str(text);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = result.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let key = match (prefix.is_empty(), path.as_str()) {
            (_, ".") => prefix.to_string(),
            (true, p) => p.to_string(),
            (false, p) => format!("{prefix}.{p}"),
        };
        ConfigErrors(vec![ConfigError {
            source: source.to_string(),
            line: inner.line(),
            column: inner.column(),
            key,
            message: strip_position(&inner.to_string()),
        }])
    })?;
    de.end().map_err(|e| {
        ConfigErrors(vec![ConfigError {
            source: source.to_string(),
            line: e.line(),
            column: e.column(),
            key: prefix.to_string(),
            message: strip_position(&e.to_string()),
        }])
    })?;
    Ok(value)
}

/// serde_json appends " at line L column C"; the error carries those apart.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Line and column (1-based) of the first `"key"` followed by a colon, or (1, 1).
fn locate_key(text: &str, key: &str) -> (usize, usize) {
    let needle = format!("\"{key}\"");
    let mut from = 0;
    while let Some(pos) = text[from..].find(&needle) {
        let at = from + pos;
        let after = text[at + needle.len()..].trim_start();
        if after.starts_with(':') {
            let before = &text[..at];
            let line = before.matches('\n').count() + 1;
            let column = at - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            return (line, column);
        }
        from = at + needle.len();
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_claude_desktop_example() {
        let text = r#"{
  "mcpServers": {
    "filesystem": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]
    },
    "memory": { "command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"], "env": {"A": "b"} },
    "off": { "command": "x", "disabled": true },
    "remote": { "type": "http", "url": "http://127.0.0.1:1/mcp" }
  }
}"#;
        let c = parse_mcp_servers_json("c.json", text).unwrap();
        let names: Vec<_> = c.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["filesystem", "memory", "remote"]);
        assert_eq!(c.disabled, ["off"]);
        assert_eq!(
            c.servers[0].command_line(),
            "npx -y @modelcontextprotocol/server-filesystem /tmp"
        );
    }

    #[test]
    fn an_unknown_field_names_file_line_and_key() {
        let text = "{\n  \"mcpServers\": {\n    \"docker\": {\n      \"command\": \"x\",\n      \"argz\": []\n    }\n  }\n}";
        let errs = parse_mcp_servers_json("fleet.json", text).unwrap_err();
        let e = &errs.0[0];
        assert_eq!(e.source, "fleet.json");
        assert_eq!(e.key, "mcpServers.docker.argz");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("unknown field `argz`"), "{}", e.message);
    }

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let text = "{\n  \"mcpServers\": {\n    \"a\": { \"command\": \"x\" },\n  }\n}";
        let errs = parse_mcp_servers_json("bad.json", text).unwrap_err();
        let e = &errs.0[0];
        assert_eq!((e.source.as_str(), e.line), ("bad.json", 4));
        assert!(errs.to_string().starts_with("bad.json:4:"), "{errs}");
    }

    #[test]
    fn every_semantic_error_is_reported() {
        let text = r#"{"mcpServers": {"a": {}, "b": {"command": ""}, "c": {"args": 3}}}"#;
        let errs = parse_mcp_servers_json("x.json", text).unwrap_err();
        assert_eq!(errs.0.len(), 3, "{errs}");
        assert_eq!(errs.0[1].key, "mcpServers.b.command");
        assert_eq!(errs.0[2].key, "mcpServers.c.args");
    }
}
