//! Integration tests for the streaming GeoJSON reader: every kind of bad input is
//! refused with a message that says where the problem is and what it is, and every
//! kind of good input becomes the right features.

use std::io::{self, Read};

use geo::{Coord, Geometry, LineString, Point, Polygon};
use serde_json::json;
use tilefarm_renderer::{Feature, FeatureId, InputError, OnInvalid, ReadOptions, read_geojson};

fn read(text: &str) -> Result<Vec<Feature>, InputError> {
    read_geojson(text.as_bytes(), &ReadOptions::default()).map(|r| r.features)
}

fn skip() -> ReadOptions {
    ReadOptions {
        on_invalid: OnInvalid::Skip,
    }
}

fn c(x: f64, y: f64) -> Coord<f64> {
    Coord { x, y }
}

fn ls(points: &[(f64, f64)]) -> LineString<f64> {
    LineString(points.iter().map(|&(x, y)| c(x, y)).collect())
}

/// A FeatureCollection whose only feature has `geometry`.
fn fc_with_geometry(geometry: &str) -> String {
    format!(
        r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","properties":{{}},"geometry":{geometry}}}]}}"#
    )
}

/// A FeatureCollection with two good features followed by `feature` (so it is `features[2]`).
fn fc_third(feature: &str) -> String {
    format!(
        r#"{{"type":"FeatureCollection","features":[
{{"type":"Feature","properties":{{}},"geometry":{{"type":"Point","coordinates":[1,2]}}}},
{{"type":"Feature","properties":{{}},"geometry":{{"type":"Point","coordinates":[3,4]}}}},
{feature}
]}}"#
    )
}

const POINT: &str = r#"{"type":"Point","coordinates":[1,2]}"#;

struct Bad {
    name: &'static str,
    input: String,
    expect: &'static [&'static str],
}

