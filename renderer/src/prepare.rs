//! Layers prepared for drawing: projected to Web Mercator, styled, and for each
//! zoom simplified to the pixel grid and indexed spatially.

use geo::{Coord, Geometry, LineString};
use rstar::{AABB, RTree, RTreeObject};

use crate::clip::Rect;
use crate::feature::Feature;
use crate::metatile::MetaTile;
use crate::style::{FeaturePaint, Style};
use crate::tile::{UnitRect, lonlat_to_unit};

/// Simplification tolerance in pixels: well below what anti-aliasing can show.
pub(crate) const SIMPLIFY_PX: f64 = 0.25;
/// Coordinates are snapped to 1/64 px, so that moving a drawing by whole pixels
/// (a tile inside a metatile versus the same tile alone) changes no bit of it.
const QUANTUM: f64 = 64.0;
/// Line pieces indexed together; long lines are indexed piece by piece so a
/// metatile only walks the parts of a line near it.
const LINE_CHUNK: usize = 64;

/// One feature's geometry in unit Mercator coordinates (or pixels, once prepared
/// for a zoom), split by how it is drawn.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shapes {
    /// Polygons, each a list of rings (exterior first), each ring closed.
    pub polygons: Vec<Vec<LineString<f64>>>,
    pub lines: Vec<LineString<f64>>,
    pub points: Vec<Coord<f64>>,
}

/// Projects a line or ring to unit Mercator, unwrapping longitudes across the
/// antimeridian: a step of more than 180° between two vertices is taken as
/// crossing it (as data converted from TopoJSON often does), so the line goes on
/// past x = 1 or before x = 0 instead of jumping across the world. `near` is the
/// longitude the first vertex is brought within 180° of.
fn project_unwrapped(ls: &LineString<f64>, near: Option<f64>) -> LineString<f64> {
    let mut prev = near;
    let mut prev_raw: Option<f64> = None;
    ls.0.iter()
        .map(|c| {
            // An edge from one side of the world's edge to the other (-180 to 180)
            // runs the whole way round, as world-wide rectangles do: keep it.
            let along_edge = prev_raw.is_some_and(|p| p.abs() == 180.0 && c.x.abs() == 180.0);
            prev_raw = Some(c.x);
            let mut lon = c.x;
            if let (Some(p), false) = (prev, along_edge) {
                while lon - p > 180.0 {
                    lon -= 360.0;
                }
                while lon - p < -180.0 {
                    lon += 360.0;
                }
            }
            prev = Some(lon);
            let (_, y) = lonlat_to_unit(0.0, c.y);
            Coord {
                x: (lon + 180.0) / 360.0,
                y,
            }
        })
        .collect()
}

/// The shifts (in world widths) that bring every copy of a shape reaching past
/// the antimeridian into the world: the shape itself, and a copy one world to the
/// east or west where it runs off an edge.
fn world_copies(coords: impl Iterator<Item = f64> + Clone) -> Vec<f64> {
    let min = coords.clone().fold(f64::INFINITY, f64::min);
    let max = coords.fold(f64::NEG_INFINITY, f64::max);
    let mut shifts = vec![0.0];
    if max > 1.0 {
        shifts.push(-1.0);
    }
    if min < 0.0 {
        shifts.push(1.0);
    }
    shifts
}

fn shifted(ls: &LineString<f64>, dx: f64) -> LineString<f64> {
    ls.0.iter()
        .map(|c| Coord {
            x: c.x + dx,
            y: c.y,
        })
        .collect()
}

