//! Job status: one job (polled or pushed as server-sent events), the job list
//! for ops, and cancelling.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tilefarm_queue::JobStatus;
use uuid::Uuid;

use crate::{ApiError, ApiResult, AppState};

/// Parses an id from a path, naming what it should have been.
pub fn parse_id(what: &str, raw: &str) -> ApiResult<Uuid> {
    raw.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_id",
            format!("{raw:?} is not a {what} id (expected a UUID)"),
        )
    })
}

/// Seconds left at the rate the job has run so far.
fn eta_seconds(job: &JobStatus) -> Option<f64> {
    let (total, started) = (job.tiles_total?, job.started_at?);
    if job.is_finished() {
        return Some(0.0);
    }
    if job.tiles_done == 0 || total == 0 {
        return None;
    }
    let elapsed = (chrono::Utc::now() - started).num_milliseconds().max(1) as f64 / 1000.0;
    let rate = job.tiles_done as f64 / elapsed;
    Some(((total - job.tiles_done) as f64 / rate * 10.0).round() / 10.0)
}

/// A job as the API shows it.
pub fn job_json(job: &JobStatus) -> Value {
    json!({
        "id": job.id,
        "layer_id": job.layer_id,
        "version": job.version,
        "kind": job.kind,
        "state": job.state,
        "stage": job.stage,
        "progress": { "done": job.tiles_done, "total": job.tiles_total },
        "eta_seconds": eta_seconds(job),
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "updated_at": job.updated_at,
        "error": job.error_code.as_ref().map(|code| json!({
            "code": code,
            "message": job.error_message,
        })),
        "links": {
            "self": format!("/v1/jobs/{}", job.id),
            "events": format!("/v1/jobs/{}/events", job.id),
            "layer": format!("/v1/layers/{}", job.layer_id),
            "tilejson": format!("/v1/layers/{}/tilejson", job.layer_id),
        },
    })
}

async fn find(state: &AppState, raw: &str) -> ApiResult<JobStatus> {
    let id = parse_id("job", raw)?;
    state
        .store
        .job(id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_job", format!("there is no job {id}")))
}

/// `GET /v1/jobs/{id}`
pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let job = find(&state, &id).await?;
    let mut answer = job_json(&job);
    answer["ingest"] = stored_json(
        &state,
        &state.objects.summary_key(job.layer_id, job.version),
    )
    .await;
    answer["plan"] = stored_json(&state, &state.objects.plan_key(job.layer_id, job.version)).await;
    Ok(Json(answer))
}

/// A JSON object the worker stored for the job's version, `null` until then:
/// the ingest summary (what the upload held: format, source CRS, features,
/// ...; none for edits) or the plan (tiles to render, tiles its regions stand
/// for, per zoom).
async fn stored_json(state: &AppState, key: &object_store::path::Path) -> Value {
    use object_store::ObjectStoreExt;
    match state.objects.store.get(key).await {
        Ok(r) => match r.bytes().await {
            Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        },
        Err(_) => Value::Null,
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/jobs?state=running&limit=100`
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit {limit} is not within 1-1000"),
        ));
    }
    let jobs = state.store.jobs(q.state.as_deref(), limit).await?;
    Ok(Json(
        json!({ "jobs": jobs.iter().map(job_json).collect::<Vec<_>>() }),
    ))
}

/// `DELETE /v1/jobs/{id}`: the remaining tasks are dropped and the job ends
/// `cancelled`. A job that has already ended is a 409.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let job = find(&state, &id).await?;
    if !state.store.cancel_job(job.id).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "job_finished",
            format!("job {} has already ended ({})", job.id, job.state),
        ));
    }
    tracing::info!(job_id = %job.id, "job cancelled");
    let job = find(&state, &id).await?;
    Ok((StatusCode::OK, Json(job_json(&job))))
}

/// How often the event stream looks at the job.
const EVENT_POLL: Duration = Duration::from_millis(200);

/// `GET /v1/jobs/{id}/events`: a `status` event whenever the job changes, the
/// last one when it ends.
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let first = find(&state, &id).await?;
    // Held by the stream until it ends or its client goes.
    let slot = state.streams.take()?;
    let stream = futures_util::stream::unfold(
        (state, first.id, None::<JobStatus>, false, slot),
        |(state, id, last, done, slot)| async move {
            if done {
                return None;
            }
            loop {
                let job = match state.store.job(id).await {
                    Ok(Some(job)) => job,
                    Ok(None) => return None,
                    Err(e) => {
                        tracing::warn!(job_id = %id, "event stream: {e}");
                        tokio::time::sleep(EVENT_POLL).await;
                        continue;
                    }
                };
                let changed = last
                    .as_ref()
                    .is_none_or(|l| l.updated_at != job.updated_at || l.state != job.state);
                if changed {
                    let event = Event::default()
                        .event("status")
                        .json_data(job_json(&job))
                        .expect("JSON");
                    let finished = job.is_finished();
                    return Some((Ok(event), (state, id, Some(job), finished, slot)));
                }
                tokio::time::sleep(EVENT_POLL).await;
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
