//! `GET /v1/layers/{id}/features?lon=..&lat=..&zoom=..&radius_px=..`: the
//! features of a layer's published version at a point, as a map shows them, so
//! a person can click one to see its properties and edit it.

use axum::Json;
use axum::extract::{Path, Query, State};
use object_store::ObjectStoreExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tilefarm_queue::DEEPEST_ZOOM;
use tilefarm_renderer::{MAX_LATITUDE, lonlat_to_unit};

use crate::jobs::parse_id;
use crate::{ApiError, ApiResult, AppState};

/// The most features one look-up answers.
const MAX_FEATURES: usize = 20;
/// The widest reach a look-up may ask for, in pixels.
const MAX_RADIUS_PX: f64 = 64.0;

#[derive(Debug, Deserialize)]
pub struct AtQuery {
    lon: f64,
    lat: f64,
    /// The map's zoom, which sets how far `radius_px` reaches; the layer's
    /// deepest zoom when absent.
    zoom: Option<f64>,
    /// How near (in 256 px tile pixels at `zoom`) a line or point must pass;
    /// a polygon is found from inside. 5 when absent.
    radius_px: Option<f64>,
}

/// `GET /v1/layers/{id}/features`: the features of the published version whose
/// geometry is within `radius_px` of the point (containing it, for polygons),
/// nearest first, at most 20, each with its id, properties and geometry type.
pub async fn at(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<AtQuery>,
) -> ApiResult<Json<Value>> {
    let layer_id = parse_id("layer", &id)?;
    if !(q.lon.is_finite() && (-90.0..=90.0).contains(&q.lat)) {
        return Err(ApiError::bad_request(
            "invalid_point",
            format!(
                "lon={}, lat={} is not a point: lat must be within -90..90",
                q.lon, q.lat
            ),
        ));
    }
    let radius = q.radius_px.unwrap_or(5.0);
    if !(0.0..=MAX_RADIUS_PX).contains(&radius) {
        return Err(ApiError::bad_request(
            "invalid_radius",
            format!("radius_px={radius} is not within 0-{MAX_RADIUS_PX}"),
        ));
    }
    let layer = state.store.layer(layer_id).await?.ok_or_else(|| {
        ApiError::not_found("unknown_layer", format!("there is no layer {layer_id}"))
    })?;
    let Some(version) = layer.published_version else {
        return Err(ApiError::not_found(
            "layer_not_ready",
            format!("layer {layer_id} has not finished rendering yet"),
        ));
    };
    let zoom = q.zoom.unwrap_or(f64::from(layer.max_zoom));
    if !(0.0..=f64::from(DEEPEST_ZOOM)).contains(&zoom) {
        return Err(ApiError::bad_request(
            "invalid_zoom",
            format!("zoom={zoom} is not within 0-{DEEPEST_ZOOM}"),
        ));
    }
    let key = state.objects.prepared_key(layer_id, version);
    let data = state
        .objects
        .store
        .get(&key)
        .await
        .map_err(|e| ApiError::internal("the layer's features could not be read", e))?
        .bytes()
        .await
        .map_err(|e| ApiError::internal("the layer's features could not be read", e))?;
    let world = 256.0 * zoom.exp2();
    let lon = (q.lon + 180.0).rem_euclid(360.0) - 180.0;
    let (x, y) = lonlat_to_unit(lon, q.lat.clamp(-MAX_LATITUDE, MAX_LATITUDE));
    let point = (x * world, y * world);
    let found = tokio::task::spawn_blocking(move || features_at(&data, point, world, radius))
        .await
        .map_err(|e| ApiError::internal("the feature look-up failed", e))?
        .map_err(|e| ApiError::internal("the layer's features could not be read", e))?;
    Ok(Json(json!({
        "layer_id": layer_id,
        "version": version,
        "features": found,
    })))
}

/// The features of a GeoJSONSeq text within `radius` pixels of `point`, in
/// pixels of a world `world` pixels wide; the topmost (drawn last) first among
/// equally near ones.
fn features_at(
    data: &[u8],
    point: (f64, f64),
    world: f64,
    radius: f64,
) -> Result<Vec<Value>, String> {
    let mut hits: Vec<(f64, usize, Value)> = Vec::new();
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_prefix(b"\x1e").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let feature: Value =
            serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let Some(geometry) = feature.get("geometry").filter(|g| !g.is_null()) else {
            continue;
        };
        let shape = Shape::of(geometry, world);
        let kind = geometry.get("type").cloned().unwrap_or(Value::Null);
        // The point and its copies a world away, for data across the antimeridian.
        let distance = [-world, 0.0, world]
            .into_iter()
            .map(|dx| shape.distance((point.0 + dx, point.1), radius))
            .fold(f64::INFINITY, f64::min);
        if distance <= radius {
            let Value::Object(mut f) = feature else {
                continue;
            };
            hits.push((
                distance,
                i,
                json!({
                    "id": f.remove("id").unwrap_or(Value::Null),
                    "properties": f.remove("properties").unwrap_or(json!({})),
                    "geometry_type": kind,
                    "distance_px": (distance * 10.0).round() / 10.0,
                }),
            ));
        }
    }
    hits.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
    Ok(hits
        .into_iter()
        .take(MAX_FEATURES)
        .map(|(_, _, v)| v)
        .collect())
}

