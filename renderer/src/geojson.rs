//! Streaming GeoJSON reader.
//!
//! Reads RFC 7946 GeoJSON (a `FeatureCollection`, a single `Feature` or a bare
//! geometry) and RFC 8142 GeoJSON text sequences / newline-delimited GeoJSON (one
//! text per record, optionally led by the ASCII record separator `0x1E`). The input
//! is parsed as a stream: a collection's features are converted one at a time, so
//! memory holds the converted features and never the whole file's text.
//!
//! Every problem is reported with where it is (record, `features[i]`, feature id,
//! line and column for syntax errors) and what is wrong.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use geo::{
    Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon,
};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::feature::{Feature, FeatureId};

/// What to do with a feature that is not valid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnInvalid {
    /// Stop at the first invalid feature (the default).
    #[default]
    Fail,
    /// Leave invalid features out and report each in [`ReadReport::skipped`].
    Skip,
}

/// Options for [`read_geojson`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions {
    pub on_invalid: OnInvalid,
}

/// The features read, and the invalid ones left out under [`OnInvalid::Skip`].
#[derive(Debug, Default)]
pub struct ReadReport {
    pub features: Vec<Feature>,
    pub skipped: Vec<InputError>,
}

/// Where in the input a problem is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// 1-based record number, for inputs with more than one top-level text.
    pub record: Option<usize>,
    /// 0-based index in the `features` array of a collection.
    pub feature: Option<usize>,
    /// The feature's id, when it has one.
    pub id: Option<String>,
    /// 1-based line and column of a syntax error.
    pub line: Option<usize>,
    pub column: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(r) = self.record {
            parts.push(format!("record {r}"));
        }
        if let Some(i) = self.feature {
            parts.push(format!("features[{i}]"));
        }
        if let Some(id) = &self.id {
            parts.push(format!("id {id}"));
        }
        match (self.line, self.column) {
            (Some(l), Some(c)) => parts.push(format!("line {l}, column {c}")),
            (Some(l), None) => parts.push(format!("line {l}")),
            _ => {}
        }
        if parts.is_empty() {
            f.write_str("input")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// A problem with the input: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {problem}")]
pub struct InputError {
    pub location: Location,
    pub problem: String,
}

impl InputError {
    fn at(location: Location, problem: impl Into<String>) -> Self {
        Self {
            location,
            problem: problem.into(),
        }
    }
}

/// Reads GeoJSON or a GeoJSON text sequence from `reader`.
pub fn read_geojson<R: Read>(reader: R, options: &ReadOptions) -> Result<ReadReport, InputError> {
    let mut input = LineCounter {
        inner: BufReader::with_capacity(1 << 16, reader),
        newlines: 0,
        column: 0,
    };
    let collector = RefCell::new(Collector {
        options: *options,
        report: ReadReport::default(),
        fatal: None,
        record: 0,
        seen: 0,
    });
    let mut records = 0usize;
    loop {
        let more = input
            .skip_separators()
            .map_err(|e| io_error(&e, input.newlines))?;
        if !more {
            break;
        }
        records += 1;
        collector.borrow_mut().record = records;
        let start_line = input.newlines + 1;
        // serde_json counts columns from the record's start, which need not be the line's.
        let start_column = input.column;
        let mut de = serde_json::Deserializer::from_reader(&mut input);
        let result = TopLevel {
            collector: &collector,
        }
        .deserialize(&mut de);
        if let Some(fatal) = collector.borrow_mut().fatal.take() {
            return Err(fatal);
        }
        if let Err(e) = result {
            let mut location = Location {
                record: (records > 1).then_some(records),
                ..Location::default()
            };
            if e.line() > 0 {
                location.line = Some(start_line + e.line() - 1);
                location.column = Some(if e.line() == 1 {
                    start_column + e.column()
                } else {
                    e.column()
                });
            }
            return Err(InputError::at(location, syntax_problem(&e)));
        }
    }
    let Collector { report, seen, .. } = collector.into_inner();
    if records == 0 {
        return Err(InputError::at(
            Location::default(),
            "the input is empty: expected GeoJSON",
        ));
    }
    if seen == 0 {
        return Err(InputError::at(
            Location::default(),
            "the input has no features",
        ));
    }
    if report.features.is_empty() {
        let first = &report.skipped[0];
        return Err(InputError::at(
            Location::default(),
            format!("none of the {seen} features is valid; the first problem is at {first}"),
        ));
    }
    Ok(report)
}

fn io_error(e: &io::Error, newlines: usize) -> InputError {
    InputError::at(
        Location {
            line: Some(newlines + 1),
            ..Location::default()
        },
        format!("could not read the input: {e}"),
    )
}

fn syntax_problem(e: &serde_json::Error) -> String {
    let text = e.to_string();
    // serde_json appends " at line L column C"; the location says that already.
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    match e.classify() {
        serde_json::error::Category::Syntax => format!("not valid JSON: {text}"),
        serde_json::error::Category::Eof => format!("the JSON ends too early: {text}"),
        serde_json::error::Category::Io => format!("could not read the input: {text}"),
        serde_json::error::Category::Data => text,
    }
}

/// A buffered reader that counts the newlines it hands out.
struct LineCounter<R> {
    inner: BufReader<R>,
    newlines: usize,
    /// Bytes handed out since the last newline.
    column: usize,
}

/// Moves a line and column count past `bytes`.
fn count_lines(newlines: &mut usize, column: &mut usize, bytes: &[u8]) {
    match bytes.iter().rposition(|&b| b == b'\n') {
        Some(last) => {
            *newlines += bytes.iter().filter(|&&b| b == b'\n').count();
            *column = bytes.len() - last - 1;
        }
        None => *column += bytes.len(),
    }
}

impl<R: Read> LineCounter<R> {
    /// Skips whitespace and record separators; `false` at the end of the input.
    fn skip_separators(&mut self) -> io::Result<bool> {
        loop {
            let buf = self.inner.fill_buf()?;
            if buf.is_empty() {
                return Ok(false);
            }
            let n = buf
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x1e))
                .count();
            let done = n < buf.len();
            count_lines(&mut self.newlines, &mut self.column, &buf[..n]);
            self.inner.consume(n);
            if done {
                return Ok(true);
            }
        }
    }
}

