//! One task of the farm, start to finish: ingest an upload (validate, store the
//! prepared features, plan the render) or render one metatile into object storage.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tilefarm_queue::{Completion, JobStore, RenderTask, StoreError, TaskContext, TaskMessage};
use tilefarm_renderer::{
    Layer, MAX_ZOOM, MetaTile, ReadOptions, Rgba, Style, TileId, ZoomLayer, read_geojson,
    unit_to_lonlat,
};
use uuid::Uuid;

use crate::objects::Objects;
use crate::plan::plan_render;
use crate::pyramid::{UniformPngs, render_metatile_into};
use crate::sink::{SinkResult, TileSink};

/// How the farm cuts and renders work.
#[derive(Clone, Debug)]
pub struct FarmConfig {
    /// Tiles per metatile side; the same as `tilefarm render --metatile` gives
    /// the same tiles.
    pub metatile: u32,
    pub tile_size: u32,
    /// Render threads.
    pub threads: usize,
    /// Tile uploads in flight per task.
    pub uploads_in_flight: usize,
}

impl Default for FarmConfig {
    fn default() -> Self {
        FarmConfig {
            metatile: 8,
            tile_size: 256,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            uploads_in_flight: 16,
        }
    }
}

/// Why a task did not finish.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// It may work next time (a store, database or network hiccup): retry it.
    #[error("{0}")]
    Transient(String),
    /// It never will (a bug, a task that makes no sense): fail the job.
    #[error("{0}")]
    Permanent(String),
    /// The job store cannot be reached: hold the task until it can, without
    /// spending an attempt (an outage is nobody's task's fault).
    #[error("{0}")]
    StoreDown(String),
}

fn transient(e: impl std::fmt::Display) -> TaskError {
    TaskError::Transient(e.to_string())
}

impl From<StoreError> for TaskError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Protocol(_)
                | sqlx::Error::Tls(_),
            ) => TaskError::StoreDown(e.to_string()),
            StoreError::Database(ref db) if is_connection_lost(db) => {
                TaskError::StoreDown(e.to_string())
            }
            StoreError::Database(_) => TaskError::Transient(e.to_string()),
            other => TaskError::Permanent(other.to_string()),
        }
    }
}

/// PostgreSQL's "the server is shutting down or gone" errors (class 57P, 08).
fn is_connection_lost(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("57P") || c.starts_with("08"))
}

/// The worker's side of the farm: the job store, the object store, the render
/// threads and a cache of prepared layers.
#[derive(Debug)]
pub struct Farm {
    pub store: JobStore,
    pub objects: Objects,
    pub config: FarmConfig,
    pool: rayon::ThreadPool,
    layers: LayerCache,
}

