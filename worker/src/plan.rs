//! Planning a layer's render: the tiles near its edges, lines and points at
//! each zoom, grouped into blocks of about a task's worth of tiles, and the
//! one-colour regions that stand for every other tile the data covers.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use tilefarm_renderer::{Layer, MetaTile, Region, RegionPlanner, TileId, tiles_per_side};

/// Most tiles a block (one render task) takes: a few seconds of work, so
/// that a task lost with its worker costs little to do again.
pub const BLOCK_TILES: usize = 256;

/// Fewest tiles a part of a crowded block takes to become a block of its
/// own; smaller parts stay together in the block they lie in. With blocks of
/// at least this many tiles, the broker and the job store see one message
/// and one task row per 64 tiles or fewer.
pub const BLOCK_MIN_TILES: usize = 64;

/// The widest block, in tiles a side (its mask of tiles is 8 KiB).
pub const BLOCK_SIDE: u32 = 256;

/// A square block of tiles and the ones in it that a render draws (sorted):
/// one render task. Deep zooms, where edges are far apart, gather sparse
/// tiles into wide blocks; the worker draws them a metatile or less at a time
/// ([`crate::pyramid::metatiles_of`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedMeta {
    pub meta: MetaTile,
    pub tiles: Vec<TileId>,
}

impl PlannedMeta {
    /// Whether the render takes every tile of the metatile.
    pub fn is_whole(&self) -> bool {
        self.tiles.len() as u64 == self.meta.tile_count()
    }
}

/// The render of a layer: tasks for the tiles some edge, line or point comes
/// near, and regions of one colour for the rest of what the data covers.
/// Every other tile is transparent and never stored (the tile origin answers it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderPlan {
    /// Deep zooms first: their metatiles are the biggest pieces of work.
    pub metatiles: Vec<PlannedMeta>,
    /// The regions, root by root (some roots may lie above the first zoom).
    pub regions: Vec<Region>,
    /// Tiles the tasks render: the job's progress total.
    pub tiles: u64,
    /// Tiles of the zoom range that the regions stand for.
    pub region_tiles: u64,
    /// Tiles of the whole pyramid, most of them empty for a small layer.
    pub pyramid_tiles: u64,
}

impl RenderPlan {
    /// Every tile the plan renders, sorted.
    pub fn live(&self) -> std::collections::BTreeSet<TileId> {
        self.metatiles
            .iter()
            .flat_map(|m| m.tiles.iter().copied())
            .collect()
    }
}

/// A render that would take more tiles than a job may (`--max-job-tiles`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverBudget {
    pub min_zoom: u8,
    pub max_zoom: u8,
    /// The tiles it would take: counted, or past the counted zooms estimated
    /// from where the data reaches.
    pub estimate: u64,
    pub exact: bool,
    /// Tiles counted exactly, through zoom `counted_through`.
    pub counted: u64,
    pub counted_through: Option<u8>,
    pub limit: u64,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (about, counted) = match (self.exact, self.counted_through) {
            (false, Some(z)) => (
                "about ",
                format!(" (at least {} through zoom {z})", self.counted),
            ),
            (false, None) => ("about ", String::new()),
            (true, _) => ("", String::new()),
        };
        write!(
            f,
            "rendering zooms {}-{} would take {about}{} tiles{counted}, and a job may render \
             at most {} (the farm's --max-job-tiles): ask for a shallower deepest zoom or \
             less data",
            self.min_zoom, self.max_zoom, self.estimate, self.limit
        )
    }
}

impl std::error::Error for OverBudget {}

/// Plans the render of `layer` at `zooms` with metatiles of nominal size
/// `metatile` (clamped at low zooms) and tiles of `tile_size` pixels.
pub fn plan_render(
    layer: &Layer,
    zooms: RangeInclusive<u8>,
    metatile: u32,
    tile_size: u32,
) -> RenderPlan {
    plan_render_within(layer, zooms, metatile, tile_size, u64::MAX).expect("no limit to go over")
}

