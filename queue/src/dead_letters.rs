//! Dead letters in the job store: the tasks whose messages went to the
//! dead-letter queue, what ops see of them (`tilefarm dlq list`), and putting
//! them back to work once the cause is fixed (`tilefarm dlq replay`).
//!
//! Each message of a task carries how often the task had been replayed when
//! it was sent ([`TaskMessage::replay`]): a dead letter from before the last
//! replay is stale, and neither fails the job again nor stays in the queue.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::amqp::TaskMessage;
use crate::db::{Row, placeholders};
use crate::error::StoreResult;
use crate::job_store::JobStore;
use crate::model::{JobKind, JobState, TaskKind, TaskState, queue_for};
use crate::transitions::{enqueue_message, lock_job};

/// A dead-lettered task, as ops see it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeadLetter {
    pub task_id: Uuid,
    pub job_id: Uuid,
    pub layer_id: Uuid,
    pub kind: TaskKind,
    /// A render task's metatile: `z/x/y` and its side in tiles.
    pub metatile: Option<(u8, u32, u32, u32)>,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Failed attempts since it was queued (or last replayed).
    pub attempts: i32,
    pub first_failure: Option<DateTime<Utc>>,
    pub last_failure: Option<DateTime<Utc>>,
    pub dead_at: DateTime<Utc>,
    /// Times it was replayed before.
    pub replays: i32,
    /// The state of its job now.
    pub job_state: JobState,
}

/// What replaying the dead letters of one job did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Replayed {
    pub job_id: Uuid,
    /// Its dead-lettered tasks.
    pub dead_letters: usize,
    /// Tasks queued again: the dead letters, and the tasks that the failure
    /// they caused cancelled.
    pub queued: usize,
    /// Why nothing was put back to work, when nothing was.
    pub skipped: Option<String>,
}

/// The error code of a job failed by a dead-lettered task.
const TASK_FAILED: &str = "task_failed";

impl JobStore {
    /// Records that a task's message was dead-lettered (`replay`: the count its
    /// message carried), with the reason unless one was recorded before.
    /// `false` for a stale letter (the task was replayed since) or an unknown
    /// task: there is nothing to fail.
    pub async fn record_dead_letter(
        &self,
        task_id: Uuid,
        replay: i32,
        reason: &str,
    ) -> StoreResult<bool> {
        let q = self
            .db
            .query(
                "UPDATE tasks SET dead_at = coalesce(dead_at, $4),
                        dead_reason = coalesce(dead_reason, $3),
                        first_failed_at = coalesce(first_failed_at, $4),
                        last_failed_at = CASE WHEN dead_at IS NULL THEN $4 ELSE last_failed_at END
                 WHERE id = $1 AND replays = $2 RETURNING id",
            )
            .bind(task_id)
            .bind(replay)
            .bind(reason)
            .bind(Utc::now());
        Ok(self.db.fetch_optional(q).await?.is_some())
    }

    /// The dead-lettered tasks (of one job, or all), oldest first.
    pub async fn dead_letters(&self, job: Option<Uuid>) -> StoreResult<Vec<DeadLetter>> {
        let q = self
            .db
            .read(
                "SELECT t.id, t.job_id, j.layer_id, t.kind, t.z, t.x, t.y, t.n,
                        coalesce(t.dead_reason, t.last_error, 'unknown') AS reason, t.attempts,
                        t.first_failed_at, t.last_failed_at, t.dead_at, t.replays,
                        j.state AS job_state
                 FROM tasks t JOIN jobs j ON j.id = t.job_id
                 WHERE t.dead_at IS NOT NULL AND ($1 IS NULL OR t.job_id = $1)
                 ORDER BY t.dead_at, t.id",
            )
            .bind(job);
        let letter = |r: &Row| -> sqlx::Result<DeadLetter> {
            let z: Option<i16> = r.get("z")?;
            let xyn: (Option<i32>, Option<i32>, Option<i32>) =
                (r.get("x")?, r.get("y")?, r.get("n")?);
            let metatile = match (z, xyn) {
                (Some(z), (Some(x), Some(y), Some(n))) => {
                    Some((z as u8, x as u32, y as u32, n as u32))
                }
                _ => None,
            };
            Ok(DeadLetter {
                task_id: r.get("id")?,
                job_id: r.get("job_id")?,
                layer_id: r.get("layer_id")?,
                kind: r.parse("kind")?,
                metatile,
                reason: r.get("reason")?,
                attempts: r.get("attempts")?,
                first_failure: r.get("first_failed_at")?,
                last_failure: r.get("last_failed_at")?,
                dead_at: r.get("dead_at")?,
                replays: r.get("replays")?,
                job_state: r.parse("job_state")?,
            })
        };
        let rows = self.db.fetch_all(q).await?;
        Ok(rows.iter().map(letter).collect::<Result<_, _>>()?)
    }

