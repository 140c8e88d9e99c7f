//! The metrics listener (`[metrics] listen`): `GET /metrics` answers the
//! OpenMetrics text format (which Prometheus scrapes) of [`crate::metrics::Metrics`] (the relay queue
//! gauges read at each scrape), `GET /health` answers `200 ok` when every
//! listener is accepting and `503` otherwise. Plain HTTP, meant for a
//! loopback or management address.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tracing::warn;

use crate::clock::unix_now;
use crate::context::Context;

/// The `Content-Type` of what `prometheus-client` encodes: OpenMetrics
/// 1.0 text (counters typed by their family name, samples ending in
/// `_total`, a final `# EOF`), which a parser of Prometheus's older 0.0.4
/// text format would read with the counters untyped.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics(State(ctx): State<Arc<Context>>) -> Response {
    let c = Arc::clone(&ctx);
    // The queue is a directory: read it off the reactor.
    let queue = tokio::task::spawn_blocking(move || c.queue.list()).await;
    match queue {
        Ok(Ok(listing)) => {
            let oldest = listing.messages.iter().map(|e| e.arrival).min();
            let age = oldest.map_or(0, |a| unix_now().saturating_sub(a));
            ctx.metrics.set_queue(listing.messages.len(), age);
        }
        Ok(Err(e)) => warn!(error = %e, "metrics: cannot list the relay queue"),
        Err(e) => warn!(error = %e, "metrics: queue task failed"),
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], ctx.metrics.encode()).into_response()
}

async fn health(State(ctx): State<Arc<Context>>) -> Response {
    if ctx.metrics.healthy() && !ctx.shutdown.is_cancelled() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not every listener is up\n",
        )
            .into_response()
    }
}

/// Serves `/metrics` and `/health` on `listener` until shutdown.
pub async fn serve(ctx: Arc<Context>, listener: TcpListener) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(Arc::clone(&ctx));
    let stop = ctx.shutdown.clone().cancelled_owned();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        warn!(error = %e, "metrics listener failed");
    }
}
