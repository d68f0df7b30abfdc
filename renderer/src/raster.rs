//! Drawing metatiles with tiny-skia and slicing them into tiles.

use geo::Coord;
use tiny_skia::{FillRule, Paint, PathBuilder, Pixmap, PremultipliedColorU8, Transform};

use crate::clip::{Rect, clip_ring, segments_meeting};
use crate::metatile::MetaTile;
use crate::prepare::{Part, ZoomLayer};
use crate::stroke::stroke_polygons;
use crate::style::Rgba;
use crate::tile::TileId;

/// One tile's pixels: either one colour all over, or straight (not premultiplied)
/// RGBA rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TileImage {
    Uniform(Rgba),
    Pixels(Vec<u8>),
}

impl TileImage {
    pub fn is_empty(&self) -> bool {
        matches!(self, TileImage::Uniform(c) if c.is_invisible())
    }
}

/// A drawn metatile. Tiles are cut from it with [`RenderedMetaTile::tile`].
#[derive(Debug)]
pub struct RenderedMetaTile {
    meta: MetaTile,
    tile_size: u32,
    /// Border around the metatile drawn but not shown, in pixels.
    margin: u32,
    /// `None` when no feature reaches the metatile: every tile is transparent.
    pixmap: Option<Pixmap>,
    /// Tiles some drawn edge comes near; the others are one colour all over.
    touched: Touched,
}

impl RenderedMetaTile {
    pub fn meta(&self) -> MetaTile {
        self.meta
    }

    /// Whether no feature reaches this metatile (every tile is transparent).
    pub fn is_blank(&self) -> bool {
        self.pixmap.is_none()
    }

    /// The pixels of tile `t`, which must lie in this metatile.
    pub fn tile(&self, t: TileId) -> TileImage {
        assert!(
            self.meta.contains(t),
            "tile {t} is not in metatile {}",
            self.meta
        );
        let Some(pixmap) = &self.pixmap else {
            return TileImage::Uniform(Rgba([0, 0, 0, 0]));
        };
        let ts = self.tile_size as usize;
        let stride = pixmap.width() as usize * 4;
        let x0 = (self.margin + (t.x - self.meta.x) * self.tile_size) as usize;
        let y0 = (self.margin + (t.y - self.meta.y) * self.tile_size) as usize;
        let data = pixmap.data();
        let row = |r: usize| {
            let start = (y0 + r) * stride + x0 * 4;
            &data[start..start + ts * 4]
        };
        let first: [u8; 4] = row(0)[..4].try_into().expect("4 bytes");
        if !self.touched.get(t.x - self.meta.x, t.y - self.meta.y) {
            return TileImage::Uniform(demultiply(first));
        }
        let reference = first.repeat(ts);
        if (0..ts).all(|r| row(r) == reference.as_slice()) {
            return TileImage::Uniform(demultiply(first));
        }
        let mut out = Vec::with_capacity(ts * ts * 4);
        for r in 0..ts {
            out.extend_from_slice(row(r));
        }
        // Premultiplied and straight colours agree where alpha is 0 or 255.
        for px in out.chunks_exact_mut(4) {
            if px[3] != 255 && px[3] != 0 {
                let c = demultiply([px[0], px[1], px[2], px[3]]);
                px.copy_from_slice(&c.0);
            }
        }
        TileImage::Pixels(out)
    }
}

fn demultiply(p: [u8; 4]) -> Rgba {
    match p[3] {
        255 => Rgba(p),
        0 => Rgba([0, 0, 0, 0]),
        a => {
            let c = PremultipliedColorU8::from_rgba(p[0], p[1], p[2], a)
                .map(|c| c.demultiply())
                .expect("premultiplied pixel");
            Rgba([c.red(), c.green(), c.blue(), c.alpha()])
        }
    }
}

fn paint_of(c: Rgba) -> Paint<'static> {
    let mut paint = Paint::default();
    let [r, g, b, a] = c.0;
    paint.set_color_rgba8(r, g, b, a);
    paint.anti_alias = true;
    paint
}

