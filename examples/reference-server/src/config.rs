//! Command-line flags and environment variables that choose the server's name, era and misbehaviours.

use std::fmt;

use clap::builder::FalseyValueParser;
use clap::{Parser, ValueEnum};

/// The `serverInfo.name` used when none is given.
pub const DEFAULT_NAME: &str = "mcp-reference-server";

/// Which protocol era(s) the process speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EraMode {
    /// Speak both; the first `initialize` or `server/discover` fixes the era for the process.
    Both,
    /// Speak only the handshake era (`initialize`), like the TypeScript SDK servers.
    Legacy,
    /// Speak only the stateless era (`server/discover`).
    Modern,
}

impl fmt::Display for EraMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Both => "both",
            Self::Legacy => "legacy",
            Self::Modern => "modern",
        })
    }
}

/// Everything that can be chosen when starting the server; a flag wins over its variable.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "mcp-reference-server",
    version,
    about = "A controllable MCP server over stdio (tools echo, add, sleep) for tests and demos"
)]
pub struct Config {
    /// The name reported in serverInfo.name.
    #[arg(long, env = "MCP_REF_NAME", default_value = DEFAULT_NAME)]
    pub name: String,

    /// Which protocol era(s) to speak.
    #[arg(long, env = "MCP_REF_ERA", value_enum, default_value_t = EraMode::Both)]
    pub era: EraMode,

    /// After answering N requests, exit with code 3 (a simulated crash); 0 crashes at start.
    #[arg(long, env = "MCP_REF_CRASH_AFTER_REQUESTS", value_name = "N")]
    pub crash_after_requests: Option<u64>,

    /// Exit with code 3 this many milliseconds after start.
    #[arg(long, env = "MCP_REF_CRASH_AFTER_MS", value_name = "MS")]
    pub crash_after_ms: Option<u64>,

    /// Write one line to stderr and exit at once with this code.
    #[arg(long, env = "MCP_REF_EXIT_AT_START", value_name = "CODE")]
    pub exit_at_start: Option<u8>,

    /// After answering N requests, answer nothing more but keep reading; 0 hangs from the start.
    #[arg(long, env = "MCP_REF_HANG_AFTER_REQUESTS", value_name = "N")]
    pub hang_after_requests: Option<u64>,

    /// Wait this many milliseconds before reading stdin.
    #[arg(long, env = "MCP_REF_SLOW_START_MS", value_name = "MS")]
    pub slow_start_ms: Option<u64>,

    /// Before each answer, write a garbage line to stdout (not JSON, invalid UTF-8, or JSON that is not JSON-RPC, in turn).
    #[arg(long, env = "MCP_REF_GARBAGE_STDOUT", value_parser = FalseyValueParser::new())]
    pub garbage_stdout: bool,

    /// At start, write one line of N bytes (newline excluded) to stdout.
    #[arg(long, env = "MCP_REF_LONG_LINE_BYTES", value_name = "N")]
    pub long_line_bytes: Option<usize>,

    /// At start, write N lines `flood line i` to stderr, without holding up stdout.
    #[arg(long, env = "MCP_REF_STDERR_FLOOD", value_name = "N")]
    pub stderr_flood: Option<u64>,

    /// Log each handled method to stderr.
    #[arg(long, env = "MCP_REF_LOG_REQUESTS", value_parser = FalseyValueParser::new())]
    pub log_requests: bool,

    /// Offer tool list changes (`listChanged: true`): a stateless client's `subscriptions/listen`
    /// is acknowledged and held open, and the request `reference/add_tool` adds the tool `extra`
    /// and announces the change (on the listen in the 2026 era, unasked in the 2025 era).
    #[arg(long, env = "MCP_REF_LIST_CHANGES", value_parser = FalseyValueParser::new())]
    pub list_changes: bool,
}

impl Config {
    /// The configuration of a well-behaved server with the given era, ignoring the environment.
    pub fn well_behaved(era: EraMode) -> Self {
        Self {
            name: DEFAULT_NAME.into(),
            era,
            crash_after_requests: None,
            crash_after_ms: None,
            exit_at_start: None,
            hang_after_requests: None,
            slow_start_ms: None,
            garbage_stdout: false,
            long_line_bytes: None,
            stderr_flood: None,
            log_requests: false,
            list_changes: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let config = Config::try_parse_from([
            "mcp-reference-server",
            "--name",
            "alpha",
            "--era",
            "legacy",
            "--crash-after-requests",
            "2",
            "--garbage-stdout",
        ])
        .unwrap();
        assert_eq!(config.name, "alpha");
        assert_eq!(config.era, EraMode::Legacy);
        assert_eq!(config.crash_after_requests, Some(2));
        assert!(config.garbage_stdout);
    }
}