impl Shapes {
    fn add(&mut self, g: &Geometry<f64>) {
        let point = |c: Coord<f64>| {
            let (x, y) = lonlat_to_unit(c.x, c.y);
            Coord { x, y }
        };
        match g {
            Geometry::Point(p) => self.points.push(point(p.0)),
            Geometry::MultiPoint(mp) => self.points.extend(mp.0.iter().map(|p| point(p.0))),
            Geometry::Line(l) => self.add_line(&LineString(vec![l.start, l.end])),
            Geometry::LineString(ls) => self.add_line(ls),
            Geometry::MultiLineString(mls) => mls.0.iter().for_each(|l| self.add_line(l)),
            Geometry::Polygon(p) => {
                let exterior = project_unwrapped(p.exterior(), None);
                let near = p.exterior().0.first().map(|c| c.x);
                let rings: Vec<LineString<f64>> = std::iter::once(exterior)
                    .chain(p.interiors().iter().map(|r| project_unwrapped(r, near)))
                    .collect();
                for dx in world_copies(rings[0].0.iter().map(|c| c.x)) {
                    self.polygons
                        .push(rings.iter().map(|r| shifted(r, dx)).collect());
                }
            }
            Geometry::MultiPolygon(mp) => {
                for p in &mp.0 {
                    self.add(&Geometry::Polygon(p.clone()));
                }
            }
            Geometry::Rect(r) => self.add(&Geometry::Polygon(r.to_polygon())),
            Geometry::Triangle(t) => self.add(&Geometry::Polygon(t.to_polygon())),
            Geometry::GeometryCollection(gc) => gc.0.iter().for_each(|g| self.add(g)),
        }
    }

    fn add_line(&mut self, ls: &LineString<f64>) {
        let line = project_unwrapped(ls, None);
        for dx in world_copies(line.0.iter().map(|c| c.x)) {
            self.lines.push(shifted(&line, dx));
        }
    }

    fn is_empty(&self) -> bool {
        self.polygons.is_empty() && self.lines.is_empty() && self.points.is_empty()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct LayerFeature {
    pub paint: FeaturePaint,
    pub shapes: Shapes,
}

/// A layer projected to Web Mercator with each feature's colours resolved.
/// Build one with [`Layer::new`], then a [`ZoomLayer`] for each zoom to draw.
#[derive(Clone, Debug)]
pub struct Layer {
    pub(crate) features: Vec<LayerFeature>,
    pub(crate) style: Style,
    bounds: Option<UnitRect>,
    x_span: Option<(f64, f64)>,
}

/// The least and greatest x of some points.
fn x_range(points: &[Coord<f64>]) -> (f64, f64) {
    points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), c| {
            (lo.min(c.x), hi.max(c.x))
        })
}

