//! Metatiles: square blocks of tiles drawn at once and sliced.

use std::fmt;

use crate::tile::{TileId, tiles_per_side};

/// A square block of `n x n` tiles at zoom `z` whose top-left tile is `(x, y)`.
/// At low zooms `n` is clamped to the width of the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetaTile {
    pub z: u8,
    pub x: u32,
    pub y: u32,
    pub n: u32,
}

impl MetaTile {
    /// The tiles per side of a metatile of nominal size `size` at zoom `z`.
    pub fn side(z: u8, size: u32) -> u32 {
        (size.max(1) as u64).min(tiles_per_side(z)) as u32
    }

    /// The metatile of nominal size `size` that holds tile `t`.
    pub fn containing(t: TileId, size: u32) -> MetaTile {
        let n = Self::side(t.z, size);
        MetaTile {
            z: t.z,
            x: t.x / n * n,
            y: t.y / n * n,
            n,
        }
    }

    /// Every metatile of zoom `z`, row by row.
    pub fn all(z: u8, size: u32) -> impl Iterator<Item = MetaTile> {
        let n = Self::side(z, size);
        let count = (tiles_per_side(z) / u64::from(n)) as u32;
        (0..count).flat_map(move |row| {
            (0..count).map(move |col| MetaTile {
                z,
                x: col * n,
                y: row * n,
                n,
            })
        })
    }

    pub fn contains(&self, t: TileId) -> bool {
        t.z == self.z
            && (self.x..self.x + self.n).contains(&t.x)
            && (self.y..self.y + self.n).contains(&t.y)
    }

    /// The tiles in this metatile, row by row.
    pub fn tiles(&self) -> impl Iterator<Item = TileId> + '_ {
        let (z, x0, y0, n) = (self.z, self.x, self.y, self.n);
        (y0..y0 + n).flat_map(move |y| (x0..x0 + n).map(move |x| TileId { z, x, y }))
    }

    pub fn tile_count(&self) -> u64 {
        u64::from(self.n) * u64::from(self.n)
    }
}

impl fmt::Display for MetaTile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{} ({}x{})",
            self.z, self.x, self.y, self.n, self.n
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metatiles_clamp_to_the_world_at_low_zooms() {
        assert_eq!(MetaTile::side(0, 8), 1);
        assert_eq!(MetaTile::side(2, 8), 4);
        assert_eq!(MetaTile::side(3, 8), 8);
        assert_eq!(MetaTile::side(9, 8), 8);
        assert_eq!(MetaTile::all(2, 8).count(), 1);
        assert_eq!(MetaTile::all(5, 8).count(), 16);
    }

    #[test]
    fn metatiles_tile_the_zoom_exactly_once() {
        let mut seen = std::collections::HashSet::new();
        for m in MetaTile::all(4, 8) {
            for t in m.tiles() {
                assert!(seen.insert(t), "{t} twice");
                assert_eq!(MetaTile::containing(t, 8), m);
            }
        }
        assert_eq!(seen.len(), 256);
    }
}
