//! `tilefarm serve` and `tilefarm worker`: the farm's processes.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use tilefarm_api::{ApiConfig, AppState, ServerLimits, Transport};
use tilefarm_queue::{JobStore, LocalQueue, QueuePolicy};
use tilefarm_worker::{
    BrokerConfig, Drain, Farm, FarmConfig, Objects, run_local_relay, run_local_worker, run_relay,
    run_worker, serve_worker_endpoint,
};
use tokio_util::sync::CancellationToken;

/// Where the farm's shared parts are.
#[derive(Debug, Args)]
pub struct FarmArgs {
    /// RabbitMQ URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f.
    #[arg(long, env = "TILEFARM_AMQP_URL")]
    pub amqp: Option<String>,
    /// PostgreSQL URL of the job store, e.g. postgres://user@host/tilefarm.
    #[arg(long, env = "TILEFARM_DATABASE_URL")]
    pub database: Option<String>,
    /// Object store for uploads and tiles: s3://bucket/prefix, file:///dir or a directory.
    #[arg(long, env = "TILEFARM_STORE")]
    pub store: Option<String>,
    /// S3-compatible endpoint for s3:// stores (credentials and region come from
    /// the usual AWS_* variables).
    #[arg(long, env = "TILEFARM_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// `Cache-Control` of tiles.
    #[arg(long, env = "TILEFARM_CACHE_CONTROL", default_value = tilefarm_worker::DEFAULT_CACHE_CONTROL)]
    pub cache_control: String,
    /// Deliveries of one task message before the broker dead-letters it.
    #[arg(long, env = "TILEFARM_DELIVERY_LIMIT", default_value_t = 5)]
    pub delivery_limit: i64,
    /// Folder of the embedded mode (used when --amqp, --database and --store
    /// are all absent): its SQLite job store and its tiles.
    #[arg(long, env = "TILEFARM_DATA_DIR", default_value = "tilefarm-data")]
    pub data_dir: std::path::PathBuf,
    /// Pauses before each retry of a failed task, in milliseconds, comma-separated.
    #[arg(
        long,
        env = "TILEFARM_RETRY_DELAYS_MS",
        value_delimiter = ',',
        default_value = "1000,5000,30000"
    )]
    pub retry_delays_ms: Vec<u64>,
}

