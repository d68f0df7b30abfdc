//! `farm-bench`: what the farm costs over a bare render, and how fast job status
//! answers while a render runs.
//!
//! In one run, on the same data, zooms and S3 server:
//! 1. bare: the render core in this process (`tilefarm render --skip-empty`'s
//!    path), storing what the farm stores for a layer (the drawn tiles and one
//!    `regions.bin` for the one-colour regions) into a local folder and into
//!    `s3://bench/bare`;
//! 2. farm: `tilefarm serve` (API, relay and workers in one process, on
//!    RabbitMQ, PostgreSQL and S3), the same data uploaded over HTTP, timed from
//!    the upload to the job's `succeeded`; with the broker messages, task rows
//!    and objects it took per rendered tile;
//! 3. then a second upload, with `GET /v1/jobs/{id}` polled at `--rate`
//!    requests per second while it renders: latency p50, p99 and max;
//! 4. edits beside bulk work: a small layer (the 110m countries, each with an
//!    id, at `--edit-zooms`) gets a one-feature edit on an idle farm, then
//!    another while a bulk upload (`--bulk-zooms`, at least 20,000 tiles)
//!    renders. Printed: each edit's latency from the request to `succeeded`,
//!    beside the bulk job's length.
//!
//! The servers are the machine's PostgreSQL and RabbitMQ (a database and a
//! virtual host of the run's own) and an s3s-fs started for the run; see
//! bench/README.md.
#![forbid(unsafe_code)]

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use object_store::ObjectStoreExt;
use serde_json::Value;
use tilefarm_renderer::{Layer, Region, Regions, Style, TileId};
use tilefarm_testkit::{S3Server, TestDb, TestVhost, free_port, wait_for_port};
use tilefarm_worker::{
    DirSink, ObjectStoreSink, PyramidOptions, SinkResult, TileSink, parse_zoom_range,
    render_pyramid,
};

#[derive(Debug, Parser)]
#[command(about = "The farm end to end against a bare tilefarm render, and status latency")]
struct Args {
    /// GeoJSON file (default: ../shared/data/wa_countries_50m.geojson).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value = "0-7")]
    zooms: String,
    /// Tasks at once in the farm and render threads in the bare render.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Status requests per second during the latency run.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Zooms of the bulk job the edit runs beside.
    #[arg(long, default_value = "0-9")]
    bulk_zooms: String,
    /// Zooms of the layer that is edited.
    #[arg(long, default_value = "0-7")]
    edit_zooms: String,
    /// Data of the layer that is edited (default: data/ne_110m_countries.geojson);
    /// each feature is given its index as id, and the edit moves France, or the
    /// middle feature where there is no France.
    #[arg(long)]
    edit_data: Option<PathBuf>,
    /// The tilefarm binary (default: the one beside this program).
    #[arg(long)]
    tilefarm: Option<PathBuf>,
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn default_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/wa_countries_50m.geojson")
}

