//! The edit format: features to add or replace and ids to delete, addressed
//! by their GeoJSON `id`, and applying an edit to a layer's features.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use tilefarm_renderer::{Feature, FeatureId, feature_from_value};

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
}
