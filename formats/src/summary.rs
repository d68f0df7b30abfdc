//! What the uploader learns of an upload once it is read: format, source CRS,
//! feature count, geometry types, bounds, attributes, and the features left
//! out with their reasons (the first ones, and the count of the rest).

use std::collections::BTreeMap;

use geo::{BoundingRect, Geometry};
use serde::Serialize;
use serde_json::Value;

use crate::Upload;

/// Reasons listed in full; the rest are counted.
const LISTED: usize = 20;

#[derive(Debug, Serialize)]
pub struct Summary {
    pub format: String,
    pub crs: String,
    /// The table or Shapefile read, and all those the upload holds when several.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    pub features: usize,
    /// Features by geometry type (`Polygon`, `MultiLineString`, ..., `null`).
    pub geometry_types: BTreeMap<String, usize>,
    /// `[west, south, east, north]` in WGS84 degrees.
    pub bounds: Option<[f64; 4]>,
    /// Attribute names and the JSON types their values have.
    pub attributes: BTreeMap<String, Vec<&'static str>>,
    pub skipped: Skipped,
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub count: usize,
    /// The first reasons, `where: what`.
    pub first: Vec<String>,
}

fn type_name(g: &Geometry<f64>) -> &'static str {
    match g {
        Geometry::Point(_) => "Point",
        Geometry::Line(_) | Geometry::LineString(_) => "LineString",
        Geometry::Polygon(_) | Geometry::Rect(_) | Geometry::Triangle(_) => "Polygon",
        Geometry::MultiPoint(_) => "MultiPoint",
        Geometry::MultiLineString(_) => "MultiLineString",
        Geometry::MultiPolygon(_) => "MultiPolygon",
        Geometry::GeometryCollection(_) => "GeometryCollection",
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Upload {
    /// The summary of what was read.
    pub fn summary(&self) -> Summary {
        let mut geometry_types = BTreeMap::new();
        let mut attributes: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        let mut bounds: Option<[f64; 4]> = None;
        for f in &self.report.features {
            let name = f.geometry.as_ref().map_or("null", type_name);
            *geometry_types.entry(name.to_string()).or_insert(0) += 1;
            if let Some(r) = f.geometry.as_ref().and_then(BoundingRect::bounding_rect) {
                let b = bounds.get_or_insert([r.min().x, r.min().y, r.max().x, r.max().y]);
                *b = [
                    b[0].min(r.min().x),
                    b[1].min(r.min().y),
                    b[2].max(r.max().x),
                    b[3].max(r.max().y),
                ];
            }
            for (k, v) in &f.properties {
                let types = attributes.entry(k.clone()).or_default();
                let t = json_type(v);
                if !types.contains(&t) {
                    types.push(t);
                }
            }
        }
        let skipped = &self.report.skipped;
        Summary {
            format: self.format.name().to_string(),
            crs: self.crs.clone(),
            layer: self.layer.clone(),
            layers: self.layers.clone(),
            features: self.report.features.len(),
            geometry_types,
            bounds,
            attributes,
            skipped: Skipped {
                count: skipped.len(),
                first: skipped
                    .iter()
                    .take(LISTED)
                    .map(ToString::to_string)
                    .collect(),
            },
        }
    }
}
