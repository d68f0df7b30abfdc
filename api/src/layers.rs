//! Uploads, layer metadata and TileJSON.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, VARY};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::ObjectStoreExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tilefarm_formats::Edit;
use tilefarm_formats::{Crs, ReadOptions, SNIFF_LEN, sniff};
use tilefarm_objects::Objects;
use tilefarm_queue::{
    ChangeKind, LayerInfo, MAX_LAYER_NAME, NewLayer, check_layer_name, parse_zoom_range,
};
use tilefarm_renderer::Style;
use uuid::Uuid;

use crate::jobs::{job_json, parse_id};
use crate::{ApiError, ApiResult, AppState};

/// Media types an upload may say it has; its format is told from its content
/// all the same. An upload that says no type is read by its content too.
const DATA_TYPES: [&str; 19] = [
    "application/geo+json",
    "application/json",
    "application/geo+json-seq",
    "application/json-seq",
    "application/x-ndjson",
    "application/geojson",
    "application/octet-stream",
    "application/zip",
    "application/x-zip-compressed",
    "application/geopackage+sqlite3",
    "application/x-sqlite3",
    "application/vnd.sqlite3",
    "application/flatgeobuf",
    "text/csv",
    "text/plain",
    "application/vnd.google-earth.kml+xml",
    "application/vnd.google-earth.kmz",
    "application/xml",
    "text/xml",
];

/// Refuses reading options that cannot work, before the body is read.
fn check_read_options(options: &ReadOptions) -> ApiResult<()> {
    if let Some(crs) = &options.crs {
        Crs::from_name(crs).map_err(|e| ApiError::bad_request("invalid_crs", e.to_string()))?;
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
    /// `MIN-MAX`, e.g. `0-7`.
    zooms: Option<String>,
    /// A style as JSON (see docs/style.md); the reference style when absent.
    style: Option<String>,
    /// How to read it: `table` (a GeoPackage table), `lon`, `lat` and `geometry`
    /// (CSV columns) and `crs` (`EPSG:27700`).
    #[serde(flatten)]
    read: ReadOptions,
}

/// Refuses an upload whose media type says it is not map data (an image, a
/// page, ...).
fn check_content_type(headers: &HeaderMap) -> ApiResult<()> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match content_type.as_deref() {
        None => {}
        Some(t) if DATA_TYPES.contains(&t) => {}
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "the upload's Content-Type is {other:?}; send GeoJSON, a zipped Shapefile, \
                     a GeoPackage, FlatGeobuf, CSV or KML (its format is read from its content)"
                ),
            ));
        }
    }
    Ok(())
}

/// The parameters of an upload, checked before its body is read.
fn check_upload(q: &UploadQuery, headers: &HeaderMap, max_zoom: u8) -> ApiResult<NewLayer> {
    check_content_type(headers)?;
    let name = q.name.as_deref().unwrap_or("").trim();
    if check_layer_name(name).is_err() {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("give the layer a name of 1 to {MAX_LAYER_NAME} characters: ?name=..."),
        ));
    }
    let (min_zoom, max_zoom_asked) = parse_zoom_range(q.zooms.as_deref().unwrap_or("0-5"))
        .map_err(|m| ApiError::bad_request("invalid_zooms", m.to_string()))?;
    if max_zoom_asked > max_zoom {
        return Err(ApiError::bad_request(
            "invalid_zooms",
            format!("zoom {max_zoom_asked} is deeper than this farm renders (at most {max_zoom})"),
        ));
    }
    let style = match q.style.as_deref().map(str::trim) {
        // Empty, as a form sends a field left blank: the reference style.
        None | Some("") => json!({}),
        Some(text) => {
            Style::from_json(text)
                .map_err(|e| ApiError::bad_request("invalid_style", e.to_string()))?;
            serde_json::from_str(text).expect("parsed above")
        }
    };
    Ok(NewLayer {
        name: name.to_string(),
        min_zoom,
        max_zoom: max_zoom_asked,
        style,
    })
}

/// `POST /v1/layers?name=...&zooms=0-7[&style=...]` with the GeoJSON as the body.
/// The body is streamed to the object store; the answer is 202 with the job.
pub async fn upload(
    State(state): State<AppState>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let layer = check_upload(&q, &headers, state.config.max_zoom)?;
    check_read_options(&q.read)?;
    let (key, size) = store_upload(&state, body, &q.read).await?;
    let upload = match state.store.create_upload(&layer, key.as_ref()).await {
        Ok(u) => u,
        Err(e) => {
            let _ = state.objects.store.delete(&key).await;
            return Err(e.into());
        }
    };
    state.metrics.uploads.inc();
    tracing::info!(
        job_id = %upload.job_id,
        layer_id = %upload.layer_id,
        bytes = size,
        "upload accepted"
    );
    let job = state
        .store
        .job(upload.job_id)
        .await?
        .ok_or_else(|| ApiError::internal("the new job vanished", upload.job_id))?;
    let url = format!("/v1/jobs/{}", upload.job_id);
    Ok((
        StatusCode::ACCEPTED,
        [(LOCATION, url)],
        Json(json!({ "job": job_json(&job), "layer_id": upload.layer_id })),
    )
        .into_response())
}