/// The narrowest band of unit x holding every span `(min, max)`: spans (which
/// may run past 0 or 1, for parts unwrapped across the antimeridian) are
/// brought into `[0, 1)`, merged, and the band is the circle less its widest gap.
fn narrowest_x_span(spans: Vec<(f64, f64)>) -> Option<(f64, f64)> {
    let mut pieces = Vec::with_capacity(spans.len());
    for (lo, hi) in spans {
        if !(lo.is_finite() && hi.is_finite()) {
            continue;
        }
        if hi - lo >= 1.0 {
            return Some((0.0, 1.0));
        }
        let shift = lo.floor();
        let (lo, hi) = (lo - shift, hi - shift);
        if hi > 1.0 {
            pieces.push((lo, 1.0));
            pieces.push((0.0, hi - 1.0));
        } else {
            pieces.push((lo, hi));
        }
    }
    pieces.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(pieces.len());
    for (lo, hi) in pieces {
        match merged.last_mut() {
            Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    let (first, last) = (*merged.first()?, *merged.last()?);
    // The gap across the antimeridian first: a band that need not cross it
    // does not.
    let mut widest = first.0 + 1.0 - last.1;
    let mut band = (first.0, last.1);
    for pair in merged.windows(2) {
        let gap = pair[1].0 - pair[0].1;
        if gap > widest {
            widest = gap;
            band = (pair[1].0, pair[0].1);
        }
    }
    Some(band)
}

impl Layer {
    pub fn new(features: &[Feature], style: &Style) -> Layer {
        let mut bounds: Option<UnitRect> = None;
        let mut grow = |c: &Coord<f64>| {
            let c = &Coord {
                x: c.x.clamp(0.0, 1.0),
                y: c.y,
            };
            let b = bounds.get_or_insert(UnitRect {
                min_x: c.x,
                min_y: c.y,
                max_x: c.x,
                max_y: c.y,
            });
            b.min_x = b.min_x.min(c.x);
            b.min_y = b.min_y.min(c.y);
            b.max_x = b.max_x.max(c.x);
            b.max_y = b.max_y.max(c.y);
        };
        // The longitudes each part covers, for the narrowest band holding them.
        let mut spans = Vec::new();
        let features = features
            .iter()
            .filter_map(|f| {
                let mut shapes = Shapes::default();
                shapes.add(f.geometry.as_ref()?);
                if shapes.is_empty() {
                    return None;
                }
                for ring in shapes.polygons.iter().map(|p| &p[0]) {
                    ring.0.iter().for_each(&mut grow);
                    spans.push(x_range(&ring.0));
                }
                for line in &shapes.lines {
                    line.0.iter().for_each(&mut grow);
                    spans.push(x_range(&line.0));
                }
                for point in &shapes.points {
                    grow(point);
                    spans.push((point.x, point.x));
                }
                Some(LayerFeature {
                    paint: style.paint_for(f),
                    shapes,
                })
            })
            .collect();
        Layer {
            features,
            style: style.clone(),
            bounds,
            x_span: narrowest_x_span(spans),
        }
    }

    /// The extent of the drawn features in unit Mercator coordinates.
    pub fn bounds(&self) -> Option<UnitRect> {
        self.bounds
    }

    /// The narrowest band of unit x (longitude) that holds every drawn part,
    /// `(west, east)`, each in `[0, 1]`: `west > east` when the band crosses the
    /// antimeridian (as RFC 7946 writes such a bounding box), `(0, 1)` when the
    /// parts go round the world.
    pub fn x_span(&self) -> Option<(f64, f64)> {
        self.x_span
    }

    pub fn len(&self) -> usize {
        self.features.len()
    }

    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    pub fn style(&self) -> &Style {
        &self.style
    }
}

/// Which part of a feature an index entry stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Part {
    Polygon(u32),
    /// Segments `start..end` of line `line`.
    Line {
        line: u32,
        start: u32,
        end: u32,
    },
    Point(u32),
}

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    envelope: AABB<[f64; 2]>,
    pub feature: u32,
    pub part: Part,
}

impl RTreeObject for Entry {
    type Envelope = AABB<[f64; 2]>;
    fn envelope(&self) -> Self::Envelope {
        self.envelope
    }
}

/// Drawing sizes at one zoom, in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Sizes {
    pub outline_width: f32,
    pub line_width: f32,
    pub point_radius: f32,
}

impl Sizes {
    /// The drawing sizes of `style` at zoom `z` with tiles of `tile_size`, and
    /// how far drawing reaches beyond the geometry, in whole pixels.
    pub(crate) fn at(style: &Style, z: u8, tile_size: u32) -> (Sizes, u32) {
        // Sizes are given for 256 px tiles; larger tiles scale them up.
        let k = tile_size as f32 / 256.0;
        let sizes = Sizes {
            outline_width: style.polygon.outline_width.at(z) * k,
            line_width: style.line.width.at(z) * k,
            point_radius: style.point.radius.at(z) * k,
        };
        let reach = (sizes.outline_width.max(sizes.line_width) * 2.0)
            .max(sizes.point_radius)
            .ceil() as u32
            + 2;
        (sizes, reach)
    }
}

