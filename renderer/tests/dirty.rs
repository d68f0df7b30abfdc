//! Dirty tiles: the tiles a layer's features can draw into hold every tile they
//! do draw into, and an edit changes no tile outside those of the features it
//! changed, before and after.

mod common;

use common::countries;
use std::collections::BTreeSet;

use geo::{Coord, Geometry, MapCoords};
use tilefarm_renderer::{Feature, Layer, MetaTile, Style, TileId, ZoomLayer, render_metatile};

fn style() -> Style {
    Style::from_json(
        r##"{"polygon":{"fill":"#88aacc","outline":"#223344","outline_width":{"stops":[[0,1],[5,3]]}},
            "point":{"color":"#ff8800","radius":5}}"##,
    )
    .expect("valid style")
}

/// Every non-empty tile of `layer` at zoom `z`, with its pixels.
fn drawn(layer: &Layer, z: u8) -> std::collections::BTreeMap<TileId, Vec<u8>> {
    let zl = ZoomLayer::new(layer, z, 256);
    let mut out = std::collections::BTreeMap::new();
    for meta in zl.metatiles_touched(8) {
        let rendered = render_metatile(&zl, meta);
        for t in meta.tiles() {
            let image = rendered.tile(t);
            if !image.is_empty() {
                out.insert(t, tilefarm_renderer::encode_png(&image, 256).expect("png"));
            }
        }
    }
    out
}

fn touched(features: &[Feature], z: u8) -> BTreeSet<TileId> {
    ZoomLayer::new(&Layer::new(features, &style()), z, 256).tiles_touched()
}

#[test]
fn every_tile_a_feature_draws_into_is_touched_and_few_others_are() {
    let mut features = countries();
    features.push(Feature::from_geometry(Geometry::Point(geo::Point::new(
        13.4, 52.5,
    ))));
    let picks = [0, 4, 17, 31, 56, 140, features.len() - 1];
    for &i in &picks {
        let one = std::slice::from_ref(&features[i]);
        for z in 0..=6 {
            let layer = Layer::new(one, &style());
            let drawn: BTreeSet<TileId> = drawn(&layer, z).into_keys().collect();
            let touched = touched(one, z);
            let missed: Vec<_> = drawn.difference(&touched).collect();
            assert!(
                missed.is_empty(),
                "feature {i} z{z}: drawn but not touched: {missed:?}"
            );
            let extra = touched.len() - drawn.len();
            assert!(
                extra <= 2 + drawn.len() / 10,
                "feature {i} z{z}: {} touched for {} drawn",
                touched.len(),
                drawn.len()
            );
        }
    }
}

#[test]
fn an_edit_changes_only_tiles_its_features_touch() {
    let before = countries();
    let mut after = before.clone();
    // Move one country a degree and a half east, replace another by a point,
    // and delete a third.
    let moved = after[30].clone();
    after[30].geometry = moved.geometry.map(|g| {
        g.map_coords(|c| Coord {
            x: c.x + 1.5,
            y: c.y,
        })
    });
    after[60].geometry = Some(Geometry::Point(geo::Point::new(10.0, 50.0)));
    after.remove(90);
    let changed_before = [before[30].clone(), before[60].clone(), before[90].clone()];
    let changed_after = [after[30].clone(), after[60].clone()];
    let (old, new) = (Layer::new(&before, &style()), Layer::new(&after, &style()));
    let mut changes = 0;
    for z in 0..=5 {
        let (a, b) = (drawn(&old, z), drawn(&new, z));
        let dirty: BTreeSet<TileId> = touched(&changed_before, z)
            .union(&touched(&changed_after, z))
            .copied()
            .collect();
        let tiles: BTreeSet<&TileId> = a.keys().chain(b.keys()).collect();
        for t in tiles {
            if a.get(t) != b.get(t) {
                changes += 1;
                assert!(
                    dirty.contains(t),
                    "tile {t} changed outside the dirty tiles"
                );
            }
        }
        // The dirty tiles are few next to the layer.
        assert!(
            dirty.len() < b.len().max(8),
            "z{z}: {} dirty of {}",
            dirty.len(),
            b.len()
        );
    }
    assert!(changes > 20, "the edit changed {changes} tiles");
}

#[test]
fn a_metatile_holds_what_it_touches() {
    // Sanity of the grid: a touched tile's metatile is one the layer touches.
    let features = countries();
    let zl = ZoomLayer::new(&Layer::new(&features[..20], &style()), 4, 256);
    let metas: BTreeSet<MetaTile> = zl.metatiles_touched(8).into_iter().collect();
    for t in zl.tiles_touched() {
        assert!(metas.contains(&MetaTile::containing(t, 8)), "{t}");
    }
}
