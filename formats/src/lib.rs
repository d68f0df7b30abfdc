//! Uploads as people have them: GeoJSON, zipped Shapefiles, GeoPackages,
//! FlatGeobuf, CSV and KML/KMZ, in any coordinate system this crate knows,
//! turned into the WGS84 [`Feature`]s the render core takes.
//!
//! The format is told from the content ([`sniff`]: magic bytes, a zip's
//! members), never from a name or media type alone. Coordinates are reprojected
//! to WGS84 ([`Crs`]) and then checked exactly as GeoJSON input is (closed rings,
//! positions on Earth, ...). Every problem names the part of the upload and what
//! is wrong with it.
#![forbid(unsafe_code)]

mod collect;
mod crs;
mod csv_text;
mod detect;
mod edit;
mod fgb;
mod gpkg;
mod kml;
mod shapefile_zip;
mod summary;
mod wkb;
mod wkt_crs;

use std::io::{Cursor, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tilefarm_renderer::{InputError, OnInvalid, ReadReport, read_geojson};

pub use crs::{Crs, CrsError};
pub use detect::{Format, SNIFF_LEN, Sniffed, Unrecognised, sniff};
pub use edit::{Applied, Edit, EditError, UnknownFeature};
pub use summary::{Skipped, Summary};

/// How to read an upload. Everything but `on_invalid` can come from the
/// uploader (query parameters), so it is (de)serializable.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReadOptions {
    #[serde(skip)]
    pub on_invalid: OnInvalid,
    /// The GeoPackage table (or the zipped Shapefile) to read; the first by default.
    #[serde(default, rename = "table", skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// CSV: the longitude (or x) column, when it is not one of the usual names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<String>,
    /// CSV: the latitude (or y) column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<String>,
    /// CSV: a column of WKT geometries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geometry: Option<String>,
    /// The coordinate system of a CSV's coordinates (WGS84 by default), or of a
    /// Shapefile that has no `.prj`: `EPSG:27700`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crs: Option<String>,
}

impl ReadOptions {
    /// Whether nothing but the defaults is asked for.
    pub fn is_default(&self) -> bool {
        *self
            == Self {
                on_invalid: self.on_invalid,
                ..Self::default()
            }
    }
}

/// What was read from an upload.
#[derive(Debug)]
pub struct Upload {
    pub format: Format,
    /// The source coordinate system, e.g. `EPSG:27700 (OSGB36 / British National Grid)`.
    pub crs: String,
    /// The table or layer read, for formats that hold several.
    pub layer: Option<String>,
    /// All the layers the upload holds, when it holds more than one.
    pub layers: Vec<String>,
    /// The features, in WGS84, and those left out.
    pub report: ReadReport,
}

/// Why an upload cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// GeoJSON, with the GeoJSON reader's own message.
    #[error(transparent)]
    GeoJson(#[from] InputError),
    /// Another format: the part of the upload (a zip member, a table, a line or
    /// record) and what is wrong with it.
    #[error("{format}: {part}: {problem}")]
    Input {
        format: Format,
        part: String,
        problem: String,
    },
    /// Not a format this crate reads, as its first bytes tell.
    #[error(transparent)]
    Unrecognised(#[from] Unrecognised),
    /// It starts like a zip but cannot be read as one.
    #[error("the upload starts like a zip but is not one that can be read: {0}")]
    BadZip(#[source] zip::result::ZipError),
    /// A zip with nothing to read in it.
    #[error("the zip is empty")]
    EmptyZip,
    /// A zip whose only member is another zip.
    #[error("the zip holds only another zip ({0})")]
    ZipInZip(String),
    /// The upload could not be read at all.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// What an upload that cannot be read at all is, before the I/O error.
const UNREADABLE: &str = "could not read the upload";

impl Error {
    /// The error for an I/O failure while doing `what`.
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    pub(crate) fn input(
        format: Format,
        part: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Error::Input {
            format,
            part: part.into(),
            problem: problem.into(),
        }
    }

    /// A short machine-readable code: `invalid_geojson`, `invalid_data` or
    /// `unsupported_format`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::GeoJson(_) => "invalid_geojson",
            Error::Input { .. } => "invalid_data",
            Error::Unrecognised(_)
            | Error::BadZip(_)
            | Error::EmptyZip
            | Error::ZipInZip(_)
            | Error::Io { .. } => "unsupported_format",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads an upload from a stream. GeoJSON is parsed as it streams; the other
/// formats need random access and are read whole first.
pub fn read(mut reader: impl Read, options: &ReadOptions) -> Result<Upload> {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    (&mut reader)
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)
        .map_err(Error::io(UNREADABLE))?;
    match sniff(&head)? {
        Sniffed::Format(Format::GeoJson) => {
            read_geojson_upload(Cursor::new(head).chain(reader), options)
        }
        _ => {
            let mut data = head;
            reader
                .read_to_end(&mut data)
                .map_err(Error::io(UNREADABLE))?;
            read_bytes(&data, options)
        }
    }
}

/// Reads an upload held in memory.
pub fn read_bytes(data: &[u8], options: &ReadOptions) -> Result<Upload> {
    let head = &data[..data.len().min(SNIFF_LEN)];
    match sniff(head)? {
        Sniffed::Format(Format::GeoJson) => read_geojson_upload(data, options),
        Sniffed::Format(Format::Csv) => csv_text::read(data, options),
        Sniffed::Format(Format::Kml) => kml::read(data, options),
        Sniffed::Format(Format::FlatGeobuf) => fgb::read(data, options),
        Sniffed::Format(Format::GeoPackage) => gpkg::read_bytes(data, options),
        Sniffed::Format(Format::Shapefile) | Sniffed::Zip => shapefile_zip::read_zip(data, options),
    }
}

/// Reads an upload from a file (`-` is standard input).
pub fn read_path(path: &Path, options: &ReadOptions) -> Result<Upload> {
    if path.as_os_str() == "-" {
        return read(std::io::stdin().lock(), options);
    }
    let mut file =
        std::fs::File::open(path).map_err(Error::io(format!("cannot open {}", path.display())))?;
    let mut head = Vec::with_capacity(SNIFF_LEN);
    (&mut file)
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)
        .map_err(Error::io(format!("cannot read {}", path.display())))?;
    // SQLite reads the file where it is.
    if sniff(&head) == Ok(Sniffed::Format(Format::GeoPackage)) {
        return gpkg::read_file(path, options);
    }
    read(Cursor::new(head).chain(file), options)
}

fn read_geojson_upload(reader: impl Read, options: &ReadOptions) -> Result<Upload> {
    use std::io::BufRead;
    // A UTF-8 byte order mark, as some editors on Windows write: not JSON, and
    // no part of the data.
    let mut reader = std::io::BufReader::new(reader);
    let starts_with_bom = reader
        .fill_buf()
        .map_err(Error::io(UNREADABLE))?
        .starts_with(b"\xef\xbb\xbf");
    if starts_with_bom {
        reader.consume(3);
    }
    let report = read_geojson(
        reader,
        &tilefarm_renderer::ReadOptions {
            on_invalid: options.on_invalid,
        },
    )?;
    Ok(Upload {
        format: Format::GeoJson,
        crs: Crs::wgs84().label().to_string(),
        layer: None,
        layers: Vec::new(),
        report,
    })
}
