//! Changes to a layer that has tiles already: edits (upserts and deletes of
//! features by id) and replaced data. A change re-renders exactly the tiles it
//! makes dirty, tile by tile, gathered into blocks as a full render's are, so
//! every tile ends byte-identical to a fresh render of the new data.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::RangeInclusive;

use serde_json::Value;
use tilefarm_queue::RenderTask;
use tilefarm_renderer::{
    Feature, FeatureId, Layer, MetaTile, TileId, ZoomLayer, feature_from_value,
};

use crate::plan::{RenderPlan, blocks_of, plan_render};

/// An edit of a layer's features, addressed by their GeoJSON `id`: features to
/// add or replace, and ids to delete.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Edit {
    pub upsert: Vec<Feature>,
    pub delete: Vec<FeatureId>,
}

impl Edit {
    /// Reads `{"upsert": FeatureCollection, "delete": [ids]}` (either member may
    /// be left out, not both). Errors say what is wrong and where.
    pub fn from_json(bytes: &[u8]) -> Result<Edit, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "the edit is not valid JSON: {e} (line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
        let Value::Object(mut obj) = value else {
            return Err("the edit must be a JSON object with \"upsert\" and/or \"delete\"".into());
        };
        if let Some(key) = obj.keys().find(|k| *k != "upsert" && *k != "delete") {
            return Err(format!(
                "unknown member {key:?}: an edit has only \"upsert\" and \"delete\""
            ));
        }
        let mut edit = Edit::default();
        match obj.remove("upsert") {
            None | Some(Value::Null) => {}
            Some(Value::Object(mut fc)) => {
                if fc.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
                    return Err("upsert: must be a GeoJSON FeatureCollection".into());
                }
                let Some(Value::Array(features)) = fc.remove("features") else {
                    return Err("upsert: a FeatureCollection needs a \"features\" array".into());
                };
                for (i, f) in features.into_iter().enumerate() {
                    let feature =
                        feature_from_value(f).map_err(|e| format!("upsert.features[{i}]: {e}"))?;
                    if feature.id.is_none() {
                        return Err(format!(
                            "upsert.features[{i}]: a feature to upsert needs an \"id\""
                        ));
                    }
                    edit.upsert.push(feature);
                }
            }
            Some(_) => return Err("upsert: must be a GeoJSON FeatureCollection".into()),
        }
        match obj.remove("delete") {
            None | Some(Value::Null) => {}
            Some(Value::Array(ids)) => {
                for (i, id) in ids.into_iter().enumerate() {
                    edit.delete.push(match id {
                        Value::String(s) => FeatureId::String(s),
                        Value::Number(n) => FeatureId::Number(n),
                        _ => return Err(format!("delete[{i}]: an id is a string or a number")),
                    });
                }
            }
            Some(_) => return Err("delete: must be an array of feature ids".into()),
        }
        let mut seen = HashSet::new();
        for (i, f) in edit.upsert.iter().enumerate() {
            let id = f.id.as_ref().expect("checked");
            if !seen.insert(key(id)) {
                return Err(format!("upsert.features[{i}]: id {id} appears twice"));
            }
        }
        for (i, id) in edit.delete.iter().enumerate() {
            if !seen.insert(key(id)) {
                return Err(format!(
                    "delete[{i}]: id {id} is upserted or deleted twice in one edit"
                ));
            }
        }
        if edit.upsert.is_empty() && edit.delete.is_empty() {
            return Err(
                "the edit is empty: give features to \"upsert\" or ids to \"delete\"".into(),
            );
        }
        Ok(edit)
    }

    /// The edit as JSON, as [`Edit::from_json`] reads it.
    pub fn to_json(&self) -> Value {
        let ids: Vec<Value> = self
            .delete
            .iter()
            .map(|id| match id {
                FeatureId::String(s) => Value::String(s.clone()),
                FeatureId::Number(n) => Value::Number(n.clone()),
            })
            .collect();
        serde_json::json!({
            "upsert": {
                "type": "FeatureCollection",
                "features": self.upsert.iter().map(Feature::to_geojson).collect::<Vec<_>>(),
            },
            "delete": ids,
        })
    }

    /// Applies the edit to `features`: an upserted id replaces the feature with
    /// that id where it stands (and any later duplicates of it are dropped); a
    /// new id is added at the end; a deleted id is removed. Returns the new
    /// features and the changed ones as they were and as they are.
    pub fn apply(&self, features: Vec<Feature>) -> Result<Applied, String> {
        let upserts: HashMap<String, &Feature> = self
            .upsert
            .iter()
            .map(|f| (key(f.id.as_ref().expect("checked")), f))
            .collect();
        let deletes: HashSet<String> = self.delete.iter().map(key).collect();
        let mut found = HashSet::new();
        let mut applied = Applied::default();
        for f in features {
            let Some(k) = f.id.as_ref().map(key) else {
                applied.features.push(f);
                continue;
            };
            if let Some(new) = upserts.get(&k) {
                if found.insert(k) {
                    applied.features.push((*new).clone());
                }
                applied.before.push(f);
            } else if deletes.contains(&k) {
                found.insert(k);
                applied.before.push(f);
            } else {
                applied.features.push(f);
            }
        }
        if let Some(id) = self.delete.iter().find(|id| !found.contains(&key(id))) {
            return Err(format!("delete: the layer has no feature with id {id}"));
        }
        for f in &self.upsert {
            if !found.contains(&key(f.id.as_ref().expect("checked"))) {
                applied.features.push(f.clone());
            }
        }
        applied.after = self.upsert.clone();
        Ok(applied)
    }
}