/// A layer prepared for one zoom: pixel coordinates (world pixels at this zoom),
/// simplified and snapped, with a spatial index.
#[derive(Debug)]
pub struct ZoomLayer {
    pub(crate) z: u8,
    pub(crate) tile_size: u32,
    pub(crate) features: Vec<LayerFeature>,
    pub(crate) index: RTree<Entry>,
    pub(crate) sizes: Sizes,
    /// How far drawing reaches beyond geometry, in whole pixels.
    pub(crate) reach: u32,
}

/// Splits every segment where it crosses a tile boundary (multiples of `cell`
/// world pixels), the new vertices snapped like the others. Every segment then lies
/// within one tile, so a rasterizer never has to cut a segment that crosses a
/// visible tile: the tile comes out the same whatever canvas it is drawn on.
pub(crate) fn split_at_grid(ls: LineString<f64>, cell: f64) -> LineString<f64> {
    let mut out: Vec<Coord<f64>> = Vec::with_capacity(ls.0.len() * 2);
    let mut ts: Vec<f64> = Vec::new();
    for w in ls.0.windows(2) {
        let (a, b) = (w[0], w[1]);
        out.push(a);
        ts.clear();
        for (p, q) in [(a.x, b.x), (a.y, b.y)] {
            let (lo, hi) = (p.min(q), p.max(q));
            let mut k = (lo / cell).floor() + 1.0;
            while k * cell < hi {
                ts.push((k * cell - p) / (q - p));
                k += 1.0;
            }
        }
        ts.sort_by(f64::total_cmp);
        for &t in &ts {
            let c = Coord {
                x: snap(a.x + t * (b.x - a.x)),
                y: snap(a.y + t * (b.y - a.y)),
            };
            if out.last() != Some(&c) && c != b {
                out.push(c);
            }
        }
    }
    if let Some(&last) = ls.0.last()
        && out.last() != Some(&last)
    {
        out.push(last);
    }
    LineString(out)
}

/// Simplifies a line or ring to within `eps` pixels: first drops points closer
/// than `eps` to the last point kept (cheap, and at low zooms most points go),
/// then Ramer–Douglas–Peucker. The first and last points always stay.
fn simplify(ls: &LineString<f64>, eps: f64) -> LineString<f64> {
    let pts = &ls.0;
    if pts.len() <= 2 {
        return ls.clone();
    }
    let mut kept: Vec<Coord<f64>> = Vec::with_capacity(pts.len());
    kept.push(pts[0]);
    let eps2 = eps * eps;
    for &p in &pts[1..pts.len() - 1] {
        let last = kept[kept.len() - 1];
        if (p.x - last.x).powi(2) + (p.y - last.y).powi(2) >= eps2 {
            kept.push(p);
        }
    }
    kept.push(pts[pts.len() - 1]);
    LineString(douglas_peucker(&kept, eps))
}

/// Ramer–Douglas–Peucker with an explicit stack (geo's recursive version copies
/// its index lists at every level, which dominates preparation on long lines).
fn douglas_peucker(pts: &[Coord<f64>], eps: f64) -> Vec<Coord<f64>> {
    let n = pts.len();
    if n <= 2 {
        return pts.to_vec();
    }
    let mut keep = vec![false; n];
    keep[0] = true;
    keep[n - 1] = true;
    let eps2 = eps * eps;
    let mut stack = vec![(0usize, n - 1)];
    while let Some((first, last)) = stack.pop() {
        let (a, b) = (pts[first], pts[last]);
        let (dx, dy) = (b.x - a.x, b.y - a.y);
        let len2 = dx * dx + dy * dy;
        let (mut worst, mut worst_d2) = (0, -1.0);
        for (i, p) in pts.iter().enumerate().take(last).skip(first + 1) {
            // Squared distance from p to the segment a-b.
            let d2 = if len2 == 0.0 {
                (p.x - a.x).powi(2) + (p.y - a.y).powi(2)
            } else {
                let t = (((p.x - a.x) * dx + (p.y - a.y) * dy) / len2).clamp(0.0, 1.0);
                (p.x - a.x - t * dx).powi(2) + (p.y - a.y - t * dy).powi(2)
            };
            if d2 > worst_d2 {
                (worst, worst_d2) = (i, d2);
            }
        }
        if worst_d2 > eps2 {
            keep[worst] = true;
            stack.push((first, worst));
            stack.push((worst, last));
        }
    }
    pts.iter()
        .zip(&keep)
        .filter(|&(_, &k)| k)
        .map(|(p, _)| *p)
        .collect()
}

