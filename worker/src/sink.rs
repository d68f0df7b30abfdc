//! Where rendered tiles go: a `z/x/y.png` directory, or an object store.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use object_store::path::Path as StorePath;
use object_store::{Attribute, Attributes, ObjectStore, PutOptions, PutPayload};

use tilefarm_renderer::{Region, Rgba, TileId};

/// A failure to store a tile.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("could not write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("could not store {key}: {source}")]
    Store {
        key: String,
        source: object_store::Error,
    },
    #[error("could not write the archive {path}: {message}")]
    Archive { path: PathBuf, message: String },
}

pub type SinkResult<T> = Result<T, SinkError>;

/// Receives finished tiles. Called from many threads at once.
pub trait TileSink: Sync {
    /// Stores one encoded tile.
    fn put(&self, tile: TileId, png: &[u8]) -> SinkResult<()>;

    /// Stores a tile that is one colour all over. `png` is the same bytes for every
    /// tile of that colour, so a sink may store it once and refer to it.
    fn put_uniform(&self, tile: TileId, _color: Rgba, png: &[u8]) -> SinkResult<()> {
        self.put(tile, png)
    }

    /// Stores a region of one colour: every tile of `region` at `zooms`, all
    /// with the bytes `png`. Returns the tiles it stands for. Sinks that can
    /// store a run of identical tiles as one entry do so.
    fn put_region(&self, region: Region, zooms: RangeInclusive<u8>, png: &[u8]) -> SinkResult<u64> {
        let mut written = 0;
        for z in zooms {
            for t in region.tiles_at(z) {
                self.put_uniform(t, region.color, png)?;
                written += 1;
            }
        }
        Ok(written)
    }

    /// Makes everything stored so far durable.
    fn finish(&self) -> SinkResult<()> {
        Ok(())
    }
}

/// Writes `DIR/z/x/y.png`. A tile that already exists is replaced atomically
/// (written to a temporary name and renamed), so a reader never sees half of it. With `link_uniform`, tiles of one colour are
/// hard links to a single file under `DIR/.uniform/`, costing no data write each.
#[derive(Debug)]
pub struct DirSink {
    root: PathBuf,
    link_uniform: bool,
    made: Mutex<std::collections::HashSet<(u8, u32)>>,
    uniform: Mutex<HashMap<Rgba, PathBuf>>,
}