fn main() -> Result<()> {
    let args = Args::parse();
    let data = args.data.clone().unwrap_or_else(default_data);
    let tilefarm = match &args.tilefarm {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory")?
            .join("tilefarm"),
    };
    if !tilefarm.exists() {
        bail!(
            "{} is missing: cargo build --release -p tilefarm -p tilefarm-bench",
            tilefarm.display()
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(args, data, tilefarm))
}

async fn run(args: Args, data: PathBuf, tilefarm: PathBuf) -> Result<()> {
    let bytes = std::fs::read(&data).with_context(|| format!("cannot read {}", data.display()))?;
    let s3 = S3Server::start(&["bench"]);
    let db = TestDb::empty().await;
    let vhost = TestVhost::new();
    eprintln!(
        "farm-bench: {} z{} on {} threads; S3 {}",
        data.display(),
        args.zooms,
        args.threads,
        s3.endpoint()
    );

    // 1. Bare renders: into a local folder (the render core alone), and into the
    // same S3 server as the farm.
    let (lo, hi) = parse_zoom_range(&args.zooms).map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("tiles");
    let started = Instant::now();
    let sink = AsTheFarm::new(DirSink::new(&root, false)?, {
        let root = root.clone();
        move |bytes: Vec<u8>| std::fs::write(root.join("regions.bin"), bytes).context("regions.bin")
    });
    let bare_tiles = bare_render(&data, lo..=hi, args.threads, Box::new(sink)).await?;
    let bare_dir = started.elapsed();
    eprintln!(
        "bare render to a folder: {:.2} s ({bare_tiles} tiles encoded)",
        bare_dir.as_secs_f64()
    );
    let bucket = Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(s3.endpoint())
            .with_allow_http(true)
            .with_bucket_name("bench")
            .with_access_key_id(tilefarm_testkit::S3_ACCESS_KEY)
            .with_secret_access_key(tilefarm_testkit::S3_SECRET_KEY)
            .with_region("us-east-1")
            .build()?,
    );
    let handle = tokio::runtime::Handle::current();
    let started = Instant::now();
    let prefix = object_store::path::Path::from("bare");
    let tiles = ObjectStoreSink::new(bucket.clone(), prefix.clone(), handle.clone())
        .with_http_headers(tilefarm_worker::DEFAULT_CACHE_CONTROL);
    let sink = AsTheFarm::new(tiles, move |bytes: Vec<u8>| {
        handle.block_on(bucket.put(&prefix.clone().join("regions.bin"), bytes.into()))?;
        Ok(())
    });
    bare_render(&data, lo..=hi, args.threads, Box::new(sink)).await?;
    let bare = started.elapsed();
    eprintln!("bare render to S3: {:.2} s", bare.as_secs_f64());

    // 2. The farm, end to end.
    let port = free_port();
    let log = tempfile::NamedTempFile::new()?;
    let _serve = Killed(
        Command::new(&tilefarm)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--concurrency", &args.threads.to_string()])
            .args(["--amqp", &vhost.url, "--database", &db.url])
            .args(["--store", "s3://bench/farm"])
            .envs(s3.env())
            .env("RUST_LOG", "warn")
            .stderr(log.reopen()?)
            .spawn()?,
    );
    wait_for_port(port, "tilefarm serve", Duration::from_secs(30));
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let job = upload(&http, &base, &bytes, &args.zooms).await?;
    let (status, _) = wait(&http, &base, &job, None).await?;
    let farm = started.elapsed();
    let tiles = status["progress"]["total"].as_i64().unwrap_or(0);
    eprintln!("farm: {:.2} s ({tiles} tiles)", farm.as_secs_f64());
    let coordination = coordination(&db.url, &s3.bucket_dir("bench").join("farm")).await?;

    // 3. Status latency under load during another render.
    let job = upload(&http, &base, &bytes, &args.zooms).await?;
    let (_, latencies) = wait(&http, &base, &job, Some(args.rate)).await?;
    let mut ms: Vec<f64> = latencies.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];

    println!();
    println!(
        "| {} z{} | seconds | tiles/s |",
        file_name(&data),
        args.zooms
    );
    println!("|---|---|---|");
    let rate = |d: Duration| tiles as f64 / d.as_secs_f64();
    println!(
        "| bare render (drawn tiles and regions.bin), to a folder | {:.2} | {:.0} |",
        bare_dir.as_secs_f64(),
        rate(bare_dir)
    );
    println!(
        "| bare render (drawn tiles and regions.bin), to S3 | {:.2} | {:.0} |",
        bare.as_secs_f64(),
        rate(bare)
    );
    println!(
        "| farm: upload to succeeded | {:.2} | {:.0} |",
        farm.as_secs_f64(),
        rate(farm)
    );
    println!();
    println!(
        "farm / bare to S3: {:.2}x (goal: at most 1.3x); farm / bare to a folder: {:.2}x",
        farm.as_secs_f64() / bare.as_secs_f64(),
        farm.as_secs_f64() / bare_dir.as_secs_f64()
    );
    let per = |n: u64| tiles as f64 / n.max(1) as f64;
    println!(
        "farm coordination for {tiles} rendered tiles: {} broker messages (one per {:.0} tiles), \
         {} task rows (one per {:.0}; goal: one per 64 or more), {} objects stored (one per \
         {:.2}; the drawn tiles that are not transparent, plus the data, plan and regions)",
        coordination.messages,
        per(coordination.messages),
        coordination.tasks,
        per(coordination.tasks),
        coordination.objects,
        per(coordination.objects)
    );
    if ms.is_empty() {
        bail!("no status requests were answered");
    }
    println!(
        "job status while rendering, {} requests at {}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms.len(),
        args.rate,
        pct(0.5),
        pct(0.99),
        ms[ms.len() - 1]
    );

    // 4. A one-feature edit, idle and beside a bulk job.
    let edits = edit_beside_bulk(&http, &base, &bytes, &args).await?;
    println!(
        "one-feature edit ({} dirty tiles), request to succeeded: idle farm {:.2} s; \
         beside a bulk job of {} tiles: {:.2} s (the bulk job was {:.0}% done when the edit \
         was sent, {:.0}% when it finished); the bulk job took {:.2} s",
        edits.dirty_tiles,
        edits.idle.as_secs_f64(),
        edits.bulk_tiles,
        edits.busy.as_secs_f64(),
        edits.bulk_done_at_send * 100.0,
        edits.bulk_done_at_finish * 100.0,
        edits.bulk.as_secs_f64()
    );
    db.drop().await;
    Ok(())
}