pub(crate) fn snap(v: f64) -> f64 {
    (v * QUANTUM).round() / QUANTUM
}

fn to_pixels(ls: &LineString<f64>, scale: f64) -> LineString<f64> {
    ls.0.iter()
        .map(|c| Coord {
            x: c.x * scale,
            y: c.y * scale,
        })
        .collect()
}

fn snapped(ls: &LineString<f64>) -> LineString<f64> {
    let mut out: Vec<Coord<f64>> = Vec::with_capacity(ls.0.len());
    for c in &ls.0 {
        let c = Coord {
            x: snap(c.x),
            y: snap(c.y),
        };
        if out.last() != Some(&c) {
            out.push(c);
        }
    }
    LineString(out)
}

fn envelope(coords: &[Coord<f64>]) -> AABB<[f64; 2]> {
    AABB::from_points(coords.iter().map(|c| [c.x, c.y]).collect::<Vec<_>>().iter())
}

impl ZoomLayer {
    /// Prepares `layer` for zoom `z` with tiles of `tile_size` pixels.
    pub fn new(layer: &Layer, z: u8, tile_size: u32) -> ZoomLayer {
        let scale = f64::from(tile_size) * (1u64 << z) as f64;
        let (sizes, reach) = Sizes::at(&layer.style, z, tile_size);
        let eps = SIMPLIFY_PX;
        let cell = f64::from(tile_size);
        let mut entries = Vec::new();
        let features: Vec<LayerFeature> = layer
            .features
            .iter()
            .enumerate()
            .map(|(fi, f)| {
                let fi = fi as u32;
                let mut shapes = Shapes::default();
                for poly in &f.shapes.polygons {
                    let ring_px = |ring: &LineString<f64>| {
                        let px = to_pixels(ring, scale);
                        let simple = split_at_grid(snapped(&simplify(&px, eps)), cell);
                        if simple.0.len() >= 4 {
                            return Some(simple);
                        }
                        // Simplification collapsed a tiny ring: keep it as it is.
                        let full = split_at_grid(snapped(&px), cell);
                        (full.0.len() >= 4).then_some(full)
                    };
                    // A polygon whose exterior vanishes at this zoom draws nothing.
                    let Some(exterior) = ring_px(&poly[0]) else {
                        continue;
                    };
                    let rings: Vec<LineString<f64>> = std::iter::once(exterior)
                        .chain(poly[1..].iter().filter_map(ring_px))
                        .collect();
                    entries.push(Entry {
                        envelope: envelope(&rings[0].0),
                        feature: fi,
                        part: Part::Polygon(shapes.polygons.len() as u32),
                    });
                    shapes.polygons.push(rings);
                }
                for line in &f.shapes.lines {
                    let mut simple =
                        split_at_grid(snapped(&simplify(&to_pixels(line, scale), eps)), cell);
                    if simple.0.len() == 1 {
                        // A line shorter than the snapping grid: keep it as a dot-sized line.
                        simple.0.push(simple.0[0]);
                    }
                    let li = shapes.lines.len() as u32;
                    let segments = simple.0.len() - 1;
                    for start in (0..segments).step_by(LINE_CHUNK) {
                        let end = (start + LINE_CHUNK).min(segments);
                        entries.push(Entry {
                            envelope: envelope(&simple.0[start..=end]),
                            feature: fi,
                            part: Part::Line {
                                line: li,
                                start: start as u32,
                                end: end as u32,
                            },
                        });
                    }
                    shapes.lines.push(simple);
                }
                for p in &f.shapes.points {
                    let c = Coord {
                        x: snap(p.x * scale),
                        y: snap(p.y * scale),
                    };
                    entries.push(Entry {
                        envelope: AABB::from_point([c.x, c.y]),
                        feature: fi,
                        part: Part::Point(shapes.points.len() as u32),
                    });
                    shapes.points.push(c);
                }
                LayerFeature {
                    paint: f.paint,
                    shapes,
                }
            })
            .collect();
        ZoomLayer {
            z,
            tile_size,
            features,
            index: RTree::bulk_load(entries),
            sizes,
            reach,
        }
    }

