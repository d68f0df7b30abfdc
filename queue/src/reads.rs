//! What the job store tells readers: job status, layers, what a change builds
//! on, and the context a worker needs to run one task. Status and layer reads
//! run beside the writer (see [`Db::read`]); a worker's reads see every write
//! before them.
//!
//! [`Db::read`]: crate::db::Db::read

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use strum::VariantArray;
use uuid::Uuid;

use crate::db::Row;
use crate::ends::OutboxBacklog;
use crate::error::{StoreError, StoreResult};
use crate::job_store::JobStore;
use crate::model::{ChangeBase, JobState, JobStatus, LayerInfo, RenderTask, TaskContext};

/// The columns of a job's status.
macro_rules! select_jobs {
    () => {
        "SELECT id, layer_id, version, kind, state, stage, tiles_total, tiles_done,
                error_code, error_message, created_at, started_at, finished_at, updated_at
         FROM jobs"
    };
}

impl JobStore {
    /// Whether the database answers.
    pub async fn ping(&self) -> StoreResult<()> {
        self.db.execute(self.db.read("SELECT 1")).await?;
        Ok(())
    }

    /// A job's status, or `None` for an unknown id.
    pub async fn job(&self, id: Uuid) -> StoreResult<Option<JobStatus>> {
        const SQL: &str = concat!(select_jobs!(), " WHERE id = $1");
        let row = self.db.fetch_optional(self.db.read(SQL).bind(id)).await?;
        Ok(row.as_ref().map(job_from_row).transpose()?)
    }

    /// Jobs, newest first, optionally only those in `state` (a state's name).
    pub async fn jobs(&self, state: Option<&str>, limit: i64) -> StoreResult<Vec<JobStatus>> {
        let state = state
            .map(|s| {
                s.parse::<JobState>().map_err(|_| {
                    let names: Vec<&str> = JobState::VARIANTS.iter().map(|s| s.as_str()).collect();
                    StoreError::Invalid(format!(
                        "{s:?} is not a job state; expected one of {}",
                        names.join(", ")
                    ))
                })
            })
            .transpose()?;
        const SQL: &str = concat!(
            select_jobs!(),
            " WHERE $1 IS NULL OR state = $1 ORDER BY created_at DESC LIMIT $2"
        );
        let q = self
            .db
            .read(SQL)
            .bind(state.map(JobState::as_str))
            .bind(limit);
        let rows = self.db.fetch_all(q).await?;
        Ok(rows.iter().map(job_from_row).collect::<Result<_, _>>()?)
    }

    /// Counts of jobs by state, for metrics.
    pub async fn job_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        let q = self
            .db
            .read("SELECT state, count(*) AS n FROM jobs GROUP BY state");
        let rows = self.db.fetch_all(q).await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.get("state")?, r.get("n")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    /// A layer, or `None` for an unknown id.
    pub async fn layer(&self, id: Uuid) -> StoreResult<Option<LayerInfo>> {
        let q = self
            .db
            .read(
                "SELECT l.id, l.name, l.min_zoom, l.max_zoom, l.style, l.published_version,
                        v.bounds, v.feature_count, l.created_at, l.updated_at
                 FROM layers l
                 LEFT JOIN layer_versions v
                   ON v.layer_id = l.id AND v.version = l.published_version
                 WHERE l.id = $1",
            )
            .bind(id);
        let Some(r) = self.db.fetch_optional(q).await? else {
            return Ok(None);
        };
        let bounds: Option<Json<serde_json::Value>> = r.get("bounds")?;
        Ok(Some(LayerInfo {
            id: r.get("id")?,
            name: r.get("name")?,
            min_zoom: zoom(&r, "min_zoom")?,
            max_zoom: zoom(&r, "max_zoom")?,
            style: r.get::<Json<_>>("style")?.0,
            published_version: r.get("published_version")?,
            bounds: bounds.and_then(|b| serde_json::from_value(b.0).ok()),
            feature_count: r.get("feature_count")?,
            created_at: r.get("created_at")?,
            updated_at: r.get("updated_at")?,
        }))
    }

