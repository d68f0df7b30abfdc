//! The PostgreSQL job store.

use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use crate::amqp::TaskMessage;
use crate::ends::{JobEnds, OutboxBacklog};
use crate::error::{StoreError, StoreResult};

/// The schema, applied by [`PgStore::migrate`].
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The queue a task's message goes to.
pub const INGEST_QUEUE: &str = "tilefarm.ingest";
pub const RENDER_QUEUE: &str = "tilefarm.render";
/// Interactive work (edits), kept apart so it never waits behind bulk seeding.
pub const INTERACTIVE_QUEUE: &str = "tilefarm.interactive";

/// A new layer, as an upload describes it.
#[derive(Clone, Debug)]
pub struct NewLayer {
    pub name: String,
    pub min_zoom: u8,
    pub max_zoom: u8,
    pub style: Value,
}

/// What an upload created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upload {
    pub layer_id: Uuid,
    pub job_id: Uuid,
    pub ingest_task: Uuid,
}

/// One metatile to render.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenderTask {
    pub z: u8,
    pub x: u32,
    pub y: u32,
    pub n: u32,
    /// Tiles the task adds to its job's progress.
    pub tiles: u32,
    /// The tiles of the metatile to write, one bit per tile, row by row, lowest
    /// bit first; `None` for all of them.
    pub dirty: Option<Vec<u8>>,
    /// Whether the task replaces tiles already stored: it deletes those that
    /// became empty, and the job ends by reporting the tiles it changed.
    pub replaces: bool,
    /// The tiles it found different and rewrote or deleted (a mask like
    /// `dirty`), once it has run.
    pub changed: Option<Vec<u8>>,
}

/// What a change to an existing layer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Upserts and deletes of features by id.
    Edit,
    /// New data for the whole layer.
    Replace,
}

impl ChangeKind {
    pub(crate) fn job_kind(self) -> &'static str {
        match self {
            ChangeKind::Edit => "edit",
            ChangeKind::Replace => "upload",
        }
    }

    pub(crate) fn task_kind(self) -> &'static str {
        match self {
            ChangeKind::Edit => "edit",
            ChangeKind::Replace => "ingest",
        }
    }
}

/// What a change to a layer created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub job_id: Uuid,
    pub version: i32,
    pub task_id: Uuid,
    /// Whether the job waits for an earlier job of the layer to end first.
    pub waiting: bool,
}

/// What a change builds on: the layer's published version and the tiles that
/// jobs which ended without publishing may have written since.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeBase {
    /// The published version and where its prepared features are.
    pub published: Option<(i32, String)>,
    /// Render tasks of failed or cancelled jobs after the published version.
    pub unfinished: Vec<RenderTask>,
}

/// How long a task a worker took may still be writing tiles after its job
/// ended, unless the worker says it stopped sooner.
pub const CLAIM_LEASE_SECONDS: i64 = 120;

/// The union of two tile masks.
pub(crate) fn union(a: Option<Vec<u8>>, b: &[u8]) -> Vec<u8> {
    let mut out = a.unwrap_or_default();
    if out.len() < b.len() {
        out.resize(b.len(), 0);
    }
    out.iter_mut().zip(b).for_each(|(x, y)| *x |= y);
    out
}

/// The queue for a task of `kind` in a job of `job_kind`: edits go first.
pub(crate) fn queue_for(job_kind: &str, task_kind: &str) -> &'static str {
    match (job_kind, task_kind) {
        ("edit", _) | (_, "invalidate") => INTERACTIVE_QUEUE,
        (_, "ingest") => INGEST_QUEUE,
        _ => RENDER_QUEUE,
    }
}

/// What completing a task did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// The task's tiles were added to its job; `finished` when it was the last.
    Counted { job_id: Uuid, finished: bool },
    /// The task was done (or cancelled) already: a redelivery, counted nothing.
    AlreadySettled,
}

/// A message waiting in the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxMessage {
    pub id: i64,
    pub queue: String,
    pub payload: Value,
}

/// The job store on PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// The jobs this store ended, for `/metrics`.
    ends: JobEnds,
}

