//! A server's direct lane: a [`CallServer`] written to the server's stdin from the caller's own
//! task, without a message to the server's actor.
//!
//! The actor's part in an ordinary call is small: it numbers the request, writes it and puts it
//! in the pending table. The answer already reaches the caller from the stdout reader, the
//! timeout and the cancellation from the watchdog. The lane does that part in the caller's task,
//! on the same table: so a request passes through one task fewer and no mailbox.
//!
//! Invariants:
//! - The lane serves only while the actor holds it open ([`PendingTable::open_lane`]): the
//!   server serves (ready or unhealthy), its process runs, its handshake is done. Anything else
//!   (starting, waiting for a restart, stopping, gone) and any call with a progress sink is
//!   handed back to the caller, to ask the actor, which knows what to do with it.
//! - A call is checked against the lane, written and put in the table under the table's lock,
//!   which the closing of the lane and the actor's drain of the table (the process exited, the
//!   actor stopped) also take. So a lane's request is either in the table before the drain,
//!   which answers it, or handed back after, untouched, to the actor, which answers as it would
//!   have: a restart's wait, `NotReady`, `ServerExited` with the exit.
//! - The lane holds no strong sender of a process's stdin between calls: the actor's is the
//!   only one, so dropping it closes stdin as before. The actor closes the lane before it drops
//!   its sender.
//! - A lane's request is the same on the wire, in the table and in the metrics as the actor's:
//!   the same ids (one counter for both), era parameters, timeouts and `tool` labels.

use std::time::Duration;

use fleet_protocol::FleetError;
use fleet_protocol::codec::JsonRpcCodec;
use fleet_protocol::jsonrpc::{Message as RpcMessage, Request};
use fleet_protocol::mcp;
use fleet_protocol::messages::server::{CallServer, LaneCall, ServerLane};
use tokio::sync::oneshot;

use crate::pending::{PendingCall, PendingTable, Replier};

/// A server's lane. The manager puts it in the directory; the server's actor shares its table.
pub(crate) struct Lane {
    pub(crate) table: PendingTable,
    pub(crate) codec: JsonRpcCodec,
    /// The timeout of a call that names none ([`crate::ServerManagerConfig::request_timeout_of`]),
    /// fixed at launch: a server's spec does not change while it runs.
    pub(crate) timeout: Duration,
}

impl ServerLane for Lane {
    fn call(&self, call: CallServer) -> LaneCall {
        if call.progress.is_some() {
            return LaneCall::HandedBack(Box::new(call));
        }
        // From here to the send, the table is locked: the lane cannot close in between.
        let Some(lane) = self.table.lane() else {
            return LaneCall::HandedBack(Box::new(call));
        };
        let CallServer {
            method,
            params,
            timeout,
            cancel,
            extra,
            ..
        } = call;
        let id = self.table.next_id();
        let (tx, rx) = oneshot::channel();
        let pending = PendingCall::new(
            Replier::Oneshot(tx),
            method,
            params.as_ref(),
            timeout.unwrap_or(self.timeout),
            cancel,
            Some(lane.tools()),
        );
        let params = mcp::params_for_era(lane.era(), params);
        let msg = RpcMessage::Request(Request {
            extra,
            ..Request::new(id, pending.method.clone(), params)
        });
        match self.codec.encode_line(&msg) {
            Ok(line) => lane.send(id, pending, line),
            Err(e) => {
                drop(lane);
                let error = FleetError::InvalidRequest {
                    reason: e.to_string(),
                };
                self.table.finish(pending, Err(error));
            }
        }
        LaneCall::Sent(rx)
    }
}
