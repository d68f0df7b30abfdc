//! The tiles a geometry really touches (not merely its bounding box).

use std::collections::BTreeSet;

use geo::{Coord, Geometry, LineString, Polygon};

use crate::tile::{TileId, lonlat_to_unit, tiles_per_side};

/// The tiles at zoom `z` that a geometry (in degrees) touches: the cells its lines
/// and polygon edges pass through, and the cells inside its polygons. Sorted by
/// row, then column.
pub fn tiles_covering(geometry: &Geometry<f64>, z: u8) -> Vec<TileId> {
    let mut grid = Grid {
        n: tiles_per_side(z) as f64,
        z,
        cells: BTreeSet::new(),
    };
    grid.add(geometry);
    grid.cells
        .into_iter()
        .map(|(y, x)| TileId { z, x, y })
        .collect()
}

struct Grid {
    n: f64,
    z: u8,
    /// (row, column)
    cells: BTreeSet<(u32, u32)>,
}

impl Grid {
    fn to_grid(&self, c: Coord<f64>) -> Coord<f64> {
        let (x, y) = lonlat_to_unit(c.x, c.y);
        Coord {
            x: x * self.n,
            y: y * self.n,
        }
    }

    fn clamp(&self, v: f64) -> u32 {
        (v.floor().max(0.0) as u64).min(tiles_per_side(self.z) - 1) as u32
    }

    fn point(&mut self, p: Coord<f64>) {
        let cell = (self.clamp(p.y), self.clamp(p.x));
        self.cells.insert(cell);
    }

    fn add(&mut self, g: &Geometry<f64>) {
        match g {
            Geometry::Point(p) => {
                let p = self.to_grid(p.0);
                self.point(p);
            }
            Geometry::MultiPoint(mp) => mp.0.iter().for_each(|p| self.add(&Geometry::Point(*p))),
            Geometry::Line(l) => self.line(&LineString(vec![l.start, l.end])),
            Geometry::LineString(ls) => self.line(ls),
            Geometry::MultiLineString(mls) => mls.0.iter().for_each(|l| self.line(l)),
            Geometry::Polygon(p) => self.polygon(p),
            Geometry::MultiPolygon(mp) => mp.0.iter().for_each(|p| self.polygon(p)),
            Geometry::Rect(r) => self.polygon(&r.to_polygon()),
            Geometry::Triangle(t) => self.polygon(&t.to_polygon()),
            Geometry::GeometryCollection(gc) => gc.0.iter().for_each(|g| self.add(g)),
        }
    }

    fn line(&mut self, ls: &LineString<f64>) {
        let pts: Vec<Coord<f64>> = ls.0.iter().map(|&c| self.to_grid(c)).collect();
        if let [only] = pts.as_slice() {
            self.point(*only);
        }
        for w in pts.windows(2) {
            self.segment(w[0], w[1]);
        }
    }

    /// Every cell a segment passes through (grid traversal).
    fn segment(&mut self, a: Coord<f64>, b: Coord<f64>) {
        let (mut cx, mut cy) = (self.clamp(a.x) as i64, self.clamp(a.y) as i64);
        let (ex, ey) = (self.clamp(b.x) as i64, self.clamp(b.y) as i64);
        let (dx, dy) = (b.x - a.x, b.y - a.y);
        let step_x: i64 = if dx > 0.0 { 1 } else { -1 };
        let step_y: i64 = if dy > 0.0 { 1 } else { -1 };
        let next_boundary = |c: i64, step: i64| if step > 0 { (c + 1) as f64 } else { c as f64 };
        let mut t_max_x = if dx != 0.0 {
            (next_boundary(cx, step_x) - a.x) / dx
        } else {
            f64::INFINITY
        };
        let mut t_max_y = if dy != 0.0 {
            (next_boundary(cy, step_y) - a.y) / dy
        } else {
            f64::INFINITY
        };
        let t_dx = if dx != 0.0 {
            (1.0 / dx).abs()
        } else {
            f64::INFINITY
        };
        let t_dy = if dy != 0.0 {
            (1.0 / dy).abs()
        } else {
            f64::INFINITY
        };
        self.cells.insert((cy as u32, cx as u32));
        // At most one step per crossed grid line, with a guard against rounding.
        let limit = (ex - cx).abs() + (ey - cy).abs() + 2;
        for _ in 0..limit {
            if cx == ex && cy == ey {
                break;
            }
            if t_max_x < t_max_y {
                cx += step_x;
                t_max_x += t_dx;
            } else {
                cy += step_y;
                t_max_y += t_dy;
            }
            let last = tiles_per_side(self.z) as i64 - 1;
            if !(0..=last).contains(&cx) || !(0..=last).contains(&cy) {
                break;
            }
            self.cells.insert((cy as u32, cx as u32));
        }
        self.cells.insert((ey as u32, ex as u32));
    }

    fn polygon(&mut self, p: &Polygon<f64>) {
        let rings: Vec<Vec<Coord<f64>>> = std::iter::once(p.exterior())
            .chain(p.interiors())
            .map(|r| r.0.iter().map(|&c| self.to_grid(c)).collect())
            .collect();
        // Edges.
        for ring in &rings {
            for w in ring.windows(2) {
                self.segment(w[0], w[1]);
            }
        }
        // Interior: cells whose centre is inside (even-odd over all rings).
        let (min_y, max_y) = rings[0]
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), c| {
                (lo.min(c.y), hi.max(c.y))
            });
        if !min_y.is_finite() {
            return;
        }
        let mut xs = Vec::new();
        for row in self.clamp(min_y)..=self.clamp(max_y) {
            let yc = f64::from(row) + 0.5;
            xs.clear();
            for ring in &rings {
                for w in ring.windows(2) {
                    let (a, b) = (w[0], w[1]);
                    if (a.y <= yc && yc < b.y) || (b.y <= yc && yc < a.y) {
                        xs.push(a.x + (yc - a.y) / (b.y - a.y) * (b.x - a.x));
                    }
                }
            }
            xs.sort_by(f64::total_cmp);
            for pair in xs.chunks_exact(2) {
                // Columns whose centres lie between the two crossings.
                let first = (pair[0] - 0.5).ceil().max(0.0);
                let last = (pair[1] - 0.5).floor();
                if last < first {
                    continue;
                }
                for col in self.clamp(first)..=self.clamp(last) {
                    self.cells.insert((row, col));
                }
            }
        }
    }
}
