//! Stroking lines into polygons, in world-pixel coordinates.
//!
//! A stroke is drawn as a filled ribbon around each line: the line offset by half
//! the width on either side, with miter joins outside (bevelled past the miter
//! limit) and butt ends. Every point is computed in f64 from the line's own
//! vertices, snapped, and split at tile boundaries like all geometry, so a stroke's
//! pixels depend only on the line, never on the canvas it is drawn on: a tile cut
//! from a metatile is the same as the tile drawn alone.

use geo::{Coord, LineString};

use crate::prepare::{snap, split_at_grid};

/// Miter joins longer than this many half-widths become bevels.
const MITER_LIMIT: f64 = 4.0;

/// The rings (open: no repeated last point) whose non-zero fill is the stroke of
/// `pieces` with `half_width`, split at multiples of `cell`.
pub(crate) fn stroke_polygons(
    pieces: &[Vec<Coord<f64>>],
    half_width: f64,
    cell: f64,
) -> Vec<Vec<Coord<f64>>> {
    let mut out = Vec::new();
    for piece in pieces {
        // Drop repeated points: a zero-length segment has no direction.
        let mut pts: Vec<Coord<f64>> = Vec::with_capacity(piece.len());
        for &c in piece {
            if pts.last() != Some(&c) {
                pts.push(c);
            }
        }
        let closed = pts.len() > 3 && pts.first() == pts.last();
        if closed {
            pts.pop();
        }
        if pts.len() < 2 {
            continue;
        }
        let n = pts.len();
        let segments = if closed { n } else { n - 1 };
        let seg: Vec<(Coord<f64>, f64)> = (0..segments)
            .map(|i| {
                let d = pts[(i + 1) % n] - pts[i];
                let len = d.x.hypot(d.y);
                (
                    Coord {
                        x: -d.y / len * half_width,
                        y: d.x / len * half_width,
                    },
                    len,
                )
            })
            .collect();
        let side = |s: f64| -> Vec<Coord<f64>> {
            let mut ring = Vec::with_capacity(n + 4);
            let range = if closed { 0..n } else { 1..n - 1 };
            if !closed {
                ring.push(pts[0] + seg[0].0 * s);
            }
            for v in range {
                let (prev, next) = (seg[(v + segments - 1) % segments], seg[v % segments]);
                let d1 = Coord {
                    x: prev.0.y,
                    y: -prev.0.x,
                };
                join(
                    &mut ring,
                    pts[v],
                    d1,
                    prev.0 * s,
                    next.0 * s,
                    prev.1.min(next.1),
                    half_width,
                );
            }
            if !closed {
                ring.push(pts[n - 1] + seg[segments - 1].0 * s);
            }
            ring
        };
        let (left, mut right) = (side(1.0), side(-1.0));
        right.reverse();
        if closed {
            // Two loops wound opposite ways: the band between them is the stroke.
            let (mut a, mut b) = (finish(left, cell), finish(right, cell));
            if signed_area(&a).abs() < signed_area(&b).abs() {
                std::mem::swap(&mut a, &mut b);
            }
            if signed_area(&a) < 0.0 {
                a.reverse();
                b.reverse();
            }
            out.push(a);
            out.push(b);
        } else {
            let mut ribbon = left;
            ribbon.extend(right);
            let mut ribbon = finish(ribbon, cell);
            // Wound the same way as every other ribbon, so overlaps add up.
            if signed_area(&ribbon) < 0.0 {
                ribbon.reverse();
            }
            out.push(ribbon);
        }
    }
    out.retain(|r| r.len() >= 3);
    out
}

/// Snaps a ring and splits it at tile boundaries.
fn finish(ring: Vec<Coord<f64>>, cell: f64) -> Vec<Coord<f64>> {
    let mut closed: Vec<Coord<f64>> = ring
        .iter()
        .map(|c| Coord {
            x: snap(c.x),
            y: snap(c.y),
        })
        .collect();
    closed.push(closed[0]);
    let mut out = split_at_grid(LineString(closed), cell).0;
    out.pop();
    out
}

