//! `ingest-bench`: how fast tilefarm reads each upload format, and its peak
//! memory per input MB, beside GDAL's `ogr2ogr` converting the same file to
//! GeoJSON, from the same run.
//!
//! The inputs are made with `ogr2ogr` from one GeoJSON file (default: the 1:10m
//! coastlines, 16.5 MB, 4,051 lines, 409 k vertices, in `../shared/data`): a
//! zipped Shapefile and a GeoPackage in Web Mercator (EPSG:3857, so every
//! position is reprojected), a FlatGeobuf, a CSV with a WKT column and a KML in
//! WGS84, and the GeoJSON itself. Each reading
//! runs in a fresh process under `/usr/bin/time` (wall seconds and peak RSS), so
//! one format's memory does not count in the next.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    /// GeoJSON to make the inputs from.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Runs of each reading (the fastest is kept).
    #[arg(long, default_value_t = 2)]
    runs: usize,
    /// Internal: read FILE with tilefarm and print the feature count.
    #[arg(long, hide = true)]
    read: Option<PathBuf>,
}

fn default_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/wa_coastline_10m_lines.geojson")
}

/// Wall seconds and peak RSS (KB) of a command, from GNU time.
fn timed(program: &Path, args: &[&str]) -> Result<(f64, u64, String)> {
    let report = tempfile::NamedTempFile::new()?;
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%e %M", "-o"])
        .arg(report.path())
        .arg(program)
        .args(args)
        .output()
        .context("cannot run /usr/bin/time (Debian's time package)")?;
    if !out.status.success() {
        bail!(
            "{} {args:?} failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(report.path())?;
    let mut it = text.split_whitespace();
    let secs: f64 = it.next().context("no time")?.parse()?;
    let kb: u64 = it.next().context("no memory")?.parse()?;
    Ok((
        secs,
        kb,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

fn ogr2ogr(args: &[&str], dir: &Path) -> Result<()> {
    let out = Command::new("ogr2ogr")
        .args(args)
        .current_dir(dir)
        .output()
        .context("cannot run ogr2ogr (Debian's gdal-bin)")?;
    if !out.status.success() {
        bail!("ogr2ogr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(file) = &args.read {
        let upload = tilefarm_formats::read_path(file, &tilefarm_formats::ReadOptions::default())
            .with_context(|| format!("reading {}", file.display()))?;
        println!("{} {}", upload.report.features.len(), upload.crs);
        return Ok(());
    }
    let data = args.data.unwrap_or_else(default_data);
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let src = data.to_str().context("a UTF-8 path")?;
    std::fs::copy(&data, d.join("in.geojson"))?;
    eprintln!("making the inputs from {src} with ogr2ogr...");
    ogr2ogr(
        &["-f", "ESRI Shapefile", "-t_srs", "EPSG:3857", "shp", src],
        d,
    )?;
    // The Shapefile's members are named after the layer: zip whatever is there.
    let members: Vec<String> = std::fs::read_dir(d.join("shp"))?
        .map(|e| e.map(|e| format!("shp/{}", e.file_name().to_string_lossy())))
        .collect::<Result<_, _>>()?;
    let mut zip_args = vec!["-q".to_string(), "-j".into(), "in.zip".into()];
    zip_args.extend(members);
    let ok = Command::new("zip")
        .args(&zip_args)
        .current_dir(d)
        .status()
        .context("cannot run zip")?;
    if !ok.success() {
        bail!("zip failed");
    }
    ogr2ogr(&["-f", "GPKG", "-t_srs", "EPSG:3857", "in.gpkg", src], d)?;
    ogr2ogr(&["-f", "FlatGeobuf", "in.fgb", src], d)?;
    ogr2ogr(&["-f", "CSV", "-lco", "GEOMETRY=AS_WKT", "in.csv", src], d)?;
    ogr2ogr(&["-f", "KML", "in.kml", src], d)?;
    let me = std::env::current_exe()?;
    let inputs = [
        ("GeoJSON", "in.geojson", "in.geojson"),
        ("Shapefile (zip, EPSG:3857)", "in.zip", "shp"),
        ("GeoPackage (EPSG:3857)", "in.gpkg", "in.gpkg"),
        ("FlatGeobuf", "in.fgb", "in.fgb"),
        ("CSV (WKT)", "in.csv", "in.csv"),
        ("KML", "in.kml", "in.kml"),
    ];
    println!(
        "| format | input MB | features | tilefarm s | tilefarm MB/s | tilefarm peak MB | peak / input MB | ogr2ogr s | ogr2ogr MB/s | ogr2ogr peak MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, file, gdal_input) in inputs {
        let path = d.join(file);
        let mb = std::fs::metadata(&path)?.len() as f64 / 1e6;
        let mut ours = (f64::MAX, 0u64, String::new());
        let mut gdal = (f64::MAX, 0u64);
        for _ in 0..args.runs {
            let p = path.to_str().context("a UTF-8 path")?;
            let run = timed(&me, &["--read", p])?;
            if run.0 < ours.0 {
                ours = run;
            }
            let out = d.join("gdal.geojson");
            let _ = std::fs::remove_file(&out);
            let o = out.to_str().context("a UTF-8 path")?;
            let g = d.join(gdal_input);
            let g = g.to_str().context("a UTF-8 path")?;
            // A CSV says nothing of its coordinate system: WGS84, as
            // tilefarm takes it.
            let extra: &[&str] = if file == "in.csv" {
                &[
                    "-s_srs",
                    "EPSG:4326",
                    "-oo",
                    "GEOM_POSSIBLE_NAMES=WKT",
                    "-oo",
                    "KEEP_GEOM_COLUMNS=NO",
                ]
            } else {
                &[]
            };
            let mut gargs = vec!["-f", "GeoJSON", "-t_srs", "EPSG:4326", o, g];
            gargs.extend(extra);
            let (s, kb, _) = timed(Path::new("/usr/bin/ogr2ogr"), &gargs)?;
            if s < gdal.0 {
                gdal = (s, kb);
            }
        }
        let features = ours.2.split_whitespace().next().unwrap_or("?").to_string();
        let (ours_mb, gdal_mb) = (ours.1 as f64 / 1024.0, gdal.1 as f64 / 1024.0);
        println!(
            "| {name} | {mb:.1} | {features} | {:.2} | {:.1} | {ours_mb:.0} | {:.1} | {:.2} | {:.1} | {gdal_mb:.0} |",
            ours.0,
            mb / ours.0.max(0.01),
            ours_mb / mb,
            gdal.0,
            mb / gdal.0.max(0.01),
        );
    }
    Ok(())
}