    /// What a worker needs to run `task_id`, or `None` for an unknown task.
    pub async fn task_context(&self, task_id: Uuid) -> StoreResult<Option<TaskContext>> {
        let q = self
            .db
            .query(
                "SELECT t.id, t.kind, t.state AS task_state, t.attempts, t.z, t.x, t.y, t.n,
                        t.dirty, t.replaces, j.id AS job_id, j.kind AS job_kind,
                        j.state AS job_state, j.layer_id, j.version,
                        l.min_zoom, l.max_zoom, l.style, v.source_key, v.prepared_key
                 FROM tasks t
                 JOIN jobs j ON j.id = t.job_id
                 JOIN layers l ON l.id = j.layer_id
                 JOIN layer_versions v ON v.layer_id = j.layer_id AND v.version = j.version
                 WHERE t.id = $1",
            )
            .bind(task_id);
        let Some(r) = self.db.fetch_optional(q).await? else {
            return Ok(None);
        };
        let opt_u32 = |c: &str| -> sqlx::Result<Option<u32>> {
            Ok(r.get::<Option<i32>>(c)?.map(|v| v as u32))
        };
        Ok(Some(TaskContext {
            task_id: r.get("id")?,
            kind: r.parse("kind")?,
            task_state: r.parse("task_state")?,
            attempts: r.get("attempts")?,
            z: r.get::<Option<i16>>("z")?.map(|z| z as u8),
            x: opt_u32("x")?,
            y: opt_u32("y")?,
            n: opt_u32("n")?,
            dirty: r.get("dirty")?,
            replaces: r.get("replaces")?,
            job_id: r.get("job_id")?,
            job_kind: r.parse("job_kind")?,
            job_state: r.parse("job_state")?,
            layer_id: r.get("layer_id")?,
            version: r.get("version")?,
            min_zoom: zoom(&r, "min_zoom")?,
            max_zoom: zoom(&r, "max_zoom")?,
            style: r.get::<Json<_>>("style")?.0,
            source_key: r.get("source_key")?,
            prepared_key: r.get("prepared_key")?,
        }))
    }

    /// What a change to `layer_id` builds on.
    pub async fn change_base(&self, layer_id: Uuid) -> StoreResult<ChangeBase> {
        let q = self
            .db
            .query(
                "SELECT v.version, v.prepared_key FROM layers l
                 JOIN layer_versions v ON v.layer_id = l.id AND v.version = l.published_version
                 WHERE l.id = $1 AND v.prepared_key IS NOT NULL",
            )
            .bind(layer_id);
        let published = match self.db.fetch_optional(q).await? {
            Some(r) => Some((r.get("version")?, r.get("prepared_key")?)),
            None => None,
        };
        let q = self
            .db
            .query(
                "SELECT t.z, t.x, t.y, t.n, t.tiles, t.dirty, t.replaces, t.changed FROM tasks t
                 JOIN jobs j ON j.id = t.job_id
                 JOIN layers l ON l.id = j.layer_id
                 WHERE j.layer_id = $1 AND j.state IN ('failed', 'cancelled')
                   AND t.kind = 'render' AND j.version > coalesce(l.published_version, 0)",
            )
            .bind(layer_id);
        let rows = self.db.fetch_all(q).await?;
        Ok(ChangeBase {
            published,
            unfinished: rows
                .iter()
                .map(render_task_from_row)
                .collect::<Result<_, _>>()?,
        })
    }

    /// The render tasks of a job.
    pub async fn render_tasks(&self, job_id: Uuid) -> StoreResult<Vec<RenderTask>> {
        let q = self
            .db
            .query(
                "SELECT z, x, y, n, tiles, dirty, replaces, changed FROM tasks
                 WHERE job_id = $1 AND kind = 'render' ORDER BY z, y, x",
            )
            .bind(job_id);
        let rows = self.db.fetch_all(q).await?;
        Ok(rows
            .iter()
            .map(render_task_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// The outbox messages not published yet, and how long the oldest has waited.
    pub async fn outbox_backlog(&self) -> StoreResult<OutboxBacklog> {
        let q = self
            .db
            .read("SELECT count(*) FROM outbox WHERE published_at IS NULL");
        let messages: i64 = self.db.fetch_one(q).await?.get(0)?;
        let q = self
            .db
            .read("SELECT created_at FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 1");
        let oldest: Option<DateTime<Utc>> = match self.db.fetch_optional(q).await? {
            Some(r) => Some(r.get(0)?),
            None => None,
        };
        Ok(OutboxBacklog {
            messages,
            oldest_age_seconds: oldest.map_or(0.0, |t| (Utc::now() - t).as_seconds_f64().max(0.0)),
        })
    }
}

fn zoom(r: &Row, column: &str) -> sqlx::Result<u8> {
    Ok(r.get::<i16>(column)? as u8)
}

fn job_from_row(r: &Row) -> sqlx::Result<JobStatus> {
    Ok(JobStatus {
        id: r.get("id")?,
        layer_id: r.get("layer_id")?,
        version: r.get("version")?,
        kind: r.parse("kind")?,
        state: r.parse("state")?,
        stage: r.parse("stage")?,
        tiles_total: r.get("tiles_total")?,
        tiles_done: r.get("tiles_done")?,
        error_code: r.get("error_code")?,
        error_message: r.get("error_message")?,
        created_at: r.get("created_at")?,
        started_at: r.get("started_at")?,
        finished_at: r.get("finished_at")?,
        updated_at: r.get("updated_at")?,
    })
}

pub(crate) fn render_task_from_row(r: &Row) -> sqlx::Result<RenderTask> {
    Ok(RenderTask {
        z: zoom(r, "z")?,
        x: r.get::<i32>("x")? as u32,
        y: r.get::<i32>("y")? as u32,
        n: r.get::<i32>("n")? as u32,
        tiles: r.get::<i32>("tiles")? as u32,
        dirty: r.get("dirty")?,
        replaces: r.get("replaces")?,
        changed: r.get("changed")?,
    })
}
