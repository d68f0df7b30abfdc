//! tilefarm's HTTP API: uploads, job status (polling and server-sent events),
//! layer metadata and TileJSON, the tile origin for the CDN, and the endpoints
//! ops need (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`).
//!
//! The API keeps no state of its own: every answer comes from the job store and
//! the object store, so any number of copies can serve behind a load balancer.
#![forbid(unsafe_code)]

mod error;
mod features;
mod jobs;
mod layers;
mod ops;
mod tiles;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use tilefarm_queue::{JobStore, LocalQueue};
use tilefarm_worker::{BrokerConfig, Objects};

pub use error::{ApiError, ApiResult};

/// Settings of the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Writes (uploads, cancels) and the job list need `Authorization: Bearer
    /// TOKEN` when set.
    pub token: Option<String>,
    /// The largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// The deepest zoom an upload may ask for.
    pub max_zoom: u8,
    /// `Cache-Control` of tiles served by the origin.
    pub cache_control: String,
    /// Tile size of the rendered pyramids.
    pub tile_size: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            token: None,
            max_upload_bytes: 256 << 20,
            max_zoom: 18,
            cache_control: tilefarm_worker::DEFAULT_CACHE_CONTROL.into(),
            tile_size: 256,
        }
    }
}

/// Where the farm's tasks go.
#[derive(Clone, Debug)]
pub enum Transport {
    /// RabbitMQ.
    Broker(BrokerConfig),
    /// The in-process queue of the embedded mode.
    Local(LocalQueue),
}

/// What every handler shares.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub store: JobStore,
    pub objects: Objects,
    pub config: ApiConfig,
    /// Where tasks go, for `/readyz` and the queue depths in `/metrics`.
    pub transport: Transport,
    metrics: ops::Metrics,
    /// The tile answered where the data does not reach.
    transparent: Bytes,
}

impl AppState {
    pub fn new(
        store: JobStore,
        objects: Objects,
        config: ApiConfig,
        transport: Transport,
    ) -> AppState {
        let transparent = tilefarm_renderer::encode_png(
            &tilefarm_renderer::TileImage::Uniform(tilefarm_renderer::Rgba([0, 0, 0, 0])),
            config.tile_size,
        )
        .expect("a transparent tile encodes");
        AppState(Arc::new(Inner {
            store,
            objects,
            config,
            transport,
            metrics: ops::Metrics::default(),
            transparent: Bytes::from(transparent),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    let writes = Router::new()
        .route("/v1/layers", axum::routing::post(layers::upload))
        .route("/v1/layers/{id}/edits", axum::routing::post(layers::edit))
        .route("/v1/layers/{id}/data", axum::routing::put(layers::replace))
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/jobs/{id}", axum::routing::delete(jobs::cancel))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/v1/jobs/{id}", get(jobs::show))
        .route("/v1/jobs/{id}/events", get(jobs::events))
        .route("/v1/layers/{id}", get(layers::show))
        .route("/v1/layers/{id}/tilejson", get(layers::tilejson))
        .route("/v1/layers/{id}/features", get(features::at))
        .route("/tiles/{layer}/{z}/{x}/{y}", get(tiles::tile))
        .route("/", get(ops::index))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .merge(writes)
        .fallback(|| async {
            ApiError::not_found("no_such_route", "no such endpoint; see /openapi.json")
        })
        .with_state(state)
}

/// Refuses a request without the configured bearer token.
async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(token) = &state.config.token {
        let given = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this endpoint needs the header Authorization: Bearer TOKEN",
            ));
        }
    }
    Ok(next.run(request).await)
}