/// Stores the drawn tiles in `inner` and the regions as one `regions.bin`
/// (given to `write_regions` at the end), as the farm stores a layer.
struct AsTheFarm<S, W> {
    inner: S,
    regions: Mutex<Vec<Region>>,
    write_regions: W,
}

impl<S, W> AsTheFarm<S, W> {
    fn new(inner: S, write_regions: W) -> Self {
        AsTheFarm {
            inner,
            regions: Mutex::default(),
            write_regions,
        }
    }
}

impl<S: TileSink, W: Fn(Vec<u8>) -> Result<()> + Sync> TileSink for AsTheFarm<S, W> {
    fn put(&self, tile: TileId, png: &[u8]) -> SinkResult<()> {
        self.inner.put(tile, png)
    }

    fn put_region(
        &self,
        region: Region,
        zooms: RangeInclusive<u8>,
        _png: &[u8],
    ) -> SinkResult<u64> {
        self.regions.lock().expect("lock").push(region);
        Ok(region.tiles_within(zooms))
    }

    fn finish(&self) -> SinkResult<()> {
        self.inner.finish()?;
        let regions = Regions::new(std::mem::take(&mut *self.regions.lock().expect("lock")));
        (self.write_regions)(regions.to_bytes()).map_err(|e| tilefarm_worker::SinkError::Archive {
            path: "regions.bin".into(),
            message: format!("{e:#}"),
        })
    }
}

