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

/// Plans the render of `layer` at `zooms` with metatiles of nominal size
/// `metatile` (clamped at low zooms) and tiles of `tile_size` pixels. Deep zooms
/// come first: their metatiles are the biggest pieces of work.
pub fn plan_render(
    layer: &Layer,
    zooms: RangeInclusive<u8>,
    metatile: u32,
    tile_size: u32,
) -> RenderPlan {
    let mut metatiles = Vec::new();
    let mut pyramid_tiles = 0;
    for z in zooms.rev() {
        metatiles.extend(ZoomLayer::new(layer, z, tile_size).metatiles_touched(metatile));
        pyramid_tiles += tiles_per_side(z) * tiles_per_side(z);
    }
    let tiles = metatiles.iter().map(MetaTile::tile_count).sum();
    RenderPlan {
        metatiles,
        tiles,
        pyramid_tiles,
    }
}
