//! Rendering a whole tile pyramid: every tile of a zoom range, metatile by
//! metatile, in parallel with rayon.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use tilefarm_queue::DEEPEST_ZOOM;
use tilefarm_renderer::{
    Layer, MetaTile, PngError, TileId, TileImage, UniformPngs, ZoomLayer, encode_png,
    render_metatile, tiles_per_side,
};

use crate::sink::{SinkError, TileSink};

/// What to render.
#[derive(Clone, Debug)]
pub struct PyramidOptions {
    pub zooms: RangeInclusive<u8>,
    /// Tiles per metatile side (clamped to the world's width at low zooms).
    pub metatile: u32,
    /// 256, or 512 for `@2x` tiles.
    pub tile_size: u32,
    /// Leave fully transparent tiles out instead of storing them.
    pub skip_empty: bool,
}

impl Default for PyramidOptions {
    fn default() -> Self {
        PyramidOptions {
            zooms: 0..=5,
            metatile: 8,
            tile_size: 256,
            skip_empty: false,
        }
    }
}

impl PyramidOptions {
    /// Every tile in the zoom range.
    pub fn tile_count(&self) -> u64 {
        self.zooms
            .clone()
            .map(|z| tiles_per_side(z) * tiles_per_side(z))
            .sum()
    }
}

/// Why a pyramid could not be finished.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("tile {tile}: {source}")]
    Sink { tile: TileId, source: SinkError },
    #[error("tile {tile}: {source}")]
    Png { tile: TileId, source: PngError },
    #[error("invalid options: {0}")]
    Options(String),
}

/// What a pyramid render did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Tiles in the pyramid.
    pub tiles: u64,
    /// Tiles with more than one colour, each encoded on its own.
    pub encoded: u64,
    /// Tiles of one colour (including transparent ones), encoded once per colour.
    pub uniform: u64,
    /// Fully transparent tiles (a subset of `uniform`).
    pub empty: u64,
    /// Transparent tiles left out (with `skip_empty`).
    pub skipped: u64,
    /// Metatiles drawn (the others had no feature near them).
    pub metatiles_drawn: u64,
    /// One-colour regions (with `skip_empty`): subtrees no edge comes near,
    /// handed to the sink whole.
    pub regions: u64,
    /// Tiles of the zoom range in those regions (among `uniform`).
    pub region_tiles: u64,
    /// PNG bytes handed to the sink, counting each uniform tile's bytes once per tile.
    pub bytes: u64,
    pub elapsed: Duration,
}

#[derive(Default)]
struct Counters {
    encoded: AtomicU64,
    uniform: AtomicU64,
    empty: AtomicU64,
    skipped: AtomicU64,
    drawn: AtomicU64,
    bytes: AtomicU64,
    regions: AtomicU64,
    region_tiles: AtomicU64,
}

/// Checks the options before any work starts.
pub fn check_options(options: &PyramidOptions) -> Result<(), RenderError> {
    let bad = |m: String| Err(RenderError::Options(m));
    if options.zooms.is_empty() {
        return bad(format!("the zoom range {:?} is empty", options.zooms));
    }
    if *options.zooms.end() > DEEPEST_ZOOM {
        return bad(format!(
            "zoom {} is deeper than the deepest supported, {DEEPEST_ZOOM}",
            options.zooms.end()
        ));
    }
    if !matches!(options.tile_size, 256 | 512) {
        return bad(format!("tile size {} is not 256 or 512", options.tile_size));
    }
    if !options.metatile.is_power_of_two() || options.metatile > 16 {
        return bad(format!(
            "metatile size {} is not a power of two from 1 to 16",
            options.metatile
        ));
    }
    Ok(())
}

/// What drawing one metatile produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetaTileReport {
    /// Metatiles drawn with some feature near them.
    pub drawn: u64,
    pub encoded: u64,
    pub uniform: u64,
    pub empty: u64,
    pub skipped: u64,
    pub bytes: u64,
}

/// Draws one metatile of a prepared zoom layer and hands its tiles to `sink`:
/// one render task of the farm, and the unit `render_pyramid` repeats. Fully
/// transparent tiles are left out with `skip_empty`.
pub fn render_metatile_into(
    zl: &ZoomLayer,
    meta: MetaTile,
    skip_empty: bool,
    sink: &dyn TileSink,
    pngs: &UniformPngs,
) -> Result<MetaTileReport, RenderError> {
    let ts = zl.tile_size();
    let rendered = render_metatile(zl, meta);
    let mut report = MetaTileReport {
        drawn: u64::from(!rendered.is_blank()),
        ..Default::default()
    };
    for t in meta.tiles() {
        let png = match rendered.tile(t) {
            TileImage::Uniform(color) => {
                report.uniform += 1;
                if color.is_invisible() {
                    report.empty += 1;
                    if skip_empty {
                        report.skipped += 1;
                        continue;
                    }
                }
                let png = pngs
                    .get(color, ts)
                    .map_err(|source| RenderError::Png { tile: t, source })?;
                sink.put_uniform(t, color, &png)
                    .map_err(|source| RenderError::Sink { tile: t, source })?;
                png.len()
            }
            image @ TileImage::Pixels(_) => {
                let png = encode_png(&image, ts)
                    .map_err(|source| RenderError::Png { tile: t, source })?;
                sink.put(t, &png)
                    .map_err(|source| RenderError::Sink { tile: t, source })?;
                report.encoded += 1;
                png.len()
            }
        };
        report.bytes += png as u64;
    }
    Ok(report)
}