/// What applying an edit gave.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// The layer's features after the edit.
    pub features: Vec<Feature>,
    /// The changed features as they were (replaced or deleted).
    pub before: Vec<Feature>,
    /// The changed features as they are now (upserted).
    pub after: Vec<Feature>,
}

/// A feature id as a map key: strings and numbers never collide.
fn key(id: &FeatureId) -> String {
    match id {
        FeatureId::String(s) => format!("s{s}"),
        FeatureId::Number(n) => format!("n{n}"),
    }
}

/// The render tasks of a change from `old` to the new data's plan `new`
/// (planned at the same zooms and sizes), all of which compare each tile with
/// the one stored and rewrite or delete only those that differ:
///
/// - the tiles drawn in one plan but not the other: a tile that leaves a
///   region is drawn and stored, one that joins a region is put right (the
///   new regions answer it from the version's publication on);
/// - for an edit (`edited`: the changed features before and after), the
///   tiles those features can draw into, before or after, among the tiles
///   drawn; tiles inside regions need nothing, the new regions give them;
/// - for new data (`edited` is `None`), every tile either plan draws.
///
/// Tiles are gathered into blocks as a full render's are; a tile's pixels do
/// not depend on its block, so every tile ends byte-identical to a fresh
/// render of the new data.
pub fn plan_change(
    old: &Layer,
    new: &RenderPlan,
    edited: Option<(&[Feature], &[Feature])>,
    zooms: RangeInclusive<u8>,
    metatile: u32,
    tile_size: u32,
) -> Vec<RenderTask> {
    let live_old = plan_render(old, zooms.clone(), metatile, tile_size).live();
    let live_new = new.live();
    let mut render: BTreeSet<TileId> = live_old.symmetric_difference(&live_new).copied().collect();
    match edited {
        None => render.extend(live_old.union(&live_new)),
        Some((before, after)) => {
            let style = old.style();
            let (before, after) = (Layer::new(before, style), Layer::new(after, style));
            let drawn: BTreeSet<TileId> = live_old.union(&live_new).copied().collect();
            for z in zooms.clone() {
                for changed in [&before, &after] {
                    let zl = ZoomLayer::new(changed, z, tile_size);
                    render.extend(zl.tiles_touched_among(&drawn));
                }
            }
        }
    }
    replacing(render, metatile)
}

/// Tasks that replace `tiles`, gathered into blocks (see [`blocks_of`]), deep
/// zooms first as a full render goes.
fn replacing(tiles: impl IntoIterator<Item = TileId>, metatile: u32) -> Vec<RenderTask> {
    blocks_of(tiles, metatile)
        .into_iter()
        .map(|b| partial(b.meta, &b.tiles, true))
        .collect()
}

/// The block of tiles a render task covers.
pub fn block(task: &RenderTask) -> MetaTile {
    MetaTile {
        z: task.z,
        x: task.x,
        y: task.y,
        n: task.n,
    }
}

/// A task that renders `tiles` of `meta`.
pub fn partial(meta: MetaTile, tiles: &[TileId], replaces: bool) -> RenderTask {
    RenderTask {
        z: meta.z,
        x: meta.x,
        y: meta.y,
        n: meta.n,
        tiles: tiles.len() as u32,
        dirty: (tiles.len() as u64 != meta.tile_count()).then(|| mask(meta, tiles)),
        replaces,
        changed: None,
    }
}

/// Adds `extra` tasks (the tiles of jobs that ended half done) to `tasks`:
/// the union of their tiles, gathered into blocks again (see [`blocks_of`])
/// with metatiles of nominal size `metatile`; all of them replace.
pub fn merge_tasks(
    tasks: Vec<RenderTask>,
    extra: Vec<RenderTask>,
    metatile: u32,
) -> Vec<RenderTask> {
    if extra.is_empty() {
        return tasks;
    }
    let tiles: BTreeSet<TileId> = tasks
        .iter()
        .chain(&extra)
        .flat_map(|t| tiles_in(block(t), t.dirty.as_deref()))
        .collect();
    replacing(tiles, metatile)
}