/// A geometry in world pixels: points, lines, and polygons (rings, filled
/// even-odd as the renderer fills them).
#[derive(Default)]
struct Shape {
    points: Vec<(f64, f64)>,
    lines: Vec<Vec<(f64, f64)>>,
    polygons: Vec<Vec<Vec<(f64, f64)>>>,
    /// `[min_x, min_y, max_x, max_y]`
    bbox: [f64; 4],
}

impl Shape {
    fn of(geometry: &Value, world: f64) -> Shape {
        let mut shape = Shape {
            bbox: [f64::INFINITY, f64::INFINITY, -f64::INFINITY, -f64::INFINITY],
            ..Shape::default()
        };
        shape.add(geometry, world);
        shape
    }

    fn position(&mut self, c: &Value, world: f64) -> Option<(f64, f64)> {
        let (lon, lat) = (c.get(0)?.as_f64()?, c.get(1)?.as_f64()?);
        let (x, y) = lonlat_to_unit(lon, lat);
        let p = (x * world, y * world);
        self.bbox = [
            self.bbox[0].min(p.0),
            self.bbox[1].min(p.1),
            self.bbox[2].max(p.0),
            self.bbox[3].max(p.1),
        ];
        Some(p)
    }

    fn line(&mut self, c: &Value, world: f64) -> Vec<(f64, f64)> {
        c.as_array()
            .map(|a| a.iter().filter_map(|p| self.position(p, world)).collect())
            .unwrap_or_default()
    }

    fn polygon(&mut self, c: &Value, world: f64) -> Vec<Vec<(f64, f64)>> {
        c.as_array()
            .map(|rings| rings.iter().map(|r| self.line(r, world)).collect())
            .unwrap_or_default()
    }

    fn add(&mut self, g: &Value, world: f64) {
        let c = g.get("coordinates").unwrap_or(&Value::Null);
        let many = || c.as_array().cloned().unwrap_or_default();
        match g.get("type").and_then(Value::as_str) {
            Some("Point") => {
                if let Some(p) = self.position(c, world) {
                    self.points.push(p);
                }
            }
            Some("MultiPoint") => {
                for p in many() {
                    if let Some(p) = self.position(&p, world) {
                        self.points.push(p);
                    }
                }
            }
            Some("LineString") => {
                let l = self.line(c, world);
                self.lines.push(l);
            }
            Some("MultiLineString") => {
                for l in many() {
                    let l = self.line(&l, world);
                    self.lines.push(l);
                }
            }
            Some("Polygon") => {
                let p = self.polygon(c, world);
                self.polygons.push(p);
            }
            Some("MultiPolygon") => {
                for p in many() {
                    let p = self.polygon(&p, world);
                    self.polygons.push(p);
                }
            }
            Some("GeometryCollection") => {
                for g in g
                    .get("geometries")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                {
                    self.add(&g, world);
                }
            }
            _ => {}
        }
    }

    /// How far `p` is from the shape, 0 inside a polygon; anything past
    /// `reach` may be reported as infinite.
    fn distance(&self, p: (f64, f64), reach: f64) -> f64 {
        let [x0, y0, x1, y1] = self.bbox;
        if p.0 < x0 - reach || p.0 > x1 + reach || p.1 < y0 - reach || p.1 > y1 + reach {
            return f64::INFINITY;
        }
        let mut best = f64::INFINITY;
        for polygon in &self.polygons {
            if polygon.iter().filter(|ring| crosses(ring, p)).count() % 2 == 1 {
                return 0.0;
            }
            for ring in polygon {
                best = best.min(to_line(ring, p, true));
            }
        }
        for line in &self.lines {
            best = best.min(to_line(line, p, false));
        }
        for q in &self.points {
            best = best.min(((p.0 - q.0).powi(2) + (p.1 - q.1).powi(2)).sqrt());
        }
        best
    }
}

