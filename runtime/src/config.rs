//! Reading configuration files. Parsing lives in fleet-protocol; this adds the file.

use std::path::Path;

use fleet_protocol::config::{
    ConfigError, ConfigErrors, FleetConfig, parse_mcp_servers_json_with_env,
};

/// Reads and parses an `mcpServers` JSON file (Claude Desktop and Cursor format) or a VS Code
/// `servers` file, with `${env:NAME}` taken from mcp-fleet's environment. Every error names the
/// file; parse errors name the line, column and key too.
pub fn load(path: &Path) -> Result<FleetConfig, ConfigErrors> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            source: source.clone(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    parse_mcp_servers_json_with_env(&source, &text, &|name| std::env::var(name).ok())
}
