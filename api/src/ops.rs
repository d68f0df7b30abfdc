//! What ops need: liveness, readiness, Prometheus metrics and the API's
//! description.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use object_store::ObjectStoreExt;
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};
use tilefarm_queue::{Broker, DEAD_QUEUE, WORK_QUEUES};
use tilefarm_queue::{BrokerConfig, OPENMETRICS_CONTENT_TYPE, openmetrics_text};

use crate::{AppState, Transport};

/// Counters kept by this API process.
#[derive(Debug, Default)]
pub struct Metrics {
    pub uploads: Counter,
    pub edits: Counter,
    pub replacements: Counter,
    pub tile_stored: Counter,
    pub tile_empty: Counter,
    pub tile_region: Counter,
    pub tile_not_modified: Counter,
    /// The connection `/readyz` and `/metrics` read the queues over.
    broker: BrokerProbe,
}

/// One broker connection for the process's checks and metrics, kept open
/// across scrapes: made on first use, and again only after it breaks.
#[derive(Debug, Default)]
struct BrokerProbe {
    broker: tokio::sync::Mutex<Option<Broker>>,
}

impl BrokerProbe {
    /// Ready messages in each work queue and the dead-letter queue.
    async fn depths(&self, config: &BrokerConfig) -> Result<Vec<(&'static str, u32)>, String> {
        let mut held = self.broker.lock().await;
        if held
            .as_ref()
            .is_some_and(|b| !b.connection().status().connected())
        {
            *held = None;
        }
        let result = tokio::time::timeout(CHECK_TIMEOUT, async {
            if held.is_none() {
                *held = Some(Broker::connect(&config.url, config.policy.clone()).await?);
            }
            let broker = held.as_ref().expect("connected just now");
            let mut depths = Vec::new();
            for q in WORK_QUEUES.into_iter().chain([DEAD_QUEUE]) {
                depths.push((q, broker.depth(q).await?));
            }
            Ok::<_, tilefarm_queue::BrokerError>(depths)
        })
        .await;
        match result {
            Ok(Ok(depths)) => Ok(depths),
            failed => {
                // Whatever broke, the next check starts on a fresh connection.
                if let Some(broker) = held.take() {
                    let _ = broker.connection().close(200, "reconnecting".into()).await;
                }
                Err(match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {CHECK_TIMEOUT:?}"),
                })
            }
        }
    }
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

async fn check<F, T, E>(what: F) -> Result<T, String>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    match tokio::time::timeout(CHECK_TIMEOUT, what).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

/// Ready messages in each work queue and the dead-letter queue.
async fn queue_depths(state: &AppState) -> Result<Vec<(&'static str, u32)>, String> {
    let config = match &state.transport {
        Transport::Broker(config) => config,
        Transport::Local(queue) => {
            let mut depths: Vec<(&'static str, u32)> = WORK_QUEUES
                .into_iter()
                .map(|q| (q, queue.depth(q) as u32))
                .collect();
            depths.push((DEAD_QUEUE, queue.dead().len() as u32));
            return Ok(depths);
        }
    };
    state.metrics.broker.depths(config).await
}

/// `GET /readyz`: the database, the object store and the broker all answer.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = check(state.store.ping()).await;
    let objects = check(async {
        match state
            .objects
            .store
            .head(&state.objects.prefix.clone().join(".readyz"))
            .await
        {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    })
    .await;
    let broker = queue_depths(&state).await.map(|_| ());
    let show = |r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(e) => json!(e),
    };
    let ready = database.is_ok() && objects.is_ok() && broker.is_ok();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": {
            "database": show(&database),
            "object_store": show(&objects),
            "broker": match state.transport {
                Transport::Broker(_) => show(&broker),
                Transport::Local(_) => json!("embedded"),
            },
        },
    });
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format. Queue depths are the scaling signal;
/// the job durations and the outbox come from the job store.
pub async fn metrics(State(state): State<AppState>) -> Response {
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;

    let mut registry = Registry::with_prefix("tilefarm");
    let m = &state.metrics;
    registry.register("uploads", "Uploads accepted", m.uploads.clone());
    registry.register("edits", "Edits of layers accepted", m.edits.clone());
    registry.register(
        "replacements",
        "New data for existing layers accepted",
        m.replacements.clone(),
    );
    let tiles = Family::<Vec<(String, String)>, Counter>::default();
    for (result, c) in [
        ("stored", &m.tile_stored),
        ("transparent", &m.tile_empty),
        ("region", &m.tile_region),
        ("not_modified", &m.tile_not_modified),
    ] {
        tiles
            .get_or_create(&vec![("result".into(), result.into())])
            .inc_by(c.get());
    }
    registry.register(
        "tile_responses",
        "Tile requests by what answered them: a stored tile, the transparent tile, a one-colour region's tile, or 304",
        tiles,
    );
    let jobs = Family::<Vec<(String, String)>, Gauge>::default();
    if let Ok(counts) = state.store.job_counts().await {
        for (job_state, n) in counts {
            jobs.get_or_create(&vec![("state".into(), job_state)])
                .set(n);
        }
    }
    registry.register("jobs", "Jobs by state", jobs);
    let depth = Family::<Vec<(String, String)>, Gauge>::default();
    let (broker_up, dead_letters) = (Gauge::<i64>::default(), Gauge::<i64>::default());
    if let Ok(depths) = queue_depths(&state).await {
        broker_up.set(1);
        for (queue, n) in depths {
            depth
                .get_or_create(&vec![("queue".into(), queue.into())])
                .set(i64::from(n));
            if queue == DEAD_QUEUE {
                dead_letters.set(i64::from(n));
            }
        }
    }
    registry.register(
        "queue_ready_messages",
        "Messages ready in each queue",
        depth,
    );
    registry.register(
        "dead_letters",
        "Tasks in the dead-letter queue (see tilefarm dlq list)",
        dead_letters,
    );
    registry.register(
        "broker_up",
        "1 when the queues could be read from the broker at this scrape",
        broker_up,
    );
    state.store.register_metrics(&mut registry).await;
    (
        [(CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        openmetrics_text(&registry),
    )
        .into_response()
}

/// The page, built from `web/` by `npm run build` (Leaflet and the page's
/// script and styles in one file).
const PAGE: &str = include_str!("../../web/dist/index.html");
/// Where the page takes the server's settings from.
const PAGE_CONFIG: &str = r#"<script id="tilefarm-config" type="application/json">{}</script>"#;

/// `GET /`: a page to upload layers, follow their jobs, look at their tiles and
/// edit their features; it is told the upload limit, the deepest zoom and
/// whether a token is needed.
pub async fn index(State(state): State<AppState>) -> axum::response::Html<String> {
    let settings = json!({
        "max_upload_bytes": state.config.max_upload_bytes,
        "max_zoom": state.config.max_zoom,
        "token_required": state.config.token.is_some(),
    });
    let tag = PAGE_CONFIG.replace("{}", &settings.to_string());
    axum::response::Html(PAGE.replacen(PAGE_CONFIG, &tag, 1))
}

/// `GET /openapi.json`
pub async fn openapi() -> Response {
    (
        [(CONTENT_TYPE, "application/json")],
        include_str!("../openapi.json"),
    )
        .into_response()
}
