//! A worker's own HTTP endpoint (`tilefarm worker --metrics-listen`):
//! `/metrics` for Prometheus, `/healthz` for a liveness probe, and `/drain`,
//! the hook a pod's `preStop` calls: it stops the worker taking work and
//! answers once the tasks in hand are finished.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// What a worker reports at `/metrics`.
#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Tasks this process runs at once.
    pub slots: Gauge,
}

impl WorkerMetrics {
    fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix("tilefarm_worker");
        registry.register(
            "slots",
            "Tasks this worker runs at once (--concurrency)",
            self.slots.clone(),
        );
        registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry()).expect("writing to a string");
        text
    }
}

/// How a worker is stopped from outside and tells that it has stopped.
#[derive(Clone, Debug, Default)]
pub struct Drain {
    /// Cancelled to stop taking work (as SIGTERM does).
    pub stop: CancellationToken,
    /// Cancelled once the worker has finished the tasks in hand.
    pub drained: CancellationToken,
}

#[derive(Clone, Debug)]
struct EndpointState {
    metrics: Arc<WorkerMetrics>,
    drain: Drain,
}

/// The endpoint's routes.
pub fn metrics_router(metrics: Arc<WorkerMetrics>, drain: Drain) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(healthz))
        .route("/drain", get(drain_worker).post(drain_worker))
        .with_state(EndpointState { metrics, drain })
}

async fn serve_metrics(State(state): State<EndpointState>) -> Response {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn healthz(State(state): State<EndpointState>) -> Response {
    let status = if state.drain.stop.is_cancelled() {
        "draining"
    } else {
        "ok"
    };
    axum::Json(serde_json::json!({ "status": status })).into_response()
}

/// Stops the worker taking work and answers when the tasks in hand are done.
async fn drain_worker(State(state): State<EndpointState>) -> Response {
    if !state.drain.stop.is_cancelled() {
        tracing::info!("drain requested: stopping");
        state.drain.stop.cancel();
    }
    state.drain.drained.cancelled().await;
    axum::Json(serde_json::json!({ "status": "drained" })).into_response()
}

/// Serves the endpoint on `listener` until the worker has drained; a `/drain`
/// waiting for that still gets its answer.
pub async fn serve_worker_endpoint(
    listener: tokio::net::TcpListener,
    metrics: Arc<WorkerMetrics>,
    drain: Drain,
) -> std::io::Result<()> {
    let drained = drain.drained.clone();
    axum::serve(listener, metrics_router(metrics, drain))
        .with_graceful_shutdown(async move { drained.cancelled().await })
        .await
}