/// The render side of a farm process.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Tasks run at once (and the broker's prefetch); also the render threads.
    #[arg(long, env = "TILEFARM_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Tiles per metatile side.
    #[arg(long, default_value_t = 8)]
    pub metatile: u32,
    /// After each edit or replaced data, POST the changed tile paths here as
    /// JSON: {"job_id", "layer_id", "version", "paths"}.
    #[arg(long, env = "TILEFARM_INVALIDATE_WEBHOOK", value_name = "URL")]
    pub invalidate_webhook: Option<String>,
    /// After each edit or replaced data, send `PURGE URL/tiles/{layer}/{z}/{x}/{y}.png`
    /// for each changed tile to this cache (a CDN or a proxy such as Varnish).
    #[arg(long, env = "TILEFARM_PURGE_URL", value_name = "URL")]
    pub purge_url: Option<String>,
    /// The most tiles one job may render: a job past it fails at planning,
    /// saying how many it would take.
    #[arg(long, env = "TILEFARM_MAX_JOB_TILES", default_value_t = tilefarm_worker::DEFAULT_MAX_JOB_TILES)]
    pub max_job_tiles: u64,
    /// Serve this worker's /metrics (Prometheus), /healthz and /drain (stop
    /// taking work, answer once the tasks in hand are done: a preStop hook) here.
    #[arg(long, env = "TILEFARM_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TILEFARM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Bearer token that uploads, cancels and the job list require.
    #[arg(long, env = "TILEFARM_TOKEN")]
    pub token: Option<String>,
    /// Largest upload accepted, in megabytes.
    #[arg(long, default_value_t = 256)]
    pub max_upload_mb: u64,
    /// Deepest zoom an upload may ask for.
    #[arg(long, default_value_t = 18)]
    pub max_zoom: u8,
    /// Web origins whose pages may use the API from a browser (CORS),
    /// comma-separated, like `https://maps.example.com`; `*` allows any.
    #[arg(
        long,
        env = "TILEFARM_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = "*"
    )]
    pub cors_origins: Vec<String>,
    /// Proxies whose X-Forwarded-Host and X-Forwarded-Proto are believed (for
    /// TileJSON's tile URLs): addresses or networks, comma-separated, like
    /// `10.0.0.0/8,127.0.0.1`. From anyone else those headers are ignored.
    #[arg(long, env = "TILEFARM_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Writes (uploads, edits, cancels) a minute allowed from each client
    /// address and each token; past them, 429 with Retry-After. 0: no limit.
    #[arg(long, env = "TILEFARM_WRITES_PER_MINUTE", default_value_t = 300)]
    pub writes_per_minute: u32,
    /// Job event streams (server-sent events) open at once; past them, 503.
    #[arg(long, env = "TILEFARM_MAX_EVENT_STREAMS", default_value_t = 256)]
    pub max_event_streams: usize,
    /// Seconds a client has to send a request's headers; an idle connection
    /// is closed after as long.
    #[arg(long, env = "TILEFARM_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Connections served at once; more wait to be accepted.
    #[arg(long, env = "TILEFARM_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds after a job failed or was cancelled that the sweep removes its
    /// uploaded data and prepared features, and the tiles of a layer never
    /// published (a failed job's dead letters can be replayed until then).
    #[arg(long, env = "TILEFARM_SWEEP_AFTER_SECS", default_value_t = 7 * 24 * 3600)]
    pub sweep_after_secs: u64,
    /// Seconds between sweeps; 0: never sweep in this process.
    #[arg(long, env = "TILEFARM_SWEEP_EVERY_SECS", default_value_t = 600)]
    pub sweep_every_secs: u64,
    /// Serve the API only, running no tasks in this process (farm mode).
    #[arg(long)]
    pub api_only: bool,
    /// Once serving, upload this GeoJSON file and show its job's progress.
    #[arg(long, value_name = "FILE")]
    pub upload: Option<std::path::PathBuf>,
    /// Zoom range of the --upload.
    #[arg(long, default_value = "0-5")]
    pub upload_zooms: String,
    #[command(flatten)]
    pub farm: FarmArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

#[derive(Debug, Args)]
pub struct WorkerCmdArgs {
    #[command(flatten)]
    pub farm: FarmArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// The shared parts, connected.
struct Parts {
    store: JobStore,
    objects: Objects,
    transport: Transport,
}

fn policy(args: &FarmArgs) -> QueuePolicy {
    QueuePolicy {
        delivery_limit: args.delivery_limit,
        retry_delays: args
            .retry_delays_ms
            .iter()
            .map(|ms| std::time::Duration::from_millis(*ms))
            .collect(),
    }
}

/// Connects to the farm's servers, or with none configured (and
/// `allow_embedded`) opens the embedded store, queue and folder.
async fn connect(args: &FarmArgs, allow_embedded: bool) -> Result<Parts> {
    let given = [
        ("--amqp", &args.amqp),
        ("--database", &args.database),
        ("--store", &args.store),
    ];
    let missing: Vec<&str> = given
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(name, _)| *name)
        .collect();
    if missing.len() == given.len() && allow_embedded {
        return embedded(args).await;
    }
    let (Some(amqp), Some(database), Some(store)) = (&args.amqp, &args.database, &args.store)
    else {
        anyhow::bail!(
            "a farm process needs --amqp, --database and --store (or TILEFARM_AMQP_URL, \
             TILEFARM_DATABASE_URL and TILEFARM_STORE); missing: {}",
            missing.join(", ")
        );
    };
    let db = crate::migrate::connect_store(database).await?;
    db.migrate()
        .await
        .context("the job store's migrations failed")?;
    let objects =
        Objects::open(store, args.s3_endpoint.as_deref())?.with_cache_control(&args.cache_control);
    Ok(Parts {
        store: db,
        objects,
        transport: Transport::Broker(BrokerConfig {
            url: amqp.clone(),
            policy: policy(args),
        }),
    })
}

