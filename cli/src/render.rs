//! `tilefarm render`: map data (GeoJSON, a zipped Shapefile, GeoPackage, FlatGeobuf,
//! CSV, KML) to a PNG tile pyramid on disk or in an object store.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use tilefarm_formats::{ReadOptions, read_path};
use tilefarm_renderer::{Layer, OnInvalid, Style, unit_to_lonlat};
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
    /// object store URL (`s3://bucket/prefix`, `file:///...`).
    #[arg(long, env = "TILEFARM_OUT")]
    pub out: String,
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
    /// Do not store fully transparent tiles (a tile server answers them itself).
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

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()
        .context("cannot start the render threads")?;
    let runtime;
    let sink: Box<dyn TileSink> = if args.out.contains("://") {
        runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the I/O runtime")?;
        let url =
            url::Url::parse(&args.out).with_context(|| format!("{:?} is not a URL", args.out))?;
        if url.scheme() == "s3" {
            let mut builder = object_store::aws::AmazonS3Builder::from_env().with_url(url.as_str());
            if let Some(endpoint) = &args.s3_endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            let store = builder
                .build()
                .with_context(|| format!("cannot open the S3 bucket of {}", args.out))?;
            let prefix = object_store::path::Path::from(url.path().trim_start_matches('/'));
            Box::new(
                ObjectStoreSink::new(Arc::new(store), prefix, runtime.handle().clone())
                    .with_http_headers(&args.cache_control),
            )
        } else {
            let (store, prefix) = object_store::parse_url(&url)
                .with_context(|| format!("cannot open the object store {}", args.out))?;
            Box::new(ObjectStoreSink::new(
                Arc::from(store),
                prefix,
                runtime.handle().clone(),
            ))
        }
    } else if args.out.ends_with(".pmtiles") {
        let [w, s, e, n] = layer
            .bounds()
            .map(|b| {
                let (w, n) = unit_to_lonlat(b.min_x, b.min_y);
                let (e, s) = unit_to_lonlat(b.max_x, b.max_y);
                [w, s, e, n]
            })
            .unwrap_or([-180.0, -85.0511, 180.0, 85.0511]);
        Box::new(PmTilesSink::create(
            &args.out,
            args.zooms.0,
            args.zooms.1,
            [w, s, e, n],
        )?)
    } else {
        let dir = PathBuf::from(&args.out);
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
