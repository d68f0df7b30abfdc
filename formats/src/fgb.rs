//! FlatGeobuf: features read one at a time; the CRS from the header (EPSG code,
//! else WKT).

use std::io::Cursor;

use flatgeobuf::packed_r_tree::PackedRTree;
use flatgeobuf::{ColumnType, FallibleStreamingIterator, FgbReader, Geometry, GeometryType};
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
    let geometry_type = header.geometry_type();
    check_layout(data, header.features_count(), header.index_node_size())?;
    let columns: Vec<(String, ColumnType)> = header
        .columns()
        .into_iter()
        .flatten()
        .map(|c| (c.name().to_string(), c.type_()))
        .collect();
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
        if let Some(bytes) = feature.fbs_feature().properties() {
            check_properties(bytes.bytes(), &columns)
                .map_err(|e| bad(&format!("features[{index}]"), &e))?;
        }
        let mut props = Properties(Map::new());
        feature
            .process_properties(&mut props)
            .map_err(|e| bad(&format!("features[{index}]"), &e))?;
        let geometry = match feature.geometry() {
            None => Ok(None),
            Some(g) => check_geometry(&g, geometry_type).and_then(|()| {
                feature
                    .to_geo()
                    .map(Some)
                    .map_err(|e| format!("the geometry cannot be read: {e}"))
            }),
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

/// Checks what the FlatGeobuf geometry reader takes on trust, as it panics on
/// it: whole x,y pairs, a point's one pair, and `ends` (where each ring or
/// line ends, in pairs) that grow and stay within the coordinates. `kind` is
/// the header's geometry type (`Unknown`: each geometry says its own).
fn check_geometry(g: &Geometry, kind: GeometryType) -> Result<(), String> {
    let kind = if kind == GeometryType::Unknown {
        g.type_()
    } else {
        kind
    };
    let numbers = g.xy().map_or(0, |xy| xy.len());
    if !numbers.is_multiple_of(2) {
        return Err(format!(
            "the geometry has {numbers} x,y numbers, which do not make pairs"
        ));
    }
    if kind == GeometryType::Point && numbers < 2 {
        return Err("the point has no coordinates".into());
    }
    if let Some(ends) = g.ends() {
        let mut last = 0;
        for (i, end) in ends.iter().enumerate() {
            let end = u64::from(end) * 2;
            if end < last || end > numbers as u64 {
                return Err(format!(
                    "the geometry's part {i} ends at pair {}, outside its {} pairs or before \
                     the part before it",
                    end / 2,
                    numbers / 2
                ));
            }
            last = end;
        }
    }
    for part in g.parts().into_iter().flatten() {
        check_geometry(&part, GeometryType::Unknown)?;
    }
    Ok(())
}

/// Checks the sizes the FlatGeobuf reader takes on trust before it reads: it
/// allocates each feature's stated size before reading it (up to 4 GiB from a
/// few bytes), and panics on an index node size of 1 or an index too big to
/// count. `data` is the whole file, whose header the reader has checked.
fn check_layout(data: &[u8], features_count: u64, index_node_size: u16) -> Result<()> {
    let bad = |part: String, problem: String| Error::input(FMT, part, problem);
    let len = data.len() as u64;
    // The magic bytes, the header's size and the header.
    let header_size = u64::from(u32::from_le_bytes(data[8..12].try_into().expect("4 bytes")));
    let mut offset = 12 + header_size;
    if features_count > 0 && index_node_size > 0 {
        if index_node_size < 2 {
            return Err(bad(
                "the header".into(),
                "the index node size is 1; it must be 0 (no index) or at least 2".into(),
            ));
        }
        // Every feature takes at least its 4-byte size in the file.
        if features_count > len / 4 {
            return Err(bad(
                "the header".into(),
                format!(
                    "it says there are {features_count} features, more than a file of {len} bytes holds"
                ),
            ));
        }
        offset += PackedRTree::index_size(features_count as usize, index_node_size) as u64;
        if offset > len {
            return Err(bad(
                "the spatial index".into(),
                format!(
                    "the file ends at byte {len}, inside the index (which ends at byte {offset})"
                ),
            ));
        }
    }
    // Each feature: its size (4 bytes, little-endian), then that many bytes. Fewer
    // than 4 bytes left end the features, as they do for the reader.
    let mut index = 0usize;
    while len - offset >= 4 {
        let at = offset as usize;
        let size = u64::from(u32::from_le_bytes(
            data[at..at + 4].try_into().expect("4 bytes"),
        ));
        let left = len - offset - 4;
        if size > left {
            return Err(bad(
                format!("features[{index}]"),
                format!(
                    "it says it is {size} bytes long, but only {left} bytes are left in the file"
                ),
            ));
        }
        offset += 4 + size;
        index += 1;
    }
    Ok(())
}

/// Checks a feature's properties as the FlatGeobuf reader walks them, as it
/// slices them without bounds checks: pairs of a column's index (2 bytes) and
/// a value, of a size fixed by the column's type or 4 bytes of length and
/// that many bytes.
fn check_properties(bytes: &[u8], columns: &[(String, ColumnType)]) -> Result<(), String> {
    let mut offset = 0;
    // The reader's condition: it allows one trailing byte.
    while offset + 1 < bytes.len() {
        let column = usize::from(u16::from_le_bytes([bytes[offset], bytes[offset + 1]]));
        offset += 2;
        // The reader says what is wrong with an unknown column.
        let Some((name, kind)) = columns.get(column) else {
            return Ok(());
        };
        let size = match *kind {
            ColumnType::Byte | ColumnType::UByte | ColumnType::Bool => 1,
            ColumnType::Short | ColumnType::UShort => 2,
            ColumnType::Int | ColumnType::UInt | ColumnType::Float => 4,
            ColumnType::Long | ColumnType::ULong | ColumnType::Double => 8,
            ColumnType::String | ColumnType::Json | ColumnType::DateTime | ColumnType::Binary => {
                let Some(len) = bytes.get(offset..offset + 4) else {
                    return Err(format!("property {name:?}: its length is cut off"));
                };
                offset += 4;
                u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize
            }
            _ => 0,
        };
        if size > bytes.len() - offset {
            return Err(format!(
                "property {name:?}: its value ({size} bytes) runs past the end of the \
                 feature's {} bytes of properties",
                bytes.len()
            ));
        }
        offset += size;
    }
    Ok(())
}
