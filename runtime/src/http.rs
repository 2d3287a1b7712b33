//! The HTTP listener: `/metrics` for Prometheus, and the count of every response by status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::get;
use fleet_protocol::messages::metrics::{MetricEvent, RecordMetric};
use kameo::actor::Recipient;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The router: `GET /metrics` renders the Prometheus text exposition.
pub fn router(prometheus: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let body = prometheus.render();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
                    .into_response()
            }
        }),
    )
}

/// The paths the listener serves: the values of the `path` label of the response counter,
/// with `/api` for every admin route (anything else is `other`, so a scanner cannot add series).
pub const PATHS: [&str; 5] = ["/mcp", "/metrics", "/healthz", "/readyz", "/api"];

fn path_label(path: &str) -> &'static str {
    if path.starts_with("/api/") {
        return "/api";
    }
    PATHS
        .iter()
        .find(|p| **p == path)
        .copied()
        .unwrap_or("other")
}

/// How often the counts of HTTP responses go to the collector.
pub const RESPONSES_REPORT_EVERY: Duration = Duration::from_millis(100);

/// Wraps `router` so that every response it gives is counted by path and status code
/// (`mcp_fleet_http_responses_total`). The counts go to the collector
/// [`RESPONSES_REPORT_EVERY`] after the first response since the last report (by a task this
/// starts, so call it within the runtime; an idle listener wakes nothing) and when the router is
/// dropped, in one message: no message to the collector on the path of each request. A busy
/// collector drops the counts rather than delay anything.
pub fn count_responses(router: Router, metrics: Recipient<RecordMetric>) -> Router {
    let wake = Arc::new(Notify::new());
    let tally = Arc::new(ResponseTally {
        counts: Mutex::default(),
        metrics,
        wake: wake.clone(),
    });
    // Holds no strong reference while it waits, so the tally drops with the router.
    let weak = Arc::downgrade(&tally);
    tokio::spawn(async move {
        loop {
            wake.notified().await;
            tokio::time::sleep(RESPONSES_REPORT_EVERY).await;
            match weak.upgrade() {
                Some(tally) => tally.report(),
                // The router is gone; its tally reported what was left when dropped.
                None => break,
            }
        }
    });
    router.layer(axum::middleware::from_fn_with_state(
        tally,
        |State(tally): State<Arc<ResponseTally>>, request: Request, next: Next| async move {
            let path = path_label(request.uri().path());
            let response = next.run(request).await;
            tally.add(path, response.status().as_u16());
            response
        },
    ))
}

/// Responses counted since the last report, by path and status code.
struct ResponseTally {
    counts: Mutex<HashMap<(&'static str, u16), u64>>,
    metrics: Recipient<RecordMetric>,
    /// Told when a count starts after a report, and when the tally is dropped.
    wake: Arc<Notify>,
}

impl ResponseTally {
    /// Held for one map operation; a poisoned lock still holds usable counts.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(&'static str, u16), u64>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, path: &'static str, status: u16) {
        let first = {
            let mut counts = self.lock();
            let first = counts.is_empty();
            let n = counts.entry((path, status)).or_default();
            *n = n.saturating_add(1);
            first
        };
        if first {
            self.wake.notify_one();
        }
    }

    /// Sends what was counted since the last report, if anything, in one message.
    fn report(&self) {
        let counts = std::mem::take(&mut *self.lock());
        let mut events: Vec<MetricEvent> = counts
            .into_iter()
            .map(|((path, status), count)| MetricEvent::HttpResponses {
                path,
                status,
                count,
            })
            .collect();
        let event = match events.pop() {
            None => return,
            Some(only) if events.is_empty() => only,
            Some(last) => {
                events.push(last);
                MetricEvent::Batch(events)
            }
        };
        let _ = self.metrics.tell(RecordMetric { event }).try_send();
    }
}

impl Drop for ResponseTally {
    fn drop(&mut self) {
        self.report();
        // The reporter finds the tally gone and ends.
        self.wake.notify_one();
    }
}

/// How long a client may take to send a request's headers, counted from when the connection
/// is ready for a request: a new connection, or a kept-alive one after its last response. A
/// client that sends nothing (or half a request) for this long is disconnected, so idle or
/// stalled connections cannot pile up until the process runs out of file descriptors. Longer
/// than the idle timeout of the proxies and client pools that commonly sit in front (60 to
/// 90 s), so that they, not we, close an idle connection: a request sent just as we closed
/// one would be lost to them.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the open connections get to finish their requests once `serve` is told to stop
/// (by then every server has stopped and every session ended). A client that stopped reading
/// an event stream, or sent half a request, would otherwise hold mcp-fleet's exit for up to
/// [`HEADER_READ_TIMEOUT`], or for ever, past a service manager's stop timeout.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown` resolves, then lets the open connections
/// finish their requests, for at most [`DRAIN_LIMIT`]. HTTP/1.1 by hyper, as `axum::serve`
/// does, plus the header timeout above. Connections are `TCP_NODELAY`: an SSE event (progress, a server's notification) is
/// sent when written, not held back by Nagle's algorithm until the client acknowledges the one
/// before (up to its delayed-ACK timeout, 40 ms on Linux).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, shutdown, HEADER_READ_TIMEOUT).await
}

