//! The farm end to end, as real processes on the real servers: uploads become
//! jobs on RabbitMQ, workers render into S3, the API reports progress and
//! serves the tiles.

mod support;

use std::time::Duration;

use support::{Farm, reference_render, served_tiles};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_becomes_the_same_tiles_as_tilefarm_render() {
    let mut farm = Farm::new().await;
    farm.serve(&["--concurrency", "2"]);
    let (job, layer) = farm
        .upload_sample("ne_110m_countries.geojson", "world", "0-4")
        .await;

    // Server-sent events follow the job to its end.
    let events = farm
        .http
        .get(format!("{}/v1/jobs/{job}/events", farm.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        events.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let text = tokio::time::timeout(Duration::from_secs(120), events.text())
        .await
        .expect("the event stream ends when the job does")
        .unwrap();
    let last: serde_json::Value = serde_json::from_str(
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .next_back()
            .expect("at least one event")
            .trim(),
    )
    .unwrap();
    assert_eq!(last["state"], "succeeded", "{last}");

    let (done, _) = farm.wait_job(&job, Duration::from_secs(10)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["stage"], "finished");
    let total = done["progress"]["total"].as_i64().unwrap();
    assert!(total > 0);
    assert_eq!(done["progress"]["done"].as_i64(), Some(total));
    assert!(done["error"].is_null());

    let out = tempfile::tempdir().unwrap();
    let reference = reference_render("ne_110m_countries.geojson", "0-4", out.path());
    let stored = served_tiles(&farm.base, &layer, "0-4").await;
    assert!(!reference.is_empty());
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        reference.keys().collect::<Vec<_>>(),
        "the same tiles"
    );
    for (key, bytes) in &reference {
        assert!(stored[key] == *bytes, "{key} differs from tilefarm render");
    }

    // The tile origin: stored tiles, transparent ones where the data does not
    // reach, revalidation by ETag.
    let (key, bytes) = reference.iter().next().unwrap();
    let url = format!("{}/tiles/{layer}/{key}", farm.base);
    let res = farm.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(
        res.headers()["cache-control"],
        tilefarm_worker::DEFAULT_CACHE_CONTROL
    );
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(&res.bytes().await.unwrap()[..], &bytes[..]);
    let res = farm
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    // Antarctica's corner at z4 has no country: not stored, yet a tile.
    let empty = (0..16)
        .map(|y| format!("4/0/{y}.png"))
        .find(|k| !reference.contains_key(k))
        .expect("an empty z4 tile");
    let res = farm
        .http
        .get(format!("{}/tiles/{layer}/{empty}", farm.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let png = image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
    assert!(png.to_rgba8().pixels().all(|p| p.0[3] == 0), "transparent");
    let (status, json) = farm.get_json(&format!("/tiles/{layer}/9/0/0.png")).await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (404, Some("zoom_out_of_range"))
    );

    // The layer and its TileJSON.
    let (status, tj) = farm.get_json(&format!("/v1/layers/{layer}/tilejson")).await;
    assert_eq!(status, 200, "{tj}");
    assert_eq!(tj["tilejson"], "3.0.0");
    assert_eq!(tj["maxzoom"], 4);
    assert!(
        tj["tiles"][0]
            .as_str()
            .unwrap()
            .ends_with(&format!("/tiles/{layer}/{{z}}/{{x}}/{{y}}.png"))
    );
    let (status, l) = farm.get_json(&format!("/v1/layers/{layer}")).await;
    assert_eq!(status, 200);
    assert_eq!(l["feature_count"], 177);
    assert_eq!(l["published_version"], 1);

    // What ops look at.
    let (status, health) = farm.get_json("/healthz").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = farm.get_json("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["broker"], "ok", "{ready}");
    assert_eq!(ready["checks"]["database"], "ok", "{ready}");
    assert_eq!(ready["checks"]["object_store"], "ok", "{ready}");
    let metrics = farm.get_text("/metrics").await;
    for line in [
        "tilefarm_jobs{state=\"succeeded\"} 1",
        "tilefarm_uploads_total 1",
        "tilefarm_queue_ready_messages{queue=\"tilefarm.render\"} 0",
        "tilefarm_queue_ready_messages{queue=\"tilefarm.dead\"} 0",
        "tilefarm_tile_responses_total{result=\"not_modified\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
    let (status, api) = farm.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(api["paths"]["/v1/jobs/{id}"].is_object());
    farm.stop().await;
}

/// What a bad upload should get: refused at once with a status and code, or
/// accepted and then failed with a message containing the text.
enum Expect {
    Refused(u16, &'static str),
    Fails(&'static str),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_or_fail_clearly_and_leave_nothing_visible() {
    use Expect::{Fails, Refused};
    let mut farm = Farm::new().await;
    farm.serve(&[
        "--concurrency",
        "2",
        "--max-upload-mb",
        "1",
        "--token",
        "sesame",
    ]);
    let geo = Some("application/geo+json");
    let ok_query = "name=bad&zooms=0-2";
    let fc = |features: &str| format!(r#"{{"type":"FeatureCollection","features":[{features}]}}"#);
    let point =
        r#"{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[10,20]}}"#;
    let mut too_big = fc(point).into_bytes();
    too_big.extend(std::iter::repeat_n(b' ', 1_200_000));
    type Case<'a> = (&'a str, String, Option<&'a str>, Vec<u8>, Expect);
    let cases: Vec<Case> = vec![
        ("not map data", ok_query.into(), geo, b"\x00\x01hello, world".to_vec(), Refused(400, "unsupported_format")),
        ("image content type", ok_query.into(), Some("image/png"), fc(point).into(), Refused(415, "unsupported_media_type")),
        ("page content type", ok_query.into(), Some("text/html"), fc(point).into(), Refused(415, "unsupported_media_type")),
        ("too big", ok_query.into(), geo, too_big, Refused(413, "upload_too_large")),
        ("empty body", ok_query.into(), geo, Vec::new(), Refused(400, "empty_upload")),
        ("blank body", ok_query.into(), geo, b"  \n ".to_vec(), Refused(400, "empty_upload")),
        ("no name", "zooms=0-2".into(), geo, fc(point).into(), Refused(400, "invalid_name")),
        ("zooms backwards", "name=x&zooms=7-2".into(), geo, fc(point).into(), Refused(400, "invalid_zooms")),
        ("zoom too deep", "name=x&zooms=0-30".into(), geo, fc(point).into(), Refused(400, "invalid_zooms")),
        ("style not JSON", "name=x&style=%7Bnope".into(), geo, fc(point).into(), Refused(400, "invalid_style")),
        ("style with a bad colour", "name=x&style=%7B%22polygon%22%3A%7B%22fill%22%3A%22%23zzz%22%7D%7D".into(), geo, fc(point).into(), Refused(400, "invalid_style")),
        ("wrong GeoJSON type", ok_query.into(), geo, br#"{"type":"Topology","objects":{}}"#.to_vec(), Fails("Topology")),
        ("longitude out of range", ok_query.into(), geo, fc(r#"{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[200,20]}}"#).into(), Fails("longitude 200")),
        ("latitude out of range", ok_query.into(), geo, fc(r#"{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[20,-95]}}"#).into(), Fails("latitude")),
        ("unclosed ring", ok_query.into(), geo, fc(r#"{"type":"Feature","id":"r1","properties":{},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}}"#).into(), Fails("not closed")),
        ("empty collection", ok_query.into(), geo, fc("").into(), Fails("no features")),
        ("cut off", ok_query.into(), geo, br#"{"type":"FeatureCollection","features":[{"type":"Feature","#.to_vec(), Fails("line 1")),
        ("a coordinate that is a string", ok_query.into(), geo, fc(r#"{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":["10",20]}}"#).into(), Fails("expected a number")),
        ("features not an array", ok_query.into(), geo, br#"{"type":"FeatureCollection","features":{}}"#.to_vec(), Fails("features")),
        ("feature without geometry", ok_query.into(), geo, fc(r#"{"type":"Feature","properties":{}}"#).into(), Fails("geometry")),
    ];
    assert!(cases.len() >= 15);
    let mut failing_jobs = Vec::new();
    for (what, query, content_type, body, expect) in cases {
        let mut req = farm
            .http
            .post(format!("{}/v1/layers?{query}", farm.base))
            .bearer_auth("sesame")
            .body(body);
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let json: serde_json::Value = res.json().await.unwrap();
        match expect {
            Refused(want, code) => {
                assert_eq!(status, want, "{what}: {json}");
                assert_eq!(json["error"]["code"], code, "{what}: {json}");
                let message = json["error"]["message"].as_str().unwrap();
                assert!(message.len() > 20, "{what}: {message:?} says too little");
            }
            Fails(text) => {
                assert_eq!(status, 202, "{what}: {json}");
                failing_jobs.push((what, json, text));
            }
        }
    }
    // Without the token, or with a wrong one, writes are refused.
    for auth in [None, Some("Bearer wrong")] {
        let mut req = farm
            .http
            .post(format!("{}/v1/layers?{ok_query}", farm.base))
            .header("content-type", "application/geo+json")
            .body(fc(point));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status().as_u16(), 401);
    }
    for (what, accepted, text) in failing_jobs {
        let job = accepted["job"]["id"].as_str().unwrap();
        let layer = accepted["layer_id"].as_str().unwrap();
        let (done, _) = farm.wait_job(job, Duration::from_secs(60)).await;
        assert_eq!(done["state"], "failed", "{what}: {done}");
        assert_eq!(done["error"]["code"], "invalid_geojson", "{what}: {done}");
        let message = done["error"]["message"].as_str().unwrap();
        assert!(message.contains(text), "{what}: {message:?} lacks {text:?}");
        // Nothing of the layer is visible.
        let (status, json) = farm.get_json(&format!("/tiles/{layer}/0/0/0.png")).await;
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (404, Some("layer_not_ready")),
            "{what}"
        );
        let (status, _) = farm.get_json(&format!("/v1/layers/{layer}/tilejson")).await;
        assert_eq!(status, 404, "{what}");
        assert!(
            farm.stored_tiles(layer).is_empty(),
            "{what}: tiles were stored"
        );
    }
    // Unknown and malformed ids are clean 4xx answers.
    let unknown = uuid::Uuid::new_v4();
    for (path, want) in [
        (format!("/v1/jobs/{unknown}"), (404, "unknown_job")),
        ("/v1/jobs/not-a-uuid".to_string(), (400, "invalid_id")),
        (
            format!("/tiles/{unknown}/0/0/0.png"),
            (404, "unknown_layer"),
        ),
        (format!("/tiles/{unknown}/1/2/0.png"), (404, "no_such_tile")),
        (format!("/v1/layers/{unknown}"), (404, "unknown_layer")),
    ] {
        let (status, json) = farm.get_json(&path).await;
        assert_eq!(
            (status, json["error"]["code"].as_str().unwrap_or("")),
            (want.0, want.1),
            "{path}"
        );
    }
    // The workers kept serving: a good upload still renders.
    let res = farm
        .http
        .post(format!("{}/v1/layers?name=good&zooms=0-2", farm.base))
        .bearer_auth("sesame")
        .header("content-type", "application/geo+json")
        .body(fc(point))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let json: serde_json::Value = res.json().await.unwrap();
    let (done, _) = farm
        .wait_job(json["job"]["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    farm.stop().await;
}

/// Tests that restart a server hold this for writing; the others for reading.
static SERVERS: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Render tasks a worker's log says it ran.
fn rendered_by(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(" tiles of block "))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_a_job_and_progress_only_rises_to_the_total() {
    let _broker = SERVERS.read().await;
    let mut farm = Farm::new().await;
    farm.serve(&["--api-only"]);
    let a = farm.worker("worker-a", 1);
    let b = farm.worker("worker-b", 1);
    let (job, layer) = farm
        .upload_sample("ne_110m_countries.geojson", "world", "0-6")
        .await;
    let (done, seen) = farm.wait_job(&job, Duration::from_secs(300)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let total = done["progress"]["total"].as_i64().unwrap();
    assert_eq!(seen.last(), Some(&total), "ends exactly at the total");
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress went down: {seen:?}"
    );
    assert!(seen.iter().all(|&d| d <= total), "{seen:?} passed {total}");
    let (by_a, by_b) = (rendered_by(&farm.log(a)), rendered_by(&farm.log(b)));
    assert!(
        by_a > 0 && by_b > 0,
        "both workers rendered: {by_a} and {by_b}"
    );
    farm.assert_tiles_match_render(&layer, "ne_110m_countries.geojson", "0-6")
        .await;
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing_and_counts_nothing_twice() {
    let _broker = SERVERS.read().await;
    let mut farm = Farm::new().await;
    farm.serve(&["--api-only"]);
    let victim = farm.worker("victim", 2);
    let (job, layer) = farm
        .upload_sample("wa_countries_50m.geojson", "world", "0-6")
        .await;
    // Kill the only worker once it is part way through.
    farm.wait_for_progress(&job).await;
    farm.procs[victim].child.kill().unwrap(); // SIGKILL
    farm.procs[victim].child.wait().unwrap();
    let at_kill = farm.job(&job).await;
    assert_eq!(at_kill["state"], "running", "{at_kill}");
    farm.worker("survivor", 2);
    let (done, seen) = farm.wait_job(&job, Duration::from_secs(300)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let total = done["progress"]["total"].as_i64().unwrap();
    assert_eq!(
        done["progress"]["done"].as_i64(),
        Some(total),
        "counted once each"
    );
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    farm.assert_tiles_match_render(&layer, "wa_countries_50m.geojson", "0-6")
        .await;
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_survives_a_rabbitmq_restart() {
    let _broker = SERVERS.write().await;
    let mut farm = Farm::new().await;
    farm.serve(&["--concurrency", "1"]);
    let (job, layer) = farm
        .upload_sample("wa_countries_50m.geojson", "world", "0-6")
        .await;
    farm.wait_for_progress(&job).await;
    tilefarm_testkit::rabbitmqctl(&["stop_app"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    tilefarm_testkit::rabbitmqctl(&["start_app"]);
    tilefarm_testkit::rabbitmqctl(&["await_startup"]);
    let (done, _) = farm.wait_job(&job, Duration::from_secs(300)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["progress"]["done"], done["progress"]["total"]);
    assert!(
        farm.log(0).contains("reconnecting"),
        "the worker saw the broker go"
    );
    farm.assert_tiles_match_render(&layer, "wa_countries_50m.geojson", "0-6")
        .await;
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_always_fails_is_dead_lettered_and_fails_only_its_job() {
    use tilefarm_queue::{Broker, DEAD_QUEUE, QueuePolicy};
    let _broker = SERVERS.read().await;
    let mut farm = Farm::new().await.with_fast_retries();
    let lost = farm.plan_lost_job().await;
    farm.serve(&["--concurrency", "2"]);
    // Another job at the same time carries on.
    let (good, _) = farm
        .upload_sample("ne_110m_countries.geojson", "good", "0-3")
        .await;
    let (failed, _) = farm
        .wait_job(&lost.job_id.to_string(), Duration::from_secs(60))
        .await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "task_failed");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("failed 4 times"), "{message}");
    assert!(
        message.contains("not found") || message.contains("NotFound"),
        "{message}"
    );
    let (ok, _) = farm.wait_job(&good, Duration::from_secs(120)).await;
    assert_eq!(ok["state"], "succeeded", "{ok}");
    let broker = Broker::connect(
        &farm.vhost.url,
        QueuePolicy {
            retry_delays: [100, 200, 300].map(Duration::from_millis).to_vec(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut dead = 0;
    for _ in 0..50 {
        dead = broker.depth(DEAD_QUEUE).await.unwrap();
        if dead > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead, 1, "the task's message is in the dead-letter queue");
    let log = farm.log(0);
    assert!(
        log.lines()
            .any(|l| l.contains("dead-lettered") && l.contains(&lost.job_id.to_string())),
        "the failure is logged with the job id"
    );
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_ends_cancelled_and_stops_counting() {
    let _broker = SERVERS.read().await;
    let mut farm = Farm::new().await;
    farm.serve(&["--api-only"]);
    let (job, _) = farm
        .upload_sample("ne_110m_countries.geojson", "world", "0-5")
        .await;
    let res = farm
        .http
        .delete(format!("{}/v1/jobs/{job}", farm.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json["state"], "cancelled", "{json}");
    let again = farm
        .http
        .delete(format!("{}/v1/jobs/{job}", farm.base))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 409);
    // A worker arriving now finds nothing to do for it.
    farm.worker("late", 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let j = farm.job(&job).await;
    assert_eq!(j["state"], "cancelled");
    assert_eq!(j["progress"]["done"], 0, "{j}");
    let (status, list) = farm.get_json("/v1/jobs?state=cancelled").await;
    assert_eq!(status, 200);
    assert_eq!(list["jobs"][0]["id"], job.as_str());
    let (status, list) = farm.get_json("/v1/jobs?state=bogus").await;
    assert_eq!(
        (status, list["error"]["code"].as_str()),
        (400, Some("invalid"))
    );
    farm.stop().await;
}

/// Runs `pg_ctlcluster ACTION` on the machine's PostgreSQL cluster.
fn pg_ctlcluster(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("PostgreSQL's configuration (scripts/setup installs it)")
        .next()
        .expect("a cluster")
        .unwrap()
        .file_name();
    let out = std::process::Command::new("pg_ctlcluster")
        .arg("--skip-systemctl-redirect")
        .arg(&version)
        .args(["main", action])
        .output()
        .expect("pg_ctlcluster");
    assert!(
        out.status.success(),
        "pg_ctlcluster {action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_survives_a_postgresql_restart() {
    let _servers = SERVERS.write().await;
    let mut farm = Farm::new().await;
    farm.serve(&["--api-only"]);
    let worker = farm.worker("worker", 1);
    let (job, layer) = farm
        .upload_sample("wa_countries_50m.geojson", "world", "0-6")
        .await;
    farm.wait_for_progress(&job).await;
    // Longer than the workers' 5 s wait for a connection: they must hold their
    // tasks through it.
    pg_ctlcluster("stop");
    tokio::time::sleep(Duration::from_secs(8)).await;
    pg_ctlcluster("start");
    let (done, _) = farm.wait_job(&job, Duration::from_secs(300)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["progress"]["done"], done["progress"]["total"]);
    let log = farm.log(worker);
    assert!(
        log.contains("job store is unreachable") && log.contains("holding the task"),
        "the worker saw the database go: {}",
        log.lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    farm.assert_tiles_match_render(&layer, "wa_countries_50m.geojson", "0-6")
        .await;
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_worker_after_the_tasks_in_hand() {
    let _servers = SERVERS.read().await;
    let mut farm = Farm::new().await;
    farm.serve(&["--api-only"]);
    let first = farm.worker("first", 2);
    let (job, layer) = farm
        .upload_sample("wa_countries_50m.geojson", "world", "0-6")
        .await;
    farm.wait_for_progress(&job).await;
    let pid = farm.procs[first].child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let stopping = std::time::Instant::now();
    let status = loop {
        if let Some(status) = farm.procs[first].child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(30),
            "the worker did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit {status}");
    let log = farm.log(first);
    assert!(log.contains("finishing the tasks in hand"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    let at_stop = farm.job(&job).await;
    if at_stop["state"] == "running" {
        farm.worker("second", 2);
    }
    let (done, _) = farm.wait_job(&job, Duration::from_secs(300)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["progress"]["done"], done["progress"]["total"]);
    farm.assert_tiles_match_render(&layer, "wa_countries_50m.geojson", "0-6")
        .await;
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_never_finishes_fails_its_job_when_the_broker_gives_up_on_it() {
    use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions};
    use tilefarm_queue::{Broker, DEAD_QUEUE, INGEST_QUEUE, QueuePolicy, retry_queue};
    let _servers = SERVERS.read().await;
    let mut farm = Farm::new().await;
    farm.extra_env
        .push(("TILEFARM_DELIVERY_LIMIT".into(), "2".into()));
    // The API and the relay only: no worker takes the task.
    farm.serve(&["--api-only"]);
    let (job, _) = farm
        .upload_sample("ne_110m_countries.geojson", "world", "0-2")
        .await;
    // Stand in for a worker whose attempt failed (the task waits out its first
    // retry delay), then for workers that die holding it: take it and give it
    // back until the broker dead-letters it.
    let policy = QueuePolicy {
        delivery_limit: 2,
        ..Default::default()
    };
    let broker = Broker::connect(&farm.vhost.url, policy).await.unwrap();
    let channel = broker.connection().create_channel().await.unwrap();
    let mut deliveries = 0;
    let started = std::time::Instant::now();
    while broker.depth(DEAD_QUEUE).await.unwrap() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never dead-lettered"
        );
        if let Some(m) = channel
            .basic_get(INGEST_QUEUE.into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            deliveries += 1;
            if deliveries == 1 {
                let delay = retry_queue(INGEST_QUEUE, Duration::from_secs(1));
                let options = BasicPublishOptions::default();
                let props = lapin::BasicProperties::default().with_delivery_mode(2);
                let data = &m.delivery.data;
                let published =
                    channel.basic_publish("".into(), delay.as_str().into(), options, data, props);
                published.await.unwrap().await.unwrap();
                m.delivery.ack(BasicAckOptions::default()).await.unwrap();
                continue;
            }
            m.delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(deliveries >= 3, "{deliveries} deliveries");
    assert_eq!(
        farm.job(&job).await["state"],
        "queued",
        "nothing failed it yet"
    );
    // A worker learns of the dead letter and fails the job with the reason.
    let worker = farm.worker("worker", 1);
    let (done, _) = farm.wait_job(&job, Duration::from_secs(60)).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "task_failed");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("as often as the broker allows"),
        "{message}"
    );
    assert!(
        farm.log(worker).contains(&job),
        "the failure is logged with the job id"
    );
    assert_eq!(
        broker.depth(DEAD_QUEUE).await.unwrap(),
        1,
        "ops still find it"
    );
    farm.stop().await;
}
