//! The embedded job store on SQLite: the same operations as [`PgStore`] for
//! `tilefarm serve` with no database configured. One connection serializes
//! every transaction, which stands in for PostgreSQL's row locks.
//!
//! [`PgStore`]: crate::PgStore

use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, Sqlite, Transaction};
use uuid::Uuid;

use crate::ends::{JobEnds, OutboxBacklog};
use crate::error::{StoreError, StoreResult};
use crate::status::{JOB_STATES, JobStatus, LayerInfo, TaskContext};
use crate::store::{
    CLAIM_LEASE_SECONDS, Change, ChangeBase, ChangeKind, Completion, INGEST_QUEUE,
    INTERACTIVE_QUEUE, NewLayer, OutboxMessage, RenderTask, Upload, check_new_layer, queue_for,
    union,
};

/// The embedded schema, applied by [`SqliteStore::open`].
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// The job store in one SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// The one connection that writes: SQLite has one writer at a time.
    pool: SqlitePool,
    /// Connections that only read (WAL lets them read while a write is under
    /// way), for the API's status, layer and tile lookups: a long write, a big
    /// plan say, does not hold them up.
    reads: SqlitePool,
    /// The jobs this store ended, for `/metrics`.
    ends: JobEnds,
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and brings its
    /// schema up to date.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        SQLITE_MIGRATOR.run(&pool).await?;
        let reads = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true)
                    .busy_timeout(std::time::Duration::from_secs(10)),
            )
            .await?;
        Ok(SqliteStore {
            pool,
            reads,
            ends: JobEnds::default(),
        })
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// How long the jobs this store ended took.
    pub fn job_ends(&self) -> &JobEnds {
        &self.ends
    }

    /// The outbox messages not published yet, and how long the oldest has waited.
    pub async fn outbox_backlog(&self) -> StoreResult<OutboxBacklog> {
        let messages: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&self.reads)
                .await?;
        let oldest: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT created_at FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 1",
        )
        .fetch_optional(&self.reads)
        .await?;
        Ok(OutboxBacklog {
            messages,
            oldest_age_seconds: oldest.map_or(0.0, |t| (now() - t).as_seconds_f64().max(0.0)),
        })
    }

    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reads).await?;
        Ok(())
    }

    pub async fn create_upload(&self, layer: &NewLayer, source_key: &str) -> StoreResult<Upload> {
        check_new_layer(layer)?;
        let (layer_id, job_id, ingest_task) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let t = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO layers (id, name, min_zoom, max_zoom, style, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )
        .bind(layer_id)
        .bind(&layer.name)
        .bind(i64::from(layer.min_zoom))
        .bind(i64::from(layer.max_zoom))
        .bind(layer.style.to_string())
        .bind(t)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO layer_versions (layer_id, version, source_key, created_at)
             VALUES (?1, 1, ?2, ?3)",
        )
        .bind(layer_id)
        .bind(source_key)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO jobs (id, layer_id, version, kind, created_at, updated_at)
             VALUES (?1, ?2, 1, 'upload', ?3, ?3)",
        )
        .bind(job_id)
        .bind(layer_id)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO tasks (id, job_id, kind, created_at) VALUES (?1, ?2, 'ingest', ?3)",
        )
        .bind(ingest_task)
        .bind(job_id)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        enqueue(&mut tx, INGEST_QUEUE, ingest_task, job_id).await?;
        tx.commit().await?;
        Ok(Upload {
            layer_id,
            job_id,
            ingest_task,
        })
    }

    pub async fn job(&self, id: Uuid) -> StoreResult<Option<JobStatus>> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.reads)
            .await?;
        Ok(row.as_ref().map(job_from_row).transpose()?)
    }

    pub async fn jobs(&self, state: Option<&str>, limit: i64) -> StoreResult<Vec<JobStatus>> {
        if let Some(s) = state
            && !JOB_STATES.contains(&s)
        {
            return Err(StoreError::Invalid(format!(
                "{s:?} is not a job state; expected one of {}",
                JOB_STATES.join(", ")
            )));
        }
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE ?1 IS NULL OR state = ?1 ORDER BY created_at DESC LIMIT ?2",
        )
        .bind(state)
        .bind(limit)
        .fetch_all(&self.reads)
        .await?;
        Ok(rows.iter().map(job_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn job_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT state, count(*) AS n FROM jobs GROUP BY state")
            .fetch_all(&self.reads)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    pub async fn layer(&self, id: Uuid) -> StoreResult<Option<LayerInfo>> {
        let row = sqlx::query(
            "SELECT l.id, l.name, l.min_zoom, l.max_zoom, l.style, l.published_version,
                    v.bounds, v.feature_count, l.created_at, l.updated_at
             FROM layers l
             LEFT JOIN layer_versions v ON v.layer_id = l.id AND v.version = l.published_version
             WHERE l.id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.reads)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let bounds: Option<String> = r.try_get("bounds")?;
        Ok(Some(LayerInfo {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            min_zoom: r.try_get::<i64, _>("min_zoom")? as u8,
            max_zoom: r.try_get::<i64, _>("max_zoom")? as u8,
            style: json(&r, "style")?,
            published_version: r.try_get("published_version")?,
            bounds: bounds.and_then(|b| serde_json::from_str(&b).ok()),
            feature_count: r.try_get("feature_count")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        }))
    }

    pub async fn task_context(&self, task_id: Uuid) -> StoreResult<Option<TaskContext>> {
        let row = sqlx::query(
            "SELECT t.id, t.kind, t.state AS task_state, t.attempts, t.z, t.x, t.y, t.n,
                    t.dirty, t.replaces, j.id AS job_id, j.kind AS job_kind, j.state AS job_state, j.layer_id, j.version,
                    l.min_zoom, l.max_zoom, l.style, v.source_key, v.prepared_key
             FROM tasks t
             JOIN jobs j ON j.id = t.job_id
             JOIN layers l ON l.id = j.layer_id
             JOIN layer_versions v ON v.layer_id = j.layer_id AND v.version = j.version
             WHERE t.id = ?1",
        )
        .bind(task_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let opt = |c: &str| -> Result<Option<i64>, sqlx::Error> { r.try_get(c) };
        Ok(Some(TaskContext {
            task_id: r.try_get("id")?,
            kind: r.try_get("kind")?,
            task_state: r.try_get("task_state")?,
            attempts: r.try_get::<i64, _>("attempts")? as i32,
            z: opt("z")?.map(|v| v as u8),
            x: opt("x")?.map(|v| v as u32),
            y: opt("y")?.map(|v| v as u32),
            n: opt("n")?.map(|v| v as u32),
            dirty: r.try_get("dirty")?,
            replaces: r.try_get("replaces")?,
            job_id: r.try_get("job_id")?,
            job_kind: r.try_get("job_kind")?,
            job_state: r.try_get("job_state")?,
            layer_id: r.try_get("layer_id")?,
            version: r.try_get::<i64, _>("version")? as i32,
            min_zoom: r.try_get::<i64, _>("min_zoom")? as u8,
            max_zoom: r.try_get::<i64, _>("max_zoom")? as u8,
            style: json(&r, "style")?,
            source_key: r.try_get("source_key")?,
            prepared_key: r.try_get("prepared_key")?,
        }))
    }

    pub async fn set_stage(&self, job_id: Uuid, stage: &str) -> StoreResult<()> {
        let t = now();
        sqlx::query(
            "UPDATE jobs SET state = 'running', stage = ?2,
                    started_at = coalesce(started_at, ?3), updated_at = ?3
             WHERE id = ?1 AND state IN ('queued', 'running')",
        )
        .bind(job_id)
        .bind(stage)
        .bind(t)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn record_prepared(
        &self,
        layer_id: Uuid,
        version: i32,
        prepared_key: &str,
        feature_count: i64,
        bounds: Option<[f64; 4]>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE layer_versions SET prepared_key = ?3, feature_count = ?4, bounds = ?5
             WHERE layer_id = ?1 AND version = ?2",
        )
        .bind(layer_id)
        .bind(version)
        .bind(prepared_key)
        .bind(feature_count)
        .bind(bounds.map(|b| serde_json::json!(b).to_string()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn record_attempt(&self, task_id: Uuid, error: &str) -> StoreResult<i32> {
        let attempts: Option<i64> = sqlx::query_scalar(
            "UPDATE tasks SET attempts = attempts + 1, last_error = ?2,
                    first_failed_at = coalesce(first_failed_at, ?3), last_failed_at = ?3
             WHERE id = ?1 RETURNING attempts",
        )
        .bind(task_id)
        .bind(error)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        attempts
            .map(|a| a as i32)
            .ok_or_else(|| StoreError::NotFound(format!("task {task_id}")))
    }

    pub async fn plan(
        &self,
        job_id: Uuid,
        plan_task: Uuid,
        tasks: &[RenderTask],
    ) -> StoreResult<Vec<Uuid>> {
        let t = now();
        let mut tx = self.pool.begin().await?;
        let state = job_state(&mut tx, job_id).await?;
        if state != "queued" && state != "running" {
            return Err(StoreError::Conflict(format!(
                "job {job_id} is {state}; it cannot be planned"
            )));
        }
        let kind: String = sqlx::query_scalar("SELECT kind FROM jobs WHERE id = ?1")
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await?;
        let queue = queue_for(&kind, "render");
        let total: i64 = tasks.iter().map(|t| i64::from(t.tiles)).sum();
        sqlx::query(
            "UPDATE jobs SET state = 'running', stage = 'render', tiles_total = ?2,
                    started_at = coalesce(started_at, ?3), updated_at = ?3
             WHERE id = ?1",
        )
        .bind(job_id)
        .bind(total)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE tasks SET state = 'done', done_at = ?2 WHERE id = ?1 AND state = 'pending'",
        )
        .bind(plan_task)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        // Many rows a statement: a deep plan has hundreds of thousands of
        // tasks, and one statement each would hold the writer for minutes.
        let ids: Vec<Uuid> = tasks.iter().map(|_| Uuid::new_v4()).collect();
        for (chunk, chunk_ids) in tasks.chunks(PLAN_ROWS).zip(ids.chunks(PLAN_ROWS)) {
            let mut insert = sqlx::QueryBuilder::<Sqlite>::new(
                "INSERT INTO tasks (id, job_id, kind, z, x, y, n, tiles, created_at, dirty, replaces) ",
            );
            insert.push_values(chunk.iter().zip(chunk_ids), |mut row, (task, id)| {
                row.push_bind(*id)
                    .push_bind(job_id)
                    .push_bind("render")
                    .push_bind(i64::from(task.z))
                    .push_bind(i64::from(task.x))
                    .push_bind(i64::from(task.y))
                    .push_bind(i64::from(task.n))
                    .push_bind(i64::from(task.tiles))
                    .push_bind(t)
                    .push_bind(task.dirty.clone())
                    .push_bind(task.replaces);
            });
            insert.build().execute(&mut *tx).await?;
            let mut outbox = sqlx::QueryBuilder::<Sqlite>::new(
                "INSERT INTO outbox (queue, payload, created_at) ",
            );
            outbox.push_values(chunk_ids, |mut row, id| {
                row.push_bind(queue)
                    .push_bind(serde_json::json!({ "task": id, "job": job_id }).to_string())
                    .push_bind(t);
            });
            outbox.build().execute(&mut *tx).await?;
        }
        let ended = if tasks.is_empty() {
            Some(finish_job(&mut tx, job_id).await?)
        } else {
            None
        };
        tx.commit().await?;
        self.ends.succeeded(ended);
        Ok(ids)
    }

    pub async fn complete_task(&self, task_id: Uuid) -> StoreResult<Completion> {
        let t = now();
        let mut tx = self.pool.begin().await?;
        let job_id: Option<Uuid> = sqlx::query_scalar("SELECT job_id FROM tasks WHERE id = ?1")
            .bind(task_id)
            .fetch_optional(&mut *tx)
            .await?;
        let job_id = job_id.ok_or_else(|| StoreError::NotFound(format!("task {task_id}")))?;
        let state = job_state(&mut tx, job_id).await?;
        let tiles: Option<i64> = sqlx::query_scalar(
            "UPDATE tasks SET state = 'done', done_at = ?2
             WHERE id = ?1 AND state = 'pending' RETURNING tiles",
        )
        .bind(task_id)
        .bind(t)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(tiles) = tiles else {
            release(&mut tx, task_id, job_id).await?;
            tx.commit().await?;
            return Ok(Completion::AlreadySettled);
        };
        sqlx::query("UPDATE jobs SET tiles_done = tiles_done + ?2, updated_at = ?3 WHERE id = ?1")
            .bind(job_id)
            .bind(tiles)
            .bind(t)
            .execute(&mut *tx)
            .await?;
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tasks WHERE job_id = ?1 AND state = 'pending'",
        )
        .bind(job_id)
        .fetch_one(&mut *tx)
        .await?;
        let mut finished = pending == 0 && state == "running";
        if finished && needs_invalidation(&mut tx, job_id).await? {
            // The tiles are written: the job's last step reports which changed.
            let id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO tasks (id, job_id, kind, created_at) VALUES (?1, ?2, 'invalidate', ?3)",
            )
            .bind(id)
            .bind(job_id)
            .bind(t)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE jobs SET stage = 'invalidate', updated_at = ?2 WHERE id = ?1")
                .bind(job_id)
                .bind(t)
                .execute(&mut *tx)
                .await?;
            enqueue(&mut tx, INTERACTIVE_QUEUE, id, job_id).await?;
            finished = false;
        }
        let ended = if finished {
            Some(finish_job(&mut tx, job_id).await?)
        } else {
            None
        };
        tx.commit().await?;
        self.ends.succeeded(ended);
        Ok(Completion::Counted { job_id, finished })
    }

    pub async fn fail_job(&self, job_id: Uuid, code: &str, message: &str) -> StoreResult<bool> {
        self.end_job(job_id, "failed", Some((code, message))).await
    }

    pub async fn delete_layer(&self, layer_id: Uuid) -> StoreResult<Option<Vec<String>>> {
        let mut tx = self.pool.begin().await?;
        if !layer_exists(&mut tx, layer_id).await? {
            return Ok(None);
        }
        if layer_busy(&mut tx, layer_id, true).await? {
            return Err(crate::store::layer_in_use(layer_id));
        }
        let sources =
            sqlx::query_scalar("SELECT source_key FROM layer_versions WHERE layer_id = ?1")
                .bind(layer_id)
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM layers WHERE id = ?1")
            .bind(layer_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(sources))
    }

    pub async fn cancel_job(&self, job_id: Uuid) -> StoreResult<bool> {
        self.end_job(job_id, "cancelled", None).await
    }

    async fn end_job(
        &self,
        job_id: Uuid,
        state: &str,
        error: Option<(&str, &str)>,
    ) -> StoreResult<bool> {
        let t = now();
        let mut tx = self.pool.begin().await?;
        let current = job_state(&mut tx, job_id).await?;
        if !matches!(current.as_str(), "queued" | "running") {
            tx.commit().await?;
            return Ok(false);
        }
        let created: DateTime<Utc> = sqlx::query_scalar(
            "UPDATE jobs SET state = ?2, error_code = ?3, error_message = ?4,
                    finished_at = ?5, updated_at = ?5
             WHERE id = ?1 RETURNING created_at",
        )
        .bind(job_id)
        .bind(state)
        .bind(error.map(|e| e.0))
        .bind(error.map(|e| e.1))
        .bind(t)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE tasks SET state = 'cancelled' WHERE job_id = ?1 AND state = 'pending'")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        start_next(&mut tx, job_id).await?;
        tx.commit().await?;
        self.ends.observe(state, (t - created).as_seconds_f64());
        Ok(true)
    }

    pub async fn record_changed(&self, task_id: Uuid, changed: &[u8]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let current: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT changed FROM tasks WHERE id = ?1")
                .bind(task_id)
                .fetch_optional(&mut *tx)
                .await?;
        let merged = union(current.flatten(), changed);
        sqlx::query("UPDATE tasks SET changed = ?2 WHERE id = ?1")
            .bind(task_id)
            .bind(merged)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn claim_task(&self, task_id: Uuid) -> StoreResult<bool> {
        let claimed = sqlx::query(
            "UPDATE tasks SET claimed_at = ?2 WHERE id = ?1 AND state = 'pending' RETURNING id",
        )
        .bind(task_id)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(claimed.is_some())
    }

    pub async fn release_task(&self, task_id: Uuid) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let job_id: Option<Uuid> = sqlx::query_scalar("SELECT job_id FROM tasks WHERE id = ?1")
            .bind(task_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(job_id) = job_id {
            release(&mut tx, task_id, job_id).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn start_waiting(&self) -> StoreResult<usize> {
        let layers: Vec<Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT layer_id FROM jobs WHERE state = 'queued' AND stage = 'waiting'",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut started = 0;
        for layer_id in layers {
            let mut tx = self.pool.begin().await?;
            if start_layer(&mut tx, layer_id).await? {
                started += 1;
            }
            tx.commit().await?;
        }
        Ok(started)
    }

    pub async fn create_change(
        &self,
        layer_id: Uuid,
        kind: ChangeKind,
        source_key: &str,
    ) -> StoreResult<Change> {
        let t = now();
        let mut tx = self.pool.begin().await?;
        if !layer_exists(&mut tx, layer_id).await? {
            return Err(StoreError::NotFound(format!("layer {layer_id}")));
        }
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO layer_versions (layer_id, version, source_key, created_at)
             SELECT ?1, coalesce(max(version), 0) + 1, ?2, ?3 FROM layer_versions WHERE layer_id = ?1
             RETURNING version",
        )
        .bind(layer_id)
        .bind(source_key)
        .bind(t)
        .fetch_one(&mut *tx)
        .await?;
        // Behind any job of the layer not yet ended, even one only waiting.
        let waiting = layer_busy(&mut tx, layer_id, true).await?;
        let (job_id, task_id) = (Uuid::new_v4(), Uuid::new_v4());
        sqlx::query(
            "INSERT INTO jobs (id, layer_id, version, kind, stage, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )
        .bind(job_id)
        .bind(layer_id)
        .bind(version)
        .bind(kind.job_kind())
        .bind(if waiting { "waiting" } else { "queued" })
        .bind(t)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO tasks (id, job_id, kind, created_at) VALUES (?1, ?2, ?3, ?4)")
            .bind(task_id)
            .bind(job_id)
            .bind(kind.task_kind())
            .bind(t)
            .execute(&mut *tx)
            .await?;
        if !waiting {
            let queue = queue_for(kind.job_kind(), kind.task_kind());
            enqueue(&mut tx, queue, task_id, job_id).await?;
        }
        tx.commit().await?;
        Ok(Change {
            job_id,
            version: version as i32,
            task_id,
            waiting,
        })
    }

    pub async fn change_base(&self, layer_id: Uuid) -> StoreResult<ChangeBase> {
        let published = sqlx::query(
            "SELECT v.version, v.prepared_key FROM layers l
             JOIN layer_versions v ON v.layer_id = l.id AND v.version = l.published_version
             WHERE l.id = ?1 AND v.prepared_key IS NOT NULL",
        )
        .bind(layer_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok::<_, sqlx::Error>((
                r.try_get::<i64, _>("version")? as i32,
                r.try_get("prepared_key")?,
            ))
        })
        .transpose()?;
        let rows = sqlx::query(
            "SELECT t.z, t.x, t.y, t.n, t.tiles, t.dirty, t.replaces, t.changed FROM tasks t
             JOIN jobs j ON j.id = t.job_id
             JOIN layers l ON l.id = j.layer_id
             WHERE j.layer_id = ?1 AND j.state IN ('failed', 'cancelled') AND t.kind = 'render'
               AND j.version > coalesce(l.published_version, 0)",
        )
        .bind(layer_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(ChangeBase {
            published,
            unfinished: rows
                .iter()
                .map(render_task_from_row)
                .collect::<Result<_, _>>()?,
        })
    }

    pub async fn render_tasks(&self, job_id: Uuid) -> StoreResult<Vec<RenderTask>> {
        let rows = sqlx::query(
            "SELECT z, x, y, n, tiles, dirty, replaces, changed FROM tasks
             WHERE job_id = ?1 AND kind = 'render' ORDER BY z, y, x",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(render_task_from_row)
            .collect::<Result<_, _>>()?)
    }

    pub async fn relay_outbox<F, Fut>(&self, limit: i64, publish: F) -> StoreResult<usize>
    where
        F: FnOnce(Vec<OutboxMessage>) -> Fut,
        Fut: std::future::Future<Output = Vec<i64>>,
    {
        let rows = sqlx::query(
            "SELECT id, queue, payload FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT ?1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let messages = rows
            .iter()
            .map(|r| {
                Ok(OutboxMessage {
                    id: r.try_get("id")?,
                    queue: r.try_get("queue")?,
                    payload: json(r, "payload")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        if messages.is_empty() {
            return Ok(0);
        }
        let sent = publish(messages).await;
        let t = now();
        let mut tx = self.pool.begin().await?;
        for id in &sent {
            sqlx::query("UPDATE outbox SET published_at = ?2 WHERE id = ?1")
                .bind(id)
                .bind(t)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(sent.len())
    }

    /// Marks every published outbox message of a live task unpublished again,
    /// so the relay sends it anew: at start-up, the in-process queue has lost
    /// whatever it held when the process stopped.
    pub async fn requeue_pending(&self) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE outbox SET published_at = NULL
             WHERE published_at IS NOT NULL AND EXISTS (
                 SELECT 1 FROM tasks t JOIN jobs j ON j.id = t.job_id
                 WHERE t.id = unhex(replace(json_extract(outbox.payload, '$.task'), '-', ''))
                   AND t.state = 'pending' AND j.state IN ('queued', 'running'))",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

fn json(r: &SqliteRow, column: &str) -> Result<Value, sqlx::Error> {
    let text: String = r.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn job_from_row(r: &SqliteRow) -> Result<JobStatus, sqlx::Error> {
    Ok(JobStatus {
        id: r.try_get("id")?,
        layer_id: r.try_get("layer_id")?,
        version: r.try_get::<i64, _>("version")? as i32,
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

/// Rows a statement when a plan's tasks are written (11 values a row, well
/// within SQLite's 32,766 variables).
const PLAN_ROWS: usize = 500;

async fn enqueue(
    tx: &mut Transaction<'_, Sqlite>,
    queue: &str,
    task: Uuid,
    job: Uuid,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO outbox (queue, payload, created_at) VALUES (?1, ?2, ?3)")
        .bind(queue)
        .bind(serde_json::json!({ "task": task, "job": job }).to_string())
        .bind(now())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn render_task_from_row(r: &SqliteRow) -> Result<RenderTask, sqlx::Error> {
    Ok(RenderTask {
        z: r.try_get::<i64, _>("z")? as u8,
        x: r.try_get::<i64, _>("x")? as u32,
        y: r.try_get::<i64, _>("y")? as u32,
        n: r.try_get::<i64, _>("n")? as u32,
        tiles: r.try_get::<i64, _>("tiles")? as u32,
        dirty: r.try_get("dirty")?,
        replaces: r.try_get("replaces")?,
        changed: r.try_get("changed")?,
    })
}

async fn needs_invalidation(tx: &mut Transaction<'_, Sqlite>, job_id: Uuid) -> StoreResult<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM tasks WHERE job_id = ?1 AND kind = 'render' AND replaces)
            AND NOT EXISTS (SELECT 1 FROM tasks WHERE job_id = ?1 AND kind = 'invalidate')",
    )
    .bind(job_id)
    .fetch_one(&mut **tx)
    .await?)
}

async fn release(tx: &mut Transaction<'_, Sqlite>, task_id: Uuid, job_id: Uuid) -> StoreResult<()> {
    let released = sqlx::query(
        "UPDATE tasks SET done_at = ?2
         WHERE id = ?1 AND state IN ('cancelled', 'failed') AND claimed_at IS NOT NULL
           AND done_at IS NULL",
    )
    .bind(task_id)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    if released.rows_affected() > 0 {
        start_next(tx, job_id).await?;
    }
    Ok(())
}

async fn start_next(tx: &mut Transaction<'_, Sqlite>, ended_job: Uuid) -> StoreResult<()> {
    let layer_id: Uuid = sqlx::query_scalar("SELECT layer_id FROM jobs WHERE id = ?1")
        .bind(ended_job)
        .fetch_one(&mut **tx)
        .await?;
    start_layer(tx, layer_id).await?;
    Ok(())
}

/// Whether a layer exists (SQLite's one writer at a time needs no row lock).
async fn layer_exists(tx: &mut Transaction<'_, Sqlite>, layer_id: Uuid) -> StoreResult<bool> {
    let found: Option<Uuid> = sqlx::query_scalar("SELECT id FROM layers WHERE id = ?1")
        .bind(layer_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(found.is_some())
}

async fn layer_busy(
    tx: &mut Transaction<'_, Sqlite>,
    layer_id: Uuid,
    or_waiting: bool,
) -> StoreResult<bool> {
    let lease_start = now() - chrono::Duration::seconds(CLAIM_LEASE_SECONDS);
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE layer_id = ?1
                        AND state IN ('queued', 'running') AND (?3 OR stage <> 'waiting'))
             OR EXISTS (SELECT 1 FROM tasks t JOIN jobs j ON j.id = t.job_id
                        WHERE j.layer_id = ?1 AND t.state IN ('cancelled', 'failed')
                          AND t.done_at IS NULL AND t.claimed_at > ?2)",
    )
    .bind(layer_id)
    .bind(lease_start)
    .bind(or_waiting)
    .fetch_one(&mut **tx)
    .await?)
}

async fn start_layer(tx: &mut Transaction<'_, Sqlite>, layer_id: Uuid) -> StoreResult<bool> {
    let busy = layer_busy(tx, layer_id, false).await?;
    if busy {
        return Ok(false);
    }
    let next = sqlx::query(
        "SELECT j.id AS job_id, j.kind AS job_kind, t.id AS task_id, t.kind AS task_kind
         FROM jobs j JOIN tasks t ON t.job_id = j.id AND t.state = 'pending'
         WHERE j.layer_id = ?1 AND j.state = 'queued' AND j.stage = 'waiting'
         ORDER BY j.version LIMIT 1",
    )
    .bind(layer_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(next) = next else { return Ok(false) };
    let (job_id, task_id): (Uuid, Uuid) = (next.try_get("job_id")?, next.try_get("task_id")?);
    let (job_kind, task_kind): (String, String) =
        (next.try_get("job_kind")?, next.try_get("task_kind")?);
    sqlx::query("UPDATE jobs SET stage = 'queued', updated_at = ?2 WHERE id = ?1")
        .bind(job_id)
        .bind(now())
        .execute(&mut **tx)
        .await?;
    enqueue(tx, queue_for(&job_kind, &task_kind), task_id, job_id).await?;
    Ok(true)
}

async fn job_state(tx: &mut Transaction<'_, Sqlite>, job_id: Uuid) -> StoreResult<String> {
    sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?1")
        .bind(job_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))
}

/// Ends a job in success and publishes its layer version; the seconds since
/// the job was created.
async fn finish_job(tx: &mut Transaction<'_, Sqlite>, job_id: Uuid) -> StoreResult<f64> {
    let t = now();
    let created: DateTime<Utc> = sqlx::query_scalar(
        "UPDATE jobs SET state = 'succeeded', stage = 'finished', finished_at = ?2, updated_at = ?2
         WHERE id = ?1 RETURNING created_at",
    )
    .bind(job_id)
    .bind(t)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE layers SET published_version = (SELECT version FROM jobs WHERE id = ?1),
                updated_at = ?2
         WHERE id = (SELECT layer_id FROM jobs WHERE id = ?1)",
    )
    .bind(job_id)
    .bind(t)
    .execute(&mut **tx)
    .await?;
    start_next(tx, job_id).await?;
    Ok((t - created).as_seconds_f64())
}
