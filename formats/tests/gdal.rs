//! Agreement with GDAL: fixtures are made at test time with `ogr2ogr` from the
//! project's own GeoJSON, in several formats and coordinate systems. For each,
//! the native file read by tilefarm must give the same features (count and
//! attributes) and the same tiles (>= 99.99 % of pixels, z0-4) as the same
//! file converted to GeoJSON by `ogr2ogr`. `scripts/setup` installs gdal-bin.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tilefarm_formats::{Format, ReadOptions, read_path};
use tilefarm_renderer::{Feature, Layer, MetaTile, Style, TileImage, ZoomLayer, render_metatile};
// The fixtures the farm test shares (without the farm test kit's servers).
#[path = "../../testkit/src/gis.rs"]
mod gis;

use gis::{data, files, run, zip};

fn ogr2ogr(args: &[&str], dir: &Path) {
    run("ogr2ogr", args, dir);
}

const WORLD: [f64; 4] = [-180.0, -90.0, 180.0, 90.0];

/// One fixture: made from `source` clipped to `clip` (lon/lat), written as
/// `driver` in `epsg`, read back natively with `options`.
struct Case {
    what: &'static str,
    source: &'static str,
    clip: [f64; 4],
    epsg: u32,
    format: Format,
    /// Extra ogr2ogr options for writing, and for GDAL's own reading back.
    write: &'static [&'static str],
    read_back: Vec<String>,
    options: ReadOptions,
}

fn make(case: &Case, dir: &Path) -> (PathBuf, PathBuf) {
    let src = data(case.source);
    let clip: Vec<String> = case.clip.iter().map(f64::to_string).collect();
    let srs = format!("EPSG:{}", case.epsg);
    let (driver, name) = match case.format {
        Format::Shapefile => ("ESRI Shapefile", "shp"),
        Format::Csv => ("CSV", "upload.csv"),
        Format::GeoPackage => ("GPKG", "upload.gpkg"),
        Format::FlatGeobuf => ("FlatGeobuf", "upload.fgb"),
        Format::Kml => ("KML", "upload.kml"),
        Format::GeoJson => ("GeoJSON", "upload.geojson"),
    };
    let mut args = vec!["-f", driver, "-t_srs", &srs];
    // Clipped to the region the CRS is meant for (the whole world is not clipped,
    // which would leave slivers of lines).
    if case.clip != WORLD {
        args.push("-clipsrc");
        args.extend(clip.iter().map(String::as_str));
    }
    args.extend(case.write);
    args.extend([name, src.to_str().unwrap()]);
    ogr2ogr(&args, dir);
    let native = match case.format {
        Format::Shapefile => {
            let zipped = dir.join("upload.zip");
            std::fs::write(&zipped, zip(&files(&dir.join("shp")))).unwrap();
            zipped
        }
        _ => dir.join(name),
    };
    // GDAL's reading of the native file, as GeoJSON.
    let mut args = vec![
        "-f",
        "GeoJSON",
        "-t_srs",
        "EPSG:4326",
        "-lco",
        "RFC7946=NO",
        "-lco",
        "COORDINATE_PRECISION=15",
        "gdal.geojson",
        name,
    ];
    args.extend(case.read_back.iter().map(String::as_str));
    ogr2ogr(&args, dir);
    (native, dir.join("gdal.geojson"))
}

/// How GDAL reads the CSV back: its geometry columns, typed attributes.
fn csv_read_back(geometry: &[&str], epsg: u32) -> Vec<String> {
    let open = geometry
        .iter()
        .chain(&["KEEP_GEOM_COLUMNS=NO", "AUTODETECT_TYPE=YES"]);
    let mut args: Vec<String> = open
        .flat_map(|o| ["-oo".to_string(), (*o).to_string()])
        .collect();
    args.extend(["-s_srs".to_string(), format!("EPSG:{epsg}")]);
    args
}

fn rgba(image: &TileImage, size: usize) -> Vec<u8> {
    match image {
        TileImage::Uniform(c) => c.0.repeat(size * size),
        TileImage::Pixels(p) => p.clone(),
    }
}

