//! A PMTiles v3 archive as a tile sink: one file holding the whole pyramid, which
//! a CDN or object store serves with HTTP range requests, no tile server needed.

use std::fs::File;
use std::io::BufWriter;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pmtiles::{CallerKey, PmTilesStreamWriter, PmTilesWriter, TileCoord, TileType};
use tilefarm_renderer::{Region, Rgba, TileId};

use crate::sink::{SinkError, SinkResult, TileSink};

type Writer = PmTilesStreamWriter<BufWriter<File>, CallerKey<u32>>;

/// Writes tiles into a PMTiles archive. The archive is built under a temporary
/// name and renamed into place by [`TileSink::finish`], so a half-written archive
/// is never mistaken for a finished one. One-colour tiles are stored once per
/// colour and referenced from every tile of that colour.
#[derive(Debug)]
pub struct PmTilesSink {
    path: PathBuf,
    tmp: PathBuf,
    writer: Mutex<Option<WriterBox>>,
}

/// The archive writer, which has no `Debug` of its own.
struct WriterBox(Writer);

impl std::fmt::Debug for WriterBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PmTilesStreamWriter")
    }
}

impl PmTilesSink {
    /// Starts an archive at `path` for zooms `min_zoom..=max_zoom` covering
    /// `bounds` (`[west, south, east, north]` in degrees).
    pub fn create(
        path: impl Into<PathBuf>,
        min_zoom: u8,
        max_zoom: u8,
        bounds: [f64; 4],
    ) -> SinkResult<Self> {
        let path = path.into();
        let tmp = path.with_extension("pmtiles.tmp");
        let file = File::create(&tmp).map_err(|source| SinkError::Io {
            path: tmp.clone(),
            source,
        })?;
        let [w, s, e, n] = bounds;
        let writer = PmTilesWriter::new(TileType::Png)
            .min_zoom(min_zoom)
            .max_zoom(max_zoom)
            .bounds(w, s, e, n)
            .center_zoom(min_zoom)
            .center((w + e) / 2.0, (s + n) / 2.0)
            .metadata(r#"{"generator":"tilefarm"}"#)
            .dedup_by_key::<u32>()
            .create(BufWriter::new(file))
            .map_err(|e| archive_error(&tmp, e))?;
        Ok(PmTilesSink {
            path,
            tmp,
            writer: Mutex::new(Some(WriterBox(writer))),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn add(&self, t: TileId, png: &[u8], key: Option<u32>) -> SinkResult<()> {
        let coord = TileCoord::new(t.z, t.x, t.y).map_err(|e| archive_error(&self.tmp, e))?;
        let mut guard = self.writer.lock().expect("lock");
        let writer = guard.as_mut().ok_or_else(|| finished(&self.path))?;
        writer
            .0
            .add_tile(coord, png, key)
            .map_err(|e| archive_error(&self.tmp, e))
    }
}

fn archive_error(path: &Path, e: pmtiles::PmtError) -> SinkError {
    SinkError::Archive {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn finished(path: &Path) -> SinkError {
    SinkError::Archive {
        path: path.to_path_buf(),
        message: "the archive is already finished".into(),
    }
}

impl TileSink for PmTilesSink {
    fn put(&self, t: TileId, png: &[u8]) -> SinkResult<()> {
        self.add(t, png, None)
    }

    fn put_uniform(&self, t: TileId, color: Rgba, png: &[u8]) -> SinkResult<()> {
        self.add(t, png, Some(u32::from_be_bytes(color.0)))
    }

    /// A region is one run per zoom: its tiles at a zoom are consecutive in
    /// the archive's Hilbert order, added in that order under one lock.
    fn put_region(&self, region: Region, zooms: RangeInclusive<u8>, png: &[u8]) -> SinkResult<u64> {
        let key = Some(u32::from_be_bytes(region.color.0));
        let mut guard = self.writer.lock().expect("lock");
        let writer = guard.as_mut().ok_or_else(|| finished(&self.path))?;
        let root = region.root;
        let mut written = 0u64;
        for z in zooms.filter(|&z| z >= root.z) {
            let shift = 2 * u32::from(z - root.z);
            // The tiles of an aligned block at zoom z take the ids that share
            // the id of the block's first tile above the block's own bits.
            let corner = pmtiles::TileId::from(
                TileCoord::new(z, root.x << (shift / 2), root.y << (shift / 2))
                    .map_err(|e| archive_error(&self.tmp, e))?,
            );
            let base = pmtiles::TileId::from(
                TileCoord::new(z, 0, 0).map_err(|e| archive_error(&self.tmp, e))?,
            )
            .value();
            let first = base + ((corner.value() - base) >> shift << shift);
            for id in first..first + (1u64 << shift) {
                let coord = TileCoord::from(
                    pmtiles::TileId::new(id).map_err(|e| archive_error(&self.tmp, e))?,
                );
                writer
                    .0
                    .add_tile(coord, png, key)
                    .map_err(|e| archive_error(&self.tmp, e))?;
            }
            written += 1u64 << shift;
        }
        Ok(written)
    }

    fn finish(&self) -> SinkResult<()> {
        let writer = self
            .writer
            .lock()
            .expect("lock")
            .take()
            .ok_or_else(|| finished(&self.path))?;
        writer
            .0
            .finalize()
            .map_err(|e| archive_error(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|source| SinkError::Io {
            path: self.path.clone(),
            source,
        })
    }
}
