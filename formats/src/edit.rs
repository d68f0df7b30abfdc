//! The edit format: features to add or replace and ids to delete, addressed
//! by their GeoJSON `id`, and applying an edit to a layer's features.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use tilefarm_renderer::{Feature, FeatureId, InvalidFeature, feature_from_value};

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
    pub fn from_json(bytes: &[u8]) -> Result<Edit, EditError> {
        let value: Value = serde_json::from_slice(bytes).map_err(EditError::NotJson)?;
        let Value::Object(mut obj) = value else {
            return Err(EditError::NotAnObject);
        };
        if let Some(key) = obj.keys().find(|k| *k != "upsert" && *k != "delete") {
            return Err(EditError::UnknownMember(key.clone()));
        }
        let mut edit = Edit::default();
        match obj.remove("upsert") {
            None | Some(Value::Null) => {}
            Some(Value::Object(mut fc)) => {
                if fc.get("type").and_then(Value::as_str) != Some("FeatureCollection") {
                    return Err(EditError::UpsertNotACollection);
                }
                let Some(Value::Array(features)) = fc.remove("features") else {
                    return Err(EditError::NoFeaturesArray);
                };
                for (index, f) in features.into_iter().enumerate() {
                    let feature = feature_from_value(f)
                        .map_err(|source| EditError::BadFeature { index, source })?;
                    if feature.id.is_none() {
                        return Err(EditError::NoId { index });
                    }
                    edit.upsert.push(feature);
                }
            }
            Some(_) => return Err(EditError::UpsertNotACollection),
        }
        match obj.remove("delete") {
            None | Some(Value::Null) => {}
            Some(Value::Array(ids)) => {
                for (index, id) in ids.into_iter().enumerate() {
                    edit.delete.push(match id {
                        Value::String(s) => FeatureId::String(s),
                        Value::Number(n) => FeatureId::Number(n),
                        _ => return Err(EditError::BadId { index }),
                    });
                }
            }
            Some(_) => return Err(EditError::DeleteNotAnArray),
        }
        let mut seen = HashSet::new();
        for (index, f) in edit.upsert.iter().enumerate() {
            let id = f.id.as_ref().expect("checked");
            if !seen.insert(key(id)) {
                return Err(EditError::UpsertedTwice {
                    index,
                    id: id.clone(),
                });
            }
        }
        for (index, id) in edit.delete.iter().enumerate() {
            if !seen.insert(key(id)) {
                return Err(EditError::DeletedTwice {
                    index,
                    id: id.clone(),
                });
            }
        }
        if edit.upsert.is_empty() && edit.delete.is_empty() {
            return Err(EditError::Empty);
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
    pub fn apply(&self, features: Vec<Feature>) -> Result<Applied, UnknownFeature> {
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
            return Err(UnknownFeature(id.clone()));
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

/// What is wrong with an edit ([`Edit::from_json`]), and where.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("the edit is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("the edit must be a JSON object with \"upsert\" and/or \"delete\"")]
    NotAnObject,
    #[error("unknown member {0:?}: an edit has only \"upsert\" and \"delete\"")]
    UnknownMember(String),
    #[error("upsert: must be a GeoJSON FeatureCollection")]
    UpsertNotACollection,
    #[error("upsert: a FeatureCollection needs a \"features\" array")]
    NoFeaturesArray,
    #[error("upsert.features[{index}]: {source}")]
    BadFeature {
        index: usize,
        #[source]
        source: InvalidFeature,
    },
    #[error("upsert.features[{index}]: a feature to upsert needs an \"id\"")]
    NoId { index: usize },
    #[error("upsert.features[{index}]: id {id} appears twice")]
    UpsertedTwice { index: usize, id: FeatureId },
    #[error("delete: must be an array of feature ids")]
    DeleteNotAnArray,
    #[error("delete[{index}]: an id is a string or a number")]
    BadId { index: usize },
    #[error("delete[{index}]: id {id} is upserted or deleted twice in one edit")]
    DeletedTwice { index: usize, id: FeatureId },
    #[error("the edit is empty: give features to \"upsert\" or ids to \"delete\"")]
    Empty,
}

/// An edit deletes an id the layer does not have ([`Edit::apply`]).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("delete: the layer has no feature with id {0}")]
pub struct UnknownFeature(pub FeatureId);

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
        assert_eq!(err, UnknownFeature(FeatureId::String("7".into())));
        assert!(
            err.to_string().contains("no feature with id \"7\""),
            "{err}"
        );
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
            let err = Edit::from_json(input.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expect), "{input}: {err}");
        }
        let bad_point = r#"{"upsert":{"type":"FeatureCollection","features":[{"type":"Feature","id":1,"properties":{},"geometry":{"type":"Point","coordinates":[0]}}]}}"#;
        let err = Edit::from_json(bad_point.as_bytes()).unwrap_err();
        assert!(
            matches!(err, EditError::BadFeature { index: 0, .. }),
            "{err:?}"
        );
        let cause = std::error::Error::source(&err).expect("the feature's error");
        assert!(cause.to_string().contains("coordinates"), "{cause}");
        let ok = Edit::from_json(br#"{"delete":["a",2]}"#).expect("valid");
        let again = Edit::from_json(ok.to_json().to_string().as_bytes()).expect("valid");
        assert_eq!(again, ok);
    }
}