impl Farm {
    pub fn new(store: JobStore, objects: Objects, config: FarmConfig) -> std::io::Result<Farm> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("render-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Farm {
            store,
            objects,
            config,
            pool,
            layers: LayerCache::default(),
        })
    }

    /// Runs one task. Bad data is not an error here: it fails the job with a
    /// message for the uploader, and the task is done.
    pub async fn run_task(&self, msg: &TaskMessage) -> Result<(), TaskError> {
        let Some(ctx) = self.store.task_context(msg.task).await? else {
            return Err(TaskError::Permanent(format!(
                "task {} is not in the job store",
                msg.task
            )));
        };
        if !ctx.is_live() {
            tracing::debug!(job_id = %ctx.job_id, task_id = %ctx.task_id, "task already settled");
            return Ok(());
        }
        match ctx.kind.as_str() {
            "ingest" => self.ingest(&ctx).await,
            "render" => self.render(&ctx).await,
            other => Err(TaskError::Permanent(format!("unknown task kind {other:?}"))),
        }
    }

    /// Fails a job with a message for the uploader, logged with the job's id.
    pub async fn fail_job(&self, job_id: Uuid, code: &str, message: &str) -> Result<(), TaskError> {
        tracing::warn!(job_id = %job_id, code, "job failed: {message}");
        self.store.fail_job(job_id, code, message).await?;
        Ok(())
    }

    async fn ingest(&self, ctx: &TaskContext) -> Result<(), TaskError> {
        self.store.set_stage(ctx.job_id, "ingest").await?;
        let style = match Style::from_json(&ctx.style.to_string()) {
            Ok(s) => s,
            Err(e) => {
                return self
                    .fail_job(ctx.job_id, "invalid_style", &e.to_string())
                    .await;
            }
        };
        let source = Path::from(ctx.source_key.as_str());
        let data = match self.objects.store.get(&source).await {
            Ok(r) => r.bytes().await.map_err(transient)?,
            Err(object_store::Error::NotFound { .. }) => {
                let message = format!("the uploaded data ({source}) is missing from the store");
                return self.fail_job(ctx.job_id, "upload_missing", &message).await;
            }
            Err(e) => return Err(transient(e)),
        };
        let (config, zooms) = (self.config.clone(), ctx.min_zoom..=ctx.max_zoom);
        let ingested = self
            .on_pool(move || -> Result<Ingested, String> {
                let report =
                    read_geojson(&data[..], &ReadOptions::default()).map_err(|e| e.to_string())?;
                let mut features = Vec::with_capacity(data.len());
                for f in &report.features {
                    serde_json::to_writer(&mut features, &f.to_geojson()).expect("in memory");
                    features.push(b'\n');
                }
                let layer = Layer::new(&report.features, &style);
                let plan = plan_render(&layer, zooms, config.metatile, config.tile_size);
                let bounds = layer.bounds().map(|b| {
                    let (w, n) = unit_to_lonlat(b.min_x, b.min_y);
                    let (e, s) = unit_to_lonlat(b.max_x, b.max_y);
                    [w, s, e, n]
                });
                Ok(Ingested {
                    features: Bytes::from(features),
                    count: report.features.len() as i64,
                    tasks: plan
                        .metatiles
                        .iter()
                        .map(|m| RenderTask {
                            z: m.z,
                            x: m.x,
                            y: m.y,
                            n: m.n,
                            tiles: m.tile_count() as u32,
                        })
                        .collect(),
                    bounds,
                })
            })
            .await?;
        let ingested = match ingested {
            Ok(i) => i,
            Err(message) => return self.fail_job(ctx.job_id, "invalid_geojson", &message).await,
        };
        let key = self.objects.prepared_key(ctx.layer_id, ctx.version);
        self.objects
            .store
            .put(&key, ingested.features.into())
            .await
            .map_err(transient)?;
        self.store
            .record_prepared(
                ctx.layer_id,
                ctx.version,
                key.as_ref(),
                ingested.count,
                ingested.bounds,
            )
            .await?;
        match self
            .store
            .plan(ctx.job_id, ctx.task_id, &ingested.tasks)
            .await
        {
            Ok(_) => {}
            // Cancelled while ingesting: nothing more to do.
            Err(StoreError::Conflict(why)) => tracing::info!(job_id = %ctx.job_id, "{why}"),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(
            job_id = %ctx.job_id,
            layer_id = %ctx.layer_id,
            features = ingested.count,
            tasks = ingested.tasks.len(),
            tiles = ingested.tasks.iter().map(|t| u64::from(t.tiles)).sum::<u64>(),
            "ingested and planned"
        );
        Ok(())
    }

    async fn render(&self, ctx: &TaskContext) -> Result<(), TaskError> {
        let (Some(z), Some(x), Some(y), Some(n)) = (ctx.z, ctx.x, ctx.y, ctx.n) else {
            return Err(TaskError::Permanent(
                "a render task without its metatile".into(),
            ));
        };
        let meta = MetaTile { z, x, y, n };
        let prepared = self.prepared(ctx).await?;
        let tile_size = self.config.tile_size;
        let tiles = self
            .on_pool(move || {
                let zl = prepared.zoom(z, tile_size);
                let sink = Collect::default();
                render_metatile_into(zl, meta, true, &sink, &UniformPngs::default())
                    .map(|_| sink.tiles.into_inner().expect("lock"))
                    .map_err(|e| e.to_string())
            })
            .await?
            .map_err(TaskError::Permanent)?;
        futures_util::stream::iter(tiles)
            .map(|(t, png)| self.objects.put_tile(ctx.layer_id, t, png))
            .buffer_unordered(self.config.uploads_in_flight.max(1))
            .try_collect::<Vec<()>>()
            .await
            .map_err(transient)?;
        let completion = self.store.complete_task(ctx.task_id).await?;
        tracing::debug!(
            job_id = %ctx.job_id,
            task_id = %ctx.task_id,
            "rendered metatile {z}/{x}/{y} ({n}x{n})"
        );
        if let Completion::Counted { finished: true, .. } = completion {
            tracing::info!(job_id = %ctx.job_id, layer_id = %ctx.layer_id, "job succeeded");
        }
        Ok(())
    }

    /// The prepared layer of a task's layer version, loaded once per worker.
    async fn prepared(&self, ctx: &TaskContext) -> Result<Arc<PreparedLayer>, TaskError> {
        let cell = self.layers.cell(ctx.layer_id, ctx.version);
        let loaded = cell
            .get_or_try_init(|| async {
                let Some(key) = &ctx.prepared_key else {
                    return Err(TaskError::Permanent(
                        "the layer version was never ingested".into(),
                    ));
                };
                let data = self
                    .objects
                    .store
                    .get(&Path::from(key.as_str()))
                    .await
                    .map_err(transient)?
                    .bytes()
                    .await
                    .map_err(transient)?;
                let style = Style::from_json(&ctx.style.to_string())
                    .map_err(|e| TaskError::Permanent(e.to_string()))?;
                self.on_pool(move || {
                    let report = read_geojson(&data[..], &ReadOptions::default())
                        .map_err(|e| TaskError::Permanent(format!("prepared features: {e}")))?;
                    Ok(Arc::new(PreparedLayer {
                        layer: Layer::new(&report.features, &style),
                        zooms: std::array::from_fn(|_| OnceLock::new()),
                    }))
                })
                .await?
            })
            .await?;
        Ok(loaded.clone())
    }

    /// Runs CPU work on the render threads. A panic becomes a permanent error
    /// instead of taking the worker down.
    async fn on_pool<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, TaskError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(AssertUnwindSafe(work)));
        });
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown".into());
                Err(TaskError::Permanent(format!(
                    "the renderer panicked: {why}"
                )))
            }
            Err(_) => Err(TaskError::Transient("the render pool stopped".into())),
        }
    }
}