async fn embedded(args: &FarmArgs) -> Result<Parts> {
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let db_path = dir.join("jobs.sqlite");
    let store = JobStore::open_sqlite(&db_path)
        .await
        .with_context(|| format!("cannot open the job store {}", db_path.display()))?;
    let requeued = store.requeue_pending().await?;
    if requeued > 0 {
        tracing::info!(requeued, "resuming the unfinished tasks of the last run");
    }
    let objects = Objects::open(&dir.join("store").to_string_lossy(), None)?
        .with_cache_control(&args.cache_control);
    tracing::info!(
        "embedded mode: job store {}, tiles under {}",
        db_path.display(),
        dir.join("store").display()
    );
    Ok(Parts {
        store,
        objects,
        transport: Transport::Local(LocalQueue::new(policy(args))),
    })
}

/// Starts the relay and, unless `workers` is `None`, the workers of a process.
fn start_background(
    parts: &Parts,
    workers: Option<(Arc<Farm>, usize)>,
    stop: &CancellationToken,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let (store, stop) = (parts.store.clone(), stop.clone());
    match &parts.transport {
        Transport::Broker(config) => {
            tasks.spawn(run_relay(store, config.clone(), stop.clone()));
            if let Some((farm, n)) = workers {
                tasks.spawn(run_worker(farm, config.clone(), n, stop));
            }
        }
        Transport::Local(queue) => {
            tasks.spawn(run_local_relay(store, queue.clone(), stop.clone()));
            if let Some((farm, n)) = workers {
                tasks.spawn(run_local_worker(farm, queue.clone(), n, stop));
            }
        }
    }
}

fn farm(parts: &Parts, args: &WorkerArgs) -> Result<(Arc<Farm>, usize)> {
    let concurrency = args
        .concurrency
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let config = FarmConfig {
        metatile: args.metatile,
        threads: concurrency,
        invalidation: tilefarm_worker::InvalidationConfig {
            webhook: args.invalidate_webhook.clone(),
            purge_url: args.purge_url.clone(),
        },
        max_job_tiles: args.max_job_tiles,
        ..FarmConfig::default()
    };
    let farm = Farm::new(parts.store.clone(), parts.objects.clone(), config)
        .context("cannot start the render threads")?;
    Ok((Arc::new(farm), concurrency))
}

/// Cancelled on SIGTERM or Ctrl-C.
fn stop_on_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
        }
        token.cancel();
    });
    stop
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")
}

