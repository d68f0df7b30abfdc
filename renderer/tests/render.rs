//! Rendering: golden PNGs per geometry type and style feature (compared exactly),
//! seamless metatiles, and the cases at the antimeridian and the poles.
//!
//! A missing golden image is written on a developer's machine (review it, then
//! commit it) and fails the test when `CI` is set.

mod common;

use std::path::PathBuf;

use tilefarm_renderer::{
    Layer, MetaTile, Style, TileId, TileImage, ZoomLayer, encode_png, read_geojson,
    render_metatile, render_tile,
};

fn layer(geojson: &str, style: &Style) -> Layer {
    let report = read_geojson(geojson.as_bytes(), &Default::default()).expect("valid test GeoJSON");
    Layer::new(&report.features, style)
}

fn style(json: &str) -> Style {
    Style::from_json(json).expect("valid test style")
}

/// Renders `tile` alone and compares it with `tests/images/<feature>/<name>.png`.
fn golden(feature: &str, name: &str, layer: &Layer, tile: TileId, tile_size: u32) {
    let zl = ZoomLayer::new(layer, tile.z, tile_size);
    let png = encode_png(&render_tile(&zl, tile), tile_size).expect("encode");
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "images",
        feature,
        &format!("{name}.png"),
    ]
    .iter()
    .collect();
    match std::fs::read(&path) {
        Ok(expected) => assert!(
            expected == png,
            "{} differs from the rendering of tile {tile}; if the change is intended, delete the file, \
             rerun to write it anew and review it",
            path.display()
        ),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!(
                "golden image {} is missing (run the tests locally to write it)",
                path.display()
            )
        }
        Err(_) => {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &png).unwrap();
            eprintln!("wrote new golden image {}", path.display());
        }
    }
}

fn z2(x: u32, y: u32) -> TileId {
    TileId::new(2, x, y).unwrap()
}

const SQUARE: &str =
    r#"{"type":"Polygon","coordinates":[[[-60,-30],[60,-30],[60,40],[-60,40],[-60,-30]]]}"#;