struct Ingested {
    features: Bytes,
    count: i64,
    tasks: Vec<RenderTask>,
    bounds: Option<[f64; 4]>,
}

/// A layer version ready to render, with its zooms prepared on first use.
#[derive(Debug)]
struct PreparedLayer {
    layer: Layer,
    zooms: [OnceLock<ZoomLayer>; MAX_ZOOM as usize + 1],
}

impl PreparedLayer {
    fn zoom(&self, z: u8, tile_size: u32) -> &ZoomLayer {
        self.zooms[usize::from(z)].get_or_init(|| ZoomLayer::new(&self.layer, z, tile_size))
    }
}

type LayerCell = Arc<tokio::sync::OnceCell<Arc<PreparedLayer>>>;

/// Layer versions a worker has loaded, the most recently used first.
#[derive(Debug, Default)]
struct LayerCache {
    entries: Mutex<VecDeque<((Uuid, i32), LayerCell)>>,
}

const LAYERS_KEPT: usize = 4;

impl LayerCache {
    fn cell(&self, layer: Uuid, version: i32) -> LayerCell {
        let mut entries = self.entries.lock().expect("lock");
        let key = (layer, version);
        let cell = match entries.iter().position(|(k, _)| *k == key) {
            Some(i) => entries.remove(i).expect("present").1,
            None => Arc::default(),
        };
        entries.push_front((key, cell.clone()));
        entries.truncate(LAYERS_KEPT);
        cell
    }
}

/// Collects a metatile's tiles in memory, to be uploaded concurrently.
#[derive(Default)]
struct Collect {
    tiles: Mutex<Vec<(TileId, Bytes)>>,
}

impl TileSink for Collect {
    fn put(&self, tile: TileId, png: &[u8]) -> SinkResult<()> {
        self.tiles
            .lock()
            .expect("lock")
            .push((tile, Bytes::copy_from_slice(png)));
        Ok(())
    }

    fn put_uniform(&self, tile: TileId, _color: Rgba, png: &[u8]) -> SinkResult<()> {
        self.put(tile, png)
    }
}
