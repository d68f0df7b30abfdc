//! tilefarm's job queue: layers, jobs and tasks in PostgreSQL (schema in
//! `migrations/`), with an outbox that carries each task to the broker.
//!
//! So far: the job store ([`PgStore`]) and the RabbitMQ transport ([`Broker`]:
//! topology, confirmed publishing, the outbox relay, consumers whose messages
//! are settled by an [`Outcome`]). Retries with backoff and the embedded (in-process, SQLite) equivalents are still to come.
#![forbid(unsafe_code)]

mod amqp;
mod error;
mod job_store;
mod local;
mod sqlite;
mod status;
mod store;

pub use amqp::{
    ATTEMPT_HEADER, Broker, BrokerError, BrokerResult, DEAD_LETTER_EXCHANGE, DEAD_QUEUE, Incoming,
    Outcome, QueuePolicy, TaskConsumer, TaskMessage, WORK_QUEUES, retry_queue,
};
pub use error::{StoreError, StoreResult};
pub use job_store::JobStore;
pub use local::{LocalIncoming, LocalQueue};
pub use sqlite::{SQLITE_MIGRATOR, SqliteStore};
pub use status::{JOB_STATES, JobStatus, LayerInfo, TaskContext};
pub use store::{
    Completion, INGEST_QUEUE, INTERACTIVE_QUEUE, MIGRATOR, NewLayer, OutboxMessage, PgStore,
    RENDER_QUEUE, RenderTask, Upload,
};