impl<R: Read> Read for LineCounter<R> {
    #[inline]
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // serde_json reads one byte at a time: serve those straight from the buffer.
        if let ([slot], Some(&b)) = (&mut *out, self.inner.buffer().first()) {
            *slot = b;
            self.inner.consume(1);
            if b == b'\n' {
                self.newlines += 1;
                self.column = 0;
            } else {
                self.column += 1;
            }
            return Ok(1);
        }
        let n = self.inner.read(out)?;
        count_lines(&mut self.newlines, &mut self.column, &out[..n]);
        Ok(n)
    }
}

struct Collector {
    options: ReadOptions,
    report: ReadReport,
    fatal: Option<InputError>,
    record: usize,
    /// Features seen, valid or not.
    seen: usize,
}

impl Collector {
    /// Takes one converted feature, or its problem. Returns `false` when reading must stop.
    fn take(&mut self, location: Location, result: Result<Feature, String>) -> bool {
        self.seen += 1;
        match result {
            Ok(f) => {
                self.report.features.push(f);
                true
            }
            Err(problem) => {
                let err = InputError::at(location, problem);
                match self.options.on_invalid {
                    OnInvalid::Skip => {
                        self.report.skipped.push(err);
                        true
                    }
                    OnInvalid::Fail => {
                        self.fatal = Some(err);
                        false
                    }
                }
            }
        }
    }

    fn location(&self, feature: Option<usize>, value: &Value) -> Location {
        Location {
            record: (self.record > 1).then_some(self.record),
            feature,
            id: value.get("id").and_then(id_label),
            ..Location::default()
        }
    }

    /// The record number for a top-level Feature or geometry (one record of a sequence).
    fn record_label(&self) -> Option<usize> {
        Some(self.record)
    }
}

fn id_label(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(format!("{s:?}")),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

const STOP: &str = "stopped at an invalid feature";

/// The top-level object of one GeoJSON text.
struct TopLevel<'a> {
    collector: &'a RefCell<Collector>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a GeoJSON object (FeatureCollection, Feature or geometry)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut ty: Option<Value> = None;
        let mut features_seen = false;
        let mut rest = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "features" => {
                    map.next_value_seed(FeaturesSeed {
                        collector: self.collector,
                    })?;
                    features_seen = true;
                }
                "type" => ty = Some(map.next_value()?),
                _ => {
                    let v: Value = map.next_value()?;
                    rest.insert(key, v);
                }
            }
        }
        let ty = match ty {
            None => return Err(de::Error::custom("the object has no \"type\" member")),
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(de::Error::custom(format!(
                    "\"type\" must be a string, found {}",
                    kind_of(&other)
                )));
            }
        };
        let mut c = self.collector.borrow_mut();
        match ty.as_str() {
            "FeatureCollection" => {
                if !features_seen {
                    return Err(de::Error::custom(
                        "the FeatureCollection has no \"features\" member",
                    ));
                }
                Ok(())
            }
            _ if features_seen => Err(de::Error::custom(format!(
                "an object of type {ty:?} has a \"features\" member; only a FeatureCollection may"
            ))),
            "Feature" => {
                rest.insert("type".into(), Value::String(ty));
                let v = Value::Object(rest);
                let location = c.location(None, &v);
                let location = Location {
                    record: c.record_label(),
                    ..location
                };
                let result = feature(v);
                if c.take(location, result) {
                    Ok(())
                } else {
                    Err(de::Error::custom(STOP))
                }
            }
            _ => {
                rest.insert("type".into(), Value::String(ty));
                let v = Value::Object(rest);
                let location = Location {
                    record: c.record_label(),
                    ..Location::default()
                };
                let result = geometry(&v, "").map(Feature::from_geometry);
                if c.take(location, result) {
                    Ok(())
                } else {
                    Err(de::Error::custom(STOP))
                }
            }
        }
    }
}

