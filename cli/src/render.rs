//! `tilefarm render`: map data (GeoJSON, a zipped Shapefile, GeoPackage, FlatGeobuf,
//! CSV, KML) to a PNG tile pyramid on disk or in an object store.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use std::io::Write;
use tilefarm_formats::{ReadOptions, read_path};

use tilefarm_renderer::{
    Layer, OnInvalid, Style, TileId, ZoomLayer, encode_png, render_tile, unit_to_lonlat,
};
use tilefarm_worker::{
    DirSink, ObjectStoreSink, PmTilesSink, PyramidOptions, TileSink, check_options,
    parse_zoom_range, render_pyramid,
};

use crate::progress::Progress;

/// How to read an input: which layer, which CSV columns, which CRS.
#[derive(Debug, Default, Args)]
pub struct ReadArgs {
    /// The GeoPackage table (or zipped Shapefile) to read (default: the first).
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,
    /// CSV: the longitude (or x) column, when not one of the usual names.
    #[arg(long)]
    pub lon: Option<String>,
    /// CSV: the latitude (or y) column.
    #[arg(long)]
    pub lat: Option<String>,
    /// CSV: a column of WKT geometries.
    #[arg(long)]
    pub geometry: Option<String>,
    /// The CRS of a CSV's coordinates (default WGS84), or of a Shapefile
    /// without .prj: `EPSG:27700`.
    #[arg(long)]
    pub crs: Option<String>,
}

impl ReadArgs {
    pub fn options(&self) -> ReadOptions {
        ReadOptions {
            layer: self.table.clone(),
            lon: self.lon.clone(),
            lat: self.lat.clone(),
            geometry: self.geometry.clone(),
            crs: self.crs.clone(),
            ..ReadOptions::default()
        }
    }

    /// The same as query parameters of an upload.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        [
            ("table", &self.table),
            ("lon", &self.lon),
            ("lat", &self.lat),
            ("geometry", &self.geometry),
            ("crs", &self.crs),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// GeoJSON or GeoJSONSeq, a zipped Shapefile, GeoPackage, FlatGeobuf, CSV or
    /// KML/KMZ file (told from its content); `-` reads stdin.
    pub input: PathBuf,
    #[command(flatten)]
    pub read: ReadArgs,
    /// Zoom range, `MIN-MAX` or a single zoom.
    #[arg(long, default_value = "0-5", value_parser = parse_zoom_range)]
    pub zooms: (u8, u8),
    /// Output: a directory (`z/x/y.png`), a PMTiles archive (`NAME.pmtiles`), or an
    /// object store URL (`s3://bucket/prefix`, `file:///...`). With `--tile`, a
    /// PNG file, or standard output when left out or `-`.
    #[arg(long, env = "TILEFARM_OUT", required_unless_present = "tile")]
    pub out: Option<String>,
    /// Draw one tile alone, `Z/X/Y`, instead of a pyramid: the bytes the tile
    /// origin serves for it, for checking any tile by hand.
    #[arg(long, value_name = "Z/X/Y", value_parser = parse_tile)]
    pub tile: Option<TileId>,
    /// Style JSON file (default: the reference style).
    #[arg(long)]
    pub style: Option<PathBuf>,
    /// Tiles per metatile side: 1, 2, 4, 8 or 16.
    #[arg(long, default_value_t = 8)]
    pub metatile: u32,
    /// Tile size in pixels: 256, or 512 for `@2x` tiles.
    #[arg(long, default_value_t = 256)]
    pub tile_size: u32,
    /// Leave out invalid features (each is reported) instead of failing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Do not store fully transparent tiles (a tile server answers them
    /// itself). Only the tiles near an edge, line or point are drawn; the
    /// one-colour tiles inside shapes are written from their regions (hard
    /// links in a directory, runs in a PMTiles archive) without drawing.
    #[arg(long)]
    pub skip_empty: bool,
    /// Write a full copy of each one-colour tile instead of a hard link to one file.
    #[arg(long)]
    pub no_link: bool,
    /// S3-compatible endpoint for `s3://` outputs (credentials and region come
    /// from the usual `AWS_*` variables).
    #[arg(long, env = "TILEFARM_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// `Cache-Control` stored with each tile in S3.
    #[arg(
        long,
        env = "TILEFARM_CACHE_CONTROL",
        default_value = tilefarm_worker::DEFAULT_CACHE_CONTROL
    )]
    pub cache_control: String,
    /// Render threads (default: one per core).
    #[arg(long, env = "TILEFARM_THREADS")]
    pub threads: Option<usize>,
}

/// Reads `Z/X/Y` (a `.png` on the end is allowed).
fn parse_tile(s: &str) -> Result<TileId, String> {
    let bad = || format!("{s:?} is not a tile: expected Z/X/Y such as 5/16/10");
    let parts: Vec<&str> = s.trim_end_matches(".png").split('/').collect();
    let [z, x, y] = parts.as_slice() else {
        return Err(bad());
    };
    let (z, x, y) = (
        z.parse().map_err(|_| bad())?,
        x.parse().map_err(|_| bad())?,
        y.parse().map_err(|_| bad())?,
    );
    if z > tilefarm_queue::DEEPEST_ZOOM {
        return Err(format!(
            "zoom {z} is deeper than the deepest supported, {}",
            tilefarm_queue::DEEPEST_ZOOM
        ));
    }
    TileId::new(z, x, y).ok_or_else(|| format!("{s}: x and y must be below 2^{z} at zoom {z}"))
}

