//! The embedded job store on SQLite, for `tilefarm serve` with no database
//! configured: its connections, its migrations, and putting pending tasks
//! back in the outbox at start-up. One connection writes (SQLite has one
//! writer at a time, which stands in for PostgreSQL's row locks); a few only
//! read, beside it.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use crate::db::Db;
use crate::error::StoreResult;
use crate::job_store::JobStore;

/// The embedded schema, applied by [`JobStore::open_sqlite`].
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

impl JobStore {
    /// Opens (creating if needed) the SQLite database at `path` and brings its
    /// schema up to date.
    pub async fn open_sqlite(path: &Path) -> StoreResult<JobStore> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        SQLITE_MIGRATOR.run(&writer).await?;
        // WAL lets these read while a long write (a big plan, say) is under way.
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true)
                    .busy_timeout(Duration::from_secs(10)),
            )
            .await?;
        Ok(JobStore::new(Db::Sqlite { writer, readers }))
    }

    /// Marks every published outbox message of a live task unpublished again,
    /// so the relay sends it anew: at start-up, the in-process queue has lost
    /// whatever it held when the process stopped. Nothing to do on PostgreSQL,
    /// whose broker keeps its messages.
    pub async fn requeue_pending(&self) -> StoreResult<u64> {
        if self.db.is_postgres() {
            return Ok(0);
        }
        let q = self.db.query(
            "UPDATE outbox SET published_at = NULL
             WHERE published_at IS NOT NULL AND EXISTS (
                 SELECT 1 FROM tasks t JOIN jobs j ON j.id = t.job_id
                 WHERE t.id = unhex(replace(json_extract(outbox.payload, '$.task'), '-', ''))
                   AND t.state = 'pending' AND j.state IN ('queued', 'running'))",
        );
        Ok(self.db.execute(q).await?)
    }
}