/// The `features` array of a collection, converted element by element.
struct FeaturesSeed<'a> {
    collector: &'a RefCell<Collector>,
}

impl<'de> DeserializeSeed<'de> for FeaturesSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for FeaturesSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"features\" to be an array of features")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        while let Some(v) = seq.next_element::<Value>()? {
            let mut c = self.collector.borrow_mut();
            let location = c.location(Some(index), &v);
            let result = feature(v);
            if !c.take(location, result) {
                return Err(de::Error::custom(STOP));
            }
            index += 1;
        }
        Ok(())
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What is wrong with one GeoJSON Feature or geometry object, naming the
/// member where it can (`geometry.coordinates[0][2]`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidFeature(pub String);

/// Converts one GeoJSON Feature object.
pub fn feature_from_value(v: Value) -> Result<Feature, InvalidFeature> {
    feature(v).map_err(InvalidFeature)
}

/// Converts one GeoJSON geometry object. `path` names it in messages.
pub fn geometry_from_value(v: &Value, path: &str) -> Result<Geometry<f64>, InvalidFeature> {
    geometry(v, path).map_err(InvalidFeature)
}

fn feature(v: Value) -> Result<Feature, String> {
    let Value::Object(mut obj) = v else {
        return Err(format!(
            "a feature must be an object, found {}",
            kind_of(&v)
        ));
    };
    match obj.get("type") {
        Some(Value::String(t)) if t == "Feature" => {}
        Some(Value::String(t)) => {
            return Err(format!(
                "expected an object of type \"Feature\", found type {t:?}"
            ));
        }
        Some(other) => {
            return Err(format!(
                "\"type\" must be a string, found {}",
                kind_of(other)
            ));
        }
        None => return Err("the feature has no \"type\" member".into()),
    }
    let id = match obj.remove("id") {
        None => None,
        Some(Value::String(s)) => Some(FeatureId::String(s)),
        Some(Value::Number(n)) => Some(FeatureId::Number(n)),
        Some(other) => {
            return Err(format!(
                "\"id\" must be a string or a number, found {}",
                kind_of(&other)
            ));
        }
    };
    let properties = match obj.remove("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(format!(
                "\"properties\" must be an object or null, found {}",
                kind_of(&other)
            ));
        }
    };
    let geometry = match obj.get("geometry") {
        None => return Err("the feature has no \"geometry\" member (use null for none)".into()),
        Some(Value::Null) => None,
        Some(g) => Some(geometry(g, "geometry")?),
    };
    Ok(Feature {
        id,
        properties,
        geometry,
    })
}

fn join(path: &str, member: &str) -> String {
    if path.is_empty() {
        member.to_string()
    } else {
        format!("{path}.{member}")
    }
}

