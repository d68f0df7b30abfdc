//! KML (and, through the zip reader, KMZ): each Placemark with a Point,
//! LineString, LinearRing, Polygon or MultiGeometry becomes a feature; its
//! `name`, `description` and ExtendedData (`Data` and `SimpleData`, typed by
//! their `Schema`) become properties. KML is WGS84 by definition. The XML is read
//! as a stream.

use std::collections::HashMap;

use geo::{
    Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon,
};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Number, Value};
use tilefarm_renderer::Location;

use crate::collect::Collector;
use crate::{Crs, Error, Format, ReadOptions, Result, Upload};

const FMT: Format = Format::Kml;

enum Frame {
    Multi(Vec<Geometry<f64>>),
    Polygon {
        outer: Option<LineString<f64>>,
        inner: Vec<LineString<f64>>,
    },
    /// Point, LineString or LinearRing: the coordinates read so far.
    Coords(Vec<Coord<f64>>),
}

#[derive(Default)]
struct Placemark {
    properties: Map<String, Value>,
    geometry: Vec<Geometry<f64>>,
    frames: Vec<Frame>,
    problem: Option<String>,
}

pub(crate) fn read(data: &[u8], options: &ReadOptions) -> Result<Upload> {
    let mut reader = Reader::from_reader(data);
    reader.config_mut().trim_text(true);
    let crs = Crs::wgs84();
    let mut collector = Collector::new(FMT, "the document", &crs, options.on_invalid);
    let mut buf = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut placemark: Option<(Placemark, usize)> = None;
    let mut index = 0usize;
    // SimpleField types by field name, from <Schema>.
    let mut types: HashMap<String, String> = HashMap::new();
    let mut data_name: Option<String> = None;
    let mut text = String::new();
    let mut seen_root = false;
    let mut lines = Lines::default();
    loop {
        let event = reader.read_event_into(&mut buf).map_err(|e| {
            Error::input(
                FMT,
                format!("line {}", lines.at(data, &reader)),
                format!("not well-formed XML: {e}"),
            )
        })?;
        match event {
            Event::Start(e) => {
                let name = local(&e);
                if !seen_root {
                    seen_root = true;
                    if name != "kml" {
                        return Err(Error::input(
                            FMT,
                            "the document",
                            format!(
                                "it is XML but not KML: its root element is <{name}>, not <kml>"
                            ),
                        ));
                    }
                }
                text.clear();
                match name.as_str() {
                    "Placemark" => {
                        placemark = Some((Placemark::default(), lines.at(data, &reader)));
                    }
                    "SimpleField" => {
                        if let (Some(n), Some(t)) = (attr(&e, "name"), attr(&e, "type")) {
                            types.insert(n, t.to_ascii_lowercase());
                        }
                    }
                    "Data" | "SimpleData" => data_name = attr(&e, "name"),
                    _ => {}
                }
                if let Some((p, _)) = placemark.as_mut() {
                    match name.as_str() {
                        "MultiGeometry" => p.frames.push(Frame::Multi(Vec::new())),
                        "Polygon" => p.frames.push(Frame::Polygon {
                            outer: None,
                            inner: Vec::new(),
                        }),
                        "Point" | "LineString" | "LinearRing" => {
                            p.frames.push(Frame::Coords(Vec::new()))
                        }
                        _ => {}
                    }
                }
                path.push(name);
            }
            Event::Empty(e) => {
                let name = local(&e);
                if name == "SimpleField"
                    && let (Some(n), Some(t)) = (attr(&e, "name"), attr(&e, "type"))
                {
                    types.insert(n, t.to_ascii_lowercase());
                }
                if !seen_root {
                    return Err(Error::input(
                        FMT,
                        "the document",
                        format!("it is XML but not KML: its root element is <{name}/>"),
                    ));
                }
            }
            Event::Text(t) => {
                let t = t.xml10_content().map_err(|e| {
                    Error::input(
                        FMT,
                        format!("line {}", lines.at(data, &reader)),
                        format!("bad text: {e}"),
                    )
                })?;
                text.push_str(&t);
            }
            Event::CData(t) => text.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(r) => {
                let name = String::from_utf8_lossy(&r);
                text.push_str(match name.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                });
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                }
            }
            Event::End(_) => {
                let name = path.pop().unwrap_or_default();
                let parent = path.last().map(String::as_str).unwrap_or("");
                let value = std::mem::take(&mut text);
                let Some((p, line)) = placemark.as_mut() else {
                    continue;
                };
                match name.as_str() {
                    "name" | "description" if parent == "Placemark" => {
                        p.properties
                            .insert(name.clone(), Value::String(value.trim().to_string()));
                    }
                    "value" if parent == "Data" => {
                        if let Some(n) = data_name.take() {
                            p.properties
                                .insert(n, Value::String(value.trim().to_string()));
                        }
                    }
                    "SimpleData" => {
                        if let Some(n) = data_name.take() {
                            let v = typed(value.trim(), types.get(&n).map(String::as_str));
                            p.properties.insert(n, v);
                        }
                    }
                    "coordinates" => {
                        if let Some(Frame::Coords(c)) = p.frames.last_mut() {
                            match coordinates(&value) {
                                Ok(v) => c.extend(v),
                                Err(e) => {
                                    p.problem.get_or_insert(e);
                                }
                            }
                        }
                    }
                    "Point" | "LineString" | "LinearRing" | "Polygon" | "MultiGeometry" => {
                        let in_outer = path.iter().any(|n| n == "outerBoundaryIs");
                        finish_geometry(p, &name, in_outer);
                    }
                    "Placemark" => {
                        let (p, line) = (std::mem::take(p), *line);
                        placemark = None;
                        let at = index;
                        index += 1;
                        let geometry = match p.problem {
                            Some(e) => Err(e),
                            None => Ok(match p.geometry.len() {
                                0 => None,
                                1 => p.geometry.into_iter().next(),
                                _ => Some(Geometry::GeometryCollection(GeometryCollection(
                                    p.geometry,
                                ))),
                            }),
                        };
                        collector.take(
                            || Location {
                                feature: Some(at),
                                line: Some(line),
                                ..Location::default()
                            },
                            None,
                            p.properties,
                            geometry,
                        )?;
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_root {
        return Err(Error::input(
            FMT,
            "the document",
            "it has no XML element at all",
        ));
    }
    if !path.is_empty() {
        return Err(Error::input(
            FMT,
            "the document",
            format!("it ends inside <{}>", path.join("><")),
        ));
    }
    collector.upload(None, Vec::new())
}

fn finish_geometry(p: &mut Placemark, name: &str, in_outer: bool) {
    let Some(frame) = p.frames.pop() else { return };
    let done = match (name, frame) {
        ("Point", Frame::Coords(c)) => match c.first() {
            Some(&c) => Geometry::Point(Point(c)),
            None => {
                p.problem
                    .get_or_insert("a Point without coordinates".into());
                return;
            }
        },
        ("LineString", Frame::Coords(c)) => Geometry::LineString(LineString(c)),
        ("LinearRing", Frame::Coords(c)) => {
            let ring = LineString(c);
            match p.frames.last_mut() {
                Some(Frame::Polygon { outer, inner }) => {
                    if in_outer && outer.is_none() {
                        *outer = Some(ring);
                    } else {
                        inner.push(ring);
                    }
                    return;
                }
                _ => Geometry::LineString(ring),
            }
        }
        ("Polygon", Frame::Polygon { outer, inner }) => match outer {
            Some(o) => Geometry::Polygon(Polygon::new(o, inner)),
            None => {
                p.problem
                    .get_or_insert("a Polygon without an outerBoundaryIs ring".into());
                return;
            }
        },
        ("MultiGeometry", Frame::Multi(parts)) => homogeneous(parts),
        _ => return,
    };
    match p.frames.last_mut() {
        Some(Frame::Multi(parts)) => parts.push(done),
        _ => p.geometry.push(done),
    }
}

/// A MultiGeometry of one kind of part as the matching Multi* geometry.
fn homogeneous(parts: Vec<Geometry<f64>>) -> Geometry<f64> {
    if !parts.is_empty() && parts.iter().all(|g| matches!(g, Geometry::Point(_))) {
        return Geometry::MultiPoint(MultiPoint(
            parts
                .into_iter()
                .filter_map(|g| Point::try_from(g).ok())
                .collect(),
        ));
    }
    if !parts.is_empty() && parts.iter().all(|g| matches!(g, Geometry::LineString(_))) {
        return Geometry::MultiLineString(MultiLineString(
            parts
                .into_iter()
                .filter_map(|g| LineString::try_from(g).ok())
                .collect(),
        ));
    }
    if !parts.is_empty() && parts.iter().all(|g| matches!(g, Geometry::Polygon(_))) {
        return Geometry::MultiPolygon(MultiPolygon(
            parts
                .into_iter()
                .filter_map(|g| Polygon::try_from(g).ok())
                .collect(),
        ));
    }
    Geometry::GeometryCollection(GeometryCollection(parts))
}

/// `lon,lat[,alt]` tuples separated by white space.
fn coordinates(text: &str) -> Result<Vec<Coord<f64>>, String> {
    text.split_ascii_whitespace()
        .map(|tuple| {
            let mut it = tuple.split(',').map(|v| v.trim().parse::<f64>());
            match (it.next(), it.next()) {
                (Some(Ok(x)), Some(Ok(y))) => Ok(Coord { x, y }),
                _ => Err(format!(
                    "the coordinates {tuple:?} are not longitude,latitude[,altitude]"
                )),
            }
        })
        .collect()
}

fn typed(value: &str, kind: Option<&str>) -> Value {
    match kind {
        Some("int" | "uint" | "short" | "ushort") => value
            .parse::<i64>()
            .map_or(Value::String(value.into()), Value::from),
        Some("float" | "double") => value
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or(Value::String(value.into()), Value::Number),
        Some("bool") => Value::Bool(matches!(value, "1" | "true")),
        _ => Value::String(value.into()),
    }
}

fn local(e: &BytesStart) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

fn attr(e: &BytesStart, name: &str) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name.as_bytes())
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

/// Line numbers of reader positions, counted forward from the last one asked.
#[derive(Default)]
struct Lines {
    offset: usize,
    newlines: usize,
}

impl Lines {
    fn at(&mut self, data: &[u8], r: &Reader<&[u8]>) -> usize {
        let offset = usize::try_from(r.buffer_position())
            .unwrap_or(usize::MAX)
            .min(data.len());
        if offset > self.offset {
            self.newlines += data[self.offset..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.offset = offset;
        }
        self.newlines + 1
    }
}
