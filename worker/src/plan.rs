//! Planning a layer's render: the metatiles its data really reaches, at each zoom.

use std::ops::RangeInclusive;

use tilefarm_renderer::{Layer, MetaTile, ZoomLayer, tiles_per_side};

/// The render tasks of a layer: one per metatile some feature comes near. Tiles
/// outside them are transparent and never stored (the tile origin answers them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderPlan {
    pub metatiles: Vec<MetaTile>,
    /// Tiles the tasks render: the job's progress total.
    pub tiles: u64,
    /// Tiles of the whole pyramid, most of them empty for a small layer.
    pub pyramid_tiles: u64,
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
/// `metatile` (clamped at low zooms) and tiles of `tile_size` pixels. Deep zooms
/// come first: their metatiles are the biggest pieces of work.
pub fn plan_render(
    layer: &Layer,
    zooms: RangeInclusive<u8>,
    metatile: u32,
    tile_size: u32,
) -> RenderPlan {
    plan_render_within(layer, zooms, metatile, tile_size, u64::MAX).expect("no limit to go over")
}

/// [`plan_render`] for at most `limit` rendered tiles. Zooms are planned from
/// the shallowest down, and a zoom is enumerated only while what it may add
/// (estimated without enumerating) keeps the plan near the limit: a request
/// for far too many tiles is refused in moments and in little memory, however
/// deep it asks.
pub fn plan_render_within(
    layer: &Layer,
    zooms: RangeInclusive<u8>,
    metatile: u32,
    tile_size: u32,
    limit: u64,
) -> Result<RenderPlan, OverBudget> {
    let (min_zoom, max_zoom) = (*zooms.start(), *zooms.end());
    let mut by_zoom = Vec::new();
    let mut per_zoom = Vec::new();
    let mut counted = 0u64;
    let mut counted_through = None;
    for z in zooms.clone() {
        let zl = ZoomLayer::new(layer, z, tile_size);
        let n = u64::from(MetaTile::side(z, metatile));
        let bound = zl.metatile_cells_bound(metatile).saturating_mul(n * n);
        // Enumerating costs about `bound`; past a few limits' worth, the
        // estimate alone says no.
        if counted.saturating_add(bound.min(tiles_in_zoom(z))) > limit
            && bound > limit.saturating_mul(4)
        {
            let rest = deeper_tiles(layer, &per_zoom, z..=max_zoom, metatile);
            return Err(OverBudget {
                min_zoom,
                max_zoom,
                estimate: counted.saturating_add(rest),
                exact: false,
                counted,
                counted_through,
                limit,
            });
        }
        let metas = zl.metatiles_touched(metatile);
        let tiles: u64 = metas.iter().map(MetaTile::tile_count).sum();
        per_zoom.push(tiles);
        counted += tiles;
        counted_through = Some(z);
        by_zoom.push(metas);
        if counted > limit {
            let rest = deeper_tiles(layer, &per_zoom, z + 1..=max_zoom, metatile);
            return Err(OverBudget {
                min_zoom,
                max_zoom,
                estimate: counted.saturating_add(rest),
                exact: z == max_zoom,
                counted,
                counted_through,
                limit,
            });
        }
    }
    Ok(RenderPlan {
        metatiles: by_zoom.into_iter().rev().flatten().collect(),
        tiles: counted,
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

    fn world_box() -> Layer {
        let ring = LineString::from(vec![
            (-179.0, -80.0),
            (179.0, -80.0),
            (179.0, 80.0),
            (-179.0, 80.0),
            (-179.0, -80.0),
        ]);
        let f = Feature::from_geometry(Geometry::Polygon(Polygon::new(ring, vec![])));
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
    fn a_world_to_zoom_18_is_refused_in_moments_with_its_size() {
        let started = std::time::Instant::now();
        let over = plan_render_within(&world_box(), 0..=18, 8, 256, 5_000_000).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert!(!over.exact);
        // Counted through zoom 16 (within a test's time), it takes some 25
        // million tiles; zooms 17 and 18 add up to four times as many each.
        let full = plan_render(&world_box(), 0..=16, 8, 256).tiles;
        assert!(
            over.estimate > full * 4 && over.estimate < full * 21,
            "{over} against {full} through zoom 16"
        );
        let message = over.to_string();
        assert!(message.contains("about "), "{message}");
        assert!(message.contains("at most 5000000"), "{message}");
    }
}
