//! Clipping rings and polylines to an axis-aligned rectangle, in pixel space.

use geo::Coord;

/// An axis-aligned rectangle (`min` inclusive, `max` inclusive).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub min_x: f64,
    pub min_y: f64,
    pub max_x: f64,
    pub max_y: f64,
}

impl Rect {
    pub fn grow(&self, by: f64) -> Rect {
        Rect {
            min_x: self.min_x - by,
            min_y: self.min_y - by,
            max_x: self.max_x + by,
            max_y: self.max_y + by,
        }
    }

    pub fn contains(&self, c: Coord<f64>) -> bool {
        c.x >= self.min_x && c.x <= self.max_x && c.y >= self.min_y && c.y <= self.max_y
    }
}

#[derive(Clone, Copy)]
enum Edge {
    Left(f64),
    Right(f64),
    Top(f64),
    Bottom(f64),
}

impl Edge {
    fn inside(self, c: Coord<f64>) -> bool {
        match self {
            Edge::Left(v) => c.x >= v,
            Edge::Right(v) => c.x <= v,
            Edge::Top(v) => c.y >= v,
            Edge::Bottom(v) => c.y <= v,
        }
    }

    fn intersect(self, a: Coord<f64>, b: Coord<f64>) -> Coord<f64> {
        match self {
            Edge::Left(v) | Edge::Right(v) => {
                let t = (v - a.x) / (b.x - a.x);
                Coord {
                    x: v,
                    y: a.y + t * (b.y - a.y),
                }
            }
            Edge::Top(v) | Edge::Bottom(v) => {
                let t = (v - a.y) / (b.y - a.y);
                Coord {
                    x: a.x + t * (b.x - a.x),
                    y: v,
                }
            }
        }
    }
}

/// Clips a closed ring (first point repeated last, or not) to `rect` with
/// Sutherland–Hodgman. The result is an open ring (no repeated last point); it is
/// empty when nothing of the ring's area lies inside. Vertices inside the rectangle
/// come out unchanged.
pub fn clip_ring(ring: &[Coord<f64>], rect: &Rect) -> Vec<Coord<f64>> {
    let mut input: Vec<Coord<f64>> = ring.to_vec();
    if input.len() > 1 && input.first() == input.last() {
        input.pop();
    }
    if input.iter().all(|&c| rect.contains(c)) {
        return input;
    }
    let mut output = Vec::with_capacity(input.len() + 4);
    for edge in [
        Edge::Left(rect.min_x),
        Edge::Right(rect.max_x),
        Edge::Top(rect.min_y),
        Edge::Bottom(rect.max_y),
    ] {
        output.clear();
        let Some(&last) = input.last() else { break };
        let mut prev = last;
        for &cur in &input {
            match (edge.inside(prev), edge.inside(cur)) {
                (true, true) => output.push(cur),
                (true, false) => output.push(edge.intersect(prev, cur)),
                (false, true) => {
                    output.push(edge.intersect(prev, cur));
                    output.push(cur);
                }
                (false, false) => {}
            }
            prev = cur;
        }
        std::mem::swap(&mut input, &mut output);
    }
    input
}

/// Appends to `out` the runs of whole segments of `line` that meet `rect`, with
/// their vertices unchanged (nothing is cut, so what is drawn of a segment never
/// depends on the rectangle). A closed ring wholly kept stays closed.
pub fn segments_meeting(line: &[Coord<f64>], rect: &Rect, out: &mut Vec<Vec<Coord<f64>>>) {
    let mut current: Vec<Coord<f64>> = Vec::new();
    for w in line.windows(2) {
        if segment_meets(w[0], w[1], rect) {
            if current.is_empty() {
                current.push(w[0]);
            }
            current.push(w[1]);
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
}

/// Whether segment `a`-`b` meets `rect`.
pub fn segment_meets(a: Coord<f64>, b: Coord<f64>, rect: &Rect) -> bool {
    clip_segment(a, b, rect).is_some()
}

fn clip_segment(a: Coord<f64>, b: Coord<f64>, r: &Rect) -> Option<(Coord<f64>, Coord<f64>)> {
    if r.contains(a) && r.contains(b) {
        return Some((a, b));
    }
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let mut t0 = 0.0f64;
    let mut t1 = 1.0f64;
    for (p, q) in [
        (-dx, a.x - r.min_x),
        (dx, r.max_x - a.x),
        (-dy, a.y - r.min_y),
        (dy, r.max_y - a.y),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
        }
    }
    if t0 > t1 {
        return None;
    }
    let at = |t: f64| {
        if t == 0.0 {
            a
        } else if t == 1.0 {
            b
        } else {
            Coord {
                x: a.x + t * dx,
                y: a.y + t * dy,
            }
        }
    };
    Some((at(t0), at(t1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(x: f64, y: f64) -> Coord<f64> {
        Coord { x, y }
    }

    const R: Rect = Rect {
        min_x: 0.0,
        min_y: 0.0,
        max_x: 10.0,
        max_y: 10.0,
    };

    #[test]
    fn ring_inside_is_unchanged() {
        let ring = [c(1.0, 1.0), c(5.0, 1.0), c(5.0, 5.0), c(1.0, 1.0)];
        assert_eq!(clip_ring(&ring, &R), ring[..3].to_vec());
    }

    #[test]
    fn ring_around_the_rect_becomes_the_rect() {
        let ring = [
            c(-5.0, -5.0),
            c(15.0, -5.0),
            c(15.0, 15.0),
            c(-5.0, 15.0),
            c(-5.0, -5.0),
        ];
        let out = clip_ring(&ring, &R);
        assert_eq!(out.len(), 4);
        for p in out {
            assert!(p.x == 0.0 || p.x == 10.0);
            assert!(p.y == 0.0 || p.y == 10.0);
        }
    }

    #[test]
    fn ring_outside_vanishes() {
        let ring = [c(20.0, 20.0), c(30.0, 20.0), c(30.0, 30.0), c(20.0, 20.0)];
        assert!(clip_ring(&ring, &R).is_empty());
    }

    #[test]
    fn segments_leaving_and_reentering_split_the_run() {
        let line = [
            c(1.0, 5.0),
            c(15.0, 5.0),
            c(30.0, 5.0),
            c(30.0, 8.0),
            c(15.0, 8.0),
            c(1.0, 8.0),
        ];
        let mut out = Vec::new();
        segments_meeting(&line, &R, &mut out);
        assert_eq!(
            out,
            vec![
                vec![c(1.0, 5.0), c(15.0, 5.0)],
                vec![c(15.0, 8.0), c(1.0, 8.0)]
            ]
        );
    }

    #[test]
    fn a_segment_crossing_is_kept_whole() {
        let line = [c(-10.0, 5.0), c(20.0, 5.0)];
        let mut out = Vec::new();
        segments_meeting(&line, &R, &mut out);
        assert_eq!(out, vec![line.to_vec()]);
        assert!(!segment_meets(c(-10.0, -5.0), c(20.0, -5.0), &R));
    }
}
