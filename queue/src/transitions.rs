//! The job store's state machine, written once for both databases: every
//! transition of a layer, a job and a task, each in one transaction.
//!
//! A layer's jobs run one at a time in version order: a change made while an
//! earlier job of its layer has not ended waits (stage `waiting`), and each
//! job's end starts the next. Every task's message goes through the outbox in
//! the transaction that makes the task live, so nothing is published that the
//! database does not hold, and nothing held is left unpublished.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use crate::amqp::TaskMessage;
use crate::db::Tx;
use crate::error::{StoreError, StoreResult};
use crate::job_store::JobStore;
use crate::model::{
    CLAIM_LEASE_SECONDS, Change, ChangeKind, Completion, INGEST_QUEUE, INTERACTIVE_QUEUE, JobKind,
    JobState, NewLayer, RenderTask, Stage, TaskKind, Upload, queue_for, union,
};

/// Rows a statement when a plan's tasks are written (11 values a row, well
/// within PostgreSQL's 65,535 parameters and SQLite's 32,766).
const PLAN_ROWS: usize = 500;

impl JobStore {
    /// Records an upload in one transaction: the layer (not yet published), its
    /// first version, a queued job, its ingest task and the outbox message for it.
    pub async fn create_upload(&self, layer: &NewLayer, source_key: &str) -> StoreResult<Upload> {
        layer.check()?;
        let (layer_id, job_id, ingest_task) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut tx = self.db.begin().await?;
        let now = tx.now();
        let q = tx
            .query(
                "INSERT INTO layers (id, name, min_zoom, max_zoom, style, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(layer_id)
            .bind(layer.name.as_str())
            .bind(i16::from(layer.min_zoom))
            .bind(i16::from(layer.max_zoom))
            .bind(Json(&layer.style))
            .bind(now);
        tx.execute(q).await?;
        let q = tx
            .query(
                "INSERT INTO layer_versions (layer_id, version, source_key, created_at)
                 VALUES ($1, 1, $2, $3)",
            )
            .bind(layer_id)
            .bind(source_key)
            .bind(now);
        tx.execute(q).await?;
        insert_job(&mut tx, job_id, layer_id, 1, JobKind::Upload, Stage::Queued).await?;
        insert_task(&mut tx, ingest_task, job_id, TaskKind::Ingest).await?;
        enqueue(&mut tx, INGEST_QUEUE, ingest_task, job_id).await?;
        tx.commit().await?;
        Ok(Upload {
            layer_id,
            job_id,
            ingest_task,
        })
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
        let mut tx = self.db.begin().await?;
        if !lock_layer(&mut tx, layer_id).await? {
            return Err(StoreError::NotFound(format!("layer {layer_id}")));
        }
        let q = tx
            .query(
                "INSERT INTO layer_versions (layer_id, version, source_key, created_at)
                 SELECT $1, coalesce(max(version), 0) + 1, $2, $3
                 FROM layer_versions WHERE layer_id = $1
                 RETURNING version",
            )
            .bind(layer_id)
            .bind(source_key)
            .bind(tx.now());
        let version: i32 = tx.fetch_one(q).await?.get(0)?;
        // Behind any job of the layer not yet ended, even one only waiting.
        let waiting = layer_busy(&mut tx, layer_id, true).await?;
        let (job_id, task_id) = (Uuid::new_v4(), Uuid::new_v4());
        let stage = if waiting {
            Stage::Waiting
        } else {
            Stage::Queued
        };
        insert_job(&mut tx, job_id, layer_id, version, kind.job_kind(), stage).await?;
        insert_task(&mut tx, task_id, job_id, kind.task_kind()).await?;
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

    /// Marks a job running at `stage` (ingest, render, ...), unless it ended.
    pub async fn set_stage(&self, job_id: Uuid, stage: Stage) -> StoreResult<()> {
        let now = Utc::now();
        let q = self
            .db
            .query(
                "UPDATE jobs SET state = 'running', stage = $2,
                        started_at = coalesce(started_at, $3), updated_at = $3
                 WHERE id = $1 AND state IN ('queued', 'running')",
            )
            .bind(job_id)
            .bind(stage.as_str())
            .bind(now);
        self.db.execute(q).await?;
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
        let q = self
            .db
            .query(
                "UPDATE layer_versions SET prepared_key = $3, feature_count = $4, bounds = $5
                 WHERE layer_id = $1 AND version = $2",
            )
            .bind(layer_id)
            .bind(version)
            .bind(prepared_key)
            .bind(feature_count)
            .bind(bounds.map(Json));
        self.db.execute(q).await?;
        Ok(())
    }

    /// Settles the plan of a live job: its render tasks, its total tile count,
    /// and their outbox messages, in one transaction. Marks `plan_task` done; a
    /// plan of no tasks ends the job in success.
    pub async fn plan(
        &self,
        job_id: Uuid,
        plan_task: Uuid,
        tasks: &[RenderTask],
    ) -> StoreResult<Vec<Uuid>> {
        let mut tx = self.db.begin().await?;
        let now = tx.now();
        let state = lock_job(&mut tx, job_id).await?;
        if !state.is_live() {
            return Err(StoreError::Conflict(format!(
                "job {job_id} is {state}; it cannot be planned"
            )));
        }
        let q = tx.query("SELECT kind FROM jobs WHERE id = $1").bind(job_id);
        let kind: JobKind = tx.fetch_one(q).await?.parse("kind")?;
        let queue = queue_for(kind, TaskKind::Render);
        let total: i64 = tasks.iter().map(|t| i64::from(t.tiles)).sum();
        let q = tx
            .query(
                "UPDATE jobs SET state = 'running', stage = 'render', tiles_total = $2,
                        started_at = coalesce(started_at, $3), updated_at = $3
                 WHERE id = $1",
            )
            .bind(job_id)
            .bind(total)
            .bind(now);
        tx.execute(q).await?;
        let q = tx
            .query(
                "UPDATE tasks SET state = 'done', done_at = $2 WHERE id = $1 AND state = 'pending'",
            )
            .bind(plan_task)
            .bind(now);
        tx.execute(q).await?;
        // Many rows a statement: a deep plan has hundreds of thousands of
        // tasks, and a round trip each would hold the job for minutes.
        let ids: Vec<Uuid> = tasks.iter().map(|_| Uuid::new_v4()).collect();
        for (chunk, chunk_ids) in tasks.chunks(PLAN_ROWS).zip(ids.chunks(PLAN_ROWS)) {
            let mut insert = tx.insert_rows(
                "INSERT INTO tasks (id, job_id, kind, z, x, y, n, tiles, dirty, replaces, created_at)",
                11,
                chunk.len(),
            );
            for (t, id) in chunk.iter().zip(chunk_ids) {
                insert = insert
                    .bind(*id)
                    .bind(job_id)
                    .bind(TaskKind::Render.as_str())
                    .bind(i16::from(t.z))
                    .bind(t.x as i32)
                    .bind(t.y as i32)
                    .bind(t.n as i32)
                    .bind(t.tiles as i32)
                    .bind(t.dirty.clone())
                    .bind(t.replaces)
                    .bind(now);
            }
            tx.execute(insert).await?;
            let mut outbox = tx.insert_rows(
                "INSERT INTO outbox (queue, payload, created_at)",
                3,
                chunk_ids.len(),
            );
            for id in chunk_ids {
                outbox = outbox
                    .bind(queue)
                    .bind(Json(TaskMessage::new(*id, job_id)))
                    .bind(now);
            }
            tx.execute(outbox).await?;
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
    /// task counts nothing. The last task finishes the job, or, when the job
    /// replaced stored tiles, queues its last step, which reports them.
    pub async fn complete_task(&self, task_id: Uuid) -> StoreResult<Completion> {
        let mut tx = self.db.begin().await?;
        let now = tx.now();
        let job_id = task_job(&mut tx, task_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("task {task_id}")))?;
        // Completions of one job are decided one at a time, on the job's row.
        let state = lock_job(&mut tx, job_id).await?;
        let q = tx
            .query(
                "UPDATE tasks SET state = 'done', done_at = $2
                 WHERE id = $1 AND state = 'pending' RETURNING tiles",
            )
            .bind(task_id)
            .bind(now);
        let Some(row) = tx.fetch_optional(q).await? else {
            // A task of a job that ended while this worker held it: it has
            // stopped writing now, which may let the layer's next job start.
            release(&mut tx, task_id, job_id).await?;
            tx.commit().await?;
            return Ok(Completion::AlreadySettled);
        };
        let tiles: i32 = row.get("tiles")?;
        let q = tx
            .query("UPDATE jobs SET tiles_done = tiles_done + $2, updated_at = $3 WHERE id = $1")
            .bind(job_id)
            .bind(i64::from(tiles))
            .bind(now);
        tx.execute(q).await?;
        // Whether any task is left, not how many: the first pending row
        // answers, where a count would read every pending task of a deep
        // job at every completion.
        let q = tx
            .query("SELECT EXISTS (SELECT 1 FROM tasks WHERE job_id = $1 AND state = 'pending')")
            .bind(job_id);
        let pending: bool = tx.fetch_one(q).await?.get(0)?;
        let mut finished = !pending && state == JobState::Running;
        if finished && needs_invalidation(&mut tx, job_id).await? {
            // The tiles are written: the job's last step reports which changed.
            let id = Uuid::new_v4();
            insert_task(&mut tx, id, job_id, TaskKind::Invalidate).await?;
            let q = tx
                .query("UPDATE jobs SET stage = 'invalidate', updated_at = $2 WHERE id = $1")
                .bind(job_id)
                .bind(now);
            tx.execute(q).await?;
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
        self.end_job(job_id, JobState::Failed, Some((code, message)))
            .await
    }

    /// Cancels a job: its remaining tasks are dropped and it ends `cancelled`.
    pub async fn cancel_job(&self, job_id: Uuid) -> StoreResult<bool> {
        self.end_job(job_id, JobState::Cancelled, None).await
    }

    /// Ends a live job `state` (failed or cancelled); `false` when it had
    /// ended already.
    async fn end_job(
        &self,
        job_id: Uuid,
        state: JobState,
        error: Option<(&str, &str)>,
    ) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        let now = tx.now();
        let current = lock_job(&mut tx, job_id).await?;
        if !current.is_live() {
            tx.commit().await?;
            return Ok(false);
        }
        let q = tx
            .query(
                "UPDATE jobs SET state = $2, error_code = $3, error_message = $4,
                        finished_at = $5, updated_at = $5
                 WHERE id = $1 RETURNING created_at",
            )
            .bind(job_id)
            .bind(state.as_str())
            .bind(error.map(|e| e.0.to_owned()))
            .bind(error.map(|e| e.1.to_owned()))
            .bind(now);
        let created: DateTime<Utc> = tx.fetch_one(q).await?.get(0)?;
        let q = tx
            .query("UPDATE tasks SET state = 'cancelled' WHERE job_id = $1 AND state = 'pending'")
            .bind(job_id);
        tx.execute(q).await?;
        start_next(&mut tx, job_id).await?;
        tx.commit().await?;
        self.ends.observe(state, seconds_between(created, now));
        Ok(true)
    }

    /// Deletes a layer with its versions, jobs and tasks, and gives the object
    /// keys of its uploads for the caller to remove with its tiles. `None` for
    /// an unknown layer; `Conflict` while a job of it is under way or waiting,
    /// or a worker may still be writing its tiles.
    pub async fn delete_layer(&self, layer_id: Uuid) -> StoreResult<Option<Vec<String>>> {
        let mut tx = self.db.begin().await?;
        if !lock_layer(&mut tx, layer_id).await? {
            return Ok(None);
        }
        if layer_busy(&mut tx, layer_id, true).await? {
            return Err(layer_in_use(layer_id));
        }
        let q = tx
            .query("SELECT source_key FROM layer_versions WHERE layer_id = $1")
            .bind(layer_id);
        let sources = tx.fetch_column(q).await?;
        let q = tx.query("DELETE FROM layers WHERE id = $1").bind(layer_id);
        tx.execute(q).await?;
        tx.commit().await?;
        Ok(Some(sources))
    }

    /// Counts a delivery of a pending task's message and returns the
    /// deliveries that never settled, this one included (`None` when the task
    /// is not pending). The embedded queue loses its messages with the process,
    /// so it keeps this count here, as RabbitMQ keeps its own.
    pub async fn count_delivery(&self, task_id: Uuid) -> StoreResult<Option<i32>> {
        let q = self
            .db
            .query(
                "UPDATE tasks SET deliveries = deliveries + 1
                 WHERE id = $1 AND state = 'pending' RETURNING deliveries",
            )
            .bind(task_id);
        match self.db.fetch_optional(q).await? {
            Some(row) => Ok(Some(row.get(0)?)),
            None => Ok(None),
        }
    }

    /// Counts a failed attempt at a task and returns the attempts so far. The
    /// attempt settled its delivery: the count of unsettled ones starts again.
    pub async fn record_attempt(&self, task_id: Uuid, error: &str) -> StoreResult<i32> {
        let q = self
            .db
            .query(
                "UPDATE tasks SET attempts = attempts + 1, last_error = $2,
                        first_failed_at = coalesce(first_failed_at, $3), last_failed_at = $3,
                        deliveries = 0
                 WHERE id = $1 RETURNING attempts",
            )
            .bind(task_id)
            .bind(error)
            .bind(Utc::now());
        match self.db.fetch_optional(q).await? {
            Some(row) => Ok(row.get(0)?),
            None => Err(StoreError::NotFound(format!("task {task_id}"))),
        }
    }

    /// Adds `changed` (a mask like [`RenderTask::dirty`]) to the tiles a task
    /// has changed; a task run again adds to what it changed before.
    pub async fn record_changed(&self, task_id: Uuid, changed: &[u8]) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        let q = tx
            .query_locking("SELECT changed FROM tasks WHERE id = $1")
            .bind(task_id);
        let current: Option<Vec<u8>> = match tx.fetch_optional(q).await? {
            Some(row) => row.get(0)?,
            None => None,
        };
        let q = tx
            .query("UPDATE tasks SET changed = $2 WHERE id = $1")
            .bind(task_id)
            .bind(union(current, changed));
        tx.execute(q).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks a pending task taken by a worker; `false` when it is not pending
    /// any more (done, or its job ended), and there is nothing to do.
    pub async fn claim_task(&self, task_id: Uuid) -> StoreResult<bool> {
        let mut tx = self.db.begin().await?;
        // A claim lost in a database crash only lets a next job start sooner
        // after one that was cancelled: no need to wait for the disk.
        tx.commit_lazily().await?;
        let q = tx
            .query(
                "UPDATE tasks SET claimed_at = $2 WHERE id = $1 AND state = 'pending' RETURNING id",
            )
            .bind(task_id)
            .bind(tx.now());
        let claimed = tx.fetch_optional(q).await?;
        tx.commit().await?;
        Ok(claimed.is_some())
    }

    /// Records that no worker holds a task of an ended job any more (it failed
    /// for good, or its worker is gone), so the layer's next job may start.
    pub async fn release_task(&self, task_id: Uuid) -> StoreResult<()> {
        let mut tx = self.db.begin().await?;
        if let Some(job_id) = task_job(&mut tx, task_id).await? {
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
        let q = self.db.query(
            "SELECT DISTINCT layer_id FROM jobs WHERE state = 'queued' AND stage = 'waiting'",
        );
        let layers: Vec<Uuid> = self.db.fetch_column(q).await?;
        let mut started = 0;
        for layer_id in layers {
            let mut tx = self.db.begin().await?;
            if start_layer(&mut tx, layer_id).await? {
                started += 1;
            }
            tx.commit().await?;
        }
        Ok(started)
    }
}

/// Seconds from `from` to `to`, never less than none.
fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).as_seconds_f64().max(0.0)
}

async fn insert_job(
    tx: &mut Tx,
    job_id: Uuid,
    layer_id: Uuid,
    version: i32,
    kind: JobKind,
    stage: Stage,
) -> StoreResult<()> {
    let q = tx
        .query(
            "INSERT INTO jobs (id, layer_id, version, kind, stage, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(job_id)
        .bind(layer_id)
        .bind(version)
        .bind(kind.as_str())
        .bind(stage.as_str())
        .bind(tx.now());
    tx.execute(q).await?;
    Ok(())
}

async fn insert_task(tx: &mut Tx, task_id: Uuid, job_id: Uuid, kind: TaskKind) -> StoreResult<()> {
    let q = tx
        .query("INSERT INTO tasks (id, job_id, kind, created_at) VALUES ($1, $2, $3, $4)")
        .bind(task_id)
        .bind(job_id)
        .bind(kind.as_str())
        .bind(tx.now());
    tx.execute(q).await?;
    Ok(())
}

/// Puts a first message for a task in the outbox.
async fn enqueue(tx: &mut Tx, queue: &str, task: Uuid, job: Uuid) -> StoreResult<()> {
    enqueue_message(tx, queue, &TaskMessage::new(task, job)).await
}

/// Puts a task's message in the outbox.
pub(crate) async fn enqueue_message(
    tx: &mut Tx,
    queue: &str,
    message: &TaskMessage,
) -> StoreResult<()> {
    let q = tx
        .query("INSERT INTO outbox (queue, payload, created_at) VALUES ($1, $2, $3)")
        .bind(queue.to_owned())
        .bind(Json(message))
        .bind(tx.now());
    tx.execute(q).await?;
    Ok(())
}

/// The job of a task, or `None` for an unknown task.
async fn task_job(tx: &mut Tx, task_id: Uuid) -> StoreResult<Option<Uuid>> {
    let q = tx
        .query("SELECT job_id FROM tasks WHERE id = $1")
        .bind(task_id);
    Ok(match tx.fetch_optional(q).await? {
        Some(row) => Some(row.get(0)?),
        None => None,
    })
}

/// Locks a job for the rest of the transaction and returns its state.
pub(crate) async fn lock_job(tx: &mut Tx, job_id: Uuid) -> StoreResult<JobState> {
    let q = tx
        .query_locking("SELECT state FROM jobs WHERE id = $1")
        .bind(job_id);
    match tx.fetch_optional(q).await? {
        Some(row) => Ok(row.parse("state")?),
        None => Err(StoreError::NotFound(format!("job {job_id}"))),
    }
}

/// Locks a layer until the transaction ends, so that changes of one layer are
/// decided one at a time; `false` for an unknown layer.
pub(crate) async fn lock_layer(tx: &mut Tx, layer_id: Uuid) -> StoreResult<bool> {
    let q = tx
        .query_locking("SELECT id FROM layers WHERE id = $1")
        .bind(layer_id);
    Ok(tx.fetch_optional(q).await?.is_some())
}

/// Whether a job whose tiles are all written must still report the tiles it
/// changed: it replaced stored tiles and has not reported yet.
async fn needs_invalidation(tx: &mut Tx, job_id: Uuid) -> StoreResult<bool> {
    let q = tx
        .query(
            "SELECT EXISTS (SELECT 1 FROM tasks WHERE job_id = $1 AND kind = 'render' AND replaces)
                AND NOT EXISTS (SELECT 1 FROM tasks WHERE job_id = $1 AND kind = 'invalidate')",
        )
        .bind(job_id);
    Ok(tx.fetch_one(q).await?.get(0)?)
}

/// Marks a claimed task of an ended job released and, if that was the last
/// thing its layer waited for, starts the layer's next job.
async fn release(tx: &mut Tx, task_id: Uuid, job_id: Uuid) -> StoreResult<()> {
    let q = tx
        .query(
            "UPDATE tasks SET done_at = $2
             WHERE id = $1 AND state IN ('cancelled', 'failed') AND claimed_at IS NOT NULL
               AND done_at IS NULL",
        )
        .bind(task_id)
        .bind(tx.now());
    if tx.execute(q).await? > 0 {
        start_next(tx, job_id).await?;
    }
    Ok(())
}

/// After a job of a layer ended (or let go of a task): starts the layer's next
/// waiting job, if nothing of the layer is under way.
async fn start_next(tx: &mut Tx, ended_job: Uuid) -> StoreResult<()> {
    let q = tx
        .query("SELECT layer_id FROM jobs WHERE id = $1")
        .bind(ended_job);
    let layer_id: Uuid = tx.fetch_one(q).await?.get(0)?;
    start_layer(tx, layer_id).await?;
    Ok(())
}

/// Whether a layer has a job under way (counting waiting ones too with
/// `or_waiting`), or a task a worker may still be writing tiles for although its
/// job ended.
pub(crate) async fn layer_busy(tx: &mut Tx, layer_id: Uuid, or_waiting: bool) -> StoreResult<bool> {
    let lease_start = tx.now() - chrono::Duration::seconds(CLAIM_LEASE_SECONDS);
    let q = tx
        .query(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE layer_id = $1
                            AND state IN ('queued', 'running') AND ($3 OR stage <> 'waiting'))
                 OR EXISTS (SELECT 1 FROM tasks t JOIN jobs j ON j.id = t.job_id
                            WHERE j.layer_id = $1 AND t.state IN ('cancelled', 'failed')
                              AND t.done_at IS NULL AND t.claimed_at > $2)
                 OR EXISTS (SELECT 1 FROM layer_versions
                            WHERE layer_id = $1 AND tiles_swept_at > $2)",
        )
        .bind(layer_id)
        .bind(lease_start)
        .bind(or_waiting);
    Ok(tx.fetch_one(q).await?.get(0)?)
}

/// Starts the oldest waiting job of a layer unless another job of it is under
/// way, or a worker may still be writing tiles for a job of it that ended.
async fn start_layer(tx: &mut Tx, layer_id: Uuid) -> StoreResult<bool> {
    lock_layer(tx, layer_id).await?;
    if layer_busy(tx, layer_id, false).await? {
        return Ok(false);
    }
    let q = tx
        .query(
            "SELECT j.id AS job_id, j.kind AS job_kind, t.id AS task_id, t.kind AS task_kind
             FROM jobs j JOIN tasks t ON t.job_id = j.id AND t.state = 'pending'
             WHERE j.layer_id = $1 AND j.state = 'queued' AND j.stage = 'waiting'
             ORDER BY j.version LIMIT 1",
        )
        .bind(layer_id);
    let Some(next) = tx.fetch_optional(q).await? else {
        return Ok(false);
    };
    let (job_id, task_id): (Uuid, Uuid) = (next.get("job_id")?, next.get("task_id")?);
    let (job_kind, task_kind): (JobKind, TaskKind) =
        (next.parse("job_kind")?, next.parse("task_kind")?);
    let q = tx
        .query("UPDATE jobs SET stage = 'queued', updated_at = $2 WHERE id = $1")
        .bind(job_id)
        .bind(tx.now());
    tx.execute(q).await?;
    enqueue(tx, queue_for(job_kind, task_kind), task_id, job_id).await?;
    Ok(true)
}

/// Ends a job in success and publishes its layer version; the seconds since
/// the job was created.
async fn finish_job(tx: &mut Tx, job_id: Uuid) -> StoreResult<f64> {
    let now = tx.now();
    let q = tx
        .query(
            "UPDATE jobs SET state = 'succeeded', stage = 'finished', finished_at = $2,
                    updated_at = $2
             WHERE id = $1 RETURNING created_at",
        )
        .bind(job_id)
        .bind(now);
    let created: DateTime<Utc> = tx.fetch_one(q).await?.get(0)?;
    let q = tx
        .query(
            "UPDATE layers SET published_version = (SELECT version FROM jobs WHERE id = $1),
                    updated_at = $2
             WHERE id = (SELECT layer_id FROM jobs WHERE id = $1)",
        )
        .bind(job_id)
        .bind(now);
    tx.execute(q).await?;
    start_next(tx, job_id).await?;
    Ok(seconds_between(created, now))
}

/// A layer that cannot be deleted yet.
fn layer_in_use(layer_id: Uuid) -> StoreError {
    StoreError::Conflict(format!(
        "layer {layer_id} has a job under way or waiting, or tiles a worker is still \
         writing: cancel its jobs (DELETE /v1/jobs/{{id}}) and try again in a minute"
    ))
}