/// `PUT /v1/layers/{id}/data` with GeoJSON as the body: new data for the whole
/// layer, with its zooms and style. The job re-renders every tile the old or the
/// new data reaches and deletes those the new data no longer does.
pub async fn replace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(read): Query<ReadOptions>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let layer = find(&state, &id).await?;
    check_content_type(&headers)?;
    check_read_options(&read)?;
    let (key, size) = store_upload(&state, body, &read).await?;
    change_accepted(&state, layer.id, ChangeKind::Replace, &key, size).await
}

/// `POST /v1/layers/{id}/edits` with `{"upsert": FeatureCollection, "delete":
/// [ids]}`: features added or replaced, and removed, by their GeoJSON `id`. The
/// job re-renders only the tiles the changed features reach, before and after.
/// Edits of one layer apply in the order they are accepted.
pub async fn edit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let layer = find(&state, &id).await?;
    let limit = state.config.max_upload_bytes;
    let bytes = read_edit(body, limit).await?;
    // Parsing a large edit is seconds of CPU: off the async threads.
    let normalized = tokio::task::spawn_blocking(move || {
        Edit::from_json(&bytes).map(|edit| serde_json::to_vec(&edit.to_json()).expect("in memory"))
    })
    .await
    .map_err(|e| ApiError::internal("the edit's parser stopped", e))?
    .map_err(|e| ApiError::bad_request("invalid_edit", e.to_string()))?;
    let key = state.objects.upload_key(Uuid::new_v4());
    let size = normalized.len() as u64;
    state
        .objects
        .store
        .put(&key, normalized.into())
        .await
        .map_err(|e| ApiError::internal("could not store the edit", e))?;
    change_accepted(&state, layer.id, ChangeKind::Edit, &key, size).await
}

/// An edit's body, whole, refused past `limit` bytes.
async fn read_edit(body: Body, limit: u64) -> ApiResult<Bytes> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::body(&e))?;
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "edit_too_large",
                format!("the edit is larger than the limit of {limit} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(bytes))
}

/// Records a change whose data is stored at `key` and answers 202 with its job.
async fn change_accepted(
    state: &AppState,
    layer_id: Uuid,
    kind: ChangeKind,
    key: &object_store::path::Path,
    size: u64,
) -> ApiResult<Response> {
    let change = match state
        .store
        .create_change(layer_id, kind, key.as_ref())
        .await
    {
        Ok(c) => c,
        Err(e) => {
            let _ = state.objects.store.delete(key).await;
            return Err(e.into());
        }
    };
    match kind {
        ChangeKind::Edit => state.metrics.edits.inc(),
        ChangeKind::Replace => state.metrics.replacements.inc(),
    };
    tracing::info!(
        job_id = %change.job_id,
        layer_id = %layer_id,
        version = change.version,
        waiting = change.waiting,
        bytes = size,
        "{} accepted",
        match kind {
            ChangeKind::Edit => "edit",
            ChangeKind::Replace => "replacement",
        }
    );
    let job = state
        .store
        .job(change.job_id)
        .await?
        .ok_or_else(|| ApiError::internal("the new job vanished", change.job_id))?;
    Ok((
        StatusCode::ACCEPTED,
        [(LOCATION, format!("/v1/jobs/{}", change.job_id))],
        Json(json!({ "job": job_json(&job), "layer_id": layer_id, "version": change.version })),
    )
        .into_response())
}

/// Streams an upload's body to a new key, with the options to read it by
/// beside it; nothing is left behind if it fails.
async fn store_upload(
    state: &AppState,
    body: Body,
    options: &ReadOptions,
) -> ApiResult<(object_store::path::Path, u64)> {
    let key = state.objects.upload_key(Uuid::new_v4());
    let options_key = Objects::upload_options_key(&key);
    let stored = async {
        let size = store_body(state, &key, body).await?;
        if !options.is_default() {
            let json = serde_json::to_vec(options).expect("in memory");
            state
                .objects
                .store
                .put(&options_key, json.into())
                .await
                .map_err(|e| ApiError::internal("could not store the upload's options", e))?;
        }
        Ok(size)
    };
    match stored.await {
        Ok(size) => Ok((key, size)),
        Err(e) => {
            let _ = state.objects.store.delete(&key).await;
            let _ = state.objects.store.delete(&options_key).await;
            Err(e)
        }
    }
}

