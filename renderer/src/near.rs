//! Which tiles of a zoom a point or a line comes within some pixels of: the
//! tiles an edge can draw into (dirty tiles) or might at a deeper zoom (the
//! region planner's live tiles).

use geo::Coord;

use crate::clip::{Rect, segment_meets};

/// A zoom's grid of `side` x `side` tiles of `ts` world pixels, each tile
/// grown by `pad` pixels.
pub(crate) struct PaddedGrid {
    pub side: i64,
    pub ts: f64,
    pub pad: f64,
}

impl PaddedGrid {
    fn cell(&self, v: f64) -> i64 {
        (v / self.ts).floor() as i64
    }

    /// The tile's area grown by the pad.
    fn rect(&self, col: i64, row: i64) -> Rect {
        let (x, y) = (col as f64 * self.ts, row as f64 * self.ts);
        Rect {
            min_x: x,
            min_y: y,
            max_x: x + self.ts,
            max_y: y + self.ts,
        }
        .grow(self.pad)
    }

    fn in_world(&self, col: i64, row: i64) -> bool {
        (0..self.side).contains(&col) && (0..self.side).contains(&row)
    }

    /// Calls `add(col, row)` for each tile of the world within the pad of `p`.
    pub fn point(&self, p: Coord<f64>, add: &mut impl FnMut(i64, i64)) {
        for row in self.cell(p.y - self.pad)..=self.cell(p.y + self.pad) {
            for col in self.cell(p.x - self.pad)..=self.cell(p.x + self.pad) {
                if self.in_world(col, row) && self.rect(col, row).contains(p) {
                    add(col, row);
                }
            }
        }
    }

    /// Calls `add(col, row)` for each tile of the world within the pad of the
    /// line through `points` (a tile may come more than once). Each segment is
    /// walked in steps of at most a tile, and each step tests the few tiles
    /// round it, so a long diagonal costs its length, not its bounding box.
    pub fn line(&self, points: &[Coord<f64>], add: &mut impl FnMut(i64, i64)) {
        if let [only] = points {
            self.point(*only, add);
        }
        let world = self.side as f64 * self.ts;
        for w in points.windows(2) {
            let (a, b) = (w[0], w[1]);
            if a.x.max(b.x) + self.pad < 0.0
                || a.y.max(b.y) + self.pad < 0.0
                || a.x.min(b.x) - self.pad > world
                || a.y.min(b.y) - self.pad > world
            {
                continue;
            }
            let steps = ((b.x - a.x).abs().max((b.y - a.y).abs()) / self.ts)
                .ceil()
                .max(1.0) as u64;
            let mut from = a;
            for i in 1..=steps {
                let to = if i == steps {
                    b
                } else {
                    let t = i as f64 / steps as f64;
                    Coord {
                        x: a.x + t * (b.x - a.x),
                        y: a.y + t * (b.y - a.y),
                    }
                };
                for row in
                    self.cell(from.y.min(to.y) - self.pad)..=self.cell(from.y.max(to.y) + self.pad)
                {
                    for col in self.cell(from.x.min(to.x) - self.pad)
                        ..=self.cell(from.x.max(to.x) + self.pad)
                    {
                        if self.in_world(col, row) && segment_meets(from, to, &self.rect(col, row))
                        {
                            add(col, row);
                        }
                    }
                }
                from = to;
            }
        }
    }
}