    pub fn zoom(&self) -> u8 {
        self.z
    }

    pub fn tile_size(&self) -> u32 {
        self.tile_size
    }

    /// Index entries whose bounds meet `rect` (world pixels), in drawing order.
    pub(crate) fn entries_in(&self, rect: &Rect) -> Vec<&Entry> {
        let env = AABB::from_corners([rect.min_x, rect.min_y], [rect.max_x, rect.max_y]);
        let mut hits: Vec<&Entry> = self.index.locate_in_envelope_intersecting(&env).collect();
        hits.sort_unstable_by_key(|e| (e.feature, e.part));
        hits
    }

    /// The metatiles of nominal size `size` that some feature may draw into (its
    /// index bounds come near), sorted. Every other metatile is transparent and
    /// needs no drawing, so a pyramid that leaves empty tiles out costs in
    /// proportion to its data, not to the area of the world.
    pub fn metatiles_touched(&self, size: u32) -> Vec<MetaTile> {
        let n = MetaTile::side(self.z, size);
        let mut cells = std::collections::BTreeSet::new();
        for (rows, cols) in self.entry_cells(size) {
            for row in rows {
                for col in cols.clone() {
                    cells.insert((row, col));
                }
            }
        }
        cells
            .into_iter()
            .map(|(row, col)| MetaTile {
                z: self.z,
                x: col * n,
                y: row * n,
                n,
            })
            .collect()
    }

    /// The metatile cells all index entries come near, counted once per
    /// entry: the work [`ZoomLayer::metatiles_touched`] would do, and at least
    /// as many as the metatiles it finds. Cheap: nothing is enumerated.
    pub fn metatile_cells_bound(&self, size: u32) -> u64 {
        self.entry_cells(size)
            .map(|(rows, cols)| {
                let len = |r: &std::ops::RangeInclusive<u32>| u64::from(r.end() - r.start()) + 1;
                len(&rows) * len(&cols)
            })
            .fold(0u64, u64::saturating_add)
    }

    /// For each index entry, the rows and columns of metatiles of nominal size
    /// `size` its bounds come near (within twice the style's reach).
    fn entry_cells(
        &self,
        size: u32,
    ) -> impl Iterator<Item = (std::ops::RangeInclusive<u32>, std::ops::RangeInclusive<u32>)> + '_
    {
        let n = MetaTile::side(self.z, size);
        let span = f64::from(n) * f64::from(self.tile_size);
        let last = (crate::tile::tiles_per_side(self.z) / u64::from(n)) as i64 - 1;
        let pad = 2.0 * f64::from(self.reach);
        let cell = move |v: f64| ((v / span).floor() as i64).clamp(0, last) as u32;
        let world = span * (last + 1) as f64;
        self.index.iter().filter_map(move |e| {
            let (lo, hi) = (e.envelope.lower(), e.envelope.upper());
            if hi[0] + pad < 0.0 || hi[1] + pad < 0.0 {
                return None;
            }
            if lo[0] - pad > world || lo[1] - pad > world {
                return None;
            }
            Some((
                cell(lo[1] - pad)..=cell(hi[1] + pad),
                cell(lo[0] - pad)..=cell(hi[0] + pad),
            ))
        })
    }

