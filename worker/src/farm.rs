//! One task of the farm, start to finish: ingest an upload (validate, store the
//! prepared features, plan the render) or render one metatile into object storage.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tilefarm_formats::Edit;
use tilefarm_objects::Objects;
use tilefarm_queue::{
    Completion, JobStore, Stage, StoreError, TaskContext, TaskKind, TaskMessage, TaskState,
};
use tilefarm_renderer::{
    Feature, Layer, MAX_ZOOM, MetaTile, ReadOptions, Regions, Style, UniformPngs, ZoomLayer,
    read_geojson, unit_to_lonlat,
};
use tracing::Instrument;
use uuid::Uuid;

use crate::change::{block, merge_tasks, partial, plan_change, tiles_in};
use crate::invalidate::{ChangedTiles, InvalidationConfig};
use crate::metrics::WorkerMetrics;
use crate::plan::{OverBudget, RenderPlan, plan_render_within};
use crate::pyramid::{RenderedTile, render_tiles_measured};

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
    /// Where the tiles a change rewrote are reported.
    pub invalidation: InvalidationConfig,
    /// The most tiles one job may render; a job past it fails at planning
    /// (`too_many_tiles`), saying how many it would take.
    pub max_job_tiles: u64,
}

/// The default of [`FarmConfig::max_job_tiles`].
pub const DEFAULT_MAX_JOB_TILES: u64 = 5_000_000;

impl Default for FarmConfig {
    fn default() -> Self {
        FarmConfig {
            metatile: 8,
            tile_size: 256,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            uploads_in_flight: 16,
            invalidation: InvalidationConfig::default(),
            max_job_tiles: DEFAULT_MAX_JOB_TILES,
        }
    }
}

