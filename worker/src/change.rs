//! Changes to a layer that has tiles already: edits (upserts and deletes of
//! features by id) and replaced data. A change re-renders exactly the tiles it
//! makes dirty, tile by tile, gathered into blocks as a full render's are, so
//! every tile ends byte-identical to a fresh render of the new data.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use tilefarm_queue::RenderTask;
use tilefarm_renderer::{Feature, Layer, MetaTile, TileId, ZoomLayer};

use crate::plan::{RenderPlan, blocks_of, plan_render};

/// The render tasks of a change from `old` to the new data's plan `new`
/// (planned at the same zooms and sizes), all of which compare each tile with
/// the one stored and rewrite or delete only those that differ:
///
/// - the tiles drawn in one plan but not the other: a tile that leaves a
///   region is drawn and stored, one that joins a region is put right (the
///   new regions answer it from the version's publication on);
/// - for an edit (`edited`: the changed features before and after), the
///   tiles those features can draw into, before or after, among the tiles
///   drawn; tiles inside regions need nothing, the new regions give them;
/// - for new data (`edited` is `None`), every tile either plan draws.
///
/// Tiles are gathered into blocks as a full render's are; a tile's pixels do
/// not depend on its block, so every tile ends byte-identical to a fresh
/// render of the new data.
pub fn plan_change(
    old: &Layer,
    new: &RenderPlan,
    edited: Option<(&[Feature], &[Feature])>,
    zooms: RangeInclusive<u8>,
    metatile: u32,
    tile_size: u32,
) -> Vec<RenderTask> {
    let live_old = plan_render(old, zooms.clone(), metatile, tile_size).live();
    let live_new = new.live();
    let mut render: BTreeSet<TileId> = live_old.symmetric_difference(&live_new).copied().collect();
    match edited {
        None => render.extend(live_old.union(&live_new)),
        Some((before, after)) => {
            let style = old.style();
            let (before, after) = (Layer::new(before, style), Layer::new(after, style));
            let drawn: BTreeSet<TileId> = live_old.union(&live_new).copied().collect();
            for z in zooms.clone() {
                for changed in [&before, &after] {
                    let zl = ZoomLayer::new(changed, z, tile_size);
                    render.extend(zl.tiles_touched_among(&drawn));
                }
            }
        }
    }
    replacing(render, metatile)
}

/// Tasks that replace `tiles`, gathered into blocks (see [`blocks_of`]), deep
/// zooms first as a full render goes.
fn replacing(tiles: impl IntoIterator<Item = TileId>, metatile: u32) -> Vec<RenderTask> {
    blocks_of(tiles, metatile)
        .into_iter()
        .map(|b| partial(b.meta, &b.tiles, true))
        .collect()
}

/// The block of tiles a render task covers.
pub fn block(task: &RenderTask) -> MetaTile {
    MetaTile {
        z: task.z,
        x: task.x,
        y: task.y,
        n: task.n,
    }
}

/// A task that renders `tiles` of `meta`.
pub fn partial(meta: MetaTile, tiles: &[TileId], replaces: bool) -> RenderTask {
    RenderTask {
        z: meta.z,
        x: meta.x,
        y: meta.y,
        n: meta.n,
        tiles: tiles.len() as u32,
        dirty: (tiles.len() as u64 != meta.tile_count()).then(|| mask(meta, tiles)),
        replaces,
        changed: None,
    }
}

/// Adds `extra` tasks (the tiles of jobs that ended half done) to `tasks`:
/// the union of their tiles, gathered into blocks again (see [`blocks_of`])
/// with metatiles of nominal size `metatile`; all of them replace.
pub fn merge_tasks(
    tasks: Vec<RenderTask>,
    extra: Vec<RenderTask>,
    metatile: u32,
) -> Vec<RenderTask> {
    if extra.is_empty() {
        return tasks;
    }
    let tiles: BTreeSet<TileId> = tasks
        .iter()
        .chain(&extra)
        .flat_map(|t| tiles_in(block(t), t.dirty.as_deref()))
        .collect();
    replacing(tiles, metatile)
}

/// The bit mask of `tiles` within `meta`: one bit per tile, row by row, lowest
/// bit first.
pub fn mask(meta: MetaTile, tiles: &[TileId]) -> Vec<u8> {
    let n = meta.n as usize;
    let mut bits = vec![0u8; (n * n).div_ceil(8)];
    for t in tiles {
        let i = (t.y - meta.y) as usize * n + (t.x - meta.x) as usize;
        bits[i / 8] |= 1 << (i % 8);
    }
    bits
}

/// The tiles of `meta` that `dirty` names, or all of them for `None`.
pub fn tiles_in(meta: MetaTile, dirty: Option<&[u8]>) -> Vec<TileId> {
    let has =
        |i: usize| dirty.is_none_or(|m| m.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0));
    meta.tiles()
        .enumerate()
        .filter(|&(i, _)| has(i))
        .map(|(_, t)| t)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_round_trip_and_merge() {
        let meta = MetaTile {
            z: 5,
            x: 8,
            y: 16,
            n: 8,
        };
        let tiles = vec![
            TileId { z: 5, x: 8, y: 16 },
            TileId { z: 5, x: 15, y: 23 },
            TileId { z: 5, x: 10, y: 17 },
        ];
        let m = mask(meta, &tiles);
        let mut back = tiles_in(meta, Some(&m));
        back.sort();
        let mut want = tiles.clone();
        want.sort();
        assert_eq!(back, want);
        let a = RenderTask {
            dirty: Some(mask(meta, &tiles[..1])),
            tiles: 1,
            z: 5,
            x: 8,
            y: 16,
            n: 8,
            replaces: true,
            changed: None,
        };
        let b = RenderTask {
            dirty: Some(mask(meta, &tiles[1..])),
            tiles: 2,
            ..a.clone()
        };
        let merged = merge_tasks(vec![a.clone()], vec![b], 8);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].tiles, 3);
        let every: Vec<TileId> = meta.tiles().collect();
        let all = merge_tasks(vec![a], vec![partial(meta, &every, false)], 8);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].tiles, 64);
        assert!(all[0].replaces);
        assert_eq!(tiles_in(block(&all[0]), all[0].dirty.as_deref()), every);
    }
}
