//! What map clients on other origins (MapLibre, Leaflet, OpenLayers) need from
//! the API: CORS on tiles and TileJSON with preflights answered, TileJSON valid
//! against the 3.0.0 specification with bounds and centre right for data across
//! the antimeridian, caching headers that let an edit show at once, and a 503
//! with Retry-After (never a broken tile) while the object store is down.

mod support;

use std::time::{Duration, Instant};

use reqwest::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, CACHE_CONTROL, ETAG, IF_NONE_MATCH, ORIGIN, RETRY_AFTER, VARY,
};
use serde_json::{Value, json};
use support::{Embedded, Farm, collection, sample};

/// TileJSON 3.0.0 as a JSON schema, from the specification's text
/// (https://github.com/mapbox/tilejson-spec/tree/master/3.0.0): the required
/// keys and the types and ranges of the others.
fn tilejson_schema() -> Value {
    let semver = "^\\d+\\.\\d+\\.\\d+\\w?[\\w\\d]*$";
    let zoom = json!({"type": "integer", "minimum": 0, "maximum": 30});
    let strings = json!({"type": "array", "items": {"type": "string"}});
    json!({
        "type": "object",
        "required": ["tilejson", "tiles", "vector_layers"],
        "properties": {
            "tilejson": {"type": "string", "pattern": semver},
            "tiles": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "uri"}},
            "vector_layers": {"type": "array", "items": {
                "type": "object",
                "required": ["id", "fields"],
                "properties": {
                    "id": {"type": "string"},
                    "fields": {"type": "object", "additionalProperties": {"type": "string"}},
                    "description": {"type": "string"},
                    "minzoom": {"type": "integer"},
                    "maxzoom": {"type": "integer"}
                }
            }},
            "attribution": {"type": "string"},
            "bounds": {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "number"}},
            "center": {"type": "array", "minItems": 3, "maxItems": 3, "items": {"type": "number"}},
            "data": strings,
            "description": {"type": "string"},
            "fillzoom": zoom,
            "grids": strings,
            "legend": {"type": "string"},
            "maxzoom": zoom,
            "minzoom": zoom,
            "name": {"type": "string"},
            "scheme": {"enum": ["xyz", "tms"]},
            "template": {"type": "string"},
            "version": {"type": "string", "pattern": semver}
        }
    })
}

/// Validates `doc` against `schema` with Python's `jsonschema` (in the venv
/// scripts/setup makes for the test tools).
fn assert_valid(doc: &Value, schema: &Value) {
    let python = tilefarm_testkit::tools_venv().join("bin/python");
    let check = "import json, sys, jsonschema\n\
                 schema, doc = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n\
                 errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]\n\
                 print('\\n'.join(errors)); sys.exit(1 if errors else 0)";
    let out = std::process::Command::new(&python)
        .args(["-c", check, &schema.to_string(), &doc.to_string()])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); scripts/setup makes the venv",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "{doc} is not valid: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The features of the sample countries whose name is `name`.
fn country(name: &str) -> Vec<Value> {
    let all: Value =
        serde_json::from_slice(&std::fs::read(sample("ne_110m_countries.geojson")).unwrap())
            .unwrap();
    all["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["properties"]["name"] == name)
        .cloned()
        .collect()
}

async fn upload_ready(server: &Embedded, features: &[Value], zooms: &str) -> String {
    let done = server
        .change(
            reqwest::Client::new()
                .post(server.url(&format!("/v1/layers?name=t&zooms={zooms}")))
                .header("content-type", "application/geo+json")
                .body(collection(features)),
        )
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    done["layer_id"].as_str().unwrap().to_string()
}

fn header(res: &reqwest::Response, name: reqwest::header::HeaderName) -> &str {
    res.headers()
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} header in {res:?}"))
        .to_str()
        .unwrap()
}