fn bad(name: &'static str, input: impl Into<String>, expect: &'static [&'static str]) -> Bad {
    Bad {
        name,
        input: input.into(),
        expect,
    }
}

fn bad_inputs() -> Vec<Bad> {
    vec![
        bad(
            "not JSON",
            "hello world",
            &["line 1, column 1", "not valid JSON"],
        ),
        bad("empty input", "", &["input is empty"]),
        bad("whitespace only", " \n\t\r\n  \n", &["input is empty"]),
        bad(
            "top-level array",
            "[1, 2, 3]",
            &["line 1, column", "invalid type: sequence", "GeoJSON object"],
        ),
        bad(
            "top-level number",
            "\n  42",
            &["line 2, column", "invalid type", "GeoJSON object"],
        ),
        bad(
            "top-level string",
            r#""Feature""#,
            &["line 1, column", "invalid type: string", "GeoJSON object"],
        ),
        bad(
            "top-level null",
            "null",
            &["line 1, column", "invalid type: null", "GeoJSON object"],
        ),
        bad(
            "missing type",
            r#"{"features": []}"#,
            &["line 1, column", "no \"type\" member"],
        ),
        bad(
            "type not a string",
            r#"{"type": 7, "coordinates": [1, 2]}"#,
            &["line 1", "\"type\" must be a string, found a number"],
        ),
        bad(
            "unknown type",
            r#"{"type": "Circle", "coordinates": [1, 2], "radius": 3}"#,
            &["unknown type \"Circle\"", "expected Point"],
        ),
        bad(
            "collection without features",
            r#"{"type": "FeatureCollection"}"#,
            &["line 1", "FeatureCollection has no \"features\" member"],
        ),
        bad(
            "features not an array",
            "{\"type\": \"FeatureCollection\",\n \"features\": {\"a\": 1}}",
            &[
                "line 2, column",
                "invalid type: map",
                "\"features\" to be an array",
            ],
        ),
        bad(
            "features on a Feature",
            r#"{"type": "Feature", "features": [], "geometry": null}"#,
            &["type \"Feature\" has a \"features\" member"],
        ),
        bad(
            "feature not an object",
            fc_third("17"),
            &["features[2]", "a feature must be an object, found a number"],
        ),
        bad(
            "feature as an array",
            fc_third("[]"),
            &["features[2]", "a feature must be an object, found an array"],
        ),
        bad(
            "feature with wrong type",
            fc_third(r#"{"type": "Point", "coordinates": [1, 2]}"#),
            &[
                "features[2]",
                "expected an object of type \"Feature\", found type \"Point\"",
            ],
        ),
        bad(
            "feature without type",
            fc_third(r#"{"properties": {}, "geometry": null}"#),
            &["features[2]", "feature has no \"type\" member"],
        ),
        bad(
            "feature without geometry member",
            fc_third(r#"{"type": "Feature", "id": "FRA", "properties": {}}"#),
            &["features[2]", "id \"FRA\"", "no \"geometry\" member"],
        ),
        bad(
            "geometry without coordinates",
            fc_with_geometry(r#"{"type": "Polygon"}"#),
            &[
                "features[0]",
                "geometry of type \"Polygon\" has no \"coordinates\"",
            ],
        ),
        bad(
            "geometry with null coordinates",
            fc_with_geometry(r#"{"type": "LineString", "coordinates": null}"#),
            &[
                "features[0]",
                "geometry of type \"LineString\" has no \"coordinates\"",
            ],
        ),
        bad(
            "geometry not an object",
            fc_with_geometry("[1, 2]"),
            &["features[0]", "geometry must be an object, found an array"],
        ),
        bad(
            "geometry with unknown type",
            fc_with_geometry(r#"{"type": "Square", "coordinates": [1, 2]}"#),
            &["features[0]", "geometry has unknown type \"Square\""],
        ),
        bad(
            "coordinates not an array",
            fc_with_geometry(r#"{"type": "Point", "coordinates": "1, 2"}"#),
            &[
                "features[0]",
                "geometry.coordinates: expected an array, found a string",
            ],
        ),
        bad(
            "position with one number",
            fc_with_geometry(r#"{"type": "Point", "coordinates": [12.5]}"#),
            &[
                "features[0]",
                "geometry.coordinates:",
                "needs at least longitude and latitude, found 1",
            ],
        ),
        bad(
            "position with a string",
            fc_with_geometry(r#"{"type": "LineString", "coordinates": [[0, 0], [1, "2"]]}"#),
            &[
                "features[0]",
                "geometry.coordinates[1][1]: expected a number, found a string",
            ],
        ),
        bad(
            "longitude out of range",
            fc_with_geometry(
                r#"{"type": "MultiPoint", "coordinates": [[0, 0], [10, 10], [181.5, 10]]}"#,
            ),
            &[
                "features[0]",
                "geometry.coordinates[2]:",
                "longitude 181.5 is outside -180..180",
            ],
        ),
        bad(
            "latitude out of range",
            fc_third(
                r#"{"type": "Feature", "id": 42, "properties": null, "geometry": {"type": "Point", "coordinates": [10, 95]}}"#,
            ),
            &[
                "features[2]",
                "id 42",
                "geometry.coordinates:",
                "latitude 95 is outside -90..90",
            ],
        ),
        bad(
            "swapped coordinates in a UTM-like dataset",
            fc_with_geometry(r#"{"type": "Point", "coordinates": [500000, 4649776]}"#),
            &["longitude 500000 is outside", "not in WGS84 degrees"],
        ),
        bad(
            "LineString with one position",
            fc_with_geometry(r#"{"type": "LineString", "coordinates": [[1, 1]]}"#),
            &[
                "features[0]",
                "geometry.coordinates:",
                "a line needs at least 2 positions, found 1",
            ],
        ),
        bad(
            "MultiLineString member with one position",
            fc_with_geometry(
                r#"{"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[2, 2]]]}"#,
            ),
            &[
                "geometry.coordinates[1]:",
                "a line needs at least 2 positions, found 1",
            ],
        ),
        bad(
            "ring with three positions",
            fc_with_geometry(r#"{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}"#),
            &[
                "geometry.coordinates[0]:",
                "a polygon ring needs at least 4 positions, found 3",
            ],
        ),
        bad(
            "unclosed hole",
            fc_third(
                r#"{"type": "Feature", "id": "FRA", "properties": {"name": "France"}, "geometry": {"type": "Polygon", "coordinates": [
                    [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]],
                    [[2, 2], [3, 2], [3, 3], [2, 3], [2, 2.5]]]}}"#,
            ),
            &[
                "features[2]",
                "id \"FRA\"",
                "geometry.coordinates[1]:",
                "not closed",
                "[2, 2]",
                "[2, 2.5]",
            ],
        ),
        bad(
            "unclosed ring in a MultiPolygon",
            fc_with_geometry(
                r#"{"type": "MultiPolygon", "coordinates": [
                    [[[0, 0], [1, 0], [1, 1], [0, 0]]],
                    [[[5, 5], [6, 5], [6, 6], [5, 6]]]]}"#,
            ),
            &["geometry.coordinates[1][0]:", "the ring is not closed"],
        ),
        bad(
            "polygon with no rings",
            fc_with_geometry(r#"{"type": "Polygon", "coordinates": []}"#),
            &[
                "geometry.coordinates:",
                "a polygon needs at least one ring, found none",
            ],
        ),
        bad(
            "GeometryCollection without geometries",
            fc_with_geometry(r#"{"type": "GeometryCollection"}"#),
            &["features[0]", "GeometryCollection without \"geometries\""],
        ),
        bad(
            "GeometryCollection with geometries not an array",
            fc_with_geometry(r#"{"type": "GeometryCollection", "geometries": {}}"#),
            &["geometry.geometries: must be an array, found an object"],
        ),
        bad(
            "bad member of a GeometryCollection",
            fc_with_geometry(
                r#"{"type": "GeometryCollection", "geometries": [
                    {"type": "Point", "coordinates": [0, 0]},
                    {"type": "LineString", "coordinates": [[0, 0], [0, -91]]}]}"#,
            ),
            &[
                "geometry.geometries[1].coordinates[1]:",
                "latitude -91 is outside",
            ],
        ),
        bad(
            "properties not an object",
            fc_third(r#"{"type": "Feature", "properties": ["a", "b"], "geometry": null}"#),
            &[
                "features[2]",
                "\"properties\" must be an object or null, found an array",
            ],
        ),
        bad(
            "id that is an object",
            fc_third(
                r#"{"type": "Feature", "id": {"code": "FRA"}, "properties": {}, "geometry": null}"#,
            ),
            &[
                "features[2]",
                "\"id\" must be a string or a number, found an object",
            ],
        ),
        bad(
            "id that is a boolean",
            fc_third(r#"{"type": "Feature", "id": true, "properties": {}, "geometry": null}"#),
            &[
                "features[2]",
                "\"id\" must be a string or a number, found a boolean",
            ],
        ),
        bad(
            "empty FeatureCollection",
            r#"{"type": "FeatureCollection", "features": []}"#,
            &["has no features"],
        ),
        bad(
            "truncated JSON",
            "{\"type\": \"FeatureCollection\", \"features\": [\n{\"type\": \"Feature\", \"geometry\": {\"type\": \"Point\",\n\"coordinates\": [1, ",
            &["line 3", "ends too early"],
        ),
        bad(
            "syntax error deep in a collection",
            "{\"type\": \"FeatureCollection\", \"features\": [\n{\"type\": \"Feature\", \"geometry\": null},\n{\"type\": \"Feature\", \"geometry\": null,}\n]}",
            &["line 3, column 38", "not valid JSON", "trailing comma"],
        ),
        bad(
            "bad record in a text sequence",
            format!(
                "{}\n{}\n{}\n",
                r#"{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [1, 2]}}"#,
                r#"{"type": "Feature", "id": "b", "properties": {}, "geometry": {"type": "Point", "coordinates": [1, 200]}}"#,
                r#"{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [1, 2]}}"#,
            ),
            &["record 2", "id \"b\"", "latitude 200 is outside"],
        ),
        bad(
            "syntax error in a later record",
            format!(
                "{POINT}\n{POINT}\n\n{{\"type\": \"Point\", \"coordinates\": [1 2]}}\n{POINT}\n"
            ),
            &["record 3", "line 4, column 37", "not valid JSON"],
        ),
        bad(
            "garbage after a collection",
            "{\"type\": \"FeatureCollection\", \"features\": [{\"type\": \"Feature\", \"geometry\": null}]}\nxyz",
            &["record 2", "line 2, column 1", "not valid JSON"],
        ),
    ]
}

#[test]
fn every_kind_of_bad_input_is_refused_with_where_and_what() {
    let cases = bad_inputs();
    assert!(cases.len() >= 24, "only {} bad inputs", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        match read(&case.input) {
            Ok(features) => failures.push(format!(
                "{}: accepted ({} features)",
                case.name,
                features.len()
            )),
            Err(e) => {
                let text = e.to_string();
                for want in case.expect {
                    if !text.contains(want) {
                        failures.push(format!("{}: {text:?} does not contain {want:?}", case.name));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_error_location_is_structured_too() {
    let e = read(&fc_third(
        r#"{"type": "Feature", "id": "FRA", "properties": {}, "geometry": {"type": "Point", "coordinates": [0, 99]}}"#,
    ))
    .unwrap_err();
    assert_eq!(e.location.feature, Some(2));
    assert_eq!(e.location.id.as_deref(), Some("\"FRA\""));
    assert_eq!(e.location.record, None);
    assert!(e.problem.contains("latitude 99"), "{}", e.problem);

    let e = read("{\"type\": \"FeatureCollection\",\n\"features\": [\n  {\"type\": \"Feature\" \"geometry\": null}]}")
        .unwrap_err();
    assert_eq!(
        (e.location.line, e.location.column),
        (Some(3), Some(22)),
        "{e}"
    );
}

// ---- good inputs -------------------------------------------------------------

fn only_geometry(text: &str) -> Geometry<f64> {
    let features = read(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(features.len(), 1);
    features
        .into_iter()
        .next()
        .unwrap()
        .geometry
        .expect("a geometry")
}

#[test]
fn all_seven_geometry_types_parse_to_the_right_variants() {
    assert_eq!(
        only_geometry(r#"{"type": "Point", "coordinates": [13.405, 52.52]}"#),
        Geometry::Point(Point::new(13.405, 52.52))
    );
    assert_eq!(
        only_geometry(r#"{"type": "Point", "coordinates": [-180, -90, 1234.5]}"#),
        Geometry::Point(Point::new(-180.0, -90.0)),
        "altitude is dropped"
    );
    match only_geometry(r#"{"type": "MultiPoint", "coordinates": [[1, 2], [3.5, -4]]}"#) {
        Geometry::MultiPoint(mp) => {
            assert_eq!(mp.0, vec![Point::new(1.0, 2.0), Point::new(3.5, -4.0)]);
        }
        other => panic!("not a MultiPoint: {other:?}"),
    }
    match only_geometry(r#"{"type": "LineString", "coordinates": [[0, 0], [10, 5], [20, -5]]}"#) {
        Geometry::LineString(l) => assert_eq!(l, ls(&[(0.0, 0.0), (10.0, 5.0), (20.0, -5.0)])),
        other => panic!("not a LineString: {other:?}"),
    }
    match only_geometry(
        r#"{"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], [[2, 2], [3, 3], [4, 2]]]}"#,
    ) {
        Geometry::MultiLineString(m) => {
            assert_eq!(m.0.len(), 2);
            assert_eq!(m.0[0], ls(&[(0.0, 0.0), (1.0, 1.0)]));
            assert_eq!(m.0[1], ls(&[(2.0, 2.0), (3.0, 3.0), (4.0, 2.0)]));
        }
        other => panic!("not a MultiLineString: {other:?}"),
    }
    match only_geometry(r#"{"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 3], [0, 0]]]}"#)
    {
        Geometry::Polygon(p) => {
            assert_eq!(
                p.exterior(),
                &ls(&[(0.0, 0.0), (4.0, 0.0), (4.0, 3.0), (0.0, 0.0)])
            );
            assert!(p.interiors().is_empty());
        }
        other => panic!("not a Polygon: {other:?}"),
    }
    match only_geometry(
        r#"{"type": "MultiPolygon", "coordinates": [
            [[[0, 0], [1, 0], [1, 1], [0, 0]]],
            [[[10, 10], [12, 10], [12, 12], [10, 12], [10, 10]], [[10.5, 10.5], [11, 10.5], [11, 11], [10.5, 10.5]]]]}"#,
    ) {
        Geometry::MultiPolygon(m) => {
            assert_eq!(m.0.len(), 2);
            assert_eq!(m.0[0].exterior().0.len(), 4);
            assert!(m.0[0].interiors().is_empty());
            assert_eq!(m.0[1].exterior().0[2], c(12.0, 12.0));
            assert_eq!(m.0[1].interiors().len(), 1);
            assert_eq!(m.0[1].interiors()[0].0[1], c(11.0, 10.5));
        }
        other => panic!("not a MultiPolygon: {other:?}"),
    }
    match only_geometry(
        r#"{"type": "GeometryCollection", "geometries": [
            {"type": "Point", "coordinates": [5, 6]},
            {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
            {"type": "GeometryCollection", "geometries": []}]}"#,
    ) {
        Geometry::GeometryCollection(gc) => {
            assert_eq!(gc.0.len(), 3);
            assert_eq!(gc.0[0], Geometry::Point(Point::new(5.0, 6.0)));
            assert_eq!(gc.0[1], Geometry::LineString(ls(&[(0.0, 0.0), (1.0, 1.0)])));
            assert!(matches!(&gc.0[2], Geometry::GeometryCollection(inner) if inner.0.is_empty()));
        }
        other => panic!("not a GeometryCollection: {other:?}"),
    }
}

#[test]
fn polygons_keep_their_holes_in_order() {
    let g = only_geometry(
        r#"{"type": "Polygon", "coordinates": [
            [[-10, -10], [10, -10], [10, 10], [-10, 10], [-10, -10]],
            [[-5, -5], [-1, -5], [-1, -1], [-5, -1], [-5, -5]],
            [[1, 1], [5, 1], [5, 5], [1, 1]]]}"#,
    );
    let expected = Polygon::new(
        ls(&[
            (-10.0, -10.0),
            (10.0, -10.0),
            (10.0, 10.0),
            (-10.0, 10.0),
            (-10.0, -10.0),
        ]),
        vec![
            ls(&[
                (-5.0, -5.0),
                (-1.0, -5.0),
                (-1.0, -1.0),
                (-5.0, -1.0),
                (-5.0, -5.0),
            ]),
            ls(&[(1.0, 1.0), (5.0, 1.0), (5.0, 5.0), (1.0, 1.0)]),
        ],
    );
    assert_eq!(g, Geometry::Polygon(expected));
}

#[test]
fn a_feature_collection_keeps_order_ids_and_properties() {
    let text = r#"{
        "type": "FeatureCollection",
        "name": "test",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
        "features": [
            {"type": "Feature", "id": "FRA", "properties": {"name": "France", "pop_est": 67059887},
             "geometry": {"type": "Point", "coordinates": [2.35, 48.85]}},
            {"type": "Feature", "id": 7, "properties": null,
             "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}},
            {"geometry": {"type": "Point", "coordinates": [-3.7, 40.4]}, "properties": {"name": "Spain"},
             "id": 2.5, "type": "Feature"},
            {"type": "Feature", "properties": {"note": "no geometry"}, "geometry": null}
        ],
        "bbox": [-180, -90, 180, 90]
    }"#;
    let report = read_geojson(text.as_bytes(), &ReadOptions::default()).unwrap();
    assert!(report.skipped.is_empty());
    let f = &report.features;
    assert_eq!(f.len(), 4);

    assert_eq!(f[0].id, Some(FeatureId::String("FRA".into())));
    assert_eq!(f[0].property("name"), Some(&json!("France")));
    assert_eq!(f[0].property("pop_est"), Some(&json!(67059887)));
    assert_eq!(
        f[0].geometry,
        Some(Geometry::Point(Point::new(2.35, 48.85)))
    );

    assert_eq!(f[1].id, Some(FeatureId::Number(7.into())));
    assert_eq!(f[1].id.as_ref().unwrap().to_string(), "7");
    assert!(f[1].properties.is_empty(), "null properties are empty");

    assert_eq!(
        f[2].id,
        Some(FeatureId::Number(
            serde_json::Number::from_f64(2.5).unwrap()
        ))
    );
    assert_eq!(f[2].property("name"), Some(&json!("Spain")));
    assert_eq!(f[2].geometry, Some(Geometry::Point(Point::new(-3.7, 40.4))));

    assert_eq!(f[3].geometry, None, "a null geometry is accepted as none");
    assert_eq!(f[3].id, None);
    assert_eq!(f[3].property("note"), Some(&json!("no geometry")));
}

#[test]
fn features_before_type_are_still_read() {
    // Members may come in any order; "features" before "type" is common.
    let text = r#"{"features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [1, 2]}}], "type": "FeatureCollection"}"#;
    let f = read(text).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].geometry, Some(Geometry::Point(Point::new(1.0, 2.0))));
}

#[test]
fn a_single_feature_and_a_bare_geometry_are_read() {
    let f = read(
        r#"{"type": "Feature", "id": "x", "properties": {"a": 1}, "geometry": {"type": "Point", "coordinates": [1, 2]}}"#,
    )
    .unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].id, Some(FeatureId::String("x".into())));
    assert_eq!(f[0].property("a"), Some(&json!(1)));
    assert_eq!(f[0].geometry, Some(Geometry::Point(Point::new(1.0, 2.0))));

    let f = read(r#"  {"coordinates": [[0, 0], [1, 1]], "type": "LineString"}  "#).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].id, None);
    assert!(f[0].properties.is_empty());
    assert_eq!(
        f[0].geometry,
        Some(Geometry::LineString(ls(&[(0.0, 0.0), (1.0, 1.0)])))
    );
}

#[test]
fn a_single_feature_with_null_geometry_is_accepted() {
    let f = read(r#"{"type": "Feature", "properties": {}, "geometry": null}"#).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].geometry, None);
}

#[test]
fn newline_delimited_geojson_is_read_record_by_record() {
    let text = concat!(
        r#"{"type": "Feature", "id": 1, "properties": {"n": "a"}, "geometry": {"type": "Point", "coordinates": [1, 1]}}"#,
        "\n",
        r#"{"type": "Feature", "id": 2, "properties": {"n": "b"}, "geometry": {"type": "Point", "coordinates": [2, 2]}}"#,
        "\r\n\n",
        r#"{"type": "Point", "coordinates": [3, 3]}"#,
        "\n",
        r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [4, 4]}}]}"#,
        "\n",
    );
    let f = read(text).unwrap();
    let xs: Vec<f64> = f
        .iter()
        .map(|f| match &f.geometry {
            Some(Geometry::Point(p)) => p.x(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(xs, vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(f[1].property("n"), Some(&json!("b")));
    assert_eq!(f[1].id, Some(FeatureId::Number(2.into())));

    // Records on one line, without newlines between them.
    let f = read(&format!("{POINT}{POINT} {POINT}")).unwrap();
    assert_eq!(f.len(), 3);
}

#[test]
fn rfc_8142_text_sequences_are_read() {
    let text = format!(
        "\x1e{}\n\x1e{}\n\x1e{}\n",
        r#"{"type": "Feature", "id": "a", "properties": {}, "geometry": {"type": "Point", "coordinates": [10, 20]}}"#,
        r#"{"type": "Feature", "id": "b", "properties": {}, "geometry": {"type": "LineString", "coordinates": [[0, 0], [5, 5]]}}"#,
        r#"{"type": "Feature", "id": "c", "properties": {}, "geometry": null}"#,
    );
    let f = read(&text).unwrap();
    assert_eq!(f.len(), 3);
    let ids: Vec<String> = f
        .iter()
        .map(|f| f.id.as_ref().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["\"a\"", "\"b\"", "\"c\""]);
    assert_eq!(f[0].geometry, Some(Geometry::Point(Point::new(10.0, 20.0))));
    assert_eq!(f[2].geometry, None);
}

#[test]
fn a_syntax_error_in_a_text_sequence_has_the_column_in_the_line() {
    // The record separator is the first character of the line, so the `2` that
    // should be a `,` or `]` is at column 38 of line 2.
    let text = format!("\x1e{POINT}\n\x1e{{\"type\": \"Point\", \"coordinates\": [1 2]}}\n");
    let e = read(&text).unwrap_err();
    assert_eq!(e.location.record, Some(2), "{e}");
    assert_eq!(
        (e.location.line, e.location.column),
        (Some(2), Some(38)),
        "{e}"
    );

    // The same with indentation before the record.
    let text = format!("{POINT}\n    {{\"type\": \"Point\", \"coordinates\": [1 2]}}\n");
    let e = read(&text).unwrap_err();
    assert_eq!(
        (e.location.line, e.location.column),
        (Some(2), Some(41)),
        "{e}"
    );
}

/// A reader that hands out one byte per call.
struct OneByteAtATime<'a>(&'a [u8]);

impl Read for OneByteAtATime<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match (self.0.split_first(), out.first_mut()) {
            (Some((&b, rest)), Some(slot)) => {
                *slot = b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

#[test]
fn reading_from_a_reader_that_streams_byte_by_byte() {
    let text = format!(
        "{}\n\x1e{POINT}\n{}\n",
        fc_third(
            r#"{"type": "Feature", "id": "p", "properties": {"k": "v"}, "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}"#
        ),
        r#"{"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": [[0, 0], [2, 2]]}}"#,
    );
    let streamed = read_geojson(OneByteAtATime(text.as_bytes()), &ReadOptions::default()).unwrap();
    let whole = read(&text).unwrap();
    assert_eq!(streamed.features.len(), 5);
    assert_eq!(streamed.features, whole);
    assert_eq!(streamed.features[2].property("k"), Some(&json!("v")));

    // Errors found through a trickling reader keep their line numbers.
    let text = "\n\n{\"type\": \"FeatureCollection\", \"features\": [\n{\"type\": \"Feature\", \"geometry\": null}}";
    let e = read_geojson(OneByteAtATime(text.as_bytes()), &ReadOptions::default()).unwrap_err();
    assert_eq!(e.location.line, Some(4), "{e}");
    assert!(e.problem.contains("not valid JSON"), "{e}");
}

/// A reader that fails after handing out some bytes.
struct Broken<'a>(&'a [u8]);

impl Read for Broken<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::Error::other("disk on fire"));
        }
        let n = self.0.len().min(out.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn a_failing_reader_is_reported_as_such() {
    let e = read_geojson(
        Broken(b"{\"type\": \"FeatureCollection\",\n \"features\": ["),
        &ReadOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("could not read the input"), "{e}");
    assert!(e.to_string().contains("disk on fire"), "{e}");

    let e = read_geojson(Broken(b""), &ReadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("disk on fire"), "{e}");
}

// ---- OnInvalid::Skip -----------------------------------------------------------

#[test]
fn skip_keeps_good_features_and_reports_bad_ones_with_locations() {
    let text = r#"{"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "ok1", "properties": {}, "geometry": {"type": "Point", "coordinates": [1, 2]}},
        {"type": "Feature", "id": "FRA", "properties": {}, "geometry": {"type": "Point", "coordinates": [1, 200]}},
        {"type": "Feature", "id": "ok2", "properties": {}, "geometry": null},
        "not a feature",
        {"type": "Feature", "id": 99, "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}},
        {"type": "Feature", "id": "ok3", "properties": {}, "geometry": {"type": "LineString", "coordinates": [[0, 0], [3, 3]]}}
    ]}"#;
    let report = read_geojson(text.as_bytes(), &skip()).unwrap();
    let ids: Vec<String> = report
        .features
        .iter()
        .map(|f| f.id.as_ref().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["\"ok1\"", "\"ok2\"", "\"ok3\""]);

    let skipped: Vec<String> = report.skipped.iter().map(ToString::to_string).collect();
    assert_eq!(skipped.len(), 3, "{skipped:#?}");
    assert!(
        skipped[0].contains("features[1]") && skipped[0].contains("id \"FRA\""),
        "{}",
        skipped[0]
    );
    assert!(skipped[0].contains("latitude 200"), "{}", skipped[0]);
    assert!(
        skipped[1].contains("features[3]") && skipped[1].contains("must be an object"),
        "{}",
        skipped[1]
    );
    assert!(
        skipped[2].contains("features[4]") && skipped[2].contains("id 99"),
        "{}",
        skipped[2]
    );
    assert!(skipped[2].contains("not closed"), "{}", skipped[2]);

    // The same input fails at the first bad feature by default.
    let e = read(text).unwrap_err();
    assert_eq!(e.location.feature, Some(1), "{e}");
}

#[test]
fn skip_in_a_text_sequence_names_the_record() {
    let text = format!(
        "{POINT}\n{}\n{POINT}\n",
        r#"{"type": "Feature", "id": "bad", "properties": {}, "geometry": {"type": "LineString", "coordinates": [[0, 0]]}}"#
    );
    let report = read_geojson(text.as_bytes(), &skip()).unwrap();
    assert_eq!(report.features.len(), 2);
    assert_eq!(report.skipped.len(), 1);
    let e = report.skipped[0].to_string();
    assert!(
        e.contains("record 2") && e.contains("id \"bad\"") && e.contains("at least 2 positions"),
        "{e}"
    );
}

#[test]
fn skip_does_not_hide_syntax_errors() {
    let text =
        r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": null}, {]}"#;
    let e = read_geojson(text.as_bytes(), &skip()).unwrap_err();
    assert!(e.to_string().contains("not valid JSON"), "{e}");
}

#[test]
fn skip_where_every_feature_is_bad_is_an_error() {
    let text = r#"{"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "a", "properties": {}, "geometry": {"type": "Point", "coordinates": [500, 0]}},
        {"type": "Feature", "id": "b", "properties": {}},
        7
    ]}"#;
    let e = read_geojson(text.as_bytes(), &skip()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("none of the 3 features"), "{msg}");
    assert!(
        msg.contains("features[0]") && msg.contains("longitude 500"),
        "{msg}"
    );
}
