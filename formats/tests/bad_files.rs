//! Bad uploads get a message naming the part of the upload and the problem
//! (the cases are shared with the farm's test, which checks that nothing of them
//! becomes visible).

use tilefarm_formats::{ReadOptions, read_bytes};
// The fixtures the farm test shares (without the farm test kit's servers).
#[path = "../../testkit/src/gis.rs"]
mod gis;

use gis::bad_uploads;

/// The reading options an upload's query parameters give.
pub fn options(params: &[(&str, &str)]) -> ReadOptions {
    let map: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_string(),
                serde_json::Value::String((*v).to_string()),
            )
        })
        .collect();
    serde_json::from_value(serde_json::Value::Object(map)).unwrap()
}

#[test]
fn bad_uploads_are_refused_with_the_part_and_the_problem() {
    let cases = bad_uploads();
    assert!(cases.len() >= 15);
    for case in &cases {
        let err = match read_bytes(&case.body, &options(&case.params)) {
            Ok(u) => panic!(
                "{}: read {} features instead of failing",
                case.what,
                u.report.features.len()
            ),
            Err(e) => e.to_string(),
        };
        for want in &case.wants {
            assert!(
                err.contains(want),
                "{}: {err:?} does not say {want:?}",
                case.what
            );
        }
        eprintln!("{}: {err}", case.what);
    }
}

#[test]
fn a_cpg_code_page_decodes_attribute_text() {
    // The same countries as Shapefiles in ISO-8859-1 and in UTF-8 read the same names.
    let dir = tempfile::tempdir().unwrap();
    let src = gis::data("ne_110m_countries.geojson");
    let sql = "SELECT name FROM naturalearth_lowres WHERE name LIKE 'C%te%'";
    let read = |enc: &str| {
        let lco = format!("ENCODING={enc}");
        let out = format!("{}.shp", enc.to_lowercase());
        gis::run(
            "ogr2ogr",
            &[
                "-f",
                "ESRI Shapefile",
                "-lco",
                &lco,
                &out,
                src.to_str().unwrap(),
                "-sql",
                sql,
            ],
            dir.path(),
        );
        let stem = enc.to_lowercase();
        let members: Vec<(String, Vec<u8>)> = gis::files(dir.path())
            .into_iter()
            .filter(|(n, _)| n.starts_with(&format!("{stem}.")))
            .collect();
        let upload = read_bytes(&gis::zip(&members), &ReadOptions::default()).unwrap();
        upload
            .report
            .features
            .iter()
            .map(|f| f.properties["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let (latin1, utf8) = (read("ISO-8859-1"), read("UTF-8"));
    assert!(latin1.iter().any(|n| n == "Côte d'Ivoire"), "{latin1:?}");
    assert_eq!(latin1, utf8);
}
