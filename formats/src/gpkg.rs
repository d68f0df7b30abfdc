//! GeoPackage: the first vector feature table (in `gpkg_contents` order), or the
//! one named; its CRS from `gpkg_spatial_ref_sys` (EPSG code, else WKT).

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::{Map, Number, Value};
use tilefarm_renderer::{FeatureId, Location};

use crate::collect::Collector;
use crate::{Crs, Error, Format, ReadOptions, Result, Upload, wkb};

const FMT: Format = Format::GeoPackage;

fn sql(part: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::input(FMT, part, format!("cannot be read: {e}"))
}

/// Reads a GeoPackage held in memory (SQLite reads files: it is written to a
/// temporary one first).
pub(crate) fn read_bytes(data: &[u8], options: &ReadOptions) -> Result<Upload> {
    let mut file = tempfile::NamedTempFile::new()
        .map_err(|e| Error::input(FMT, "upload", format!("cannot make a temporary file: {e}")))?;
    std::io::Write::write_all(&mut file, data)
        .map_err(|e| Error::input(FMT, "upload", format!("cannot write a temporary file: {e}")))?;
    read_file(file.path(), options)
}

pub(crate) fn read_file(path: &Path, options: &ReadOptions) -> Result<Upload> {
    let db = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql("the file"))?;
    let has = |table: &str| -> Result<bool> {
        db.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?1",
            [table],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(sql("the file"))
    };
    if !has("gpkg_contents")? || !has("gpkg_geometry_columns")? {
        return Err(Error::input(
            FMT,
            "the file",
            "it is an SQLite database but not a GeoPackage (it has no gpkg_contents and \
             gpkg_geometry_columns tables)",
        ));
    }
    let mut stmt = db
        .prepare(
            "SELECT c.table_name, g.column_name, g.srs_id FROM gpkg_contents c \
             JOIN gpkg_geometry_columns g ON g.table_name = c.table_name \
             WHERE c.data_type = 'features' ORDER BY c.rowid",
        )
        .map_err(sql("gpkg_contents"))?;
    let tables: Vec<(String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(sql("gpkg_contents"))?
        .collect::<Result<_, _>>()
        .map_err(sql("gpkg_contents"))?;
    let names: Vec<String> = tables.iter().map(|t| t.0.clone()).collect();
    let (table, geom_column, srs_id) = match (&options.layer, tables.first()) {
        (_, None) => {
            let mut other: Vec<String> = db
                .prepare("SELECT table_name || ' (' || data_type || ')' FROM gpkg_contents")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .unwrap_or_default();
            if other.is_empty() {
                other.push("none".into());
            }
            return Err(Error::input(
                FMT,
                "gpkg_contents",
                format!(
                    "the GeoPackage has no feature table (its contents: {})",
                    other.join(", ")
                ),
            ));
        }
        (Some(wanted), _) => tables
            .iter()
            .find(|t| t.0.eq_ignore_ascii_case(wanted))
            .cloned()
            .ok_or_else(|| {
                Error::input(
                    FMT,
                    "gpkg_contents",
                    format!(
                        "there is no feature table {wanted:?}; the feature tables are {names:?}"
                    ),
                )
            })?,
        (None, Some(first)) => first.clone(),
    };
    let part = format!("table {table:?}");
    let crs = srs(&db, srs_id, options)
        .map_err(|e| Error::input(FMT, format!("{part}, srs_id {srs_id}"), e))?;

    // Columns: the primary key becomes the feature id, the geometry column the
    // geometry, the others properties (BOOLEAN ones as true/false).
    let quoted = format!("\"{}\"", table.replace('"', "\"\""));
    let mut columns: Vec<(String, String, bool)> = db
        .prepare(&format!("PRAGMA table_info({quoted})"))
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(5)? > 0,
                ))
            })?
            .collect()
        })
        .map_err(sql(&part))?;
    columns.retain(|c| !c.0.is_empty());
    let geom_index = columns
        .iter()
        .position(|c| c.0.eq_ignore_ascii_case(&geom_column))
        .ok_or_else(|| {
            Error::input(
                FMT,
                part.clone(),
                format!("it has no geometry column {geom_column:?}"),
            )
        })?;
    let list: Vec<String> = columns
        .iter()
        .map(|c| format!("\"{}\"", c.0.replace('"', "\"\"")))
        .collect();
    let mut stmt = db
        .prepare(&format!("SELECT {} FROM {quoted}", list.join(", ")))
        .map_err(sql(&part))?;
    let mut rows = stmt.query([]).map_err(sql(&part))?;
    let mut collector = Collector::new(FMT, part.clone(), &crs, options.on_invalid);
    let mut index = 0usize;
    while let Some(row) = rows.next().map_err(sql(&part))? {
        let mut id = None;
        let mut properties = Map::new();
        let mut geometry = Ok(None);
        for (i, (name, decl, pk)) in columns.iter().enumerate() {
            let v = row.get_ref(i).map_err(sql(&part))?;
            if i == geom_index {
                geometry = match v {
                    ValueRef::Null => Ok(None),
                    ValueRef::Blob(b) => {
                        wkb::gpkg_wkb(b).and_then(|w| w.map_or(Ok(None), wkb::parse))
                    }
                    _ => Err(format!("the {name:?} column does not hold a geometry blob")),
                };
                continue;
            }
            if *pk && let ValueRef::Integer(n) = v {
                id = Some(FeatureId::Number(n.into()));
                continue;
            }
            properties.insert(name.clone(), value(v, decl));
        }
        let label = id.as_ref().map(|i: &FeatureId| i.to_string());
        let at = index;
        collector.take(
            || Location {
                feature: Some(at),
                id: label,
                ..Location::default()
            },
            id,
            properties,
            geometry,
        )?;
        index += 1;
    }
    collector.upload(Some(table), names)
}

fn value(v: ValueRef, declared: &str) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) if declared.eq_ignore_ascii_case("BOOLEAN") => Value::Bool(n != 0),
        ValueRef::Integer(n) => Value::from(n),
        ValueRef::Real(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(format!("({} bytes of binary data)", b.len())),
    }
}

/// The CRS of `srs_id`: its EPSG code when the organization is EPSG, else its WKT.
fn srs(db: &Connection, srs_id: i64, options: &ReadOptions) -> Result<Crs, String> {
    let row: Option<(String, i64, String)> = db
        .query_row(
            "SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys \
             WHERE srs_id = ?1",
            [srs_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok();
    let Some((org, code, definition)) = row else {
        return Err("gpkg_spatial_ref_sys has no such coordinate system".into());
    };
    if org.eq_ignore_ascii_case("EPSG") {
        return Crs::from_epsg(
            u32::try_from(code).map_err(|_| format!("EPSG code {code} is not valid"))?,
        )
        .map_err(|e| e.to_string());
    }
    match (srs_id, &options.crs) {
        // Undefined geographic: taken as WGS84, as GDAL does.
        (0, None) => Ok(Crs::wgs84()),
        (-1, None) => Err(
            "the table's coordinates are in an undefined Cartesian system: say which \
                           with the crs parameter"
                .into(),
        ),
        (_, Some(name)) => Crs::from_name(name).map_err(|e| e.to_string()),
        _ => Crs::from_wkt(&definition).map_err(|e| e.to_string()),
    }
}