/// [`serve`] with another header timeout.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    header_read_timeout: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
        }
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "an HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_LIMIT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            limit_ms = DRAIN_LIMIT.as_millis() as u64,
            "HTTP connections still open after the drain limit (a client not reading, or a request sent in part): closed"
        );
    }
    Ok(())
}

/// An accept that failed: a connection reset before it was accepted is nothing; anything else
/// (out of file descriptors, say) is logged, and accepting pauses a second for it to pass,
/// as `axum::serve` does.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "could not accept an HTTP connection; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::convert::Infallible;
    use std::time::Duration;

    use axum::Router;
    use axum::routing::get;
    use fleet_protocol::messages::metrics::{MetricEvent, RecordMetric};
    use kameo::actor::{ActorRef, Spawn};
    use kameo::message::Context;
    use tokio::sync::{mpsc, oneshot};

    use super::{count_responses, path_label, serve};

    /// Passes on every metric event it is told.
    struct Sink(mpsc::UnboundedSender<MetricEvent>);

    impl kameo::Actor for Sink {
        type Args = Self;
        type Error = Infallible;
        async fn on_start(sink: Self, _: ActorRef<Self>) -> Result<Self, Infallible> {
            Ok(sink)
        }
    }

    impl kameo::message::Message<RecordMetric> for Sink {
        type Reply = ();
        async fn handle(&mut self, msg: RecordMetric, _: &mut Context<Self, ()>) {
            let _ = self.0.send(msg.event);
        }
    }

    /// Adds the response counts in `event` to `into`.
    fn add_counts(event: &MetricEvent, into: &mut BTreeMap<(&'static str, u16), u64>) {
        match event {
            MetricEvent::HttpResponses {
                path,
                status,
                count,
            } => *into.entry((*path, *status)).or_default() += count,
            MetricEvent::Batch(events) => events.iter().for_each(|e| add_counts(e, into)),
            other => panic!("not a response count: {other:?}"),
        }
    }

    #[tokio::test]
    async fn responses_are_counted_in_few_messages_and_the_last_when_the_router_is_dropped() {
        const REQUESTS: u64 = 50;
        let (tx, mut events) = mpsc::unbounded_channel();
        let sink = Sink::spawn(Sink(tx));
        let router = count_responses(
            Router::new().route("/mcp", get(|| async { "ok" })),
            sink.recipient(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, router, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        let get = async |path: &str| {
            let r = client.get(format!("http://{addr}{path}")).send().await;
            r.unwrap().status().as_u16()
        };
        for _ in 0..REQUESTS {
            assert_eq!(get("/mcp").await, 200);
        }
        assert_eq!(get("/nope").await, 404);

        // Every response is counted, in a few messages (one every 100 ms at most), not one each.
        let want = BTreeMap::from([(("/mcp", 200), REQUESTS), (("other", 404), 1)]);
        let mut counted = BTreeMap::new();
        let mut messages = 0;
        while counted != want {
            let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .unwrap_or_else(|_| panic!("only {counted:?} counted"))
                .unwrap();
            add_counts(&event, &mut counted);
            messages += 1;
        }
        assert!(messages < REQUESTS / 2, "{messages} messages");

        // The listener stops right after one more response: its count comes as the router drops.
        assert_eq!(get("/mcp").await, 200);
        drop(client);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        let mut last = BTreeMap::new();
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("the last count")
            .unwrap();
        add_counts(&event, &mut last);
        assert_eq!(last, BTreeMap::from([(("/mcp", 200), 1)]));
    }

    #[tokio::test]
    async fn a_client_that_does_not_finish_its_headers_is_disconnected() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let router = Router::new().route("/mcp", get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let timeout = Duration::from_millis(300);
        let server = tokio::spawn(super::serve_with(
            listener,
            router,
            async {
                let _ = stopped.await;
            },
            timeout,
        ));
        // Half a request, nothing at all, and a request answered then left idle.
        let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
        half.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        for (what, mut stream) in [("half", half), ("silent", silent), ("idle", idle)] {
            let mut got = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got))
                .await
                .unwrap_or_else(|_| panic!("the {what} connection is still open"))
                .unwrap_or_default();
            let got = String::from_utf8_lossy(&got);
            // The idle one got its answer first; the others get nothing or a 408.
            match what {
                "idle" => assert!(got.starts_with("HTTP/1.1 200"), "{got}"),
                _ => assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}"),
            }
        }
        // The listener still serves.
        let answer = reqwest::get(format!("http://{addr}/mcp")).await.unwrap();
        assert_eq!(answer.status(), 200);
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the listener stops")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn each_served_path_has_its_label_and_the_rest_is_other() {
        for (path, label) in [
            ("/mcp", "/mcp"),
            ("/metrics", "/metrics"),
            ("/healthz", "/healthz"),
            ("/readyz", "/readyz"),
            ("/api/servers", "/api"),
            ("/api/servers/x/logs", "/api"),
            ("/api", "/api"),
            ("/apix", "other"),
            ("/mcp/", "other"),
            ("/", "other"),
            ("/../etc/passwd", "other"),
        ] {
            assert_eq!(path_label(path), label, "{path}");
        }
    }
}
