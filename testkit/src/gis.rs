//! Upload fixtures made with GDAL's `ogr2ogr` (and the `zip` tool) from the
//! project's own GeoJSON, and a set of bad uploads built from them. Both tools
//! come from `scripts/setup` (Debian's gdal-bin and zip). The format crate's
//! own tests include this file as a module, so each uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The project's sample data (`data/NAME`).
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name)
}

/// Runs a tool in `dir` and gives its standard output; panics with its error
/// output if it fails.
pub fn run(program: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): scripts/setup installs it"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the tool writes UTF-8")
}

/// The files of a directory as (name, bytes), sorted by name.
pub fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut members: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    members.sort();
    members
}

/// A Shapefile of `source` clipped to `clip` (lon/lat) in `srs`, as its files.
pub fn shapefile(source: &Path, srs: &str, clip: [f64; 4], stem: &str) -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let clip: Vec<String> = clip.iter().map(f64::to_string).collect();
    let out = format!("{stem}.shp");
    let mut args = vec!["-f", "ESRI Shapefile", "-t_srs", srs, "-clipsrc"];
    args.extend(clip.iter().map(String::as_str));
    args.extend([out.as_str(), source.to_str().unwrap()]);
    run("ogr2ogr", &args, dir.path());
    files(dir.path())
}

/// A file of `source` written by ogr2ogr with `args` (driver, options), read back.
pub fn convert(source: &Path, out_name: &str, args: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut all: Vec<&str> = args.to_vec();
    all.extend([out_name, source.to_str().unwrap()]);
    run("ogr2ogr", &all, dir.path());
    std::fs::read(dir.path().join(out_name)).unwrap()
}