impl DirSink {
    pub fn new(root: impl Into<PathBuf>, link_uniform: bool) -> SinkResult<DirSink> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|source| SinkError::Io {
            path: root.clone(),
            source,
        })?;
        Ok(DirSink {
            root,
            link_uniform,
            made: Mutex::default(),
            uniform: Mutex::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of a tile.
    pub fn tile_path(&self, t: TileId) -> PathBuf {
        self.root
            .join(t.z.to_string())
            .join(t.x.to_string())
            .join(format!("{}.png", t.y))
    }

    fn column(&self, t: TileId) -> SinkResult<PathBuf> {
        let dir = self.root.join(t.z.to_string()).join(t.x.to_string());
        let mut made = self.made.lock().expect("lock");
        if made.insert((t.z, t.x)) {
            fs::create_dir_all(&dir).map_err(|source| SinkError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(dir)
    }

    fn io(path: &Path) -> impl FnOnce(io::Error) -> SinkError + '_ {
        move |source| SinkError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl TileSink for DirSink {
    fn put(&self, t: TileId, png: &[u8]) -> SinkResult<()> {
        let dir = self.column(t)?;
        let path = dir.join(format!("{}.png", t.y));
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            // A new tile is written in place: nobody can have served it yet.
            Ok(mut file) => file.write_all(png).map_err(Self::io(&path)),
            // A tile being replaced is swapped in whole.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let tmp = dir.join(format!(".{}.png.tmp", t.y));
                fs::write(&tmp, png).map_err(Self::io(&tmp))?;
                fs::rename(&tmp, &path).map_err(Self::io(&path))
            }
            Err(e) => Err(Self::io(&path)(e)),
        }
    }

    fn put_uniform(&self, t: TileId, color: Rgba, png: &[u8]) -> SinkResult<()> {
        if !self.link_uniform {
            return self.put(t, png);
        }
        let source = {
            let mut uniform = self.uniform.lock().expect("lock");
            match uniform.get(&color) {
                Some(p) => p.clone(),
                None => {
                    let dir = self.root.join(".uniform");
                    fs::create_dir_all(&dir).map_err(Self::io(&dir))?;
                    let hex = color.to_string();
                    let p = dir.join(format!("{}.png", hex.trim_start_matches('#')));
                    fs::write(&p, png).map_err(Self::io(&p))?;
                    uniform.insert(color, p.clone());
                    p
                }
            }
        };
        let dir = self.column(t)?;
        let path = dir.join(format!("{}.png", t.y));
        match fs::hard_link(&source, &path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let tmp = dir.join(format!(".{}.png.tmp", t.y));
                let _ = fs::remove_file(&tmp);
                fs::hard_link(&source, &tmp).map_err(Self::io(&tmp))?;
                fs::rename(&tmp, &path).map_err(Self::io(&path))
            }
            Err(e) => Err(Self::io(&path)(e)),
        }
    }
}

/// Uploads one sink keeps in flight at once.
const UPLOADS_IN_FLIGHT: usize = 32;

type Upload = tokio::task::JoinHandle<SinkResult<()>>;

/// Writes tiles to an [`ObjectStore`] under `prefix/z/x/y.png`, many uploads at
/// a time; [`TileSink::finish`] waits for them all and reports the first failure.
#[derive(Debug)]
pub struct ObjectStoreSink {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    runtime: tokio::runtime::Handle,
    attributes: Attributes,
    slots: Arc<tokio::sync::Semaphore>,
    uploads: Mutex<Vec<Upload>>,
}

impl ObjectStoreSink {
    /// A sink on `store` under `prefix`, driving its I/O on `runtime`. Call it from
    /// threads that are not themselves running async tasks (rayon threads are fine).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: StorePath,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        ObjectStoreSink {
            store,
            prefix,
            runtime,
            attributes: Attributes::new(),
            slots: Arc::new(tokio::sync::Semaphore::new(UPLOADS_IN_FLIGHT)),
            uploads: Mutex::default(),
        }
    }

    /// Stores tiles with `Content-Type: image/png` and this `Cache-Control`, for
    /// stores that keep object metadata (S3 and its kin; not a local directory).
    pub fn with_http_headers(mut self, cache_control: &str) -> Self {
        self.attributes
            .insert(Attribute::ContentType, "image/png".into());
        self.attributes
            .insert(Attribute::CacheControl, cache_control.to_string().into());
        self
    }

    /// The key of a tile.
    pub fn key(&self, t: TileId) -> StorePath {
        let mut key = self.prefix.clone();
        for part in [t.z.to_string(), t.x.to_string(), format!("{}.png", t.y)] {
            key = key.join(part);
        }
        key
    }
}

impl TileSink for ObjectStoreSink {
    fn put(&self, t: TileId, png: &[u8]) -> SinkResult<()> {
        let key = self.key(t);
        let opts = PutOptions {
            attributes: self.attributes.clone(),
            ..PutOptions::default()
        };
        let payload = PutPayload::from(bytes::Bytes::copy_from_slice(png));
        let slot = self
            .runtime
            .block_on(self.slots.clone().acquire_owned())
            .expect("never closed");
        let store = self.store.clone();
        let upload = self.runtime.spawn(async move {
            let result = store.put_opts(&key, payload, opts).await;
            drop(slot);
            result.map(|_| ()).map_err(|source| SinkError::Store {
                key: key.to_string(),
                source,
            })
        });
        let finished = {
            let mut uploads = self.uploads.lock().expect("lock");
            uploads.push(upload);
            // Collect the uploads done so far, so failures surface early and
            // the list stays short.
            if uploads.len() < 4 * UPLOADS_IN_FLIGHT {
                Vec::new()
            } else {
                let (done, running) = uploads.drain(..).partition(|u| u.is_finished());
                *uploads = running;
                done
            }
        };
        self.wait(finished)
    }

    fn finish(&self) -> SinkResult<()> {
        let all = std::mem::take(&mut *self.uploads.lock().expect("lock"));
        self.wait(all)
    }
}

impl ObjectStoreSink {
    /// Waits for `uploads` and returns the first failure among them.
    fn wait(&self, uploads: Vec<Upload>) -> SinkResult<()> {
        let mut first = Ok(());
        for upload in uploads {
            let result = self
                .runtime
                .block_on(upload)
                .expect("an upload task panicked");
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}
