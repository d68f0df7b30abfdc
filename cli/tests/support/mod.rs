//! A farm of real processes for the tests: `tilefarm serve` and `tilefarm
//! worker` on a database, a RabbitMQ virtual host and an S3 server of the
//! test's own. Each process logs to a file; the logs are printed when a test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tilefarm_testkit::{S3Server, TestDb, TestVhost, free_port, wait_for_port};

pub const BUCKET: &str = "farm";
pub const PREFIX: &str = "t";

pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name)
}

/// The features of a sample FeatureCollection, each given its index as `id`.
pub fn features_with_ids(file: &str) -> Vec<Value> {
    let fc: Value = serde_json::from_slice(&std::fs::read(sample(file)).unwrap()).unwrap();
    let mut features = fc["features"].as_array().unwrap().clone();
    for (i, f) in features.iter_mut().enumerate() {
        f["id"] = serde_json::json!(i);
    }
    features
}

/// `features` as a GeoJSON FeatureCollection.
pub fn collection(features: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"type": "FeatureCollection", "features": features}))
        .unwrap()
}

/// Moves every position of a GeoJSON geometry's coordinates by `dx`, `dy`
/// degrees (kept within the world and away from the poles).
pub fn shift(v: &mut Value, dx: f64, dy: f64) {
    if let Some(a) = v.as_array_mut() {
        if a.len() >= 2 && a.iter().all(Value::is_number) {
            let (x, y) = (a[0].as_f64().unwrap(), a[1].as_f64().unwrap());
            a[0] = serde_json::json!((x + dx).clamp(-180.0, 180.0));
            a[1] = serde_json::json!((y + dy).clamp(-80.0, 80.0));
        } else {
            a.iter_mut().for_each(|c| shift(c, dx, dy));
        }
    }
}

pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

pub struct Farm {
    pub db: Option<TestDb>,
    pub vhost: TestVhost,
    pub s3: S3Server,
    pub api_port: u16,
    pub procs: Vec<Proc>,
    pub logs: tempfile::TempDir,
    pub http: reqwest::Client,
    pub base: String,
    /// Extra settings for every process.
    pub extra_env: Vec<(String, String)>,
}

impl Farm {
    pub async fn new() -> Farm {
        let api_port = free_port();
        Farm {
            db: Some(TestDb::empty().await),
            vhost: TestVhost::new(),
            s3: S3Server::start(&[BUCKET]),
            api_port,
            procs: Vec::new(),
            logs: tempfile::tempdir().unwrap(),
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{api_port}"),
            extra_env: Vec::new(),
        }
    }

    /// Retries a failed task after 100, 200 and 300 ms, so that one that
    /// always fails is dead-lettered within a second or so.
    pub fn with_fast_retries(mut self) -> Farm {
        self.extra_env
            .push(("TILEFARM_RETRY_DELAYS_MS".into(), "100,200,300".into()));
        self
    }

