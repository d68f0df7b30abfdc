//! Zipped uploads: a Shapefile (`.shp`, `.shx`, `.dbf`, with `.prj` and `.cpg`
//! when present), a KMZ, or a zip of one file in another format.

use std::io::{Cursor, Read};

use serde_json::{Map, Number, Value};
use tilefarm_renderer::Location;

use crate::collect::Collector;
use crate::{Crs, Error, Format, ReadOptions, Result, Upload};

/// The most a zip member's declared size reserves before it is read.
const MAX_SIZE_HINT: u64 = 16 << 20;

/// The most one zip member may unzip to: a deflated member can expand about a
/// thousand times, so an upload within the size limit could otherwise unzip to
/// far more memory than the machine has.
const MAX_MEMBER_BYTES: u64 = 2 << 30;

/// The members of a zip, read whole (zip members cannot be sought in).
struct Members {
    names: Vec<String>,
    archive: zip::ZipArchive<Cursor<Vec<u8>>>,
}

impl Members {
    fn open(data: &[u8]) -> Result<Self> {
        let archive = zip::ZipArchive::new(Cursor::new(data.to_vec())).map_err(Error::BadZip)?;
        let names = archive
            .file_names()
            .filter(|n| {
                !n.ends_with('/') && !n.starts_with("__MACOSX/") && !base(n).starts_with("._")
            })
            .map(str::to_string)
            .collect();
        Ok(Self { names, archive })
    }

    /// The member with this stem and extension (case-insensitive), if any.
    fn find(&self, stem: &str, ext: &str) -> Option<String> {
        self.names
            .iter()
            .find(|n| {
                let n = n.to_ascii_lowercase();
                n.strip_suffix(ext)
                    .and_then(|s| s.strip_suffix('.'))
                    .is_some_and(|s| s == stem.to_ascii_lowercase())
            })
            .cloned()
    }

    fn with_ext(&self, ext: &str) -> Vec<String> {
        self.names
            .iter()
            .filter(|n| extension(n).eq_ignore_ascii_case(ext))
            .cloned()
            .collect()
    }

    fn read(&mut self, name: &str, format: Format) -> Result<Vec<u8>> {
        let mut file = self.archive.by_name(name).map_err(|e| {
            Error::input(
                format,
                base(name),
                format!("cannot open it in the zip: {e}"),
            )
        })?;
        unzip_member(&mut file, MAX_MEMBER_BYTES)
            .map_err(|problem| Error::input(format, base(name), problem))
    }
}

/// A zip member's bytes, refused past `limit`.
fn unzip_member(
    file: &mut zip::read::ZipFile<'_, Cursor<Vec<u8>>>,
    limit: u64,
) -> std::result::Result<Vec<u8>, String> {
    // The size the zip declares is only a hint, and may be a lie (fuzzing
    // found 3.8 GB declared in a 550-byte zip): reserve no more than 16 MiB for
    // it; reading grows the buffer to the member's real size.
    let hint = file.size().min(MAX_SIZE_HINT).min(limit);
    let mut out = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    file.by_ref()
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot unzip it: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!(
            "it unzips to more than {} MiB, the most tilefarm reads of one zip member",
            limit >> 20
        ));
    }
    Ok(out)
}

