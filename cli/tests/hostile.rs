//! Careless and hostile clients against `tilefarm serve` (embedded, with a
//! token): headers or bodies trickled, connections held idle or past the cap,
//! tokens in odd forms, requests the framework itself refuses. Each gets a
//! clear answer or loses its connection; nobody else waits for them.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Embedded, sample};

const TOKEN: &str = "s3cret-token";

fn start(dir: &tempfile::TempDir, extra: &[&str]) -> Embedded {
    let mut args = vec!["--token", TOKEN, "--header-timeout-secs", "1"];
    args.extend_from_slice(extra);
    Embedded::start_with(dir.path(), dir.path().join("serve.log"), &args)
}

fn connect(server: &Embedded) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Reads until the server closes the connection; what it sent and how long
/// that took.
fn read_to_close(mut stream: TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

async fn healthz_within(server: &Embedded, within: Duration) {
    let started = Instant::now();
    let res = reqwest::Client::new()
        .get(server.url("/healthz"))
        .timeout(within)
        .send()
        .await
        .unwrap_or_else(|e| panic!("/healthz did not answer within {within:?}: {e}"));
    assert_eq!(res.status().as_u16(), 200);
    assert!(started.elapsed() < within);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_and_idle_connections_are_closed_and_the_cap_holds() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &["--max-connections", "4"]);

    // Headers that never end: the connection is closed after the timeout.
    let mut slow = connect(&server);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let (_, took) = read_to_close(slow);
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );

    // A connection left idle after its answer is closed too.
    let mut idle = connect(&server);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (answer, took) = read_to_close(idle);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took < Duration::from_secs(5), "idle for {took:?}");

    // Four connections that send nothing fill the cap; a fifth client waits
    // until they are dropped, then is served.
    let held: Vec<TcpStream> = (0..4).map(|_| connect(&server)).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    healthz_within(&server, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the fifth connection was served at once, past the cap of 4"
    );
    drop(held);
    healthz_within(&server, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_408_and_the_api_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let mut slow = connect(&server);
    write!(
        slow,
        "POST /v1/layers?name=slow&zooms=0-1 HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Type: application/geo+json\r\n\
         Content-Length: 1000000\r\n\r\n{{\"type\":"
    )
    .unwrap();
    // The answer is read as it comes (the server may reset the connection
    // once it has answered, with trickled bytes unread).
    let reader = slow.try_clone().unwrap();
    let answer = std::thread::spawn(move || read_to_close(reader));
    std::thread::spawn(move || {
        // A byte a second, for as long as the server listens.
        for _ in 0..30 {
            std::thread::sleep(Duration::from_secs(1));
            if slow.write_all(b" ").is_err() {
                break;
            }
        }
    });
    // Meanwhile everyone else is served.
    for _ in 0..3 {
        healthz_within(&server, Duration::from_secs(2)).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (answer, took) = answer.join().unwrap();
    assert!(took < Duration::from_secs(25), "answered after {took:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"body_too_slow\""), "{answer}");
    assert!(answer.contains("too slowly"), "{answer}");
    // Nothing of it is left: no layer, no job.
    let jobs = server.get_json("/v1/jobs", Some(TOKEN)).await;
    assert_eq!(jobs["jobs"].as_array().map(Vec::len), Some(0), "{jobs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_read_as_rfc_9110_has_them_and_every_refusal_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let http = reqwest::Client::new();
    let jobs = |auth: Option<&'static str>| {
        let mut req = http.get(server.url("/v1/jobs"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let challenge = res.headers().get("www-authenticate").cloned();
            let body: Value = res.json().await.unwrap();
            (status, challenge, body)
        }
    };
    let (status, challenge, body) = jobs(None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(challenge.unwrap(), "Bearer");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _, body) = jobs(Some("Bearer wrong-token")).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("wrong"),
        "{body}"
    );
    let (status, _, body) = jobs(Some("Basic czNjcmV0")).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Bearer TOKEN"),
        "{body}"
    );
    // The scheme in any case.
    for auth in [
        "bearer s3cret-token",
        "BEARER s3cret-token",
        "Bearer  s3cret-token",
    ] {
        let (status, _, body) = jobs(Some(auth)).await;
        assert_eq!(status, 200, "{auth}: {body}");
    }

    // What the framework refuses by itself is JSON too.
    let refusals = [
        (reqwest::Method::PUT, "/healthz", 405, "method_not_allowed"),
        (
            reqwest::Method::GET,
            "/v1/jobs?limit=many",
            400,
            "invalid_request",
        ),
    ];
    for (method, path, want, code) in refusals {
        let res = http
            .request(method.clone(), server.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), want, "{method} {path}");
        let body: Value = res.json().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }

    // An empty style, as a form's blank field sends it, is the reference style.
    let res = http
        .post(server.url("/v1/layers?name=blank&zooms=0-1&style="))
        .bearer_auth(TOKEN)
        .header("content-type", "application/geo+json")
        .body(std::fs::read(sample("ne_cities.geojson")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202, "{:?}", res.text().await);
}

