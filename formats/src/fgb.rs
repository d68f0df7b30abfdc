//! FlatGeobuf: features read one at a time; the CRS from the header (EPSG code,
//! else WKT).

use std::io::Cursor;

use flatgeobuf::{FallibleStreamingIterator, FgbReader};
use geozero::{ColumnValue, FeatureProperties, PropertyProcessor, ToGeo};
use serde_json::{Map, Number, Value};
use tilefarm_renderer::Location;

use crate::collect::Collector;
use crate::{Crs, Error, Format, ReadOptions, Result, Upload};

const FMT: Format = Format::FlatGeobuf;

struct Properties(Map<String, Value>);

impl PropertyProcessor for Properties {
    fn property(&mut self, _i: usize, name: &str, v: &ColumnValue) -> geozero::error::Result<bool> {
        let value = match v {
            ColumnValue::Byte(n) => Value::from(*n),
            ColumnValue::UByte(n) => Value::from(*n),
            ColumnValue::Bool(b) => Value::Bool(*b),
            ColumnValue::Short(n) => Value::from(*n),
            ColumnValue::UShort(n) => Value::from(*n),
            ColumnValue::Int(n) => Value::from(*n),
            ColumnValue::UInt(n) => Value::from(*n),
            ColumnValue::Long(n) => Value::from(*n),
            ColumnValue::ULong(n) => Value::from(*n),
            ColumnValue::Float(f) => {
                Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number)
            }
            ColumnValue::Double(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            ColumnValue::String(s) | ColumnValue::DateTime(s) => Value::String((*s).to_string()),
            ColumnValue::Json(s) => {
                serde_json::from_str(s).unwrap_or_else(|_| Value::String((*s).to_string()))
            }
            ColumnValue::Binary(b) => Value::String(format!("({} bytes of binary data)", b.len())),
        };
        self.0.insert(name.to_string(), value);
        Ok(false)
    }
}

pub(crate) fn read(data: &[u8], options: &ReadOptions) -> Result<Upload> {
    let bad = |part: &str, e: &dyn std::fmt::Display| Error::input(FMT, part, e.to_string());
    let mut cursor = Cursor::new(data);
    let reader = FgbReader::open(&mut cursor).map_err(|e| bad("the header", &e))?;
    let header = reader.header();
    let crs = match header.crs() {
        None => match &options.crs {
            Some(name) => Crs::from_name(name).map_err(|e| bad("the crs parameter", &e))?,
            None => Crs::wgs84(),
        },
        Some(c) => {
            let org = c.org().unwrap_or("EPSG");
            if c.code() > 0 && org.eq_ignore_ascii_case("EPSG") {
                Crs::from_epsg(c.code() as u32).map_err(|e| bad("the header's CRS", &e))?
            } else if let Some(wkt) = c.wkt() {
                Crs::from_wkt(wkt).map_err(|e| bad("the header's CRS", &e))?
            } else if c.code() == 0 && c.wkt().is_none() {
                Crs::wgs84()
            } else {
                return Err(bad(
                    "the header's CRS",
                    &format!(
                        "{org}:{} is not a coordinate system tilefarm knows",
                        c.code()
                    ),
                ));
            }
        }
    };
    let mut features = reader
        .select_all_seq()
        .map_err(|e| bad("the features", &e))?;
    let mut collector = Collector::new(FMT, "the features", &crs, options.on_invalid);
    let mut index = 0usize;
    while let Some(feature) = features
        .next()
        .map_err(|e| bad(&format!("features[{index}]"), &e))?
    {
        let mut props = Properties(Map::new());
        feature
            .process_properties(&mut props)
            .map_err(|e| bad(&format!("features[{index}]"), &e))?;
        let geometry = match feature.geometry() {
            None => Ok(None),
            Some(_) => feature
                .to_geo()
                .map(Some)
                .map_err(|e| format!("the geometry cannot be read: {e}")),
        };
        let at = index;
        collector.take(
            || Location {
                feature: Some(at),
                ..Location::default()
            },
            None,
            props.0,
            geometry,
        )?;
        index += 1;
    }
    collector.upload(None, Vec::new())
}