/// What stopped a task: the error itself, with its own sources.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a task did not finish.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// It may work next time (a store, database or network hiccup): retry it.
    #[error("{0}")]
    Transient(#[source] Cause),
    /// It never will (a bug, a task that makes no sense): fail the job.
    #[error("{0}")]
    Permanent(#[source] Cause),
    /// The job store cannot be reached: hold the task until it can, without
    /// spending an attempt (an outage is nobody's task's fault).
    #[error("{0}")]
    StoreDown(#[source] StoreError),
}

fn transient(e: impl Into<Cause>) -> TaskError {
    TaskError::Transient(e.into())
}

impl From<StoreError> for TaskError {
    fn from(e: StoreError) -> Self {
        match e {
            _ if e.is_unavailable() => TaskError::StoreDown(e),
            StoreError::Database(_) | StoreError::Migrate(_) => TaskError::Transient(e.into()),
            other => TaskError::Permanent(other.into()),
        }
    }
}

/// The worker's side of the farm: the job store, the object store, the render
/// threads and a cache of prepared layers.
#[derive(Debug)]
pub struct Farm {
    pub store: JobStore,
    pub objects: Objects,
    pub config: FarmConfig,
    /// What `--metrics-listen` serves.
    pub metrics: Arc<WorkerMetrics>,
    pool: rayon::ThreadPool,
    layers: LayerCache,
    http: reqwest::Client,
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
            metrics: Arc::default(),
            pool,
            layers: LayerCache::default(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .map_err(std::io::Error::other)?,
        })
    }

    /// Runs one task. Bad data is not an error here: it fails the job with a
    /// message for the uploader, and the task is done.
    pub async fn run_task(&self, msg: &TaskMessage) -> TaskRun {
        let ctx = match self.store.task_context(msg.task).await {
            Ok(Some(ctx)) => ctx,
            Ok(None) => {
                let why = format!("task {} is not in the job store", msg.task);
                return TaskRun::unknown(Err(TaskError::Permanent(why.into())));
            }
            Err(e) => return TaskRun::unknown(Err(e.into())),
        };
        let kind = ctx.kind;
        let span = tracing::Span::current();
        span.record("kind", kind.as_str());
        span.record("layer_id", tracing::field::display(ctx.layer_id));
        let result = self.run_live(&ctx).await;
        TaskRun {
            kind: Some(kind),
            layer_id: Some(ctx.layer_id),
            result,
        }
    }

    async fn run_live(&self, ctx: &TaskContext) -> Result<(), TaskError> {
        if !ctx.is_live() {
            tracing::debug!(job_id = %ctx.job_id, task_id = %ctx.task_id, "task already settled");
            if ctx.task_state != TaskState::Done {
                // Delivered again after its job ended: whoever held it before
                // is gone, so it no longer holds up the layer's next job.
                self.store.release_task(ctx.task_id).await?;
            }
            return Ok(());
        }
        WorkerMetrics::count(&self.metrics.started, ctx.kind.as_str());
        let result = match ctx.kind {
            TaskKind::Ingest | TaskKind::Edit => self.ingest(ctx).await,
            TaskKind::Render => {
                let (z, x, y) = (ctx.z, ctx.x, ctx.y);
                let span = tracing::info_span!("metatile", z, x, y);
                self.render(ctx).instrument(span).await
            }
            TaskKind::Invalidate => self.invalidate(ctx).await,
            TaskKind::Plan => Err(TaskError::Permanent(
                "plan tasks are settled by their ingest, never run".into(),
            )),
        };
        if result.is_ok() {
            WorkerMetrics::count(&self.metrics.succeeded, ctx.kind.as_str());
        }
        result
    }

    /// Fails a job with a message for the uploader, logged with the job's id.
    pub async fn fail_job(&self, job_id: Uuid, code: &str, message: &str) -> Result<(), TaskError> {
        tracing::warn!(job_id = %job_id, code, "job failed: {message}");
        self.store.fail_job(job_id, code, message).await?;
        Ok(())
    }

    async fn ingest(&self, ctx: &TaskContext) -> Result<(), TaskError> {
        self.store.set_stage(ctx.job_id, Stage::Ingest).await?;
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
        let read_options = match self.upload_options(&source).await? {
            Ok(o) => o,
            Err(message) => return self.fail_job(ctx.job_id, "invalid_options", &message).await,
        };
        // A change builds on the published version; a first upload on nothing.
        let base = if ctx.version > 1 {
            let base = self.store.change_base(ctx.layer_id).await?;
            let published = match &base.published {
                Some((version, key)) => Some(self.load(ctx.layer_id, *version, key, &style).await?),
                None => None,
            };
            Some((published, base.unfinished))
        } else {
            None
        };
        let is_edit = ctx.kind == TaskKind::Edit;
        let (config, zooms) = (self.config.clone(), ctx.min_zoom..=ctx.max_zoom);
        let zooms_asked = zooms.clone();
        let ingested = self
            .on_pool(move || -> Result<Ingested, (&'static str, String)> {
                let mut summary = None;
                let (features, edited) = if is_edit {
                    let edit =
                        Edit::from_json(&data).map_err(|e| ("invalid_edit", e.to_string()))?;
                    let old = match &base {
                        Some((Some(p), _)) => p.features.as_ref().clone(),
                        _ => Vec::new(),
                    };
                    let applied = edit
                        .apply(old)
                        .map_err(|e| ("unknown_feature", e.to_string()))?;
                    (applied.features, Some((applied.before, applied.after)))
                } else {
                    let upload = tilefarm_formats::read_bytes(&data, &read_options)
                        .map_err(|e| (e.code(), e.to_string()))?;
                    let json = serde_json::to_vec(&upload.summary()).expect("in memory");
                    summary = Some(Bytes::from(json));
                    (upload.report.features, None)
                };
                let mut bytes = Vec::with_capacity(data.len());
                for f in &features {
                    serde_json::to_writer(&mut bytes, &f.to_geojson()).expect("in memory");
                    bytes.push(b'\n');
                }
                let layer = Layer::new(&features, &style);
                let (m, ts, limit) = (config.metatile, config.tile_size, config.max_job_tiles);
                let over = |e: OverBudget| ("too_many_tiles", e.to_string());
                // The new data within the limit first, so that planning it
                // stays bounded.
                let plan = plan_render_within(&layer, zooms.clone(), m, ts, limit).map_err(over)?;
                let tasks: Vec<tilefarm_queue::RenderTask> = match base {
                    None => plan
                        .metatiles
                        .iter()
                        .map(|p| partial(p.meta, &p.tiles, false))
                        .collect(),
                    Some((old, unfinished)) => {
                        let empty = Layer::new(&[], &style);
                        let old = old.as_ref().map_or(&empty, |p| &p.layer);
                        let edited = edited.as_ref().map(|(b, a)| (b.as_slice(), a.as_slice()));
                        merge_tasks(plan_change(old, &plan, edited, zooms, m, ts), unfinished, m)
                    }
                };
                let tiles: u64 = tasks.iter().map(|t| u64::from(t.tiles)).sum();
                let plan_summary = plan_summary(&plan, &tasks);
                if tiles > limit {
                    return Err(over(OverBudget {
                        min_zoom: *zooms_asked.start(),
                        max_zoom: *zooms_asked.end(),
                        estimate: tiles,
                        exact: true,
                        counted: tiles,
                        counted_through: Some(*zooms_asked.end()),
                        limit,
                    }));
                }
                // West above east when the data crosses the antimeridian.
                let bounds = layer.bounds().zip(layer.x_span()).map(|(b, (west, east))| {
                    let (w, n) = unit_to_lonlat(west, b.min_y);
                    let (e, s) = unit_to_lonlat(east, b.max_y);
                    [w, s, e, n]
                });
                Ok(Ingested {
                    plan: Bytes::from(serde_json::to_vec(&plan_summary).expect("in memory")),
                    regions: Regions::new(plan.regions),
                    region_tiles: plan.region_tiles,
                    bytes: Bytes::from(bytes),
                    summary,
                    count: features.len() as i64,
                    tasks,
                    bounds,
                    prepared: PreparedLayer::new(layer, features),
                })
            })
            .await?;
        let ingested = match ingested {
            Ok(i) => i,
            Err((code, message)) => return self.fail_job(ctx.job_id, code, &message).await,
        };
        let key = self.objects.prepared_key(ctx.layer_id, ctx.version);
        if let Some(summary) = ingested.summary {
            let summary_key = self.objects.summary_key(ctx.layer_id, ctx.version);
            self.objects
                .store
                .put(&summary_key, summary.into())
                .await
                .map_err(transient)?;
        }
        self.objects
            .store
            .put(&key, ingested.bytes.into())
            .await
            .map_err(transient)?;
        // The regions answer the tiles no task renders, from the version's
        // publication on.
        self.objects
            .put_regions(ctx.layer_id, ctx.version, &ingested.regions)
            .await
            .map_err(transient)?;
        self.objects
            .store
            .put(
                &self.objects.plan_key(ctx.layer_id, ctx.version),
                ingested.plan.into(),
            )
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
        // This worker has the new version at hand: its render tasks and the
        // layer's next edit need not read it back.
        let _ = self
            .layers
            .cell(ctx.layer_id, ctx.version)
            .set(Arc::new(ingested.prepared));
        self.metrics
            .layer_cache_layers
            .set(self.layers.len() as i64);
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
            regions = ingested.regions.len(),
            region_tiles = ingested.region_tiles,
            "ingested and planned"
        );
        Ok(())
    }

    async fn render(&self, ctx: &TaskContext) -> Result<(), TaskError> {
        let (Some(z), Some(x), Some(y), Some(n)) = (ctx.z, ctx.x, ctx.y, ctx.n) else {
            return Err(TaskError::Permanent(
                "a render task without its block".into(),
            ));
        };
        let meta = MetaTile { z, x, y, n };
        // Taken, so that if the job ends while the tiles are written, the
        // layer's next job waits for them instead of racing them.
        if !self.store.claim_task(ctx.task_id).await? {
            return Ok(());
        }
        let prepared = self.prepared(ctx).await?;
        let (tile_size, metatile) = (self.config.tile_size, self.config.metatile);
        let tiles = tiles_in(meta, ctx.dirty.as_deref());
        let (rendered, work) = self
            .on_pool(move || {
                let zl = prepared.zoom(z, tile_size);
                render_tiles_measured(zl, meta, &tiles, metatile, &UniformPngs::default())
            })
            .await?
            .map_err(|e| TaskError::Permanent(e.into()))?;
        let m = &self.metrics;
        WorkerMetrics::time(&m.render_seconds, work.render);
        WorkerMetrics::time(&m.encode_seconds, work.encode);
        m.tiles_rendered.inc_by(rendered.len() as u64);
        m.tiles_one_colour.inc_by(work.one_colour);
        let produced = rendered.len();
        // A first render leaves transparent tiles out. A change compares each
        // tile with the one stored and rewrites (or deletes) only those that
        // differ, recording them first for the caches.
        let writes: Vec<RenderedTile> = if ctx.replaces {
            let changed = self.changed_tiles(ctx.layer_id, rendered).await?;
            let tiles: Vec<_> = changed.iter().map(|(t, _)| *t).collect();
            self.store
                .record_changed(ctx.task_id, &crate::change::mask(meta, &tiles))
                .await?;
            changed
        } else {
            rendered
                .into_iter()
                .filter(|(_, png)| png.is_some())
                .collect()
        };
        m.tiles_skipped.inc_by((produced - writes.len()) as u64);
        let (objects, layer) = (self.objects.clone(), ctx.layer_id);
        let started = std::time::Instant::now();
        futures_util::stream::iter(writes)
            .map(move |(t, png)| {
                let objects = objects.clone();
                async move {
                    match png {
                        Some(png) => objects.put_tile(layer, t, Bytes::from(png)).await,
                        None => objects.delete_tile(layer, t).await,
                    }
                }
            })
            .buffer_unordered(self.config.uploads_in_flight.max(1))
            .try_collect::<Vec<()>>()
            .await
            .map_err(transient)?;
        WorkerMetrics::time(&m.store_seconds, started.elapsed());
        let completion = self.store.complete_task(ctx.task_id).await?;
        tracing::debug!(
            job_id = %ctx.job_id,
            task_id = %ctx.task_id,
            "rendered {produced} tiles of block {z}/{x}/{y} ({n}x{n})"
        );
        if let Completion::Counted { finished: true, .. } = completion {
            tracing::info!(job_id = %ctx.job_id, layer_id = %ctx.layer_id, "job succeeded");
        }
        Ok(())
    }

    /// The rendered tiles that differ from the stored ones (a transparent tile
    /// differs from a stored one by being absent).
    async fn changed_tiles(
        &self,
        layer: Uuid,
        rendered: Vec<RenderedTile>,
    ) -> Result<Vec<RenderedTile>, TaskError> {
        let (objects, ids) = (
            self.objects.clone(),
            rendered.iter().map(|r| r.0).collect::<Vec<_>>(),
        );
        let stored: Vec<Option<Bytes>> = futures_util::stream::iter(ids)
            .map(move |t| {
                let objects = objects.clone();
                async move { objects.get_tile(layer, t).await }
            })
            .buffered(self.config.uploads_in_flight.max(1))
            .try_collect()
            .await
            .map_err(transient)?;
        Ok(rendered
            .into_iter()
            .zip(stored)
            .filter(|((_, new), old)| new.as_deref() != old.as_deref())
            .map(|(r, _)| r)
            .collect())
    }

    /// Reports the tiles a job changed to the log, the webhook and the cache,
    /// then completes the job.
    async fn invalidate(&self, ctx: &TaskContext) -> Result<(), TaskError> {
        let tasks = self.store.render_tasks(ctx.job_id).await?;
        let mut paths: Vec<String> = tasks
            .iter()
            .filter(|t| t.replaces)
            // A task that never recorded what it changed changed nothing.
            .flat_map(|t| tiles_in(block(t), Some(t.changed.as_deref().unwrap_or_default())))
            .map(|t| format!("/tiles/{}/{}/{}/{}.png", ctx.layer_id, t.z, t.x, t.y))
            .collect();
        paths.sort();
        paths.dedup();
        let changed = ChangedTiles {
            job_id: ctx.job_id,
            layer_id: ctx.layer_id,
            version: ctx.version,
            paths,
        };
        crate::invalidate::report(&self.config.invalidation, &self.http, &changed)
            .await
            .map_err(transient)?;
        if let Completion::Counted { finished: true, .. } =
            self.store.complete_task(ctx.task_id).await?
        {
            tracing::info!(job_id = %ctx.job_id, layer_id = %ctx.layer_id, "job succeeded");
        }
        Ok(())
    }

    /// The prepared layer of a task's layer version.
    async fn prepared(&self, ctx: &TaskContext) -> Result<Arc<PreparedLayer>, TaskError> {
        let Some(key) = &ctx.prepared_key else {
            return Err(TaskError::Permanent(
                "the layer version was never ingested".into(),
            ));
        };
        let style =
            Style::from_json(&ctx.style.to_string()).map_err(|e| TaskError::Permanent(e.into()))?;
        self.load(ctx.layer_id, ctx.version, key, &style).await
    }

    /// A layer version's prepared features (stored at `key`), loaded once per
    /// worker; the version a worker ingested is there already.
    async fn load(
        &self,
        layer: Uuid,
        version: i32,
        key: &str,
        style: &Style,
    ) -> Result<Arc<PreparedLayer>, TaskError> {
        let cell = self.layers.cell(layer, version);
        let m = &self.metrics;
        if cell.initialized() {
            m.layer_cache_hits.inc();
        } else {
            m.layer_cache_misses.inc();
        }
        m.layer_cache_layers.set(self.layers.len() as i64);
        let loaded = cell
            .get_or_try_init(|| async {
                let data = self
                    .objects
                    .store
                    .get(&Path::from(key))
                    .await
                    .map_err(transient)?
                    .bytes()
                    .await
                    .map_err(transient)?;
                let (key, style) = (key.to_string(), style.clone());
                self.on_pool(move || {
                    // A version edited down to no features is stored empty.
                    let features = if data.iter().all(u8::is_ascii_whitespace) {
                        Vec::new()
                    } else {
                        read_geojson(&data[..], &ReadOptions::default())
                            .map_err(|e| {
                                TaskError::Permanent(format!("prepared features {key}: {e}").into())
                            })?
                            .features
                    };
                    let layer = Layer::new(&features, &style);
                    Ok::<_, TaskError>(Arc::new(PreparedLayer::new(layer, features)))
                })
                .await?
            })
            .await?;
        Ok(loaded.clone())
    }

    /// The reading options stored beside an upload; the defaults when there are none.
    async fn upload_options(
        &self,
        source: &Path,
    ) -> Result<Result<tilefarm_formats::ReadOptions, String>, TaskError> {
        let key = Objects::upload_options_key(source);
        let bytes = match self.objects.store.get(&key).await {
            Ok(r) => r.bytes().await.map_err(transient)?,
            Err(object_store::Error::NotFound { .. }) => return Ok(Ok(Default::default())),
            Err(e) => return Err(transient(e)),
        };
        Ok(
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("the upload's options ({key}): {e}")),
        )
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
                Err(TaskError::Permanent(
                    format!("the renderer panicked: {why}").into(),
                ))
            }
            Err(_) => Err(TaskError::Transient("the render pool stopped".into())),
        }
    }
}