/// Draws metatile `meta` of the prepared zoom layer.
pub fn render_metatile(layer: &ZoomLayer, meta: MetaTile) -> RenderedMetaTile {
    assert_eq!(
        meta.z, layer.z,
        "metatile {meta} is not at the layer's zoom {}",
        layer.z
    );
    let ts = layer.tile_size;
    let margin = layer.reach;
    let side = meta.n * ts;
    let ox = f64::from(meta.x) * f64::from(ts) - f64::from(margin);
    let oy = f64::from(meta.y) * f64::from(ts) - f64::from(margin);
    let canvas = Rect {
        min_x: ox,
        min_y: oy,
        max_x: ox + f64::from(side + 2 * margin),
        max_y: oy + f64::from(side + 2 * margin),
    };
    let mut touched = Touched::new(meta, ts);
    let reach = f64::from(layer.reach);
    let entries = layer.entries_in(&layer.query_rect(meta));
    if entries.is_empty() {
        return RenderedMetaTile {
            meta,
            tile_size: ts,
            margin,
            pixmap: None,
            touched,
        };
    }
    let mut pixmap = Pixmap::new(side + 2 * margin, side + 2 * margin).expect("metatile size");
    // Fills are clipped just outside the canvas; strokes far enough out that their
    // cut ends never show.
    let fill_rect = canvas.grow(1.0);
    let stroke_rect = canvas.grow(reach + 1.0);
    let local = |c: Coord<f64>| ((c.x - ox) as f32, (c.y - oy) as f32);
    let sizes = layer.sizes;
    let mut pieces: Vec<Vec<Coord<f64>>> = Vec::new();

    let mut i = 0;
    while i < entries.len() {
        let fi = entries[i].feature;
        let mut j = i;
        while j < entries.len() && entries[j].feature == fi {
            j += 1;
        }
        let feature = &layer.features[fi as usize];
        let paint = feature.paint;
        let shapes = &feature.shapes;
        let parts = &entries[i..j];
        i = j;

        let polygons: Vec<u32> = parts
            .iter()
            .filter_map(|e| match e.part {
                Part::Polygon(p) => Some(p),
                _ => None,
            })
            .collect();
        if !polygons.is_empty() {
            if let Some(fill) = paint.fill {
                let mut pb = PathBuilder::new();
                for &p in &polygons {
                    for ring in &shapes.polygons[p as usize] {
                        let clipped = clip_ring(&ring.0, &fill_rect);
                        if clipped.len() < 3 {
                            continue;
                        }
                        touched.ring(&clipped, AA_REACH);
                        push_ring(&mut pb, &clipped, &local);
                    }
                }
                fill_built(&mut pixmap, pb, fill, FillRule::EvenOdd);
            }
            if let (Some(outline), true) = (paint.outline, sizes.outline_width > 0.0) {
                pieces.clear();
                for &p in &polygons {
                    for ring in &shapes.polygons[p as usize] {
                        clip_ring_outline(&ring.0, &stroke_rect, &mut pieces);
                    }
                }
                touched.pieces(&pieces, stroke_reach(sizes.outline_width));
                stroke_pieces(
                    &mut pixmap,
                    &pieces,
                    &local,
                    outline,
                    sizes.outline_width,
                    f64::from(ts),
                );
            }
        }

        if let Some(color) = paint.line.filter(|_| sizes.line_width > 0.0) {
            pieces.clear();
            let mut k = 0;
            while k < parts.len() {
                let Part::Line {
                    line,
                    start,
                    mut end,
                } = parts[k].part
                else {
                    k += 1;
                    continue;
                };
                // Merge consecutive chunks of one line, so joins between them are drawn.
                k += 1;
                while k < parts.len() {
                    match parts[k].part {
                        Part::Line {
                            line: l2,
                            start: s2,
                            end: e2,
                        } if l2 == line && s2 == end => {
                            end = e2;
                            k += 1;
                        }
                        _ => break,
                    }
                }
                let coords = &shapes.lines[line as usize].0[start as usize..=end as usize];
                segments_meeting(coords, &stroke_rect, &mut pieces);
            }
            touched.pieces(&pieces, stroke_reach(sizes.line_width));
            stroke_pieces(
                &mut pixmap,
                &pieces,
                &local,
                color,
                sizes.line_width,
                f64::from(ts),
            );
        }

        if let Some(color) = paint.point.filter(|_| sizes.point_radius > 0.0) {
            let r = sizes.point_radius;
            let mut pb = PathBuilder::new();
            for e in parts {
                if let Part::Point(p) = e.part {
                    let c = shapes.points[p as usize];
                    if canvas.grow(f64::from(r)).contains(c) {
                        touched.around(c, f64::from(r) + AA_REACH);
                        let (x, y) = local(c);
                        pb.push_circle(x, y, r);
                    }
                }
            }
            fill_built(&mut pixmap, pb, color, FillRule::Winding);
        }
    }
    RenderedMetaTile {
        meta,
        tile_size: ts,
        margin,
        pixmap: Some(pixmap),
        touched,
    }
}

