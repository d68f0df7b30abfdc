//! tilefarm workers: turning layers into stored tiles.
//!
//! [`render_pyramid`] draws every tile of a zoom range metatile by metatile on the
//! rayon pool and hands each PNG to a [`TileSink`]: a [`DirSink`] (`z/x/y.png`
//! files), an [`ObjectStoreSink`] (any `object_store` backend) or a
//! [`PmTilesSink`] (one PMTiles archive).
#![forbid(unsafe_code)]

mod change;
mod farm;
mod invalidate;
mod metrics;
mod plan;
mod pmtiles;
mod pyramid;
mod run;
mod sink;

pub use change::{block, mask, merge_tasks, partial, plan_change, tiles_in};
pub use farm::{DEFAULT_MAX_JOB_TILES, Farm, FarmConfig, TaskError, TaskRun};
pub use invalidate::{ChangedTiles, InvalidationConfig};
pub use metrics::{
    ByKind, Drain, KindLabel, WorkerMetrics, metrics_router, openmetrics, serve_worker_endpoint,
};
pub use plan::{
    BLOCK_MIN_TILES, BLOCK_SIDE, BLOCK_TILES, OverBudget, PlannedMeta, RenderPlan, blocks_of,
    plan_render, plan_render_within,
};
pub use pmtiles::PmTilesSink;
pub use pyramid::{
    MetaTileReport, PyramidOptions, RenderError, RenderedTile, Summary, TileWork, check_options,
    render_metatile_into, render_pyramid, render_tiles, render_tiles_into, render_tiles_measured,
};
pub use run::{run_local_relay, run_local_worker, run_relay, run_worker};
pub use sink::{DirSink, ObjectStoreSink, SinkError, SinkResult, TileSink};
pub use tilefarm_formats::{Applied, Edit};
pub use tilefarm_objects::{DEFAULT_CACHE_CONTROL, Objects, OpenError};
pub use tilefarm_queue::{BrokerConfig, parse_zoom_range};
pub use tilefarm_renderer::UniformPngs;