/// Draws `tiles` of block `block` (see [`metatiles_of`]) and hands them to
/// `sink`, leaving transparent ones out: one planned block of a render.
pub fn render_tiles_into(
    zl: &ZoomLayer,
    block: MetaTile,
    tiles: &[TileId],
    metatile: u32,
    sink: &dyn TileSink,
    pngs: &UniformPngs,
) -> Result<MetaTileReport, RenderError> {
    let (rendered, work) = render_tiles_measured(zl, block, tiles, metatile, pngs)?;
    let mut report = MetaTileReport {
        drawn: work.metatiles,
        uniform: work.one_colour,
        encoded: tiles.len() as u64 - work.one_colour,
        ..Default::default()
    };
    for (t, png) in rendered {
        let Some(png) = png else {
            report.empty += 1;
            report.skipped += 1;
            continue;
        };
        sink.put(t, &png)
            .map_err(|source| RenderError::Sink { tile: t, source })?;
        report.bytes += png.len() as u64;
    }
    Ok(report)
}

/// A tile and its PNG, `None` for a transparent tile.
pub type RenderedTile = (TileId, Option<Vec<u8>>);

/// Renders `tiles` (all of them in `block`), giving each tile its PNG, the
/// same bytes [`render_metatile_into`] writes, or `None` for a transparent
/// tile.
pub fn render_tiles(
    zl: &ZoomLayer,
    block: MetaTile,
    tiles: &[TileId],
    metatile: u32,
    pngs: &UniformPngs,
) -> Result<Vec<RenderedTile>, RenderError> {
    render_tiles_measured(zl, block, tiles, metatile, pngs).map(|(tiles, _)| tiles)
}

/// What rendering a block's tiles took.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TileWork {
    /// Rasterizing.
    pub render: Duration,
    /// Encoding the tiles.
    pub encode: Duration,
    /// Tiles of one colour (transparent ones among them): no encode of their own.
    pub one_colour: u64,
    /// Metatiles drawn (see [`metatiles_of`]).
    pub metatiles: u64,
}

/// The metatiles to draw for `tiles` of `block`, each with its tiles: the
/// metatiles of nominal size `metatile` on the full render's grid that hold
/// some of them. A tile is always drawn in the same metatile, whichever of
/// its neighbours a task wants, so a change gives exactly the bytes a full
/// render does (wide strokes' anti-aliasing depends a little on the canvas).
pub fn metatiles_of(
    block: MetaTile,
    tiles: &[TileId],
    metatile: u32,
) -> Vec<(MetaTile, Vec<TileId>)> {
    let mut metatiles: BTreeMap<MetaTile, Vec<TileId>> = BTreeMap::new();
    for &t in tiles {
        debug_assert!(block.contains(t), "{t:?} is not in block {block}");
        metatiles
            .entry(MetaTile::containing(t, metatile))
            .or_default()
            .push(t);
    }
    metatiles.into_iter().collect()
}

/// [`render_tiles`], saying what the work took. The tiles come back
/// metatile by metatile.
pub fn render_tiles_measured(
    zl: &ZoomLayer,
    block: MetaTile,
    tiles: &[TileId],
    metatile: u32,
    pngs: &UniformPngs,
) -> Result<(Vec<RenderedTile>, TileWork), RenderError> {
    let ts = zl.tile_size();
    let mut work = TileWork::default();
    let mut out = Vec::with_capacity(tiles.len());
    for (meta, tiles) in metatiles_of(block, tiles, metatile) {
        let started = Instant::now();
        let rendered = render_metatile(zl, meta);
        work.render += started.elapsed();
        work.metatiles += 1;
        let started = Instant::now();
        for t in tiles {
            let image = rendered.tile(t);
            if matches!(image, TileImage::Uniform(_)) {
                work.one_colour += 1;
            }
            let png = match image {
                TileImage::Uniform(color) if color.is_invisible() => None,
                TileImage::Uniform(color) => Some(pngs.get(color, ts).map(|png| png.to_vec())),
                image @ TileImage::Pixels(_) => Some(encode_png(&image, ts)),
            };
            let png = png
                .transpose()
                .map_err(|source| RenderError::Png { tile: t, source })?;
            out.push((t, png));
        }
        work.encode += started.elapsed();
    }
    Ok((out, work))
}

