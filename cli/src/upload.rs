//! `tilefarm upload` and `tilefarm edit`: send a GeoJSON file (a new layer, or
//! new data for one) or an edit to a tilefarm server and follow its job to the
//! end with a progress bar.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;
use tilefarm_queue::JobState;

use crate::progress::Progress;

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// GeoJSON or GeoJSONSeq, a zipped Shapefile, GeoPackage, FlatGeobuf, CSV or
    /// KML/KMZ file (the server tells the format from its content).
    pub file: PathBuf,
    #[command(flatten)]
    pub read: crate::render::ReadArgs,
    /// The tilefarm server.
    #[arg(long, env = "TILEFARM_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Layer name (default: the file's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Zoom range, `MIN-MAX`.
    #[arg(long, default_value = "0-5")]
    pub zooms: String,
    /// Style JSON file (default: the reference style).
    #[arg(long)]
    pub style: Option<PathBuf>,
    /// Replace this layer's data instead of making a new layer (it keeps its
    /// zooms and style; tiles the new data no longer reaches are deleted).
    #[arg(long, value_name = "LAYER_ID", conflicts_with_all = ["name", "style"])]
    pub layer: Option<String>,
    /// Bearer token, when the server wants one.
    #[arg(long, env = "TILEFARM_TOKEN")]
    pub token: Option<String>,
    /// Print the job and return without waiting for it.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub struct EditArgs {
    /// The layer's id.
    pub layer: String,
    /// The edit, a JSON file: {"upsert": FeatureCollection, "delete": [ids]},
    /// features addressed by their GeoJSON "id".
    pub file: PathBuf,
    /// The tilefarm server.
    #[arg(long, env = "TILEFARM_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Bearer token, when the server wants one.
    #[arg(long, env = "TILEFARM_TOKEN")]
    pub token: Option<String>,
    /// Print the job and return without waiting for it.
    #[arg(long)]
    pub no_wait: bool,
}

impl UploadArgs {
    pub fn for_file(file: PathBuf, server: String, zooms: String, token: Option<String>) -> Self {
        UploadArgs {
            file,
            read: crate::render::ReadArgs::default(),
            server,
            name: None,
            zooms,
            style: None,
            layer: None,
            token,
            no_wait: false,
        }
    }
}

pub fn run(args: UploadArgs) -> Result<()> {
    runtime()?.block_on(upload(args))
}

pub fn run_edit(args: EditArgs) -> Result<()> {
    runtime()?.block_on(edit(args))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")
}

/// Sends an edit and follows its job.
pub async fn edit(args: EditArgs) -> Result<()> {
    let body = tokio::fs::read(&args.file)
        .await
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let http = reqwest::Client::new();
    let server = args.server.trim_end_matches('/');
    let req = http
        .post(format!("{server}/v1/layers/{}/edits", args.layer))
        .header("content-type", "application/json")
        .body(body);
    let (job, layer) = submit(req, args.token.as_deref(), server, "edit").await?;
    eprintln!("sent {}: job {server}/v1/jobs/{job}", args.file.display());
    if args.no_wait {
        println!("{job}");
        return Ok(());
    }
    follow(&http, server, &job, &layer).await
}

/// Sends a request that makes a job; returns the job's and the layer's ids.
async fn submit(
    mut req: reqwest::RequestBuilder,
    token: Option<&str>,
    server: &str,
    what: &str,
) -> Result<(String, String)> {
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req
        .send()
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    let status = res.status();
    let answer: Value = res
        .json()
        .await
        .context("the server's answer is not JSON")?;
    if status.as_u16() != 202 {
        bail!(
            "the {what} was refused ({status}): {}",
            answer["error"]["message"]
                .as_str()
                .unwrap_or("no reason given")
        );
    }
    let job = answer["job"]["id"].as_str().context("no job id")?;
    let layer = answer["layer_id"].as_str().context("no layer id")?;
    Ok((job.to_string(), layer.to_string()))
}

fn content_type(file: &std::path::Path) -> &'static str {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("geojsons" | "geojsonl" | "ndjson" | "jsonl") => "application/geo+json-seq",
        Some("geojson" | "json") => "application/geo+json",
        Some("zip") => "application/zip",
        Some("gpkg") => "application/geopackage+sqlite3",
        Some("csv") => "text/csv",
        Some("kml") => "application/vnd.google-earth.kml+xml",
        Some("kmz") => "application/vnd.google-earth.kmz",
        Some("fgb") => "application/flatgeobuf",
        _ => "application/octet-stream",
    }
}

pub async fn upload(args: UploadArgs) -> Result<()> {
    let body = tokio::fs::read(&args.file)
        .await
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.file
            .file_stem()
            .map_or("layer".into(), |s| s.to_string_lossy().into_owned())
    });
    let mut query = vec![("name", name), ("zooms", args.zooms.clone())];
    if let Some(style) = &args.style {
        let text = std::fs::read_to_string(style)
            .with_context(|| format!("cannot read the style file {}", style.display()))?;
        query.push(("style", text));
    }
    let http = reqwest::Client::new();
    let server = args.server.trim_end_matches('/');
    query.extend(args.read.query());
    let req = match &args.layer {
        Some(layer) => http
            .put(format!("{server}/v1/layers/{layer}/data"))
            .query(&args.read.query()),
        None => http.post(format!("{server}/v1/layers")).query(&query),
    };
    let req = req
        .header("content-type", content_type(&args.file))
        .body(body);
    let (job, layer) = submit(req, args.token.as_deref(), server, "upload").await?;
    eprintln!(
        "uploaded {}: job {server}/v1/jobs/{job}",
        args.file.display()
    );
    if args.no_wait {
        println!("{job}");
        return Ok(());
    }
    follow(&http, server, &job, &layer).await
}

/// Follows a job to its end with a progress bar; an error says why it failed.
async fn follow(http: &reqwest::Client, server: &str, job: &str, layer: &str) -> Result<()> {
    let started = Instant::now();
    let mut progress: Option<(Progress, i64)> = None;
    let mut stage = String::new();
    let last = loop {
        let status: Value = http
            .get(format!("{server}/v1/jobs/{job}"))
            .send()
            .await?
            .json()
            .await?;
        let now_stage = status["stage"].as_str().unwrap_or("").to_string();
        if now_stage != stage && progress.is_none() {
            eprintln!("job {}: {now_stage}", status["id"].as_str().unwrap_or(""));
            stage = now_stage;
        }
        if let (Some(total), done) = (
            status["progress"]["total"].as_i64(),
            status["progress"]["done"].as_i64().unwrap_or(0),
        ) {
            let (bar, shown) =
                progress.get_or_insert_with(|| (Progress::new(total as u64, "rendering"), 0));
            if done > *shown {
                bar.add((done - *shown) as u64);
                *shown = done;
            }
        }
        if !job_state(&status).is_some_and(JobState::is_live) {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if let Some((bar, _)) = &progress {
        bar.finish();
    }
    match job_state(&last) {
        Some(JobState::Succeeded) => {
            println!(
                "job succeeded: {} tiles in {:.1} s\nTileJSON: {server}/v1/layers/{layer}/tilejson\nmap:      {server}/?layer={layer}",
                last["progress"]["total"],
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Some(state) => bail!(
            "job {state}: {}",
            last["error"]["message"]
                .as_str()
                .unwrap_or("no reason given")
        ),
        None => bail!("the server's job status has no state: {last}"),
    }
}

/// The state in a job status from the API, if it has a known one.
fn job_state(status: &Value) -> Option<JobState> {
    status["state"].as_str()?.parse().ok()
}