#[test]
fn golden_points() {
    let s = Style::default();
    golden(
        "point",
        "point",
        &layer(r#"{"type":"Point","coordinates":[10,20]}"#, &s),
        TileId::new(0, 0, 0).unwrap(),
        256,
    );
    golden(
        "point",
        "multipoint",
        &layer(
            r#"{"type":"MultiPoint","coordinates":[[-100,40],[0,0],[100,-40],[150,60]]}"#,
            &s,
        ),
        TileId::new(0, 0, 0).unwrap(),
        256,
    );
    let big = style(r##"{"point":{"color":"#ff8800","radius":6,"opacity":0.5}}"##);
    golden(
        "point",
        "radius_opacity",
        &layer(
            r#"{"type":"MultiPoint","coordinates":[[-100,40],[-98,41]]}"#,
            &big,
        ),
        TileId::new(0, 0, 0).unwrap(),
        256,
    );
}

#[test]
fn golden_lines() {
    let s = Style::default();
    golden(
        "line",
        "linestring",
        &layer(
            r#"{"type":"LineString","coordinates":[[-170,-60],[0,10],[20,-10],[170,70]]}"#,
            &s,
        ),
        TileId::new(0, 0, 0).unwrap(),
        256,
    );
    golden(
        "line",
        "multilinestring",
        &layer(
            r#"{"type":"MultiLineString","coordinates":[[[-90,0],[0,60]],[[-80,-20],[10,40],[60,-10]]]}"#,
            &s,
        ),
        z2(1, 1),
        256,
    );
    let wide = style(r##"{"line":{"color":"#aa2222","width":{"stops":[[0,1],[4,5]]}}}"##);
    let l = layer(
        r#"{"type":"LineString","coordinates":[[-170,-60],[0,10],[20,-10],[170,70]]}"#,
        &wide,
    );
    golden(
        "line",
        "width_by_zoom_z1",
        &l,
        TileId::new(1, 0, 0).unwrap(),
        256,
    );
    golden(
        "line",
        "width_by_zoom_z3",
        &l,
        TileId::new(3, 3, 3).unwrap(),
        256,
    );
}

#[test]
fn golden_polygons() {
    let s = Style::default();
    golden(
        "polygon",
        "polygon",
        &layer(SQUARE, &s),
        TileId::new(0, 0, 0).unwrap(),
        256,
    );
    golden(
        "polygon",
        "with_hole",
        &layer(
            r#"{"type":"Polygon","coordinates":[[[-60,-30],[60,-30],[60,40],[-60,40],[-60,-30]],[[-20,-10],[20,-10],[0,20],[-20,-10]]]}"#,
            &s,
        ),
        TileId::new(0, 0, 0).unwrap(),
        256,
    );
    golden(
        "polygon",
        "multipolygon",
        &layer(
            r#"{"type":"MultiPolygon","coordinates":[[[[-120,10],[-80,10],[-100,50],[-120,10]]],[[[40,-40],[120,-40],[120,0],[40,-40]]]]}"#,
            &s,
        ),
        TileId::new(0, 0, 0).unwrap(),
        256,
    );
    let translucent = style(
        r##"{"polygon":{"fill":"#22aa44","fill_opacity":0.5,"outline":"#000000","outline_width":3,"outline_opacity":0.8}}"##,
    );
    golden(
        "polygon",
        "opacity_and_outline",
        &layer(SQUARE, &translucent),
        TileId::new(0, 0, 0).unwrap(),
        256,
    );
    // The inside of a large polygon is one colour all over.
    let zl = ZoomLayer::new(&layer(SQUARE, &s), 4, 256);
    assert_eq!(
        render_tile(&zl, TileId::new(4, 8, 7).unwrap()),
        TileImage::Uniform("#88aadd".parse().unwrap())
    );
}

#[test]
fn golden_geometry_collection() {
    let s = Style::default();
    golden(
        "geometry_collection",
        "mixed",
        &layer(
            r#"{"type":"GeometryCollection","geometries":[
                {"type":"Polygon","coordinates":[[[-50,-20],[20,-20],[20,30],[-50,-20]]]},
                {"type":"LineString","coordinates":[[-150,-50],[0,0],[150,50]]},
                {"type":"Point","coordinates":[-100,60]}]}"#,
            &s,
        ),
        TileId::new(0, 0, 0).unwrap(),
        256,
    );
}

const CONTINENTS: &str = r#"{"type":"FeatureCollection","features":[
  {"type":"Feature","properties":{"continent":"Africa","pop":5e6},"geometry":{"type":"Polygon","coordinates":[[[0,0],[40,0],[40,30],[0,30],[0,0]]]}},
  {"type":"Feature","properties":{"continent":"Europe","pop":8e7},"geometry":{"type":"Polygon","coordinates":[[[0,35],[40,35],[40,60],[0,60],[0,35]]]}},
  {"type":"Feature","properties":{"continent":"Asia","pop":1.4e9},"geometry":{"type":"Polygon","coordinates":[[[45,0],[120,0],[120,60],[45,60],[45,0]]]}},
  {"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":[[[-60,-40],[-20,-40],[-20,0],[-60,0],[-60,-40]]]}}]}"#;

#[test]
fn golden_data_driven_colours() {
    let by_continent = style(
        r##"{"polygon":{"fill":{"property":"continent","match":{"Africa":"#e0a030","Europe":"#3070c0","Asia":"#c03030"},"default":"#999999"}}}"##,
    );
    golden(
        "data_driven",
        "match",
        &layer(CONTINENTS, &by_continent),
        TileId::new(1, 1, 0).unwrap(),
        256,
    );
    let by_pop = style(
        r##"{"polygon":{"fill":{"property":"pop","steps":[[0,"#ffffcc"],[1e7,"#fd8d3c"],[1e8,"#800026"]],"default":"#dddddd"}}}"##,
    );
    golden(
        "data_driven",
        "steps",
        &layer(CONTINENTS, &by_pop),
        TileId::new(1, 1, 0).unwrap(),
        256,
    );
}

