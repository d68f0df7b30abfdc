//! tilefarm's job queue: layers, jobs and tasks in a job store (schema in
//! `migrations/`), with an outbox that carries each task to the transport.
//!
//! Two of each, behind the same operations: the job store on PostgreSQL
//! ([`PgStore`]) or SQLite ([`SqliteStore`]), both as a [`JobStore`]; and the
//! transport on RabbitMQ ([`Broker`]: topology, confirmed publishing, the outbox
//! relay, retries after a backoff, dead-lettering) or in process
//! ([`LocalQueue`]), whose deliveries are settled alike as a [`Delivery`].
#![forbid(unsafe_code)]

mod amqp;
mod dead_letters;
mod delivery;
mod ends;
mod error;
mod job_store;
mod local;
mod sqlite;
mod status;
mod store;

pub use amqp::{
    ATTEMPT_HEADER, Broker, BrokerError, BrokerResult, DEAD_JOBS_QUEUE, DEAD_LETTER_EXCHANGE,
    DEAD_QUEUE, Incoming, Outcome, QueuePolicy, TaskConsumer, TaskMessage, WORK_QUEUES,
    retry_queue,
};
pub use dead_letters::{DeadLetter, Replayed};
pub use delivery::Delivery;
pub use ends::{JOB_OUTCOMES, JobDurations, JobEnds, OutboxBacklog, OutcomeLabel};
pub use error::{StoreError, StoreResult};
pub use job_store::JobStore;
pub use local::{LocalIncoming, LocalQueue};
pub use sqlite::{SQLITE_MIGRATOR, SqliteStore};
pub use status::{JOB_STATES, JobStatus, LayerInfo, TaskContext};
pub use store::{
    CLAIM_LEASE_SECONDS, Change, ChangeBase, ChangeKind, Completion, INGEST_QUEUE,
    INTERACTIVE_QUEUE, MIGRATOR, NewLayer, OutboxMessage, PgStore, RENDER_QUEUE, RenderTask,
    Upload,
};