/// Renders every tile of `options.zooms` into `sink`, calling `progress` with the
/// number of tiles finished as work completes. Uses the current rayon pool; the
/// output is the same bytes whatever the number of threads.
pub fn render_pyramid(
    layer: &Layer,
    options: &PyramidOptions,
    sink: &dyn TileSink,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Summary, RenderError> {
    check_options(options)?;
    let started = Instant::now();
    let ts = options.tile_size;
    let zooms: Vec<ZoomLayer> = options
        .zooms
        .clone()
        .into_par_iter()
        .map(|z| ZoomLayer::new(layer, z, ts))
        .collect();
    // Deep zooms first: their metatiles are the biggest pieces of work.
    let counters = Counters::default();
    let pngs = UniformPngs::default();
    let mut work: Vec<(usize, MetaTile, Option<Vec<TileId>>)> = Vec::new();
    let mut regions = Vec::new();
    if options.skip_empty {
        // Only the tiles near an edge are drawn; regions of one colour stand
        // for the rest of what the data covers, and everything else is empty.
        let plan = crate::plan::plan_render(layer, options.zooms.clone(), options.metatile, ts);
        let empty = options.tile_count() - plan.tiles - plan.region_tiles;
        counters.uniform.fetch_add(empty, Ordering::Relaxed);
        counters.empty.fetch_add(empty, Ordering::Relaxed);
        counters.skipped.fetch_add(empty, Ordering::Relaxed);
        progress(empty);
        let first = *options.zooms.start();
        work.extend(
            plan.metatiles
                .into_iter()
                .map(|m| (usize::from(m.meta.z - first), m.meta, Some(m.tiles))),
        );
        regions = plan.regions;
    } else {
        for (i, zl) in zooms.iter().enumerate().rev() {
            work.extend(MetaTile::all(zl.zoom(), options.metatile).map(|m| (i, m, None)));
        }
    }
    work.par_iter()
        .try_for_each(|(i, meta, tiles)| -> Result<(), RenderError> {
            let zl = &zooms[*i];
            let r = match tiles {
                Some(tiles) => render_tiles_into(zl, *meta, tiles, options.metatile, sink, &pngs)?,
                None => render_metatile_into(zl, *meta, options.skip_empty, sink, &pngs)?,
            };
            counters.drawn.fetch_add(r.drawn, Ordering::Relaxed);
            counters.encoded.fetch_add(r.encoded, Ordering::Relaxed);
            counters.uniform.fetch_add(r.uniform, Ordering::Relaxed);
            counters.empty.fetch_add(r.empty, Ordering::Relaxed);
            counters.skipped.fetch_add(r.skipped, Ordering::Relaxed);
            counters.bytes.fetch_add(r.bytes, Ordering::Relaxed);
            progress(tiles.as_ref().map_or(meta.tile_count(), |t| t.len() as u64));
            Ok(())
        })?;
    regions
        .par_iter()
        .try_for_each(|region| -> Result<(), RenderError> {
            let tile = region.root;
            let png = pngs
                .get(region.color, ts)
                .map_err(|source| RenderError::Png { tile, source })?;
            let written = sink
                .put_region(*region, options.zooms.clone(), &png)
                .map_err(|source| RenderError::Sink { tile, source })?;
            counters.regions.fetch_add(1, Ordering::Relaxed);
            counters.region_tiles.fetch_add(written, Ordering::Relaxed);
            counters.uniform.fetch_add(written, Ordering::Relaxed);
            counters
                .bytes
                .fetch_add(written * png.len() as u64, Ordering::Relaxed);
            progress(written);
            Ok(())
        })?;
    sink.finish().map_err(|source| RenderError::Sink {
        tile: TileId { z: 0, x: 0, y: 0 },
        source,
    })?;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Ok(Summary {
        tiles: options.tile_count(),
        encoded: get(&counters.encoded),
        uniform: get(&counters.uniform),
        empty: get(&counters.empty),
        skipped: get(&counters.skipped),
        metatiles_drawn: get(&counters.drawn),
        regions: get(&counters.regions),
        region_tiles: get(&counters.region_tiles),
        bytes: get(&counters.bytes),
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_drawn_on_the_full_renders_metatile_grid() {
        let block = MetaTile {
            z: 12,
            x: 256,
            y: 512,
            n: 256,
        };
        let tiles: Vec<TileId> = [(256, 512), (263, 519), (264, 512), (511, 767)]
            .into_iter()
            .map(|(x, y)| TileId { z: 12, x, y })
            .collect();
        let metatiles = metatiles_of(block, &tiles, 8);
        let at = |x, y| MetaTile { z: 12, x, y, n: 8 };
        assert_eq!(
            metatiles,
            vec![
                (at(256, 512), vec![tiles[0], tiles[1]]),
                (at(264, 512), vec![tiles[2]]),
                (at(504, 760), vec![tiles[3]]),
            ]
        );
        // At low zooms the metatile is the world.
        let world = MetaTile {
            z: 1,
            x: 0,
            y: 0,
            n: 2,
        };
        let one = [TileId { z: 1, x: 1, y: 1 }];
        assert_eq!(metatiles_of(world, &one, 8), vec![(world, one.to_vec())]);
    }
}