    /// The farm's job store, migrated, for setting jobs up by hand.
    pub async fn store(&self) -> tilefarm_queue::JobStore {
        let store = tilefarm_queue::JobStore::connect_postgres(&self.db.as_ref().unwrap().url)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// A job of one render task whose prepared data is gone from the store, so
    /// that every attempt at it fails. Plan it before the farm starts, so that
    /// no worker takes its ingest task (whose upload does not exist) first.
    pub async fn plan_lost_job(&self) -> tilefarm_queue::Upload {
        let store = self.store().await;
        let layer = tilefarm_queue::NewLayer {
            name: "lost".into(),
            min_zoom: 0,
            max_zoom: 0,
            style: serde_json::json!({}),
        };
        let lost = store.create_upload(&layer, "t/uploads/gone").await.unwrap();
        store
            .record_prepared(lost.layer_id, 1, "t/layers/gone/features.geojsons", 1, None)
            .await
            .unwrap();
        let task = tilefarm_queue::RenderTask {
            z: 0,
            x: 0,
            y: 0,
            n: 1,
            tiles: 1,
            ..Default::default()
        };
        store
            .plan(lost.job_id, lost.ingest_task, &[task])
            .await
            .unwrap();
        lost
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("TILEFARM_AMQP_URL".into(), self.vhost.url.clone()),
            (
                "TILEFARM_DATABASE_URL".into(),
                self.db.as_ref().unwrap().url.clone(),
            ),
            ("TILEFARM_STORE".into(), format!("s3://{BUCKET}/{PREFIX}")),
            ("RUST_LOG".into(), "info,tilefarm_worker=debug".into()),
            ("NO_COLOR".into(), "1".into()),
        ];
        env.extend(self.s3.env().into_iter().map(|(k, v)| (k.to_string(), v)));
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// Starts `tilefarm ARGS...` as a process of the farm.
    pub fn spawn(&mut self, name: &str, args: &[&str]) -> usize {
        let log = self.logs.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tilefarm"))
            .args(args)
            .envs(self.env())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .expect("start tilefarm");
        self.procs.push(Proc {
            name: name.into(),
            child,
            log,
        });
        self.procs.len() - 1
    }

    /// Runs `tilefarm ARGS...` with the farm's settings to its end; its output.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_tilefarm"))
            .args(args)
            .envs(self.env())
            .stdin(Stdio::null())
            .output()
            .expect("run tilefarm")
    }

    /// Starts the API (with `args` added) and waits until it listens.
    pub fn serve(&mut self, args: &[&str]) -> usize {
        let listen = format!("127.0.0.1:{}", self.api_port);
        let mut all = vec!["serve", "--listen", &listen];
        all.extend_from_slice(args);
        let i = self.spawn("serve", &all);
        wait_for_port(self.api_port, "tilefarm serve", Duration::from_secs(60));
        i
    }

    pub fn worker(&mut self, name: &str, concurrency: usize) -> usize {
        let c = concurrency.to_string();
        self.spawn(name, &["worker", "--concurrency", &c])
    }