/// Whether a ray from `p` to the east crosses `ring` an odd number of times.
fn crosses(ring: &[(f64, f64)], p: (f64, f64)) -> bool {
    let mut inside = false;
    let n = ring.len();
    for i in 0..n {
        let (a, b) = (ring[i], ring[(i + 1) % n]);
        if (a.1 > p.1) != (b.1 > p.1) {
            let x = a.0 + (p.1 - a.1) / (b.1 - a.1) * (b.0 - a.0);
            if p.0 < x {
                inside = !inside;
            }
        }
    }
    inside
}

/// The distance from `p` to a polyline (closed when `ring`).
fn to_line(line: &[(f64, f64)], p: (f64, f64), ring: bool) -> f64 {
    let mut best = f64::INFINITY;
    let segments = line.windows(2).map(|w| (w[0], w[1])).chain(
        ring.then(|| (line[line.len() - 1], line[0]))
            .filter(|_| line.len() > 2),
    );
    for (a, b) in segments {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = dx * dx + dy * dy;
        let t = if len2 == 0.0 {
            0.0
        } else {
            (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
        };
        let (cx, cy) = (a.0 + t * dx, a.1 + t * dy);
        best = best.min(((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt());
    }
    if line.len() == 1 {
        best = ((p.0 - line[0].0).powi(2) + (p.1 - line[0].1).powi(2)).sqrt();
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORLD: f64 = 256.0 * 16.0; // zoom 4

    fn px(lon: f64, lat: f64) -> (f64, f64) {
        let (x, y) = lonlat_to_unit(lon, lat);
        (x * WORLD, y * WORLD)
    }

    fn seq(features: &[Value]) -> Vec<u8> {
        features
            .iter()
            .flat_map(|f| {
                let mut line = serde_json::to_vec(f).unwrap();
                line.push(b'\n');
                line
            })
            .collect()
    }

    fn ids(found: &[Value]) -> Vec<Value> {
        found.iter().map(|f| f["id"].clone()).collect()
    }

    #[test]
    fn finds_the_polygon_around_the_point_and_lines_and_points_within_reach() {
        let data = seq(&[
            json!({"type": "Feature", "id": "square", "properties": {"name": "sq"},
                   "geometry": {"type": "Polygon", "coordinates": [[[0,0],[10,0],[10,10],[0,10],[0,0]],
                                                                    [[4,4],[6,4],[6,6],[4,6],[4,4]]]}}),
            json!({"type": "Feature", "id": 7, "properties": {},
                   "geometry": {"type": "LineString", "coordinates": [[2,-20],[2,20]]}}),
            json!({"type": "Feature", "id": "far", "properties": {},
                   "geometry": {"type": "Point", "coordinates": [100, 40]}}),
            json!({"type": "Feature", "properties": {}, "geometry": null}),
        ]);
        // Inside the square, away from the line: the square only.
        let found = features_at(&data, px(8.0, 8.0), WORLD, 5.0).unwrap();
        assert_eq!(ids(&found), [json!("square")]);
        assert_eq!(found[0]["properties"]["name"], "sq");
        assert_eq!(found[0]["geometry_type"], "Polygon");
        // On the line inside the square: both, the line (drawn later) first.
        let found = features_at(&data, px(2.0, 5.0), WORLD, 5.0).unwrap();
        assert_eq!(ids(&found), [json!(7), json!("square")]);
        // In the hole: not inside; the hole's edge is more than 5 px away.
        assert!(
            features_at(&data, px(5.0, 5.0), WORLD, 5.0)
                .unwrap()
                .is_empty()
        );
        // Near the point, and a world away from it.
        let (x, y) = px(100.0, 40.0);
        assert_eq!(
            ids(&features_at(&data, (x + 3.0, y), WORLD, 5.0).unwrap()),
            [json!("far")]
        );
        assert_eq!(
            ids(&features_at(&data, (x + 3.0 - WORLD, y), WORLD, 5.0).unwrap()),
            [json!("far")]
        );
        assert!(
            features_at(&data, (x + 8.0, y), WORLD, 5.0)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn answers_at_most_twenty_and_names_a_bad_line() {
        let many: Vec<Value> = (0..30)
            .map(|i| {
                json!({"type": "Feature", "id": i, "properties": {},
                            "geometry": {"type": "Point", "coordinates": [1, 1]}})
            })
            .collect();
        let found = features_at(&seq(&many), px(1.0, 1.0), WORLD, 2.0).unwrap();
        assert_eq!(found.len(), MAX_FEATURES);
        assert_eq!(found[0]["id"], 29);
        let err = features_at(b"{\"type\": \"Feature\"}\n{oops\n", (0.0, 0.0), WORLD, 2.0);
        assert!(err.unwrap_err().starts_with("line 2:"));
    }
}