/// The parts of a closed ring's outline to stroke near `rect`. A ring wholly kept
/// stays closed; a ring partly kept is walked from a segment that is dropped, so
/// no kept vertex loses its join.
fn clip_ring_outline(ring: &[Coord<f64>], rect: &Rect, out: &mut Vec<Vec<Coord<f64>>>) {
    let n = ring.len() - 1;
    let Some(start) = (0..n).find(|&i| !crate::clip::segment_meets(ring[i], ring[i + 1], rect))
    else {
        out.push(ring.to_vec());
        return;
    };
    // The ring rotated to begin after a dropped segment, closed again.
    let open = &ring[..n];
    let first = (start + 1) % n;
    let rotated: Vec<Coord<f64>> = open[first..]
        .iter()
        .chain(&open[..first])
        .chain(std::iter::once(&open[first]))
        .copied()
        .collect();
    segments_meeting(&rotated, rect, out);
}

fn stroke_pieces(
    pixmap: &mut Pixmap,
    pieces: &[Vec<Coord<f64>>],
    local: &impl Fn(Coord<f64>) -> (f32, f32),
    color: Rgba,
    width: f32,
    cell: f64,
) {
    let mut pb = PathBuilder::new();
    for poly in stroke_polygons(pieces, f64::from(width) / 2.0, cell) {
        push_ring(&mut pb, &poly, local);
    }
    fill_built(pixmap, pb, color, FillRule::Winding);
}

/// Adds a closed ring (given without its repeated last point) to a path.
fn push_ring(pb: &mut PathBuilder, ring: &[Coord<f64>], local: &impl Fn(Coord<f64>) -> (f32, f32)) {
    let (x, y) = local(ring[0]);
    pb.move_to(x, y);
    for &c in &ring[1..] {
        let (x, y) = local(c);
        pb.line_to(x, y);
    }
    pb.close();
}

/// Fills the path built so far, if any, in one colour.
/// The colour of a pixel well inside the fills `fills` (drawn in that order),
/// exactly as [`render_metatile`] composites them there.
pub(crate) fn interior_colour(fills: &[Rgba]) -> Rgba {
    let mut pixmap = Pixmap::new(4, 4).expect("a 4x4 pixmap");
    for &fill in fills {
        let mut pb = PathBuilder::new();
        pb.push_rect(tiny_skia::Rect::from_xywh(-4.0, -4.0, 12.0, 12.0).expect("a rect"));
        fill_built(&mut pixmap, pb, fill, FillRule::EvenOdd);
    }
    let p = pixmap.pixel(1, 1).expect("inside");
    demultiply([p.red(), p.green(), p.blue(), p.alpha()])
}

fn fill_built(pixmap: &mut Pixmap, pb: PathBuilder, color: Rgba, rule: FillRule) {
    if let Some(path) = pb.finish() {
        pixmap.fill_path(&path, &paint_of(color), rule, Transform::identity(), None);
    }
}

impl RenderedMetaTile {
    /// Like [`RenderedMetaTile::tile`], but always scanning every pixel.
    #[cfg(test)]
    fn tile_scanned(&self, t: TileId) -> TileImage {
        let mut all = self.touched.clone();
        all.cells.iter_mut().for_each(|c| *c = true);
        let full = RenderedMetaTile {
            meta: self.meta,
            tile_size: self.tile_size,
            margin: self.margin,
            pixmap: self.pixmap.clone(),
            touched: all,
        };
        full.tile(t)
    }
}

/// How far anti-aliasing spreads beyond an edge, in pixels (with room to spare).
const AA_REACH: f64 = 1.5;

