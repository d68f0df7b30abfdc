//! The farm's object storage and where things live in it:
//!
//! ```text
//! PREFIX/uploads/{upload id}                          uploaded data, as received
//! PREFIX/uploads/{upload id}.options.json             how to read it, when the uploader said
//! PREFIX/layers/{layer id}/v{version}/features.geojsons  validated features (GeoJSONSeq)
//! PREFIX/layers/{layer id}/v{version}/summary.json    what the upload held (format, CRS, ...)
//! PREFIX/layers/{layer id}/v{version}/regions.bin     the version's one-colour regions
//! PREFIX/layers/{layer id}/v{version}/plan.json       what its job renders and its regions imply
//! PREFIX/tiles/{layer id}/{z}/{x}/{y}.png             the published tiles
//! ```

use std::sync::Arc;

use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};
use tilefarm_renderer::{Regions, TileId};
use uuid::Uuid;

/// Why a version's regions could not be read ([`Objects::get_regions`]).
#[derive(Debug, thiserror::Error)]
pub enum RegionsReadError {
    #[error("{key}: {source}")]
    Store {
        key: Path,
        #[source]
        source: object_store::Error,
    },
    #[error("{key}: {source}")]
    Invalid {
        key: Path,
        #[source]
        source: tilefarm_renderer::RegionsError,
    },
}

/// An object store and the prefix the farm keeps its objects under.
#[derive(Clone, Debug)]
pub struct Objects {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    /// Whether the store keeps `Content-Type` and `Cache-Control` (S3 does, a
    /// local directory does not).
    pub keeps_headers: bool,
    /// `Cache-Control` of tiles.
    pub cache_control: String,
}

/// The default `Cache-Control` of tiles: browsers revalidate each tile with its
/// `ETag` (a `304` from the CDN, so an edit shows at the next view or reload),
/// shared caches keep it a day (edits purge them) and may serve it stale while
/// the origin is down. docs/cdn.md weighs this against versioned URLs.
pub const DEFAULT_CACHE_CONTROL: &str = "public, max-age=0, s-maxage=86400, stale-if-error=86400";

/// Why an object store URL cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the object store {url}: {message}")]
pub struct OpenError {
    pub url: String,
    pub message: String,
}

