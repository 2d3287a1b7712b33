//! The HTTP listener: `/metrics` for Prometheus, and the count of every response by status.

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

/// The paths the listener serves: the values of the `path` label of the response counter
/// (anything else is `other`, so a scanner cannot add series).
pub const PATHS: [&str; 2] = ["/mcp", "/metrics"];

fn path_label(path: &str) -> &'static str {
    PATHS
        .iter()
        .find(|p| **p == path)
        .copied()
        .unwrap_or("other")
}

/// Wraps `router` so that every response it gives is counted by path and status code
/// (`mcp_fleet_http_responses_total`). A busy collector drops the count rather than delay the
/// response.
pub fn count_responses(router: Router, metrics: Recipient<RecordMetric>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        metrics,
        |State(metrics): State<Recipient<RecordMetric>>, request: Request, next: Next| async move {
            let path = path_label(request.uri().path());
            let response = next.run(request).await;
            let event = MetricEvent::HttpResponse {
                path,
                status: response.status().as_u16(),
            };
            let _ = metrics.tell(RecordMetric { event }).try_send();
            response
        },
    ))
}

/// Serves `router` on `listener` until `shutdown` resolves. Connections are `TCP_NODELAY`:
/// an SSE event (progress, a server's notification) is sent when written, not held back by
/// Nagle's algorithm until the client acknowledges the one before (up to its delayed-ACK
/// timeout, 40 ms on Linux).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY on a connection");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