/// `GET url` as a page on another origin sends it: a 200 that the page may read.
async fn from_page(http: &reqwest::Client, url: &str) -> reqwest::Response {
    let res = http
        .get(url)
        .header(ORIGIN, "https://maps.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "{url}");
    assert_eq!(header(&res, ACCESS_CONTROL_ALLOW_ORIGIN), "*", "{url}");
    res
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tilejson_is_valid_and_right_across_the_antimeridian() {
    let dir = tempfile::tempdir().unwrap();
    let server = Embedded::start_with(
        dir.path(),
        dir.path().join("serve.log"),
        &["--trusted-proxies", "127.0.0.1"],
    );
    // Russia runs from Kaliningrad (19.7°E) eastward across 180° to 169.9°W.
    let layer = upload_ready(&server, &country("Russia"), "0-6").await;
    let http = reqwest::Client::new();
    let meta = server.get_json(&format!("/v1/layers/{layer}"), None).await;
    let [w, s, e, n] = [0, 1, 2, 3].map(|i| meta["bounds"][i].as_f64().unwrap());
    assert!(
        (19.0..20.0).contains(&w) && (-170.0..-169.0).contains(&e),
        "the bounds cross the antimeridian, west above east: {meta}"
    );
    assert!(s > 40.0 && n > 75.0, "{meta}");

    let res = from_page(&http, &server.url(&format!("/v1/layers/{layer}/tilejson"))).await;
    let tilejson: Value = res.json().await.unwrap();
    assert_valid(&tilejson, &tilejson_schema());
    assert_eq!(tilejson["tilejson"], "3.0.0");
    assert_eq!(tilejson["bounds"][0], -180.0, "{tilejson}");
    assert_eq!(tilejson["bounds"][2], 180.0, "{tilejson}");
    let [lon, lat, zoom] = [0, 1, 2].map(|i| tilejson["center"][i].as_f64().unwrap());
    // The middle of 19.7°E..190.1°E, not of -180..180 (the Gulf of Guinea).
    assert!((100.0..120.0).contains(&lon), "{tilejson}");
    assert!((s..n).contains(&lat), "{tilejson}");
    assert!((0.0..=6.0).contains(&zoom), "{tilejson}");
    let template = tilejson["tiles"][0].as_str().unwrap();
    assert_eq!(
        template,
        server.url(&format!("/tiles/{layer}/{{z}}/{{x}}/{{y}}.png"))
    );

    // Behind a trusted proxy, its address in the tile URLs.
    let res = http
        .get(server.url(&format!("/v1/layers/{layer}/tilejson")))
        .header("x-forwarded-host", "tiles.example.org")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(header(&res, VARY).contains("X-Forwarded-Host"));
    let behind: Value = res.json().await.unwrap();
    assert_eq!(
        behind["tiles"][0],
        format!("https://tiles.example.org/tiles/{layer}/{{z}}/{{x}}/{{y}}.png")
    );

    // The tile the centre falls in is drawn (Russia, not empty sea).
    let tile = http
        .get(
            template
                .replace("{z}", "2")
                .replace("{x}", "3")
                .replace("{y}", "1"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(tile.status().as_u16(), 200);
    let png = image::load_from_memory(&tile.bytes().await.unwrap()).unwrap();
    assert!(
        png.to_rgba8().pixels().any(|p| p.0[3] > 0),
        "tile 2/3/1 shows Russia"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_clients_on_other_origins_may_read_tiles_and_revalidate_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Embedded::start(dir.path(), dir.path().join("serve.log"));
    let layer = upload_ready(&server, &country("France"), "0-3").await;
    let http = reqwest::Client::new();
    let tile = server.url(&format!("/tiles/{layer}/3/4/2.png"));

    // A preflight, as a page sends before a request with Authorization.
    let res = http
        .request(reqwest::Method::OPTIONS, &tile)
        .header(ORIGIN, "https://maps.example.org")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{res:?}");
    assert_eq!(header(&res, ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    assert!(header(&res, "access-control-allow-methods".parse().unwrap()).contains("GET"));
    assert!(
        header(&res, "access-control-allow-headers".parse().unwrap())
            .to_ascii_lowercase()
            .contains("authorization")
    );

    let res = from_page(&http, &tile).await;
    assert!(
        header(&res, "access-control-expose-headers".parse().unwrap())
            .to_ascii_lowercase()
            .contains("etag")
    );
    // Browsers revalidate at every view (so an edit shows at once), shared
    // caches keep the tile and may serve it while the origin is down.
    let cache = header(&res, CACHE_CONTROL).to_string();
    for part in ["max-age=0", "s-maxage=", "stale-if-error="] {
        assert!(cache.contains(part), "{cache}");
    }
    let tag = header(&res, ETAG).to_string();
    let again = http
        .get(&tile)
        .header(ORIGIN, "https://maps.example.org")
        .header(IF_NONE_MATCH, &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 304);
    assert_eq!(header(&again, ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    drop(server);

    // Origins named: only those.
    let server = Embedded::start_with(
        dir.path(),
        dir.path().join("serve2.log"),
        &[
            "--cors-origins",
            "https://maps.example.org,https://b.example",
        ],
    );
    let tile = server.url(&format!("/tiles/{layer}/3/4/2.png"));
    let from = |origin: &'static str| {
        let http = http.clone();
        let tile = tile.clone();
        async move {
            http.get(&tile)
                .header(ORIGIN, origin)
                .send()
                .await
                .unwrap()
                .headers()
                .get(ACCESS_CONTROL_ALLOW_ORIGIN)
                .map(|v| v.to_str().unwrap().to_string())
        }
    };
    assert_eq!(
        from("https://b.example").await.as_deref(),
        Some("https://b.example")
    );
    assert_eq!(from("https://elsewhere.example").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_answers_503_with_retry_after_while_the_object_store_is_down() {
    let mut farm = Farm::new().await;
    farm.serve(&["--concurrency", "2"]);
    let (job, layer) = farm
        .upload_sample("ne_110m_countries.geojson", "world", "0-2")
        .await;
    let (done, _) = farm.wait_job(&job, Duration::from_secs(120)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let http = reqwest::Client::new();
    let tile = format!("{}/tiles/{layer}/2/2/1.png", farm.base);
    assert_eq!(http.get(&tile).send().await.unwrap().status().as_u16(), 200);

    farm.s3.stop();
    let started = Instant::now();
    let res = http.get(&tile).send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(res.status().as_u16(), 503, "{res:?}");
    assert!(header(&res, RETRY_AFTER).parse::<u32>().unwrap() > 0);
    assert_eq!(header(&res, CACHE_CONTROL), "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        waited < Duration::from_secs(15),
        "the origin answered only after {waited:?}"
    );
    // Health stays up: the API is there, only the store is not.
    let health = http
        .get(format!("{}/healthz", farm.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);

    farm.s3.restart();
    let res = http.get(&tile).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(header(&res, "content-type".parse().unwrap()), "image/png");
    farm.stop().await;
}