#[test]
fn golden_hidpi_tile() {
    let s = Style::default();
    let l = layer(CONTINENTS, &s);
    golden("hidpi", "512px", &l, TileId::new(1, 1, 0).unwrap(), 512);
    let zl = ZoomLayer::new(&l, 1, 512);
    match render_tile(&zl, TileId::new(1, 1, 0).unwrap()) {
        TileImage::Pixels(p) => assert_eq!(p.len(), 512 * 512 * 4),
        other => panic!("expected pixels, got {other:?}"),
    }
}

#[test]
fn antimeridian_features_touch_both_edges_of_the_world() {
    // Fiji-like: two parts either side of the antimeridian.
    let l = layer(
        r#"{"type":"MultiPolygon","coordinates":[
            [[[177,-20],[180,-20],[180,-15],[177,-15],[177,-20]]],
            [[[-180,-20],[-178,-20],[-178,-15],[-180,-15],[-180,-20]]]]}"#,
        &Style::default(),
    );
    golden(
        "antimeridian",
        "east_edge",
        &l,
        TileId::new(3, 7, 4).unwrap(),
        256,
    );
    golden(
        "antimeridian",
        "west_edge",
        &l,
        TileId::new(3, 0, 4).unwrap(),
        256,
    );
    let zl = ZoomLayer::new(&l, 3, 256);
    let east = render_tile(&zl, TileId::new(3, 7, 4).unwrap());
    let west = render_tile(&zl, TileId::new(3, 0, 4).unwrap());
    let TileImage::Pixels(e) = east else {
        panic!("east edge tile is blank")
    };
    let TileImage::Pixels(w) = west else {
        panic!("west edge tile is blank")
    };
    // The right-most column of the east tile and the left-most of the west tile are painted.
    let alpha = |p: &[u8], x: usize, y: usize| p[(y * 256 + x) * 4 + 3];
    let y = (0..256)
        .find(|&y| alpha(&e, 255, y) == 255)
        .expect("east tile reaches x = 180");
    assert_eq!(
        alpha(&w, 0, y),
        255,
        "west tile continues the same row at x = -180"
    );
}

#[test]
fn polar_data_is_clamped_not_lost() {
    // Antarctica-like data reaching -90: clamped to the bottom row of the world.
    let l = layer(
        r#"{"type":"Polygon","coordinates":[[[-180,-90],[180,-90],[180,-70],[-180,-70],[-180,-90]]]}"#,
        &Style::default(),
    );
    golden(
        "poles",
        "south_pole",
        &l,
        TileId::new(2, 1, 3).unwrap(),
        256,
    );
    let zl = ZoomLayer::new(&l, 4, 256);
    // Latitudes -79.2 to -82.7 lie wholly inside: one colour.
    assert_eq!(
        render_tile(&zl, TileId::new(4, 5, 14).unwrap()),
        TileImage::Uniform("#88aadd".parse().unwrap())
    );
    // The bottom row is painted down to the clamped edge of the world.
    let TileImage::Pixels(bottom) = render_tile(&zl, TileId::new(4, 5, 15).unwrap()) else {
        panic!("the bottom row carries the clamped outline")
    };
    assert!(
        bottom.chunks_exact(4).all(|p| p[3] == 255),
        "the bottom tile is painted all over"
    );
    // The top of the world is empty.
    assert!(render_tile(&zl, TileId::new(4, 5, 0).unwrap()).is_empty());
}

fn sample_layer(style: &Style) -> Layer {
    Layer::new(&common::countries(), style)
}

