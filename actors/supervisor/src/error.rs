//! The supervisor's error.

use fleet_protocol::messages::supervisor::ServiceKind;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SupervisorError {
    #[error("service {kind} is unavailable: {reason}")]
    ServiceUnavailable { kind: ServiceKind, reason: String },
}
