//! `deep-bench`: deep pyramids on real data, cost against the tiles an edge
//! reaches. For each dataset and deepest zoom (z0-10, z0-12, z0-14 by
//! default) a child process plans and renders the pyramid the way `tilefarm
//! render DATA --skip-empty --out X.pmtiles` does: only tiles near an edge,
//! line or point are drawn, and one-colour regions are stored as runs. It
//! prints the tiles drawn, the tiles addressable, the tiles the regions stand
//! for, the entries stored, seconds and peak memory, then per zoom the tiles
//! drawn and their growth over the zoom above. Beside it, from the same run,
//! the Mapnik peer's seconds per tile on a shallower full pyramid (it draws
//! every tile, so a deep one would take hours).
#![forbid(unsafe_code)]

mod peer;

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};
use tilefarm_renderer::{Layer, ReadOptions, Style, read_geojson};
use tilefarm_worker::{PmTilesSink, PyramidOptions, plan_render, render_pyramid};

use peer::{DATA_DIR, DEFAULT_DATA, DEFAULT_SCRIPT, proc_status_mb, run_mapnik_peer};

#[derive(Debug, Parser)]
#[command(name = "deep-bench", version)]
struct Args {
    /// GeoJSON files (default: wa_countries_50m and wa_coastline_10m_lines).
    #[arg(long = "data", value_name = "FILE")]
    data: Vec<PathBuf>,
    /// The deepest zooms to render to, from zoom 0, comma separated.
    #[arg(long, default_value = "10,12,14", value_delimiter = ',')]
    deepest: Vec<u8>,
    /// Render threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The deepest zoom of the Mapnik peer's full pyramid (z0 to it).
    #[arg(long, default_value_t = 7)]
    mapnik_zoom: u8,
    /// Leave the Mapnik peer out.
    #[arg(long)]
    no_mapnik: bool,
    #[arg(long, env = "TILEFARM_MAPNIK_SCRIPT", default_value = DEFAULT_SCRIPT)]
    mapnik_script: PathBuf,
    /// Also print the figures as JSON, one object per run.
    #[arg(long)]
    json: bool,
    /// Internal: render one dataset to one zoom in this process and print its
    /// figures as JSON (each run in its own process, so peak memory is its own).
    #[arg(long, hide = true, num_args = 2, value_names = ["FILE", "ZOOM"])]
    one: Vec<String>,
}

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("deep-bench: {e:#}");
            std::process::exit(2);
        }
    }
}