    /// Waits until process `i` exits by itself; its exit status.
    pub async fn wait_exit(&mut self, i: usize, within: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.procs[i].child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "{} did not exit within {within:?}",
                self.procs[i].name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.procs[i].log).unwrap_or_default()
    }

    /// Uploads `body` as a layer; returns the status and the answer.
    pub async fn upload(
        &self,
        query: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/layers?{query}", self.base))
            .body(body);
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        let res = req.send().await.expect("the API answers");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// Uploads a sample file as GeoJSON and returns (job id, layer id).
    pub async fn upload_sample(&self, file: &str, name: &str, zooms: &str) -> (String, String) {
        let body = std::fs::read(sample(file)).unwrap();
        let (status, json) = self
            .upload(
                &format!("name={name}&zooms={zooms}"),
                Some("application/geo+json"),
                body,
            )
            .await;
        assert_eq!(status, 202, "{json}");
        (
            json["job"]["id"].as_str().unwrap().to_string(),
            json["layer_id"].as_str().unwrap().to_string(),
        )
    }

    /// Uploads `features` as a layer, waits for its job to succeed and returns
    /// the layer's id.
    pub async fn upload_ready(&self, name: &str, zooms: &str, features: &[Value]) -> String {
        let (status, accepted) = self
            .upload(
                &format!("name={name}&zooms={zooms}"),
                Some("application/geo+json"),
                collection(features),
            )
            .await;
        assert_eq!(status, 202, "{accepted}");
        let job = accepted["job"]["id"].as_str().unwrap();
        let (done, _) = self.wait_job(job, Duration::from_secs(120)).await;
        assert_eq!(done["state"], "succeeded", "{done}");
        accepted["layer_id"].as_str().unwrap().to_string()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the API answers");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A page of the API as text (`/metrics`, say).
    pub async fn get_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the API answers")
            .text()
            .await
            .expect("a text body")
    }

    pub async fn job(&self, id: &str) -> Value {
        let (status, json) = self.get_json(&format!("/v1/jobs/{id}")).await;
        assert_eq!(status, 200, "{json}");
        json
    }

    /// Polls a job until it ends; returns its last status and every progress
    /// figure seen on the way.
    pub async fn wait_job(&self, id: &str, within: Duration) -> (Value, Vec<i64>) {
        let started = Instant::now();
        let mut seen = Vec::new();
        loop {
            let job = self.job(id).await;
            seen.push(job["progress"]["done"].as_i64().unwrap());
            if !matches!(job["state"].as_str(), Some("queued" | "running")) {
                return (job, seen);
            }
            assert!(
                started.elapsed() < within,
                "job {id} did not end within {within:?}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a job has made some progress, and checks it is not done.
    pub async fn wait_for_progress(&self, id: &str) {
        let started = Instant::now();
        loop {
            let job = self.job(id).await;
            let done = job["progress"]["done"].as_i64().unwrap();
            if done > 0 {
                assert!(
                    Some(done) < job["progress"]["total"].as_i64(),
                    "job {id} finished before the test could act; give it more work"
                );
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no progress: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The tiles of a layer in the bucket (`z/x/y.png` -> bytes).
    pub fn stored_tiles(&self, layer: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
        let root = self
            .s3
            .bucket_dir(BUCKET)
            .join(PREFIX)
            .join("tiles")
            .join(layer);
        tilefarm_testkit::tree(&root)
            .into_iter()
            .filter(|(k, _)| k.ends_with(".png"))
            .collect()
    }

    /// The tiles the origin serves for a layer's published version, read
    /// from the bucket as the origin reads it: each stored tile, and the
    /// tiles of the version's regions where none is stored (transparent ones
    /// left out). Cheaper than asking the origin for every tile.
    pub async fn served_from_bucket(
        &self,
        layer: &str,
        zooms: &str,
    ) -> std::collections::BTreeMap<String, Vec<u8>> {
        let (_, info) = self.get_json(&format!("/v1/layers/{layer}")).await;
        let version = info["published_version"].as_i64().expect("published");
        let (lo, hi) = zooms.split_once('-').unwrap_or((zooms, zooms));
        let (lo, hi): (u8, u8) = (lo.parse().unwrap(), hi.parse().unwrap());
        let mut tiles = self.stored_tiles(layer);
        let file = self
            .s3
            .bucket_dir(BUCKET)
            .join(PREFIX)
            .join(format!("layers/{layer}/v{version}/regions.bin"));
        let regions = match std::fs::read(&file) {
            Ok(bytes) => tilefarm_renderer::Regions::from_bytes(&bytes).unwrap(),
            Err(_) => tilefarm_renderer::Regions::default(),
        };
        for r in regions.iter() {
            let png =
                tilefarm_renderer::encode_png(&tilefarm_renderer::TileImage::Uniform(r.color), 256)
                    .unwrap();
            for z in lo..=hi {
                for t in r.tiles_at(z) {
                    tiles
                        .entry(format!("{}/{}/{}.png", t.z, t.x, t.y))
                        .or_insert_with(|| png.clone());
                }
            }
        }
        tiles
    }

    /// Checks that the tiles the farm serves for a layer are exactly those
    /// `tilefarm render` makes of the same sample.
    pub async fn assert_tiles_match_render(&self, layer: &str, file: &str, zooms: &str) {
        let out = tempfile::tempdir().unwrap();
        let reference = reference_render(file, zooms, out.path());
        let served = self.served_from_bucket(layer, zooms).await;
        assert_eq!(served.len(), reference.len(), "every tile is there");
        assert!(served == reference, "the same tiles as tilefarm render");
    }

    /// Stops every process and drops the database.
    pub async fn stop(mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if let Some(db) = self.db.take() {
            db.drop().await;
        }
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if std::thread::panicking() {
            for p in &self.procs {
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("--- {} (last lines) ---", p.name);
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// Every tile that the tile origin at `base` serves for `layer` at `zooms`
/// (`MIN-MAX`), other than the transparent tile: `z/x/y.png` -> bytes. This is
/// what a map sees, whether a tile is stored or answered from a region.
pub async fn served_tiles(
    base: &str,
    layer: &str,
    zooms: &str,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let (lo, hi) = zooms.split_once('-').unwrap_or((zooms, zooms));
    let (lo, hi): (u8, u8) = (lo.parse().unwrap(), hi.parse().unwrap());
    let transparent = tilefarm_renderer::encode_png(
        &tilefarm_renderer::TileImage::Uniform(tilefarm_renderer::Rgba([0, 0, 0, 0])),
        256,
    )
    .unwrap();
    let http = reqwest::Client::new();
    let mut out = std::collections::BTreeMap::new();
    for z in lo..=hi {
        for x in 0..1u32 << z {
            for y in 0..1u32 << z {
                let key = format!("{z}/{x}/{y}.png");
                let res = http
                    .get(format!("{base}/tiles/{layer}/{key}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status().as_u16(), 200, "{key}");
                let png = res.bytes().await.unwrap().to_vec();
                if png != transparent {
                    out.insert(key, png);
                }
            }
        }
    }
    out
}

/// `tilefarm render` of a sample into a directory, as the farm's reference.
pub fn reference_render(
    file: &str,
    zooms: &str,
    out: &Path,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let o = Command::new(env!("CARGO_BIN_EXE_tilefarm"))
        .arg("render")
        .arg(sample(file))
        .args(["--zooms", zooms, "--skip-empty", "--metatile", "8", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    tilefarm_testkit::tree(out)
        .into_iter()
        .filter(|(k, _)| k.ends_with(".png") && !k.starts_with(".uniform"))
        .collect()
}

/// `tilefarm serve` in the embedded mode, on a folder of the test's.
pub struct Embedded {
    pub child: Child,
    pub port: u16,
    pub log: std::path::PathBuf,
}

impl Embedded {
    pub fn start(data_dir: &std::path::Path, log: std::path::PathBuf) -> Embedded {
        Embedded::start_with(data_dir, log, &[])
    }

    pub fn start_with(
        data_dir: &std::path::Path,
        log: std::path::PathBuf,
        args: &[&str],
    ) -> Embedded {
        Embedded::start_on(free_port(), data_dir, log, args)
    }

    /// On `port`: a server stopped and started again on the same port and
    /// folder is where its clients left it.
    pub fn start_on(
        port: u16,
        data_dir: &std::path::Path,
        log: std::path::PathBuf,
        args: &[&str],
    ) -> Embedded {
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tilefarm"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--concurrency", "2", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("TILEFARM_AMQP_URL")
            .env_remove("TILEFARM_DATABASE_URL")
            .env_remove("TILEFARM_STORE")
            .env_remove("TILEFARM_TOKEN")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, "tilefarm serve", Duration::from_secs(60));
        Embedded { child, port, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn job(&self, id: &str) -> Value {
        self.get_json(&format!("/v1/jobs/{id}"), None).await
    }

    /// `GET path` (with the bearer token, if given) as JSON.
    pub async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        let mut req = reqwest::Client::new().get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// Sends a change (an upload, an edit, new data), expects it accepted
    /// (202) and waits for its job to end; the job's last status.
    pub async fn change(&self, request: reqwest::RequestBuilder) -> Value {
        let res = request.send().await.unwrap();
        let status = res.status().as_u16();
        let accepted: Value = res.json().await.unwrap();
        assert_eq!(status, 202, "{accepted}");
        self.wait_job(accepted["job"]["id"].as_str().unwrap()).await
    }

    /// Waits until job `id` has ended (within 300 s); its last status.
    pub async fn wait_job(&self, id: &str) -> Value {
        let started = Instant::now();
        loop {
            let j = self.job(id).await;
            if !matches!(j["state"].as_str(), Some("queued" | "running")) {
                return j;
            }
            assert!(started.elapsed() < Duration::from_secs(300), "{j}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}
