//! The features a layer is made of, as read from GeoJSON (longitude/latitude).

use std::fmt;

use geo::Geometry;
use serde_json::{Map, Value};

/// A GeoJSON feature id: a string or a number.
#[derive(Clone, Debug, PartialEq)]
pub enum FeatureId {
    String(String),
    Number(serde_json::Number),
}

impl fmt::Display for FeatureId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureId::String(s) => write!(f, "{s:?}"),
            FeatureId::Number(n) => write!(f, "{n}"),
        }
    }
}

/// One feature: an optional id, its properties and its geometry in WGS84 degrees.
/// A feature whose GeoJSON geometry is `null` has `geometry: None`.
#[derive(Clone, Debug, PartialEq)]
pub struct Feature {
    pub id: Option<FeatureId>,
    pub properties: Map<String, Value>,
    pub geometry: Option<Geometry<f64>>,
}

impl Feature {
    /// A feature with a geometry and no id or properties.
    pub fn from_geometry(geometry: Geometry<f64>) -> Self {
        Self {
            id: None,
            properties: Map::new(),
            geometry: Some(geometry),
        }
    }

    /// A property by name, if present.
    pub fn property(&self, name: &str) -> Option<&Value> {
        self.properties.get(name)
    }
}