/// The bit mask of `tiles` within `meta`: one bit per tile, row by row, lowest
/// bit first.
pub fn mask(meta: MetaTile, tiles: &[TileId]) -> Vec<u8> {
    let n = meta.n as usize;
    let mut bits = vec![0u8; (n * n).div_ceil(8)];
    for t in tiles {
        let i = (t.y - meta.y) as usize * n + (t.x - meta.x) as usize;
        bits[i / 8] |= 1 << (i % 8);
    }
    bits
}

/// The tiles of `meta` that `dirty` names, or all of them for `None`.
pub fn tiles_in(meta: MetaTile, dirty: Option<&[u8]>) -> Vec<TileId> {
    let has =
        |i: usize| dirty.is_none_or(|m| m.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0));
    meta.tiles()
        .enumerate()
        .filter(|&(i, _)| has(i))
        .map(|(_, t)| t)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: i64, x: f64) -> Feature {
        feature_from_value(serde_json::json!({
            "type": "Feature", "id": id, "properties": {},
            "geometry": {"type": "Point", "coordinates": [x, 0.0]}
        }))
        .expect("a valid feature")
    }

    #[test]
    fn an_edit_replaces_in_place_appends_and_deletes() {
        let base = vec![point(1, 0.0), point(2, 1.0), point(3, 2.0)];
        let edit = Edit {
            upsert: vec![point(2, 9.0), point(4, 4.0)],
            delete: vec![FeatureId::Number(3.into())],
        };
        let applied = edit.apply(base.clone()).expect("applies");
        assert_eq!(
            applied.features,
            vec![point(1, 0.0), point(2, 9.0), point(4, 4.0)]
        );
        assert_eq!(applied.before, vec![point(2, 1.0), point(3, 2.0)]);
        assert_eq!(applied.after, edit.upsert);
        let missing = Edit {
            upsert: vec![],
            delete: vec![FeatureId::String("7".into())],
        };
        let err = missing.apply(base).unwrap_err();
        assert!(err.contains("no feature with id \"7\""), "{err}");
    }

    #[test]
    fn bad_edits_say_what_and_where() {
        for (input, expect) in [
            ("[", "not valid JSON"),
            ("[]", "must be a JSON object"),
            ("{}", "the edit is empty"),
            (r#"{"upserts":{}}"#, "unknown member \"upserts\""),
            (r#"{"upsert":{"type":"Feature"}}"#, "FeatureCollection"),
            (r#"{"delete":[true]}"#, "delete[0]"),
            (r#"{"delete":[1,1]}"#, "delete[1]: id 1"),
            (
                r#"{"upsert":{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[0,0]}}]}}"#,
                "upsert.features[0]: a feature to upsert needs an \"id\"",
            ),
            (
                r#"{"upsert":{"type":"FeatureCollection","features":[{"type":"Feature","id":1,"properties":{},"geometry":{"type":"Point","coordinates":[0]}}]}}"#,
                "upsert.features[0]",
            ),
        ] {
            let err = Edit::from_json(input.as_bytes()).unwrap_err();
            assert!(err.contains(expect), "{input}: {err}");
        }
        let ok = Edit::from_json(br#"{"delete":["a",2]}"#).expect("valid");
        assert_eq!(Edit::from_json(ok.to_json().to_string().as_bytes()), Ok(ok));
    }

    #[test]
    fn masks_round_trip_and_merge() {
        let meta = MetaTile {
            z: 5,
            x: 8,
            y: 16,
            n: 8,
        };
        let tiles = vec![
            TileId { z: 5, x: 8, y: 16 },
            TileId { z: 5, x: 15, y: 23 },
            TileId { z: 5, x: 10, y: 17 },
        ];
        let m = mask(meta, &tiles);
        let mut back = tiles_in(meta, Some(&m));
        back.sort();
        let mut want = tiles.clone();
        want.sort();
        assert_eq!(back, want);
        let a = RenderTask {
            dirty: Some(mask(meta, &tiles[..1])),
            tiles: 1,
            z: 5,
            x: 8,
            y: 16,
            n: 8,
            replaces: true,
            changed: None,
        };
        let b = RenderTask {
            dirty: Some(mask(meta, &tiles[1..])),
            tiles: 2,
            ..a.clone()
        };
        let merged = merge_tasks(vec![a.clone()], vec![b], 8);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].tiles, 3);
        let every: Vec<TileId> = meta.tiles().collect();
        let all = merge_tasks(vec![a], vec![partial(meta, &every, false)], 8);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].tiles, 64);
        assert!(all[0].replaces);
        assert_eq!(tiles_in(block(&all[0]), all[0].dirty.as_deref()), every);
    }
}
