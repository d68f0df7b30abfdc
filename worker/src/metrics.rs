//! A worker's own HTTP endpoint (`tilefarm worker --metrics-listen`):
//! `/metrics` for Prometheus, `/healthz` for a liveness probe, and `/drain`,
//! the hook a pod's `preStop` calls: it stops the worker taking work and
//! answers once the tasks in hand are finished. Also what every process's
//! `/metrics` has of the job store ([`JobStore::register_metrics`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tilefarm_queue::{JobStore, OPENMETRICS_CONTENT_TYPE, openmetrics_text};
use tokio_util::sync::CancellationToken;

/// The kind of a task (`ingest`, `edit`, `render`, `invalidate`), as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// Counters of tasks by kind.
pub type ByKind = Family<KindLabel, Counter>;

/// What a worker reports at `/metrics`.
#[derive(Debug)]
pub struct WorkerMetrics {
    /// Tasks this process runs at once.
    pub slots: Gauge,
    /// Tasks it is running now.
    pub in_flight: Gauge,
    pub started: ByKind,
    pub succeeded: ByKind,
    pub retried: ByKind,
    pub dead_lettered: ByKind,
    /// Rasterizing one metatile.
    pub render_seconds: Histogram,
    /// Encoding a metatile's tiles as PNG.
    pub encode_seconds: Histogram,
    /// Writing (or deleting) a task's tiles in the object store.
    pub store_seconds: Histogram,
    /// Tiles render tasks produced.
    pub tiles_rendered: Counter,
    /// Of those, tiles of one colour (one PNG each colour, no encode).
    pub tiles_one_colour: Counter,
    /// Of those, tiles not written: transparent ones, and unchanged ones of a change.
    pub tiles_skipped: Counter,
    /// Prepared layers found in the worker's cache, and loaded from the store.
    pub layer_cache_hits: Counter,
    pub layer_cache_misses: Counter,
    /// Layer versions the cache holds.
    pub layer_cache_layers: Gauge,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        let seconds = || Histogram::new(exponential_buckets(0.001, 2.0, 16));
        WorkerMetrics {
            slots: Gauge::default(),
            in_flight: Gauge::default(),
            started: ByKind::default(),
            succeeded: ByKind::default(),
            retried: ByKind::default(),
            dead_lettered: ByKind::default(),
            render_seconds: seconds(),
            encode_seconds: seconds(),
            store_seconds: seconds(),
            tiles_rendered: Counter::default(),
            tiles_one_colour: Counter::default(),
            tiles_skipped: Counter::default(),
            layer_cache_hits: Counter::default(),
            layer_cache_misses: Counter::default(),
            layer_cache_layers: Gauge::default(),
        }
    }
}

impl WorkerMetrics {
    /// Counts a task of `kind` in `family`.
    pub fn count(family: &ByKind, kind: &str) {
        family.get_or_create(&KindLabel { kind: kind.into() }).inc();
    }

    /// Records `took` in a histogram of seconds.
    pub fn time(histogram: &Histogram, took: Duration) {
        histogram.observe(took.as_secs_f64());
    }

    /// Registers every metric in `r` (the scrape's `tilefarm_worker` part).
    fn register(&self, r: &mut Registry) {
        r.register(
            "slots",
            "Tasks this worker runs at once (--concurrency)",
            self.slots.clone(),
        );
        r.register(
            "tasks_in_flight",
            "Tasks running now",
            self.in_flight.clone(),
        );
        r.register(
            "tasks_started",
            "Tasks started, by kind",
            self.started.clone(),
        );
        r.register(
            "tasks_succeeded",
            "Tasks finished, by kind",
            self.succeeded.clone(),
        );
        r.register(
            "tasks_retried",
            "Tasks that failed and will run again after a pause, by kind",
            self.retried.clone(),
        );
        r.register(
            "tasks_dead_lettered",
            "Tasks given up on (sent to the dead-letter queue), by kind",
            self.dead_lettered.clone(),
        );
        r.register(
            "render_seconds",
            "Seconds rasterizing a metatile",
            self.render_seconds.clone(),
        );
        r.register(
            "encode_seconds",
            "Seconds encoding a metatile's tiles as PNG",
            self.encode_seconds.clone(),
        );
        r.register(
            "store_seconds",
            "Seconds writing a render task's tiles to the object store",
            self.store_seconds.clone(),
        );
        r.register(
            "tiles_rendered",
            "Tiles render tasks produced",
            self.tiles_rendered.clone(),
        );
        r.register(
            "tiles_one_colour",
            "Tiles of one colour (no encode of their own)",
            self.tiles_one_colour.clone(),
        );
        r.register(
            "tiles_skipped",
            "Tiles not written: transparent, or unchanged by a change",
            self.tiles_skipped.clone(),
        );
        r.register(
            "layer_cache_hits",
            "Prepared layers found in this worker's cache",
            self.layer_cache_hits.clone(),
        );
        r.register(
            "layer_cache_misses",
            "Prepared layers loaded from the object store",
            self.layer_cache_misses.clone(),
        );
        r.register(
            "layer_cache_layers",
            "Layer versions this worker's cache holds",
            self.layer_cache_layers.clone(),
        );
    }
}

/// The page a Prometheus scrape gets.
pub fn openmetrics(registry: &Registry) -> Response {
    (
        [(CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        openmetrics_text(registry),
    )
        .into_response()
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
    store: Option<JobStore>,
    drain: Drain,
}

/// The endpoint's routes. With `store`, `/metrics` has the job store's figures
/// too ([`JobStore::register_metrics`]): give it where no API in the same process
/// serves them.
pub fn metrics_router(
    metrics: Arc<WorkerMetrics>,
    store: Option<JobStore>,
    drain: Drain,
) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(healthz))
        .route("/drain", get(drain_worker).post(drain_worker))
        .with_state(EndpointState {
            metrics,
            store,
            drain,
        })
}

async fn serve_metrics(State(state): State<EndpointState>) -> Response {
    let mut registry = Registry::with_prefix("tilefarm");
    state
        .metrics
        .register(registry.sub_registry_with_prefix("worker"));
    if let Some(store) = &state.store {
        store.register_metrics(&mut registry).await;
    }
    openmetrics(&registry)
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
    store: Option<JobStore>,
    drain: Drain,
) -> std::io::Result<()> {
    let drained = drain.drained.clone();
    axum::serve(listener, metrics_router(metrics, store, drain))
        .with_graceful_shutdown(async move { drained.cancelled().await })
        .await
}