fn base(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

fn extension(name: &str) -> &str {
    base(name).rsplit_once('.').map_or("", |(_, e)| e)
}

fn stem(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

/// Reads a zipped upload: a Shapefile, a KMZ, or one file of another format.
pub(crate) fn read_zip(data: &[u8], options: &ReadOptions) -> Result<Upload> {
    let mut members = Members::open(data)?;
    let shps = members.with_ext("shp");
    if !shps.is_empty() {
        return read_shapefile(&mut members, &shps, options);
    }
    // A KMZ: its first .kml is the document.
    if let Some(doc) = members.with_ext("kml").first().cloned() {
        let text = members.read(&doc, Format::Kml)?;
        return crate::kml::read(&text, options);
    }
    let listed = members.names.join(", ");
    match members.names.as_slice() {
        [] => Err(Error::EmptyZip),
        [only] => {
            let only = only.clone();
            let inner = members.read(&only, Format::Shapefile)?;
            if matches!(
                crate::sniff(&inner[..inner.len().min(crate::SNIFF_LEN)]),
                Ok(crate::Sniffed::Zip)
            ) {
                return Err(Error::ZipInZip(only));
            }
            crate::read_bytes(&inner, options)
        }
        _ => {
            let exts: Vec<&str> = members.names.iter().map(|n| extension(n)).collect();
            let problem = if exts
                .iter()
                .any(|e| e.eq_ignore_ascii_case("dbf") || e.eq_ignore_ascii_case("shx"))
            {
                "it has no .shp: a Shapefile needs its .shp, .shx and .dbf"
            } else {
                "it holds several files and no Shapefile (.shp)"
            };
            Err(Error::input(
                Format::Shapefile,
                "the zip",
                format!("{problem}; it holds {listed}"),
            ))
        }
    }
}

fn read_shapefile(members: &mut Members, shps: &[String], options: &ReadOptions) -> Result<Upload> {
    let fmt = Format::Shapefile;
    let layers: Vec<String> = shps.iter().map(|n| stem(base(n)).to_string()).collect();
    let shp_name = match &options.layer {
        Some(layer) => shps
            .iter()
            .find(|n| stem(base(n)).eq_ignore_ascii_case(layer))
            .cloned()
            .ok_or_else(|| {
                Error::input(
                    fmt,
                    "the zip",
                    format!("it has no Shapefile {layer:?}; it has {layers:?}"),
                )
            })?,
        None => shps[0].clone(),
    };
    let shp_stem = stem(&shp_name).to_string();
    let file = base(&shp_name).to_string();
    let part = |ext: &str| format!("{}.{ext}", stem(&file));
    let need = |members: &Members, ext: &str| {
        members.find(&shp_stem, ext).ok_or_else(|| {
            Error::input(
                fmt,
                "the zip",
                format!(
                    "{file} has no {} beside it: a Shapefile needs its .shp, .shx and .dbf (the zip \
                     holds {})",
                    part(ext),
                    members.names.join(", ")
                ),
            )
        })
    };
    let (shx_name, dbf_name) = (need(members, "shx")?, need(members, "dbf")?);
    let shp = members.read(&shp_name, fmt)?;
    let shx = members.read(&shx_name, fmt)?;
    let dbf = members.read(&dbf_name, fmt)?;
    check_shp(&shp, &part("shp"))?;
    let crs = match members.find(&shp_stem, "prj") {
        Some(prj_name) => {
            let prj = members.read(&prj_name, fmt)?;
            let text = String::from_utf8_lossy(&prj);
            Crs::from_wkt(&text).map_err(|e| Error::input(fmt, part("prj"), e.to_string()))?
        }
        None => match &options.crs {
            Some(name) => Crs::from_name(name)
                .map_err(|e| Error::input(fmt, "the crs parameter", e.to_string()))?,
            None => Crs::wgs84(),
        },
    };
    let encoding = match members.find(&shp_stem, "cpg") {
        Some(cpg_name) => {
            let cpg = members.read(&cpg_name, fmt)?;
            let label = String::from_utf8_lossy(&cpg).trim().to_string();
            code_page(&label).ok_or_else(|| {
                Error::input(
                    fmt,
                    part("cpg"),
                    format!("the code page {label:?} is not one tilefarm knows"),
                )
            })?
        }
        None => ldid_code_page(&dbf),
    };

    let shape_reader = shapefile::ShapeReader::with_shx(Cursor::new(shp), Cursor::new(shx))
        .map_err(|e| Error::input(fmt, part("shp"), e.to_string()))?;
    let dbf_reader = dbase::Reader::new_with_encoding(
        Cursor::new(dbf),
        dbase::encoding::EncodingRs::from(encoding),
    )
    .map_err(|e| Error::input(fmt, part("dbf"), e.to_string()))?;
    let mut reader = shapefile::Reader::new(shape_reader, dbf_reader);
    let mut collector = Collector::new(fmt, part("shp"), &crs, options.on_invalid);
    for (i, item) in reader.iter_shapes_and_records().enumerate() {
        let record = i + 1;
        let (shape, fields) = item.map_err(|e| {
            Error::input(
                fmt,
                format!("{}, record {record}", part("shp")),
                e.to_string(),
            )
        })?;
        let mut properties = Map::new();
        for (name, value) in fields {
            properties.insert(name, field_value(value));
        }
        let geometry = match shape {
            shapefile::Shape::NullShape => Ok(None),
            shape => geo::Geometry::<f64>::try_from(shape)
                .map(Some)
                .map_err(|e| format!("the shape cannot be read: {e}")),
        };
        collector.take(
            || Location {
                record: Some(record),
                ..Location::default()
            },
            None,
            properties,
            geometry,
        )?;
    }
    collector.upload(Some(stem(&file).to_string()), layers)
}

/// The header's file length against the bytes there are: a truncated `.shp`
/// is said to be one, not left to fail somewhere in its records.
fn check_shp(shp: &[u8], part: &str) -> Result<()> {
    let bad = |problem: String| Err(Error::input(Format::Shapefile, part, problem));
    if shp.len() < 100 {
        return bad(format!(
            "it is {} bytes long, shorter than a Shapefile header (100 bytes)",
            shp.len()
        ));
    }
    if shp[..4] != [0x00, 0x00, 0x27, 0x0a] {
        return bad(
            "it is not a Shapefile .shp (its first bytes are not the file code 9994)".into(),
        );
    }
    let words = u32::from_be_bytes([shp[24], shp[25], shp[26], shp[27]]) as usize;
    if words * 2 > shp.len() {
        return bad(format!(
            "it is truncated: its header says {} bytes, the file has {}",
            words * 2,
            shp.len()
        ));
    }
    Ok(())
}

/// The encoding a `.cpg` names: `UTF-8`, `1252`, `CP1252`, `ISO-8859-1`, `Latin1`, ...
fn code_page(label: &str) -> Option<&'static encoding_rs::Encoding> {
    let l = label.trim().to_ascii_lowercase();
    let l = l.strip_prefix("ansi ").unwrap_or(&l);
    if let Ok(n) = l.trim_start_matches("cp").parse::<u32>() {
        return match n {
            65001 => Some(encoding_rs::UTF_8),
            866 => Some(encoding_rs::IBM866),
            874 => Some(encoding_rs::WINDOWS_874),
            932 => Some(encoding_rs::SHIFT_JIS),
            936 => Some(encoding_rs::GBK),
            949 => Some(encoding_rs::EUC_KR),
            950 => Some(encoding_rs::BIG5),
            1250..=1258 => encoding_rs::Encoding::for_label(format!("windows-{n}").as_bytes()),
            // 88591 and the like, as some tools write ISO 8859 parts.
            88591..=885916 => {
                encoding_rs::Encoding::for_label(format!("iso-8859-{}", n - 88590).as_bytes())
            }
            _ => None,
        };
    }
    encoding_rs::Encoding::for_label(l.as_bytes())
}

/// The code page a `.dbf` without `.cpg` declares in its language driver byte;
/// ISO-8859-1 (as GDAL assumes) when it declares none.
fn ldid_code_page(dbf: &[u8]) -> &'static encoding_rs::Encoding {
    match dbf.get(29).copied().unwrap_or(0) {
        0x01 | 0x02 | 0x03 | 0x57 | 0x58 | 0x59 => encoding_rs::WINDOWS_1252,
        0x64 | 0xc8 => encoding_rs::WINDOWS_1250,
        0x65 | 0x66 | 0xc9 => encoding_rs::WINDOWS_1251,
        0x7b => encoding_rs::SHIFT_JIS,
        0x7a => encoding_rs::GBK,
        0xca => encoding_rs::WINDOWS_1254,
        0xcb => encoding_rs::WINDOWS_1253,
        _ => encoding_rs::WINDOWS_1252,
    }
}