fn out_root() -> PathBuf {
    if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    if let [file, zoom] = args.one.as_slice() {
        let figures = one(Path::new(file), zoom.parse()?, args.threads)?;
        println!("{figures}");
        return Ok(());
    }
    let data: Vec<PathBuf> = if args.data.is_empty() {
        DEFAULT_DATA
            .iter()
            .map(|f| Path::new(DATA_DIR).join(f))
            .collect()
    } else {
        args.data.clone()
    };
    let started = Instant::now();
    let me = std::env::current_exe().context("cannot find this program")?;
    let mut all = Vec::new();
    for path in &data {
        let name = path.file_stem().map_or_else(
            || path.display().to_string(),
            |s| s.to_string_lossy().into(),
        );
        println!("\n== {name} ==");
        println!(
            "{:>6} {:>12} {:>16} {:>16} {:>9} {:>12} {:>9} {:>9} {:>10}",
            "zooms",
            "drawn",
            "addressable",
            "in regions",
            "regions",
            "stored",
            "plan s",
            "total s",
            "peak MB"
        );
        let mut deepest_run = None;
        let mut ours_per_tile = None;
        for &z in &args.deepest {
            eprintln!(
                "[deep-bench {:7.1} s] {name} z0-{z}",
                started.elapsed().as_secs_f64()
            );
            let out = Command::new(&me)
                .args(["--threads", &args.threads.to_string(), "--one"])
                .arg(path)
                .arg(z.to_string())
                .stderr(Stdio::inherit())
                .output()
                .context("cannot run a child deep-bench")?;
            if !out.status.success() {
                bail!("the run of {name} to zoom {z} failed ({})", out.status);
            }
            let f: Value = serde_json::from_slice(&out.stdout).context("a child's figures")?;
            let n = |k: &str| f[k].as_u64().unwrap_or(0);
            let s = |k: &str| f[k].as_f64().unwrap_or(0.0);
            println!(
                "{:>6} {:>12} {:>16} {:>16} {:>9} {:>12} {:>9.1} {:>9.1} {:>10.0}",
                format!("0-{z}"),
                n("drawn"),
                n("addressable"),
                n("region_tiles"),
                n("regions"),
                n("stored"),
                s("plan_s"),
                s("total_s"),
                s("peak_mb")
            );
            ours_per_tile = Some(s("render_s") / n("drawn").max(1) as f64);
            deepest_run = Some(f.clone());
            all.push(json!({"data": name, "deepest": z, "figures": f}));
        }
        if let Some(f) = &deepest_run {
            println!("per zoom (deepest run): tiles drawn, and growth over the zoom above");
            let per_zoom: Vec<u64> = f["drawn_per_zoom"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            for (z, &tiles) in per_zoom.iter().enumerate() {
                let growth = match z {
                    0 => String::new(),
                    _ => format!("{:.2}x", tiles as f64 / per_zoom[z - 1].max(1) as f64),
                };
                println!("  z{z:<2} {tiles:>10} {growth:>7}");
            }
        }
        if !args.no_mapnik {
            let peer = mapnik(path, &args)?;
            let ours = ours_per_tile.unwrap_or(0.0);
            println!(
                "mapnik z0-{}: {} tiles in {:.1} s, {:.3} ms a tile; ours {:.3} ms a drawn tile \
                 (deepest run): Mapnik takes {:.1}x as long a tile",
                args.mapnik_zoom,
                peer.0,
                peer.1,
                peer.1 / peer.0 as f64 * 1e3,
                ours * 1e3,
                (peer.1 / peer.0 as f64) / ours.max(1e-12)
            );
        }
    }
    if args.json {
        for run in all {
            println!("{run}");
        }
    }
    Ok(())
}

/// One dataset to zoom `z` in this process: the figures as JSON.
fn one(path: &Path, z: u8, threads: usize) -> Result<Value> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let features = read_geojson(BufReader::new(file), &ReadOptions::default())?.features;
    let layer = Layer::new(&features, &Style::default());
    drop(features);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let started = Instant::now();
    let plan = plan_render(&layer, 0..=z, 8, 256);
    let plan_s = started.elapsed().as_secs_f64();
    let mut drawn_per_zoom = vec![0u64; usize::from(z) + 1];
    for m in &plan.metatiles {
        drawn_per_zoom[usize::from(m.meta.z)] += m.tiles.len() as u64;
    }
    let runs: u64 = plan
        .regions
        .iter()
        .map(|r| u64::from(z.saturating_sub(r.root.z)) + 1)
        .sum();
    drop(plan);
    let dir = tempfile::tempdir_in(out_root())?;
    let archive = dir.path().join("deep.pmtiles");
    let sink = PmTilesSink::create(&archive, 0, z, [-180.0, -85.0, 180.0, 85.0])?;
    let options = PyramidOptions {
        zooms: 0..=z,
        skip_empty: true,
        ..PyramidOptions::default()
    };
    let rendering = Instant::now();
    let summary = pool.install(|| render_pyramid(&layer, &options, &sink, &|_| {}))?;
    let render_s = rendering.elapsed().as_secs_f64();
    let bytes = fs::metadata(&archive).map(|m| m.len()).unwrap_or(0);
    let written = summary.tiles - summary.skipped - summary.region_tiles;
    Ok(json!({
        "drawn": drawn_per_zoom.iter().sum::<u64>(),
        "drawn_per_zoom": drawn_per_zoom,
        "addressable": summary.tiles,
        "region_tiles": summary.region_tiles,
        "regions": summary.regions,
        "encoded": summary.encoded,
        "stored": written + runs,
        "archive_mb": bytes as f64 / 1e6,
        "plan_s": plan_s,
        "render_s": render_s,
        "total_s": plan_s + render_s,
        "peak_mb": proc_status_mb("VmHWM").unwrap_or(0.0),
    }))
}

/// The Mapnik peer's full pyramid z0-`mapnik_zoom`: (tiles, seconds).
fn mapnik(path: &Path, args: &Args) -> Result<(u64, f64)> {
    let dir = tempfile::tempdir_in(out_root())?;
    let v = run_mapnik_peer(
        &args.mapnik_script,
        path,
        dir.path(),
        (0, args.mapnik_zoom),
        8,
        args.threads as u32,
    )?;
    let tiles: u64 = (0..=args.mapnik_zoom).map(|z| 1u64 << (2 * z)).sum();
    let secs = v["render_wall_s"]
        .as_f64()
        .context("the Mapnik peer's JSON has no render_wall_s")?;
    Ok((tiles, secs))
}
