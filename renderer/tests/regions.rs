//! One-colour regions: every tile the planner leaves undrawn is exactly what a
//! full render of it gives, the region's colour or transparent, at every zoom;
//! and the check finds the difference when the plan ignores the style's reach.

mod common;

use common::countries;
use geo::{Geometry, LineString, Point, Polygon};
use tilefarm_renderer::{
    Feature, Layer, RegionPlanner, Regions, Rgba, Style, TileId, TileImage, ZoomLayer, render_tile,
    tiles_per_side,
};

/// Countries by continent (a colour each, one of them see-through), an
/// outline growing with the zoom, and a few lines and points of other widths.
fn style(outline: &str) -> Style {
    Style::from_json(&format!(
        r##"{{"polygon": {{
              "fill": {{"property": "continent", "match": {{"Africa": "#cc4422", "Europe": "#2244cc",
                        "Asia": "#22aa4480"}}, "default": "#889988"}},
              "outline": "#223344", "outline_width": {outline}}},
            "line": {{"color": "#aa00aa", "width": 3}},
            "point": {{"color": "#ff8800", "radius": 6}}}}"##
    ))
    .expect("valid style")
}

fn features() -> Vec<Feature> {
    let mut all = countries();
    // A see-through square over Europe and Africa: two fills composited.
    let square = Polygon::new(
        LineString::from(vec![
            (-5.0, 20.0),
            (30.0, 20.0),
            (30.0, 55.0),
            (-5.0, 55.0),
            (-5.0, 20.0),
        ]),
        vec![],
    );
    let mut f = Feature::from_geometry(Geometry::Polygon(square));
    f.properties
        .insert("continent".into(), serde_json::json!("Asia"));
    all.push(f);
    all.push(Feature::from_geometry(Geometry::LineString(
        LineString::from(vec![(60.0, 50.0), (100.0, 60.0), (120.0, 40.0)]),
    )));
    all.push(Feature::from_geometry(Geometry::Point(Point::new(
        -60.0, -10.0,
    ))));
    all
}

/// A small deterministic random source.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// Plans `planned` to `max_zoom` and compares, at every zoom, what the plan
/// serves for tiles it does not draw (a region's colour, or transparent) with
/// a full render of `drawn`: every tile through zoom 5, then samples inside
/// regions, beside drawn tiles and anywhere. Returns the mismatches, and how
/// many tiles were compared.
fn compare(planned: &Layer, drawn: &Layer, max_zoom: u8) -> (Vec<String>, u64) {
    let mut planner = RegionPlanner::new(planned, max_zoom, 256);
    let mut regions = Vec::new();
    let mut rng = Lcg(7);
    let mut wrong = Vec::new();
    let mut compared = 0;
    while let Some(plan) = planner.next_zoom() {
        let z = plan.z;
        regions.extend(plan.regions.iter().copied());
        let index = Regions::new(regions.iter().copied());
        let side = tiles_per_side(z);
        let mut sample: Vec<TileId> = Vec::new();
        if side <= 32 {
            for y in 0..side as u32 {
                sample.extend((0..side as u32).map(|x| TileId { z, x, y }));
            }
        } else {
            for _ in 0..300 {
                let r = regions[rng.below(regions.len() as u64) as usize];
                let tiles: Vec<TileId> = if r.root.z <= z {
                    let shift = z - r.root.z;
                    let n = 1u64 << shift;
                    vec![TileId {
                        z,
                        x: (r.root.x << shift) + rng.below(n) as u32,
                        y: (r.root.y << shift) + rng.below(n) as u32,
                    }]
                } else {
                    vec![]
                };
                sample.extend(tiles);
                // The neighbours of drawn tiles: where a reach too short shows.
                let live = plan.live[rng.below(plan.live.len() as u64) as usize];
                for (dx, dy) in [(-1i64, 0i64), (1, 0), (0, -1), (0, 1), (1, 1), (-1, -1)] {
                    let (x, y) = (i64::from(live.x) + dx, i64::from(live.y) + dy);
                    if (0..side as i64).contains(&x) && (0..side as i64).contains(&y) {
                        sample.push(TileId {
                            z,
                            x: x as u32,
                            y: y as u32,
                        });
                    }
                }
                sample.push(TileId {
                    z,
                    x: rng.below(side) as u32,
                    y: rng.below(side) as u32,
                });
            }
        }
        let zl = ZoomLayer::new(drawn, z, 256);
        for t in sample {
            if plan.live.binary_search(&t).is_ok() {
                continue;
            }
            let served = TileImage::Uniform(index.color_of(t).unwrap_or(Rgba([0, 0, 0, 0])));
            let full = render_tile(&zl, t);
            compared += 1;
            if full != served {
                let what = match &full {
                    TileImage::Uniform(c) => format!("one colour {c}"),
                    TileImage::Pixels(_) => "drawn pixels".to_string(),
                };
                wrong.push(format!("{t}: served {served:?}, a full render has {what}"));
            }
        }
    }
    (wrong, compared)
}

