//! Uploads as people have them, through the farm: a zipped Shapefile in the
//! British National Grid, a GeoPackage in Lambert-93 and a CSV of places render
//! the same tiles as `tilefarm render` of the same files; bad files of every
//! format fail their job (or are refused) with a message naming the part and
//! the problem, and leave nothing visible.

mod support;

use std::time::Duration;

use support::Farm;
use tilefarm_testkit::gis::{bad_uploads, convert, data, shapefile, zip};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_in_other_formats_and_crss_render_like_tilefarm_render() {
    let mut farm = Farm::new().await;
    farm.serve(&["--concurrency", "2"]);
    let countries = data("ne_110m_countries.geojson");
    let dir = tempfile::tempdir().unwrap();
    // (file, media type, format and CRS the ingest summary must report)
    let files = [
        (
            "countries.zip",
            None,
            ("Shapefile", "EPSG:27700 (OSGB36 / British National Grid)"),
            zip(&shapefile(&countries, "EPSG:27700", [-11.0, 49.0, 3.0, 61.0], "countries")),
        ),
        (
            "countries.gpkg",
            Some("application/geopackage+sqlite3"),
            ("GeoPackage", "EPSG:2154 (RGF93 / Lambert-93)"),
            convert(&countries, "c.gpkg", &["-f", "GPKG", "-t_srs", "EPSG:2154", "-clipsrc", "-6", "41", "10", "52"]),
        ),
        (
            "places.csv",
            Some("text/csv"),
            ("CSV", "EPSG:4326 (WGS 84)"),
            b"name,latitude,longitude\nParis,48.8566,2.3522\nLondon,51.5072,-0.1276\nRome,41.9028,12.4964\n".to_vec(),
        ),
    ];
    for (name, content_type, (format, crs), body) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, &body).unwrap();
        let (status, accepted) = farm
            .upload("name=formats&zooms=0-4", content_type, body)
            .await;
        assert_eq!(status, 202, "{name}: {accepted}");
        let job = accepted["job"]["id"].as_str().unwrap();
        let (done, _) = farm.wait_job(job, Duration::from_secs(120)).await;
        assert_eq!(done["state"], "succeeded", "{name}: {done}");
        let ingest = &done["ingest"];
        assert_eq!(
            (ingest["format"].as_str(), ingest["crs"].as_str()),
            (Some(format), Some(crs)),
            "{name}: {done}"
        );
        assert!(
            ingest["features"].as_u64().unwrap() >= 3,
            "{name}: {ingest}"
        );
        assert!(ingest["attributes"]["name"].is_array(), "{name}: {ingest}");
        let [w, s, e, n] = [0, 1, 2, 3].map(|i| ingest["bounds"][i].as_f64().unwrap());
        assert!(
            w < e && s < n && (-11.0..=13.0).contains(&w) && (41.0..=61.0).contains(&n),
            "{name}: {ingest}"
        );
        let layer = accepted["layer_id"].as_str().unwrap();
        farm.assert_tiles_match_render(layer, path.to_str().unwrap(), "0-4")
            .await;
    }
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_fail_with_the_part_and_the_problem_and_leave_nothing_visible() {
    let mut farm = Farm::new().await;
    farm.serve(&["--concurrency", "2"]);
    let cases = bad_uploads();
    assert!(cases.len() >= 15);
    let mut accepted_jobs = Vec::new();
    for case in &cases {
        let mut query = "name=bad&zooms=0-2".to_string();
        for (k, v) in &case.params {
            query.push_str(&format!("&{k}={v}"));
        }
        let (status, answer) = farm.upload(&query, None, case.body.clone()).await;
        if case.refused_at_once {
            assert_eq!(status, 400, "{}: {answer}", case.what);
            let code = answer["error"]["code"].as_str().unwrap();
            assert!(
                ["unsupported_format", "invalid_crs"].contains(&code),
                "{}: {answer}",
                case.what
            );
            let message = answer["error"]["message"].as_str().unwrap();
            for want in &case.wants {
                assert!(
                    message.contains(want),
                    "{}: {message:?} lacks {want:?}",
                    case.what
                );
            }
        } else {
            assert_eq!(status, 202, "{}: {answer}", case.what);
            accepted_jobs.push((case, answer));
        }
    }
    for (case, answer) in accepted_jobs {
        let job = answer["job"]["id"].as_str().unwrap();
        let layer = answer["layer_id"].as_str().unwrap();
        let (done, _) = farm.wait_job(job, Duration::from_secs(60)).await;
        assert_eq!(done["state"], "failed", "{}: {done}", case.what);
        let code = done["error"]["code"].as_str().unwrap();
        assert!(
            ["invalid_data", "unsupported_format"].contains(&code),
            "{}: {done}",
            case.what
        );
        let message = done["error"]["message"].as_str().unwrap();
        for want in &case.wants {
            assert!(
                message.contains(want),
                "{}: {message:?} lacks {want:?}",
                case.what
            );
        }
        let (status, json) = farm.get_json(&format!("/tiles/{layer}/0/0/0.png")).await;
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (404, Some("layer_not_ready")),
            "{}",
            case.what
        );
        let (status, _) = farm.get_json(&format!("/v1/layers/{layer}/tilejson")).await;
        assert_eq!(status, 404, "{}", case.what);
        assert!(farm.stored_tiles(layer).is_empty(), "{}", case.what);
    }
    farm.stop().await;
}
