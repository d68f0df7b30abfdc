//! The features a layer is made of, as read from GeoJSON (longitude/latitude).

use std::fmt;

use geo::{Coord, Geometry, LineString, Polygon};
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

impl Feature {
    /// The feature as a GeoJSON Feature object; reading it back gives the same
    /// feature (coordinates round-trip exactly).
    pub fn to_geojson(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("type".into(), Value::String("Feature".into()));
        match &self.id {
            Some(FeatureId::String(s)) => obj.insert("id".into(), Value::String(s.clone())),
            Some(FeatureId::Number(n)) => obj.insert("id".into(), Value::Number(n.clone())),
            None => None,
        };
        obj.insert("properties".into(), Value::Object(self.properties.clone()));
        obj.insert(
            "geometry".into(),
            self.geometry
                .as_ref()
                .map_or(Value::Null, geometry_to_geojson),
        );
        Value::Object(obj)
    }
}

fn position(c: Coord<f64>) -> Value {
    serde_json::json!([c.x, c.y])
}

fn line(l: &LineString<f64>) -> Value {
    Value::Array(l.0.iter().copied().map(position).collect())
}

fn polygon(p: &Polygon<f64>) -> Value {
    Value::Array(
        std::iter::once(p.exterior())
            .chain(p.interiors())
            .map(line)
            .collect(),
    )
}

/// A geometry as a GeoJSON geometry object.
pub fn geometry_to_geojson(g: &Geometry<f64>) -> Value {
    let (kind, coordinates) = match g {
        Geometry::Point(p) => ("Point", position(p.0)),
        Geometry::MultiPoint(m) => (
            "MultiPoint",
            Value::Array(m.0.iter().map(|p| position(p.0)).collect()),
        ),
        Geometry::LineString(l) => ("LineString", line(l)),
        Geometry::MultiLineString(m) => (
            "MultiLineString",
            Value::Array(m.0.iter().map(line).collect()),
        ),
        Geometry::Polygon(p) => ("Polygon", polygon(p)),
        Geometry::MultiPolygon(m) => (
            "MultiPolygon",
            Value::Array(m.0.iter().map(polygon).collect()),
        ),
        Geometry::GeometryCollection(c) => {
            return serde_json::json!({
                "type": "GeometryCollection",
                "geometries": c.0.iter().map(geometry_to_geojson).collect::<Vec<_>>(),
            });
        }
        Geometry::Line(l) => ("LineString", line(&LineString(vec![l.start, l.end]))),
        Geometry::Rect(r) => ("Polygon", polygon(&r.to_polygon())),
        Geometry::Triangle(t) => ("Polygon", polygon(&t.to_polygon())),
    };
    serde_json::json!({ "type": kind, "coordinates": coordinates })
}
