//! The tilefarm render core: pure and synchronous.
//!
//! GeoJSON in ([`read_geojson`]), a [`Style`], and out come tiles: a [`Layer`] is
//! projected to Web Mercator once, prepared per zoom as a [`ZoomLayer`] (simplified
//! to the pixel grid, spatially indexed), drawn one [`MetaTile`] at a time with
//! tiny-skia ([`render_metatile`]), sliced into [`TileImage`]s and encoded with
//! [`encode_png`]. No I/O beyond the reader it is given, no threads, no async.
#![forbid(unsafe_code)]

mod clip;
mod cover;
mod dirty;
mod feature;
mod geojson;
mod metatile;
mod near;
mod png;
mod prepare;
mod raster;
mod region;
mod stroke;
mod style;
mod tile;

pub use cover::tiles_covering;
pub use feature::{Feature, FeatureId, geometry_to_geojson};
pub use geojson::{
    InputError, InvalidFeature, Location, OnInvalid, ReadOptions, ReadReport, feature_from_value,
    geometry_from_value, read_geojson,
};
pub use metatile::MetaTile;
pub use png::{PngError, UniformPngs, encode_png, encode_rgba};
pub use prepare::{Layer, ZoomLayer};
pub use raster::{RenderedMetaTile, TileImage, render_metatile};
pub use region::{Region, RegionPlanner, Regions, RegionsError, ZoomPlan};
pub use style::{
    BadColour, ColorRule, FeaturePaint, LineStyle, PointStyle, PolygonStyle, Rgba, Size, Style,
    StyleError,
};
pub use tile::{
    MAX_LATITUDE, MAX_ZOOM, MERCATOR_HALF_WORLD, TileId, UnitRect, clamp_latitude,
    lonlat_to_mercator, lonlat_to_unit, mercator_to_lonlat, mercator_to_unit, tiles_per_side,
    unit_to_lonlat, unit_to_mercator,
};

/// Renders one tile alone (as a 1x1 metatile) from a prepared zoom layer.
pub fn render_tile(layer: &ZoomLayer, tile: TileId) -> TileImage {
    render_metatile(
        layer,
        MetaTile {
            z: tile.z,
            x: tile.x,
            y: tile.y,
            n: 1,
        },
    )
    .tile(tile)
}
