//! Backup and restore, done the way docs/operations.md ("Backup and restore")
//! tells an operator to: pause the workers, `pg_dump` the job store, copy the
//! bucket with `rclone sync`, resume; then restore into an empty database and
//! an empty bucket on a fresh S3 server, requeue the work that was under way
//! (`scripts/restore-requeue.sql`) and start a new farm on them. The restored
//! farm must serve the very bytes the original served, finish the jobs that
//! were under way as the original does, and take new edits.
//!
//! pg_dump, pg_restore and psql (Debian's postgresql-client) and rclone
//! (Debian's rclone) come from scripts/setup; a missing one fails the test.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::{BUCKET, Farm, PREFIX, features_with_ids, reference_render, shift};
use tilefarm_testkit::{S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};

const COUNTRIES: &str = "ne_110m_countries.geojson";
const CITIES: &str = "ne_cities.geojson";
const WORLD: &str = "wa_countries_50m.geojson";
const ZOOMS: &str = "0-5";
const WORLD_ZOOMS: &str = "0-6";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_farm_restored_from_its_backup_serves_the_same_tiles_and_goes_on_working() {
    let work = tempfile::tempdir().unwrap();
    let rclone_conf = work.path().join("rclone.conf");
    std::fs::write(&rclone_conf, "").unwrap();

    // The farm to back up: an API and a worker, two layers rendered.
    let mut old = Farm::new().await;
    old.serve(&["--api-only"]);
    let worker = old.worker("worker", 2);
    let mut countries = features_with_ids(COUNTRIES);
    let countries_layer = old.upload_ready("countries", ZOOMS, &countries).await;
    let mut cities = features_with_ids(CITIES);
    let cities_layer = old.upload_ready("cities", ZOOMS, &cities).await;

    // The procedure's optional first pass of the bucket copy, with the farm
    // running; the last pass brings it up to date, with the tiles the edit
    // below rewrites in place or deletes.
    let backup = S3Server::start(&["backups"]);
    let old_remote = rclone_remote("old", &old.s3);
    let backup_remote = rclone_remote("backup", &backup);
    rclone_sync(
        &rclone_conf,
        &[&old_remote, &backup_remote],
        &format!("old:{BUCKET}/{PREFIX}/"),
        "backup:backups/farm/",
    );

    // An edit after that pass: it moves a country, adds a point and deletes
    // a country, rewriting tiles in place and deleting others.
    let mut moved = countries[43].clone();
    shift(&mut moved["geometry"]["coordinates"], 2.0, 1.0);
    let point = json!({"type": "Feature", "id": 5000, "properties": {},
        "geometry": {"type": "Point", "coordinates": [-30.0, 20.0]}});
    let first_edit = edit(
        &old,
        &countries_layer,
        &[moved.clone(), point.clone()],
        &[10],
    )
    .await;
    let (done, _) = old.wait_job(&first_edit, Duration::from_secs(120)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    countries[43] = moved;
    countries.remove(10);
    countries.push(point);

    // A bigger layer under way. Backup, step 1: pause the workers. SIGTERM:
    // each finishes the tasks in hand, then exits.
    let (world_job, world_layer) = old.upload_sample(WORLD, "world", WORLD_ZOOMS).await;
    old.wait_for_progress(&world_job).await;
    sigterm(&old, worker);
    let status = old.wait_exit(worker, Duration::from_secs(120)).await;
    assert!(status.success(), "the worker stopped cleanly: {status}");
    let world_at_backup = old.job(&world_job).await;
    assert_eq!(
        world_at_backup["state"], "running",
        "the world layer's job must still be under way when the workers stop; give it more work: {world_at_backup}"
    );
    // The API stays up: it still serves tiles, and takes an edit, which waits.
    let mut moved_again = countries[100].clone();
    shift(&mut moved_again["geometry"]["coordinates"], -3.0, 0.0);
    let queued_edit = edit(&old, &countries_layer, &[moved_again], &[]).await;
    wait_until_relayed(&old).await;
    let queued = old.job(&queued_edit).await;
    assert_eq!(queued["state"], "queued", "{queued}");

    // What the farm serves and says at the backup.
    let jobs = [first_edit, world_job.clone(), queued_edit.clone()];
    let layers = [
        countries_layer.clone(),
        cities_layer.clone(),
        world_layer.clone(),
    ];
    let jobs_at_backup = statuses(&old, &jobs).await;
    let layers_at_backup = layer_infos(&old, &layers).await;
    let countries_at_backup = sweep(&old.base, &countries_layer, ZOOMS).await;
    let cities_at_backup = sweep(&old.base, &cities_layer, ZOOMS).await;
    let (world_tile_status, _) = old
        .get_json(&format!("/tiles/{world_layer}/0/0/0.png"))
        .await;
    assert_eq!(world_tile_status, 404, "not published yet");

    // Step 2: dump the database. Step 3: copy the bucket.
    let dump = work.path().join("farm.dump");
    let old_db = old.db.as_ref().unwrap().url.clone();
    tool(
        "pg_dump",
        &[
            "--format=custom",
            "--file",
            dump.to_str().unwrap(),
            "--dbname",
            &old_db,
        ],
    );
    rclone_sync(
        &rclone_conf,
        &[&old_remote, &backup_remote],
        &format!("old:{BUCKET}/{PREFIX}/"),
        "backup:backups/farm/",
    );
    let bucket_at_backup = tilefarm_testkit::tree(&old.s3.bucket_dir(BUCKET));
    for part in [
        "/features.geojsons",
        "/summary.json",
        "/regions.bin",
        "/plan.json",
    ] {
        assert!(
            bucket_at_backup.keys().any(|k| k.ends_with(part)),
            "the bucket holds the layers' {part}"
        );
    }
    assert!(
        bucket_at_backup
            .keys()
            .any(|k| k.starts_with(&format!("{PREFIX}/uploads/"))),
        "the bucket holds the uploads"
    );
    // Step 4: resume the workers. The original farm goes on.
    old.worker("worker-resumed", 2);

    // Restore, into an empty database, an empty bucket on another S3 server
    // and a virtual host of its own.
    let mut new = Farm::new().await;
    let new_db = new.db.as_ref().unwrap().url.clone();
    tool(
        "pg_restore",
        &[
            "--exit-on-error",
            "--no-owner",
            "--dbname",
            &new_db,
            dump.to_str().unwrap(),
        ],
    );
    let migrated = new.run(&["migrate"]);
    assert!(
        migrated.status.success(),
        "tilefarm migrate on the restored database: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let new_remote = rclone_remote("new", &new.s3);
    rclone_sync(
        &rclone_conf,
        &[&backup_remote, &new_remote],
        "backup:backups/farm/",
        &format!("new:{BUCKET}/{PREFIX}/"),
    );
    let requeue = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/restore-requeue.sql");
    let requeued = tool(
        "psql",
        &[
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &new_db,
            "-f",
            requeue.to_str().unwrap(),
        ],
    );
    let requeued: u64 = requeued.trim().parse().expect("a count of tasks");
    // At least the world job's renders still to do and the waiting edit's ingest.
    assert!(requeued >= 2, "tasks requeued: {requeued}");

    // Every object came back, byte for byte, with its content type and
    // Cache-Control (which a CDN in front of the bucket itself would serve).
    let bucket_restored = tilefarm_testkit::tree(&new.s3.bucket_dir(BUCKET));
    assert_same(&bucket_restored, &bucket_at_backup, "objects restored");
    check_tile_headers(&new.s3, &bucket_restored, &countries_layer).await;

    // (a) The restored farm, before any worker runs: the same layers, jobs
    // and tiles as the original at its backup.
    new.serve(&["--api-only"]);
    assert_eq!(layer_infos(&new, &layers).await, layers_at_backup);
    assert_eq!(statuses(&new, &jobs).await, jobs_at_backup);
    assert_same_tiles(
        &sweep(&new.base, &countries_layer, ZOOMS).await,
        &countries_at_backup,
        "countries, restored",
    );
    assert_same_tiles(
        &sweep(&new.base, &cities_layer, ZOOMS).await,
        &cities_at_backup,
        "cities, restored",
    );
    let (status, _) = new
        .get_json(&format!("/tiles/{world_layer}/0/0/0.png"))
        .await;
    assert_eq!(status, world_tile_status);

    // The jobs under way at the backup finish on the restored farm, as they
    // do on the original: the same tiles on both.
    new.worker("worker", 2);
    for job in [&world_job, &queued_edit] {
        for farm in [&old, &new] {
            let (done, _) = farm.wait_job(job, Duration::from_secs(300)).await;
            assert_eq!(done["state"], "succeeded", "{}: {done}", farm.base);
            assert_eq!(done["progress"]["done"], done["progress"]["total"]);
        }
    }
    let countries_now = sweep(&new.base, &countries_layer, ZOOMS).await;
    assert_same_tiles(
        &countries_now,
        &sweep(&old.base, &countries_layer, ZOOMS).await,
        "countries after the waiting edit, restored and original",
    );
    assert!(
        countries_now != countries_at_backup,
        "the waiting edit changed tiles"
    );
    assert_same_tiles(
        &sweep(&new.base, &world_layer, WORLD_ZOOMS).await,
        &sweep(&old.base, &world_layer, WORLD_ZOOMS).await,
        "world, finished on the restored farm and on the original",
    );

    // (b) The restored farm takes a new edit, and its tiles become a fresh
    // render's of the edited data.
    let mut moved_city = cities[17].clone();
    shift(&mut moved_city["geometry"]["coordinates"], 4.0, -2.0);
    let new_city = json!({"type": "Feature", "id": 9000, "properties": {"name": "Nowhere"},
        "geometry": {"type": "Point", "coordinates": [-140.0, -40.0]}});
    let city_edit = edit(
        &new,
        &cities_layer,
        &[moved_city.clone(), new_city.clone()],
        &[3],
    )
    .await;
    let (done, _) = new.wait_job(&city_edit, Duration::from_secs(120)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    cities[17] = moved_city;
    cities.remove(3);
    cities.push(new_city);
    let edited = work.path().join("cities-edited.geojson");
    std::fs::write(
        &edited,
        serde_json::to_vec(&json!({"type": "FeatureCollection", "features": cities})).unwrap(),
    )
    .unwrap();
    let reference = reference_render(
        edited.to_str().unwrap(),
        ZOOMS,
        &work.path().join("reference"),
    );
    let cities_now = sweep(&new.base, &cities_layer, ZOOMS).await;
    let changed = cities_now
        .iter()
        .filter(|(k, v)| cities_at_backup.get(*k) != Some(*v))
        .count();
    assert!(changed > 0, "the edit changed tiles");
    let transparent = transparent_png();
    let drawn: BTreeMap<String, Vec<u8>> = cities_now
        .into_iter()
        .filter(|(_, v)| *v != transparent)
        .collect();
    assert_same_tiles(
        &drawn,
        &reference,
        "cities after an edit on the restored farm",
    );

    // Both farms at once: removing a virtual host takes RabbitMQ seconds.
    let stopped = [tokio::spawn(old.stop()), tokio::spawn(new.stop())];
    for farm in stopped {
        farm.await.unwrap();
    }
}

/// Sends an edit of `layer` (upserts and deletes by id); its job's id.
async fn edit(farm: &Farm, layer: &str, upsert: &[Value], delete: &[i64]) -> String {
    let res = farm
        .http
        .post(format!("{}/v1/layers/{layer}/edits", farm.base))
        .json(&json!({
            "upsert": {"type": "FeatureCollection", "features": upsert},
            "delete": delete,
        }))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    body["job"]["id"].as_str().unwrap().to_string()
}

/// Waits until the API's outbox relay has handed every task message to the
/// broker (`tilefarm_outbox_backlog` is 0): the dump then records them as
/// published, though no worker has taken them.
async fn wait_until_relayed(farm: &Farm) {
    let started = std::time::Instant::now();
    loop {
        let scrape = farm.get_text("/metrics").await;
        if scrape
            .lines()
            .any(|l| l.trim() == "tilefarm_outbox_backlog 0")
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the outbox was not relayed: {scrape}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The status of each job, without its ETA (which depends on the clock).
async fn statuses(farm: &Farm, jobs: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for id in jobs {
        let mut job = farm.job(id).await;
        job.as_object_mut().unwrap().remove("eta_seconds");
        out.push(job);
    }
    out
}

async fn layer_infos(farm: &Farm, layers: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for id in layers {
        let (status, info) = farm.get_json(&format!("/v1/layers/{id}")).await;
        assert_eq!(status, 200, "{info}");
        out.push(info);
    }
    out
}

/// Every tile the tile origin at `base` answers for `layer` at `zooms`
/// (`MIN-MAX`), transparent ones included: `z/x/y.png` -> bytes. Fetched over
/// HTTP, 16 at a time; each must be a 200.
async fn sweep(base: &str, layer: &str, zooms: &str) -> BTreeMap<String, Vec<u8>> {
    let (lo, hi) = zooms.split_once('-').unwrap();
    let (lo, hi): (u8, u8) = (lo.parse().unwrap(), hi.parse().unwrap());
    let http = reqwest::Client::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    let mut fetches = tokio::task::JoinSet::new();
    for z in lo..=hi {
        for x in 0..1u32 << z {
            for y in 0..1u32 << z {
                let key = format!("{z}/{x}/{y}.png");
                let url = format!("{base}/tiles/{layer}/{key}");
                let (http, limit) = (http.clone(), limit.clone());
                fetches.spawn(async move {
                    let _permit = limit.acquire_owned().await.unwrap();
                    let res = http.get(&url).send().await.unwrap();
                    let status = res.status().as_u16();
                    let bytes = res.bytes().await.unwrap().to_vec();
                    assert_eq!(status, 200, "{url}: {}", String::from_utf8_lossy(&bytes));
                    (key, bytes)
                });
            }
        }
    }
    let mut tiles = BTreeMap::new();
    while let Some(fetched) = fetches.join_next().await {
        let (key, bytes) = fetched.unwrap();
        tiles.insert(key, bytes);
    }
    tiles
}

fn transparent_png() -> Vec<u8> {
    tilefarm_renderer::encode_png(
        &tilefarm_renderer::TileImage::Uniform(tilefarm_renderer::Rgba([0, 0, 0, 0])),
        256,
    )
    .unwrap()
}

/// Checks two sets of objects (or tiles) by name are the same with the same
/// bytes, naming the first few that are missing, extra or different.
fn assert_same(got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>, what: &str) {
    let first = |keys: Vec<&String>| {
        let shown: Vec<&String> = keys.iter().take(5).copied().collect();
        format!("{} {shown:?}", keys.len())
    };
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<&String> = want
        .keys()
        .filter(|k| got.get(*k).is_some_and(|v| v != &want[*k]))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "{what}, of {}: missing {}, extra {}, with other bytes {}",
        want.len(),
        first(missing),
        first(extra),
        first(differ)
    );
}

/// [`assert_same`] for tiles, which must not be all transparent, so that the
/// comparison means something.
fn assert_same_tiles(
    got: &BTreeMap<String, Vec<u8>>,
    want: &BTreeMap<String, Vec<u8>>,
    what: &str,
) {
    assert_same(got, want, what);
    let transparent = transparent_png();
    assert!(
        want.values().filter(|v| **v != transparent).count() > 10,
        "{what}: too few drawn tiles to compare"
    );
}

/// The restored tiles of `layer` carry the content type and `Cache-Control`
/// the farm stored them with, as S3 returns them.
async fn check_tile_headers(s3: &S3Server, objects: &BTreeMap<String, Vec<u8>>, layer: &str) {
    use object_store::ObjectStoreExt;
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name(BUCKET)
        .with_access_key_id(S3_ACCESS_KEY)
        .with_secret_access_key(S3_SECRET_KEY)
        .build()
        .unwrap();
    let tiles: Vec<&String> = objects
        .keys()
        .filter(|k| k.starts_with(&format!("{PREFIX}/tiles/{layer}/")))
        .collect();
    assert!(!tiles.is_empty(), "stored tiles of {layer}");
    for key in tiles {
        let got = store
            .get(&object_store::path::Path::from(key.as_str()))
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let header = |a| got.attributes.get(&a).map(|v| v.as_ref().to_string());
        assert_eq!(
            header(object_store::Attribute::ContentType).as_deref(),
            Some("image/png"),
            "{key}"
        );
        assert_eq!(
            header(object_store::Attribute::CacheControl).as_deref(),
            Some(tilefarm_worker::DEFAULT_CACHE_CONTROL),
            "{key}"
        );
    }
}

/// Asks process `i` of a farm to stop, as a scale-down does.
fn sigterm(farm: &Farm, i: usize) {
    let pid = farm.procs[i].child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
}

/// Runs a command-line tool to its end; its standard output. A tool that is
/// missing or fails fails the test, saying so.
fn tool(program: &str, args: &[&str]) -> String {
    tilefarm_testkit::gis::run(program, args, Path::new("."))
}

/// An rclone remote `name` for an S3 server, as the environment variables
/// rclone reads its configuration from (`RCLONE_CONFIG_<NAME>_...`).
fn rclone_remote(name: &str, s3: &S3Server) -> Vec<(String, String)> {
    let var = |k: &str| format!("RCLONE_CONFIG_{}_{k}", name.to_uppercase());
    vec![
        (var("TYPE"), "s3".into()),
        (var("PROVIDER"), "Other".into()),
        (var("ENDPOINT"), s3.endpoint()),
        (var("REGION"), "us-east-1".into()),
        (var("ACCESS_KEY_ID"), S3_ACCESS_KEY.into()),
        (var("SECRET_ACCESS_KEY"), S3_SECRET_KEY.into()),
    ]
}

/// `rclone sync --checksum --metadata FROM TO`, as docs/operations.md gives it.
fn rclone_sync(config: &Path, remotes: &[&Vec<(String, String)>], from: &str, to: &str) {
    let out = Command::new("rclone")
        .args(["sync", "--checksum", "--metadata", "--transfers", "8"])
        .args([from, to])
        .arg("--config")
        .arg(config)
        .envs(remotes.iter().flat_map(|r| r.iter().cloned()))
        // A CA bundle set for other tools (this machine sets one) makes
        // rclone's S3 client refuse to start; the servers here are plain HTTP.
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .unwrap_or_else(|e| panic!("cannot run rclone ({e}): scripts/setup installs it"));
    assert!(
        out.status.success(),
        "rclone sync {from} {to} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
