//! tilefarm's job queue: layers, jobs and tasks in a job store (schema in
//! `migrations/`), with an outbox that carries each task to the transport.
//!
//! Two of each, behind the same operations: the [`JobStore`] on PostgreSQL or
//! SQLite, its state machine written once over a small seam ([`Db`]); and the
//! transport on RabbitMQ ([`Broker`]: topology, confirmed publishing, the outbox
//! relay, retries after a backoff, dead-lettering) or in process
//! ([`LocalQueue`]), whose deliveries are settled alike as a [`Delivery`].
#![forbid(unsafe_code)]

mod amqp;
mod db;
mod dead_letters;
mod delivery;
mod ends;
mod error;
mod job_store;
mod local;
mod model;
mod outbox;
mod postgres;
mod reads;
mod sqlite;
mod sweep;
mod transitions;

pub use amqp::{
    ATTEMPT_HEADER, Broker, BrokerConfig, BrokerError, BrokerResult, DEAD_JOBS_QUEUE,
    DEAD_LETTER_EXCHANGE, DEAD_QUEUE, Incoming, NotATask, Outcome, QueuePolicy, TaskConsumer,
    TaskMessage, WORK_QUEUES, retry_queue,
};
pub use db::{Column, Db, Index, Param, Query, Row};
pub use dead_letters::{DeadLetter, Replayed};
pub use delivery::Delivery;
pub use ends::{
    JOB_OUTCOMES, JobDurations, JobEnds, OPENMETRICS_CONTENT_TYPE, OutboxBacklog, OutcomeLabel,
    openmetrics_text,
};
pub use error::{StoreError, StoreResult};
pub use job_store::JobStore;
pub use local::{LocalIncoming, LocalQueue};
pub use model::{
    BadZoomRange, CLAIM_LEASE_SECONDS, Change, ChangeBase, ChangeKind, Completion, DEEPEST_ZOOM,
    INGEST_QUEUE, INTERACTIVE_QUEUE, JobKind, JobState, JobStatus, LayerInfo, MAX_LAYER_NAME,
    NewLayer, OutboxMessage, RENDER_QUEUE, RenderTask, Stage, TaskContext, TaskKind, TaskState,
    Upload, check_layer_name, parse_zoom_range, queue_for,
};
pub use postgres::MIGRATOR;
pub use sqlite::SQLITE_MIGRATOR;
pub use sweep::{Orphan, TileSweep};
