//! The HTTP listener: `/metrics` for Prometheus, and the count of every response by status.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
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

/// Wraps `router` so that every response it gives is counted by status code
/// (`mcp_fleet_http_responses_total`). A busy collector drops the count rather than delay the
/// response.
pub fn count_responses(router: Router, metrics: Recipient<RecordMetric>) -> Router {
    router.layer(axum::middleware::map_response(move |response: Response| {
        let event = MetricEvent::HttpResponse {
            status: response.status().as_u16(),
        };
        let _ = metrics.tell(RecordMetric { event }).try_send();
        async move { response }
    }))
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
