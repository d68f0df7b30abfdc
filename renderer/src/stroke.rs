//! Stroking lines into polygons, in world-pixel coordinates.
//!
//! A stroke is drawn as the union (non-zero fill) of one quadrilateral per segment
//! and one wedge per join, each computed in f64 from the line's own vertices,
//! snapped, and split at tile boundaries like all geometry. So a stroke's pixels
//! depend only on the line, never on the canvas it is drawn on: a tile cut from a
//! metatile is the same as the tile drawn alone.

use geo::{Coord, LineString};

use crate::prepare::{snap, split_at_grid};

/// Miter joins longer than this many half-widths become bevels.
const MITER_LIMIT: f64 = 4.0;

/// The polygons (open rings, all wound the same way) that make up the stroke of
/// `pieces` with `half_width`, split at multiples of `cell`.
pub(crate) fn stroke_polygons(
    pieces: &[Vec<Coord<f64>>],
    half_width: f64,
    cell: f64,
) -> Vec<Vec<Coord<f64>>> {
    let mut out = Vec::new();
    let mut emit = |poly: Vec<Coord<f64>>| {
        let mut ring: Vec<Coord<f64>> = poly
            .iter()
            .map(|c| Coord {
                x: snap(c.x),
                y: snap(c.y),
            })
            .collect();
        ring.push(ring[0]);
        let mut ring = split_at_grid(LineString(ring), cell).0;
        ring.pop();
        if signed_area(&ring) < 0.0 {
            ring.reverse();
        }
        if ring.len() >= 3 {
            out.push(ring);
        }
    };
    for piece in pieces {
        // Drop repeated points: a zero-length segment has no direction.
        let mut pts: Vec<Coord<f64>> = Vec::with_capacity(piece.len());
        for &c in piece {
            if pts.last() != Some(&c) {
                pts.push(c);
            }
        }
        if pts.len() < 2 {
            continue;
        }
        let closed = pts.len() > 3 && pts.first() == pts.last();
        let normals: Vec<Coord<f64>> = pts
            .windows(2)
            .map(|w| {
                let (dx, dy) = (w[1].x - w[0].x, w[1].y - w[0].y);
                let len = dx.hypot(dy);
                Coord {
                    x: -dy / len * half_width,
                    y: dx / len * half_width,
                }
            })
            .collect();
        for (w, n) in pts.windows(2).zip(&normals) {
            let (a, b) = (w[0], w[1]);
            emit(vec![a + *n, b + *n, b - *n, a - *n]);
        }
        let joins = normals.len().saturating_sub(1) + usize::from(closed);
        for j in 0..joins {
            let (n1, n2) = (normals[j], normals[(j + 1) % normals.len()]);
            let p = pts[j + 1];
            if let Some(wedge) = join_wedge(p, n1, n2, half_width) {
                emit(wedge);
            }
        }
    }
    out
}

/// The piece filling the outside of a join at `p` between segments with scaled
/// normals `n1` and `n2`: a miter, or a bevel past the miter limit.
fn join_wedge(
    p: Coord<f64>,
    n1: Coord<f64>,
    n2: Coord<f64>,
    half_width: f64,
) -> Option<Vec<Coord<f64>>> {
    let cross = n1.x * n2.y - n1.y * n2.x;
    if cross.abs() < 1e-12 * half_width * half_width {
        return None; // straight on (or folding back: butt ends meet)
    }
    // The outer side is where the two offset lines diverge.
    let s = if cross > 0.0 { -1.0 } else { 1.0 };
    let (o1, o2) = (p + n1 * s, p + n2 * s);
    let cos = (n1.x * n2.x + n1.y * n2.y) / (half_width * half_width);
    // Miter length / half width = 1 / cos(phi / 2) = sqrt(2 / (1 + cos)).
    let ratio = if cos > -1.0 {
        (2.0 / (1.0 + cos)).sqrt()
    } else {
        f64::INFINITY
    };
    if ratio <= MITER_LIMIT {
        let m = p + (n1 + n2) * (s / (1.0 + cos));
        Some(vec![p, o1, m, o2])
    } else {
        Some(vec![p, o1, o2])
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
    }

    #[test]
    fn a_right_angle_gets_a_square_miter() {
        let polys = stroke_polygons(
            &[vec![c(100.0, 100.0), c(110.0, 100.0), c(110.0, 110.0)]],
            1.0,
            256.0,
        );
        assert_eq!(polys.len(), 3);
        // The wedge is the unit square at the outer corner: area 1.
        assert!(
            (signed_area(&polys[2]) - 1.0).abs() < 1e-9,
            "{:?}",
            polys[2]
        );
    }

    #[test]
    fn a_sharp_turn_is_bevelled() {
        let polys = stroke_polygons(
            &[vec![c(100.0, 100.0), c(110.0, 100.0), c(100.0, 100.5)]],
            1.0,
            256.0,
        );
        assert_eq!(polys.len(), 3);
        assert_eq!(polys[2].len(), 3, "a bevel triangle: {:?}", polys[2]);
    }

    #[test]
    fn strokes_are_split_at_tile_boundaries() {
        let polys = stroke_polygons(&[vec![c(250.0, 10.0), c(260.0, 10.0)]], 1.0, 256.0);
        assert!(polys[0].iter().filter(|p| p.x == 256.0).count() >= 2);
    }
}