/// Reads `data` and renders `zooms` with `--skip-empty` on `threads` threads
/// into `sink`, as `tilefarm render` does: the tiles encoded (drawn and of
/// more than one colour).
async fn bare_render(
    data: &Path,
    zooms: RangeInclusive<u8>,
    threads: usize,
    sink: Box<dyn TileSink + Send>,
) -> Result<u64> {
    let data = data.to_path_buf();
    tokio::task::spawn_blocking(move || -> Result<u64> {
        let features = tilefarm_formats::read_path(&data, &Default::default())?
            .report
            .features;
        let layer = Layer::new(&features, &Style::default());
        drop(features);
        let options = PyramidOptions {
            zooms,
            skip_empty: true,
            ..PyramidOptions::default()
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let summary = pool.install(|| render_pyramid(&layer, &options, sink.as_ref(), &|_| {}))?;
        Ok(summary.encoded)
    })
    .await?
}

/// What the farm's first job took to coordinate.
struct Coordination {
    /// Messages published (outbox rows, each relayed once).
    messages: u64,
    /// Rows in the tasks table.
    tasks: u64,
    /// Objects under the farm's prefix.
    objects: u64,
}

async fn coordination(database: &str, farm_dir: &Path) -> Result<Coordination> {
    let pool = sqlx::PgPool::connect(database).await?;
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool).await?;
            anyhow::Ok(n as u64)
        }
    };
    let messages = count("SELECT count(*) FROM outbox").await?;
    let tasks = count("SELECT count(*) FROM tasks").await?;
    pool.close().await;
    let objects = walk(farm_dir)?;
    Ok(Coordination {
        messages,
        tasks,
        objects,
    })
}

/// The files below `dir`.
fn walk(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        n += if entry.file_type()?.is_dir() {
            walk(&entry.path())?
        } else {
            1
        };
    }
    Ok(n)
}

struct EditFigures {
    idle: Duration,
    busy: Duration,
    dirty_tiles: i64,
    bulk: Duration,
    bulk_tiles: i64,
    bulk_done_at_send: f64,
    bulk_done_at_finish: f64,
}

