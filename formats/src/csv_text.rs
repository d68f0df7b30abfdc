//! CSV with longitude/latitude (or projected x/y) columns, or a WKT column.
//!
//! The separator (comma, semicolon, tab or bar) is told from the header line.
//! Coordinate columns are found by their usual names (`lon`, `longitude`, `lng`,
//! `x`, ... and `lat`, `latitude`, `y`, ...; `wkt`, `geometry`, `the_geom`, ...)
//! or named by the uploader. A column whose every value is a number becomes
//! numbers, like GDAL's type detection; the others stay text.

use std::borrow::Cow;

use geo::{Geometry, Point};
use serde_json::{Map, Number, Value};
use tilefarm_renderer::Location;
use wkt::TryFromWkt;

use crate::collect::Collector;
use crate::{Crs, Error, Format, ReadOptions, Result, Upload};

const LON_NAMES: [&str; 9] = [
    "lon",
    "long",
    "lng",
    "longitude",
    "x",
    "lon_dd",
    "xcoord",
    "x_coord",
    "easting",
];
const LAT_NAMES: [&str; 8] = [
    "lat", "latitude", "y", "lat_dd", "ycoord", "y_coord", "northing", "lati",
];
const WKT_NAMES: [&str; 6] = ["wkt", "geometry", "geom", "the_geom", "wkt_geom", "shape"];

enum Geo {
    Columns { lon: usize, lat: usize },
    Wkt(usize),
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Integer,
    Real,
    Text,
}

pub(crate) fn read(data: &[u8], options: &ReadOptions) -> Result<Upload> {
    let text = decode(data);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let err = |part: &str, problem: String| Error::input(Format::Csv, part, problem);
    let delimiter = delimiter(text.lines().next().unwrap_or(""));
    let reader = || {
        csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_reader(text.as_bytes())
    };
    let mut rdr = reader();
    let mut headers: Vec<String> = rdr
        .headers()
        .map_err(|e| err("the header line", e.to_string()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    // A header line ending in a separator names no last column.
    while headers.last().is_some_and(String::is_empty) {
        headers.pop();
    }
    let find = |asked: &Option<String>, names: &[&str], what: &str| -> Result<Option<usize>> {
        match asked {
            Some(name) => headers
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name.trim()))
                .map(Some)
                .ok_or_else(|| {
                    err(
                        "the header line",
                        format!("there is no {what} column {name:?}; the columns are {headers:?}"),
                    )
                }),
            None => Ok(names
                .iter()
                .find_map(|n| headers.iter().position(|h| h.eq_ignore_ascii_case(n)))),
        }
    };
    let geo = match (
        find(&options.geometry, &WKT_NAMES, "geometry")?,
        find(&options.lon, &LON_NAMES, "longitude")?,
        find(&options.lat, &LAT_NAMES, "latitude")?,
    ) {
        (Some(w), _, _) if options.lon.is_none() => Geo::Wkt(w),
        (_, Some(lon), Some(lat)) => Geo::Columns { lon, lat },
        _ => {
            return Err(err(
                "the header line",
                format!(
                    "no coordinate columns: the columns are {headers:?}; name them lon and lat \
                     (or x and y, longitude and latitude), give a WKT column named wkt or \
                     geometry, or say which with the lon, lat or geometry parameters"
                ),
            ));
        }
    };
    let crs = match &options.crs {
        Some(name) => Crs::from_name(name).map_err(|e| err("the crs parameter", e.to_string()))?,
        None => Crs::wgs84(),
    };
    let is_geo = |i: usize| match geo {
        Geo::Columns { lon, lat } => i == lon || i == lat,
        Geo::Wkt(w) => i == w,
    };

    // First pass: the structure, and each column's kind.
    let mut kinds = vec![None::<Kind>; headers.len()];
    for record in rdr.records() {
        let record = record.map_err(|e| csv_error(&e))?;
        check_width(&record, headers.len())?;
        for (i, value) in record.iter().enumerate().take(headers.len()) {
            let value = value.trim();
            if value.is_empty() || is_geo(i) {
                continue;
            }
            let kind = if value.parse::<i64>().is_ok() {
                Kind::Integer
            } else if value.parse::<f64>().is_ok_and(f64::is_finite) {
                Kind::Real
            } else {
                Kind::Text
            };
            kinds[i] = Some(match (kinds[i], kind) {
                (None, k) => k,
                (Some(Kind::Text), _) | (_, Kind::Text) => Kind::Text,
                (Some(Kind::Real), _) | (_, Kind::Real) => Kind::Real,
                _ => Kind::Integer,
            });
        }
    }

    let mut collector = Collector::new(Format::Csv, "rows", &crs, options.on_invalid);
    for record in reader().records() {
        let record = record.map_err(|e| csv_error(&e))?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let mut properties = Map::new();
        for (i, value) in record.iter().enumerate().take(headers.len()) {
            if is_geo(i) {
                continue;
            }
            let value = value.trim();
            let v = if value.is_empty() {
                Value::Null
            } else {
                match kinds[i] {
                    Some(Kind::Integer) => {
                        value.parse::<i64>().map(Value::from).unwrap_or(Value::Null)
                    }
                    Some(Kind::Real) => value
                        .parse::<f64>()
                        .ok()
                        .and_then(Number::from_f64)
                        .map_or(Value::Null, Value::Number),
                    _ => Value::String(value.to_string()),
                }
            };
            properties.insert(headers[i].clone(), v);
        }
        let geometry = match geo {
            Geo::Columns { lon, lat } => point(&record, &headers, lon, lat),
            Geo::Wkt(w) => {
                let text = record.get(w).unwrap_or("").trim();
                if text.is_empty() {
                    Ok(None)
                } else {
                    <Geometry<f64> as TryFromWkt<f64>>::try_from_wkt_str(text)
                        .map(Some)
                        .map_err(|e| format!("the {:?} column is not WKT: {e}", headers[w]))
                }
            }
        };
        collector.take(
            || Location {
                line: Some(line),
                ..Location::default()
            },
            None,
            properties,
            geometry,
        )?;
    }
    collector.upload(None, Vec::new())
}

