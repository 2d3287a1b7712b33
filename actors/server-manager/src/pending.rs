//! The requests a server's actor has sent and not yet seen answered, shared by the actor, its
//! stdout reader and its watchdog.
//!
//! The reader answers a response itself, straight to the caller: the answer of an ordinary
//! request passes through no other task. Only a request with a progress sink is answered by the
//! actor, which forwards its progress notifications, so that the response never overtakes them.
//! The watchdog answers what the server did not answer in time, and what the caller cancelled.
//! Whoever takes a request out of the table answers it: exactly one answer per request.
//!
//! The table also holds the server's *lane* ([`crate::lane`]): whether a caller may write a
//! request to the server's stdin itself. The actor opens it while the server serves and closes
//! it otherwise, and [`PendingTable::drain`] closes it with the same lock. A request by the lane
//! is checked, written and put in the table under that lock: it is drained with the rest or
//! finds the lane closed, so no request of a process that is gone waits for its timeout.
//!
//! Request metrics go to the collector in batches ([`MetricEvent::Batch`]): when
//! [`METRIC_BATCH`] are waiting, or [`METRIC_FLUSH`] after the first of them, sent by the
//! watchdog; and whatever is left when the watchdog or the actor stops, after which each one is
//! sent as it comes. A message per request would wake the collector for each one, and on a
//! multi-threaded runtime often a second worker thread with it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use fleet_protocol::jsonrpc::{Outcome, RequestId, Response};
use fleet_protocol::messages::metrics::{
    MetricEvent, RecordMetric, RequestOutcome, UNDECLARED_TOOL,
};
use fleet_protocol::messages::server::{CallAnswer, CallServerReply};
use fleet_protocol::{Era, FleetError};
use kameo::actor::Recipient;
use kameo::reply::ReplySender;
use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::server::LiveCounters;

/// How often the watchdog looks for cancelled requests while any that can be cancelled is
/// pending: the longest a cancellation waits before the server is told.
pub(crate) const CANCEL_POLL: Duration = Duration::from_millis(20);

/// Request metrics waiting for the collector are sent once there are this many...
pub(crate) const METRIC_BATCH: usize = 64;
/// ...or this long after the first of them was recorded, whichever comes first.
pub(crate) const METRIC_FLUSH: Duration = Duration::from_millis(100);

pub(crate) type Answer = CallServerReply;

/// Where a request's answer goes.
pub(crate) enum Replier {
    /// An internal caller (handshake, probe) awaiting a receiver.
    Oneshot(oneshot::Sender<Answer>),
    /// The asker of a `CallServer`, answered without a task in between.
    Caller(ReplySender<Answer>),
    /// Nobody waits (the message was told, not asked).
    Nobody,
}

impl Replier {
    pub(crate) fn send(self, answer: Answer) {
        match self {
            // A caller that went away has nobody to tell.
            Replier::Oneshot(tx) => {
                let _ = tx.send(answer);
            }
            Replier::Caller(tx) => tx.send(answer),
            Replier::Nobody => {}
        }
    }
}

/// One request waiting for its answer.
pub(crate) struct PendingCall {
    pub(crate) reply: Replier,
    pub(crate) method: String,
    pub(crate) started: Instant,
    pub(crate) deadline: Instant,
    pub(crate) cancel: Option<CancellationToken>,
    /// Answered by the actor, after the progress it forwards.
    pub(crate) routed: bool,
    /// Recorded as a request metric, with this tool label (`None`: not a tool call).
    pub(crate) record: Option<Option<String>>,
}

/// How far off the deadline of a request is whose timeout is too large to add to now ("never"):
/// about 30 years.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

impl PendingCall {
    /// A request of `method` starting now, due `timeout` from now, answered through `reply`.
    /// With `declared` (the server's declared tools) it is recorded as a request metric, a
    /// `tools/call` with its `tool` label read from `params`. It is not routed: the reader
    /// answers it.
    pub(crate) fn new(
        reply: Replier,
        method: String,
        params: Option<&Value>,
        timeout: Duration,
        cancel: Option<CancellationToken>,
        declared: Option<&HashSet<String>>,
    ) -> PendingCall {
        let record = declared.map(|tools| {
            (method == fleet_protocol::mcp::methods::TOOLS_CALL).then(|| tool_label(tools, params))
        });
        let started = Instant::now();
        PendingCall {
            reply,
            method,
            started,
            deadline: started
                .checked_add(timeout)
                .unwrap_or_else(|| started + FAR_FUTURE),
            cancel,
            routed: false,
            record,
        }
    }