pub fn serve(args: ServeArgs) -> Result<()> {
    runtime()?.block_on(async {
        let parts = connect(&args.farm, true).await?;
        if args.api_only && matches!(parts.transport, Transport::Local(_)) {
            anyhow::bail!("--api-only needs a farm (--amqp, --database, --store) to run the tasks");
        }
        let stop = stop_on_signal();
        let mut background = tokio::task::JoinSet::new();
        let workers = if args.api_only {
            None
        } else {
            Some(farm(&parts, &args.worker)?)
        };
        let drain = Drain {
            stop: stop.clone(),
            drained: CancellationToken::new(),
        };
        let endpoint = match (args.worker.metrics_listen, &workers) {
            (Some(_), None) => {
                anyhow::bail!(
                    "--metrics-listen is for processes that run tasks; the API serves /metrics"
                )
            }
            // The API's /metrics has the job store's figures.
            (Some(address), Some((farm, slots))) => {
                Some(start_endpoint(address, farm, *slots, false, drain.clone()).await?)
            }
            (None, _) => None,
        };
        start_background(&parts, workers, &stop, &mut background);
        if args.sweep_every_secs > 0 {
            background.spawn(crate::sweep::run_sweeper(
                parts.store.clone(),
                parts.objects.clone(),
                std::time::Duration::from_secs(args.sweep_after_secs),
                std::time::Duration::from_secs(args.sweep_every_secs),
                stop.clone(),
            ));
        }
        let config = ApiConfig {
            token: args.token.clone(),
            max_upload_bytes: args.max_upload_mb << 20,
            max_zoom: args.max_zoom,
            cache_control: args.farm.cache_control.clone(),
            cors_origins: args.cors_origins.clone(),
            writes_per_minute: args.writes_per_minute,
            max_event_streams: args.max_event_streams,
            trusted_proxies: tilefarm_api::parse_trusted(&args.trusted_proxies)
                .map_err(|e| anyhow::anyhow!("--trusted-proxies: {e}"))?,
            ..ApiConfig::default()
        };
        let state = AppState::new(
            parts.store.clone(),
            parts.objects.clone(),
            config,
            parts.transport.clone(),
        );
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        tracing::info!("serving on http://{address}");
        if let Some(file) = args.upload.clone() {
            let upload = crate::upload::UploadArgs::for_file(
                file,
                format!("http://{address}"),
                args.upload_zooms.clone(),
                args.token.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = crate::upload::upload(upload).await {
                    tracing::error!("the upload failed: {e:#}");
                }
            });
        }
        let shutdown = stop.clone();
        let limits = ServerLimits {
            header_timeout: std::time::Duration::from_secs(args.header_timeout_secs),
            max_connections: args.max_connections,
            ..ServerLimits::default()
        };
        tilefarm_api::serve(listener, tilefarm_api::router(state), limits, shutdown)
            .await
            .context("the HTTP server failed")?;
        while background.join_next().await.is_some() {}
        drain.drained.cancel();
        if let Some(endpoint) = endpoint {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), endpoint).await;
        }
        tracing::info!("stopped");
        Ok(())
    })
}

pub fn worker(args: WorkerCmdArgs) -> Result<()> {
    runtime()?.block_on(async {
        let parts = connect(&args.farm, false).await?;
        let workers = farm(&parts, &args.worker)?;
        let stop = stop_on_signal();
        let drain = Drain {
            stop: stop.clone(),
            drained: CancellationToken::new(),
        };
        let endpoint = match args.worker.metrics_listen {
            Some(address) => {
                Some(start_endpoint(address, &workers.0, workers.1, true, drain.clone()).await?)
            }
            None => None,
        };
        let mut background = tokio::task::JoinSet::new();
        start_background(&parts, Some(workers), &stop, &mut background);
        // The worker ends on a stop; then the relay is stopped too.
        while let Some(done) = background.join_next().await {
            if done.is_ok() {
                stop.cancel();
            }
        }
        drain.drained.cancel();
        if let Some(endpoint) = endpoint {
            // Let a waiting /drain have its answer.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), endpoint).await;
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// Starts a worker's /metrics, /healthz and /drain endpoint; `with_store`:
/// its /metrics has the job store's figures (the job durations and the
/// outbox), which a process with an API serves there instead.
async fn start_endpoint(
    address: SocketAddr,
    farm: &Farm,
    slots: usize,
    with_store: bool,
    drain: Drain,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} for metrics"))?;
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    let metrics = farm.metrics.clone();
    metrics.slots.set(i64::try_from(slots).unwrap_or(i64::MAX));
    let store = with_store.then(|| farm.store.clone());
    Ok(tokio::spawn(async move {
        if let Err(e) = serve_worker_endpoint(listener, metrics, store, drain).await {
            tracing::warn!("the metrics endpoint failed: {e}");
        }
    }))
}
