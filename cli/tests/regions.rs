//! Deep pyramids: the tiles no edge reaches are not stored, yet the origin
//! answers every tile with the bytes `tilefarm render --tile` draws for it,
//! inside one-colour regions, on edges and in empty ocean, at every zoom; and
//! an edit that moves a country splits and merges regions correctly.

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::{Embedded, features_with_ids, sample};

/// `tilefarm render FILE --tile z/x/y`: the PNG on standard output.
fn render_tile(file: &std::path::Path, z: u8, x: u32, y: u32) -> Vec<u8> {
    let o = Command::new(env!("CARGO_BIN_EXE_tilefarm"))
        .arg("render")
        .arg(file)
        .args(["--tile", &format!("{z}/{x}/{y}")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

fn tile_of(lon: f64, lat: f64, z: u8) -> (u32, u32) {
    let t = tilefarm_renderer::TileId::containing(lon, lat, z);
    (t.x, t.y)
}

/// Places inside big countries (region tiles from some zoom on), on coasts
/// and borders (edges), and in open ocean (transparent).
const PLACES: [(f64, f64); 8] = [
    (-55.0, -10.0),  // Brazil
    (95.0, 62.0),    // Siberia
    (20.0, 22.0),    // the Sahara
    (-100.0, 40.0),  // the United States
    (-9.15, 38.7),   // the coast at Lisbon
    (8.5, 47.3),     // borders round Switzerland
    (-140.0, -20.0), // the Pacific
    (-30.0, 40.0),   // the Atlantic
];

async fn region_answers(server: &Embedded) -> f64 {
    let body = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines()
        .find(|l| l.starts_with("tilefarm_tile_responses_total{result=\"region\"}"))
        .and_then(|l| l.split_whitespace().last())
        .map_or(0.0, |v| v.parse().unwrap())
}

/// Every place's tile, and its neighbours, at every zoom: served against drawn alone.
async fn compare_with_render(server: &Embedded, layer: &str, file: &std::path::Path, zooms: u8) {
    let http = reqwest::Client::new();
    let mut compared = 0;
    for z in 0..=zooms {
        for (lon, lat) in PLACES {
            let (x, y) = tile_of(lon, lat, z);
            let side = 1u32 << z;
            for (x, y) in [(x, y), ((x + 1) % side, y)] {
                let res = http
                    .get(server.url(&format!("/tiles/{layer}/{z}/{x}/{y}.png")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status().as_u16(), 200);
                let served = res.bytes().await.unwrap();
                let drawn = render_tile(file, z, x, y);
                assert!(
                    served[..] == drawn[..],
                    "{z}/{x}/{y} ({lon}, {lat}) differs from tilefarm render --tile"
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 100, "{compared} tiles compared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_in_regions_are_served_as_drawn_and_an_edit_splits_and_merges_regions() {
    const ZOOMS: u8 = 9;
    let dir = tempfile::tempdir().unwrap();
    let server = Embedded::start(dir.path(), dir.path().join("serve.log"));
    let mut features = features_with_ids("ne_110m_countries.geojson");
    let file = dir.path().join("countries.geojson");
    let write = |features: &[Value]| {
        let fc = json!({"type": "FeatureCollection", "features": features});
        std::fs::write(&file, serde_json::to_vec(&fc).unwrap()).unwrap();
    };
    write(&features);
    let done = server
        .change(
            reqwest::Client::new()
                .post(server.url(&format!("/v1/layers?name=world&zooms=0-{ZOOMS}")))
                .body(std::fs::read(&file).unwrap()),
        )
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let layer = done["layer_id"].as_str().unwrap().to_string();

    // The job's status tells what it renders and what its regions imply.
    let plan = &done["plan"];
    assert_eq!(plan["tiles"], done["progress"]["total"], "{plan}");
    assert!(plan["region_tiles"].as_u64().unwrap() > 10_000, "{plan}");
    assert_eq!(
        plan["zooms"].as_array().unwrap().len(),
        usize::from(ZOOMS) + 1,
        "{plan}"
    );
    // Far fewer tiles stored than the data covers: the inside of countries
    // is left to regions.
    let stored = tilefarm_testkit::tree(&dir.path().join("store/tiles").join(&layer)).len() as u64;
    let rendered = done["progress"]["total"].as_u64().unwrap();
    assert!(stored <= rendered, "{stored} stored, {rendered} rendered");
    let regions = std::fs::metadata(
        dir.path()
            .join(format!("store/layers/{layer}/v1/regions.bin")),
    )
    .expect("the version's regions are stored")
    .len();
    assert!(regions > 1000, "a regions file of {regions} bytes");

    let before = region_answers(&server).await;
    compare_with_render(&server, &layer, &file, ZOOMS).await;
    assert!(
        region_answers(&server).await > before + 20.0,
        "some tiles were answered from regions"
    );

    // Brazil moved onto the Atlantic, and a point dropped in Siberia: tiles
    // leave regions (Brazil's old place, round the point) and join others.
    let brazil = features
        .iter()
        .position(|f| f["properties"]["name"] == "Brazil")
        .expect("Brazil");
    support::shift(&mut features[brazil], 20.0, 25.0);
    let pin = json!({"type": "Feature", "id": "pin", "properties": {},
                     "geometry": {"type": "Point", "coordinates": [95.0, 62.0]}});
    features.push(pin.clone());
    let edit = json!({"upsert": {"type": "FeatureCollection",
                                 "features": [features[brazil].clone(), pin]}});
    let done = server
        .change(
            reqwest::Client::new()
                .post(server.url(&format!("/v1/layers/{layer}/edits")))
                .json(&edit),
        )
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    write(&features);
    compare_with_render(&server, &layer, &file, ZOOMS).await;
}

#[test]
fn render_tile_refuses_a_tile_that_is_not_one() {
    for (tile, expect) in [
        ("3/8/1", "below 2^3"),
        ("25/0/0", "deepest supported"),
        ("a/b", "not a tile"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_tilefarm"))
            .arg("render")
            .arg(sample("ne_110m_countries.geojson"))
            .args(["--tile", tile])
            .output()
            .unwrap();
        assert!(!o.status.success(), "{tile}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(expect), "{tile}: {err}");
    }
}
