//! tilefarm's job queue: jobs and tasks in PostgreSQL (schema in `migrations/`),
//! carried over RabbitMQ, with in-process and SQLite equivalents for the embedded
//! mode.
//!
//! Nothing is implemented here yet; the render core (`tilefarm-renderer`) and the
//! pyramid renderer (`tilefarm-worker`) work without it.
#![forbid(unsafe_code)]
