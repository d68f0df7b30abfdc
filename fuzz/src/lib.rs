//! What each fuzz target does with its input: call one parser that takes
//! untrusted input and check that it returns (an error is fine) and, where it
//! is cheap, a property of what it read.
//!
//! The targets in `fuzz_targets/` are one line each around these functions, and
//! `formats/tests/fuzz_corpus.rs` includes this file to replay the corpus and
//! the regressions through the same calls on stable, in the normal test run.
//! So this file depends on nothing but the crates under test and `serde_json`.
#![forbid(unsafe_code)]

use serde_json::json;
use tilefarm_formats::Edit;
use tilefarm_renderer::{
    Feature, OnInvalid, ReadOptions, Size, Style, TileId, feature_from_value, read_geojson,
};

/// One target's check of one input: it panics on a failure.
pub type Check = fn(&[u8]);

/// The targets by name (the folder names under `fuzz/corpus/`), with their checks.
pub const TARGETS: &[(&str, Check)] = &[
    ("geojson", geojson),
    ("read_bytes", read_bytes),
    ("edit", edit),
    ("style", style),
    ("tile_path", tile_path),
];

/// The GeoJSON reader, failing at the first bad feature and skipping bad ones.
/// A feature read writes out as GeoJSON that reads back to the same feature.
pub fn geojson(data: &[u8]) {
    for on_invalid in [OnInvalid::Fail, OnInvalid::Skip] {
        let Ok(report) = read_geojson(data, &ReadOptions { on_invalid }) else {
            continue;
        };
        assert!(!report.features.is_empty(), "read Ok with no features");
        for feature in &report.features {
            let again = feature_from_value(feature.to_geojson())
                .unwrap_or_else(|e| panic!("{feature:?} does not read back: {e}"));
            assert_eq!(&again, feature, "a feature changed on the way round");
        }
    }
}

/// Any upload, its format told from its content.
pub fn read_bytes(data: &[u8]) {
    let _ = tilefarm_formats::read_bytes(data, &tilefarm_formats::ReadOptions::default());
}

/// An edit, read, written back and read again, then applied to a small layer.
pub fn edit(data: &[u8]) {
    let Ok(edit) = Edit::from_json(data) else {
        return;
    };
    let text = edit.to_json().to_string();
    let again = Edit::from_json(text.as_bytes())
        .unwrap_or_else(|e| panic!("{text} does not read back: {e}"));
    assert_eq!(again, edit, "the edit changed on the way round");
    let layer = layer();
    let before = layer.len();
    if let Ok(applied) = edit.apply(layer) {
        // The layer's ids are unique: each change removes one and each upsert adds one.
        assert_eq!(
            applied.features.len(),
            before - applied.before.len() + applied.after.len(),
            "{applied:?}"
        );
        assert_eq!(applied.after, edit.upsert);
    }
}

/// A style, then every size it gives at every zoom and the paint of a feature.
pub fn style(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(style) = Style::from_json(text) else {
        return;
    };
    for size in [
        &style.polygon.outline_width,
        &style.line.width,
        &style.point.radius,
    ] {
        for z in 0..=tilefarm_renderer::MAX_ZOOM {
            let px = size.at(z);
            assert!((0.0..=256.0).contains(&px), "{size:?} at z{z} is {px} px");
        }
        if let Size::Stops(stops) = size {
            assert!(!stops.is_empty());
        }
    }
    let reach = style.reach_px();
    assert!(reach.is_finite() && reach >= 0.0, "reach {reach}");
    for feature in layer() {
        let _ = style.paint_for(&feature);
    }
}

/// A tile path, `z/x/y.png`, split at its first two slashes. A tile read
/// names itself in a path that reads back to the same tile.
pub fn tile_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '/');
    let (Some(z), Some(x), Some(y_png)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let Some(tile) = TileId::from_path(z, x, y_png) else {
        return;
    };
    assert_eq!(TileId::new(tile.z, tile.x, tile.y), Some(tile));
    let path = format!("{}.png", tile.path());
    let mut parts = path.split('/');
    let (Some(z), Some(x), Some(y_png)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("{path} is not z/x/y.png");
    };
    assert_eq!(TileId::from_path(z, x, y_png), Some(tile), "{path}");
    // One URL a tile: only its own path reads as it.
    assert_eq!(path, text, "{text:?} read as {tile}");
}

/// A small layer to apply edits to and paint: unique ids of both kinds, and a
/// feature without one.
fn layer() -> Vec<Feature> {
    [
        json!({"type": "Feature", "id": 1, "properties": {"name": "one", "pop": 10},
               "geometry": {"type": "Point", "coordinates": [0.0, 0.0]}}),
        json!({"type": "Feature", "id": "a", "properties": {"name": "a", "pop": "2e7"},
               "geometry": {"type": "LineString", "coordinates": [[0.0, 0.0], [1.0, 1.0]]}}),
        json!({"type": "Feature", "id": 2.5, "properties": {"continent": "Africa", "flag": true},
               "geometry": {"type": "Polygon",
                            "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]}}),
        json!({"type": "Feature", "properties": {},
               "geometry": {"type": "Point", "coordinates": [10.0, 10.0]}}),
    ]
    .into_iter()
    .map(|v| feature_from_value(v).expect("a valid feature"))
    .collect()
}
