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

impl StoreError {
    /// Whether the database could not be reached or could not answer in time
    /// (it is down, restarting, out of connections, or busy past the timeout),
    /// as opposed to refusing what was asked: worth waiting for and trying
    /// again, and a `503` to a client.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => is_unavailable(e),
            _ => false,
        }
    }
}

fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            // PostgreSQL: connection exceptions, too many connections, the
            // server shutting down or in recovery. SQLite: busy or locked past
            // the busy timeout.
            db.code().is_some_and(|code| {
                code.starts_with("08")
                    || code.starts_with("57P")
                    || matches!(&*code, "53300" | "5" | "6")
            })
        }
        _ => false,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
