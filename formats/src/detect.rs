//! What an upload is, told from its first bytes (and, for a zip, its members),
//! never from its name or media type alone.

use std::fmt;

/// The formats tilefarm reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// GeoJSON, or a GeoJSON text sequence / newline-delimited GeoJSON.
    GeoJson,
    /// A zip holding a Shapefile (`.shp`, `.shx`, `.dbf`, and `.prj`, `.cpg`).
    Shapefile,
    /// An OGC GeoPackage (SQLite).
    GeoPackage,
    FlatGeobuf,
    /// Comma-, semicolon- or tab-separated text with coordinate or WKT columns.
    Csv,
    /// KML, or KMZ (a zip holding a `.kml`).
    Kml,
}

impl Format {
    /// The name used in messages and the ingest summary.
    pub fn name(self) -> &'static str {
        match self {
            Format::GeoJson => "GeoJSON",
            Format::Shapefile => "Shapefile",
            Format::GeoPackage => "GeoPackage",
            Format::FlatGeobuf => "FlatGeobuf",
            Format::Csv => "CSV",
            Format::Kml => "KML",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the first bytes say. A zip is told apart by its members later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniffed {
    Format(Format),
    Zip,
}

/// How many bytes [`sniff`] wants to see (fewer is fine for a short upload).
pub const SNIFF_LEN: usize = 512;

const SQLITE: &[u8] = b"SQLite format 3\0";
const FGB: &[u8] = b"fgb\x03";
const ZIP: &[u8] = b"PK\x03\x04";
const EMPTY_ZIP: &[u8] = b"PK\x05\x06";
const SHP: &[u8] = &[0x00, 0x00, 0x27, 0x0a];

/// Tells the format from the first bytes of an upload ([`SNIFF_LEN`] of them, or
/// all of a shorter one). Text that is neither JSON nor XML is taken for CSV; the
/// CSV reader then says what is wrong with it.
pub fn sniff(head: &[u8]) -> Result<Sniffed, Unrecognised> {
    if head.starts_with(ZIP) || head.starts_with(EMPTY_ZIP) {
        return Ok(Sniffed::Zip);
    }
    if head.starts_with(SQLITE) {
        return Ok(Sniffed::Format(Format::GeoPackage));
    }
    if head.starts_with(FGB) {
        return Ok(Sniffed::Format(Format::FlatGeobuf));
    }
    if head.starts_with(SHP) && head.len() >= 100 {
        return Err(Unrecognised::BareShp);
    }
    if head.starts_with(b"\x1f\x8b") {
        return Err(Unrecognised::Gzip);
    }
    if head.starts_with(b"\xff\xfe") || head.starts_with(b"\xfe\xff") {
        return Err(Unrecognised::Utf16);
    }
    let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let Some(&first) = text.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Err(Unrecognised::Empty);
    };
    match first {
        b'{' | 0x1e | b'[' => return Ok(Sniffed::Format(Format::GeoJson)),
        b'<' => return Ok(Sniffed::Format(Format::Kml)),
        _ => {}
    }
    if looks_like_text(text) {
        return Ok(Sniffed::Format(Format::Csv));
    }
    let shown: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Err(Unrecognised::Unknown {
        first_bytes: shown.join(" "),
    })
}

/// Why the first bytes of an upload are not a format tilefarm reads ([`sniff`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unrecognised {
    #[error(
        "the upload is a bare .shp file: send a zip holding the .shp with its .shx and .dbf \
         (and .prj)"
    )]
    BareShp,
    #[error(
        "the upload is gzip-compressed (it starts with the bytes 1f 8b): send the file \
         itself, uncompressed"
    )]
    Gzip,
    #[error(
        "the upload is UTF-16 text (it starts with a UTF-16 byte order mark): save it as UTF-8"
    )]
    Utf16,
    #[error("the upload is empty")]
    Empty,
    #[error(
        "the upload is none of the formats tilefarm reads (GeoJSON, zipped Shapefile, \
         GeoPackage, FlatGeobuf, CSV, KML/KMZ): it starts with the bytes {first_bytes}"
    )]
    Unknown { first_bytes: String },
}

/// No NUL or other control bytes but tab, CR and LF: text in UTF-8 or a
/// single-byte code page.
fn looks_like_text(head: &[u8]) -> bool {
    head.iter()
        .all(|&b| b >= 0x20 || matches!(b, b'\t' | b'\r' | b'\n' | 0x0c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_formats_from_their_first_bytes() {
        let f = |b: &[u8]| sniff(b).unwrap();
        assert_eq!(f(b"  {\"type\""), Sniffed::Format(Format::GeoJson));
        assert_eq!(f(b"\x1e{"), Sniffed::Format(Format::GeoJson));
        assert_eq!(
            f(b"\xef\xbb\xbf<?xml version"),
            Sniffed::Format(Format::Kml)
        );
        assert_eq!(f(b"name,lon,lat\n"), Sniffed::Format(Format::Csv));
        assert_eq!(f(b"PK\x03\x04...."), Sniffed::Zip);
        assert_eq!(
            f(b"SQLite format 3\0...."),
            Sniffed::Format(Format::GeoPackage)
        );
        assert_eq!(f(b"fgb\x03fgb\0"), Sniffed::Format(Format::FlatGeobuf));
        assert!(
            sniff(b"\x89PNG\r\n\x1a\n")
                .unwrap_err()
                .to_string()
                .contains("89 50 4e 47")
        );
        assert!(sniff(b"  ").is_err());
        assert_eq!(sniff(b"\x1f\x8b\x08\x08"), Err(Unrecognised::Gzip));
        assert!(Unrecognised::Gzip.to_string().contains("gzip"));
        assert_eq!(sniff(b"\xff\xfe{\0"), Err(Unrecognised::Utf16));
        assert!(Unrecognised::Utf16.to_string().contains("UTF-16"));
        let mut shp = vec![0, 0, 0x27, 0x0a];
        shp.resize(100, 0);
        assert_eq!(sniff(&shp), Err(Unrecognised::BareShp));
        assert!(Unrecognised::BareShp.to_string().contains(".shx"));
    }
}