/// Sends a change and waits for its job; the job's last status.
async fn change_and_wait(server: &Embedded, req: reqwest::RequestBuilder) -> Value {
    server.change(req.bearer_auth(TOKEN)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_edited_down_to_no_features_takes_edits_and_new_data_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let http = reqwest::Client::new();
    let pin = |id: &str, lon: f64| {
        serde_json::json!({"type": "Feature", "id": id, "properties": {},
            "geometry": {"type": "Point", "coordinates": [lon, 10.0]}})
    };
    let upload = http
        .post(server.url("/v1/layers?name=pins&zooms=0-2"))
        .header("content-type", "application/geo+json")
        .body(support::collection(&[pin("a", 5.0)]));
    let done = change_and_wait(&server, upload).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let layer = done["layer_id"].as_str().unwrap().to_string();
    let edits = server.url(&format!("/v1/layers/{layer}/edits"));
    let steps = [
        serde_json::json!({"delete": ["a"]}),
        serde_json::json!({"upsert": {"type": "FeatureCollection", "features": [pin("b", 40.0)]}}),
        serde_json::json!({"delete": ["b"]}),
    ];
    for edit in steps {
        let done = change_and_wait(&server, http.post(&edits).json(&edit)).await;
        assert_eq!(done["state"], "succeeded", "{edit}: {done}");
    }
    let meta = server.get_json(&format!("/v1/layers/{layer}"), None).await;
    assert_eq!(meta["feature_count"], 0, "{meta}");
    // New data for the empty layer.
    let replace = http
        .put(server.url(&format!("/v1/layers/{layer}/data")))
        .header("content-type", "application/geo+json")
        .body(support::collection(&[pin("c", -60.0)]));
    let done = change_and_wait(&server, replace).await;
    assert_eq!(done["state"], "succeeded", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_world_to_zoom_18_is_planned_by_its_edges_and_refused_past_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let http = reqwest::Client::new();
    let world = serde_json::json!({"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon",
        "coordinates": [[[-180, -85], [180, -85], [180, 85], [-180, 85], [-180, -85]]]}});
    let upload = || {
        http.post(server.url("/v1/layers?name=world&zooms=0-18"))
            .header("content-type", "application/geo+json")
            .body(support::collection(std::slice::from_ref(&world)))
    };
    // Within the default limit: its edges are some 2 million tiles to
    // render, and the 92 billion inside are left to regions. Planned in
    // moments, the server answering all along; then cancelled.
    let res = upload().bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let job = res.json::<Value>().await.unwrap()["job"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = Instant::now();
    let plan = loop {
        let status = server.job(&job).await;
        if !status["plan"].is_null() {
            break status["plan"].clone();
        }
        assert!(status["error"].is_null(), "{status}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not planned: {status}"
        );
        healthz_within(&server, Duration::from_secs(2)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (tiles, implied) = (
        plan["tiles"].as_u64().unwrap(),
        plan["region_tiles"].as_u64().unwrap(),
    );
    eprintln!(
        "planned in {:.1} s: {plan}",
        started.elapsed().as_secs_f64()
    );
    assert!(tiles > 1_000_000 && tiles < 5_000_000, "{plan}");
    assert!(implied > 50_000_000_000, "{plan}");
    // While its tasks (some 300,000) are written in one transaction the
    // store's writer is busy: a cancel may be answered 503 with Retry-After
    // until they are in.
    let cancelling = Instant::now();
    loop {
        let res = http
            .delete(server.url(&format!("/v1/jobs/{job}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        match res.status().as_u16() {
            200 => break,
            503 => assert!(res.headers().contains_key("retry-after")),
            other => panic!("cancel answered {other}: {}", res.text().await.unwrap()),
        }
        assert!(
            cancelling.elapsed() < Duration::from_secs(180),
            "not cancelled"
        );
        healthz_within(&server, Duration::from_secs(2)).await;
    }
    eprintln!(
        "cancelled after {:.1} s",
        cancelling.elapsed().as_secs_f64()
    );
    assert_eq!(server.wait_job(&job).await["state"], "cancelled");
    healthz_within(&server, Duration::from_secs(2)).await;

    // Past a smaller limit, refused at planning with its size.
    drop(server);
    let server = start(&dir, &["--max-job-tiles", "200000"]);
    let started = Instant::now();
    let upload = http
        .post(server.url("/v1/layers?name=world&zooms=0-18"))
        .header("content-type", "application/geo+json")
        .body(support::collection(std::slice::from_ref(&world)));
    let done = change_and_wait(&server, upload).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "too_many_tiles", "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.contains("at most 200000"), "{message}");
    assert!(message.contains("zooms 0-18"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(60));
    healthz_within(&server, Duration::from_secs(2)).await;

    // A smaller limit, and a job that fits within it, exactly counted.
    drop(server);
    let server = start(&dir, &["--max-job-tiles", "100"]);
    let cities = http
        .post(server.url("/v1/layers?name=cities&zooms=0-6"))
        .header("content-type", "application/geo+json")
        .body(std::fs::read(sample("ne_cities.geojson")).unwrap());
    let done = change_and_wait(&server, cities).await;
    assert_eq!(done["error"]["code"], "too_many_tiles", "{done}");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.contains("at most 100 "), "{message}");
    let small = http
        .post(server.url("/v1/layers?name=cities&zooms=0-2"))
        .header("content-type", "application/geo+json")
        .body(std::fs::read(sample("ne_cities.geojson")).unwrap());
    let done = change_and_wait(&server, small).await;
    assert_eq!(done["state"], "succeeded", "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_a_clients_budget_get_429_and_event_streams_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(
        &dir,
        &["--writes-per-minute", "3", "--max-event-streams", "1"],
    );
    let http = reqwest::Client::new();
    let upload = || {
        http.post(server.url("/v1/layers?name=c&zooms=0-1"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/geo+json")
            .body(std::fs::read(sample("ne_cities.geojson")).unwrap())
            .send()
    };
    let mut job = String::new();
    for _ in 0..3 {
        let res = upload().await.unwrap();
        assert_eq!(res.status().as_u16(), 202);
        let body: Value = res.json().await.unwrap();
        job = body["job"]["id"].as_str().unwrap().to_string();
    }
    let res = upload().await.unwrap();
    assert_eq!(res.status().as_u16(), 429);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&wait), "{wait}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
    // Guessing tokens spends the same budget.
    let res = http
        .delete(server.url(&format!("/v1/jobs/{job}")))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 429);
    // Reads are not writes.
    assert_eq!(server.job(&job).await["id"], job.as_str());

    // One event stream at a time here: a second waits for the first to end.
    let events = server.url(&format!("/v1/jobs/{job}/events"));
    let first = http.get(&events).send().await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    let second = http.get(&events).send().await.unwrap();
    assert_eq!(second.status().as_u16(), 503);
    assert!(second.headers().contains_key("retry-after"));
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams", "{body}");
    // The first stream ends with its job (or its client); then there is room.
    let _ = first.bytes().await;
    let third = http.get(&events).send().await.unwrap();
    assert_eq!(third.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_order_mark_is_read_past_and_compressed_or_utf16_uploads_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let http = reqwest::Client::new();
    let geojson = std::fs::read(sample("ne_cities.geojson")).unwrap();
    let post = |body: Vec<u8>| {
        http.post(server.url("/v1/layers?name=b&zooms=0-1"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/geo+json")
            .body(body)
    };
    let with_bom = [b"\xef\xbb\xbf".as_slice(), &geojson].concat();
    let done = server.change(post(with_bom)).await;
    assert_eq!(done["state"], "succeeded", "{done}");

    let gzip = std::process::Command::new("gzip")
        .arg("-c")
        .arg(sample("ne_cities.geojson"))
        .output()
        .unwrap()
        .stdout;
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(
            String::from_utf8_lossy(&geojson[..2000])
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    for (body, word) in [(gzip, "gzip"), (utf16, "UTF-16")] {
        let res = post(body).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 400, "{word}");
        let answer: Value = res.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "unsupported_format", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(word), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_layer_leaves_nothing_and_one_with_a_job_under_way_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let http = reqwest::Client::new();
    let upload = |zooms: &str| {
        http.post(server.url(&format!("/v1/layers?name=d&zooms={zooms}")))
            .bearer_auth(TOKEN)
            .header("content-type", "application/geo+json")
            .body(std::fs::read(sample("ne_110m_countries.geojson")).unwrap())
    };
    let done = change_and_wait(&server, upload("0-3")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let layer = done["layer_id"].as_str().unwrap().to_string();
    // An edit, so that the layer has two versions and two uploads.
    let edit = serde_json::json!({"upsert": {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "pin", "properties": {},
         "geometry": {"type": "Point", "coordinates": [5, 5]}}]}});
    let edits = server.url(&format!("/v1/layers/{layer}/edits"));
    let done = change_and_wait(&server, http.post(&edits).json(&edit)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let store = dir.path().join("store");
    let holds_layer = || {
        tilefarm_testkit::tree(&store)
            .keys()
            .filter(|k| k.contains(&layer))
            .count()
    };
    assert!(
        holds_layer() > 10,
        "the layer's tiles and versions are stored"
    );
    let uploads_before = tilefarm_testkit::tree(&store.join("uploads")).len();

    let delete = |id: &str| {
        http.delete(server.url(&format!("/v1/layers/{id}")))
            .bearer_auth(TOKEN)
            .send()
    };
    // Not without the token.
    let res = http
        .delete(server.url(&format!("/v1/layers/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let res = delete(&layer).await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["deleted"], true, "{body}");
    assert!(body["objects_removed"].as_u64().unwrap() > 10, "{body}");
    assert_eq!(holds_layer(), 0, "no tile or version of the layer is left");
    assert_eq!(
        tilefarm_testkit::tree(&store.join("uploads")).len(),
        uploads_before - 2,
        "both uploads are gone"
    );
    let tile = http
        .get(server.url(&format!("/tiles/{layer}/0/0/0.png")))
        .send()
        .await
        .unwrap();
    assert_eq!(tile.status().as_u16(), 404);
    let meta = server.get_json(&format!("/v1/layers/{layer}"), None).await;
    assert_eq!(meta["error"]["code"], "unknown_layer", "{meta}");
    assert_eq!(delete(&layer).await.unwrap().status().as_u16(), 404);

    // A layer whose first job is under way stays, with a clear 409.
    let res = upload("0-7").send().await.unwrap();
    let accepted: Value = res.json().await.unwrap();
    let busy = accepted["layer_id"].as_str().unwrap().to_string();
    let res = delete(&busy).await.unwrap();
    assert_eq!(res.status().as_u16(), 409);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cancel"),
        "{body}"
    );
    let job = server
        .wait_job(accepted["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");
}