#[test]
fn tiles_left_to_regions_are_what_a_full_render_gives_at_every_zoom() {
    let layer = Layer::new(&features(), &style(r#"{"stops": [[0, 1], [8, 4]]}"#));
    let (wrong, compared) = compare(&layer, &layer, 10);
    assert!(compared > 5_000, "only {compared} tiles compared");
    assert!(
        wrong.is_empty(),
        "{} wrong, first: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

#[test]
fn the_comparison_fails_when_the_plan_ignores_the_reach() {
    // Planned for hairline outlines, drawn with 12 px ones: tiles beside the
    // drawn ones are planned clear but a full render has the outline in them.
    let thin = Layer::new(&features(), &style("0.2"));
    let thick = Layer::new(&features(), &style("12"));
    let (wrong, _) = compare(&thin, &thick, 7);
    assert!(
        wrong.iter().any(|w| w.contains("drawn pixels")),
        "no mismatch found: {wrong:?}"
    );
}

#[test]
fn the_plan_grows_with_the_edges_not_the_area() {
    // A box over most of the world: at zoom 14 it has some 60,000 tiles on its
    // edges and 200 million inside; the plan draws the edges and leaves the
    // inside to regions along the edge.
    // Vertices every 10 degrees: a step of more than 180 degrees would be
    // taken as crossing the antimeridian.
    let mut coords: Vec<(f64, f64)> = (0..=34)
        .map(|i| (-170.0 + 10.0 * f64::from(i), -70.0))
        .collect();
    coords.extend((0..=34).map(|i| (170.0 - 10.0 * f64::from(i), 70.0)));
    coords.push((-170.0, -70.0));
    let ring = LineString::from(coords);
    let f = Feature::from_geometry(Geometry::Polygon(Polygon::new(ring, vec![])));
    let layer = Layer::new(&[f], &Style::default());
    let mut planner = RegionPlanner::new(&layer, 14, 256);
    let (mut live, mut regions, mut implied) = (0u64, 0u64, 0u64);
    let mut at_14 = 0;
    while let Some(plan) = planner.next_zoom() {
        live += plan.live.len() as u64;
        regions += plan.regions.len() as u64;
        implied += plan
            .regions
            .iter()
            .map(|r| r.tiles_within(0..=14))
            .sum::<u64>();
        if plan.z == 14 {
            at_14 = plan.live.len();
        }
    }
    let side = tiles_per_side(14) as f64;
    // Two sides of 340 degrees, two of 140 degrees of latitude (0.55 of the
    // world's height in Mercator).
    let edge = side * (2.0 * 340.0 / 360.0 + 2.0 * 0.55);
    assert!(
        (at_14 as f64) < edge * 1.6 && (at_14 as f64) > edge * 0.5,
        "{at_14} tiles drawn at zoom 14 against {edge} on the edge"
    );
    assert!(live < 200_000, "{live} tiles drawn");
    // Each zoom's regions are the clear tiles just inside the edge: fewer than
    // the tiles drawn.
    assert!(regions < live, "{regions} regions for {live} tiles drawn");
    assert!(
        implied > 120_000_000,
        "the regions stand for {implied} tiles"
    );
}