    /// When the watchdog must look at it again.
    fn due(&self, now: Instant) -> Instant {
        match &self.cancel {
            Some(_) => self.deadline.min(now + CANCEL_POLL),
            None => self.deadline,
        }
    }
}

/// Why the watchdog took a request out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Abandon {
    TimedOut,
    Cancelled,
}

impl Abandon {
    /// The reason given to the server in `notifications/cancelled`.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Abandon::TimedOut => "timed out in mcp-fleet",
            Abandon::Cancelled => "cancelled by the client",
        }
    }
}

/// An open lane: what a caller needs to send a request to the running process.
pub(crate) struct LaneOpen {
    pub(crate) era: Era,
    /// The process's stdin queue. The actor holds the only strong sender, so dropping it closes
    /// stdin as before; it closes the lane first, so an open lane's sender upgrades.
    pub(crate) stdin: mpsc::WeakSender<Bytes>,
    /// Names of the tools the server declared: the `tool` label's values.
    pub(crate) tools: Arc<HashSet<String>>,
}

/// The `tool` label of a `tools/call`: its name if the server declared it.
pub(crate) fn tool_label(tools: &HashSet<String>, params: Option<&Value>) -> String {
    match params.and_then(|p| p.get("name")?.as_str()) {
        Some(name) if tools.contains(name) => name.to_owned(),
        _ => UNDECLARED_TOOL.to_owned(),
    }
}

struct Inner {
    calls: HashMap<u64, PendingCall>,
    /// Open while the server serves: callers may then send requests without the actor.
    lane: Option<LaneOpen>,
    /// When the watchdog will next look, if it is waiting for a time.
    armed: Option<Instant>,
    /// Request metrics not sent yet, oldest first.
    unsent: Vec<MetricEvent>,
    /// When `unsent` must be sent (set with its first event).
    flush_at: Option<Instant>,
    /// The actor has stopped: request metrics are sent as they come, not queued.
    closed: bool,
}

impl Inner {
    /// The queued request metrics, to send now; nothing is then due.
    fn take_unsent(&mut self) -> Vec<MetricEvent> {
        self.flush_at = None;
        std::mem::take(&mut self.unsent)
    }
}

/// The shared table. Its lock is held for map operations only, never while answering.
#[derive(Clone)]
pub(crate) struct PendingTable {
    inner: Arc<Mutex<Inner>>,
    shared: Arc<Shared>,
}

struct Shared {
    server: String,
    /// The next request id, for the actor and the lane alike: ids are never reused.
    next_id: AtomicU64,
    metrics: Option<Recipient<RecordMetric>>,
    counters: Arc<LiveCounters>,
    /// Wakes the watchdog when a request is due earlier than it planned to look.
    wake: Notify,
}

