//! Which tiles a layer's features can draw into, tile by tile: what an edit of
//! those features makes dirty.

use std::collections::{BTreeSet, HashMap};

use geo::{Coord, LineString};

use crate::near::PaddedGrid;
use crate::prepare::ZoomLayer;
use crate::tile::{TileId, tiles_per_side};

impl ZoomLayer {
    /// The tiles some feature of this layer can draw into: those within the
    /// layer's reach (its widest stroke or point, with anti-aliasing) of a line,
    /// a polygon edge or a point, and those whose centre is inside a polygon.
    /// The geometry is the prepared one (simplified and snapped as it is drawn),
    /// so a layer of just the features an edit changed, before and after, gives
    /// exactly the tiles whose pixels the edit can change.
    pub fn tiles_touched(&self) -> BTreeSet<TileId> {
        self.touched(None)
    }

    /// [`ZoomLayer::tiles_touched`], with only those inside a polygon that are
    /// among `among`: the tiles near an edge, line or point, and of the rest
    /// (tiles inside, which [`crate::RegionPlanner`] leaves to regions) those
    /// in `among`, such as the tiles a plan draws. It costs in proportion to
    /// the edges and to `among`, never to the polygons' area.
    pub fn tiles_touched_among(&self, among: &BTreeSet<TileId>) -> BTreeSet<TileId> {
        let mut rows: HashMap<i64, Vec<i64>> = HashMap::new();
        for t in among.iter().filter(|t| t.z == self.z) {
            rows.entry(i64::from(t.y)).or_default().push(i64::from(t.x));
        }
        rows.values_mut().for_each(|cols| cols.sort_unstable());
        self.touched(Some(rows))
    }

    fn touched(&self, among: Option<HashMap<i64, Vec<i64>>>) -> BTreeSet<TileId> {
        let mut cells = Cells {
            z: self.z,
            side: tiles_per_side(self.z) as i64,
            ts: f64::from(self.tile_size),
            pad: f64::from(self.reach),
            out: BTreeSet::new(),
            among,
        };
        for f in &self.features {
            for rings in &f.shapes.polygons {
                rings.iter().for_each(|r| cells.line(r));
                cells.interior(rings);
            }
            f.shapes.lines.iter().for_each(|l| cells.line(l));
            f.shapes.points.iter().for_each(|p| cells.point(*p));
        }
        cells.out
    }
}

struct Cells {
    z: u8,
    side: i64,
    ts: f64,
    pad: f64,
    out: BTreeSet<TileId>,
    /// Columns by row: the only tiles inside polygons to add, when given.
    among: Option<HashMap<i64, Vec<i64>>>,
}

impl Cells {
    fn add(&mut self, col: i64, row: i64) {
        if (0..self.side).contains(&col) && (0..self.side).contains(&row) {
            self.out.insert(TileId {
                z: self.z,
                x: col as u32,
                y: row as u32,
            });
        }
    }

    fn grid(&self) -> PaddedGrid {
        PaddedGrid {
            side: self.side,
            ts: self.ts,
            pad: self.pad,
        }
    }

    fn point(&mut self, p: Coord<f64>) {
        self.grid().point(p, &mut |col, row| self.add(col, row));
    }

    fn line(&mut self, line: &LineString<f64>) {
        self.grid()
            .line(&line.0, &mut |col, row| self.add(col, row));
    }

    /// Tiles whose centre is inside the polygon (non-zero winding, which takes
    /// in everything the even-odd fill draws). Tiles an edge comes near are
    /// added by [`Cells::line`]; every other tile is all inside or all outside.
    fn interior(&mut self, rings: &[LineString<f64>]) {
        let mut crossings: std::collections::BTreeMap<i64, Vec<(f64, i32)>> = Default::default();
        for ring in rings {
            for w in ring.0.windows(2) {
                let (a, b) = (w[0], w[1]);
                if a.y == b.y {
                    continue;
                }
                let (lo, hi) = (a.y.min(b.y), a.y.max(b.y));
                // Rows whose centre line y = (row + 0.5) * ts lies in [lo, hi).
                let first = ((lo / self.ts) - 0.5).ceil() as i64;
                let last = ((hi / self.ts) - 0.5).ceil() as i64 - 1;
                for row in first.max(0)..=last.min(self.side - 1) {
                    let y = (row as f64 + 0.5) * self.ts;
                    let x = a.x + (y - a.y) * (b.x - a.x) / (b.y - a.y);
                    crossings
                        .entry(row)
                        .or_default()
                        .push((x, if b.y > a.y { 1 } else { -1 }));
                }
            }
        }
        for (row, mut xs) in crossings {
            xs.sort_by(|p, q| p.0.total_cmp(&q.0));
            let mut winding = 0;
            for pair in xs.windows(2) {
                winding += pair[0].1;
                if winding == 0 {
                    continue;
                }
                // Columns whose centre lies between the two crossings.
                let first = ((pair[0].0 / self.ts) - 0.5).ceil() as i64;
                let last = ((pair[1].0 / self.ts) - 0.5).floor() as i64;
                let (first, last) = (first.max(0), last.min(self.side - 1));
                let cols: Vec<i64> = match &self.among {
                    None => (first..=last).collect(),
                    Some(among) => {
                        let cols = among.get(&row).map_or(&[][..], Vec::as_slice);
                        let from = cols.partition_point(|&c| c < first);
                        let to = cols.partition_point(|&c| c <= last);
                        cols[from..to.max(from)].to_vec()
                    }
                };
                for col in cols {
                    self.add(col, row);
                }
            }
        }
    }
}