/// How far a stroke of `width` pixels reaches beyond its centre line, miter joins
/// (limit 4) and anti-aliasing included.
fn stroke_reach(width: f32) -> f64 {
    f64::from(width) * 2.0 + AA_REACH
}

/// Which tiles of a metatile a drawn edge comes near. A tile no edge comes near is
/// one colour all over (inside or outside every shape), so it needs no pixel scan.
#[derive(Clone, Debug)]
struct Touched {
    meta: MetaTile,
    ts: f64,
    cells: Vec<bool>,
}

impl Touched {
    fn new(meta: MetaTile, tile_size: u32) -> Self {
        Touched {
            meta,
            ts: f64::from(tile_size),
            cells: vec![false; (meta.n * meta.n) as usize],
        }
    }

    fn get(&self, dx: u32, dy: u32) -> bool {
        self.cells[(dy * self.meta.n + dx) as usize]
    }

    /// The tile rectangle of column `dx`, row `dy` in world pixels, grown by `pad`.
    fn cell_rect(&self, dx: i64, dy: i64, pad: f64) -> Rect {
        let x = (f64::from(self.meta.x) + dx as f64) * self.ts;
        let y = (f64::from(self.meta.y) + dy as f64) * self.ts;
        Rect {
            min_x: x,
            min_y: y,
            max_x: x + self.ts,
            max_y: y + self.ts,
        }
        .grow(pad)
    }

    /// The range of tile columns or rows `[lo, hi]` (world pixels) reaches.
    fn span(&self, lo: f64, hi: f64, origin: u32) -> Option<(i64, i64)> {
        let n = i64::from(self.meta.n);
        let a = ((lo / self.ts).floor() as i64 - i64::from(origin)).max(0);
        let b = ((hi / self.ts).floor() as i64 - i64::from(origin)).min(n - 1);
        (a <= b).then_some((a, b))
    }

    fn segment(&mut self, a: Coord<f64>, b: Coord<f64>, pad: f64) {
        let Some((x0, x1)) = self.span(a.x.min(b.x) - pad, a.x.max(b.x) + pad, self.meta.x) else {
            return;
        };
        let Some((y0, y1)) = self.span(a.y.min(b.y) - pad, a.y.max(b.y) + pad, self.meta.y) else {
            return;
        };
        let few = (x1 - x0 + 1) * (y1 - y0 + 1) <= 2;
        for dy in y0..=y1 {
            for dx in x0..=x1 {
                let i = (dy * i64::from(self.meta.n) + dx) as usize;
                if !self.cells[i]
                    && (few || crate::clip::segment_meets(a, b, &self.cell_rect(dx, dy, pad)))
                {
                    self.cells[i] = true;
                }
            }
        }
    }

    /// A closed ring given without its repeated last point.
    fn ring(&mut self, ring: &[Coord<f64>], pad: f64) {
        for i in 0..ring.len() {
            self.segment(ring[i], ring[(i + 1) % ring.len()], pad);
        }
    }

    fn pieces(&mut self, pieces: &[Vec<Coord<f64>>], pad: f64) {
        for piece in pieces {
            for w in piece.windows(2) {
                self.segment(w[0], w[1], pad);
            }
        }
    }

    fn around(&mut self, c: Coord<f64>, pad: f64) {
        self.segment(c, c, pad);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Layer, Style, read_geojson};

    #[test]
    fn tiles_no_edge_comes_near_are_truly_uniform() {
        let file = std::fs::File::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../data/ne_110m_countries.geojson"
        ))
        .expect("sample data");
        let features = read_geojson(file, &Default::default())
            .expect("valid")
            .features;
        let layer = Layer::new(&features, &Style::default());
        let mut skipped_scans = 0;
        for z in 0..=4 {
            let zl = ZoomLayer::new(&layer, z, 256);
            for meta in MetaTile::all(z, 4) {
                let r = render_metatile(&zl, meta);
                for t in meta.tiles() {
                    assert_eq!(r.tile(t), r.tile_scanned(t), "tile {t}");
                    if !r.is_blank() && !r.touched.get(t.x - meta.x, t.y - meta.y) {
                        skipped_scans += 1;
                    }
                }
            }
        }
        assert!(
            skipped_scans > 10,
            "only {skipped_scans} tiles were known uniform without a scan"
        );
    }
}