/// Streams an upload's body to `key`, refusing it once it passes the size
/// limit, and a body whose first bytes are none of the formats tilefarm reads.
async fn store_body(
    state: &AppState,
    key: &object_store::path::Path,
    body: Body,
) -> ApiResult<u64> {
    use tokio::io::AsyncWriteExt;
    let limit = state.config.max_upload_bytes;
    let mut writer =
        object_store::buffered::BufWriter::new(state.objects.store.clone(), key.clone());
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    // The first bytes, until there are enough to tell the format.
    let mut head = Vec::new();
    let mut sniffed = false;
    let result: ApiResult<()> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::body(&e))?;
            if !sniffed {
                head.extend_from_slice(&chunk[..chunk.len().min(SNIFF_LEN - head.len())]);
                sniffed = head.len() >= SNIFF_LEN;
                if sniffed {
                    sniff_upload(&head)?;
                }
            }
            size += chunk.len() as u64;
            if size > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "upload_too_large",
                    format!("the upload is larger than the limit of {limit} bytes"),
                ));
            }
            writer
                .put(chunk)
                .await
                .map_err(|e| ApiError::internal("could not store the upload", e))?;
        }
        if !head.iter().any(|b| !b.is_ascii_whitespace()) {
            return Err(ApiError::bad_request(
                "empty_upload",
                "the upload is empty: send GeoJSON, a zipped Shapefile, a GeoPackage, \
                 FlatGeobuf, CSV or KML as the body",
            ));
        }
        if !sniffed {
            sniff_upload(&head)?;
        }
        writer
            .shutdown()
            .await
            .map_err(|e| ApiError::internal("could not store the upload", e))
    }
    .await;
    if let Err(e) = result {
        let _ = writer.abort().await;
        return Err(e);
    }
    Ok(size)
}

/// Refuses an upload whose first bytes are none of the formats tilefarm reads.
fn sniff_upload(head: &[u8]) -> ApiResult<()> {
    sniff(head)
        .map(|_| ())
        .map_err(|e| ApiError::bad_request("unsupported_format", e.to_string()))
}

async fn find(state: &AppState, raw: &str) -> ApiResult<LayerInfo> {
    let id = parse_id("layer", raw)?;
    state
        .store
        .layer(id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_layer", format!("there is no layer {id}")))
}

/// `DELETE /v1/layers/{id}`: the layer, its versions and jobs, its tiles and
/// the data it was made from, gone. A layer with a job under way or waiting is
/// a 409 (cancel the job first).
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let layer = find(&state, &id).await?;
    let Some(sources) = state.store.delete_layer(layer.id).await? else {
        return Err(ApiError::not_found(
            "unknown_layer",
            format!("there is no layer {}", layer.id),
        ));
    };
    // The layer is gone for every reader now; then its objects.
    let failed = |e| ApiError::internal("could not delete the layer's objects", e);
    let mut removed = 0u64;
    for prefix in [
        state.objects.tiles_prefix(layer.id),
        state.objects.layer_prefix(layer.id),
    ] {
        removed += state.objects.delete_under(&prefix).await.map_err(failed)?;
    }
    for source in sources {
        let key = object_store::path::Path::from(source);
        removed += state.objects.delete_upload(&key).await.map_err(failed)?;
    }
    tracing::info!(layer_id = %layer.id, objects = removed, "layer deleted");
    Ok(Json(
        json!({ "layer_id": layer.id, "deleted": true, "objects_removed": removed }),
    ))
}

/// `GET /v1/layers/{id}`
pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let l = find(&state, &id).await?;
    Ok(Json(json!({
        "id": l.id,
        "name": l.name,
        "min_zoom": l.min_zoom,
        "max_zoom": l.max_zoom,
        "style": l.style,
        "published_version": l.published_version,
        "bounds": l.bounds,
        "feature_count": l.feature_count,
        "created_at": l.created_at,
        "updated_at": l.updated_at,
        "links": {
            "tilejson": format!("/v1/layers/{}/tilejson", l.id),
            "tiles": format!("/tiles/{}/{{z}}/{{x}}/{{y}}.png", l.id),
        },
    })))
}

/// `GET /v1/layers/{id}/tilejson`: TileJSON 3.0.0. A layer not yet rendered is a
/// 404, since it has no tiles to show.
pub async fn tilejson(
    State(state): State<AppState>,
    Path(id): Path<String>,
    parts: axum::http::request::Parts,
) -> ApiResult<Response> {
    let l = find(&state, &id).await?;
    let Some(version) = l.published_version else {
        return Err(ApiError::not_found(
            "layer_not_ready",
            format!("layer {} has not finished rendering yet", l.id),
        ));
    };
    let base = crate::forwarded::public_base(&parts, &state.config.trusted_proxies);
    let body = crate::tilejson::tilejson(&l, version, &base, state.config.tile_size);
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    // A new version is new TileJSON: clients check each time.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if !state.config.trusted_proxies.is_empty() {
        headers.insert(
            VARY,
            HeaderValue::from_static("X-Forwarded-Host, X-Forwarded-Proto"),
        );
    }
    Ok(response)
}
