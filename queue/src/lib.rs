//! tilefarm's job queue: layers, jobs and tasks in PostgreSQL (schema in
//! `migrations/`), with an outbox that carries each task to the broker.
//!
//! So far: the job store ([`PgStore`]). The RabbitMQ transport, the outbox relay
//! and the embedded (in-process, SQLite) equivalents are still to come.
#![forbid(unsafe_code)]

mod error;
mod store;

pub use error::{StoreError, StoreResult};
pub use store::{
    Completion, INGEST_QUEUE, JobStatus, MIGRATOR, NewLayer, OutboxMessage, PgStore, RENDER_QUEUE,
    RenderTask, Upload,
};
