//! The farm's model: what a layer, a job and a task are, the states they go
//! through, and the records the job store reads and writes. Written once, for
//! both databases; the states and kinds are stored as their lowercase names
//! (the schema's CHECK constraints list the same).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{StoreError, StoreResult};

/// The deepest zoom a layer may have (tiles are addressable deeper, to
/// `tilefarm_renderer::MAX_ZOOM`, but a farm renders no deeper than this).
pub const DEEPEST_ZOOM: u8 = 24;

/// The longest layer name, in characters.
pub const MAX_LAYER_NAME: usize = 200;

/// The queue a task's message goes to.
pub const INGEST_QUEUE: &str = "tilefarm.ingest";
pub const RENDER_QUEUE: &str = "tilefarm.render";
/// Interactive work (edits), kept apart so it never waits behind bulk seeding.
pub const INTERACTIVE_QUEUE: &str = "tilefarm.interactive";

/// How long a task a worker took may still be writing tiles after its job
/// ended, unless the worker says it stopped sooner.
pub const CLAIM_LEASE_SECONDS: i64 = 120;

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize,
            strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray,
        )]
        #[serde(rename_all = "lowercase")]
        #[strum(serialize_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The name it is stored and shown as.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}

text_enum! {
    /// Where a job is in its life.
    JobState {
        /// Accepted, not started (or waiting for the layer's earlier job).
        Queued,
        Running,
        Succeeded,
        Failed,
        Cancelled,
    }
}

impl JobState {
    /// Whether the job has not ended yet.
    pub fn is_live(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }
}

text_enum! {
    /// Where a task is in its life.
    TaskState {
        /// Still to run (or running).
        Pending,
        Done,
        Failed,
        /// Dropped because its job ended first.
        Cancelled,
    }
}

text_enum! {
    /// What a job was made for.
    JobKind {
        /// A new layer, or new data for all of one.
        Upload,
        /// Upserts and deletes of features.
        Edit,
        Rerender,
    }
}

text_enum! {
    /// What a task does.
    TaskKind {
        /// Reads an upload, prepares its features and plans the render.
        Ingest,
        Plan,
        /// Draws a block of tiles.
        Render,
        /// Applies an edit to the published features and plans its tiles.
        Edit,
        /// Reports the tiles a change rewrote, for CDN purges.
        Invalidate,
    }
}

text_enum! {
    /// The step a job is at, as its status shows.
    Stage {
        /// Its first task is queued.
        Queued,
        /// It waits for an earlier job of its layer to end.
        Waiting,
        Ingest,
        Render,
        Invalidate,
        Finished,
    }
}

/// The queue for a task of `task` kind in a job of `job` kind: edits go first.
pub fn queue_for(job: JobKind, task: TaskKind) -> &'static str {
    match (job, task) {
        (JobKind::Edit, _) | (_, TaskKind::Invalidate) => INTERACTIVE_QUEUE,
        (_, TaskKind::Ingest) => INGEST_QUEUE,
        _ => RENDER_QUEUE,
    }
}

/// A new layer, as an upload describes it.
#[derive(Clone, Debug)]
pub struct NewLayer {
    pub name: String,
    pub min_zoom: u8,
    pub max_zoom: u8,
    pub style: Value,
}

impl NewLayer {
    /// Checks the name and zoom range.
    pub fn check(&self) -> StoreResult<()> {
        check_layer_name(&self.name)?;
        if self.min_zoom > self.max_zoom || self.max_zoom > DEEPEST_ZOOM {
            return Err(StoreError::Invalid(format!(
                "zoom range {}-{} is not within 0-{DEEPEST_ZOOM}, low to high",
                self.min_zoom, self.max_zoom
            )));
        }
        Ok(())
    }
}

/// Checks a layer name: 1 to [`MAX_LAYER_NAME`] characters, not only blanks.
pub fn check_layer_name(name: &str) -> StoreResult<()> {
    if name.trim().is_empty() || name.chars().count() > MAX_LAYER_NAME {
        return Err(StoreError::Invalid(format!(
            "a layer name must have 1 to {MAX_LAYER_NAME} characters"
        )));
    }
    Ok(())
}

/// A zoom range that is not one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadZoomRange(String);

/// Parses a zoom range, `MIN-MAX` such as `0-7`, or a single zoom, into its first
/// and last zoom.
pub fn parse_zoom_range(s: &str) -> Result<(u8, u8), BadZoomRange> {
    let bad = || {
        BadZoomRange(format!(
            "{s:?} is not a zoom range; expected MIN-MAX such as 0-7, or one zoom"
        ))
    };
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        ),
        None => {
            let z = s.trim().parse().map_err(|_| bad())?;
            (z, z)
        }
    };
    if a > b {
        return Err(BadZoomRange(format!("zoom range {s:?} runs backwards")));
    }
    Ok((a, b))
}

/// What an upload created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upload {
    pub layer_id: Uuid,
    pub job_id: Uuid,
    pub ingest_task: Uuid,
}

/// One block of tiles to render.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenderTask {
    pub z: u8,
    pub x: u32,
    pub y: u32,
    pub n: u32,
    /// Tiles the task adds to its job's progress.
    pub tiles: u32,
    /// The tiles of the block to write, one bit per tile, row by row, lowest
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
    /// The kind of job it makes.
    pub fn job_kind(self) -> JobKind {
        match self {
            ChangeKind::Edit => JobKind::Edit,
            ChangeKind::Replace => JobKind::Upload,
        }
    }

    /// The kind of its job's first task.
    pub fn task_kind(self) -> TaskKind {
        match self {
            ChangeKind::Edit => TaskKind::Edit,
            ChangeKind::Replace => TaskKind::Ingest,
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

/// A job's state as the status API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobStatus {
    pub id: Uuid,
    pub layer_id: Uuid,
    pub version: i32,
    pub kind: JobKind,
    pub state: JobState,
    pub stage: Stage,
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
        !self.state.is_live()
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
    pub kind: TaskKind,
    pub task_state: TaskState,
    pub attempts: i32,
    pub z: Option<u8>,
    pub x: Option<u32>,
    pub y: Option<u32>,
    pub n: Option<u32>,
    /// The tiles of the block to write (see [`RenderTask::dirty`]).
    pub dirty: Option<Vec<u8>>,
    pub replaces: bool,
    pub job_id: Uuid,
    pub job_kind: JobKind,
    pub job_state: JobState,
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
        self.task_state == TaskState::Pending && self.job_state.is_live()
    }
}

/// The union of two tile masks.
pub(crate) fn union(a: Option<Vec<u8>>, b: &[u8]) -> Vec<u8> {
    let mut out = a.unwrap_or_default();
    if out.len() < b.len() {
        out.resize(b.len(), 0);
    }
    out.iter_mut().zip(b).for_each(|(x, y)| *x |= y);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn names_read_back_as_the_same_variant() {
        for s in JobState::VARIANTS {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in Stage::VARIANTS {
            assert_eq!(s.as_str().parse::<Stage>().unwrap(), *s);
        }
        assert_eq!(TaskKind::Invalidate.as_str(), "invalidate");
        assert!("Queued".parse::<JobState>().is_err());
    }
}
