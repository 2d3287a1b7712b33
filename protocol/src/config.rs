//! Server specifications, and the JSON configs users already have: `mcpServers` as Claude
//! Desktop and Cursor write it, and `servers` as VS Code writes it (`.vscode/mcp.json`).
//!
//! Parsing works on text so that only runtime touches files and the environment: `${env:NAME}`
//! in a `command`, an argument, an `env` value, a `cwd` or a `url` is replaced through a lookup
//! the caller passes. Every error names the source (a file path), the line and column, and the
//! key (`mcpServers.docker.args`).

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

/// What a reload must do to go from one config to the next. Servers are matched by name; a
/// server whose spec changed in any way (command, arguments, environment, restart policy) is
/// `changed`, and is the only kind that is restarted. A server that became disabled is
/// `removed`; one that became enabled is `added`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigDiff {
    pub added: Vec<ServerSpec>,
    pub removed: Vec<String>,
    pub changed: Vec<ServerSpec>,
    pub unchanged: Vec<String>,
}

impl ConfigDiff {
    /// Compares the running servers with the new config's, in the new config's order (removed
    /// ones in the old order).
    pub fn between(old: &[ServerSpec], new: &[ServerSpec]) -> ConfigDiff {
        let mut diff = ConfigDiff::default();
        for spec in new {
            match old.iter().find(|o| o.name == spec.name) {
                None => diff.added.push(spec.clone()),
                Some(o) if o != spec => diff.changed.push(spec.clone()),
                Some(_) => diff.unchanged.push(spec.name.clone()),
            }
        }
        for o in old {
            if !new.iter().any(|n| n.name == o.name) {
                diff.removed.push(o.name.clone());
            }
        }
        diff
    }

    /// Whether the reload has nothing to do.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
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

/// The file as Claude Desktop and Cursor write it, `{"mcpServers": {"name": {...}}}`, or as
/// VS Code does, `{"servers": {...}, "inputs": [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct McpServersFile {
    mcp_servers: Option<serde_json::Map<String, serde_json::Value>>,
    servers: Option<serde_json::Map<String, serde_json::Value>>,
    /// VS Code's prompted inputs; accepted so the file loads, but `${input:..}` is refused.
    #[serde(default)]
    #[allow(dead_code)]
    inputs: serde_json::Value,
}

/// Replaces every `${env:NAME}` in `value` with `lookup(NAME)`. A name `lookup` does not know,
/// a `${input:..}` (VS Code's prompted inputs, which need a person) and an unclosed `${env:` are
/// errors; any other `${..}` is left as it is.
pub fn substitute_env(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(name_and_more) = tail.strip_prefix("${env:") {
            let Some(end) = name_and_more.find('}') else {
                return Err(format!("unclosed `${{env:` in \"{value}\""));
            };
            let name = &name_and_more[..end];
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("environment variable `{name}` is not set")),
            }
            rest = &name_and_more[end + 1..];
        } else if tail.starts_with("${input:") {
            return Err(
                "`${input:..}` needs VS Code to prompt for it; use `${env:NAME}` instead".into(),
            );
        } else {
            out.push_str("${");
            rest = &tail[2..];
        }
    }
    out.push_str(rest);
    Ok(out)
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

/// Parses an `mcpServers` (or VS Code `servers`) JSON document, with no `${env:..}` lookup:
/// every `${env:NAME}` is an error. `source` names the document in errors (usually its path).
pub fn parse_mcp_servers_json(source: &str, text: &str) -> Result<FleetConfig, ConfigErrors> {
    parse_mcp_servers_json_with_env(source, text, &|_| None)
}

