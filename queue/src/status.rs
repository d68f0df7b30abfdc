//! What the job store tells readers: job status, layers, and the context a
//! worker needs to run one task.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};
use crate::store::PgStore;

/// The states a job can be in.
pub const JOB_STATES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];

/// A job's state as the status API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobStatus {
    pub id: Uuid,
    pub layer_id: Uuid,
    pub version: i32,
    pub kind: String,
    pub state: String,
    pub stage: String,
    pub tiles_total: Option<i64>,
    pub tiles_done: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl JobStatus {
    /// Whether the job has ended (succeeded, failed or cancelled).
    pub fn is_finished(&self) -> bool {
        !matches!(self.state.as_str(), "queued" | "running")
    }
}

/// A layer and the version map clients see.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerInfo {
    pub id: Uuid,
    pub name: String,
    pub min_zoom: u8,
    pub max_zoom: u8,
    pub style: Value,
    /// The version whose tiles are served; `None` until the first is rendered.
    pub published_version: Option<i32>,
    /// `[west, south, east, north]` of the published version's data.
    pub bounds: Option<[f64; 4]>,
    pub feature_count: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Everything a worker needs to run one task, in one read.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskContext {
    pub task_id: Uuid,
    pub kind: String,
    /// `pending`, `done`, `failed` or `cancelled`.
    pub task_state: String,
    pub attempts: i32,
    pub z: Option<u8>,
    pub x: Option<u32>,
    pub y: Option<u32>,
    pub n: Option<u32>,
    /// The tiles of the metatile to write (see [`RenderTask::dirty`]).
    ///
    /// [`RenderTask::dirty`]: crate::RenderTask::dirty
    pub dirty: Option<Vec<u8>>,
    pub replaces: bool,
    pub job_id: Uuid,
    /// `upload` or `edit`.
    pub job_kind: String,
    pub job_state: String,
    pub layer_id: Uuid,
    pub version: i32,
    pub min_zoom: u8,
    pub max_zoom: u8,
    pub style: Value,
    pub source_key: String,
    pub prepared_key: Option<String>,
}

impl TaskContext {
    /// Whether the task still has work to do: it is pending and its job has not ended.
    pub fn is_live(&self) -> bool {
        self.task_state == "pending" && matches!(self.job_state.as_str(), "queued" | "running")
    }
}

const JOB_COLUMNS: &str = "id, layer_id, version, kind, state, stage, tiles_total, tiles_done,
    error_code, error_message, created_at, started_at, finished_at, updated_at";

fn job_from_row(r: &PgRow) -> Result<JobStatus, sqlx::Error> {
    Ok(JobStatus {
        id: r.try_get("id")?,
        layer_id: r.try_get("layer_id")?,
        version: r.try_get("version")?,
        kind: r.try_get("kind")?,
        state: r.try_get("state")?,
        stage: r.try_get("stage")?,
        tiles_total: r.try_get("tiles_total")?,
        tiles_done: r.try_get("tiles_done")?,
        error_code: r.try_get("error_code")?,
        error_message: r.try_get("error_message")?,
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn zoom(r: &PgRow, column: &str) -> Result<u8, sqlx::Error> {
    let z: i16 = r.try_get(column)?;
    Ok(z as u8)
}

impl PgStore {
    /// A job's status, or `None` for an unknown id.
    pub async fn job(&self, id: Uuid) -> StoreResult<Option<JobStatus>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(job_from_row).transpose()?)
    }

    /// Jobs, newest first, optionally only those in `state`.
    pub async fn jobs(&self, state: Option<&str>, limit: i64) -> StoreResult<Vec<JobStatus>> {
        if let Some(s) = state
            && !JOB_STATES.contains(&s)
        {
            return Err(StoreError::Invalid(format!(
                "{s:?} is not a job state; expected one of {}",
                JOB_STATES.join(", ")
            )));
        }
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE $1::text IS NULL OR state = $1
             ORDER BY created_at DESC LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(job_from_row).collect::<Result<_, _>>()?)
    }

    /// Counts of jobs by state, for metrics.
    pub async fn job_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT state, count(*) AS n FROM jobs GROUP BY state")
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// A layer, or `None` for an unknown id.
    pub async fn layer(&self, id: Uuid) -> StoreResult<Option<LayerInfo>> {
        let row = sqlx::query(
            "SELECT l.id, l.name, l.min_zoom, l.max_zoom, l.style, l.published_version,
                    v.bounds, v.feature_count, l.created_at, l.updated_at
             FROM layers l
             LEFT JOIN layer_versions v ON v.layer_id = l.id AND v.version = l.published_version
             WHERE l.id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let bounds: Option<Value> = r.try_get("bounds")?;
        Ok(Some(LayerInfo {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            min_zoom: zoom(&r, "min_zoom")?,
            max_zoom: zoom(&r, "max_zoom")?,
            style: r.try_get("style")?,
            published_version: r.try_get("published_version")?,
            bounds: bounds.and_then(|b| serde_json::from_value(b).ok()),
            feature_count: r.try_get("feature_count")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        }))
    }

    /// What a worker needs to run `task_id`, or `None` for an unknown task.
    pub async fn task_context(&self, task_id: Uuid) -> StoreResult<Option<TaskContext>> {
        let row = sqlx::query(
            "SELECT t.id, t.kind, t.state AS task_state, t.attempts, t.z, t.x, t.y, t.n,
                    t.dirty, t.replaces, j.id AS job_id, j.kind AS job_kind, j.state AS job_state, j.layer_id, j.version,
                    l.min_zoom, l.max_zoom, l.style, v.source_key, v.prepared_key
             FROM tasks t
             JOIN jobs j ON j.id = t.job_id
             JOIN layers l ON l.id = j.layer_id
             JOIN layer_versions v ON v.layer_id = j.layer_id AND v.version = j.version
             WHERE t.id = $1",
        )
        .bind(task_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let opt_u32 = |c: &str| -> Result<Option<u32>, sqlx::Error> {
            Ok(r.try_get::<Option<i32>, _>(c)?.map(|v| v as u32))
        };
        Ok(Some(TaskContext {
            task_id: r.try_get("id")?,
            kind: r.try_get("kind")?,
            task_state: r.try_get("task_state")?,
            attempts: r.try_get("attempts")?,
            z: r.try_get::<Option<i16>, _>("z")?.map(|z| z as u8),
            x: opt_u32("x")?,
            y: opt_u32("y")?,
            n: opt_u32("n")?,
            dirty: r.try_get("dirty")?,
            replaces: r.try_get("replaces")?,
            job_id: r.try_get("job_id")?,
            job_kind: r.try_get("job_kind")?,
            job_state: r.try_get("job_state")?,
            layer_id: r.try_get("layer_id")?,
            version: r.try_get("version")?,
            min_zoom: zoom(&r, "min_zoom")?,
            max_zoom: zoom(&r, "max_zoom")?,
            style: r.try_get("style")?,
            source_key: r.try_get("source_key")?,
            prepared_key: r.try_get("prepared_key")?,
        }))
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(self.pool()).await?;
        Ok(())
    }
}
