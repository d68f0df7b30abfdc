//! The tile origin the CDN pulls from: `/tiles/{layer}/{z}/{x}/{y}.png`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use object_store::ObjectStoreExt;
use std::collections::HashMap;
use std::sync::Arc;

use tilefarm_objects::Objects;
use tilefarm_queue::DEEPEST_ZOOM;
use tilefarm_renderer::UniformPngs;
use tilefarm_renderer::{Regions, TileId};
use uuid::Uuid;

use crate::jobs::parse_id;
use crate::{ApiError, ApiResult, AppState};

/// How long a tile read may take before the origin answers 503.
const TILE_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// How many layer versions' regions the origin keeps in memory.
const REGIONS_KEPT: usize = 64;

/// Published layer versions' regions, read from the store once each, and the
/// PNG of each region colour. A version's regions never change, so nothing
/// goes stale: a new version is a new entry.
#[derive(Debug, Default)]
pub struct RegionCache {
    versions: std::sync::Mutex<HashMap<(Uuid, i32), Arc<Regions>>>,
    pngs: UniformPngs,
}

impl RegionCache {
    async fn get(
        &self,
        objects: &Objects,
        layer: Uuid,
        version: i32,
    ) -> Result<Arc<Regions>, tilefarm_objects::RegionsReadError> {
        if let Some(found) = self.versions.lock().expect("lock").get(&(layer, version)) {
            return Ok(found.clone());
        }
        let regions = Arc::new(objects.get_regions(layer, version).await?);
        let mut versions = self.versions.lock().expect("lock");
        if versions.len() >= REGIONS_KEPT {
            versions.clear();
        }
        versions.insert((layer, version), regions.clone());
        Ok(regions)
    }
}

/// `read` of the tile store, or the 503 the origin answers when the store
/// fails or gives no answer within [`TILE_READ_TIMEOUT`] (`what` says what
/// was read).
async fn from_store<T, E: std::fmt::Display>(
    what: impl std::fmt::Display,
    read: impl std::future::Future<Output = Result<T, E>>,
) -> ApiResult<T> {
    const FAILED: &str = "the tile store is not answering";
    match tokio::time::timeout(TILE_READ_TIMEOUT, read).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) => Err(ApiError::internal(FAILED, e)),
        Err(_) => Err(ApiError::internal(
            FAILED,
            format!("no answer within {TILE_READ_TIMEOUT:?} for {what}"),
        )),
    }
}

/// The strong ETag of a tile: a hash of its bytes.
pub fn etag(png: &[u8]) -> String {
    format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(png))
}

fn parse_tile(z: &str, x: &str, y: &str) -> Option<TileId> {
    TileId::from_path(z, x, y).filter(|t| t.z <= DEEPEST_ZOOM)
}

/// `GET /tiles/{layer}/{z}/{x}/{y}.png`: the stored tile, or where none is
/// stored, the tile of the one-colour region it lies in (the same bytes a
/// render gives), or where the data does not reach, the transparent tile; all
/// with the same caching headers.
pub async fn tile(
    State(state): State<AppState>,
    Path((layer, z, x, y)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let layer_id = parse_id("layer", &layer)?;
    let Some(tile) = parse_tile(&z, &x, &y) else {
        return Err(ApiError::not_found(
            "no_such_tile",
            format!("{z}/{x}/{y} is not a tile address: expected z/x/y.png with x and y below 2^z"),
        ));
    };
    let layer = state.store.layer(layer_id).await?.ok_or_else(|| {
        ApiError::not_found("unknown_layer", format!("there is no layer {layer_id}"))
    })?;
    if layer.published_version.is_none() {
        return Err(ApiError::not_found(
            "layer_not_ready",
            format!("layer {layer_id} has not finished rendering yet"),
        ));
    }
    if tile.z < layer.min_zoom || tile.z > layer.max_zoom {
        return Err(ApiError::not_found(
            "zoom_out_of_range",
            format!(
                "layer {layer_id} has zooms {}-{}, not {}",
                layer.min_zoom, layer.max_zoom, tile.z
            ),
        ));
    }
    let key = state.objects.tile_key(layer_id, tile);
    let read = async {
        match state.objects.store.get(&key).await {
            Ok(found) => found.bytes().await.map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    };
    // A store that is down answers late, after its client's retries: the CDN
    // and the map get a 503 with Retry-After (and a CDN its stale copy) soon.
    let png: Bytes = match from_store(&key, read).await? {
        Some(found) => {
            state.metrics.tile_stored.inc();
            found
        }
        None => {
            let version = layer.published_version.expect("checked above");
            let regions = from_store(
                format!("the regions of {layer_id}"),
                state.regions.get(&state.objects, layer_id, version),
            )
            .await?;
            match regions.color_of(tile) {
                Some(color) => {
                    state.metrics.tile_region.inc();
                    let png = state
                        .regions
                        .pngs
                        .get(color, state.config.tile_size)
                        .map_err(|e| ApiError::internal("a region's tile cannot be encoded", e))?;
                    Bytes::copy_from_slice(&png)
                }
                None => {
                    state.metrics.tile_empty.inc();
                    state.transparent.clone()
                }
            }
        }
    };
    let tag = etag(&png);
    let cache = HeaderValue::from_str(&state.config.cache_control).unwrap_or(
        HeaderValue::from_static(tilefarm_objects::DEFAULT_CACHE_CONTROL),
    );
    let tag_value = HeaderValue::from_str(&tag).expect("hex");
    let not_modified = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let response = if not_modified {
        state.metrics.tile_not_modified.inc();
        Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
    } else {
        Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, "image/png")
            .body(Body::from(png))
    };
    let mut response = response.expect("valid response");
    response.headers_mut().insert(ETAG, tag_value);
    response.headers_mut().insert(CACHE_CONTROL, cache);
    Ok(response)
}
