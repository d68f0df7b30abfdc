//! Telling caches which tiles a job changed: a log line always, and when
//! configured a webhook POST and an HTTP `PURGE` of each tile to a cache.

use futures_util::{StreamExt, TryStreamExt};
use uuid::Uuid;

/// Where a job's changed tiles are reported, besides the log.
#[derive(Clone, Debug, Default)]
pub struct InvalidationConfig {
    /// Receives `POST` with `{"job_id", "layer_id", "version", "paths"}`.
    pub webhook: Option<String>,
    /// A cache's base URL (a CDN or a proxy such as Varnish): each changed tile
    /// gets `PURGE {purge_url}/tiles/{layer}/{z}/{x}/{y}.png`.
    pub purge_url: Option<String>,
}

/// The changed tiles of one job.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ChangedTiles {
    pub job_id: Uuid,
    pub layer_id: Uuid,
    pub version: i32,
    /// URL paths of the tile origin, `/tiles/{layer}/{z}/{x}/{y}.png`.
    pub paths: Vec<String>,
}

/// Paths per log line.
const LOG_LINE_PATHS: usize = 500;

/// Purges in flight at once.
const PURGES_IN_FLIGHT: usize = 16;

/// Reports `changed` to the log, the webhook and the cache. An error names the
/// hook that failed; the task is retried.
/// A webhook or purge that failed: worth another try.
#[derive(Debug, thiserror::Error)]
pub enum InvalidationError {
    #[error("{what}: {source}")]
    Unreachable {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what} answered {status}")]
    Refused {
        what: String,
        status: reqwest::StatusCode,
    },
}

pub async fn report(
    config: &InvalidationConfig,
    client: &reqwest::Client,
    changed: &ChangedTiles,
) -> Result<(), InvalidationError> {
    // One line per LOG_LINE_PATHS paths, so a large change stays readable.
    let parts = changed.paths.len().div_ceil(LOG_LINE_PATHS).max(1);
    for (i, chunk) in changed.paths.chunks(LOG_LINE_PATHS).enumerate() {
        tracing::info!(
            job_id = %changed.job_id,
            layer_id = %changed.layer_id,
            version = changed.version,
            tiles = changed.paths.len(),
            part = format_args!("{}/{parts}", i + 1),
            paths = %chunk.join(" "),
            "tiles changed"
        );
    }
    if let Some(url) = &config.webhook {
        let response = client
            .post(url)
            .json(changed)
            .send()
            .await
            .map_err(|source| InvalidationError::Unreachable {
                what: format!("invalidation webhook {url}"),
                source,
            })?;
        if !response.status().is_success() {
            return Err(InvalidationError::Refused {
                what: format!("invalidation webhook {url}"),
                status: response.status(),
            });
        }
    }
    if let Some(base) = &config.purge_url {
        let base = base.trim_end_matches('/');
        let purge = reqwest::Method::from_bytes(b"PURGE").expect("a valid method");
        futures_util::stream::iter(changed.paths.clone())
            .map(|path| {
                let (url, purge, client) = (format!("{base}{path}"), purge.clone(), client.clone());
                async move {
                    let status = client
                        .request(purge, &url)
                        .send()
                        .await
                        .map_err(|source| InvalidationError::Unreachable {
                            what: format!("PURGE {url}"),
                            source,
                        })?
                        .status();
                    // 404: the cache did not hold the tile, which is as good.
                    if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
                        Ok(())
                    } else {
                        Err(InvalidationError::Refused {
                            what: format!("PURGE {url}"),
                            status,
                        })
                    }
                }
            })
            .buffer_unordered(PURGES_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
    }
    Ok(())
}
