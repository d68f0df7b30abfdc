//! One-colour regions: planning a pyramid in proportion to its edges.
//!
//! A tile that no polygon edge, line or point comes near (within the style's
//! drawing reach at its zoom and at every deeper zoom) is one colour all over,
//! and so is every tile below it: the colour of the polygons that cover it. The
//! planner walks the quadtree from zoom 0 down, zoom by zoom. A tile near some
//! geometry is *live*: it is drawn, and its four children are looked at on the
//! next zoom. Any other tile is the root of a [`Region`] (or of transparent
//! space, which needs no record), and nothing below it is ever visited. So the
//! planner's time and memory, and the tiles drawn, grow with the tiles an edge
//! reaches, not with the area the data covers.
//!
//! Nearness is tested on the layer's own (projected, unsimplified) geometry,
//! with a pad that covers, at every zoom from the tile's own to the deepest,
//! the drawing reach (widest stroke, point radius, anti-aliasing) and how far
//! simplification and snapping may move a drawn edge from the true one. A
//! region's colour is worked out from which polygons cover its centre and
//! composited exactly as the rasterizer fills them.

use std::collections::{BTreeSet, HashMap};
use std::ops::RangeInclusive;

use geo::Coord;

use crate::near::PaddedGrid;
use crate::prepare::{Layer, SIMPLIFY_PX, Sizes};
use crate::raster::interior_colour;
use crate::style::Rgba;
use crate::tile::{TileId, tiles_per_side};

/// A quadtree node whose tiles, at its zoom and every deeper one, are all
/// `color` (never transparent: transparent space needs no record). The root
/// may lie above the pyramid's first zoom; it stands for its descendants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    pub root: TileId,
    pub color: Rgba,
}

impl Region {
    /// Whether tile `t` lies in this region.
    pub fn contains(&self, t: TileId) -> bool {
        t.z >= self.root.z
            && t.x >> (t.z - self.root.z) == self.root.x
            && t.y >> (t.z - self.root.z) == self.root.y
    }

    /// The tiles of this region at zooms `zooms`.
    pub fn tiles_within(&self, zooms: RangeInclusive<u8>) -> u64 {
        zooms
            .filter(|&z| z >= self.root.z)
            .map(|z| 1u64 << (2 * u32::from(z - self.root.z)))
            .fold(0, u64::saturating_add)
    }

    /// The tiles of this region at zoom `z` (none above its root), row by row.
    pub fn tiles_at(&self, z: u8) -> impl Iterator<Item = TileId> + use<> {
        let shift = z.saturating_sub(self.root.z);
        let n = if z < self.root.z { 0 } else { 1u32 << shift };
        let (x0, y0) = (self.root.x << shift, self.root.y << shift);
        (0..n).flat_map(move |dy| (0..n).map(move |dx| tile(z, x0 + dx, y0 + dy)))
    }
}

/// What the planner found at one zoom.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZoomPlan {
    pub z: u8,
    /// The tiles to draw, sorted.
    pub live: Vec<TileId>,
    /// Regions whose root is at this zoom.
    pub regions: Vec<Region>,
}

/// Walks a layer's pyramid zoom by zoom (see the module's documentation). Each
/// call of [`RegionPlanner::next_zoom`] plans one zoom from 0 to the deepest,
/// so a caller can stop as soon as a plan grows past a budget.
#[derive(Debug)]
pub struct RegionPlanner<'a> {
    layer: &'a Layer,
    tile_size: u32,
    max_zoom: u8,
    next: u8,
    /// Live tiles of the zoom above, sorted (row, column) keys.
    above: Vec<u64>,
    /// Region colours by the set of polygons that cover a point.
    colours: HashMap<Vec<u32>, Rgba>,
    /// The pad at each zoom, in that zoom's pixels.
    pads: Vec<f64>,
}

fn tile(z: u8, x: u32, y: u32) -> TileId {
    TileId { z, x, y }
}

fn key(y: u32, x: u32) -> u64 {
    (u64::from(y) << 32) | u64::from(x)
}

fn unkey(z: u8, k: u64) -> TileId {
    tile(z, k as u32, (k >> 32) as u32)
}

