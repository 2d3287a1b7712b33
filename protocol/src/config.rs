//! Server specifications, and the JSON configs users already have: `mcpServers` as Claude
//! Desktop and Cursor write it, and `servers` as VS Code writes it (`.vscode/mcp.json`).
//!
//! Parsing works on text so that only runtime touches files and the environment: `${env:NAME}`
//! in a `command`, an argument, an `env` value, a `cwd` or a `url` is replaced through a lookup
//! the caller passes. Every error names the source (a file path), the line and column, and the
//! key (`mcpServers.docker.args`).

use std::collections::{BTreeMap, HashMap};
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
    /// A remote server over Streamable HTTP, proxied: every request is POSTed to `url` with
    /// `headers` (for instance `Authorization`) added.
    Http {
        url: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
    },
}

/// One MCP server the fleet runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSpec {
    pub name: String,
    pub transport: Transport,
    /// What happens when it exits on its own.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// How the health monitor probes it, over the fleet's defaults.
    #[serde(default, skip_serializing_if = "ServerHealthPolicy::is_default")]
    pub health: ServerHealthPolicy,
    /// How long a request forwarded to it may take, instead of the fleet's request timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Duration>,
}

/// One server's health probing, over the fleet's `[health]`: `None` takes the fleet's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerHealthPolicy {
    /// Whether the server is probed at all (a server that cannot answer `ping` cheaply).
    pub probe: bool,
    pub timeout: Option<Duration>,
    pub failure_threshold: Option<u32>,
}

impl Default for ServerHealthPolicy {
    fn default() -> Self {
        ServerHealthPolicy {
            probe: true,
            timeout: None,
            failure_threshold: None,
        }
    }
}