async fn edit_beside_bulk(
    http: &reqwest::Client,
    base: &str,
    bulk_data: &[u8],
    args: &Args,
) -> Result<EditFigures> {
    let small = args.edit_data.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/ne_110m_countries.geojson")
    });
    let mut fc: Value = serde_json::from_slice(
        &std::fs::read(&small).with_context(|| format!("cannot read {}", small.display()))?,
    )?;
    let features = fc["features"]
        .as_array_mut()
        .context("a FeatureCollection")?;
    for (i, f) in features.iter_mut().enumerate() {
        f["id"] = serde_json::json!(i);
    }
    let france = features
        .iter()
        .find(|f| f["properties"]["name"] == "France")
        .or(features.get(features.len() / 2))
        .context("no feature to edit")?
        .clone();
    let job = upload(http, base, &serde_json::to_vec(&fc)?, &args.edit_zooms).await?;
    let (status, _) = wait(http, base, &job, None).await?;
    let layer = status["layer_id"]
        .as_str()
        .context("a layer id")?
        .to_string();
    eprintln!(
        "edit: layer of {} features ready",
        fc["features"].as_array().map_or(0, Vec::len)
    );
    // Each edit moves the feature a little further east.
    let edit = |step: f64| {
        let mut f = france.clone();
        shift(&mut f["geometry"]["coordinates"], step);
        serde_json::json!({"upsert": {"type": "FeatureCollection", "features": [f]}})
    };
    let layer = &layer;
    let timed_edit = |body: Value| async move {
        let started = Instant::now();
        let res = http
            .post(format!("{base}/v1/layers/{layer}/edits"))
            .json(&body)
            .send()
            .await?;
        if res.status().as_u16() != 202 {
            bail!("edit refused: {}", res.text().await?);
        }
        let json: Value = res.json().await?;
        let job = json["job"]["id"].as_str().context("a job id")?.to_string();
        let (status, _) = wait(http, base, &job, None).await?;
        Ok::<_, anyhow::Error>((started.elapsed(), status))
    };
    let (idle, status) = timed_edit(edit(0.5)).await?;
    let dirty_tiles = status["progress"]["total"].as_i64().unwrap_or(0);
    eprintln!("edit on an idle farm: {:.2} s", idle.as_secs_f64());

    let bulk_started = Instant::now();
    let bulk_job = upload(http, base, bulk_data, &args.bulk_zooms).await?;
    let bulk_url = format!("{base}/v1/jobs/{bulk_job}");
    let progress = |s: &Value| {
        let done = s["progress"]["done"].as_f64().unwrap_or(0.0);
        let total = s["progress"]["total"].as_f64().unwrap_or(0.0);
        (done, total)
    };
    // Send the edit once the bulk job is well under way.
    let (mut done, mut total);
    loop {
        let s: Value = http.get(&bulk_url).send().await?.json().await?;
        (done, total) = progress(&s);
        if total > 0.0 && done / total >= 0.1 {
            break;
        }
        if s["state"] != "running" && s["state"] != "queued" {
            bail!("the bulk job ended before the edit: {s}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at_send = done / total;
    let (busy, _) = timed_edit(edit(1.0)).await?;
    let s: Value = http.get(&bulk_url).send().await?.json().await?;
    let at_finish = progress(&s).0 / total;
    eprintln!(
        "edit beside the bulk job: {:.2} s ({:.0}% to {:.0}% of the bulk job)",
        busy.as_secs_f64(),
        at_send * 100.0,
        at_finish * 100.0
    );
    let (status, _) = wait(http, base, &bulk_job, None).await?;
    let bulk = bulk_started.elapsed();
    let bulk_tiles = status["progress"]["total"].as_i64().unwrap_or(0);
    if bulk_tiles < 20_000 {
        eprintln!("note: the bulk job has only {bulk_tiles} tiles; raise --bulk-zooms");
    }
    Ok(EditFigures {
        idle,
        busy,
        dirty_tiles,
        bulk,
        bulk_tiles,
        bulk_done_at_send: at_send,
        bulk_done_at_finish: at_finish,
    })
}

/// Moves every position of a GeoJSON geometry `dx` degrees east.
fn shift(v: &mut Value, dx: f64) {
    if let Some(a) = v.as_array_mut() {
        if a.len() >= 2 && a.iter().all(Value::is_number) {
            a[0] = serde_json::json!(a[0].as_f64().unwrap_or(0.0) + dx);
        } else {
            a.iter_mut().for_each(|c| shift(c, dx));
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn upload(http: &reqwest::Client, base: &str, body: &[u8], zooms: &str) -> Result<String> {
    let res = http
        .post(format!("{base}/v1/layers?name=bench&zooms={zooms}"))
        .header("content-type", "application/geo+json")
        .body(body.to_vec())
        .send()
        .await?;
    if res.status().as_u16() != 202 {
        bail!("upload refused: {}", res.text().await?);
    }
    let json: Value = res.json().await?;
    Ok(json["job"]["id"].as_str().context("a job id")?.to_string())
}

/// Waits for a job to end. With `rate`, polls its status that many times per
/// second (each request on its own task) and returns every latency.
async fn wait(
    http: &reqwest::Client,
    base: &str,
    job: &str,
    rate: Option<u32>,
) -> Result<(Value, Vec<Duration>)> {
    let url = format!("{base}/v1/jobs/{job}");
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.unwrap_or(20)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut last_check = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        tick.tick().await;
        if rate.is_some() {
            let (http, url, latencies) = (http.clone(), url.clone(), latencies.clone());
            in_flight.spawn(async move {
                let t = Instant::now();
                if let Ok(res) = http.get(&url).send().await
                    && res.status().is_success()
                    && res.bytes().await.is_ok()
                {
                    latencies.lock().expect("lock").push(t.elapsed());
                }
            });
            while in_flight.try_join_next().is_some() {}
        }
        if rate.is_none() || last_check.elapsed() >= Duration::from_millis(50) {
            last_check = Instant::now();
            let status: Value = http.get(&url).send().await?.json().await?;
            match status["state"].as_str() {
                Some("queued" | "running") => {}
                Some("succeeded") => {
                    while in_flight.join_next().await.is_some() {}
                    let l = latencies.lock().expect("lock").clone();
                    return Ok((status, l));
                }
                _ => bail!("the job did not succeed: {status}"),
            }
        }
    }
}