impl<'a> RegionPlanner<'a> {
    /// A planner for zooms 0 to `max_zoom` of `layer` with tiles of `tile_size`.
    pub fn new(layer: &'a Layer, max_zoom: u8, tile_size: u32) -> RegionPlanner<'a> {
        // Per zoom, how far (in its own pixels) a drawn edge can reach from the
        // true geometry: the drawing reach, three simplification tolerances
        // (distance dropping, Douglas-Peucker, the region between the two
        // lines), snapping, and a pixel to spare.
        let own: Vec<f64> = (0..=max_zoom)
            .map(|z| f64::from(Sizes::at(&layer.style, z, tile_size).1) + 4.0 * SIMPLIFY_PX + 1.0)
            .collect();
        // A region's root must be clear at every deeper zoom too: the largest
        // of the deeper pads, brought to this zoom's pixels.
        let mut pads = own.clone();
        for z in (0..max_zoom as usize).rev() {
            pads[z] = own[z].max(pads[z + 1] / 2.0);
        }
        RegionPlanner {
            layer,
            tile_size,
            max_zoom,
            next: 0,
            above: Vec::new(),
            colours: HashMap::new(),
            pads,
        }
    }

    /// Plans the next zoom, or `None` past the deepest.
    pub fn next_zoom(&mut self) -> Option<ZoomPlan> {
        if self.next > self.max_zoom {
            return None;
        }
        let z = self.next;
        self.next += 1;
        let near = self.near_tiles(z);
        // The tiles to decide: the children of the live tiles above (zoom 0:
        // the world).
        let candidates: Vec<u64> = if z == 0 {
            vec![key(0, 0)]
        } else {
            let mut c: Vec<u64> = self
                .above
                .iter()
                .flat_map(|&k| {
                    let (y, x) = ((k >> 32) as u32 * 2, k as u32 * 2);
                    [key(y, x), key(y, x + 1), key(y + 1, x), key(y + 1, x + 1)]
                })
                .collect();
            c.sort_unstable();
            c
        };
        let mut live = Vec::new();
        let mut clear = Vec::new();
        for k in candidates {
            if near.binary_search(&k).is_ok() {
                live.push(k);
            } else {
                clear.push(k);
            }
        }
        let regions = self.colour(z, &clear);
        let mut tiles: Vec<TileId> = live.iter().map(|&k| unkey(z, k)).collect();
        tiles.sort_unstable();
        let plan = ZoomPlan {
            z,
            live: tiles,
            regions,
        };
        self.above = live;
        Some(plan)
    }

    /// The tiles at zoom `z` within the pad of some geometry: sorted keys.
    fn near_tiles(&self, z: u8) -> Vec<u64> {
        let scale = f64::from(self.tile_size) * tiles_per_side(z) as f64;
        let grid = PaddedGrid {
            side: tiles_per_side(z) as i64,
            ts: f64::from(self.tile_size),
            pad: self.pads[z as usize],
        };
        let mut out = Vec::new();
        let mut add = |col: i64, row: i64| out.push(key(row as u32, col as u32));
        let px = |c: &Coord<f64>| Coord {
            x: c.x * scale,
            y: c.y * scale,
        };
        let mut points = Vec::new();
        for f in &self.layer.features {
            for line in f.shapes.polygons.iter().flatten().chain(&f.shapes.lines) {
                points.clear();
                points.extend(line.0.iter().map(px));
                grid.line(&points, &mut add);
            }
            for p in &f.shapes.points {
                grid.point(px(p), &mut add);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The regions of the clear tiles `clear` (sorted keys) at zoom `z`: the
    /// colour each one's covering polygons fill it with, found row by row
    /// from where the polygons' rings cross the row's centre line.
    fn colour(&mut self, z: u8, clear: &[u64]) -> Vec<Region> {
        if clear.is_empty() {
            return Vec::new();
        }
        let n = tiles_per_side(z) as f64;
        let mut rows: Vec<u32> = clear.iter().map(|&k| (k >> 32) as u32).collect();
        rows.dedup();
        let mut crossings: Vec<Vec<(f64, u32)>> = vec![Vec::new(); rows.len()];
        for (fi, f) in self.layer.features.iter().enumerate() {
            if f.paint.fill.is_none_or(Rgba::is_invisible) {
                continue;
            }
            for ring in f.shapes.polygons.iter().flatten() {
                for w in ring.0.windows(2) {
                    let (a, b) = (w[0], w[1]);
                    if a.y == b.y {
                        continue;
                    }
                    // Rows whose centre line (row + 0.5) / n lies in [lo, hi).
                    let (lo, hi) = (a.y.min(b.y) * n - 0.5, a.y.max(b.y) * n - 0.5);
                    let (first, last) = (lo.ceil(), hi.ceil() - 1.0);
                    if last < 0.0 || first >= n {
                        continue;
                    }
                    let start = rows.partition_point(|&r| f64::from(r) < first);
                    for (i, &row) in rows.iter().enumerate().skip(start) {
                        if f64::from(row) > last {
                            break;
                        }
                        let y = (f64::from(row) + 0.5) / n;
                        let x = a.x + (y - a.y) * (b.x - a.x) / (b.y - a.y);
                        crossings[i].push((x, fi as u32));
                    }
                }
            }
        }
        let mut regions = Vec::new();
        let mut at = 0;
        for (row, mut xs) in rows.into_iter().zip(crossings) {
            xs.sort_by(|p, q| p.0.total_cmp(&q.0));
            let mut odd: BTreeSet<u32> = BTreeSet::new();
            let mut next = 0;
            while at < clear.len() && (clear[at] >> 32) as u32 == row {
                let col = clear[at] as u32;
                at += 1;
                let cx = (f64::from(col) + 0.5) / n;
                while next < xs.len() && xs[next].0 < cx {
                    let fi = xs[next].1;
                    if !odd.remove(&fi) {
                        odd.insert(fi);
                    }
                    next += 1;
                }
                if odd.is_empty() {
                    continue;
                }
                let covering: Vec<u32> = odd.iter().copied().collect();
                let features = &self.layer.features;
                let color = *self.colours.entry(covering).or_insert_with_key(|covering| {
                    let fills: Vec<Rgba> = covering
                        .iter()
                        .filter_map(|&fi| features[fi as usize].paint.fill)
                        .collect();
                    interior_colour(&fills)
                });
                if !color.is_invisible() {
                    regions.push(Region {
                        root: tile(z, col, row),
                        color,
                    });
                }
            }
        }
        regions
    }
}

/// A layer's regions, for answering any tile: [`Regions::color_of`] finds the
/// region a tile lies in from its ancestors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Regions {
    roots: HashMap<TileId, Rgba>,
}

/// The first bytes of [`Regions::to_bytes`].
const MAGIC: &[u8; 8] = b"TFREGN1\n";

impl Regions {
    pub fn new(regions: impl IntoIterator<Item = Region>) -> Regions {
        Regions {
            roots: regions.into_iter().map(|r| (r.root, r.color)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.roots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The colour of the region tile `t` lies in, if any.
    pub fn color_of(&self, t: TileId) -> Option<Rgba> {
        if self.roots.is_empty() {
            return None;
        }
        (0..=t.z).rev().find_map(|z| {
            let up = t.z - z;
            self.roots.get(&tile(z, t.x >> up, t.y >> up)).copied()
        })
    }

    /// The regions, sorted.
    pub fn iter(&self) -> impl Iterator<Item = Region> {
        let mut all: Vec<Region> = self
            .roots
            .iter()
            .map(|(&root, &color)| Region { root, color })
            .collect();
        all.sort_by_key(|r| r.root);
        all.into_iter()
    }

    /// A compact binary form: a magic line, then 13 bytes a region (zoom,
    /// x and y little-endian, RGBA).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 13 * self.roots.len());
        out.extend_from_slice(MAGIC);
        for r in self.iter() {
            out.push(r.root.z);
            out.extend_from_slice(&r.root.x.to_le_bytes());
            out.extend_from_slice(&r.root.y.to_le_bytes());
            out.extend_from_slice(&r.color.0);
        }
        out
    }

    /// Reads [`Regions::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Regions, RegionsError> {
        let body = bytes.strip_prefix(MAGIC).ok_or(RegionsError::NoHeader)?;
        if body.len() % 13 != 0 {
            return Err(RegionsError::CutShort { len: bytes.len() });
        }
        let mut roots = HashMap::with_capacity(body.len() / 13);
        for r in body.chunks_exact(13) {
            let word = |i: usize| u32::from_le_bytes(r[i..i + 4].try_into().expect("4 bytes"));
            let (z, x, y) = (r[0], word(1), word(5));
            let root = TileId::new(z, x, y).ok_or(RegionsError::NotATile { z, x, y })?;
            roots.insert(root, Rgba(r[9..13].try_into().expect("4 bytes")));
        }
        Ok(Regions { roots })
    }
}

/// Why bytes are not a regions file ([`Regions::from_bytes`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegionsError {
    #[error("not a tilefarm regions file (no TFREGN1 header)")]
    NoHeader,
    #[error("a regions file of {len} bytes is cut short")]
    CutShort { len: usize },
    #[error("{z}/{x}/{y} is not a tile")]
    NotATile { z: u8, x: u32, y: u32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_answer_their_descendants_and_round_trip() {
        let red = Rgba([255, 0, 0, 255]);
        let region = Region {
            root: tile(3, 2, 5),
            color: red,
        };
        let regions = Regions::new([region]);
        assert_eq!(regions.color_of(tile(3, 2, 5)), Some(red));
        assert_eq!(regions.color_of(tile(5, 8, 23)), Some(red));
        assert_eq!(regions.color_of(tile(5, 12, 23)), None);
        assert_eq!(regions.color_of(tile(2, 1, 2)), None);
        assert_eq!(region.tiles_within(0..=5), 1 + 4 + 16);
        assert_eq!(region.tiles_at(4).count(), 4);
        assert!(region.tiles_at(5).all(|t| region.contains(t)));
        assert_eq!(region.tiles_at(2).count(), 0);
        assert_eq!(Regions::from_bytes(&regions.to_bytes()), Ok(regions));
        assert_eq!(
            Regions::from_bytes(b"TFREGN1\nabc"),
            Err(RegionsError::CutShort { len: 11 })
        );
        assert_eq!(
            Regions::from_bytes(b"nonsense"),
            Err(RegionsError::NoHeader)
        );
    }
}