fn field_value(value: dbase::FieldValue) -> Value {
    use dbase::FieldValue as F;
    let number = |f: f64| {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            Value::from(f as i64)
        } else {
            Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
    };
    match value {
        F::Character(s) => s.map_or(Value::Null, Value::String),
        F::Memo(s) => Value::String(s),
        F::Numeric(n) => n.map_or(Value::Null, number),
        F::Float(n) => n.map_or(Value::Null, |f| number(f64::from(f))),
        F::Double(f) | F::Currency(f) => number(f),
        F::Integer(i) => Value::from(i),
        F::Logical(b) => b.map_or(Value::Null, Value::Bool),
        F::Date(d) => d.map_or(Value::Null, |d| {
            Value::String(format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day()))
        }),
        F::DateTime(dt) => {
            let (d, t) = (dt.date(), dt.time());
            Value::String(format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                d.year(),
                d.month(),
                d.day(),
                t.hours(),
                t.minutes(),
                t.seconds()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_member_that_unzips_past_the_limit_is_refused() {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let deflated = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("zeros.shp", deflated).unwrap();
        zip.write_all(&vec![0u8; 3 << 20]).unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        assert!(bytes.len() < 64 << 10, "a small zip: {} bytes", bytes.len());
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let mut file = archive.by_name("zeros.shp").unwrap();
        let err = unzip_member(&mut file, 1 << 20).unwrap_err();
        assert!(err.contains("more than 1 MiB"), "{err}");
        drop(file);
        let mut file = archive.by_name("zeros.shp").unwrap();
        assert_eq!(unzip_member(&mut file, 4 << 20).unwrap().len(), 3 << 20);
    }
}