/// Compares every tile of zooms 2-4 cut from 8x8 metatiles with the same tile
/// rendered alone; returns (tiles compared, tiles differing, channel values
/// differing, largest difference of a channel value).
fn compare_cut_and_alone(style: &Style) -> (u64, u64, u64, u8) {
    let l = sample_layer(style);
    let (mut tiles, mut differing, mut values, mut max_diff) = (0, 0, 0, 0u8);
    for z in [2u8, 3, 4] {
        let zl = ZoomLayer::new(&l, z, 256);
        for meta in MetaTile::all(z, 8) {
            let rendered = render_metatile(&zl, meta);
            for t in meta.tiles() {
                let (cut, alone) = (rendered.tile(t), render_tile(&zl, t));
                tiles += 1;
                if cut != alone {
                    differing += 1;
                    let (TileImage::Pixels(a), TileImage::Pixels(b)) = (&cut, &alone) else {
                        panic!("tile {t}: one rendering is uniform and the other is not");
                    };
                    values += a.iter().zip(b).filter(|(x, y)| x != y).count() as u64;
                    max_diff = a
                        .iter()
                        .zip(b)
                        .map(|(x, y)| x.abs_diff(*y))
                        .max()
                        .unwrap_or(0)
                        .max(max_diff);
                }
            }
        }
    }
    (tiles, differing, values, max_diff)
}

#[test]
fn filled_tiles_cut_from_metatiles_equal_tiles_rendered_alone() {
    let fills_only = style(r##"{"polygon":{"outline":null},"line":{"color":null}}"##);
    let (tiles, differing, _, _) = compare_cut_and_alone(&fills_only);
    assert_eq!(tiles, 16 + 64 + 256);
    assert_eq!(differing, 0, "fills are exact whatever the metatile");
}

#[test]
fn stroked_tiles_cut_from_metatiles_match_tiles_rendered_alone() {
    // Strokes are ribbons computed from the line alone (see stroke.rs), so a tile is
    // drawn from the same edges on any canvas. What remains is the rasterizer's
    // own handling of where a canvas begins: a handful of pixels in a few hundred
    // tiles a few levels of anti-aliasing apart, never a seam.
    for width in ["0.5", "1", "2", "4"] {
        let stroked = style(&format!(
            r##"{{"polygon":{{"outline_width":{width}}},"line":{{"width":{width}}}}}"##
        ));
        let (tiles, _, values, max_diff) = compare_cut_and_alone(&stroked);
        eprintln!("outline width {width}: {values} channel values differ, by at most {max_diff}");
        assert_eq!(tiles, 16 + 64 + 256);
        assert!(
            values <= 32,
            "outline width {width}: {values} channel values differ"
        );
        assert!(
            max_diff <= 16,
            "outline width {width}: a channel value differs by {max_diff}"
        );
    }
}

#[test]
fn rings_stepping_across_the_antimeridian_do_not_streak_across_the_world() {
    // As converted from TopoJSON: one ring stepping from 178 to -178 and back.
    let l = layer(
        r#"{"type":"Polygon","coordinates":[[[176,-20],[178,-20],[-178,-20],[-176,-20],[-176,-15],[-178,-15],[178,-15],[176,-15],[176,-20]]]}"#,
        &Style::default(),
    );
    let zl = ZoomLayer::new(&l, 3, 256);
    // Both edges of the world are painted ...
    for x in [0, 7] {
        assert!(
            matches!(
                render_tile(&zl, TileId::new(3, x, 4).unwrap()),
                TileImage::Pixels(_)
            ),
            "x = {x}"
        );
    }
    // ... and nothing in between.
    for x in 1..7 {
        let t = TileId::new(3, x, 4).unwrap();
        assert!(
            render_tile(&zl, t).is_empty(),
            "tile {t} carries a streak across the world"
        );
    }
    golden(
        "antimeridian",
        "stepping_ring",
        &l,
        TileId::new(3, 7, 4).unwrap(),
        256,
    );
}