/// Draws `tile` alone and writes its PNG to `out` (standard output for `-`).
fn render_one(layer: &Layer, tile: TileId, tile_size: u32, out: Option<&str>) -> Result<()> {
    let zl = ZoomLayer::new(layer, tile.z, tile_size);
    let png = encode_png(&render_tile(&zl, tile), tile_size)?;
    match out {
        None | Some("-") => std::io::stdout()
            .write_all(&png)
            .context("cannot write the tile to standard output"),
        Some(path) => {
            std::fs::write(path, &png).with_context(|| format!("cannot write {path}"))?;
            eprintln!("wrote tile {tile} ({} bytes) to {path}", png.len());
            Ok(())
        }
    }
}

pub fn run(args: RenderArgs) -> Result<()> {
    let options = PyramidOptions {
        zooms: args.zooms.0..=args.zooms.1,
        metatile: args.metatile,
        tile_size: args.tile_size,
        skip_empty: args.skip_empty,
    };
    check_options(&options)?;
    let style = match &args.style {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the style file {}", path.display()))?;
            Style::from_json(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => Style::default(),
    };

    let name = args.input.display().to_string();
    let mut read_options = args.read.options();
    read_options.on_invalid = if args.skip_invalid {
        OnInvalid::Skip
    } else {
        OnInvalid::Fail
    };
    let started = std::time::Instant::now();
    let upload =
        read_path(&args.input, &read_options).with_context(|| format!("{name} cannot be read"))?;
    tracing::info!(format = %upload.format, crs = upload.crs, "read {name}");
    let report = upload.report;
    for skipped in &report.skipped {
        tracing::warn!("{name}: skipped {skipped}");
    }
    let layer = Layer::new(&report.features, &style);
    tracing::info!(
        features = report.features.len(),
        skipped = report.skipped.len(),
        "read {name} in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    if let Some(tile) = args.tile {
        return render_one(&layer, tile, args.tile_size, args.out.as_deref());
    }
    let out = args
        .out
        .clone()
        .context("--out is needed to render a pyramid")?;

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()
        .context("cannot start the render threads")?;
    let runtime;
    let sink: Box<dyn TileSink> = if out.contains("://") {
        runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the I/O runtime")?;
        let url = url::Url::parse(&out).with_context(|| format!("{out:?} is not a URL"))?;
        if url.scheme() == "s3" {
            let mut builder = object_store::aws::AmazonS3Builder::from_env().with_url(url.as_str());
            if let Some(endpoint) = &args.s3_endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            let store = builder
                .build()
                .with_context(|| format!("cannot open the S3 bucket of {out}"))?;
            let prefix = object_store::path::Path::from(url.path().trim_start_matches('/'));
            Box::new(
                ObjectStoreSink::new(Arc::new(store), prefix, runtime.handle().clone())
                    .with_http_headers(&args.cache_control),
            )
        } else {
            let (store, prefix) = object_store::parse_url(&url)
                .with_context(|| format!("cannot open the object store {out}"))?;
            Box::new(ObjectStoreSink::new(
                Arc::from(store),
                prefix,
                runtime.handle().clone(),
            ))
        }
    } else if out.ends_with(".pmtiles") {
        let [w, s, e, n] = layer
            .bounds()
            .map(|b| {
                let (w, n) = unit_to_lonlat(b.min_x, b.min_y);
                let (e, s) = unit_to_lonlat(b.max_x, b.max_y);
                [w, s, e, n]
            })
            .unwrap_or([-180.0, -85.0511, 180.0, 85.0511]);
        Box::new(PmTilesSink::create(
            &out,
            args.zooms.0,
            args.zooms.1,
            [w, s, e, n],
        )?)
    } else {
        let dir = PathBuf::from(&out);
        if dir.is_file() {
            bail!("--out {} is a file; give a directory", dir.display());
        }
        let sink = DirSink::new(&dir, !args.no_link)?;
        write_viewer(&dir, &options)?;
        Box::new(sink)
    };

    let total = options.tile_count();
    let progress = Progress::new(total, "rendering");
    let summary =
        pool.install(|| render_pyramid(&layer, &options, sink.as_ref(), &|n| progress.add(n)))?;
    progress.finish();
    let secs = summary.elapsed.as_secs_f64();
    println!(
        "rendered {} tiles (z{}-{}) in {:.2} s: {:.0} tiles/s; {} encoded, {} uniform ({} empty, {} skipped); {} metatiles drawn; {:.1} MB written",
        summary.tiles,
        args.zooms.0,
        args.zooms.1,
        secs,
        summary.tiles as f64 / secs.max(1e-9),
        summary.encoded,
        summary.uniform,
        summary.empty,
        summary.skipped,
        summary.metatiles_drawn,
        summary.bytes as f64 / 1e6,
    );
    if summary.regions > 0 {
        let how = if out.ends_with(".pmtiles") {
            "one run per zoom"
        } else if out.contains("://") {
            "one object per tile"
        } else if args.no_link {
            "a copy per tile"
        } else {
            "hard links to one file per colour"
        };
        println!(
            "{} tiles lie in {} one-colour regions, written without drawing ({how}); {} tiles were drawn",
            summary.region_tiles,
            summary.regions,
            summary.tiles - summary.region_tiles - summary.skipped,
        );
    }
    Ok(())
}

/// Writes `index.html`, a small map viewer for the pyramid, beside the tiles.
fn write_viewer(dir: &std::path::Path, options: &PyramidOptions) -> Result<()> {
    let html = include_str!("viewer.html")
        .replace("{{MINZOOM}}", &options.zooms.start().to_string())
        .replace("{{MAXZOOM}}", &options.zooms.end().to_string());
    let path = dir.join("index.html");
    std::fs::write(&path, html).with_context(|| format!("cannot write {}", path.display()))
}