/// Pixels compared and pixels that differ, over every tile either layer reaches
/// at zooms 0-4.
fn compare_tiles(ours: &[Feature], gdal: &[Feature]) -> (u64, u64) {
    let style = Style::default();
    let (a, b) = (Layer::new(ours, &style), Layer::new(gdal, &style));
    let (mut total, mut differ) = (0u64, 0u64);
    for z in 0..=4u8 {
        let (za, zb) = (ZoomLayer::new(&a, z, 256), ZoomLayer::new(&b, z, 256));
        let metas: BTreeSet<MetaTile> = za
            .metatiles_touched(8)
            .into_iter()
            .chain(zb.metatiles_touched(8))
            .collect();
        for meta in metas {
            let (ra, rb) = (render_metatile(&za, meta), render_metatile(&zb, meta));
            for t in meta.tiles() {
                let (pa, pb) = (rgba(&ra.tile(t), 256), rgba(&rb.tile(t), 256));
                total += 256 * 256;
                differ += pa
                    .chunks(4)
                    .zip(pb.chunks(4))
                    .filter(|(x, y)| x != y)
                    .count() as u64;
            }
        }
    }
    (total, differ)
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9 * x.abs().max(1.0)
        }
        _ => a == b,
    }
}

fn check(case: &Case) {
    let dir = tempfile::tempdir().unwrap();
    let (native, geojson) = make(case, dir.path());
    let ours = read_path(&native, &case.options).unwrap_or_else(|e| {
        panic!(
            "{}: tilefarm cannot read the {}: {e}",
            case.what, case.format
        )
    });
    assert_eq!(ours.format, case.format, "{}", case.what);
    assert!(
        ours.crs.starts_with(&format!("EPSG:{} ", case.epsg)),
        "{}: read as {}",
        case.what,
        ours.crs
    );
    let gdal = read_path(&geojson, &ReadOptions::default()).unwrap();
    let (ours, mut gdal) = (ours.report.features, gdal.report.features);
    // GDAL's KML reader names a placemark's name and description with capitals.
    if case.format == Format::Kml {
        for f in &mut gdal {
            for (from, to) in [("Name", "name"), ("Description", "description")] {
                if let Some(v) = f.properties.remove(from) {
                    f.properties.insert(to.into(), v);
                }
            }
        }
    }
    assert_eq!(ours.len(), gdal.len(), "{}: feature count", case.what);
    assert!(
        ours.len() >= 3,
        "{}: the fixture holds too little to test",
        case.what
    );
    for (i, (a, b)) in ours.iter().zip(&gdal).enumerate() {
        let keys = |f: &Feature| f.properties.keys().cloned().collect::<BTreeSet<_>>();
        // GDAL's KML reader adds fields of its own (timestamp, altitudeMode, ...).
        if case.format == Format::Kml {
            assert!(
                keys(a).is_subset(&keys(b)),
                "{}: features[{i}] attribute names",
                case.what
            );
        } else {
            assert_eq!(
                keys(a),
                keys(b),
                "{}: features[{i}] attribute names",
                case.what
            );
        }
        for (k, v) in &a.properties {
            assert!(
                same_value(v, &b.properties[k]),
                "{}: features[{i}].{k}: tilefarm {v}, GDAL {}",
                case.what,
                b.properties[k]
            );
        }
        assert_eq!(
            a.geometry.is_some(),
            b.geometry.is_some(),
            "{}: features[{i}]",
            case.what
        );
    }
    let (total, differ) = compare_tiles(&ours, &gdal);
    let agree = 1.0 - differ as f64 / total as f64;
    eprintln!(
        "{}: {} features, {total} pixels, {differ} differ ({:.5} % agree)",
        case.what,
        ours.len(),
        agree * 100.0
    );
    assert!(total > 0, "{}: no tiles compared", case.what);
    assert!(
        agree >= 0.9999,
        "{}: only {:.5} % of pixels agree",
        case.what,
        agree * 100.0
    );
}

fn shapefile(what: &'static str, epsg: u32, clip: [f64; 4]) -> Case {
    Case {
        what,
        source: "ne_110m_countries.geojson",
        clip,
        epsg,
        format: Format::Shapefile,
        write: &[],
        read_back: Vec::new(),
        options: ReadOptions::default(),
    }
}

