//! Reading configuration files. Parsing lives in fleet-protocol; this adds the files and the
//! environment (`${env:NAME}`).
//!
//! Two kinds of file: an `mcpServers` (or VS Code `servers`) JSON file, and `mcp-fleet.toml`
//! (fleet options, a restart policy, servers, and optionally a JSON file of more servers).
//! Also the one setting read from the environment alone: the worker threads
//! ([`worker_threads`]).

use std::path::Path;

use fleet_protocol::config::{
    ConfigError, ConfigErrors, FleetConfig, FleetFile, locate_key, parse_fleet_toml,
    parse_mcp_servers_json_with_env,
};

/// What a config file holds: its servers, and for a TOML file its fleet options.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub servers: FleetConfig,
    /// The TOML file's options (its `servers` field is empty: they are in `servers` above).
    pub options: Option<FleetFile>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            source: path.display().to_string(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        }])
    })
}

/// The servers of a config file of either kind.
pub fn load(path: &Path) -> Result<FleetConfig, ConfigErrors> {
    load_all(path).map(|l| l.servers)
}

/// Reads a config file: `*.toml` as `mcp-fleet.toml`, anything else as `mcpServers` JSON (Claude
/// Desktop, Cursor) or VS Code's `servers`. A TOML file's `servers_file` is read too (relative
/// to the TOML file), its servers get the TOML's `[restart]` policy, and a name in both files is
/// an error. Every error names the file; parse errors name the line, column and key too.
pub fn load_all(path: &Path) -> Result<Loaded, ConfigErrors> {
    let source = path.display().to_string();
    let text = read(path)?;
    if path
        .extension()
        .is_none_or(|e| !e.eq_ignore_ascii_case("toml"))
    {
        return Ok(Loaded {
            servers: parse_mcp_servers_json_with_env(&source, &text, &env)?,
            options: None,
        });
    }
    let mut file = parse_fleet_toml(&source, &text, &env)?;
    let mut servers = std::mem::take(&mut file.servers);
    if let Some(json) = &file.servers_file {
        let json = path.parent().unwrap_or(Path::new(".")).join(json);
        let json_source = json.display().to_string();
        let json_text = read(&json)?;
        let more = parse_mcp_servers_json_with_env(&json_source, &json_text, &env)?;
        // A name in both files is an error, enabled or not: the two entries cannot both hold.
        let names: std::collections::HashSet<&str> = servers
            .servers
            .iter()
            .map(|s| s.name.as_str())
            .chain(servers.disabled.iter().map(String::as_str))
            .collect();
        let taken = |name: &str| names.contains(name);
        let errors: Vec<ConfigError> = more
            .servers
            .iter()
            .map(|s| &s.name)
            .chain(&more.disabled)
            .filter(|name| taken(name))
            .map(|name| {
                let (line, column) = locate_key(&json_text, name);
                ConfigError {
                    source: json_source.clone(),
                    line,
                    column,
                    key: String::new(),
                    message: format!("`{name}` is also a server of {source}: names must be unique"),
                }
            })
            .collect();
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        for mut spec in more.servers {
            spec.restart = file.restart.clone();
            servers.servers.push(spec);
        }
        servers.disabled.extend(more.disabled);
    }
    Ok(Loaded {
        servers,
        options: Some(file),
    })
}

/// Sets the number of worker threads: tokio's own variable, read here so that a bad value is a
/// usage error rather than tokio's panic.
const WORKERS_VAR: &str = "TOKIO_WORKER_THREADS";

/// The worker threads of mcp-fleet's runtime: one unless `TOKIO_WORKER_THREADS` says otherwise.
///
/// mcp-fleet shares its machine with the servers it runs, which do the work; like
/// linkerd2-proxy, it takes one core by default. With more workers, every request with a body
/// also wakes a second one: hyper hands the body over inside the connection's task, and tokio
/// treats that wake-up as a yield, which wakes a parked worker. On the 2-core benchmark machine
/// one worker made half the context switches per forwarded call and used 15-25 % less CPU,
/// with as many requests per second or more (BENCHMARKS.md, "Gateway: one worker thread by default").
pub fn worker_threads() -> Result<usize, String> {
    match std::env::var(WORKERS_VAR) {
        Err(std::env::VarError::NotPresent) => Ok(1),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "{WORKERS_VAR} must be a positive integer, not `{v}`"
            )),
        },
        Err(std::env::VarError::NotUnicode(v)) => Err(format!(
            "{WORKERS_VAR} must be a positive integer, not {v:?}"
        )),
    }
}