/// [`plan_render`] for at most `limit` rendered tiles. Zooms are planned from
/// the shallowest down, each in time and memory in proportion to the tiles its
/// edges reach, and planning stops at the first zoom past the limit: a request
/// for far too many tiles is refused in moments, however deep it asks.
pub fn plan_render_within(
    layer: &Layer,
    zooms: RangeInclusive<u8>,
    metatile: u32,
    tile_size: u32,
    limit: u64,
) -> Result<RenderPlan, OverBudget> {
    let (min_zoom, max_zoom) = (*zooms.start(), *zooms.end());
    let mut planner = RegionPlanner::new(layer, max_zoom, tile_size);
    let mut by_zoom: Vec<Vec<PlannedMeta>> = Vec::new();
    let mut regions = Vec::new();
    let mut per_zoom = Vec::new();
    let mut counted = 0u64;
    while let Some(plan) = planner.next_zoom() {
        regions.extend(plan.regions);
        let z = plan.z;
        if z < min_zoom {
            continue;
        }
        let tiles = plan.live.len() as u64;
        per_zoom.push(tiles);
        counted += tiles;
        if counted > limit {
            let rest = deeper_tiles(layer, &per_zoom, z + 1..=max_zoom, metatile);
            return Err(OverBudget {
                min_zoom,
                max_zoom,
                estimate: counted.saturating_add(rest),
                exact: z == max_zoom,
                counted,
                counted_through: Some(z),
                limit,
            });
        }
        by_zoom.push(blocks_of(plan.live, metatile));
    }
    let region_tiles = regions
        .iter()
        .map(|r| r.tiles_within(zooms.clone()))
        .fold(0, u64::saturating_add);
    Ok(RenderPlan {
        metatiles: by_zoom.into_iter().rev().flatten().collect(),
        regions,
        tiles: counted,
        region_tiles,
        pyramid_tiles: zooms.map(tiles_in_zoom).sum(),
    })
}

/// `tiles` gathered into blocks, deep zooms first: aligned squares of up to
/// [`BLOCK_SIDE`] tiles a side, each split in four while it holds more than
/// [`BLOCK_TILES`], down to metatiles of nominal size `metatile`. A quarter
/// with fewer than [`BLOCK_MIN_TILES`] stays in the block above, with the
/// other small quarters, so sparse tiles (the edges of large shapes at deep
/// zooms) still make tasks of many tiles.
pub fn blocks_of(tiles: impl IntoIterator<Item = TileId>, metatile: u32) -> Vec<PlannedMeta> {
    let top = |z: u8| MetaTile::side(z, BLOCK_SIDE);
    let mut blocks: BTreeMap<(Reverse<u8>, u32, u32), Vec<TileId>> = BTreeMap::new();
    for t in tiles {
        let n = top(t.z);
        blocks
            .entry((Reverse(t.z), t.y / n, t.x / n))
            .or_default()
            .push(t);
    }
    let mut out = Vec::new();
    for ((Reverse(z), row, col), tiles) in blocks {
        let n = top(z);
        let block = MetaTile {
            z,
            x: col * n,
            y: row * n,
            n,
        };
        split_block(block, tiles, MetaTile::side(z, metatile), &mut out);
    }
    out
}

fn split_block(block: MetaTile, mut tiles: Vec<TileId>, smallest: u32, out: &mut Vec<PlannedMeta>) {
    if tiles.len() <= BLOCK_TILES || block.n <= smallest {
        tiles.sort_unstable();
        out.push(PlannedMeta { meta: block, tiles });
        return;
    }
    let half = block.n / 2;
    let mut quarters: [Vec<TileId>; 4] = Default::default();
    for t in tiles {
        let q = (t.y - block.y) / half * 2 + (t.x - block.x) / half;
        quarters[q as usize].push(t);
    }
    let mut rest = Vec::new();
    for (q, tiles) in (0u32..).zip(quarters) {
        if tiles.len() >= BLOCK_MIN_TILES {
            let quarter = MetaTile {
                z: block.z,
                x: block.x + q % 2 * half,
                y: block.y + q / 2 * half,
                n: half,
            };
            split_block(quarter, tiles, smallest, out);
        } else {
            rest.extend(tiles);
        }
    }
    if !rest.is_empty() {
        rest.sort_unstable();
        out.push(PlannedMeta {
            meta: block,
            tiles: rest,
        });
    }
}

