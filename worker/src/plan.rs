//! Planning a layer's render: the tiles near its edges, lines and points at
//! each zoom, grouped by metatile, and the one-colour regions that stand for
//! every other tile the data covers.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use tilefarm_renderer::{Layer, MetaTile, Region, RegionPlanner, TileId, tiles_per_side};

/// The tiles of one metatile that a render draws (sorted).
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
        let mut metas: BTreeMap<MetaTile, Vec<TileId>> = BTreeMap::new();
        for t in plan.live {
            metas
                .entry(MetaTile::containing(t, metatile))
                .or_default()
                .push(t);
        }
        by_zoom.push(
            metas
                .into_iter()
                .map(|(meta, tiles)| PlannedMeta { meta, tiles })
                .collect(),
        );
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
}
