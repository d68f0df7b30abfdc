//! `render-bench`: times the tilefarm render core on real data beside the Mapnik
//! peer renderer, in one run, and checks that every tile of our pyramid is there.
//!
//! For each dataset it reads the GeoJSON, renders a full pyramid in-process the
//! way `tilefarm render` does (default style, metatiles, a rayon pool, a
//! [`DirSink`] with hard-linked uniform tiles), then runs
//! `shared/peers/mapnik_render.py` on the same data and zooms, and prints both
//! rates and their ratio.
#![forbid(unsafe_code)]

mod peer;

use std::fs::{self, File};
use std::io::BufReader;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};
use tilefarm_renderer::{Layer, ReadOptions, Style, read_geojson, tiles_per_side};
use tilefarm_worker::{DirSink, PyramidOptions, check_options, parse_zoom_range, render_pyramid};

use peer::{DATA_DIR, DEFAULT_DATA, DEFAULT_SCRIPT, PYTHON, proc_status_mb, run_mapnik_peer};

/// The speed the render core is meant to reach, as a multiple of Mapnik's.
const GOAL_RATIO: f64 = 10.0;

/// Times the tilefarm render core beside the Mapnik peer on the same data.
#[derive(Debug, Parser)]
#[command(name = "render-bench", version)]
struct Args {
    /// GeoJSON files to render (default: wa_countries_50m and
    /// wa_coastline_10m_lines from the shared test data).
    #[arg(long = "data", value_name = "FILE")]
    data: Vec<PathBuf>,
    /// Zoom range, `MIN-MAX` or a single zoom.
    #[arg(long, default_value = "0-7", value_parser = parse_zoom_range)]
    zooms: (u8, u8),
    /// Tiles per metatile side (both renderers).
    #[arg(long, default_value_t = 8)]
    metatile: u32,
    /// Render threads for our renderer.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Mapnik worker processes.
    #[arg(long, default_value_t = 2)]
    procs: u32,
    /// Where to write the pyramids (a temporary directory is made inside; default:
    /// /dev/shm if it exists, else the system temporary directory).
    #[arg(long, value_name = "DIR")]
    out_root: Option<PathBuf>,
    /// Only run our renderer.
    #[arg(long)]
    no_mapnik: bool,
    /// The Mapnik peer script.
    #[arg(long, value_name = "PATH", env = "TILEFARM_MAPNIK_SCRIPT", default_value = DEFAULT_SCRIPT)]
    mapnik_script: PathBuf,
    /// Also print one JSON object per dataset.
    #[arg(long)]
    json: bool,
}

/// Progress lines on stderr, stamped with the time since the start.
struct Log {
    started: Instant,
}

impl Log {
    fn line(&self, msg: impl AsRef<str>) {
        eprintln!(
            "[render-bench {:7.1} s] {}",
            self.started.elapsed().as_secs_f64(),
            msg.as_ref()
        );
    }
}

/// Our renderer's figures for one dataset.
#[derive(Debug)]
struct Ours {
    features: usize,
    tiles: u64,
    read_s: f64,
    render_s: f64,
    encoded: u64,
    uniform: u64,
    empty: u64,
    metatiles_drawn: u64,
    bytes: u64,
    disk_bytes: u64,
    cpu_s: Option<f64>,
    rss_before_mb: Option<f64>,
    peak_mb: Option<f64>,
    present: u64,
    missing: Vec<String>,
}

impl Ours {
    fn rate(&self) -> f64 {
        self.tiles as f64 / self.render_s.max(1e-9)
    }
    fn rate_incl_read(&self) -> f64 {
        self.tiles as f64 / (self.read_s + self.render_s).max(1e-9)
    }
}

/// Mapnik's figures for one dataset: its JSON line, and what it left on disk.
#[derive(Debug)]
struct Peer {
    result: Value,
    present: u64,
    disk_bytes: u64,
}

impl Peer {
    fn f64(&self, key: &str) -> Option<f64> {
        self.result.get(key).and_then(Value::as_f64)
    }
}