/// The tiles zooms `zooms` would add below those counted (`per_zoom`, from the
/// shallowest): each zoom as many times the one above as the last two counted
/// grew (2x for the edges of large shapes, up to 4x for data that fills its
/// tiles), and never more than the data's extent holds.
fn deeper_tiles(layer: &Layer, per_zoom: &[u64], zooms: RangeInclusive<u8>, metatile: u32) -> u64 {
    let growth = match per_zoom {
        [.., a, b] if *a > 0 => (*b as f64 / *a as f64).clamp(2.0, 4.0),
        _ => 4.0,
    };
    let mut last = per_zoom.last().copied().unwrap_or(1).max(1) as f64;
    let mut total = 0u64;
    for z in zooms {
        last *= growth;
        let tiles = (last.min(u64::MAX as f64) as u64).min(extent_tiles(layer, z, metatile));
        total = total.saturating_add(tiles);
    }
    total
}

fn tiles_in_zoom(z: u8) -> u64 {
    tiles_per_side(z) * tiles_per_side(z)
}

/// The tiles of the metatiles that the data's bounds (and one metatile round
/// them) cover at zoom `z`: what a render there takes at most, for data that
/// fills its bounds.
fn extent_tiles(layer: &Layer, z: u8, metatile: u32) -> u64 {
    let Some(b) = layer.bounds() else {
        return 0;
    };
    let n = u64::from(MetaTile::side(z, metatile));
    let cells = tiles_per_side(z) / n;
    let cell = |v: f64| ((v.clamp(0.0, 1.0) * cells as f64).floor() as u64).min(cells - 1);
    let span = |lo: f64, hi: f64| (cell(hi) + 1).min(cells - 1) - cell(lo).saturating_sub(1) + 1;
    span(b.min_x, b.max_x) * span(b.min_y, b.max_y) * n * n
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::{Geometry, LineString, Polygon};
    use tilefarm_renderer::{Feature, Style};

    /// A box over most of the world, with vertices every 10 degrees (a step
    /// of more than 180 would be taken as crossing the antimeridian).
    fn world_box() -> Layer {
        let mut coords: Vec<(f64, f64)> = (0..=35)
            .map(|i| (-175.0 + 10.0 * f64::from(i), -80.0))
            .collect();
        coords.extend((0..=35).map(|i| (175.0 - 10.0 * f64::from(i), 80.0)));
        coords.push((-175.0, -80.0));
        let f = Feature::from_geometry(Geometry::Polygon(Polygon::new(
            LineString::from(coords),
            vec![],
        )));
        Layer::new(&[f], &Style::default())
    }

    #[test]
    fn a_plan_within_its_limit_is_the_plain_plan() {
        let layer = world_box();
        let plain = plan_render(&layer, 0..=4, 8, 256);
        let within = plan_render_within(&layer, 0..=4, 8, 256, plain.tiles).unwrap();
        assert_eq!(within, plain);
        let over = plan_render_within(&layer, 0..=4, 8, 256, plain.tiles - 1).unwrap_err();
        assert!(over.exact);
        assert_eq!(over.estimate, plain.tiles);
        assert!(
            over.to_string()
                .contains(&format!("take {} tiles", plain.tiles))
        );
    }

    #[test]
    fn a_world_to_zoom_18_is_planned_by_its_edges_and_refused_past_the_limit_in_moments() {
        let started = std::time::Instant::now();
        let plan = plan_render_within(&world_box(), 0..=18, 8, 256, 5_000_000).unwrap();
        // Its edges, some 4 x 262,144 tiles at zoom 18 and half as many at
        // each zoom above; the regions stand for the 57 billion inside.
        assert!(
            plan.tiles > 1_500_000 && plan.tiles < 3_000_000,
            "{}",
            plan.tiles
        );
        assert!(plan.region_tiles > 50_000_000_000, "{}", plan.region_tiles);
        assert_eq!(plan.tiles, plan.live().len() as u64);
        let over = plan_render_within(&world_box(), 0..=18, 8, 256, 200_000).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        assert!(!over.exact);
        assert!(
            over.estimate > plan.tiles / 2 && over.estimate < plan.tiles * 4,
            "{over} against {}",
            plan.tiles
        );
        let message = over.to_string();
        assert!(message.contains("about "), "{message}");
        assert!(message.contains("at most 200000"), "{message}");
    }

    #[test]
    fn blocks_hold_each_tile_once_and_gather_sparse_edges_into_tasks_of_many_tiles() {
        let plan = plan_render(&world_box(), 0..=12, 8, 256);
        let mut seen = std::collections::BTreeSet::new();
        for b in &plan.metatiles {
            assert!(
                b.meta.n.is_power_of_two() && b.meta.n <= BLOCK_SIDE,
                "{}",
                b.meta
            );
            assert_eq!(b.meta.x % b.meta.n, 0, "{} is not aligned", b.meta);
            assert_eq!(b.meta.y % b.meta.n, 0, "{} is not aligned", b.meta);
            assert!(b.tiles.len() <= BLOCK_TILES.max(b.meta.tile_count() as usize));
            for t in &b.tiles {
                assert!(b.meta.contains(*t), "{t:?} outside {}", b.meta);
                assert!(seen.insert(*t), "{t:?} in two blocks");
            }
        }
        assert_eq!(seen.len() as u64, plan.tiles);
        // Deep zooms first.
        assert!(
            plan.metatiles
                .windows(2)
                .all(|w| w[0].meta.z >= w[1].meta.z)
        );
        // The world's edges at zoom 12 are four lines of tiles: one metatile
        // each would hold 8 of them; blocks hold many more.
        let deep: Vec<_> = plan.metatiles.iter().filter(|b| b.meta.z == 12).collect();
        let tiles: usize = deep.iter().map(|b| b.tiles.len()).sum();
        assert!(
            tiles >= BLOCK_MIN_TILES * deep.len(),
            "{tiles} tiles in {} blocks",
            deep.len()
        );
        // Per metatile, as planned before blocks, for comparison.
        let metatiles: std::collections::BTreeSet<_> = seen
            .iter()
            .filter(|t| t.z == 12)
            .map(|t| MetaTile::containing(*t, 8))
            .collect();
        assert!(
            deep.len() * 4 < metatiles.len(),
            "{} against {}",
            deep.len(),
            metatiles.len()
        );
    }

    #[test]
    fn a_crowded_block_splits_and_keeps_its_small_quarters_together() {
        let z = 10;
        // A full 32x32 square (1,024 tiles) in one quarter of a block and
        // ten tiles scattered in the others.
        let mut tiles: Vec<TileId> = (0..32)
            .flat_map(|y| (0..32).map(move |x| TileId { z, x, y }))
            .collect();
        tiles.extend((0..10).map(|i| TileId {
            z,
            x: 200 + i,
            y: 130,
        }));
        let blocks = blocks_of(tiles.clone(), 8);
        let total: usize = blocks.iter().map(|b| b.tiles.len()).sum();
        assert_eq!(total, tiles.len());
        let pooled: Vec<_> = blocks.iter().filter(|b| b.meta.n == BLOCK_SIDE).collect();
        assert_eq!(pooled.len(), 1, "{blocks:?}");
        assert_eq!(pooled[0].tiles.len(), 10);
        assert!(blocks.iter().all(|b| b.tiles.len() <= BLOCK_TILES));
        assert!(blocks.len() <= 1 + 1024 / 256 + 1, "{}", blocks.len());
    }
}