impl Objects {
    /// Opens `url`: `s3://bucket/prefix` (credentials and region from the `AWS_*`
    /// variables, `s3_endpoint` for S3-compatible servers), `file:///dir`, or a
    /// plain directory path.
    pub fn open(url: &str, s3_endpoint: Option<&str>) -> Result<Objects, OpenError> {
        let err = |message: String| OpenError {
            url: url.to_string(),
            message,
        };
        if !url.contains("://") {
            let dir = std::path::Path::new(url);
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| err(e.to_string()))?;
            return Ok(Objects::new(Arc::new(store), Path::default(), false));
        }
        let parsed = url::Url::parse(url).map_err(|e| err(e.to_string()))?;
        if parsed.scheme() == "s3" {
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_url(parsed.as_str());
            if let Some(endpoint) = s3_endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            let store = builder.build().map_err(|e| err(e.to_string()))?;
            let prefix = Path::from(parsed.path().trim_start_matches('/'));
            return Ok(Objects::new(Arc::new(store), prefix, true));
        }
        if parsed.scheme() == "file" {
            let dir = parsed
                .to_file_path()
                .map_err(|()| err("not a local path".into()))?;
            return Objects::open(&dir.to_string_lossy(), None);
        }
        let (store, prefix) = object_store::parse_url(&parsed).map_err(|e| err(e.to_string()))?;
        Ok(Objects::new(Arc::from(store), prefix, true))
    }

    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path, keeps_headers: bool) -> Objects {
        Objects {
            store,
            prefix,
            keeps_headers,
            cache_control: DEFAULT_CACHE_CONTROL.into(),
        }
    }

    pub fn with_cache_control(mut self, cache_control: &str) -> Objects {
        self.cache_control = cache_control.to_string();
        self
    }

    fn key(&self, parts: &[&str]) -> Path {
        parts
            .iter()
            .fold(self.prefix.clone(), |key, part| key.join(*part))
    }

    /// Where a new upload is stored.
    pub fn upload_key(&self, upload: Uuid) -> Path {
        self.key(&["uploads", &upload.to_string()])
    }

    /// Where the uploader's reading options (GeoPackage table, CSV columns,
    /// CRS) of the upload stored at `upload` are kept, when there are any.
    pub fn upload_options_key(upload: &Path) -> Path {
        Path::from(format!("{upload}.options.json"))
    }

    /// Where the summary of a layer version's upload is stored.
    pub fn summary_key(&self, layer: Uuid, version: i32) -> Path {
        self.key(&[
            "layers",
            &layer.to_string(),
            &format!("v{version}"),
            "summary.json",
        ])
    }

    /// Where a layer version's validated features are stored.
    pub fn prepared_key(&self, layer: Uuid, version: i32) -> Path {
        self.key(&[
            "layers",
            &layer.to_string(),
            &format!("v{version}"),
            "features.geojsons",
        ])
    }

    /// Where a layer version's one-colour regions are stored: the tiles no
    /// edge comes near, which are not stored one by one.
    pub fn regions_key(&self, layer: Uuid, version: i32) -> Path {
        self.key(&[
            "layers",
            &layer.to_string(),
            &format!("v{version}"),
            "regions.bin",
        ])
    }

    /// Where the plan of a layer version's job is summed up: the tiles it
    /// renders, those its regions stand for, per zoom.
    pub fn plan_key(&self, layer: Uuid, version: i32) -> Path {
        self.key(&[
            "layers",
            &layer.to_string(),
            &format!("v{version}"),
            "plan.json",
        ])
    }

    /// Stores a layer version's regions.
    pub async fn put_regions(
        &self,
        layer: Uuid,
        version: i32,
        regions: &Regions,
    ) -> object_store::Result<()> {
        let bytes = bytes::Bytes::from(regions.to_bytes());
        self.store
            .put(&self.regions_key(layer, version), PutPayload::from(bytes))
            .await
            .map(|_| ())
    }

    /// A layer version's regions; none when it has no regions file.
    pub async fn get_regions(
        &self,
        layer: Uuid,
        version: i32,
    ) -> Result<Regions, RegionsReadError> {
        let key = self.regions_key(layer, version);
        let read = match self.store.get(&key).await {
            Ok(r) => r.bytes().await,
            Err(object_store::Error::NotFound { .. }) => return Ok(Regions::default()),
            Err(e) => Err(e),
        };
        let bytes = read.map_err(|source| RegionsReadError::Store {
            key: key.clone(),
            source,
        })?;
        Regions::from_bytes(&bytes).map_err(|source| RegionsReadError::Invalid { key, source })
    }

    /// The folder of one version of a layer (prepared features, summary,
    /// regions, plan).
    pub fn version_prefix(&self, layer: Uuid, version: i32) -> Path {
        self.key(&["layers", &layer.to_string(), &format!("v{version}")])
    }

    /// Deletes every object under `prefix`; how many there were.
    pub async fn delete_under(&self, prefix: &Path) -> object_store::Result<u64> {
        use futures_util::{StreamExt, TryStreamExt};
        let locations = self
            .store
            .list(Some(prefix))
            .map_ok(|meta| meta.location)
            .boxed();
        let deleted: Vec<_> = self.store.delete_stream(locations).try_collect().await?;
        Ok(deleted.len() as u64)
    }

    /// Deletes uploaded data stored at `key` and its reading options; how many
    /// of the two there were.
    pub async fn delete_upload(&self, key: &Path) -> object_store::Result<u64> {
        let mut removed = 0;
        for key in [Self::upload_options_key(key), key.clone()] {
            match self.store.delete(&key).await {
                Ok(()) => removed += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// The folder of a layer's versions (prepared features, summaries).
    pub fn layer_prefix(&self, layer: Uuid) -> Path {
        self.key(&["layers", &layer.to_string()])
    }

    /// The folder of a layer's tiles.
    pub fn tiles_prefix(&self, layer: Uuid) -> Path {
        self.key(&["tiles", &layer.to_string()])
    }

    /// Where one tile of a layer is stored.
    pub fn tile_key(&self, layer: Uuid, t: TileId) -> Path {
        self.key(&[
            "tiles",
            &layer.to_string(),
            &t.z.to_string(),
            &t.x.to_string(),
            &format!("{}.png", t.y),
        ])
    }

    /// Options for storing a tile: its content type and `Cache-Control`, where
    /// the store keeps them.
    pub fn tile_put_options(&self) -> PutOptions {
        let mut attributes = Attributes::new();
        if self.keeps_headers {
            attributes.insert(Attribute::ContentType, "image/png".into());
            attributes.insert(Attribute::CacheControl, self.cache_control.clone().into());
        }
        PutOptions {
            attributes,
            ..PutOptions::default()
        }
    }

    /// Stores one tile.
    pub async fn put_tile(
        &self,
        layer: Uuid,
        t: TileId,
        png: bytes::Bytes,
    ) -> object_store::Result<()> {
        self.store
            .put_opts(
                &self.tile_key(layer, t),
                PutPayload::from(png),
                self.tile_put_options(),
            )
            .await
            .map(|_| ())
    }

    /// A stored tile's bytes, or `None` where there is no tile.
    pub async fn get_tile(
        &self,
        layer: Uuid,
        t: TileId,
    ) -> object_store::Result<Option<bytes::Bytes>> {
        match self.store.get(&self.tile_key(layer, t)).await {
            Ok(r) => r.bytes().await.map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes a tile; one that is not there is as good as deleted.
    pub async fn delete_tile(&self, layer: Uuid, t: TileId) -> object_store::Result<()> {
        match self.store.delete(&self.tile_key(layer, t)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