#[test]
fn zipped_shapefiles_in_many_coordinate_systems_agree_with_gdal() {
    for case in [
        shapefile(
            "Shapefile, British National Grid",
            27700,
            [-11.0, 49.0, 3.0, 61.0],
        ),
        shapefile("Shapefile, Lambert-93", 2154, [-6.0, 41.0, 10.0, 52.0]),
        shapefile("Shapefile, UTM 31N", 32631, [-3.0, 35.0, 9.0, 65.0]),
        shapefile("Shapefile, UTM 33S", 32733, [9.0, -40.0, 21.0, 0.0]),
        shapefile("Shapefile, Web Mercator", 3857, WORLD),
        shapefile("Shapefile, NAD83", 4269, [-170.0, 15.0, -50.0, 75.0]),
        shapefile("Shapefile, ETRS89-LAEA", 3035, [-25.0, 34.0, 45.0, 72.0]),
        shapefile("Shapefile, US Albers", 5070, [-125.0, 24.0, -66.0, 50.0]),
        shapefile("Shapefile, WGS84", 4326, WORLD),
    ] {
        check(&case);
    }
}

#[test]
fn csv_points_and_wkt_agree_with_gdal() {
    let cases = [
        Case {
            what: "CSV lon/lat points",
            source: "ne_cities.geojson",
            clip: WORLD,
            epsg: 4326,
            format: Format::Csv,
            write: &["-lco", "GEOMETRY=AS_XY"],
            read_back: csv_read_back(&["X_POSSIBLE_NAMES=X", "Y_POSSIBLE_NAMES=Y"], 4326),
            options: ReadOptions::default(),
        },
        Case {
            what: "CSV British National Grid points",
            source: "ne_cities.geojson",
            clip: [-20.0, 35.0, 25.0, 65.0],
            epsg: 27700,
            format: Format::Csv,
            write: &["-lco", "GEOMETRY=AS_XY"],
            read_back: csv_read_back(&["X_POSSIBLE_NAMES=X", "Y_POSSIBLE_NAMES=Y"], 27700),
            options: ReadOptions {
                crs: Some("EPSG:27700".into()),
                ..ReadOptions::default()
            },
        },
        Case {
            what: "CSV WKT polygons",
            source: "ne_110m_countries.geojson",
            clip: WORLD,
            epsg: 4326,
            format: Format::Csv,
            write: &["-lco", "GEOMETRY=AS_WKT"],
            read_back: csv_read_back(&["GEOM_POSSIBLE_NAMES=WKT"], 4326),
            options: ReadOptions::default(),
        },
    ];
    for case in cases {
        check(&case);
    }
}

fn case(
    what: &'static str,
    format: Format,
    epsg: u32,
    source: &'static str,
    clip: [f64; 4],
) -> Case {
    Case {
        what,
        source,
        clip,
        epsg,
        format,
        write: &[],
        read_back: Vec::new(),
        options: ReadOptions::default(),
    }
}

#[test]
fn geopackages_flatgeobufs_and_kml_agree_with_gdal() {
    let world = WORLD;
    for case in [
        case(
            "GeoPackage, Lambert-93",
            Format::GeoPackage,
            2154,
            "ne_110m_countries.geojson",
            [-6.0, 41.0, 10.0, 52.0],
        ),
        case(
            "GeoPackage, US Albers",
            Format::GeoPackage,
            5070,
            "ne_110m_countries.geojson",
            [-125.0, 24.0, -66.0, 50.0],
        ),
        case(
            "GeoPackage, WGS84 points",
            Format::GeoPackage,
            4326,
            "ne_cities.geojson",
            world,
        ),
        case(
            "FlatGeobuf, British National Grid",
            Format::FlatGeobuf,
            27700,
            "ne_110m_countries.geojson",
            [-11.0, 49.0, 3.0, 61.0],
        ),
        case(
            "FlatGeobuf, ETRS89-LAEA",
            Format::FlatGeobuf,
            3035,
            "ne_110m_countries.geojson",
            [-25.0, 34.0, 45.0, 72.0],
        ),
        case(
            "FlatGeobuf, Web Mercator points",
            Format::FlatGeobuf,
            3857,
            "ne_cities.geojson",
            world,
        ),
        case(
            "KML polygons",
            Format::Kml,
            4326,
            "ne_110m_countries.geojson",
            world,
        ),
        case("KML points", Format::Kml, 4326, "ne_cities.geojson", world),
    ] {
        check(&case);
    }
}