impl ServerHealthPolicy {
    pub fn is_default(&self) -> bool {
        *self == ServerHealthPolicy::default()
    }
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
            health: ServerHealthPolicy::default(),
            request_timeout: None,
        }
    }

    /// A remote server over Streamable HTTP, with no headers of its own.
    pub fn http(name: impl Into<String>, url: impl Into<String>) -> Self {
        ServerSpec {
            transport: Transport::Http {
                url: url.into(),
                headers: BTreeMap::new(),
            },
            ..ServerSpec::stdio(name, "", Vec::<String>::new())
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
            Transport::Http { url, .. } => url.clone(),
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
    mcp_servers: Option<Entries>,
    servers: Option<Entries>,
    /// VS Code's prompted inputs; accepted so the file loads, but `${input:..}` is refused.
    #[serde(default)]
    #[allow(dead_code)]
    inputs: serde_json::Value,
}

/// The entries of `mcpServers` (or `servers`) in file order, each as its text (so that a field
/// given twice in an entry is refused when the entry is read). A name given twice is an error:
/// JSON parsers keep the last, which would run one server and silently drop the other.
struct Entries(Vec<(String, Box<serde_json::value::RawValue>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of servers by name")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Entries, A::Error> {
                unique_members(map, |name| {
                    format!("the server name `{name}` is given twice")
                })
                .map(Entries)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// The members of an object in order; a key given twice is an error (`twice` says it), where
/// JSON parsers would keep the last in silence.
fn unique_members<'de, A: serde::de::MapAccess<'de>, V: Deserialize<'de>>(
    mut map: A,
    twice: impl Fn(&str) -> String,
) -> Result<Vec<(String, V)>, A::Error> {
    let mut seen = std::collections::HashSet::new();
    let mut members = Vec::new();
    while let Some(key) = map.next_key::<String>()? {
        let value = map.next_value()?;
        if !seen.insert(key.clone()) {
            return Err(serde::de::Error::custom(twice(&key)));
        }
        members.push((key, value));
    }
    Ok(members)
}

/// A map of strings (`env`, `headers`) with each key once.
fn unique_map<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of strings")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            unique_members(map, |key| format!("`{key}` is given twice"))
                .map(|members| members.into_iter().collect())
        }
    }
    deserializer.deserialize_map(Visitor)
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
    #[serde(default, deserialize_with = "unique_map")]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    url: Option<String>,
    /// HTTP headers sent to a remote (`url`) server, such as `Authorization`.
    #[serde(default, deserialize_with = "unique_map")]
    headers: BTreeMap<String, String>,
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
    if !text.trim_start().starts_with('{') {
        let (line, column) = line_column(text, text.len() - text.trim_start().len());
        return Err(ConfigErrors(vec![ConfigError {
            source: source.to_string(),
            line,
            column,
            key: String::new(),
            message: "the file must be a JSON object: `{\"mcpServers\": {..}}`".into(),
        }]));
    }
    let file: McpServersFile = deserialize_at(source, text, "")?;
    let (top, entries) = match (file.mcp_servers, file.servers) {
        (Some(Entries(m)), None) => ("mcpServers", m),
        (None, Some(Entries(s))) => ("servers", s),
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
    // Each entry's own position, for a useful line number: every key found in one pass.
    let positions = server_key_positions(text);
    for (name, value) in entries {
        let key = format!("{top}.{name}");
        let (line, column) = positions.get(&name).copied().unwrap_or((1, 1));
        let entry: McpServerEntry = match deserialize_at(source, value.get(), &key) {
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
        match entry_transport(&name, entry, lookup) {
            Ok(Some(transport)) => config.servers.push(ServerSpec {
                name,
                transport,
                restart: RestartPolicy::default(),
                health: ServerHealthPolicy::default(),
                request_timeout: None,
            }),
            Ok(None) => config.disabled.push(name),
            Err((field, message)) => problem(message, &field),
        }
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The transport of an entry, checked and with `${env:..}` applied; `None` for a disabled one.
/// An error names the field (`.command`, or empty for the entry) and says what is wrong.
fn entry_transport(
    name: &str,
    mut entry: McpServerEntry,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Transport>, (String, String)> {
    let fail = |field: &str, message: String| Err((field.to_owned(), message));
    if name.trim().is_empty() {
        return fail("", "a server name must not be empty".into());
    }
    // A name is one segment of the admin API's paths, where `.` and `..` mean something else.
    if name == "." || name == ".." {
        return fail("", format!("`{name}` cannot be a server name"));
    }
    // A name is a metric label too, where the exporter reads `\\` and `\"` as escapes (two
    // servers would share one series) and a control character breaks parsers.
    if name.contains(['\\', '"']) || name.chars().any(char::is_control) {
        return fail(
            "",
            format!(
                "a server name must not hold a backslash, a double quote or a control character: {name:?}"
            ),
        );
    }
    if entry.disabled {
        return Ok(None);
    }
    substitute_entry(&mut entry, lookup)?;
    if entry.url.is_some() && entry.command.is_none() {
        // Read but not used, they would be dropped in silence.
        for (field, given) in [
            ("args", !entry.args.is_empty()),
            ("env", !entry.env.is_empty()),
            ("cwd", entry.cwd.is_some()),
        ] {
            if given {
                return fail(
                    &format!(".{field}"),
                    format!("`{field}` is for a local server (`command`), not for `url`"),
                );
            }
        }
    }
    let transport = match (entry.command, entry.url, entry.kind.as_deref()) {
        (Some(_), None, _) if !entry.headers.is_empty() => {
            return fail(
                ".headers",
                "`headers` are for a remote server (`url`), not for `command`".into(),
            );
        }
        (Some(command), None, None | Some("stdio")) => {
            if command.trim().is_empty() {
                return fail(".command", "`command` must not be empty".into());
            }
            if let Some(key) = entry
                .env
                .keys()
                .find(|k| k.is_empty() || k.contains(['=', '\0']))
            {
                return fail(
                    &format!(".env.{key}"),
                    format!(
                        "`{key}` cannot be an environment variable's name: it must not be \
                         empty or hold `=` or a NUL"
                    ),
                );
            }
            Transport::Stdio {
                command,
                args: entry.args,
                env: entry.env,
                cwd: entry.cwd,
            }
        }
        (None, Some(url), None | Some("http" | "streamable-http" | "streamableHttp")) => {
            match url::Url::parse(&url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                Ok(_) => {
                    return fail(
                        ".url",
                        format!("`url` must be an http:// or https:// address, not \"{url}\""),
                    );
                }
                Err(e) => {
                    return fail(
                        ".url",
                        format!("`url` \"{url}\" is not a valid address: {e}"),
                    );
                }
            }
            // Checked as the HTTP client will check them when the server starts.
            for (k, v) in &entry.headers {
                if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                    return fail(
                        &format!(".headers.{k}"),
                        format!("`{k}` is not a valid HTTP header name"),
                    );
                }
                if http::HeaderValue::from_str(v).is_err() {
                    return fail(
                        &format!(".headers.{k}"),
                        "the value is not valid in HTTP: visible ASCII, spaces and tabs only"
                            .into(),
                    );
                }
            }
            Transport::Http {
                url,
                headers: entry.headers,
            }
        }
        (None, Some(_), Some("sse")) => {
            return fail(
                ".type",
                "the HTTP+SSE transport (`type` \"sse\", MCP 2024-11-05) is not supported; \
                 use the server's Streamable HTTP endpoint with `type` \"http\""
                    .into(),
            );
        }
        (None, Some(_), Some("stdio")) => {
            return fail(
                ".type",
                "`type` \"stdio\" does not fit an entry with `url` (use \"http\", or `command`)"
                    .into(),
            );
        }
        (None, Some(_), Some(other)) => {
            return fail(
                ".type",
                format!("unsupported `type` \"{other}\" (expected \"http\" or \"stdio\")"),
            );
        }
        (Some(_), Some(_), _) => {
            return fail("", "give either `command` or `url`, not both".into());
        }
        (Some(_), None, Some(other)) => {
            return fail(
                ".type",
                format!("`type` \"{other}\" does not fit an entry with `command`"),
            );
        }
        (None, None, _) => {
            return fail(
                "",
                "missing `command` (or `url` for a remote server)".into(),
            );
        }
    };
    Ok(Some(transport))
}

/// Applies `${env:NAME}` to every string of an entry that names something to run or reach;
/// an error says which field (`.args[2]`, `.env.TOKEN`).
fn substitute_entry(
    entry: &mut McpServerEntry,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    let apply = |field: String, value: &mut String| -> Result<(), (String, String)> {
        *value = substitute_env(value, lookup).map_err(|m| (field.clone(), m))?;
        // No program can be given one (the spawn would fail), nor can a URL or header hold it.
        if value.contains('\0') {
            return Err((field, "must not hold a NUL character".into()));
        }
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
    for (k, v) in entry.headers.iter_mut() {
        apply(format!(".headers.{k}"), v)?;
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

/// Line and column (1-based) of each key two objects deep (a server's name in `mcpServers` or
/// `servers`), decoded, the first of a name kept: one pass over the text, however many servers.
fn server_key_positions(text: &str) -> HashMap<String, (usize, usize)> {
    let mut positions = HashMap::new();
    let (mut line, mut line_start, mut scanned) = (1, 0, 0);
    for k in crate::json_keys::keys(text.as_bytes()).filter(|k| k.depth == 2) {
        let Ok(name) = serde_json::from_str::<String>(&text[k.start..k.end]) else {
            continue;
        };
        for (i, b) in text.as_bytes()[scanned..k.start].iter().enumerate() {
            if *b == b'\n' {
                line += 1;
                line_start = scanned + i + 1;
            }
        }
        scanned = k.start;
        positions
            .entry(name)
            .or_insert((line, k.start - line_start + 1));
    }
    positions
}

/// Line and column (1-based) of the server `name` as a key of `mcpServers` (or `servers`),
/// that is a key two objects deep, or (1, 1). Keys are compared decoded, so an escaped name is
/// found too, and a field of another entry that happens to share the name is not.
pub fn locate_key(text: &str, name: &str) -> (usize, usize) {
    crate::json_keys::keys(text.as_bytes())
        .find(|k| {
            k.depth == 2
                && serde_json::from_str::<String>(&text[k.start..k.end]).is_ok_and(|k| k == name)
        })
        .map_or((1, 1), |k| line_column(text, k.start))
}

/// The fleet options of `mcp-fleet.toml`, beside its servers. Every field is optional: the
/// command line and the actors' defaults fill in the rest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetFile {
    /// Where to serve HTTP (`listen = "127.0.0.1:7700"`).
    pub listen: Option<std::net::SocketAddr>,
    /// The bearer token clients and the CLI must send (`token = "${env:MCP_FLEET_TOKEN}"`).
    pub token: Option<String>,
    /// How long a stopping server gets after stdin is closed, and again after SIGTERM.
    pub stop_grace: Option<Duration>,
    /// An `mcpServers` (or VS Code) JSON file whose servers join the TOML's, relative to the
    /// TOML file's directory (`servers_file = "claude_desktop_config.json"`).
    pub servers_file: Option<PathBuf>,
    /// The state file of servers added or removed at runtime.
    pub state: Option<PathBuf>,
    pub session_ttl: Option<Duration>,
    /// How long a forwarded request may take.
    pub request_timeout: Option<Duration>,
    /// `[health]`: probe interval, timeout, failures in a row before a server is unhealthy.
    pub health_interval: Option<Duration>,
    pub health_timeout: Option<Duration>,
    pub health_failure_threshold: Option<u32>,
    /// `[restart]` over `RestartPolicy::default()`: the policy of every server without its own.
    pub restart: RestartPolicy,
    /// `[servers.NAME]`, each with `[restart]` and then its own `restart` applied.
    pub servers: FleetConfig,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FleetToml {
    listen: Option<String>,
    token: Option<String>,
    stop_grace_secs: Option<u64>,
    servers_file: Option<PathBuf>,
    state: Option<PathBuf>,
    session_ttl_secs: Option<u64>,
    request_timeout_secs: Option<u64>,
    #[serde(default)]
    health: HealthToml,
    #[serde(default)]
    restart: RestartToml,
    #[serde(default)]
    servers: BTreeMap<String, toml::Value>,
}

/// `[servers.NAME.health]`: over the fleet's `[health]`, except the interval (fleet-wide).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServerHealthToml {
    probe: Option<bool>,
    timeout_secs: Option<u64>,
    failure_threshold: Option<u32>,
}

impl ServerHealthToml {
    fn policy(&self) -> ServerHealthPolicy {
        ServerHealthPolicy {
            probe: self.probe.unwrap_or(true),
            timeout: self.timeout_secs.map(Duration::from_secs),
            failure_threshold: self.failure_threshold,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HealthToml {
    interval_secs: Option<u64>,
    timeout_secs: Option<u64>,
    failure_threshold: Option<u32>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RestartToml {
    mode: Option<RestartMode>,
    backoff_base_ms: Option<u64>,
    backoff_cap_ms: Option<u64>,
    jitter: Option<f64>,
    budget: Option<u32>,
    window_secs: Option<u64>,
    stable_after_secs: Option<u64>,
}

impl RestartToml {
    fn over(&self, base: &RestartPolicy) -> Result<RestartPolicy, (String, String)> {
        let mut p = base.clone();
        if let Some(m) = self.mode {
            p.mode = m;
        }
        if let Some(ms) = self.backoff_base_ms {
            p.backoff_base = Duration::from_millis(ms);
        }
        if let Some(ms) = self.backoff_cap_ms {
            p.backoff_cap = Duration::from_millis(ms);
        }
        if let Some(j) = self.jitter {
            if !(0.0..=1.0).contains(&j) {
                return Err((
                    ".jitter".into(),
                    format!("`jitter` must be within 0 and 1, not {j}"),
                ));
            }
            p.jitter = j;
        }
        if let Some(b) = self.budget {
            p.budget = b;
        }
        if let Some(s) = self.window_secs {
            p.window = Duration::from_secs(s);
        }
        if let Some(s) = self.stable_after_secs {
            p.stable_after = Duration::from_secs(s);
        }
        for (field, ms) in [
            (".backoff_base_ms", self.backoff_base_ms),
            (".backoff_cap_ms", self.backoff_cap_ms),
        ] {
            if ms.is_some_and(|ms| ms / 1000 > MAX_SECS) {
                return Err((field.into(), too_long(&field[1..])));
            }
        }
        for (field, secs) in [
            (".window_secs", self.window_secs),
            (".stable_after_secs", self.stable_after_secs),
        ] {
            if secs.is_some_and(|s| s > MAX_SECS) {
                return Err((field.into(), too_long(&field[1..])));
            }
        }
        if p.backoff_cap < p.backoff_base {
            return Err((
                ".backoff_cap_ms".into(),
                "`backoff_cap_ms` must not be below `backoff_base_ms`".into(),
            ));
        }
        Ok(p)
    }
}

/// The longest time a setting may give, a year: longer means "never" in practice, and the
/// actors add these times to clocks, where a far larger one would overflow.
pub const MAX_SECS: u64 = 365 * 24 * 60 * 60;

fn too_long(name: &str) -> String {
    format!("`{name}` must be at most {MAX_SECS} seconds (a year)")
}

/// Line and column (1-based) of byte `at` in `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = at - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

/// Line and column of a top-level `KEY =` line, else (1, 1).
fn locate_toml_key(text: &str, key: &str) -> (usize, usize) {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return line_column(text, at + (line.len() - trimmed.len()));
        }
        at += line.len();
    }
    (1, 1)
}

/// Line and column of the `[servers.NAME]` header (or of `NAME` within `[servers]`), else (1, 1).
fn locate_toml_server(text: &str, name: &str) -> (usize, usize) {
    for needle in [
        format!("[servers.{name}]"),
        format!("[servers.\"{name}\"]"),
        format!("\n{name} ="),
        format!("\n{name}="),
    ] {
        if let Some(at) = text.find(&needle) {
            let at = if needle.starts_with('\n') { at + 1 } else { at };
            return line_column(text, at);
        }
    }
    (1, 1)
}

/// Parses `mcp-fleet.toml`: fleet options, a `[restart]` policy for every server, and servers
/// under `[servers.NAME]` with the fields of an `mcpServers` entry plus an optional `restart`
/// table of their own. Every problem is reported with line, column and key.
pub fn parse_fleet_toml(
    source: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<FleetFile, ConfigErrors> {
    let error = |line: usize, column: usize, key: String, message: String| ConfigError {
        source: source.to_string(),
        line,
        column,
        key,
        message,
    };
    let de = toml::de::Deserializer::parse(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_column(text, s.start));
        ConfigErrors(vec![error(
            line,
            column,
            String::new(),
            e.message().to_owned(),
        )])
    })?;
    let file: FleetToml = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = inner.span().map_or((1, 1), |s| line_column(text, s.start));
        let key = if key == "." { String::new() } else { key };
        ConfigErrors(vec![error(line, column, key, inner.message().to_owned())])
    })?;
    let mut errors = Vec::new();
    // A zero here would fail every probe or call at once, or end every session at once.
    for (key, value, zero_allowed) in [
        ("stop_grace_secs", file.stop_grace_secs, true),
        ("session_ttl_secs", file.session_ttl_secs, false),
        ("request_timeout_secs", file.request_timeout_secs, false),
        ("health.interval_secs", file.health.interval_secs, false),
        ("health.timeout_secs", file.health.timeout_secs, false),
        (
            "health.failure_threshold",
            file.health.failure_threshold.map(u64::from),
            false,
        ),
    ] {
        let name = key.rsplit('.').next().unwrap_or(key);
        let message = match value {
            Some(0) if !zero_allowed => format!("`{name}` must be at least 1"),
            Some(secs) if name.ends_with("_secs") && secs > MAX_SECS => too_long(name),
            _ => continue,
        };
        let (line, column) = locate_toml_key(text, name);
        errors.push(error(line, column, key.into(), message));
    }
    let restart = match file.restart.over(&RestartPolicy::default()) {
        Ok(p) => p,
        Err((field, message)) => {
            // The field's own line within `[restart]`, else the table's header.
            let after = text.find("[restart]").unwrap_or(0);
            let (line, column) = match locate_toml_key(&text[after..], &field[1..]) {
                (1, 1) => line_column(text, after),
                (l, c) => (line_column(text, after).0 + l - 1, c),
            };
            errors.push(error(line, column, format!("restart{field}"), message));
            RestartPolicy::default()
        }
    };
    let listen = match file
        .listen
        .as_deref()
        .map(str::parse::<std::net::SocketAddr>)
    {
        None => None,
        Some(Ok(addr)) => Some(addr),
        Some(Err(e)) => {
            let (line, column) = locate_toml_key(text, "listen");
            errors.push(error(
                line,
                column,
                "listen".into(),
                format!(
                    "\"{}\" is not an address like 127.0.0.1:7700: {e}",
                    file.listen.as_deref().unwrap_or_default()
                ),
            ));
            None
        }
    };
    let token = match file.token.as_deref().map(|t| substitute_env(t, lookup)) {
        None => None,
        Some(Ok(t)) if t.trim().is_empty() => {
            errors.push(error(
                locate_toml_key(text, "token").0,
                locate_toml_key(text, "token").1,
                "token".into(),
                "`token` must not be empty".into(),
            ));
            None
        }
        Some(Ok(t)) => Some(t),
        Some(Err(message)) => {
            let (line, column) = locate_toml_key(text, "token");
            errors.push(error(line, column, "token".into(), message));
            None
        }
    };
    let mut servers = FleetConfig::default();
    for (name, value) in file.servers {
        let key = format!("servers.{name}");
        let (line, column) = locate_toml_server(text, &name);
        let mut problem = |field: &str, message: String| {
            errors.push(error(line, column, format!("{key}{field}"), message))
        };
        let toml::Value::Table(mut table) = value else {
            problem("", "a server is a table: `[servers.NAME]`".into());
            continue;
        };
        let own_restart = match table.remove("restart") {
            None => Ok(RestartToml::default()),
            Some(v) => RestartToml::deserialize(v).map_err(|e| e.message().to_owned()),
        };
        let own_restart = match own_restart {
            Ok(r) => r,
            Err(message) => {
                problem(".restart", message);
                continue;
            }
        };
        let own_health = match table.remove("health") {
            None => ServerHealthToml::default(),
            Some(v) => match ServerHealthToml::deserialize(v) {
                Ok(h) if h.timeout_secs == Some(0) => {
                    problem(
                        ".health.timeout_secs",
                        "`timeout_secs` must be at least 1".into(),
                    );
                    continue;
                }
                Ok(h) if h.timeout_secs.is_some_and(|s| s > MAX_SECS) => {
                    problem(".health.timeout_secs", too_long("timeout_secs"));
                    continue;
                }
                Ok(h) if h.failure_threshold == Some(0) => {
                    problem(
                        ".health.failure_threshold",
                        "`failure_threshold` must be at least 1".into(),
                    );
                    continue;
                }
                Ok(h) => h,
                Err(e) => {
                    problem(".health", e.message().to_owned());
                    continue;
                }
            },
        };
        let own_timeout = match table.remove("request_timeout_secs") {
            None => None,
            Some(v) => match u64::deserialize(v) {
                Ok(0) => {
                    problem(
                        ".request_timeout_secs",
                        "`request_timeout_secs` must be at least 1".into(),
                    );
                    continue;
                }
                Ok(t) if t > MAX_SECS => {
                    problem(".request_timeout_secs", too_long("request_timeout_secs"));
                    continue;
                }
                Ok(t) => Some(t),
                Err(e) => {
                    problem(".request_timeout_secs", e.message().to_owned());
                    continue;
                }
            },
        };
        let json = match serde_json::to_value(&table) {
            Ok(v) => v,
            Err(e) => {
                problem("", e.to_string());
                continue;
            }
        };
        let entry: McpServerEntry = match serde_path_to_error::deserialize(json) {
            Ok(e) => e,
            Err(e) => {
                let field = e.path().to_string();
                let field = if field == "." {
                    String::new()
                } else {
                    format!(".{field}")
                };
                problem(&field, e.into_inner().to_string());
                continue;
            }
        };
        let policy = match own_restart.over(&restart) {
            Ok(p) => p,
            Err((field, message)) => {
                problem(&format!(".restart{field}"), message);
                continue;
            }
        };
        match entry_transport(&name, entry, lookup) {
            Ok(Some(transport)) => servers.servers.push(ServerSpec {
                name,
                transport,
                restart: policy,
                health: own_health.policy(),
                request_timeout: own_timeout.map(Duration::from_secs),
            }),
            Ok(None) => servers.disabled.push(name),
            Err((field, message)) => problem(&field, message),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(FleetFile {
        listen,
        token,
        stop_grace: file.stop_grace_secs.map(Duration::from_secs),
        servers_file: file.servers_file,
        state: file.state,
        session_ttl: file.session_ttl_secs.map(Duration::from_secs),
        request_timeout: file.request_timeout_secs.map(Duration::from_secs),
        health_interval: file.health.interval_secs.map(Duration::from_secs),
        health_timeout: file.health.timeout_secs.map(Duration::from_secs),
        health_failure_threshold: file.health.failure_threshold,
        restart,
        servers,
    })
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
    fn a_fleet_toml_gives_options_policies_and_servers() {
        let text = r#"
listen = "127.0.0.1:7800"
servers_file = "claude.json"
session_ttl_secs = 600
request_timeout_secs = 30

[health]
interval_secs = 5
failure_threshold = 2

[restart]
mode = "on-failure"
budget = 3

[servers.github]
command = "npx"
args = ["-y", "@modelcontextprotocol/server-github"]
env = { GITHUB_TOKEN = "${env:GH}" }
restart = { mode = "never" }

[servers.memory]
command = "npx"
args = ["-y", "@modelcontextprotocol/server-memory"]

[servers.off]
command = "x"
disabled = true
"#;
        let f = parse_fleet_toml("fleet.toml", text, &|n| (n == "GH").then(|| "t".into())).unwrap();
        assert_eq!(f.listen, Some(([127, 0, 0, 1], 7800).into()));
        assert_eq!(f.servers_file, Some(PathBuf::from("claude.json")));
        assert_eq!(f.session_ttl, Some(Duration::from_secs(600)));
        assert_eq!(f.health_interval, Some(Duration::from_secs(5)));
        assert_eq!(f.health_failure_threshold, Some(2));
        assert_eq!(
            (f.restart.mode, f.restart.budget),
            (RestartMode::OnFailure, 3)
        );
        let names: Vec<_> = f.servers.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["github", "memory"]);
        assert_eq!(f.servers.disabled, ["off"]);
        // Its own `restart` over the fleet's: mode never, budget 3.
        assert_eq!(f.servers.servers[0].restart.mode, RestartMode::Never);
        assert_eq!(f.servers.servers[0].restart.budget, 3);
        assert_eq!(f.servers.servers[1].restart.mode, RestartMode::OnFailure);
        let Transport::Stdio { env, .. } = &f.servers.servers[0].transport else {
            panic!()
        };
        assert_eq!(env["GITHUB_TOKEN"], "t");
    }

    #[test]
    fn per_server_health_timeout_token_and_remote_headers() {
        let text = r#"
token = "${env:TOK}"
stop_grace_secs = 7

[servers.slow]
command = "slow-server"
request_timeout_secs = 300
health = { timeout_secs = 20, failure_threshold = 5 }

[servers.quiet]
command = "quiet-server"
health = { probe = false }

[servers.remote]
url = "https://mcp.example.com/mcp"
headers = { Authorization = "Bearer ${env:TOK}" }
"#;
        let lookup = |n: &str| (n == "TOK").then(|| "s3cret".to_string());
        let f = parse_fleet_toml("fleet.toml", text, &lookup).unwrap();
        assert_eq!(f.token.as_deref(), Some("s3cret"));
        assert_eq!(f.stop_grace, Some(Duration::from_secs(7)));
        let by_name = |n: &str| f.servers.servers.iter().find(|s| s.name == n).unwrap();
        let slow = by_name("slow");
        assert_eq!(slow.request_timeout, Some(Duration::from_secs(300)));
        assert_eq!(
            slow.health,
            ServerHealthPolicy {
                probe: true,
                timeout: Some(Duration::from_secs(20)),
                failure_threshold: Some(5),
            }
        );
        assert!(!by_name("quiet").health.probe);
        assert_eq!(by_name("quiet").request_timeout, None);
        let Transport::Http { url, headers } = &by_name("remote").transport else {
            panic!("remote is an HTTP server")
        };
        assert_eq!(url, "https://mcp.example.com/mcp");
        assert_eq!(headers["Authorization"], "Bearer s3cret");

        // Each mistake names its key.
        let bad = "token = \"${env:NOPE}\"\n[servers.a]\ncommand = \"x\"\nhealth = { every = 3 }\n\
                   [servers.b]\ncommand = \"x\"\nheaders = { A = \"b\" }\n\
                   [servers.c]\nurl = \"ftp://x\"\n[servers.d]\nurl = \"http://x\"\ntype = \"sse\"\n\
                   [servers.e]\ncommand = \"x\"\nrequest_timeout_secs = 0\n";
        let keys: Vec<String> = parse_fleet_toml("f.toml", bad, &|_| None)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(
            keys,
            [
                "token",
                "servers.a.health",
                "servers.b.headers",
                "servers.c.url",
                "servers.d.type",
                "servers.e.request_timeout_secs"
            ]
        );
    }

    #[test]
    fn dot_and_dot_dot_are_not_server_names() {
        for name in [".", ".."] {
            let text = format!(r#"{{"mcpServers": {{"{name}": {{"command": "x"}}}}}}"#);
            let errors = parse_mcp_servers_json_with_env("f.json", &text, &|_| None)
                .unwrap_err()
                .0;
            assert!(
                errors[0].message.contains("cannot be a server name"),
                "{errors:?}"
            );
        }
        let text = r#"{"mcpServers": {"a.b": {"command": "x"}}}"#;
        assert!(parse_mcp_servers_json_with_env("f.json", text, &|_| None).is_ok());
    }

    #[test]
    fn zero_timeouts_and_intervals_are_refused() {
        let text = "session_ttl_secs = 0\nrequest_timeout_secs = 0\n[health]\ninterval_secs = 0\n\
                    timeout_secs = 0\n[servers.f]\ncommand = \"x\"\nhealth = { timeout_secs = 0 }\n";
        let errors = parse_fleet_toml("f.toml", text, &|_| None).unwrap_err().0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "session_ttl_secs",
                "request_timeout_secs",
                "health.interval_secs",
                "health.timeout_secs",
                "servers.f.health.timeout_secs"
            ]
        );
        assert!(
            errors
                .iter()
                .all(|e| e.message.ends_with("must be at least 1"))
        );
        assert_eq!((errors[2].line, errors[3].line), (4, 5));
    }

    #[test]
    fn toml_errors_name_line_column_and_key() {
        let unknown = "listen = \"x\"\n[health]\ninterval = 5\n";
        let e = &parse_fleet_toml("f.toml", unknown, &|_| None)
            .unwrap_err()
            .0[0];
        assert_eq!((e.line, e.key.as_str()), (3, "health.interval"), "{e}");
        assert!(e.message.contains("unknown field `interval`"), "{e}");

        let syntax = "listen = \n";
        let e = &parse_fleet_toml("f.toml", syntax, &|_| None).unwrap_err().0[0];
        assert_eq!(e.line, 1, "{e}");

        let servers = "[servers.a]\ncommand = \"\"\n\n[servers.b]\ncommand = \"x\"\nargz = []\n\n[servers.c]\ncommand = \"x\"\nrestart = { jitter = 2.0 }\n";
        let errs = parse_fleet_toml("f.toml", servers, &|_| None).unwrap_err();
        let got: Vec<(usize, &str)> = errs.0.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            got,
            [
                (1, "servers.a.command"),
                (4, "servers.b.argz"),
                (8, "servers.c.restart.jitter")
            ],
            "{errs}"
        );
    }

    #[test]
    fn every_semantic_error_is_reported() {
        let text = r#"{"mcpServers": {"a": {}, "b": {"command": ""}, "c": {"args": 3}}}"#;
        let errs = parse_mcp_servers_json("x.json", text).unwrap_err();
        assert_eq!(errs.0.len(), 3, "{errs}");
        assert_eq!(errs.0[1].key, "mcpServers.b.command");
        assert_eq!(errs.0[2].key, "mcpServers.c.args");
    }

    /// The first error of a JSON document that must fail.
    fn json_error(text: &str) -> ConfigError {
        parse_mcp_servers_json("c.json", text)
            .unwrap_err()
            .0
            .remove(0)
    }

    #[test]
    fn a_server_name_given_twice_is_refused() {
        let e = json_error(
            r#"{"mcpServers": {"a": {"command": "x"}, "a": {"command": "y", "args": ["1"]}}}"#,
        );
        assert_eq!(e.key, "mcpServers", "{e}");
        assert!(e.message.contains("`a` is given twice"), "{e}");
        // VS Code's `servers` too.
        let e = json_error(r#"{"servers": {"b": {"command": "x"}, "b": {"command": "x"}}}"#);
        assert!(e.message.contains("`b` is given twice"), "{e}");
    }

    #[test]
    fn fields_a_remote_server_would_ignore_are_refused() {
        for (field, value) in [
            ("args", r#"["x"]"#),
            ("env", r#"{"A": "b"}"#),
            ("cwd", r#""/tmp""#),
        ] {
            let e = json_error(&format!(
                r#"{{"mcpServers": {{"r": {{"url": "http://127.0.0.1:1/mcp", "{field}": {value}}}}}}}"#
            ));
            assert_eq!(e.key, format!("mcpServers.r.{field}"), "{e}");
            assert!(e.message.contains("not for `url`"), "{e}");
        }
        let e = json_error(r#"{"mcpServers": {"r": {"url": "http://h/mcp", "type": "stdio"}}}"#);
        assert_eq!(e.key, "mcpServers.r.type", "{e}");
        assert!(
            e.message.contains("does not fit an entry with `url`"),
            "{e}"
        );
    }

    #[test]
    fn urls_are_read_as_the_http_client_reads_them() {
        let ok = parse_mcp_servers_json(
            "c.json",
            r#"{"mcpServers": {"r": {"url": "HTTP://h:1/mcp"}}}"#,
        )
        .unwrap();
        assert_eq!(ok.servers.len(), 1);
        for bad in ["http:// spaces", "ftp://h/mcp", "http://", "h/mcp"] {
            let e = json_error(&format!(r#"{{"mcpServers": {{"r": {{"url": "{bad}"}}}}}}"#));
            assert_eq!(e.key, "mcpServers.r.url", "{bad}: {e}");
        }
    }

    #[test]
    fn environment_names_that_cannot_be_set_are_refused() {
        for name in ["", "A=B", "A\\u0000"] {
            let e = json_error(&format!(
                r#"{{"mcpServers": {{"s": {{"command": "x", "env": {{"{name}": "v"}}}}}}}}"#
            ));
            assert!(e.key.starts_with("mcpServers.s.env."), "{name}: {e}");
            assert!(e.message.contains("environment variable's name"), "{e}");
        }
    }

    #[test]
    fn a_name_that_would_break_its_metric_label_is_refused() {
        for name in [r"s\\y", r#"s\"y"#, r"s\ny", r"s\u0007"] {
            let e = json_error(&format!(
                r#"{{"mcpServers": {{"{name}": {{"command": "x"}}}}}}"#
            ));
            assert!(
                e.message.contains("must not hold a backslash"),
                "{name}: {e}"
            );
        }
        let fine = r#"{"mcpServers": {"my server.v2-ünï": {"command": "x"}}}"#;
        assert_eq!(
            parse_mcp_servers_json("c.json", fine)
                .unwrap()
                .servers
                .len(),
            1
        );
    }

    #[test]
    fn a_document_that_is_not_an_object_says_so() {
        for text in ["[]", "  \"x\"", ""] {
            let e = json_error(text);
            assert!(e.message.contains("must be a JSON object"), "{text:?}: {e}");
        }
    }

    /// A field or an `env`/`headers` key given twice in an entry is refused, as a server name
    /// given twice is: JSON parsers would keep the last in silence.
    #[test]
    fn a_field_or_key_given_twice_in_an_entry_is_refused() {
        for (entry, key, message) in [
            (
                r#"{"command": "x", "command": "y"}"#,
                "mcpServers.s",
                "duplicate field `command`",
            ),
            (
                r#"{"command": "x", "env": {"A": "1", "A": "2"}}"#,
                "mcpServers.s.env",
                "`A` is given twice",
            ),
            (
                r#"{"url": "http://h/", "headers": {"H": "1", "H": "2"}}"#,
                "mcpServers.s.headers",
                "`H` is given twice",
            ),
        ] {
            let text = format!(r#"{{"mcpServers": {{"s": {entry}}}}}"#);
            let err = json_error(&text);
            assert_eq!(
                (err.key.as_str(), err.message.as_str()),
                (key, message),
                "{entry}: {err:?}"
            );
        }
    }

    /// What the spawn or the HTTP client would refuse at run time is refused by the check:
    /// a NUL anywhere a program or URL gets it, a header name or value HTTP does not allow.
    #[test]
    fn nul_characters_and_bad_headers_are_refused_by_the_check() {
        for (entry, key) in [
            (r#"{"command": "a\u0000b"}"#, "mcpServers.s.command"),
            (
                r#"{"command": "x", "args": ["ok", "a\u0000"]}"#,
                "mcpServers.s.args[1]",
            ),
            (
                r#"{"command": "x", "env": {"K": "\u0000"}}"#,
                "mcpServers.s.env.K",
            ),
            (
                r#"{"command": "x", "cwd": "/tmp\u0000"}"#,
                "mcpServers.s.cwd",
            ),
            (r#"{"url": "http://h/\u0000"}"#, "mcpServers.s.url"),
            (
                r#"{"url": "http://h/", "headers": {"Bad Name": "v"}}"#,
                "mcpServers.s.headers.Bad Name",
            ),
            (
                r#"{"url": "http://h/", "headers": {"A": "line\nbreak"}}"#,
                "mcpServers.s.headers.A",
            ),
        ] {
            let text = format!(r#"{{"mcpServers": {{"s": {entry}}}}}"#);
            let err = json_error(&text);
            assert_eq!(err.key, key, "{entry}: {err:?}");
        }
        let fine = r#"{"mcpServers": {"s": {"url": "http://h/", "headers": {"Authorization": "Bearer a b\tc"}}}}"#;
        parse_mcp_servers_json("f", fine).unwrap();
    }

    /// The one-pass positions are those `locate_key` finds one name at a time: escaped names,
    /// a field of another entry that shares a name, CRLF line ends.
    #[test]
    fn server_key_positions_match_locate_key() {
        let text = "{\r\n \"mcpServers\": {\n  \"a\": {\"command\": \"x\", \"env\": {\"b\": \"1\"}},\n\n   \"\\u0062\": {\"command\": \"y\"},  \"c\":\n {\"command\": \"z\"}\n}}";
        let positions = server_key_positions(text);
        for name in ["a", "b", "c"] {
            assert_eq!(
                positions.get(name).copied(),
                Some(locate_key(text, name)),
                "{name}"
            );
        }
        assert_eq!(locate_key(text, "b"), (5, 4));
        assert_eq!(positions.len(), 3);
    }

    #[test]
    fn an_entry_error_points_at_its_own_name() {
        // `env` is a field of `a` before it is the name of the broken entry.
        let text = "{\n  \"mcpServers\": {\n    \"a\": {\"command\": \"x\", \"env\": {}},\n    \"env\": {\"args\": []}\n  }\n}";
        let e = json_error(text);
        assert_eq!(
            (e.key.as_str(), e.line, e.column),
            ("mcpServers.env", 4, 5),
            "{e}"
        );
        // An escaped name is found by its decoded text.
        let text = "{\"mcpServers\": {\n\"caf\\u00e9\": {}}}";
        let e = json_error(text);
        assert_eq!((e.line, e.column), (2, 1), "{e}");
    }

    #[test]
    fn times_past_a_year_and_a_zero_failure_threshold_are_refused() {
        let text = "stop_grace_secs = 99999999999\n[health]\ninterval_secs = 18446744073709551615\n\
                    failure_threshold = 0\n[restart]\njitter = 0.5\nwindow_secs = 99999999999\n\
                    [servers.f]\ncommand = \"x\"\nrequest_timeout_secs = 99999999999\n";
        let errors = parse_fleet_toml("f.toml", text, &|_| None).unwrap_err().0;
        let found: Vec<(&str, usize)> = errors.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert_eq!(
            found,
            [
                ("stop_grace_secs", 1),
                ("health.interval_secs", 3),
                ("health.failure_threshold", 4),
                ("restart.window_secs", 7),
                ("servers.f.request_timeout_secs", 8),
            ],
            "{errors:?}"
        );
        assert!(
            errors[0].message.contains("at most 31536000 seconds"),
            "{}",
            errors[0]
        );
        assert!(errors[2].message.contains("at least 1"), "{}", errors[2]);
        // A server's own threshold, once the fleet's errors are gone.
        let text = "[servers.f]\ncommand = \"x\"\nhealth = { failure_threshold = 0 }\n";
        let e = &parse_fleet_toml("f.toml", text, &|_| None).unwrap_err().0[0];
        assert_eq!(e.key, "servers.f.health.failure_threshold", "{e}");
        // The longest allowed is taken.
        let text = format!("[health]\ninterval_secs = {MAX_SECS}\n");
        assert!(parse_fleet_toml("f.toml", &text, &|_| None).is_ok());
    }
}