fn point(
    record: &csv::StringRecord,
    headers: &[String],
    lon: usize,
    lat: usize,
) -> Result<Option<Geometry<f64>>, String> {
    let (x, y) = (
        record.get(lon).unwrap_or("").trim(),
        record.get(lat).unwrap_or("").trim(),
    );
    if x.is_empty() && y.is_empty() {
        return Ok(None);
    }
    let number = |v: &str, i: usize| {
        v.replace(',', ".")
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| format!("the {:?} column holds {v:?}, not a number", headers[i]))
    };
    Ok(Some(Geometry::Point(Point::new(
        number(x, lon)?,
        number(y, lat)?,
    ))))
}

/// A row must have a field for every named column (more only if empty).
fn check_width(record: &csv::StringRecord, width: usize) -> Result<()> {
    let extra_filled = record.iter().skip(width).any(|v| !v.trim().is_empty());
    if record.len() < width || extra_filled {
        let line = record.position().map_or(0, csv::Position::line);
        return Err(Error::input(
            Format::Csv,
            format!("line {line}"),
            format!(
                "the row has {} fields where the header has {width}",
                record.len()
            ),
        ));
    }
    Ok(())
}

fn csv_error(e: &csv::Error) -> Error {
    let at = e
        .position()
        .map_or_else(|| "rows".to_string(), |p| format!("line {}", p.line()));
    let problem = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("the row has {len} fields where the header has {expected_len}"),
        _ => e.to_string(),
    };
    Error::input(Format::Csv, at, problem)
}

/// UTF-8, or failing that Windows-1252 (what spreadsheets save as "CSV").
fn decode(data: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(data) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => encoding_rs::WINDOWS_1252.decode(data).0,
    }
}

/// The separator the header line uses most.
fn delimiter(header: &str) -> u8 {
    [b',', b';', b'\t', b'|']
        .into_iter()
        .max_by_key(|&d| header.bytes().filter(|&b| b == d).count())
        .filter(|&d| header.bytes().any(|b| b == d))
        .unwrap_or(b',')
}