/// Appends the offset points at vertex `v` between a segment running along `d1`,
/// offset by `o1`, and the next one offset by `o2` (on one side). `shortest` is
/// the shorter segment's length.
fn join(
    ring: &mut Vec<Coord<f64>>,
    v: Coord<f64>,
    d1: Coord<f64>,
    o1: Coord<f64>,
    o2: Coord<f64>,
    shortest: f64,
    half_width: f64,
) {
    let hw2 = half_width * half_width;
    let cross = o1.x * o2.y - o1.y * o2.x;
    let cos = ((o1.x * o2.x + o1.y * o2.y) / hw2).clamp(-1.0, 1.0);
    if cross.abs() <= 1e-9 * hw2 && cos > 0.0 {
        ring.push(v + o1); // straight on
        return;
    }
    // This side is outside the turn when the offset lines move apart along the
    // first segment's direction.
    let outer = (o2 - o1).x * d1.x + (o2 - o1).y * d1.y > 0.0;
    let miter = if cos > -1.0 {
        Some(v + (o1 + o2) * (1.0 / (1.0 + cos)))
    } else {
        None
    };
    if outer {
        match miter {
            Some(m) if (2.0 / (1.0 + cos)).sqrt() <= MITER_LIMIT => ring.push(m),
            _ => {
                ring.push(v + o1);
                ring.push(v + o2);
            }
        }
    } else {
        // Inside the turn the offset lines cross at the miter point, if it lies
        // within both segments; otherwise go round through the vertex itself.
        let reach = half_width * ((1.0 - cos) / (1.0 + cos)).sqrt();
        match miter {
            Some(m) if reach <= shortest => ring.push(m),
            _ => {
                ring.push(v + o1);
                ring.push(v);
                ring.push(v + o2);
            }
        }
    }
}

fn signed_area(ring: &[Coord<f64>]) -> f64 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            a.x * b.y - b.x * a.y
        })
        .sum::<f64>()
        / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(x: f64, y: f64) -> Coord<f64> {
        Coord { x, y }
    }

    #[test]
    fn a_segment_strokes_to_a_rectangle() {
        let polys = stroke_polygons(&[vec![c(10.0, 10.0), c(20.0, 10.0)]], 1.0, 256.0);
        assert_eq!(polys.len(), 1);
        assert!((signed_area(&polys[0]) - 20.0).abs() < 1e-9);
        assert_eq!(polys[0].len(), 4);
    }

    #[test]
    fn a_right_angle_gets_a_square_miter() {
        let polys = stroke_polygons(
            &[vec![c(100.0, 100.0), c(110.0, 100.0), c(110.0, 110.0)]],
            1.0,
            256.0,
        );
        assert_eq!(polys.len(), 1);
        // Outer corner at the miter point, inner corner where the offsets cross.
        assert!(polys[0].contains(&c(111.0, 99.0)), "{:?}", polys[0]);
        assert!(polys[0].contains(&c(109.0, 101.0)), "{:?}", polys[0]);
        // Two arms of 10 x 2 less the shared 2 x 2 corner counted twice... plus it.
        assert!(
            (signed_area(&polys[0]) - 40.0).abs() < 1e-9,
            "{}",
            signed_area(&polys[0])
        );
    }

    #[test]
    fn a_sharp_turn_is_bevelled_outside_and_pivots_inside() {
        let polys = stroke_polygons(
            &[vec![c(100.0, 100.0), c(110.0, 100.0), c(100.0, 100.5)]],
            1.0,
            256.0,
        );
        assert_eq!(polys.len(), 1);
        assert!(
            polys[0].contains(&c(110.0, 100.0)),
            "the inner side goes through the vertex"
        );
        assert_eq!(polys[0].len(), 2 + 2 + 3 + 2, "{:?}", polys[0]);
    }

    #[test]
    fn a_closed_ring_strokes_to_a_band() {
        let square = vec![
            c(100.0, 100.0),
            c(110.0, 100.0),
            c(110.0, 110.0),
            c(100.0, 110.0),
            c(100.0, 100.0),
        ];
        let polys = stroke_polygons(&[square], 1.0, 256.0);
        assert_eq!(polys.len(), 2);
        // Outer 12 x 12 one way, inner 8 x 8 the other: the band's area is 80.
        let total: f64 = polys.iter().map(|p| signed_area(p)).sum();
        assert!((total - 80.0).abs() < 1e-9, "{total}");
    }

    #[test]
    fn strokes_are_split_at_tile_boundaries() {
        let polys = stroke_polygons(&[vec![c(250.0, 10.0), c(260.0, 10.0)]], 1.0, 256.0);
        assert!(polys[0].iter().filter(|p| p.x == 256.0).count() >= 2);
    }
}
