//! The sweep of what ended jobs leave behind, run by every `tilefarm serve`:
//! the uploaded data and prepared features of versions whose jobs failed or
//! were cancelled, and the tiles of layers never published, once the jobs
//! ended more than a retention ago (during which a failed job's dead letters
//! can still be replayed). Several API processes may sweep at once: every step
//! is safe to repeat.

use std::time::Duration;

use anyhow::{Context, Result};
use tilefarm_queue::{JobStore, Orphan, TileSweep};
use tilefarm_worker::Objects;
use tokio_util::sync::CancellationToken;

/// Orphans handled a pass, at most; the next pass takes the rest.
const BATCH: i64 = 500;

/// What one pass removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub versions: usize,
    pub objects: u64,
}

/// One pass: every version whose job ended failed or cancelled more than
/// `after` ago loses its objects, and a layer never published its tiles.
pub async fn sweep_once(store: &JobStore, objects: &Objects, after: Duration) -> Result<Swept> {
    let mut swept = Swept::default();
    // A retention too long to say sweeps nothing.
    let Some(cutoff) = chrono::Duration::from_std(after)
        .ok()
        .and_then(|after| chrono::Utc::now().checked_sub_signed(after))
    else {
        return Ok(swept);
    };
    loop {
        let orphans = store.orphans(cutoff, BATCH).await?;
        let full = orphans.len() == BATCH as usize;
        let mut marked = 0;
        for orphan in orphans {
            let (removed, done) =
                sweep_orphan(store, objects, &orphan)
                    .await
                    .with_context(|| {
                        format!(
                            "sweeping version {} of layer {} (job {})",
                            orphan.version, orphan.layer_id, orphan.job_id
                        )
                    })?;
            swept.objects += removed;
            marked += usize::from(done);
        }
        swept.versions += marked;
        // Those left for later come first again: stop when a batch marked none.
        if !full || marked == 0 {
            return Ok(swept);
        }
    }
}

/// Removes an orphan's objects, and its layer's tiles where the layer was
/// never published: the objects removed, and whether it is swept. An orphan
/// whose tiles must wait is left as it is, so a later pass comes back to it.
async fn sweep_orphan(store: &JobStore, objects: &Objects, orphan: &Orphan) -> Result<(u64, bool)> {
    let tiles = store.tile_sweep(orphan).await?;
    if tiles == TileSweep::Later {
        return Ok((0, false));
    }
    let source = object_store::path::Path::from(orphan.source_key.as_str());
    let mut removed = objects.delete_upload(&source).await?;
    removed += objects
        .delete_under(&objects.version_prefix(orphan.layer_id, orphan.version))
        .await?;
    if tiles == TileSweep::Begin {
        removed += objects
            .delete_under(&objects.tiles_prefix(orphan.layer_id))
            .await?;
    }
    store.mark_swept(orphan).await?;
    tracing::info!(
        job_id = %orphan.job_id,
        layer_id = %orphan.layer_id,
        version = orphan.version,
        objects = removed,
        tiles_removed = tiles == TileSweep::Begin,
        "swept what an ended job left"
    );
    Ok((removed, true))
}

/// Sweeps every `every` until `stop`; a failed pass is logged and tried again
/// at the next.
pub async fn run_sweeper(
    store: JobStore,
    objects: Objects,
    after: Duration,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match sweep_once(&store, &objects, after).await {
            Ok(Swept { versions: 0, .. }) => {}
            Ok(swept) => tracing::info!(
                versions = swept.versions,
                objects = swept.objects,
                "sweep done"
            ),
            Err(e) => tracing::warn!("the sweep failed, trying again later: {e:#}"),
        }
    }
}
