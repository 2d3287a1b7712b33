//! The MCP handshake, in whichever era the server speaks.
//!
//! Probe with `server/discover`: a 2026-era answer means the server is stateless and every later
//! request carries `_meta`. Any other answer, an error or a timeout means the 2025 era:
//! `initialize`, then `notifications/initialized`. Then list the tools, every page.
//! The steps are written against [`Wire`], so the same code drives a real child process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fleet_protocol::FleetError;
use fleet_protocol::jsonrpc::error_codes;
use fleet_protocol::mcp::{self, methods};
use fleet_protocol::status::{Era, Handshake};
use serde_json::{Value, json};

/// Sends requests and notifications to the server being shaken hands with.
pub trait Wire: Send + Sync {
    fn request(
        &self,
        method: &'static str,
        params: Option<Value>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Value, FleetError>> + Send;

    fn notify(
        &self,
        method: &'static str,
        params: Option<Value>,
    ) -> impl Future<Output = Result<(), FleetError>> + Send;

    /// Whether the process has exited (so a failed step is the exit's doing).
    fn exited(&self) -> bool;
}

/// Timeouts of the handshake's steps.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeTimeouts {
    /// How long to wait for a `server/discover` answer before trying `initialize`.
    pub discover: Duration,
    /// How long `initialize` and each `tools/list` page may take.
    pub initialize: Duration,
}

/// At most this many `tools/list` pages, so a server that always returns a cursor cannot loop us.
const MAX_TOOL_PAGES: usize = 100;

/// Why a handshake did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The process exited meanwhile; its exit is handled as an exit, not as a failed handshake.
    Exited,
    /// The server answered wrongly or not at all.
    Failed(String),
}

pub async fn run<W: Wire>(
    wire: &W,
    timeouts: HandshakeTimeouts,
    started: Instant,
) -> Result<Handshake, HandshakeError> {
    match run_steps(wire, timeouts, started).await {
        Ok(h) => Ok(h),
        Err(_) if wire.exited() => Err(HandshakeError::Exited),
        Err(reason) => Err(HandshakeError::Failed(reason)),
    }
}

async fn run_steps<W: Wire>(
    wire: &W,
    timeouts: HandshakeTimeouts,
    started: Instant,
) -> Result<Handshake, String> {
    let discovered = match wire
        .request(
            methods::DISCOVER,
            Some(mcp::discover_params()),
            timeouts.discover,
        )
        .await
    {
        Ok(result) => mcp::read_discover_result(&result),
        Err(FleetError::ServerExited { exit, .. }) => {
            return Err(match exit {
                Some(e) => format!("exited during the handshake ({e})"),
                None => "exited during the handshake".into(),
            });
        }
        Err(_) => None,
    };
    let (era, protocol_version, server_info, capabilities, instructions) = match discovered {
        Some(d) => (
            Era::Modern,
            d.protocol_version,
            d.server_info,
            d.capabilities,
            d.instructions,
        ),
        None => legacy_initialize(wire, timeouts).await?,
    };
    let tools = if capabilities.get("tools").is_some() {
        list_tools(wire, era, timeouts.initialize).await?
    } else {
        Vec::new()
    };
    Ok(Handshake {
        era,
        protocol_version,
        server_info,
        capabilities,
        instructions,
        tools: Arc::from(tools),
        took: started.elapsed(),
    })
}

type Negotiated = (Era, String, Value, Value, Option<String>);

async fn legacy_initialize<W: Wire>(
    wire: &W,
    timeouts: HandshakeTimeouts,
) -> Result<Negotiated, String> {
    let result = match wire
        .request(
            methods::INITIALIZE,
            Some(mcp::initialize_params()),
            timeouts.initialize,
        )
        .await
    {
        Ok(r) => r,
        // A server that latched the 2026 era after a late `server/discover` answer refuses
        // `initialize` with -32022: ask it again, now that it has had time to answer.
        Err(FleetError::Upstream { error, .. })
            if error.code == error_codes::UNSUPPORTED_PROTOCOL_VERSION =>
        {
            let result = wire
                .request(
                    methods::DISCOVER,
                    Some(mcp::discover_params()),
                    timeouts.initialize,
                )
                .await
                .map_err(|e| format!("server/discover after -32022: {e}"))?;
            let d = mcp::read_discover_result(&result).ok_or_else(|| {
                "refused `initialize` as unsupported but `server/discover` is not 2026-era"
                    .to_string()
            })?;
            return Ok((
                Era::Modern,
                d.protocol_version,
                d.server_info,
                d.capabilities,
                d.instructions,
            ));
        }
        Err(e) => return Err(format!("initialize: {e}")),
    };
    let protocol_version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or("initialize result has no protocolVersion")?
        .to_string();
    wire.notify(methods::INITIALIZED, None)
        .await
        .map_err(|e| format!("notifications/initialized: {e}"))?;
    Ok((
        Era::Legacy,
        protocol_version,
        result.get("serverInfo").cloned().unwrap_or(Value::Null),
        result.get("capabilities").cloned().unwrap_or(json!({})),
        result
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_owned),
    ))
}

/// Lists every tool, following `nextCursor`. Each tool object is kept exactly as sent.
pub async fn list_tools<W: Wire>(
    wire: &W,
    era: Era,
    timeout: Duration,
) -> Result<Vec<Value>, String> {
    let mut tools = Vec::new();
    let mut cursor: Option<Value> = None;
    for _ in 0..MAX_TOOL_PAGES {
        let params = cursor.take().map(|c| json!({ "cursor": c }));
        let params = mcp::params_for_era(era, params);
        let result = wire
            .request(methods::TOOLS_LIST, params, timeout)
            .await
            .map_err(|e| format!("tools/list: {e}"))?;
        match result.get("tools") {
            Some(Value::Array(page)) => tools.extend(page.iter().cloned()),
            _ => return Err("tools/list result has no `tools` array".into()),
        }
        match result.get("nextCursor") {
            Some(c) if !c.is_null() => cursor = Some(c.clone()),
            _ => return Ok(tools),
        }
    }
    Err(format!(
        "tools/list returned more than {MAX_TOOL_PAGES} pages"
    ))
}
