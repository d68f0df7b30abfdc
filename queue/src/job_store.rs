//! The job store the farm runs on: PostgreSQL, or SQLite when embedded. One
//! set of operations (see `transitions.rs` and `reads.rs`) over the seam in
//! [`Db`]; each backend's file holds only its connection, its migrations and
//! the queries only it can make.

use crate::db::Db;
use crate::ends::JobEnds;

/// A job store: the farm's PostgreSQL or the embedded SQLite.
#[derive(Clone, Debug)]
pub struct JobStore {
    pub(crate) db: Db,
    /// The jobs this store ended, for `/metrics`.
    pub(crate) ends: JobEnds,
}

impl JobStore {
    pub(crate) fn new(db: Db) -> JobStore {
        JobStore {
            db,
            ends: JobEnds::default(),
        }
    }

    /// The database, for tests and tools that look beneath the operations.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// How long the jobs this store ended took, by outcome.
    pub fn job_ends(&self) -> &JobEnds {
        &self.ends
    }

    /// Closes the store's connections.
    pub async fn close(&self) {
        self.db.close().await;
    }
}