impl PendingTable {
    pub(crate) fn new(
        server: String,
        metrics: Option<Recipient<RecordMetric>>,
        counters: Arc<LiveCounters>,
    ) -> Self {
        PendingTable {
            inner: Arc::new(Mutex::new(Inner {
                calls: HashMap::new(),
                lane: None,
                armed: None,
                unsent: Vec::new(),
                flush_at: None,
                closed: false,
            })),
            shared: Arc::new(Shared {
                server,
                next_id: AtomicU64::new(1),
                metrics,
                counters,
                wake: Notify::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Map operations cannot leave the table half-changed: a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self, inner: &Inner) {
        self.shared
            .counters
            .in_flight
            .store(inner.calls.len(), Ordering::Relaxed);
    }

    /// A new request id, never used before on this server.
    pub(crate) fn next_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn insert(&self, id: u64, call: PendingCall) {
        let mut inner = self.lock();
        let wake = self.insert_locked(&mut inner, id, call);
        drop(inner);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Puts a request in; `true` if the watchdog must be woken (once the lock is released).
    fn insert_locked(&self, inner: &mut Inner, id: u64, call: PendingCall) -> bool {
        let due = call.due(Instant::now());
        inner.calls.insert(id, call);
        self.count(inner);
        let wake = inner.armed.is_none_or(|armed| due < armed);
        if wake {
            inner.armed = Some(due);
        }
        wake
    }

    /// Opens the lane to a process (or keeps it open, with what changed).
    pub(crate) fn open_lane(&self, open: LaneOpen) {
        self.lock().lane = Some(open);
    }

    pub(crate) fn close_lane(&self) {
        self.lock().lane = None;
    }

    /// The table, locked, if its lane is open: one request by the lane is then checked,
    /// written and put in the table under one lock, which an exit's drain and the closing of
    /// the lane also take.
    pub(crate) fn lane(&self) -> Option<LaneGuard<'_>> {
        let inner = self.lock();
        let lane = inner.lane.as_ref()?;
        Some(LaneGuard {
            stdin: lane.stdin.upgrade()?,
            era: lane.era,
            tools: lane.tools.clone(),
            inner,
            table: self,
        })
    }

    /// Takes a request out without answering it: the taker answers.
    pub(crate) fn take(&self, id: u64) -> Option<PendingCall> {
        let mut inner = self.lock();
        let call = inner.calls.remove(&id);
        self.count(&inner);
        call
    }

    /// Answers a response from the reader, unless the actor must (a request with progress, an
    /// id that is not one of ours or no longer pending): then the response is handed back.
    pub(crate) fn answer_direct(&self, resp: Response) -> Option<Response> {
        let Some(id) = resp.id.as_ref().and_then(RequestId::as_u64) else {
            return Some(resp);
        };
        let mut inner = self.lock();
        match inner.calls.get(&id) {
            Some(call) if !call.routed => {}
            _ => return Some(resp),
        }
        let call = inner.calls.remove(&id).expect("checked above");
        self.count(&inner);
        drop(inner);
        self.finish(call, self.outcome(resp));
        None
    }

    /// A response as the caller's answer, with its members JSON-RPC does not define.
    pub(crate) fn outcome(&self, resp: Response) -> Answer {
        let Response { outcome, extra, .. } = resp;
        match outcome {
            Outcome::Result(result) => Ok(CallAnswer { result, extra }),
            Outcome::Error(error) => Err(FleetError::Upstream {
                server: self.shared.server.clone(),
                error: Box::new(error),
                extra,
            }),
        }
    }

    /// Answers a request taken out of the table, and records it. Called without the lock held.
    pub(crate) fn finish(&self, call: PendingCall, answer: Answer) {
        if let (Some(tool), Some(_)) = (call.record, &self.shared.metrics) {
            let outcome = match &answer {
                Ok(_) => RequestOutcome::Ok,
                Err(FleetError::Upstream { .. }) => RequestOutcome::Error,
                Err(FleetError::Timeout { .. }) => RequestOutcome::Timeout,
                Err(FleetError::Cancelled { .. }) => RequestOutcome::Cancelled,
                Err(_) => RequestOutcome::Failed,
            };
            self.record(MetricEvent::Request {
                server: self.shared.server.clone(),
                method: call.method,
                tool,
                latency: call.started.elapsed(),
                outcome,
            });
        }
        call.reply.send(answer);
    }

    /// Queues a request metric: sent now if it fills a batch (or the queue is closed);
    /// otherwise the first one of a batch sets when the watchdog sends them, and wakes it if it
    /// planned to look later.
    fn record(&self, event: MetricEvent) {
        let mut inner = self.lock();
        inner.unsent.push(event);
        let mut wake = false;
        let full = if inner.unsent.len() >= METRIC_BATCH || inner.closed {
            Some(inner.take_unsent())
        } else {
            if inner.flush_at.is_none() {
                let due = Instant::now() + METRIC_FLUSH;
                inner.flush_at = Some(due);
                wake = inner.armed.is_none_or(|armed| due < armed);
                if wake {
                    inner.armed = Some(due);
                }
            }
            None
        };
        drop(inner);
        if let Some(events) = full {
            self.send_metrics(events);
        }
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// Sends queued request metrics: one event as itself, more as a batch. A full or stopped
    /// collector must never hold up an answer; the events are then dropped.
    fn send_metrics(&self, mut events: Vec<MetricEvent>) {
        let Some(m) = &self.shared.metrics else {
            return;
        };
        let event = match events.len() {
            0 => return,
            1 => events.swap_remove(0),
            _ => MetricEvent::Batch(events),
        };
        let _ = m.tell(RecordMetric { event }).try_send();
    }

    /// Sends every queued request metric now; with `close`, also every later one as it comes
    /// (the actor has stopped: its watchdog may be gone).
    pub(crate) fn flush_metrics(&self, close: bool) {
        let mut inner = self.lock();
        inner.closed |= close;
        let events = inner.take_unsent();
        drop(inner);
        self.send_metrics(events);
    }

    /// Takes out every request, to answer them all (the process is gone, or the actor is), and
    /// closes the lane.
    pub(crate) fn drain(&self) -> Vec<PendingCall> {
        let mut inner = self.lock();
        inner.lane = None;
        let calls = inner.calls.drain().map(|(_, c)| c).collect();
        self.count(&inner);
        calls
    }

    /// Answers every request past its deadline or cancelled by its caller, and sends the request
    /// metrics that are due. Returns the ids of those requests, for the server to be told, and
    /// when to look again (`None`: nothing is pending).
    fn sweep(&self, now: Instant) -> (Vec<(u64, Abandon)>, Option<Instant>) {
        let mut inner = self.lock();
        let expired: Vec<(u64, PendingCall)> = inner
            .calls
            .extract_if(|_, call| {
                call.cancel.as_ref().is_some_and(|c| c.is_cancelled()) || call.deadline <= now
            })
            .collect();
        let metrics = if inner.flush_at.is_some_and(|at| at <= now) {
            inner.take_unsent()
        } else {
            Vec::new()
        };
        let next = inner
            .calls
            .values()
            .map(|c| c.due(now))
            .chain(inner.flush_at)
            .min();
        inner.armed = next;
        self.count(&inner);
        drop(inner);
        self.send_metrics(metrics);
        let mut ids = Vec::with_capacity(expired.len());
        for (id, call) in expired {
            let server = self.shared.server.clone();
            let method = call.method.clone();
            // Decided by the deadline, which cannot change since the request was taken out.
            let (why, error) = if call.deadline <= now {
                let after = call.deadline - call.started;
                (
                    Abandon::TimedOut,
                    FleetError::Timeout {
                        server,
                        method,
                        after,
                    },
                )
            } else {
                (Abandon::Cancelled, FleetError::Cancelled { server, method })
            };
            self.finish(call, Err(error));
            ids.push((id, why));
        }
        (ids, next)
    }

    /// The watchdog: sleeps until the earliest request is due (or a cancellation may need
    /// noticing, or request metrics sending), answers what is overdue or cancelled, and hands
    /// their ids to `abandoned` for the server to be told. Ends when `stop` is cancelled,
    /// sending the request metrics still queued.
    pub(crate) async fn watch<F, Fut>(self, stop: CancellationToken, mut abandoned: F)
    where
        F: FnMut(Vec<(u64, Abandon)>) -> Fut + Send,
        Fut: Future<Output = ()> + Send,
    {
        let mut next: Option<Instant> = None;
        loop {
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return self.flush_metrics(true),
                () = self.shared.wake.notified() => {}
                () = sleep => {}
            }
            let (ids, due) = self.sweep(Instant::now());
            next = due;
            if !ids.is_empty() {
                abandoned(ids).await;
            }
        }
    }
}

/// The table locked, with its lane open ([`PendingTable::lane`]).
pub(crate) struct LaneGuard<'a> {
    /// The process's stdin queue (dropped before the lock, so it never outlives it).
    stdin: mpsc::Sender<Bytes>,
    era: Era,
    tools: Arc<HashSet<String>>,
    inner: MutexGuard<'a, Inner>,
    table: &'a PendingTable,
}

impl LaneGuard<'_> {
    pub(crate) fn era(&self) -> Era {
        self.era
    }

    pub(crate) fn tools(&self) -> &HashSet<String> {
        &self.tools
    }

    /// Queues `line` on the process's stdin and puts `call` in the table; if the queue refuses
    /// the line, answers `call` with why instead. The lock is released first either way.
    pub(crate) fn send(self, id: u64, call: PendingCall, line: Bytes) {
        let LaneGuard {
            stdin,
            mut inner,
            table,
            ..
        } = self;
        let sent = stdin.try_send(line);
        drop(stdin);
        match sent {
            Ok(()) => {
                let wake = table.insert_locked(&mut inner, id, call);
                drop(inner);
                if wake {
                    table.shared.wake.notify_one();
                }
            }
            Err(e) => {
                drop(inner);
                let server = table.shared.server.clone();
                let error = match e {
                    mpsc::error::TrySendError::Full(_) => FleetError::Overloaded { server },
                    // The writer ended: the process's stdin broke as it exits.
                    mpsc::error::TrySendError::Closed(_) => {
                        FleetError::ServerExited { server, exit: None }
                    }
                };
                table.finish(call, Err(error));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use kameo::Actor;
    use kameo::actor::{ActorRef, Spawn};
    use kameo::message::{Context, Message};

    use super::*;

    /// Keeps every message it is told, in order.
    struct Sink(Arc<Mutex<Vec<MetricEvent>>>);

    impl Actor for Sink {
        type Args = Arc<Mutex<Vec<MetricEvent>>>;
        type Error = kameo::error::Infallible;
        async fn on_start(seen: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
            Ok(Sink(seen))
        }
    }

    impl Message<RecordMetric> for Sink {
        type Reply = ();
        async fn handle(&mut self, msg: RecordMetric, _: &mut Context<Self, ()>) {
            self.0.lock().unwrap().push(msg.event);
        }
    }

    fn call() -> PendingCall {
        PendingCall {
            reply: Replier::Nobody,
            method: "tools/call".into(),
            started: Instant::now(),
            deadline: Instant::now() + Duration::from_secs(60),
            cancel: None,
            routed: false,
            record: Some(Some("echo".into())),
        }
    }

    fn answer(table: &PendingTable) {
        table.finish(call(), Ok(Value::Null.into()));
    }

    fn open(table: &PendingTable, stdin: &mpsc::Sender<Bytes>) {
        table.open_lane(LaneOpen {
            era: Era::Legacy,
            stdin: stdin.downgrade(),
            tools: Arc::new(HashSet::from(["echo".to_owned()])),
        });
    }

    /// Sends by the lane: `None` if the lane is closed; else the id if the line was queued and
    /// the call put in the table, or the answer it got at once.
    fn send(table: &PendingTable) -> Option<Result<u64, FleetError>> {
        let lane = table.lane()?;
        let id = table.next_id();
        let (tx, mut rx) = oneshot::channel();
        let call = PendingCall {
            reply: Replier::Oneshot(tx),
            ..call()
        };
        lane.send(id, call, Bytes::from_static(b"{}\n"));
        Some(match rx.try_recv() {
            Ok(answer) => Err(answer.expect_err("only failures are answered at once")),
            Err(_) => Ok(id),
        })
    }

    #[test]
    fn the_lane_sends_only_while_open_and_a_drain_closes_it() {
        let table = PendingTable::new("s".into(), None, Default::default());
        let (stdin, mut queued) = mpsc::channel(1);
        assert!(send(&table).is_none(), "closed at first");

        open(&table, &stdin);
        let lane = table.lane().unwrap();
        assert_eq!(lane.era(), Era::Legacy);
        assert_eq!(
            tool_label(lane.tools(), Some(&serde_json::json!({"name": "echo"}))),
            "echo"
        );
        assert_eq!(
            tool_label(lane.tools(), Some(&serde_json::json!({"name": "x"}))),
            UNDECLARED_TOOL
        );
        drop(lane);

        let id = send(&table).unwrap().expect("sent");
        assert_eq!(queued.try_recv().unwrap(), "{}\n");
        assert!(table.take(id).is_some(), "in the table");

        // A full queue: overloaded, and nothing left in the table.
        let id = send(&table).unwrap().expect("sent");
        let refused = send(&table).unwrap();
        assert!(matches!(refused, Err(FleetError::Overloaded { .. })));
        assert!(table.take(id + 1).is_none());
        queued.try_recv().unwrap();

        // The drain closes the lane with the same lock.
        assert_eq!(table.drain().len(), 1);
        assert!(send(&table).is_none());

        // The writer gone (the pipe broke): the server exited.
        open(&table, &stdin);
        drop(queued);
        let refused = send(&table).unwrap();
        assert!(matches!(refused, Err(FleetError::ServerExited { .. })));

        // The actor's sender is the only strong one: once it is dropped, the lane is closed.
        drop(stdin);
        assert!(send(&table).is_none());
        assert!(table.drain().is_empty());
    }

    /// No watchdog runs here, so only a full batch and the flushes send anything.
    #[tokio::test]
    async fn a_full_batch_goes_at_once_the_rest_at_the_flush_and_one_by_one_once_closed() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink::spawn(seen.clone());
        let table = PendingTable::new("s".into(), Some(sink.recipient()), Default::default());
        for _ in 0..METRIC_BATCH + 10 {
            answer(&table);
        }
        table.flush_metrics(true);
        answer(&table);
        let sizes = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let sizes: Vec<usize> = seen
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|e| match e {
                        MetricEvent::Batch(b) => b.len(),
                        _ => 1,
                    })
                    .collect();
                if sizes.len() == 3 {
                    return sizes;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("three messages");
        assert_eq!(sizes, [METRIC_BATCH, 10, 1]);
        assert!(matches!(
            seen.lock().unwrap()[2],
            MetricEvent::Request { .. }
        ));
    }
}