fn geometry(v: &Value, path: &str) -> Result<Geometry<f64>, String> {
    let here = if path.is_empty() {
        "the geometry"
    } else {
        path
    };
    let Value::Object(obj) = v else {
        return Err(format!("{here} must be an object, found {}", kind_of(v)));
    };
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(other) => {
            return Err(format!(
                "{}: must be a string, found {}",
                join(path, "type"),
                kind_of(other)
            ));
        }
        None => return Err(format!("{here} has no \"type\" member")),
    };
    if ty == "GeometryCollection" {
        let gpath = join(path, "geometries");
        let Some(geoms) = obj.get("geometries") else {
            return Err(format!(
                "{here} is a GeometryCollection without \"geometries\""
            ));
        };
        let Value::Array(items) = geoms else {
            return Err(format!(
                "{gpath}: must be an array, found {}",
                kind_of(geoms)
            ));
        };
        let parts = items
            .iter()
            .enumerate()
            .map(|(i, g)| geometry(g, &format!("{gpath}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Geometry::GeometryCollection(GeometryCollection(parts)));
    }
    let cpath = join(path, "coordinates");
    let coords = match obj.get("coordinates") {
        Some(Value::Null) | None => {
            if matches!(
                ty,
                "Point"
                    | "MultiPoint"
                    | "LineString"
                    | "MultiLineString"
                    | "Polygon"
                    | "MultiPolygon"
            ) {
                return Err(format!("{here} of type {ty:?} has no \"coordinates\""));
            }
            return Err(unknown_type(here, ty));
        }
        Some(c) => c,
    };
    let c = Coords { path: cpath };
    Ok(match ty {
        "Point" => Geometry::Point(Point(c.position(coords, &c.path)?)),
        "MultiPoint" => Geometry::MultiPoint(MultiPoint(
            c.array(coords, &c.path)?
                .iter()
                .enumerate()
                .map(|(i, p)| c.position(p, &format!("{}[{i}]", c.path)).map(Point))
                .collect::<Result<_, _>>()?,
        )),
        "LineString" => Geometry::LineString(c.line(coords, &c.path)?),
        "MultiLineString" => Geometry::MultiLineString(MultiLineString(
            c.array(coords, &c.path)?
                .iter()
                .enumerate()
                .map(|(i, l)| c.line(l, &format!("{}[{i}]", c.path)))
                .collect::<Result<_, _>>()?,
        )),
        "Polygon" => Geometry::Polygon(c.polygon(coords, &c.path)?),
        "MultiPolygon" => Geometry::MultiPolygon(MultiPolygon(
            c.array(coords, &c.path)?
                .iter()
                .enumerate()
                .map(|(i, p)| c.polygon(p, &format!("{}[{i}]", c.path)))
                .collect::<Result<_, _>>()?,
        )),
        _ => return Err(unknown_type(here, ty)),
    })
}

fn unknown_type(here: &str, ty: &str) -> String {
    format!(
        "{here} has unknown type {ty:?}; expected Point, MultiPoint, LineString, \
         MultiLineString, Polygon, MultiPolygon or GeometryCollection"
    )
}

struct Coords {
    path: String,
}

impl Coords {
    fn array<'v>(&self, v: &'v Value, path: &str) -> Result<&'v Vec<Value>, String> {
        match v {
            Value::Array(a) => Ok(a),
            other => Err(format!(
                "{path}: expected an array, found {}",
                kind_of(other)
            )),
        }
    }

    fn position(&self, v: &Value, path: &str) -> Result<Coord<f64>, String> {
        let a = self.array(v, path)?;
        if a.len() < 2 {
            return Err(format!(
                "{path}: a position needs at least longitude and latitude, found {} number(s)",
                a.len()
            ));
        }
        let mut xy = [0.0; 2];
        for (i, n) in a.iter().enumerate() {
            let Some(f) = n.as_f64() else {
                return Err(format!(
                    "{path}[{i}]: expected a number, found {}",
                    kind_of(n)
                ));
            };
            if i < 2 {
                xy[i] = f;
            }
        }
        let [lon, lat] = xy;
        if !(-180.0..=180.0).contains(&lon) {
            return Err(format!(
                "{path}: longitude {lon} is outside -180..180 (are longitude and latitude swapped, \
                 or is the data not in WGS84 degrees?)"
            ));
        }
        if !(-90.0..=90.0).contains(&lat) {
            return Err(format!(
                "{path}: latitude {lat} is outside -90..90 (are longitude and latitude swapped, \
                 or is the data not in WGS84 degrees?)"
            ));
        }
        Ok(Coord { x: lon, y: lat })
    }

    fn positions(&self, v: &Value, path: &str) -> Result<Vec<Coord<f64>>, String> {
        self.array(v, path)?
            .iter()
            .enumerate()
            .map(|(i, p)| self.position(p, &format!("{path}[{i}]")))
            .collect()
    }

    fn line(&self, v: &Value, path: &str) -> Result<LineString<f64>, String> {
        let pts = self.positions(v, path)?;
        if pts.len() < 2 {
            return Err(format!(
                "{path}: a line needs at least 2 positions, found {}",
                pts.len()
            ));
        }
        Ok(LineString(pts))
    }

    fn ring(&self, v: &Value, path: &str) -> Result<LineString<f64>, String> {
        let pts = self.positions(v, path)?;
        if pts.len() < 4 {
            return Err(format!(
                "{path}: a polygon ring needs at least 4 positions, found {}",
                pts.len()
            ));
        }
        let (first, last) = (pts[0], pts[pts.len() - 1]);
        if first != last {
            return Err(format!(
                "{path}: the ring is not closed: it starts at [{}, {}] but ends at [{}, {}]",
                first.x, first.y, last.x, last.y
            ));
        }
        Ok(LineString(pts))
    }

    fn polygon(&self, v: &Value, path: &str) -> Result<Polygon<f64>, String> {
        let rings = self.array(v, path)?;
        if rings.is_empty() {
            return Err(format!(
                "{path}: a polygon needs at least one ring, found none"
            ));
        }
        let mut rings = rings
            .iter()
            .enumerate()
            .map(|(i, r)| self.ring(r, &format!("{path}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let exterior = rings.remove(0);
        Ok(Polygon::new(exterior, rings))
    }
}
