//! The job store the farm runs on: PostgreSQL, or SQLite when embedded. Both
//! offer the same operations with the same guarantees.

use uuid::Uuid;

use crate::ends::{JobEnds, OutboxBacklog};
use crate::error::StoreResult;
use crate::sqlite::SqliteStore;
use crate::status::{JobStatus, LayerInfo, TaskContext};
use crate::store::{
    Change, ChangeBase, ChangeKind, Completion, NewLayer, OutboxMessage, PgStore, RenderTask,
    Upload,
};

/// A job store: the farm's PostgreSQL or the embedded SQLite.
#[derive(Clone, Debug)]
pub enum JobStore {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl From<PgStore> for JobStore {
    fn from(s: PgStore) -> Self {
        JobStore::Postgres(s)
    }
}

impl From<SqliteStore> for JobStore {
    fn from(s: SqliteStore) -> Self {
        JobStore::Sqlite(s)
    }
}

macro_rules! forward {
    ($( $(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $ret:ty; )*) => {
        impl JobStore {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        JobStore::Postgres(s) => s.$name($($arg),*).await,
                        JobStore::Sqlite(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

forward! {
    /// Whether the database answers.
    fn ping(&self) -> StoreResult<()>;
    /// Records an upload: its layer, first version, queued job and ingest task.
    fn create_upload(&self, layer: &NewLayer, source_key: &str) -> StoreResult<Upload>;
    /// A job's status, or `None` for an unknown id.
    fn job(&self, id: Uuid) -> StoreResult<Option<JobStatus>>;
    /// Jobs, newest first, optionally only those in `state`.
    fn jobs(&self, state: Option<&str>, limit: i64) -> StoreResult<Vec<JobStatus>>;
    /// Counts of jobs by state.
    fn job_counts(&self) -> StoreResult<Vec<(String, i64)>>;
    /// A layer, or `None` for an unknown id.
    fn layer(&self, id: Uuid) -> StoreResult<Option<LayerInfo>>;
    /// What a worker needs to run a task.
    fn task_context(&self, task_id: Uuid) -> StoreResult<Option<TaskContext>>;
    /// Marks a job running at `stage`.
    fn set_stage(&self, job_id: Uuid, stage: &str) -> StoreResult<()>;
    /// Records a layer version's prepared features.
    fn record_prepared(
        &self,
        layer_id: Uuid,
        version: i32,
        prepared_key: &str,
        feature_count: i64,
        bounds: Option<[f64; 4]>
    ) -> StoreResult<()>;
    /// Deletes a layer with its versions, jobs and tasks; its uploads' keys.
    fn delete_layer(&self, layer_id: Uuid) -> StoreResult<Option<Vec<String>>>;
    /// Counts a failed attempt at a task.
    fn record_attempt(&self, task_id: Uuid, error: &str) -> StoreResult<i32>;
    /// Records that a task's message was dead-lettered; `false` for a stale
    /// letter (the task was replayed since) or an unknown task.
    fn record_dead_letter(&self, task_id: Uuid, replay: i32, reason: &str) -> StoreResult<bool>;
    /// Settles a job's plan: its render tasks and total.
    fn plan(&self, job_id: Uuid, plan_task: Uuid, tasks: &[RenderTask]) -> StoreResult<Vec<Uuid>>;
    /// Records a task done, once.
    fn complete_task(&self, task_id: Uuid) -> StoreResult<Completion>;
    /// Fails a job with a code and a message.
    fn fail_job(&self, job_id: Uuid, code: &str, message: &str) -> StoreResult<bool>;
    /// Cancels a job.
    fn cancel_job(&self, job_id: Uuid) -> StoreResult<bool>;
    /// Records a change to a layer: its next version, a job and its first task,
    /// which waits until the layer's earlier jobs have ended.
    fn create_change(&self, layer_id: Uuid, kind: ChangeKind, source_key: &str) -> StoreResult<Change>;
    /// What a change to a layer builds on.
    fn change_base(&self, layer_id: Uuid) -> StoreResult<ChangeBase>;
    /// The render tasks of a job.
    fn render_tasks(&self, job_id: Uuid) -> StoreResult<Vec<RenderTask>>;
    /// Adds to the tiles a task has changed.
    fn record_changed(&self, task_id: Uuid, changed: &[u8]) -> StoreResult<()>;
    /// Marks a pending task taken by a worker; `false` when there is nothing to do.
    fn claim_task(&self, task_id: Uuid) -> StoreResult<bool>;
    /// Records that no worker holds a task of an ended job any more.
    fn release_task(&self, task_id: Uuid) -> StoreResult<()>;
    /// Starts waiting jobs whose layers have nothing under way.
    fn start_waiting(&self) -> StoreResult<usize>;
    /// The outbox messages not published yet, and how long the oldest has waited.
    fn outbox_backlog(&self) -> StoreResult<OutboxBacklog>;
}

impl JobStore {
    /// How long the jobs this store ended took, by outcome.
    pub fn job_ends(&self) -> &JobEnds {
        match self {
            JobStore::Postgres(s) => s.job_ends(),
            JobStore::Sqlite(s) => s.job_ends(),
        }
    }

    /// Hands unpublished outbox messages to `publish` and marks those it sent.
    pub async fn relay_outbox<F, Fut>(&self, limit: i64, publish: F) -> StoreResult<usize>
    where
        F: FnOnce(Vec<OutboxMessage>) -> Fut,
        Fut: std::future::Future<Output = Vec<i64>>,
    {
        match self {
            JobStore::Postgres(s) => s.relay_outbox(limit, publish).await,
            JobStore::Sqlite(s) => s.relay_outbox(limit, publish).await,
        }
    }
}
