//! tilefarm's HTTP API: uploads, job status (polling and server-sent events),
//! layer metadata and TileJSON, the tile origin for the CDN, and the endpoints
//! ops need (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`).
//!
//! The API keeps no state of its own: every answer comes from the job store and
//! the object store, so any number of copies can serve behind a load balancer.
#![forbid(unsafe_code)]

mod error;
mod features;
mod forwarded;
mod jobs;
mod layers;
mod limits;
mod ops;
mod server;
mod tilejson;
mod tiles;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tilefarm_objects::Objects;
use tilefarm_queue::BrokerConfig;
use tilefarm_queue::{JobStore, LocalQueue};

pub use error::{ApiError, ApiResult};
pub use forwarded::{NotANetwork, parse_trusted};
pub use ipnet::IpNet;
pub use server::{BodyTooSlow, ServerLimits, serve};

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
    /// Web origins whose pages may call the API (CORS); `*` is any.
    pub cors_origins: Vec<String>,
    /// Proxies (a CDN, a load balancer) whose `X-Forwarded-Host` and
    /// `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Writes a minute for each client address and each token (0: no limit).
    pub writes_per_minute: u32,
    /// Job event streams open at once.
    pub max_event_streams: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            token: None,
            max_upload_bytes: 256 << 20,
            max_zoom: 18,
            cache_control: tilefarm_objects::DEFAULT_CACHE_CONTROL.into(),
            tile_size: 256,
            cors_origins: vec!["*".into()],
            trusted_proxies: Vec::new(),
            writes_per_minute: 300,
            max_event_streams: 256,
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
    write_limits: limits::WriteLimits,
    streams: limits::StreamSlots,
    /// The tile answered where the data does not reach.
    transparent: Bytes,
    /// Published layer versions' regions, as the tile origin has read them.
    regions: tiles::RegionCache,
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
            write_limits: limits::WriteLimits::new(config.writes_per_minute),
            streams: limits::StreamSlots::new(config.max_event_streams),
            config,
            transport,
            metrics: ops::Metrics::default(),
            transparent: Bytes::from(transparent),
            regions: tiles::RegionCache::default(),
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
        .route("/v1/layers/{id}", axum::routing::delete(layers::delete))
        .route("/v1/layers/{id}/edits", axum::routing::post(layers::edit))
        .route("/v1/layers/{id}/data", axum::routing::put(layers::replace))
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/jobs/{id}", axum::routing::delete(jobs::cancel))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        // Before the token check, so that guessing tokens counts too.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            limits::limit_writes,
        ));
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
        .layer(middleware::from_fn(json_errors))
        .layer(cors(&state.config.cors_origins))
        .with_state(state)
}

/// CORS for map clients and pages on other origins: tiles, TileJSON and the
/// public reads from any allowed origin, preflights answered.
fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::ETAG,
            header::RETRY_AFTER,
            header::LOCATION,
            header::CONTENT_LENGTH,
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

/// Refuses a request without the configured bearer token.
async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(token) = &state.config.token {
        let header = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let refused = |message: &str| {
            let mut e = ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                message,
            );
            e.challenge = true;
            Err(e)
        };
        match header.map(bearer) {
            None => return refused("this endpoint needs the header Authorization: Bearer TOKEN"),
            Some(None) => {
                return refused("the Authorization header is not of the form Bearer TOKEN");
            }
            Some(Some(given)) => {
                // In constant time, so the answer's timing tells nothing of the token.
                use subtle::ConstantTimeEq;
                if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
                    return refused("the bearer token is wrong");
                }
            }
        }
    }
    Ok(next.run(request).await)
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme in any
/// case, as RFC 9110 has it).
fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Gives every error answer the JSON body of [`ApiError`], including those
/// the framework makes itself (a query or path that cannot be read, a method
/// the route does not have), which come as plain text or empty.
async fn json_errors(request: Request, next: Next) -> Response {
    use axum::http::header::CONTENT_TYPE;
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let (code, fallback) = match status.as_u16() {
        405 => (
            "method_not_allowed",
            "this endpoint does not take that method; see /openapi.json",
        ),
        408 => ("request_timeout", "the request came too slowly"),
        413 => ("too_large", "the request is too large"),
        415 => (
            "unsupported_media_type",
            "the request's Content-Type is not one this endpoint takes",
        ),
        422 | 400 => ("invalid_request", "the request could not be read"),
        _ => ("error", "the request failed"),
    };
    let message = if text.is_empty() {
        fallback.to_string()
    } else {
        text
    };
    let mut json = ApiError::new(status, code, message).into_response();
    for name in [axum::http::header::ALLOW, axum::http::header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            json.headers_mut().insert(name, v.clone());
        }
    }
    json
}
