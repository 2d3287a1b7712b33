//! The gateway's knobs.

use std::time::Duration;

/// How the gateway names, keeps and ends sessions. `Default` suits a desktop user's fleet.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Between a server's name and its item's name in what clients see (`server__tool`).
    pub separator: String,
    /// A session with no request for this long (and no open stream) is ended. Most clients
    /// never send DELETE, so this is what bounds memory.
    pub session_idle_ttl: Duration,
    /// A session whose client has not sent `notifications/initialized` (nor any request) this
    /// long after `initialize` is ended.
    pub initialize_timeout: Duration,
    /// How often expiry is checked.
    pub sweep_every: Duration,
    /// The most sessions at once; an `initialize` beyond it is refused.
    pub max_sessions: usize,
    /// How long a forwarded request may take; `None` leaves it to the server manager.
    pub request_timeout: Option<Duration>,
    /// How long listing a server's tools, resources and prompts may take.
    pub list_timeout: Duration,
    /// Messages buffered for a session's server-to-client stream before they are dropped.
    pub stream_buffer: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            separator: crate::naming::DEFAULT_SEPARATOR.into(),
            session_idle_ttl: Duration::from_secs(30 * 60),
            initialize_timeout: Duration::from_secs(60),
            sweep_every: Duration::from_secs(5),
            max_sessions: 10_000,
            request_timeout: None,
            list_timeout: Duration::from_secs(30),
            stream_buffer: 64,
        }
    }
}