/// Parses an `mcpServers` (or VS Code `servers`) JSON document, replacing `${env:NAME}` through
/// `lookup`.
pub fn parse_mcp_servers_json_with_env(
    source: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<FleetConfig, ConfigErrors> {
    let file: McpServersFile = deserialize_at(source, text, "")?;
    let (top, entries) = match (file.mcp_servers, file.servers) {
        (Some(m), None) => ("mcpServers", m),
        (None, Some(s)) => ("servers", s),
        (Some(_), Some(_)) => {
            return Err(ConfigErrors(vec![ConfigError {
                source: source.to_string(),
                line: 1,
                column: 1,
                key: String::new(),
                message: "give either `mcpServers` (Claude Desktop, Cursor) or `servers` \
                          (VS Code), not both"
                    .into(),
            }]));
        }
        (None, None) => {
            return Err(ConfigErrors(vec![ConfigError {
                source: source.to_string(),
                line: 1,
                column: 1,
                key: String::new(),
                message: "missing `mcpServers` (Claude Desktop, Cursor) or `servers` (VS Code)"
                    .into(),
            }]));
        }
    };
    let mut config = FleetConfig::default();
    let mut errors = Vec::new();
    for (name, value) in entries {
        let key = format!("{top}.{name}");
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
        let mut entry = entry;
        if let Err((field, message)) = substitute_entry(&mut entry, lookup) {
            problem(message, &field);
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

/// Applies `${env:NAME}` to every string of an entry that names something to run or reach;
/// an error says which field (`.args[2]`, `.env.TOKEN`).
fn substitute_entry(
    entry: &mut McpServerEntry,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    let apply = |field: String, value: &mut String| -> Result<(), (String, String)> {
        *value = substitute_env(value, lookup).map_err(|m| (field, m))?;
        Ok(())
    };
    if let Some(c) = &mut entry.command {
        apply(".command".into(), c)?;
    }
    for (i, a) in entry.args.iter_mut().enumerate() {
        apply(format!(".args[{i}]"), a)?;
    }
    for (k, v) in entry.env.iter_mut() {
        apply(format!(".env.{k}"), v)?;
    }
    if let Some(u) = &mut entry.url {
        apply(".url".into(), u)?;
    }
    if let Some(cwd) = &mut entry.cwd {
        let mut text = cwd.to_string_lossy().into_owned();
        apply(".cwd".into(), &mut text)?;
        *cwd = PathBuf::from(text);
    }
    Ok(())
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
    fn vs_code_servers_and_env_substitution() {
        let text = r#"{
  "inputs": [],
  "servers": {
    "gh": { "type": "stdio", "command": "${env:BIN}/server", "args": ["--token", "${env:TOKEN}", "${other}"], "env": {"HOME_DIR": "${env:BIN}"} },
    "web": { "type": "http", "url": "http://${env:HOST}/mcp" }
  }
}"#;
        let lookup = |name: &str| match name {
            "BIN" => Some("/opt".to_string()),
            "TOKEN" => Some("t0k".to_string()),
            "HOST" => Some("127.0.0.1:9".to_string()),
            _ => None,
        };
        let c = parse_mcp_servers_json_with_env("mcp.json", text, &lookup).unwrap();
        assert_eq!(
            c.servers[0].command_line(),
            "/opt/server --token t0k ${other}"
        );
        let Transport::Stdio { env, .. } = &c.servers[0].transport else {
            panic!()
        };
        assert_eq!(env["HOME_DIR"], "/opt");
        assert_eq!(c.servers[1].command_line(), "http://127.0.0.1:9/mcp");

        // A variable that is not set names the server, the field and the variable.
        let errs = parse_mcp_servers_json_with_env("mcp.json", text, &|_| None).unwrap_err();
        assert_eq!(errs.0.len(), 2, "{errs}");
        assert_eq!(errs.0[0].key, "servers.gh.command");
        assert_eq!(errs.0[0].line, 4);
        assert!(errs.0[0].message.contains("`BIN` is not set"), "{errs}");
        assert_eq!(errs.0[1].key, "servers.web.url");

        let both = r#"{"mcpServers": {}, "servers": {}}"#;
        assert!(parse_mcp_servers_json("x", both).is_err());
        let neither = r#"{"inputs": []}"#;
        assert!(
            parse_mcp_servers_json("x", neither)
                .unwrap_err()
                .to_string()
                .contains("missing `mcpServers`")
        );
        let input = r#"{"servers": {"a": {"command": "x", "args": ["${input:key}"]}}}"#;
        let errs = parse_mcp_servers_json("x", input).unwrap_err();
        assert_eq!(errs.0[0].key, "servers.a.args[0]");
    }

    #[test]
    fn a_diff_restarts_only_what_changed() {
        let a = ServerSpec::stdio("a", "x", ["1"]);
        let b = ServerSpec::stdio("b", "x", ["1"]);
        let c = ServerSpec::stdio("c", "x", ["1"]);
        let b2 = ServerSpec::stdio("b", "x", ["2"]);
        let d = ServerSpec::stdio("d", "x", [] as [&str; 0]);
        let diff = ConfigDiff::between(&[a.clone(), b, c], &[a, b2.clone(), d.clone()]);
        assert_eq!(diff.unchanged, ["a"]);
        assert_eq!(diff.changed, [b2]);
        assert_eq!(diff.added, [d]);
        assert_eq!(diff.removed, ["c"]);
        assert!(ConfigDiff::between(&diff.changed, &diff.changed).is_empty());
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