    /// The world-pixel rectangle whose features can draw into `meta`.
    pub(crate) fn query_rect(&self, meta: MetaTile) -> Rect {
        let ts = f64::from(self.tile_size);
        let pad = 2.0 * f64::from(self.reach);
        Rect {
            min_x: f64::from(meta.x) * ts - pad,
            min_y: f64::from(meta.y) * ts - pad,
            max_x: f64::from(meta.x + meta.n) * ts + pad,
            max_y: f64::from(meta.y + meta.n) * ts + pad,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::Simplify;

    #[test]
    fn only_metatiles_near_features_are_touched() {
        let feature =
            |lon: f64, lat: f64| Feature::from_geometry(Geometry::Point(geo::Point::new(lon, lat)));
        let layer = Layer::new(
            &[feature(10.0, 10.0), feature(-120.0, 40.0)],
            &Style::default(),
        );
        let zl = ZoomLayer::new(&layer, 10, 256);
        let touched = zl.metatiles_touched(8);
        assert_eq!(touched.len(), 2, "{touched:?}");
        for t in &touched {
            let rect = zl.query_rect(*t);
            assert!(!zl.entries_in(&rect).is_empty(), "{t} has a feature");
        }
        // At zoom 0 the one metatile is the world.
        assert_eq!(ZoomLayer::new(&layer, 0, 256).metatiles_touched(8).len(), 1);
    }

    #[test]
    fn the_x_span_is_the_narrowest_band_and_crosses_the_antimeridian_when_that_is_narrower() {
        let point =
            |lon: f64, lat: f64| Feature::from_geometry(Geometry::Point(geo::Point::new(lon, lat)));
        let box_at = |w: f64, e: f64| {
            Feature::from_geometry(Geometry::Polygon(geo::Polygon::new(
                LineString::from(vec![(w, 50.0), (e, 50.0), (e, 60.0), (w, 60.0), (w, 50.0)]),
                vec![],
            )))
        };
        let lon = |x: f64| x * 360.0 - 180.0;
        let span = |features: &[Feature]| {
            let (w, e) = Layer::new(features, &Style::default()).x_span().unwrap();
            ((lon(w) * 1e6).round() / 1e6, (lon(e) * 1e6).round() / 1e6)
        };
        // Alaska with the western Aleutians: the band crosses 180°.
        assert_eq!(
            span(&[box_at(-170.0, -130.0), box_at(172.0, 179.0)]),
            (172.0, -130.0)
        );
        // Europe and Japan: the narrower band stays inside -180..180.
        assert_eq!(
            span(&[point(-10.0, 50.0), point(140.0, 35.0)]),
            (-10.0, 140.0)
        );
        // A ring unwrapped across the antimeridian (170° to 190°).
        assert_eq!(span(&[box_at(170.0, -170.0)]), (170.0, -170.0));
        // Round the world.
        assert_eq!(
            span(&[
                box_at(-180.0, -60.0),
                box_at(-60.0, 60.0),
                box_at(60.0, 180.0)
            ]),
            (-180.0, 180.0)
        );
        assert_eq!(Layer::new(&[], &Style::default()).x_span(), None);
    }

    #[test]
    fn douglas_peucker_agrees_with_geo() {
        // A wiggly line: a sine wave with noise-like detail.
        let pts: Vec<Coord<f64>> = (0..2000)
            .map(|i| {
                let x = f64::from(i) * 0.1;
                Coord {
                    x,
                    y: (x * 0.7).sin() * 5.0 + (x * 13.0).sin() * 0.3,
                }
            })
            .collect();
        for eps in [0.05, 0.25, 1.0, 4.0] {
            let ours = douglas_peucker(&pts, eps);
            let theirs = LineString(pts.clone()).simplify(eps).0;
            assert_eq!(ours, theirs, "eps {eps}");
        }
    }
}
