//! What ended jobs leave behind, and sweeping it. A layer version whose job
//! failed or was cancelled will never be published, yet its uploaded data and
//! prepared features stay in the object store; a layer whose first job was
//! cancelled keeps the tiles that job wrote. Past a retention (during which a
//! failed job's dead letters can still be replayed) the sweep finds them here,
//! removes the objects, and records that it did.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::StoreResult;
use crate::job_store::JobStore;
use crate::transitions::{layer_busy, lock_layer};

/// A layer version whose job failed or was cancelled, not yet swept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orphan {
    pub layer_id: Uuid,
    pub version: i32,
    pub job_id: Uuid,
    /// The data the version was made from (an upload or an edit).
    pub source_key: String,
}

/// What becomes of an orphan's layer's tiles ([`JobStore::tile_sweep`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileSweep {
    /// Delete them: the layer was never published and nothing writes them.
    Begin,
    /// They are the published version's, or the layer is gone.
    Keep,
    /// A job of the layer is under way or waiting, or a worker may still be
    /// writing: try again at a later sweep.
    Later,
}

impl JobStore {
    /// Versions whose jobs ended failed or cancelled before `ended_before`
    /// and that were never published nor swept, the longest ended first, at
    /// most `limit`.
    pub async fn orphans(
        &self,
        ended_before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Orphan>> {
        let q = self
            .db
            .query(
                "SELECT j.layer_id, j.version, j.id, v.source_key
                 FROM jobs j
                 JOIN layer_versions v ON v.layer_id = j.layer_id AND v.version = j.version
                 JOIN layers l ON l.id = j.layer_id
                 WHERE j.state IN ('failed', 'cancelled') AND j.finished_at < $1
                   AND v.swept_at IS NULL
                   AND (l.published_version IS NULL OR l.published_version <> j.version)
                 ORDER BY j.finished_at LIMIT $2",
            )
            .bind(ended_before)
            .bind(limit);
        let rows = self.db.fetch_all(q).await?;
        rows.iter()
            .map(|r| {
                Ok(Orphan {
                    layer_id: r.get(0)?,
                    version: r.get(1)?,
                    job_id: r.get(2)?,
                    source_key: r.get(3)?,
                })
            })
            .collect()
    }

    /// Whether an orphan's layer loses its tiles too: only a layer never
    /// published does, once no job of it is under way or waiting and no
    /// worker may still be writing its tiles ([`TileSweep::Later`] until
    /// then). When it does, the layer counts as busy for a lease from now, so
    /// a job of it started meanwhile waits until the tiles are gone instead of
    /// losing its own.
    pub async fn tile_sweep(&self, orphan: &Orphan) -> StoreResult<TileSweep> {
        let mut tx = self.db.begin().await?;
        if !lock_layer(&mut tx, orphan.layer_id).await? {
            tx.commit().await?;
            return Ok(TileSweep::Keep);
        }
        let q = tx
            .query("SELECT published_version FROM layers WHERE id = $1")
            .bind(orphan.layer_id);
        let published: Option<i32> = tx.fetch_one(q).await?.get(0)?;
        let decision = if published.is_some() {
            TileSweep::Keep
        } else if layer_busy(&mut tx, orphan.layer_id, true).await? {
            TileSweep::Later
        } else {
            let q = tx
                .query(
                    "UPDATE layer_versions SET tiles_swept_at = $3
                     WHERE layer_id = $1 AND version = $2",
                )
                .bind(orphan.layer_id)
                .bind(orphan.version)
                .bind(tx.now());
            tx.execute(q).await?;
            TileSweep::Begin
        };
        tx.commit().await?;
        Ok(decision)
    }

    /// Records that an orphan's objects are gone: it is never found again,
    /// and its job's dead letters can no longer be replayed.
    pub async fn mark_swept(&self, orphan: &Orphan) -> StoreResult<()> {
        let q = self
            .db
            .query("UPDATE layer_versions SET swept_at = $3 WHERE layer_id = $1 AND version = $2")
            .bind(orphan.layer_id)
            .bind(orphan.version)
            .bind(Utc::now());
        self.db.execute(q).await?;
        Ok(())
    }
}