/// What running a task came to, and what it was (as far as the job store said).
#[derive(Debug)]
pub struct TaskRun {
    /// `None` when the job store did not say.
    pub kind: Option<TaskKind>,
    pub layer_id: Option<Uuid>,
    pub result: Result<(), TaskError>,
}

impl TaskRun {
    fn unknown(result: Result<(), TaskError>) -> TaskRun {
        TaskRun {
            kind: None,
            layer_id: None,
            result,
        }
    }

    /// The task's kind as a metric label: `unknown` when the store did not say.
    pub fn kind_label(&self) -> &'static str {
        self.kind.map_or("unknown", TaskKind::as_str)
    }
}

/// What a job's plan holds, for its status: the tiles its tasks render (the
/// progress total), the tiles the data's edges reach, the tiles its regions
/// stand for without being rendered or stored, and per zoom.
fn plan_summary(plan: &RenderPlan, tasks: &[tilefarm_queue::RenderTask]) -> serde_json::Value {
    let mut zooms: std::collections::BTreeMap<u8, (u64, u64)> = Default::default();
    for t in tasks {
        zooms.entry(t.z).or_default().0 += u64::from(t.tiles);
    }
    for m in &plan.metatiles {
        zooms.entry(m.meta.z).or_default().1 += m.tiles.len() as u64;
    }
    serde_json::json!({
        "tiles": tasks.iter().map(|t| u64::from(t.tiles)).sum::<u64>(),
        "edge_tiles": plan.tiles,
        "region_tiles": plan.region_tiles,
        "regions": plan.regions.len(),
        "pyramid_tiles": plan.pyramid_tiles,
        "zooms": zooms
            .into_iter()
            .map(|(z, (render, edges))| serde_json::json!({"zoom": z, "tiles": render, "edge_tiles": edges}))
            .collect::<Vec<_>>(),
    })
}

struct Ingested {
    bytes: Bytes,
    /// What the job renders and what its regions imply, as JSON.
    plan: Bytes,
    /// The new version's one-colour regions, and the tiles they stand for.
    regions: Regions,
    region_tiles: u64,
    /// What the uploader learns of the upload (not for edits).
    summary: Option<Bytes>,
    count: i64,
    tasks: Vec<tilefarm_queue::RenderTask>,
    bounds: Option<[f64; 4]>,
    /// The new version, ready for its render tasks and the next change.
    prepared: PreparedLayer,
}

/// A layer version ready to render, with its zooms prepared on first use.
#[derive(Debug)]
struct PreparedLayer {
    layer: Layer,
    /// The features it was made of, which the next edit applies to.
    features: Arc<Vec<Feature>>,
    zooms: [OnceLock<ZoomLayer>; MAX_ZOOM as usize + 1],
}

impl PreparedLayer {
    fn new(layer: Layer, features: Vec<Feature>) -> PreparedLayer {
        PreparedLayer {
            layer,
            features: Arc::new(features),
            zooms: std::array::from_fn(|_| OnceLock::new()),
        }
    }

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
    fn len(&self) -> usize {
        self.entries.lock().expect("lock").len()
    }

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