/// A zip of these members.
pub fn zip(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    if members.is_empty() {
        // An empty archive: the end-of-central-directory record alone.
        let mut empty = b"PK\x05\x06".to_vec();
        empty.extend([0u8; 18]);
        return empty;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in members {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let mut args = vec!["-q", "upload.zip"];
    args.extend(members.iter().map(|(n, _)| n.as_str()));
    run("zip", &args, dir.path());
    std::fs::read(dir.path().join("upload.zip")).unwrap()
}

/// A bad upload and what its error must say.
#[derive(Debug)]
pub struct BadUpload {
    pub what: &'static str,
    pub body: Vec<u8>,
    /// Reading parameters, as an upload's query gives them (`crs`, `lon`, ...).
    pub params: Vec<(&'static str, &'static str)>,
    /// Texts the message must contain.
    pub wants: Vec<&'static str>,
    /// Whether the API refuses it at once (its first bytes are no format, or a
    /// parameter is wrong).
    pub refused_at_once: bool,
}

fn case(what: &'static str, body: Vec<u8>, wants: Vec<&'static str>) -> BadUpload {
    BadUpload {
        what,
        body,
        params: Vec::new(),
        wants,
        refused_at_once: false,
    }
}

/// Bad uploads of every format, each with the part and the problem its error
/// must name.
pub fn bad_uploads() -> Vec<BadUpload> {
    let countries = data("ne_110m_countries.geojson");
    let shp = shapefile(
        &countries,
        "EPSG:27700",
        [-11.0, 49.0, 3.0, 61.0],
        "countries",
    );
    let without = |ext: &str| -> Vec<(String, Vec<u8>)> {
        shp.iter()
            .filter(|(n, _)| !n.ends_with(ext))
            .cloned()
            .collect()
    };
    let replaced = |ext: &str, f: &dyn Fn(&mut Vec<u8>)| -> Vec<(String, Vec<u8>)> {
        let mut members = shp.clone();
        for (name, bytes) in &mut members {
            if name.ends_with(ext) {
                f(bytes);
            }
        }
        members
    };
    // A .prj in a coordinate system tilefarm does not know (Swiss CH1903+ / LV95).
    let swiss = shapefile(
        &countries,
        "EPSG:2056",
        [5.0, 45.0, 11.0, 48.0],
        "countries",
    );
    let swiss_prj = swiss
        .iter()
        .find(|(n, _)| n.ends_with(".prj"))
        .unwrap()
        .1
        .clone();
    let mut with_cpg = shp.clone();
    with_cpg.push(("countries.cpg".into(), b"KLINGON-9".to_vec()));
    let bare_shp = shp
        .iter()
        .find(|(n, _)| n.ends_with(".shp"))
        .unwrap()
        .1
        .clone();
    let tiles_only = {
        // A GeoPackage with a tile table and no feature table: ogr2ogr makes a
        // vector one, whose contents row is then changed to tiles.
        let dir = tempfile::tempdir().unwrap();
        run(
            "ogr2ogr",
            &[
                "-f",
                "GPKG",
                "t.gpkg",
                countries.to_str().unwrap(),
                "-sql",
                "SELECT name FROM naturalearth_lowres LIMIT 1",
            ],
            dir.path(),
        );
        run(
            "ogrinfo",
            &[
                "t.gpkg",
                "-sql",
                "UPDATE gpkg_contents SET data_type = 'tiles'",
            ],
            dir.path(),
        );
        std::fs::read(dir.path().join("t.gpkg")).unwrap()
    };
    let mut cases = vec![
        case(
            "zip without .shx",
            zip(&without(".shx")),
            vec!["countries.shx", "needs its .shp, .shx and .dbf"],
        ),
        case(
            "zip without .dbf",
            zip(&without(".dbf")),
            vec!["countries.dbf", "needs its .shp, .shx and .dbf"],
        ),
        case("zip without .shp", zip(&without(".shp")), vec!["no .shp"]),
        case("empty zip", zip(&[]), vec!["empty"]),
        case(
            "zip of other files",
            zip(&[
                ("a.txt".into(), b"a".to_vec()),
                ("b.txt".into(), b"b".to_vec()),
            ]),
            vec!["no Shapefile", "a.txt"],
        ),
        case(
            "broken zip",
            b"PK\x03\x04 this is no zip at all".to_vec(),
            vec!["not one that can be read"],
        ),
        case(
            "truncated .shp",
            zip(&replaced(".shp", &|b| b.truncate(b.len() / 2))),
            vec!["countries.shp", "truncated"],
        ),
        case(
            "a .prj in an unknown CRS",
            zip(&replaced(".prj", &|b| *b = swiss_prj.clone())),
            vec!["countries.prj", "CH1903+", "not one tilefarm can reproject"],
        ),
        case(
            "unknown .cpg",
            zip(&with_cpg),
            vec!["countries.cpg", "KLINGON-9"],
        ),
        case(
            "CSV without coordinates",
            b"name,population\nParis,2100000\n".to_vec(),
            vec!["no coordinate columns", "name", "population"],
        ),
        case(
            "CSV with a bad number",
            b"name,lon,lat\nParis,2.35,48.85\nNowhere,abc,12\n".to_vec(),
            vec!["line 3", "\"lon\"", "\"abc\", not a number"],
        ),
        case(
            "CSV with a short row",
            b"name,lon,lat\nParis,2.35,48.85\nRome,12.5\n".to_vec(),
            vec!["line 3", "2 fields where the header has 3"],
        ),
        case(
            "CSV latitude off the Earth",
            b"name;lat;lon\nA;10;20\nB;95;20\n".to_vec(),
            vec!["line 3", "latitude 95"],
        ),
        case(
            "CSV with bad WKT",
            b"id,wkt\n1,\"POINT (1 2)\"\n2,\"POLYGON ((0 0, 1\"\n".to_vec(),
            vec!["line 3", "not WKT"],
        ),
        case(
            "CSV with a header only",
            b"name,lon,lat\n".to_vec(),
            vec!["no features"],
        ),
        case(
            "GeoPackage without a feature table",
            tiles_only,
            vec!["no feature table", "tiles"],
        ),
        case(
            "SQLite that is no GeoPackage",
            sqlite_without_gpkg(),
            vec!["not a GeoPackage"],
        ),
        case(
            "KML that is not XML",
            b"<kml><Placemark><name>x</name></Placemark>".to_vec(),
            vec!["KML", "ends inside"],
        ),
        case(
            "XML that is not KML",
            b"<?xml version=\"1.0\"?><gpx><wpt lat=\"1\" lon=\"2\"/></gpx>".to_vec(),
            vec!["not KML", "<gpx>"],
        ),
        case(
            "KML with broken markup",
            b"<kml><Placemark><name>x</nam></Placemark></kml>".to_vec(),
            vec!["not well-formed XML", "line 1"],
        ),
        case(
            "KML with bad coordinates",
            b"<kml><Placemark><Point><coordinates>1;2</coordinates></Point></Placemark></kml>"
                .to_vec(),
            vec!["features[0]", "\"1;2\""],
        ),
        case(
            "FlatGeobuf cut short",
            {
                let fgb = convert(&countries, "c.fgb", &["-f", "FlatGeobuf"]);
                fgb[..fgb.len() / 3].to_vec()
            },
            vec!["FlatGeobuf"],
        ),
    ];
    cases.push(BadUpload {
        params: vec![("crs", "EPSG:99999")],
        refused_at_once: true,
        ..case(
            "CSV with an unknown CRS",
            b"x,y\n1,2\n".to_vec(),
            vec!["EPSG:99999", "not one tilefarm can reproject"],
        )
    });
    cases.push(BadUpload {
        params: vec![("lon", "long_x")],
        ..case(
            "CSV naming a missing column",
            b"a,b\n1,2\n".to_vec(),
            vec!["no longitude column \"long_x\""],
        )
    });
    cases.push(BadUpload {
        refused_at_once: true,
        ..case("bare .shp", bare_shp, vec!["bare .shp", "zip"])
    });
    cases.push(BadUpload {
        refused_at_once: true,
        ..case(
            "binary junk",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(),
            vec!["none of the formats", "89 50 4e 47"],
        )
    });
    cases
}

/// An SQLite database with one ordinary table, made with GDAL's SQLite driver.
fn sqlite_without_gpkg() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.csv"), "a,b\n1,2\n").unwrap();
    run(
        "ogr2ogr",
        &["-f", "SQLite", "t.sqlite", "t.csv"],
        dir.path(),
    );
    std::fs::read(dir.path().join("t.sqlite")).unwrap()
}
