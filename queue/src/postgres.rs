//! The job store on PostgreSQL: its connection and its migrations.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use crate::db::Db;
use crate::error::StoreResult;
use crate::job_store::JobStore;

/// The schema, applied by [`JobStore::migrate`].
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

impl JobStore {
    /// Connects to PostgreSQL at `url` (`postgres://...`), giving up after a
    /// few seconds.
    pub async fn connect_postgres(url: &str) -> StoreResult<JobStore> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Ok(JobStore::new(Db::Postgres(pool)))
    }

    /// Applies the migrations not yet applied; safe to run again. (SQLite's
    /// are applied when it is opened.)
    pub async fn migrate(&self) -> StoreResult<()> {
        match &self.db {
            Db::Postgres(pool) => MIGRATOR.run(pool).await?,
            Db::Sqlite { writer, .. } => crate::sqlite::SQLITE_MIGRATOR.run(writer).await?,
        }
        Ok(())
    }
}