    /// Puts the dead-lettered tasks (of one job, or all) back to work with a
    /// fresh attempt count, each job in a transaction of its own. A job that a
    /// dead letter failed runs again: it is `running`, without its error, and
    /// the tasks its failure cancelled are queued again beside the dead
    /// letters; its tiles done so far still count. A job is left as it is when
    /// it ended another way (cancelled, say), or when its layer has a newer job,
    /// whose tiles a replay would overwrite.
    pub async fn replay_dead_letters(&self, job: Option<Uuid>) -> StoreResult<Vec<Replayed>> {
        let q = self
            .db
            .query(
                "SELECT job_id FROM tasks WHERE dead_at IS NOT NULL AND ($1 IS NULL OR job_id = $1)
                 GROUP BY job_id ORDER BY min(dead_at)",
            )
            .bind(job);
        let jobs: Vec<Uuid> = self.db.fetch_column(q).await?;
        let mut replayed = Vec::with_capacity(jobs.len());
        for job_id in jobs {
            replayed.push(self.replay_job(job_id).await?);
        }
        Ok(replayed)
    }

    async fn replay_job(&self, job_id: Uuid) -> StoreResult<Replayed> {
        let mut tx = self.db.begin().await?;
        let state = lock_job(&mut tx, job_id).await?;
        let q = tx
            .query(
                "SELECT j.kind, j.error_code, j.layer_id,
                        EXISTS (SELECT 1 FROM jobs n WHERE n.layer_id = j.layer_id
                                AND n.version > j.version) AS newer,
                        (SELECT count(*) FROM tasks t
                         WHERE t.job_id = j.id AND t.dead_at IS NOT NULL) AS dead,
                        EXISTS (SELECT 1 FROM layer_versions v WHERE v.layer_id = j.layer_id
                                AND v.version = j.version AND v.swept_at IS NOT NULL) AS swept
                 FROM jobs j WHERE j.id = $1",
            )
            .bind(job_id);
        let job = tx.fetch_one(q).await?;
        let job_kind: JobKind = job.parse("kind")?;
        let error_code: Option<String> = job.get("error_code")?;
        let dead: i64 = job.get("dead")?;
        let mut outcome = Replayed {
            job_id,
            dead_letters: dead as usize,
            queued: 0,
            skipped: None,
        };
        let failed_by_letter =
            state == JobState::Failed && error_code.as_deref() == Some(TASK_FAILED);
        let skipped = if job.get::<bool>("swept")? {
            Some(
                "the job's data was removed by the sweep of ended jobs (--sweep-after-secs); \
                 upload or edit the layer again instead"
                    .to_string(),
            )
        } else if failed_by_letter && job.get::<bool>("newer")? {
            let layer: Uuid = job.get("layer_id")?;
            Some(format!(
                "layer {layer} has a newer job, whose tiles a replay would overwrite; \
                 upload or edit the layer again instead"
            ))
        } else if !failed_by_letter && !state.is_live() {
            Some(match error_code {
                Some(code) => format!("the job is {state} ({code}), not by a dead letter"),
                None => format!("the job is {state}"),
            })
        } else {
            None
        };
        if skipped.is_some() {
            outcome.skipped = skipped;
            tx.rollback().await?;
            return Ok(outcome);
        }
        if failed_by_letter {
            let q = tx
                .query(
                    "UPDATE jobs SET state = 'running', error_code = NULL, error_message = NULL,
                            finished_at = NULL, updated_at = $2
                     WHERE id = $1",
                )
                .bind(job_id)
                .bind(tx.now());
            tx.execute(q).await?;
        }
        // A dead letter of a task that got done after all (its worker crashed
        // before it could say so) only needs forgetting.
        let q = tx
            .query(
                "UPDATE tasks SET state = CASE WHEN state = 'done' THEN 'done' ELSE 'pending' END,
                        attempts = 0, deliveries = 0, last_error = NULL, first_failed_at = NULL,
                        last_failed_at = NULL, dead_at = NULL, dead_reason = NULL,
                        claimed_at = CASE WHEN state = 'done' THEN claimed_at END,
                        done_at = CASE WHEN state = 'done' THEN done_at END,
                        replays = replays + 1
                 WHERE job_id = $1 AND (dead_at IS NOT NULL OR ($2 AND state <> 'done'))
                 RETURNING id, kind, state, replays",
            )
            .bind(job_id)
            .bind(failed_by_letter);
        let revived = tx.fetch_all(q).await?;
        for r in &revived {
            if r.parse::<TaskState>("state")? != TaskState::Pending {
                continue;
            }
            let message = TaskMessage {
                task: r.get("id")?,
                job: job_id,
                replay: r.get("replays")?,
            };
            let kind: TaskKind = r.parse("kind")?;
            enqueue_message(&mut tx, queue_for(job_kind, kind), &message).await?;
            outcome.queued += 1;
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Which of `letters` are stale: their task was replayed since they were
    /// sent. A letter of a task the store does not know is not stale (it may
    /// belong to another farm's database).
    pub async fn stale_letters(&self, letters: &[TaskMessage]) -> StoreResult<Vec<bool>> {
        let mut replays = std::collections::HashMap::with_capacity(letters.len());
        for chunk in letters.chunks(500) {
            let sql = format!(
                "SELECT id, replays FROM tasks WHERE id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = self.db.query_made(sql);
            for letter in chunk {
                q = q.bind(letter.task);
            }
            for r in self.db.fetch_all(q).await? {
                replays.insert(r.get::<Uuid>("id")?, r.get::<i32>("replays")?);
            }
        }
        Ok(letters
            .iter()
            .map(|l| replays.get(&l.task).is_some_and(|&n| n > l.replay))
            .collect())
    }
}