impl PgStore {
    /// Connects to `url` (`postgres://...`), giving up after a few seconds.
    pub async fn connect(url: &str) -> StoreResult<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(PgStore {
            pool,
            ends: JobEnds::default(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How long the jobs this store ended took.
    pub fn job_ends(&self) -> &JobEnds {
        &self.ends
    }

    /// Applies the migrations not yet applied; safe to run again.
    pub async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Records an upload in one transaction: the layer (not yet published), its
    /// first version, a queued job, its ingest task and the outbox message for it.
    pub async fn create_upload(&self, layer: &NewLayer, source_key: &str) -> StoreResult<Upload> {
        check_new_layer(layer)?;
        let (layer_id, job_id, ingest_task) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO layers (id, name, min_zoom, max_zoom, style) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(layer_id)
        .bind(&layer.name)
        .bind(i16::from(layer.min_zoom))
        .bind(i16::from(layer.max_zoom))
        .bind(&layer.style)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO layer_versions (layer_id, version, source_key) VALUES ($1, 1, $2)",
        )
        .bind(layer_id)
        .bind(source_key)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO jobs (id, layer_id, version, kind) VALUES ($1, $2, 1, 'upload')")
            .bind(job_id)
            .bind(layer_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO tasks (id, job_id, kind) VALUES ($1, $2, 'ingest')")
            .bind(ingest_task)
            .bind(job_id)
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

    /// Settles the plan of a running job: its render tasks, its total tile count,
    /// and their outbox messages, in one transaction. Marks `plan_task` done.
    pub async fn plan(
        &self,
        job_id: Uuid,
        plan_task: Uuid,
        tasks: &[RenderTask],
    ) -> StoreResult<Vec<Uuid>> {
        let mut tx = self.pool.begin().await?;
        let state = lock_job(&mut tx, job_id).await?;
        if state != "queued" && state != "running" {
            return Err(StoreError::Conflict(format!(
                "job {job_id} is {state}; it cannot be planned"
            )));
        }
        let kind: String = sqlx::query_scalar("SELECT kind FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await?;
        let queue = queue_for(&kind, "render");
        let total: i64 = tasks.iter().map(|t| i64::from(t.tiles)).sum();
        sqlx::query(
            "UPDATE jobs SET state = 'running', stage = 'render', tiles_total = $2,
                    started_at = coalesce(started_at, now()), updated_at = now()
             WHERE id = $1",
        )
        .bind(job_id)
        .bind(total)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE tasks SET state = 'done', done_at = now() WHERE id = $1 AND state = 'pending'",
        )
        .bind(plan_task)
        .execute(&mut *tx)
        .await?;
        // Many rows a statement: a deep plan has hundreds of thousands of
        // tasks, and a round trip each would hold the job's row for minutes.
        let ids: Vec<Uuid> = tasks.iter().map(|_| Uuid::new_v4()).collect();
        for (chunk, chunk_ids) in tasks.chunks(PLAN_ROWS).zip(ids.chunks(PLAN_ROWS)) {
            let mut insert = sqlx::QueryBuilder::<Postgres>::new(
                "INSERT INTO tasks (id, job_id, kind, z, x, y, n, tiles, dirty, replaces) ",
            );
            insert.push_values(chunk.iter().zip(chunk_ids), |mut row, (t, id)| {
                row.push_bind(*id)
                    .push_bind(job_id)
                    .push_bind("render")
                    .push_bind(i16::from(t.z))
                    .push_bind(i64::from(t.x) as i32)
                    .push_bind(i64::from(t.y) as i32)
                    .push_bind(t.n as i32)
                    .push_bind(t.tiles as i32)
                    .push_bind(t.dirty.clone())
                    .push_bind(t.replaces);
            });
            insert.build().execute(&mut *tx).await?;
            let mut outbox =
                sqlx::QueryBuilder::<Postgres>::new("INSERT INTO outbox (queue, payload) ");
            outbox.push_values(chunk_ids, |mut row, id| {
                let message = TaskMessage {
                    task: *id,
                    job: job_id,
                    replay: 0,
                };
                row.push_bind(queue)
                    .push_bind(serde_json::to_value(message).expect("a task message is JSON"));
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

    /// Records a task done and adds its tiles to its job, once: a redelivered
    /// task counts nothing. The last task finishes the job.
    pub async fn complete_task(&self, task_id: Uuid) -> StoreResult<Completion> {
        let mut tx = self.pool.begin().await?;
        let job_id: Option<Uuid> = sqlx::query_scalar("SELECT job_id FROM tasks WHERE id = $1")
            .bind(task_id)
            .fetch_optional(&mut *tx)
            .await?;
        let job_id = job_id.ok_or_else(|| StoreError::NotFound(format!("task {task_id}")))?;
        // Completions of one job are serialized on the job's row.
        let state = lock_job(&mut tx, job_id).await?;
        let settled = sqlx::query(
            "UPDATE tasks SET state = 'done', done_at = now()
             WHERE id = $1 AND state = 'pending' RETURNING tiles",
        )
        .bind(task_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = settled else {
            // A task of a job that ended while this worker held it: it has
            // stopped writing now, which may let the layer's next job start.
            release(&mut tx, task_id, job_id).await?;
            tx.commit().await?;
            return Ok(Completion::AlreadySettled);
        };
        let tiles: i32 = row.try_get("tiles")?;
        sqlx::query(
            "UPDATE jobs SET tiles_done = tiles_done + $2, updated_at = now() WHERE id = $1",
        )
        .bind(job_id)
        .bind(i64::from(tiles))
        .execute(&mut *tx)
        .await?;
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM tasks WHERE job_id = $1 AND state = 'pending'",
        )
        .bind(job_id)
        .fetch_one(&mut *tx)
        .await?;
        let mut finished = pending == 0 && state == "running";
        if finished && needs_invalidation(&mut tx, job_id).await? {
            // The tiles are written: the job's last step reports which changed.
            let id = Uuid::new_v4();
            sqlx::query("INSERT INTO tasks (id, job_id, kind) VALUES ($1, $2, 'invalidate')")
                .bind(id)
                .bind(job_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE jobs SET stage = 'invalidate', updated_at = now() WHERE id = $1")
                .bind(job_id)
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

    /// Fails a job with a stable code and a message a person can act on; its
    /// remaining tasks are dropped. A job already ended is left as it is.
    pub async fn fail_job(&self, job_id: Uuid, code: &str, message: &str) -> StoreResult<bool> {
        self.end_job(job_id, "failed", Some((code, message))).await
    }

    /// Deletes a layer with its versions, jobs and tasks, and gives the object
    /// keys of its uploads for the caller to remove with its tiles. `None` for
    /// an unknown layer; `Conflict` while a job of it is under way or waiting,
    /// or a worker may still be writing its tiles.
    pub async fn delete_layer(&self, layer_id: Uuid) -> StoreResult<Option<Vec<String>>> {
        let mut tx = self.pool.begin().await?;
        if !lock_layer(&mut tx, layer_id).await? {
            return Ok(None);
        }
        if layer_busy(&mut tx, layer_id, true).await? {
            return Err(layer_in_use(layer_id));
        }
        let sources =
            sqlx::query_scalar("SELECT source_key FROM layer_versions WHERE layer_id = $1")
                .bind(layer_id)
                .fetch_all(&mut *tx)
                .await?;
        sqlx::query("DELETE FROM layers WHERE id = $1")
            .bind(layer_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(sources))
    }

    /// Cancels a job: its remaining tasks are dropped and it ends `cancelled`.
    pub async fn cancel_job(&self, job_id: Uuid) -> StoreResult<bool> {
        self.end_job(job_id, "cancelled", None).await
    }

    async fn end_job(
        &self,
        job_id: Uuid,
        state: &str,
        error: Option<(&str, &str)>,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let current = lock_job(&mut tx, job_id).await?;
        if !matches!(current.as_str(), "queued" | "running") {
            tx.commit().await?;
            return Ok(false);
        }
        let seconds: f64 = sqlx::query_scalar(
            "UPDATE jobs SET state = $2, error_code = $3, error_message = $4,
                    finished_at = now(), updated_at = now()
             WHERE id = $1 RETURNING EXTRACT(EPOCH FROM finished_at - created_at)::float8",
        )
        .bind(job_id)
        .bind(state)
        .bind(error.map(|e| e.0))
        .bind(error.map(|e| e.1))
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE tasks SET state = 'cancelled' WHERE job_id = $1 AND state = 'pending'")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        start_next(&mut tx, job_id).await?;
        tx.commit().await?;
        self.ends.observe(state, seconds);
        Ok(true)
    }

    /// Adds `changed` (a mask like [`RenderTask::dirty`]) to the tiles a task
    /// has changed; a task run again adds to what it changed before.
    pub async fn record_changed(&self, task_id: Uuid, changed: &[u8]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let current: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT changed FROM tasks WHERE id = $1 FOR UPDATE")
                .bind(task_id)
                .fetch_optional(&mut *tx)
                .await?;
        let merged = union(current.flatten(), changed);
        sqlx::query("UPDATE tasks SET changed = $2 WHERE id = $1")
            .bind(task_id)
            .bind(merged)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks a pending task taken by a worker; `false` when it is not pending
    /// any more (done, or its job ended), and there is nothing to do.
    pub async fn claim_task(&self, task_id: Uuid) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        // A claim lost in a database crash only lets a next job start sooner
        // after one that was cancelled: no need to wait for the disk.
        sqlx::query("SET LOCAL synchronous_commit TO OFF")
            .execute(&mut *tx)
            .await?;
        let claimed = sqlx::query(
            "UPDATE tasks SET claimed_at = now() WHERE id = $1 AND state = 'pending' RETURNING id",
        )
        .bind(task_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(claimed.is_some())
    }

    /// Records that no worker holds a task of an ended job any more (it failed
    /// for good, or its worker is gone), so the layer's next job may start.
    pub async fn release_task(&self, task_id: Uuid) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let job_id: Option<Uuid> = sqlx::query_scalar("SELECT job_id FROM tasks WHERE id = $1")
            .bind(task_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(job_id) = job_id {
            lock_job(&mut tx, job_id).await?;
            release(&mut tx, task_id, job_id).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Starts every waiting job whose layer has nothing under way: a safety net
    /// for a job that ended while a worker that then vanished held one of its
    /// tasks. Returns the jobs started.
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

    /// Records a change to an existing layer in one transaction: its next
    /// version (the edit or the new data at `source_key`), a job, the job's first
    /// task, and, unless another job of the layer has yet to end, its message.
    /// Jobs of a layer run one at a time in version order, so each change builds
    /// on the one before and none races another over the layer's tiles.
    pub async fn create_change(
        &self,
        layer_id: Uuid,
        kind: ChangeKind,
        source_key: &str,
    ) -> StoreResult<Change> {
        let mut tx = self.pool.begin().await?;
        if !lock_layer(&mut tx, layer_id).await? {
            return Err(StoreError::NotFound(format!("layer {layer_id}")));
        }
        let version: i32 = sqlx::query_scalar(
            "INSERT INTO layer_versions (layer_id, version, source_key)
             SELECT $1, coalesce(max(version), 0) + 1, $2 FROM layer_versions WHERE layer_id = $1
             RETURNING version",
        )
        .bind(layer_id)
        .bind(source_key)
        .fetch_one(&mut *tx)
        .await?;
        // Behind any job of the layer not yet ended, even one only waiting.
        let waiting = layer_busy(&mut tx, layer_id, true).await?;
        let (job_id, task_id) = (Uuid::new_v4(), Uuid::new_v4());
        sqlx::query(
            "INSERT INTO jobs (id, layer_id, version, kind, stage) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(job_id)
        .bind(layer_id)
        .bind(version)
        .bind(kind.job_kind())
        .bind(if waiting { "waiting" } else { "queued" })
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO tasks (id, job_id, kind) VALUES ($1, $2, $3)")
            .bind(task_id)
            .bind(job_id)
            .bind(kind.task_kind())
            .execute(&mut *tx)
            .await?;
        if !waiting {
            let queue = queue_for(kind.job_kind(), kind.task_kind());
            enqueue(&mut tx, queue, task_id, job_id).await?;
        }
        tx.commit().await?;
        Ok(Change {
            job_id,
            version,
            task_id,
            waiting,
        })
    }

    /// What a change to `layer_id` builds on.
    pub async fn change_base(&self, layer_id: Uuid) -> StoreResult<ChangeBase> {
        let published = sqlx::query(
            "SELECT v.version, v.prepared_key FROM layers l
             JOIN layer_versions v ON v.layer_id = l.id AND v.version = l.published_version
             WHERE l.id = $1 AND v.prepared_key IS NOT NULL",
        )
        .bind(layer_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| Ok::<_, sqlx::Error>((r.try_get("version")?, r.try_get("prepared_key")?)))
        .transpose()?;
        let rows = sqlx::query(
            "SELECT t.z, t.x, t.y, t.n, t.tiles, t.dirty, t.replaces, t.changed FROM tasks t
             JOIN jobs j ON j.id = t.job_id
             JOIN layers l ON l.id = j.layer_id
             WHERE j.layer_id = $1 AND j.state IN ('failed', 'cancelled') AND t.kind = 'render'
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

    /// The render tasks of a job.
    pub async fn render_tasks(&self, job_id: Uuid) -> StoreResult<Vec<RenderTask>> {
        let rows = sqlx::query(
            "SELECT z, x, y, n, tiles, dirty, replaces, changed FROM tasks
             WHERE job_id = $1 AND kind = 'render' ORDER BY z, y, x",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(render_task_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Marks a job running at `stage` (`ingest`, `render`, ...).
    pub async fn set_stage(&self, job_id: Uuid, stage: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE jobs SET state = 'running', stage = $2,
                    started_at = coalesce(started_at, now()), updated_at = now()
             WHERE id = $1 AND state IN ('queued', 'running')",
        )
        .bind(job_id)
        .bind(stage)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records where a layer version's prepared features are, how many there are
    /// and their extent (`[west, south, east, north]`).
    pub async fn record_prepared(
        &self,
        layer_id: Uuid,
        version: i32,
        prepared_key: &str,
        feature_count: i64,
        bounds: Option<[f64; 4]>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE layer_versions SET prepared_key = $3, feature_count = $4, bounds = $5
             WHERE layer_id = $1 AND version = $2",
        )
        .bind(layer_id)
        .bind(version)
        .bind(prepared_key)
        .bind(feature_count)
        .bind(bounds.map(|b| serde_json::json!(b)))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts a failed attempt at a task and returns the attempts so far.
    pub async fn record_attempt(&self, task_id: Uuid, error: &str) -> StoreResult<i32> {
        sqlx::query_scalar(
            "UPDATE tasks SET attempts = attempts + 1, last_error = $2,
                    first_failed_at = coalesce(first_failed_at, now()), last_failed_at = now()
             WHERE id = $1 RETURNING attempts",
        )
        .bind(task_id)
        .bind(error)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("task {task_id}")))
    }

    /// Takes up to `limit` unpublished outbox messages, oldest first, skipping
    /// rows another relay holds; `publish` sends them, and those it returns as
    /// sent are marked published in the same transaction.
    pub async fn relay_outbox<F, Fut>(&self, limit: i64, publish: F) -> StoreResult<usize>
    where
        F: FnOnce(Vec<OutboxMessage>) -> Fut,
        Fut: std::future::Future<Output = Vec<i64>>,
    {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(
            "SELECT id, queue, payload FROM outbox WHERE published_at IS NULL
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let messages = rows
            .iter()
            .map(|r| {
                Ok(OutboxMessage {
                    id: r.try_get("id")?,
                    queue: r.try_get("queue")?,
                    payload: r.try_get("payload")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        if messages.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let sent = publish(messages).await;
        sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
            .bind(&sent)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(sent.len())
    }

    /// The outbox messages not published yet, and how long the oldest has waited.
    pub async fn outbox_backlog(&self) -> StoreResult<OutboxBacklog> {
        let row = sqlx::query(
            "SELECT count(*) AS messages,
                    coalesce(EXTRACT(EPOCH FROM now() - (
                        SELECT created_at FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT 1
                    ))::float8, 0) AS oldest
             FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxBacklog {
            messages: row.try_get("messages")?,
            oldest_age_seconds: row.try_get::<f64, _>("oldest")?.max(0.0),
        })
    }
}

/// Checks a new layer's name and zoom range.
pub(crate) fn check_new_layer(layer: &NewLayer) -> StoreResult<()> {
    if layer.name.trim().is_empty() || layer.name.chars().count() > 200 {
        return Err(StoreError::Invalid(
            "a layer name must have 1 to 200 characters".into(),
        ));
    }
    if layer.min_zoom > layer.max_zoom || layer.max_zoom > 24 {
        return Err(StoreError::Invalid(format!(
            "zoom range {}-{} is not within 0-24, low to high",
            layer.min_zoom, layer.max_zoom
        )));
    }
    Ok(())
}

/// Rows a statement when a plan's tasks are written (10 values a row, well
/// within PostgreSQL's 65,535 parameters).
const PLAN_ROWS: usize = 500;

async fn enqueue(
    tx: &mut Transaction<'_, Postgres>,
    queue: &str,
    task: Uuid,
    job: Uuid,
) -> StoreResult<()> {
    let message = TaskMessage {
        task,
        job,
        replay: 0,
    };
    enqueue_message(tx, queue, &message).await
}

/// Puts a task's message in the outbox.
pub(crate) async fn enqueue_message(
    tx: &mut Transaction<'_, Postgres>,
    queue: &str,
    message: &TaskMessage,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO outbox (queue, payload) VALUES ($1, $2)")
        .bind(queue)
        .bind(serde_json::to_value(message).expect("a task message is JSON"))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn render_task_from_row(r: &sqlx::postgres::PgRow) -> Result<RenderTask, sqlx::Error> {
    Ok(RenderTask {
        z: r.try_get::<i16, _>("z")? as u8,
        x: r.try_get::<i32, _>("x")? as u32,
        y: r.try_get::<i32, _>("y")? as u32,
        n: r.try_get::<i32, _>("n")? as u32,
        tiles: r.try_get::<i32, _>("tiles")? as u32,
        dirty: r.try_get("dirty")?,
        replaces: r.try_get("replaces")?,
        changed: r.try_get("changed")?,
    })
}

/// Whether a job whose tiles are all written must still report the tiles it
/// changed: it replaced stored tiles and has not reported yet.
async fn needs_invalidation(tx: &mut Transaction<'_, Postgres>, job_id: Uuid) -> StoreResult<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM tasks WHERE job_id = $1 AND kind = 'render' AND replaces)
            AND NOT EXISTS (SELECT 1 FROM tasks WHERE job_id = $1 AND kind = 'invalidate')",
    )
    .bind(job_id)
    .fetch_one(&mut **tx)
    .await?)
}

/// Marks a claimed task of an ended job released and, if that was the last
/// thing its layer waited for, starts the layer's next job.
async fn release(
    tx: &mut Transaction<'_, Postgres>,
    task_id: Uuid,
    job_id: Uuid,
) -> StoreResult<()> {
    let released = sqlx::query(
        "UPDATE tasks SET done_at = now()
         WHERE id = $1 AND state IN ('cancelled', 'failed') AND claimed_at IS NOT NULL
           AND done_at IS NULL",
    )
    .bind(task_id)
    .execute(&mut **tx)
    .await?;
    if released.rows_affected() > 0 {
        start_next(tx, job_id).await?;
    }
    Ok(())
}

/// After a job of a layer ended (or let go of a task): starts the layer's next
/// waiting job, if nothing of the layer is under way.
async fn start_next(tx: &mut Transaction<'_, Postgres>, ended_job: Uuid) -> StoreResult<()> {
    let layer_id: Uuid = sqlx::query_scalar("SELECT layer_id FROM jobs WHERE id = $1")
        .bind(ended_job)
        .fetch_one(&mut **tx)
        .await?;
    start_layer(tx, layer_id).await?;
    Ok(())
}

/// Whether a layer has a job under way (counting waiting ones too with
/// `or_waiting`), or a task a worker may still be writing tiles for although its
/// job ended.
async fn layer_busy(
    tx: &mut Transaction<'_, Postgres>,
    layer_id: Uuid,
    or_waiting: bool,
) -> StoreResult<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE layer_id = $1
                        AND state IN ('queued', 'running') AND ($3 OR stage <> 'waiting'))
             OR EXISTS (SELECT 1 FROM tasks t JOIN jobs j ON j.id = t.job_id
                        WHERE j.layer_id = $1 AND t.state IN ('cancelled', 'failed')
                          AND t.done_at IS NULL
                          AND t.claimed_at > now() - make_interval(secs => $2))",
    )
    .bind(layer_id)
    .bind(CLAIM_LEASE_SECONDS as f64)
    .bind(or_waiting)
    .fetch_one(&mut **tx)
    .await?)
}

/// Locks a layer's row until the transaction ends, so that changes of one
/// layer are decided one at a time; `false` for an unknown layer.
async fn lock_layer(tx: &mut Transaction<'_, Postgres>, layer_id: Uuid) -> StoreResult<bool> {
    let found: Option<Uuid> = sqlx::query_scalar("SELECT id FROM layers WHERE id = $1 FOR UPDATE")
        .bind(layer_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(found.is_some())
}

/// Starts the oldest waiting job of a layer unless another job of it is under
/// way, or a worker may still be writing tiles for a job of it that ended.
async fn start_layer(tx: &mut Transaction<'_, Postgres>, layer_id: Uuid) -> StoreResult<bool> {
    lock_layer(tx, layer_id).await?;
    let busy = layer_busy(tx, layer_id, false).await?;
    if busy {
        return Ok(false);
    }
    let next = sqlx::query(
        "SELECT j.id AS job_id, j.kind AS job_kind, t.id AS task_id, t.kind AS task_kind
         FROM jobs j JOIN tasks t ON t.job_id = j.id AND t.state = 'pending'
         WHERE j.layer_id = $1 AND j.state = 'queued' AND j.stage = 'waiting'
         ORDER BY j.version LIMIT 1",
    )
    .bind(layer_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(next) = next else { return Ok(false) };
    let (job_id, task_id): (Uuid, Uuid) = (next.try_get("job_id")?, next.try_get("task_id")?);
    let (job_kind, task_kind): (String, String) =
        (next.try_get("job_kind")?, next.try_get("task_kind")?);
    sqlx::query("UPDATE jobs SET stage = 'queued', updated_at = now() WHERE id = $1")
        .bind(job_id)
        .execute(&mut **tx)
        .await?;
    enqueue(tx, queue_for(&job_kind, &task_kind), task_id, job_id).await?;
    Ok(true)
}

/// Locks a job's row for the rest of the transaction and returns its state.
pub(crate) async fn lock_job(
    tx: &mut Transaction<'_, Postgres>,
    job_id: Uuid,
) -> StoreResult<String> {
    sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1 FOR UPDATE")
        .bind(job_id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))
}

/// Ends a job in success and publishes its layer version; the seconds since
/// the job was created.
async fn finish_job(tx: &mut Transaction<'_, Postgres>, job_id: Uuid) -> StoreResult<f64> {
    let seconds = sqlx::query_scalar(
        "UPDATE jobs SET state = 'succeeded', stage = 'finished', finished_at = now(), updated_at = now()
         WHERE id = $1 RETURNING EXTRACT(EPOCH FROM finished_at - created_at)::float8",
    )
    .bind(job_id)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE layers SET published_version = j.version, updated_at = now()
         FROM jobs j WHERE j.id = $1 AND layers.id = j.layer_id",
    )
    .bind(job_id)
    .execute(&mut **tx)
    .await?;
    start_next(tx, job_id).await?;
    Ok(seconds)
}

/// A layer that cannot be deleted yet.
pub(crate) fn layer_in_use(layer_id: Uuid) -> StoreError {
    StoreError::Conflict(format!(
        "layer {layer_id} has a job under way or waiting, or tiles a worker is still \
         writing: cancel its jobs (DELETE /v1/jobs/{{id}}) and try again in a minute"
    ))
}