fn main() {
    match run() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("render-bench: error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Runs the benchmark; `Ok(false)` when a tile of our pyramid is missing.
fn run() -> Result<bool> {
    let args = Args::parse();
    let log = Log {
        started: Instant::now(),
    };
    let options = PyramidOptions {
        zooms: args.zooms.0..=args.zooms.1,
        metatile: args.metatile,
        tile_size: 256,
        skip_empty: false,
    };
    check_options(&options)?;
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    if args.procs == 0 {
        bail!("--procs must be at least 1");
    }
    let data: Vec<PathBuf> = if args.data.is_empty() {
        DEFAULT_DATA
            .iter()
            .map(|f| tidy(&Path::new(DATA_DIR).join(f)))
            .collect()
    } else {
        args.data.clone()
    };
    for d in &data {
        if !d.is_file() {
            bail!("no data file {}", d.display());
        }
    }
    let script = tidy(&args.mapnik_script);
    if !args.no_mapnik {
        check_mapnik(&script)?;
    }

    let root = match &args.out_root {
        Some(dir) => dir.clone(),
        None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
        None => std::env::temp_dir(),
    };
    fs::create_dir_all(&root).with_context(|| format!("cannot make {}", root.display()))?;
    let out = tempfile::Builder::new()
        .prefix("render-bench-")
        .tempdir_in(&root)
        .with_context(|| format!("cannot make a directory under {}", root.display()))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .thread_name(|i| format!("render-{i}"))
        .build()
        .context("cannot start the render threads")?;

    println!(
        "render-bench: z{}-{}, {} tiles a pyramid, metatile {}, 256 px; ours {} thread{}{}; output under {}",
        args.zooms.0,
        args.zooms.1,
        options.tile_count(),
        args.metatile,
        args.threads,
        if args.threads == 1 { "" } else { "s" },
        if args.no_mapnik {
            String::new()
        } else {
            format!(", Mapnik {} process(es)", args.procs)
        },
        out.path().display(),
    );

    let mut all_present = true;
    let mut rows = Vec::new();
    for path in &data {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        println!();
        println!(
            "== {name} ({:.1} MB, {}) ==",
            size as f64 / 1e6,
            path.display()
        );

        let dir = out.path().join(format!("ours-{name}"));
        let ours = run_ours(&log, &name, path, &options, &pool, &dir)?;
        remove_tree(&dir)?;
        print_ours(&ours);
        if !ours.missing.is_empty() {
            all_present = false;
        }

        let peer = if args.no_mapnik {
            None
        } else {
            let dir = out.path().join(format!("mapnik-{name}"));
            let peer = run_mapnik(&log, &name, path, &args, &script, &dir);
            remove_tree(&dir)?;
            let peer = peer?;
            print_peer(&peer, &ours);
            Some(peer)
        };
        rows.push((name, path.clone(), ours, peer));
    }
    drop(pool);
    out.close().context("cannot remove the output directory")?;

    println!();
    print_table(&rows, args.no_mapnik);

    if args.json {
        println!();
        for (name, path, ours, peer) in &rows {
            println!("{}", to_json(name, path, &args, ours, peer.as_ref()));
        }
    }
    if !all_present {
        eprintln!("render-bench: some tiles of our pyramid are missing (see above)");
    }
    Ok(all_present)
}

/// A path with `..` resolved when it exists, for readable messages.
fn tidy(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn remove_tree(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
}

/// Fails early, with the fix, when the Mapnik peer cannot run.
fn check_mapnik(script: &Path) -> Result<()> {
    let how = "install Mapnik's Python module with `apt-get update && apt-get install -y \
               python3-mapnik` (Debian/Ubuntu), or pass --no-mapnik to time only our renderer";
    if !script.is_file() {
        bail!(
            "the Mapnik peer script {} does not exist; give it with --mapnik-script or \
             TILEFARM_MAPNIK_SCRIPT, or pass --no-mapnik to time only our renderer",
            script.display()
        );
    }
    let out = Command::new(PYTHON)
        .args(["-c", "import mapnik"])
        .stdin(Stdio::null())
        .output();
    match out {
        Err(e) => bail!("cannot run {PYTHON} ({e}); {how}"),
        Ok(o) if !o.status.success() => bail!(
            "{PYTHON} cannot `import mapnik`: {}; {how}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .trim()
        ),
        Ok(_) => Ok(()),
    }
}

fn run_ours(
    log: &Log,
    name: &str,
    path: &Path,
    options: &PyramidOptions,
    pool: &rayon::ThreadPool,
    dir: &Path,
) -> Result<Ours> {
    let rss_before_mb = proc_status_mb("VmRSS");
    let cpu0 = cpu_seconds();

    log.line(format!("ours: reading {name}"));
    let t0 = Instant::now();
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let report = read_geojson(BufReader::new(file), &ReadOptions::default())
        .with_context(|| format!("{} is not usable GeoJSON", path.display()))?;
    let layer = Layer::new(&report.features, &Style::default());
    let read_s = t0.elapsed().as_secs_f64();
    log.line(format!(
        "ours: read and prepared {} features in {read_s:.2} s",
        report.features.len()
    ));

    let sink = DirSink::new(dir, true)?;
    let total = options.tile_count();
    log.line(format!("ours: rendering {total} tiles of {name}"));
    let done = AtomicU64::new(0);
    let last = Mutex::new(Instant::now());
    let progress = |n: u64| {
        let d = done.fetch_add(n, Ordering::Relaxed) + n;
        if let Ok(mut last) = last.try_lock()
            && last.elapsed() >= Duration::from_secs(5)
        {
            *last = Instant::now();
            log.line(format!("ours: {d}/{total} tiles"));
        }
    };
    let t1 = Instant::now();
    let summary = pool.install(|| render_pyramid(&layer, options, &sink, &progress))?;
    let render_s = t1.elapsed().as_secs_f64();
    let cpu_s = match (cpu0, cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let peak_mb = proc_status_mb("VmHWM");
    log.line(format!("ours: rendered {name} in {render_s:.2} s"));
    let features = report.features.len();
    drop(layer);
    drop(report);

    log.line("ours: checking that every tile is addressable");
    let (present, disk_bytes, missing) = check_pyramid(dir, options)?;
    log.line(format!("ours: {present}/{total} tiles present"));

    Ok(Ours {
        features,
        tiles: summary.tiles,
        read_s,
        render_s,
        encoded: summary.encoded,
        uniform: summary.uniform,
        empty: summary.empty,
        metatiles_drawn: summary.metatiles_drawn,
        bytes: summary.bytes,
        disk_bytes,
        cpu_s,
        rss_before_mb,
        peak_mb,
        present,
        missing,
    })
}

/// Looks for `z/x/y.png` of every tile in the pyramid. Returns the tiles present,
/// the bytes they take on disk (each hard-linked file counted once), and the
/// first few missing paths.
fn check_pyramid(dir: &Path, options: &PyramidOptions) -> Result<(u64, u64, Vec<String>)> {
    let mut present = 0;
    let mut missing = Vec::new();
    let mut missing_count = 0u64;
    let mut inodes = std::collections::HashSet::new();
    let mut disk_bytes = 0;
    for z in options.zooms.clone() {
        let n = tiles_per_side(z);
        for x in 0..n {
            let column = dir.join(z.to_string()).join(x.to_string());
            for y in 0..n {
                let p = column.join(format!("{y}.png"));
                match fs::metadata(&p) {
                    Ok(m) if m.is_file() && m.len() > 0 => {
                        present += 1;
                        if inodes.insert((m.dev(), m.ino())) {
                            disk_bytes += m.len();
                        }
                    }
                    _ => {
                        missing_count += 1;
                        if missing.len() < 10 {
                            missing.push(format!("{z}/{x}/{y}.png"));
                        }
                    }
                }
            }
        }
    }
    if missing_count > missing.len() as u64 {
        missing.push(format!(
            "... and {} more",
            missing_count - missing.len() as u64
        ));
    }
    Ok((present, disk_bytes, missing))
}

/// Counts the tiles `z/x/y.png` in a pyramid directory, and their bytes.
fn scan_pyramid(dir: &Path, zooms: (u8, u8)) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    for z in zooms.0..=zooms.1 {
        let Ok(columns) = fs::read_dir(dir.join(z.to_string())) else {
            continue;
        };
        for column in columns.flatten() {
            let Ok(tiles) = fs::read_dir(column.path()) else {
                continue;
            };
            for tile in tiles.flatten() {
                if let Ok(m) = tile.metadata()
                    && m.is_file()
                    && tile.path().extension().is_some_and(|e| e == "png")
                {
                    files += 1;
                    bytes += m.len();
                }
            }
        }
    }
    (files, bytes)
}

fn run_mapnik(
    log: &Log,
    name: &str,
    path: &Path,
    args: &Args,
    script: &Path,
    dir: &Path,
) -> Result<Peer> {
    fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    log.line(format!(
        "mapnik: rendering {name} ({} process(es))",
        args.procs
    ));
    let result = run_mapnik_peer(script, path, dir, args.zooms, args.metatile, args.procs)?;
    log.line(format!(
        "mapnik: rendered {name} in {} s",
        result.get("render_wall_s").unwrap_or(&Value::Null)
    ));
    let (present, disk_bytes) = scan_pyramid(dir, args.zooms);
    Ok(Peer {
        result,
        present,
        disk_bytes,
    })
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"))
}

fn print_ours(o: &Ours) {
    let total = o.read_s + o.render_s;
    println!(
        "ours    read+prepare {:.2} s ({} features); render {:.2} s (per-zoom preparation, drawing, PNG, writing)",
        o.read_s, o.features, o.render_s
    );
    println!(
        "ours    tiles {}: {:.0} tiles/s (render wall), {:.0} tiles/s including read ({:.2} s)",
        o.tiles,
        o.rate(),
        o.rate_incl_read(),
        total
    );
    println!(
        "ours    non-uniform (encoded) {} tiles, {:.0} tiles/s; uniform {} ({} empty); {} metatiles drawn",
        o.encoded,
        o.encoded as f64 / o.render_s.max(1e-9),
        o.uniform,
        o.empty,
        o.metatiles_drawn
    );
    println!(
        "ours    bytes written {:.1} MB (PNG handed to the sink, every tile counted); {:.1} MB on disk (uniform tiles are hard links)",
        mb(o.bytes),
        mb(o.disk_bytes)
    );
    println!(
        "ours    peak memory {} MB (VmHWM: peak of this process so far; RSS before this dataset {} MB); cpu {} s user+sys, {} tiles per cpu-second",
        opt(o.peak_mb, 0),
        opt(o.rss_before_mb, 0),
        opt(o.cpu_s, 2),
        opt(o.cpu_s.map(|c| o.tiles as f64 / c.max(1e-9)), 0)
    );
    println!("addressable: {}/{}", o.present, o.tiles);
    for m in &o.missing {
        println!("  missing {m}");
    }
}

fn print_peer(p: &Peer, o: &Ours) {
    let r = &p.result;
    let s = |k: &str| r.get(k).map_or_else(|| "n/a".to_string(), Value::to_string);
    println!(
        "mapnik  {} ({} procs, metatile {}): tiles {}: {} tiles/s (render wall {} s), {} tiles/s including load; cpu {} s, {} tiles per cpu-second",
        r.get("renderer")
            .and_then(Value::as_str)
            .unwrap_or("mapnik"),
        s("procs"),
        s("metatile"),
        s("tiles_total"),
        s("tiles_per_s"),
        s("render_wall_s"),
        s("tiles_per_s_incl_load"),
        s("cpu_s"),
        s("tiles_per_cpu_s"),
    );
    println!(
        "mapnik  {} tiles on disk, {:.1} MB",
        p.present,
        mb(p.disk_bytes)
    );
    if p.f64("tiles_total") != Some(o.tiles as f64) {
        println!(
            "warning: Mapnik rendered {} tiles, we rendered {}",
            s("tiles_total"),
            o.tiles
        );
    }
}

fn ratio(o: &Ours, p: &Peer) -> Option<f64> {
    p.f64("tiles_per_s")
        .filter(|r| *r > 0.0)
        .map(|r| o.rate() / r)
}

/// The ratio with reading the data counted on both sides.
fn ratio_incl_read(o: &Ours, p: &Peer) -> Option<f64> {
    p.f64("tiles_per_s_incl_load")
        .filter(|r| *r > 0.0)
        .map(|r| o.rate_incl_read() / r)
}

/// The ratio of tiles per CPU-second (reading included on both sides): steadier
/// than wall time when the machine is shared.
fn ratio_cpu(o: &Ours, p: &Peer) -> Option<f64> {
    let ours = o.tiles as f64 / o.cpu_s.filter(|c| *c > 0.0)?;
    p.f64("tiles_per_cpu_s")
        .filter(|r| *r > 0.0)
        .map(|r| ours / r)
}

fn times(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".to_string(), |r| format!("{r:.2}x"))
}

fn print_table(rows: &[(String, PathBuf, Ours, Option<Peer>)], no_mapnik: bool) {
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(7).max(7);
    if no_mapnik {
        println!(
            "{:<w$}  {:>7}  {:>12}  {:>12}  {:>12}",
            "dataset", "tiles", "ours tiles/s", "incl. read", "addressable"
        );
        for (name, _, o, _) in rows {
            println!(
                "{:<w$}  {:>7}  {:>12.0}  {:>12.0}  {:>12}",
                name,
                o.tiles,
                o.rate(),
                o.rate_incl_read(),
                format!("{}/{}", o.present, o.tiles)
            );
        }
        return;
    }
    println!(
        "{:<w$}  {:>7}  {:>12}  {:>14}  {:>11}  {:>15}  {:>14}",
        "dataset",
        "tiles",
        "ours tiles/s",
        "mapnik tiles/s",
        "ours/mapnik",
        "ratio incl read",
        "ratio per CPU-s"
    );
    for (name, _, o, p) in rows {
        let p = p.as_ref().expect("Mapnik ran");
        println!(
            "{:<w$}  {:>7}  {:>12.0}  {:>14}  {:>11}  {:>15}  {:>14}",
            name,
            o.tiles,
            o.rate(),
            opt(p.f64("tiles_per_s"), 0),
            times(ratio(o, p)),
            times(ratio_incl_read(o, p)),
            times(ratio_cpu(o, p)),
        );
    }
    for (name, _, o, p) in rows {
        let p = p.as_ref().expect("Mapnik ran");
        let met = ratio(o, p).is_some_and(|r| r >= GOAL_RATIO);
        println!(
            "{name}: goal: >= {GOAL_RATIO:.0}x Mapnik: {}",
            if met { "met" } else { "not met" }
        );
    }
}

fn to_json(name: &str, path: &Path, args: &Args, o: &Ours, p: Option<&Peer>) -> Value {
    let r = |v: f64, d: i32| {
        let k = 10f64.powi(d);
        (v * k).round() / k
    };
    json!({
        "dataset": name,
        "input": path.display().to_string(),
        "zmin": args.zooms.0,
        "zmax": args.zooms.1,
        "metatile": args.metatile,
        "tile_size": 256,
        "ours": {
            "threads": args.threads,
            "features": o.features,
            "tiles": o.tiles,
            "read_s": r(o.read_s, 3),
            "render_s": r(o.render_s, 3),
            "tiles_per_s": r(o.rate(), 1),
            "tiles_per_s_incl_read": r(o.rate_incl_read(), 1),
            "encoded": o.encoded,
            "encoded_per_s": r(o.encoded as f64 / o.render_s.max(1e-9), 1),
            "uniform": o.uniform,
            "empty": o.empty,
            "metatiles_drawn": o.metatiles_drawn,
            "bytes": o.bytes,
            "disk_bytes": o.disk_bytes,
            "cpu_s": o.cpu_s.map(|c| r(c, 3)),
            "peak_rss_mb": o.peak_mb.map(|m| r(m, 1)),
            "addressable": o.present,
            "missing": o.tiles - o.present,
        },
        "mapnik": p.map(|p| {
            let mut v = p.result.clone();
            if let Some(m) = v.as_object_mut() {
                m.insert("tiles_on_disk".into(), p.present.into());
                m.insert("disk_bytes".into(), p.disk_bytes.into());
            }
            v
        }),
        "ratio": p.and_then(|p| ratio(o, p)).map(|x| r(x, 3)),
        "ratio_incl_read": p.and_then(|p| ratio_incl_read(o, p)).map(|x| r(x, 3)),
        "ratio_per_cpu_s": p.and_then(|p| ratio_cpu(o, p)).map(|x| r(x, 3)),
        "goal_ratio": GOAL_RATIO,
        "goal_met": p.and_then(|p| ratio(o, p)).map(|x| x >= GOAL_RATIO),
    })
}

/// User plus system CPU seconds of this process, all threads, from
/// `/proc/self/stat` (in clock ticks of USER_HZ, 100 on Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after `)`.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
