//! Errors of the job store.

/// A job store failure. `Invalid`, `NotFound` and `Conflict` are the caller's to
/// fix (an API answers them with a 4xx); the others are the store's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;
