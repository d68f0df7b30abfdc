//! `tilefarm serve` with nothing configured: API and workers in one process on
//! SQLite, an in-process queue and a local folder; the same results as the farm.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{
    Embedded, collection, features_with_ids, reference_render, sample, served_tiles, shift,
};
use tilefarm_testkit::tree;

async fn upload(server: &Embedded, file: &str, zooms: &str) -> (String, String) {
    let res = reqwest::Client::new()
        .post(server.url(&format!("/v1/layers?name=world&zooms={zooms}")))
        .header("content-type", "application/geo+json")
        .body(std::fs::read(sample(file)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let json: Value = res.json().await.unwrap();
    (
        json["job"]["id"].as_str().unwrap().into(),
        json["layer_id"].as_str().unwrap().into(),
    )
}

/// A layer's tiles in the embedded store. A write cut short by SIGKILL can leave
/// the local object store's staging file (`y.png#N`) beside the tile; it is
/// never served, so it is not a tile.
fn stored(data_dir: &std::path::Path, layer: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    tree(&data_dir.join("store/tiles").join(layer))
        .into_iter()
        .filter(|(k, _)| k.ends_with(".png"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_mode_renders_the_same_tiles_as_tilefarm_render() {
    let dir = tempfile::tempdir().unwrap();
    let server = Embedded::start(dir.path(), dir.path().join("serve.log"));
    let (job, layer) = upload(&server, "ne_110m_countries.geojson", "0-4").await;
    let done = server.wait_job(&job).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["progress"]["done"], done["progress"]["total"]);
    let out = tempfile::tempdir().unwrap();
    let reference = reference_render("ne_110m_countries.geojson", "0-4", out.path());
    let tiles = served_tiles(&server.url(""), &layer, "0-4").await;
    assert!(!reference.is_empty());
    assert!(tiles == reference, "the same tiles as tilefarm render");
    // The page, the tile origin and readiness work the same way.
    let page = reqwest::get(server.url("/")).await.unwrap();
    assert!(page.text().await.unwrap().contains("EventSource"));
    let ready: Value = reqwest::get(server.url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let (key, bytes) = reference.iter().next().unwrap();
    let tile = reqwest::get(server.url(&format!("/tiles/{layer}/{key}")))
        .await
        .unwrap();
    assert_eq!(&tile.bytes().await.unwrap()[..], &bytes[..]);
}

/// Waits until `job` has rendered some of its tiles but not all, then kills
/// the server (SIGKILL), with tasks in hand.
async fn kill_mid_job(server: &mut Embedded, job: &str) {
    wait_mid_job(server, job).await;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
}

/// Waits until `job` has rendered some of its tiles but not all.
async fn wait_mid_job(server: &Embedded, job: &str) {
    let started = Instant::now();
    loop {
        let j = server.job(job).await;
        let done = j["progress"]["done"].as_i64().unwrap();
        if done > 0 {
            assert!(
                Some(done) < j["progress"]["total"].as_i64(),
                "finished before the kill"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress: {j}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Cancels `job` once it has rendered some of its tiles but not all, and
/// waits until it has ended.
async fn cancel_mid_job(server: &Embedded, job: &str) {
    wait_mid_job(server, job).await;
    let res = reqwest::Client::new()
        .delete(server.url(&format!("/v1/jobs/{job}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(server.wait_job(job).await["state"], "cancelled");
}

/// Pending tasks of the embedded store in `data_dir` that were delivered and
/// never settled: those a killed server had in hand.
async fn unsettled_tasks(data_dir: &std::path::Path) -> i64 {
    let url = format!(
        "sqlite://{}?mode=ro",
        data_dir.join("jobs.sqlite").display()
    );
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let n =
        sqlx::query_scalar("SELECT count(*) FROM tasks WHERE state = 'pending' AND deliveries > 0")
            .fetch_one(&db)
            .await
            .unwrap();
    db.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_server_killed_mid_job_finishes_it_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let mut server = Embedded::start(dir.path(), log.clone());
    let (job, layer) = upload(&server, "wa_countries_50m.geojson", "0-6").await;
    kill_mid_job(&mut server, &job).await;
    let server = Embedded::start(dir.path(), log);
    let done = server.wait_job(&job).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        done["progress"]["done"], done["progress"]["total"],
        "counted once each"
    );
    let out = tempfile::tempdir().unwrap();
    let reference = reference_render("wa_countries_50m.geojson", "0-6", out.path());
    assert!(
        served_tiles(&server.url(""), &layer, "0-6").await == reference,
        "the same tiles as tilefarm render"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_died_with_its_process_past_the_delivery_limit_fails_its_job() {
    // With the limit 0, a task delivered again after it took its process down
    // (here, a kill) is past it: as a crash-looping task would be after five.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let args = ["--delivery-limit", "0"];
    let mut server = Embedded::start_with(dir.path(), log.clone(), &args);
    let (job, _) = upload(&server, "wa_countries_50m.geojson", "0-6").await;
    kill_mid_job(&mut server, &job).await;
    drop(server);
    let in_hand = unsettled_tasks(dir.path()).await;
    assert!(in_hand > 0, "the kill caught no task in hand");
    let server = Embedded::start_with(dir.path(), log.clone(), &args);
    let failed = server.wait_job(&job).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "task_failed", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("delivered to workers as often as"),
        "{message}"
    );
    drop(server);
    // With the default limit the same kill is survived (see the test above);
    // the count is kept across restarts, not in the process.
    assert_eq!(
        unsettled_tasks(dir.path()).await,
        0,
        "no task is left pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_removes_what_failed_and_cancelled_jobs_left_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let args = ["--sweep-after-secs", "3", "--sweep-every-secs", "1"];
    let server = Embedded::start_with(dir.path(), dir.path().join("serve.log"), &args);
    let client = reqwest::Client::new();
    // Kept: a published layer.
    let (kept_job, kept) = upload(&server, "ne_110m_countries.geojson", "0-3").await;
    assert_eq!(server.wait_job(&kept_job).await["state"], "succeeded");
    let kept_tiles = stored(dir.path(), &kept);
    // A job that failed: its upload holds no coordinates.
    let res = client
        .post(server.url("/v1/layers?name=bad&zooms=0-2"))
        .body("name,size\nnowhere,1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let bad: Value = res.json().await.unwrap();
    let bad_job = bad["job"]["id"].as_str().unwrap().to_string();
    let bad_layer = bad["layer_id"].as_str().unwrap().to_string();
    assert_eq!(server.wait_job(&bad_job).await["state"], "failed");
    // A first upload cancelled halfway, with some of its tiles written.
    let (cut_job, cut) = upload(&server, "wa_countries_50m.geojson", "0-6").await;
    cancel_mid_job(&server, &cut_job).await;
    assert!(
        !stored(dir.path(), &cut).is_empty(),
        "the cancelled job wrote tiles"
    );
    let objects = |under: &str| tree(&store.join(under)).into_keys().collect::<Vec<_>>();
    let started = Instant::now();
    loop {
        let (uploads, layers, cut_tiles) = (
            objects("uploads"),
            objects("layers"),
            stored(dir.path(), &cut),
        );
        let left_of = |id: &str| layers.iter().filter(|k| k.starts_with(id)).count();
        if uploads.len() == 1 && left_of(&bad_layer) + left_of(&cut) == 0 && cut_tiles.is_empty() {
            assert!(left_of(&kept) > 0, "the kept layer's versions: {layers:?}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not swept: uploads {uploads:?}, layers {layers:?}, {} tiles of the cancelled layer",
            cut_tiles.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(stored(dir.path(), &kept), kept_tiles, "the kept tiles stay");
    let tile = reqwest::get(server.url(&format!("/tiles/{kept}/0/0/0.png")))
        .await
        .unwrap();
    assert_eq!(tile.status().as_u16(), 200);
    // The jobs still tell what became of them.
    assert_eq!(server.job(&bad_job).await["state"], "failed");
    assert_eq!(server.job(&cut_job).await["state"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tilefarm_upload_follows_a_job_to_its_end_and_says_why_one_failed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Embedded::start(dir.path(), dir.path().join("serve.log"));
    let upload = |file: std::path::PathBuf| {
        Command::new(env!("CARGO_BIN_EXE_tilefarm"))
            .arg("upload")
            .arg(file)
            .args(["--server", &server.url(""), "--zooms", "0-2"])
            .output()
            .unwrap()
    };
    let ok = upload(sample("ne_cities.geojson"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr),
    );
    assert!(ok.status.success(), "{stderr}");
    assert!(stdout.contains("job succeeded"), "{stdout}");
    assert!(stdout.contains("/tilejson"), "{stdout}");
    // The layer's id, from the TileJSON URL printed.
    let layer = stdout
        .split("/v1/layers/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("a layer id in the output")
        .to_string();
    let tilefarm = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tilefarm"))
            .args(args)
            .args(["--server", &server.url("")])
            .output()
            .unwrap()
    };
    // An edit, followed to its end.
    let edit_file = dir.path().join("edit.json");
    std::fs::write(
        &edit_file,
        r#"{"upsert":{"type":"FeatureCollection","features":[{"type":"Feature","id":"pin","properties":{},"geometry":{"type":"Point","coordinates":[5,5]}}]}}"#,
    )
    .unwrap();
    let edited = tilefarm(&["edit", &layer, edit_file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&edited.stdout);
    assert!(
        edited.status.success(),
        "{}",
        String::from_utf8_lossy(&edited.stderr)
    );
    assert!(stdout.contains("job succeeded"), "{stdout}");
    // A bad edit is refused with the server's reason.
    std::fs::write(&edit_file, r#"{"delete":[true]}"#).unwrap();
    let refused = tilefarm(&["edit", &layer, edit_file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("refused") && stderr.contains("delete[0]"),
        "{stderr}"
    );
    // New data for the same layer.
    let replaced = tilefarm(&[
        "upload",
        sample("ne_110m_countries.geojson").to_str().unwrap(),
        "--layer",
        &layer,
    ]);
    let stdout = String::from_utf8_lossy(&replaced.stdout);
    assert!(
        replaced.status.success(),
        "{}",
        String::from_utf8_lossy(&replaced.stderr)
    );
    assert!(
        stdout.contains(&format!("/v1/layers/{layer}/tilejson")),
        "{stdout}"
    );
    let bad_file = dir.path().join("bad.geojson");
    std::fs::write(
        &bad_file,
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[10,95]}}]}"#,
    )
    .unwrap();
    let bad = upload(bad_file);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("job failed") && stderr.contains("latitude 95"),
        "{stderr}"
    );
    // Plain text is read as CSV: a log file has no coordinate columns.
    let not_data = upload(dir.path().join("serve.log"));
    let stderr = String::from_utf8_lossy(&not_data.stderr);
    assert!(!not_data.status.success());
    assert!(
        stderr.contains("job failed") && stderr.contains("no coordinate columns"),
        "{stderr}"
    );
}

/// A webhook receiver: every JSON body POSTed to it, in arrival order.
struct Webhook {
    url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    /// How many of the next requests to answer 503 (and not keep).
    refuse: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Webhook {
    async fn start() -> Webhook {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let refuse = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (kept, refusing) = (bodies.clone(), refuse.clone());
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let (kept, refusing) = (kept.clone(), refusing.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        let n = socket.read(&mut chunk).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if buf.len() < end + 4 + length {
                            continue;
                        }
                        let body: Value = serde_json::from_slice(&buf[end + 4..end + 4 + length])
                            .expect("a JSON body");
                        use std::sync::atomic::Ordering::SeqCst;
                        let refused = refusing
                            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        let reply = if refused {
                            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        } else {
                            kept.lock().unwrap().push(body);
                            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        };
                        socket.write_all(reply.as_bytes()).await.unwrap();
                        return;
                    }
                });
            }
        });
        Webhook {
            url,
            bodies,
            refuse,
        }
    }

    /// The tiles (`z/x/y.png`) reported changed by `job`, which must have
    /// reported.
    fn changed(&self, job: &str) -> std::collections::BTreeSet<String> {
        let bodies = self.bodies.lock().unwrap();
        let reports: Vec<&Value> = bodies.iter().filter(|b| b["job_id"] == job).collect();
        assert!(!reports.is_empty(), "job {job} made no report");
        reports
            .iter()
            .flat_map(|b| b["paths"].as_array().unwrap())
            .map(|p| {
                let p = p.as_str().unwrap();
                // /tiles/{layer}/z/x/y.png
                p.splitn(4, '/').nth(3).unwrap().to_string()
            })
            .collect()
    }
}

/// Each stored tile's identity on disk: a rewrite replaces the file.
fn file_ids(
    root: &std::path::Path,
) -> std::collections::BTreeMap<String, (u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    tree(root)
        .into_keys()
        .map(|k| {
            let meta = std::fs::metadata(root.join(&k)).unwrap();
            (k, (meta.ino(), meta.modified().unwrap()))
        })
        .collect()
}

/// Tiles written, rewritten or deleted between two snapshots.
fn rewritten(
    before: &std::collections::BTreeMap<String, (u64, std::time::SystemTime)>,
    after: &std::collections::BTreeMap<String, (u64, std::time::SystemTime)>,
) -> std::collections::BTreeSet<String> {
    before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

/// A small random number generator (xorshift), seeded for repeatable runs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next() % 10_000) as f64 / 10_000.0 * (hi - lo)
    }
}

/// A random edit of 1 to 3 features (moved, added as a point or a square,
/// deleted), applied to `features` as the farm applies it: an upsert of a known
/// id in place, a new id at the end, a delete removed.
fn random_edit(rng: &mut Rng, features: &mut Vec<Value>, next_id: &mut u64) -> Value {
    let (mut upsert, mut delete) = (Vec::new(), Vec::new());
    let mut used = std::collections::HashSet::new();
    for _ in 0..1 + rng.below(3) {
        let op = rng.below(4);
        if op >= 2 && !features.is_empty() {
            let i = rng.below(features.len());
            let id = features[i]["id"].as_u64().unwrap();
            if !used.insert(id) {
                continue;
            }
            if op == 2 {
                features.remove(i);
                delete.push(serde_json::json!(id));
            } else {
                let mut f = features[i].clone();
                let (dx, dy) = (rng.range(-8.0, 8.0), rng.range(-5.0, 5.0));
                shift(&mut f["geometry"]["coordinates"], dx, dy);
                f["properties"]["edited"] = serde_json::json!(true);
                features[i] = f.clone();
                upsert.push(f);
            }
        } else {
            let id = *next_id;
            *next_id += 1;
            used.insert(id);
            let (x, y) = (rng.range(-170.0, 170.0), rng.range(-70.0, 70.0));
            let geometry = if op == 0 {
                serde_json::json!({"type": "Point", "coordinates": [x, y]})
            } else {
                let d = rng.range(0.5, 6.0);
                serde_json::json!({"type": "Polygon", "coordinates": [[
                    [x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]
                ]]})
            };
            let f = serde_json::json!({"type": "Feature", "id": id, "properties": {"new": true}, "geometry": geometry});
            features.push(f.clone());
            upsert.push(f);
        }
    }
    serde_json::json!({
        "upsert": {"type": "FeatureCollection", "features": upsert},
        "delete": delete,
    })
}

fn write_collection(path: &std::path::Path, features: &[Value]) {
    std::fs::write(path, collection(features)).unwrap();
}

async fn post_edit(server: &Embedded, layer: &str, edit: &Value) -> Value {
    let res = reqwest::Client::new()
        .post(server.url(&format!("/v1/layers/{layer}/edits")))
        .json(edit)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_edits_rewrite_only_dirty_tiles_and_end_as_a_fresh_render() {
    // Deep enough for countries to have one-colour regions that edits split
    // and merge.
    const ZOOMS: &str = "0-6";
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let server = Embedded::start_with(
        dir.path(),
        dir.path().join("serve.log"),
        &["--invalidate-webhook", &hook.url],
    );
    // The countries, each with an id.
    let mut features = features_with_ids("ne_110m_countries.geojson");
    let mut next_id = features.len() as u64;
    let base = dir.path().join("base.geojson");
    write_collection(&base, &features);
    let (job, layer) = upload(&server, base.to_str().unwrap(), ZOOMS).await;
    assert_eq!(server.wait_job(&job).await["state"], "succeeded");
    let root = dir.path().join("store/tiles").join(&layer);

    // One edit at a time: each rewrites only tiles it reports, and its
    // progress counts exactly those.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut rewrites = 0;
    for round in 0..8 {
        let before = file_ids(&root);
        let edit = random_edit(&mut rng, &mut features, &mut next_id);
        let accepted = post_edit(&server, &layer, &edit).await;
        let job = accepted["job"]["id"].as_str().unwrap().to_string();
        let done = server.wait_job(&job).await;
        assert_eq!(done["state"], "succeeded", "round {round}: {done}");
        assert_eq!(done["kind"], "edit");
        let changed = hook.changed(&job);
        // Progress counts the dirty tiles, which hold every tile that changed.
        let dirty = done["progress"]["total"].as_u64().unwrap();
        assert!(
            dirty >= changed.len() as u64,
            "round {round}: {dirty} dirty"
        );
        // Exactly the tiles reported changed were written or deleted.
        let written = rewritten(&before, &file_ids(&root));
        assert_eq!(written, changed, "round {round}: written and reported");
        rewrites += written.len();
        if round == 3 {
            // Midway, every tile served is a fresh render's.
            let data = dir.path().join("midway.geojson");
            write_collection(&data, &features);
            let out = tempfile::tempdir().unwrap();
            let reference = reference_render(data.to_str().unwrap(), ZOOMS, out.path());
            let served = served_tiles(&server.url(""), &layer, ZOOMS).await;
            assert!(
                served == reference,
                "round {round}: the tiles of a fresh render"
            );
        }
    }
    assert!(rewrites > 0, "the edits changed some tiles");

    // Edits sent at once apply one after another in the order accepted.
    let before = file_ids(&root);
    let mut jobs = Vec::new();
    for _ in 0..5 {
        let edit = random_edit(&mut rng, &mut features, &mut next_id);
        jobs.push(post_edit(&server, &layer, &edit).await);
    }
    let mut changed = std::collections::BTreeSet::new();
    let mut finished = Vec::new();
    for (i, accepted) in jobs.iter().enumerate() {
        let job = accepted["job"]["id"].as_str().unwrap();
        let done = server.wait_job(job).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        assert_eq!(
            done["version"],
            jobs[0]["version"].as_i64().unwrap() + i as i64
        );
        finished.push(done["finished_at"].as_str().unwrap().to_string());
        changed.extend(hook.changed(job));
    }
    assert!(
        finished.windows(2).all(|w| w[0] <= w[1]),
        "in order: {finished:?}"
    );
    let written = rewritten(&before, &file_ids(&root));
    assert_eq!(written, changed, "written and reported");

    // The tiles are those of a fresh render of the final data.
    let final_data = dir.path().join("final.geojson");
    write_collection(&final_data, &features);
    let out = tempfile::tempdir().unwrap();
    let reference = reference_render(final_data.to_str().unwrap(), ZOOMS, out.path());
    let stored = served_tiles(&server.url(""), &layer, ZOOMS).await;
    assert_eq!(stored.len(), reference.len(), "every tile and no other");
    assert!(stored == reference, "the same tiles as a fresh render");
    let layer_info: Value = reqwest::get(server.url(&format!("/v1/layers/{layer}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(layer_info["feature_count"], features.len());
    assert_eq!(layer_info["published_version"], jobs[4]["version"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_data_for_a_layer_replaces_its_tiles_and_bad_edits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Embedded::start(dir.path(), dir.path().join("serve.log"));
    let (job, layer) = upload(&server, "ne_110m_countries.geojson", "0-3").await;
    assert_eq!(server.wait_job(&job).await["state"], "succeeded");
    let client = reqwest::Client::new();
    // The cities reach far fewer tiles than the countries: the rest go.
    let res = client
        .put(server.url(&format!("/v1/layers/{layer}/data")))
        .header("content-type", "application/geo+json")
        .body(std::fs::read(sample("ne_cities.geojson")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let accepted: Value = res.json().await.unwrap();
    assert_eq!(accepted["version"], 2);
    let done = server
        .wait_job(accepted["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let out = tempfile::tempdir().unwrap();
    let reference = reference_render("ne_cities.geojson", "0-3", out.path());
    assert!(
        served_tiles(&server.url(""), &layer, "0-3").await == reference,
        "the tiles of the new data only"
    );

    // Bad edits: a 4xx that says what and where, and nothing changes.
    let before = stored(dir.path(), &layer);
    for (body, status, expect) in [
        ("{", 400, "not valid JSON"),
        (r#"{"delete":[]}"#, 400, "the edit is empty"),
        (
            r#"{"upsert":{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[1,2]}}]}}"#,
            400,
            "upsert.features[0]: a feature to upsert needs an \"id\"",
        ),
        (
            r#"{"upsert":{"type":"FeatureCollection","features":[{"type":"Feature","id":"x","properties":{},"geometry":{"type":"Point","coordinates":[1,200]}}]}}"#,
            400,
            "upsert.features[0]",
        ),
    ] {
        let res = client
            .post(server.url(&format!("/v1/layers/{layer}/edits")))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "{body}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["error"]["code"], "invalid_edit", "{err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(expect), "{body}: {message}");
    }
    let unknown = client
        .post(server.url("/v1/layers/00000000-0000-0000-0000-000000000000/edits"))
        .body(r#"{"delete":[1]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
    // Deleting a feature the layer does not have fails the job, and the next
    // edit still applies.
    let missing = client
        .post(server.url(&format!("/v1/layers/{layer}/edits")))
        .body(r#"{"delete":["no such city"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 202);
    let missing: Value = missing.json().await.unwrap();
    let failed = server
        .wait_job(missing["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["error"]["code"], "unknown_feature", "{failed}");
    assert!(
        stored(dir.path(), &layer) == before,
        "a refused or failed edit changes no tile"
    );
    let added = client
        .post(server.url(&format!("/v1/layers/{layer}/edits")))
        .body(r#"{"upsert":{"type":"FeatureCollection","features":[{"type":"Feature","id":"new","properties":{},"geometry":{"type":"Point","coordinates":[2.35,48.85]}}]}}"#)
        .send()
        .await
        .unwrap();
    let added: Value = added.json().await.unwrap();
    let done = server.wait_job(added["job"]["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["version"], 4);
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in ["tilefarm_edits_total 2", "tilefarm_replacements_total 1"] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_after_a_cancelled_one_leaves_no_half_written_tile() {
    const ZOOMS: &str = "0-6";
    let dir = tempfile::tempdir().unwrap();
    let server = Embedded::start(dir.path(), dir.path().join("serve.log"));
    let (job, layer) = upload(&server, "ne_110m_countries.geojson", ZOOMS).await;
    assert_eq!(server.wait_job(&job).await["state"], "succeeded");
    // New data, cancelled halfway: some of its tiles are written.
    let client = reqwest::Client::new();
    let res = client
        .put(server.url(&format!("/v1/layers/{layer}/data")))
        .header("content-type", "application/geo+json")
        .body(std::fs::read(sample("wa_countries_50m.geojson")).unwrap())
        .send()
        .await
        .unwrap();
    let replaced: Value = res.json().await.unwrap();
    let replace_job = replaced["job"]["id"].as_str().unwrap().to_string();
    cancel_mid_job(&server, &replace_job).await;
    let out = tempfile::tempdir().unwrap();
    let published = reference_render("ne_110m_countries.geojson", ZOOMS, out.path());
    assert!(
        served_tiles(&server.url(""), &layer, ZOOMS).await != published,
        "the cancelled job wrote some tiles"
    );
    // A small edit of the published data sets every tile right.
    let res = client
        .post(server.url(&format!("/v1/layers/{layer}/edits")))
        .body(r#"{"upsert":{"type":"FeatureCollection","features":[{"type":"Feature","id":"pin","properties":{},"geometry":{"type":"Point","coordinates":[0,0]}}]}}"#)
        .send()
        .await
        .unwrap();
    let edit: Value = res.json().await.unwrap();
    let done = server.wait_job(edit["job"]["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let mut fc: Value =
        serde_json::from_slice(&std::fs::read(sample("ne_110m_countries.geojson")).unwrap())
            .unwrap();
    fc["features"].as_array_mut().unwrap().push(serde_json::json!({"type":"Feature","id":"pin","properties":{},"geometry":{"type":"Point","coordinates":[0,0]}}));
    let file = dir.path().join("edited.geojson");
    std::fs::write(&file, serde_json::to_vec(&fc).unwrap()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let reference = reference_render(file.to_str().unwrap(), ZOOMS, out.path());
    assert!(
        served_tiles(&server.url(""), &layer, ZOOMS).await == reference,
        "the same tiles as a fresh render of the published data and the edit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_invalidation_hook_is_retried_and_a_job_it_fails_is_set_right_by_the_next() {
    const ZOOMS: &str = "0-3";
    use std::sync::atomic::Ordering::SeqCst;
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start().await;
    let server = Embedded::start_with(
        dir.path(),
        dir.path().join("serve.log"),
        &[
            "--invalidate-webhook",
            &hook.url,
            "--retry-delays-ms",
            "100,100,100",
        ],
    );
    let mut features = features_with_ids("ne_110m_countries.geojson");
    let base = dir.path().join("base.geojson");
    write_collection(&base, &features);
    let (job, layer) = upload(&server, base.to_str().unwrap(), ZOOMS).await;
    assert_eq!(server.wait_job(&job).await["state"], "succeeded");
    let moved = |features: &[Value], i: usize, dx: f64| {
        let mut f = features[i].clone();
        shift(&mut f["geometry"]["coordinates"], dx, 0.0);
        f
    };
    let upsert =
        |f: &Value| serde_json::json!({"upsert": {"type": "FeatureCollection", "features": [f]}});

    // Two refusals, then the hook answers: the job succeeds, reported once.
    hook.refuse.store(2, SeqCst);
    let first = moved(&features, 10, 4.0);
    let accepted = post_edit(&server, &layer, &upsert(&first)).await;
    let job = accepted["job"]["id"].as_str().unwrap().to_string();
    let done = server.wait_job(&job).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(hook.refuse.load(SeqCst), 0, "both refusals were seen");
    assert!(!hook.changed(&job).is_empty());
    features[10] = first;

    // A hook that keeps failing fails the job after its retries, with the reason
    // in the job and the log...
    hook.refuse.store(usize::MAX, SeqCst);
    let lost = moved(&features, 20, -6.0);
    let accepted = post_edit(&server, &layer, &upsert(&lost)).await;
    let job = accepted["job"]["id"].as_str().unwrap().to_string();
    let failed = server.wait_job(&job).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("invalidation webhook"), "{message}");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(&job) && l.contains("webhook")),
        "the failure is logged with the job id"
    );
    // ...and the next change builds on the published version and sets right
    // the tiles the failed job wrote.
    hook.refuse.store(0, SeqCst);
    let last = moved(&features, 30, 5.0);
    let accepted = post_edit(&server, &layer, &upsert(&last)).await;
    let done = server
        .wait_job(accepted["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    features[30] = last;
    let final_data = dir.path().join("final.geojson");
    write_collection(&final_data, &features);
    let out = tempfile::tempdir().unwrap();
    let reference = reference_render(final_data.to_str().unwrap(), ZOOMS, out.path());
    assert!(
        served_tiles(&server.url(""), &layer, ZOOMS).await == reference,
        "the same tiles as a fresh render of the published data and the last edit"
    );
}
