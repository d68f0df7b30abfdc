//! XYZ tile math in Web Mercator (EPSG:3857).
//!
//! Tiles follow the XYZ scheme: `x` grows eastwards from the antimeridian and `y`
//! grows southwards from the north edge (`y = 0` is the northernmost row).
//! Internally positions are kept in *unit Mercator* coordinates: `x` and `y` in
//! `[0, 1]`, origin at the north-west corner, so that a world pixel at zoom `z`
//! is simply `unit * tile_size * 2^z`.

use std::f64::consts::PI;
use std::fmt;

/// The latitude where Web Mercator is cut off so that the world is square.
pub const MAX_LATITUDE: f64 = 85.051_128_779_806_59;

/// Half the width of the Web Mercator world in metres.
pub const MERCATOR_HALF_WORLD: f64 = 20_037_508.342_789_244;

/// The deepest zoom level the tile math accepts.
pub const MAX_ZOOM: u8 = 30;

/// A tile address in the XYZ scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    pub z: u8,
    pub x: u32,
    pub y: u32,
}

impl TileId {
    /// A tile address, or `None` when `x` or `y` lies outside zoom `z`.
    pub fn new(z: u8, x: u32, y: u32) -> Option<Self> {
        (z <= MAX_ZOOM && u64::from(x) < tiles_per_side(z) && u64::from(y) < tiles_per_side(z))
            .then_some(Self { z, x, y })
    }

    /// A tile address as a tile URL writes it: `z`, `x` and `y.png`, in
    /// decimal as [`TileId`]'s own path writes them (no sign, no leading
    /// zero: each tile has one URL, so a cache holds it once and a purge
    /// reaches it); `None` for anything else or a tile outside its zoom.
    pub fn from_path(z: &str, x: &str, y_png: &str) -> Option<Self> {
        fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
            let canonical = !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'));
            canonical.then(|| s.parse().ok()).flatten()
        }
        let y = y_png.strip_suffix(".png")?;
        Self::new(number(z)?, number(x)?, number(y)?)
    }

    /// The tile that contains a longitude and latitude at zoom `z`. Latitudes past
    /// ±[`MAX_LATITUDE`] fall in the first or last row; longitude 180 in the last column.
    pub fn containing(lon: f64, lat: f64, z: u8) -> Self {
        let (ux, uy) = lonlat_to_unit(lon, lat);
        let n = tiles_per_side(z) as f64;
        let last = tiles_per_side(z) - 1;
        let col = ((ux * n).floor().max(0.0) as u64).min(last);
        let row = ((uy * n).floor().max(0.0) as u64).min(last);
        Self {
            z,
            x: col as u32,
            y: row as u32,
        }
    }

    /// The tile's extent in unit Mercator coordinates.
    pub fn unit_bounds(&self) -> UnitRect {
        let n = tiles_per_side(self.z) as f64;
        UnitRect {
            min_x: f64::from(self.x) / n,
            min_y: f64::from(self.y) / n,
            max_x: f64::from(self.x + 1) / n,
            max_y: f64::from(self.y + 1) / n,
        }
    }

    /// The tile's extent in EPSG:3857 metres: `[west, south, east, north]`.
    pub fn mercator_bounds(&self) -> [f64; 4] {
        let b = self.unit_bounds();
        let (w, n) = unit_to_mercator(b.min_x, b.min_y);
        let (e, s) = unit_to_mercator(b.max_x, b.max_y);
        [w, s, e, n]
    }

    /// The tile's extent in degrees: `[west, south, east, north]`.
    pub fn lonlat_bounds(&self) -> [f64; 4] {
        let b = self.unit_bounds();
        let (w, n) = unit_to_lonlat(b.min_x, b.min_y);
        let (e, s) = unit_to_lonlat(b.max_x, b.max_y);
        [w, s, e, n]
    }

    /// The tile one zoom level up that contains this one.
    pub fn parent(&self) -> Option<Self> {
        (self.z > 0).then(|| Self {
            z: self.z - 1,
            x: self.x / 2,
            y: self.y / 2,
        })
    }

    /// The relative path `z/x/y` (without extension).
    pub fn path(&self) -> String {
        format!("{}/{}/{}", self.z, self.x, self.y)
    }
}

impl fmt::Display for TileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.z, self.x, self.y)
    }
}

/// How many tiles make one side of the square world at zoom `z`.
pub fn tiles_per_side(z: u8) -> u64 {
    1u64 << z
}

/// A rectangle in unit Mercator coordinates (`y` grows southwards).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UnitRect {
    pub min_x: f64,
    pub min_y: f64,
    pub max_x: f64,
    pub max_y: f64,
}

impl UnitRect {
    pub fn intersects(&self, other: &UnitRect) -> bool {
        self.min_x <= other.max_x
            && other.min_x <= self.max_x
            && self.min_y <= other.max_y
            && other.min_y <= self.max_y
    }
}

/// Clamps a latitude to the Web Mercator range.
pub fn clamp_latitude(lat: f64) -> f64 {
    lat.clamp(-MAX_LATITUDE, MAX_LATITUDE)
}

/// Longitude and latitude (degrees) to unit Mercator `(x, y)`, latitude clamped.
pub fn lonlat_to_unit(lon: f64, lat: f64) -> (f64, f64) {
    let x = (lon + 180.0) / 360.0;
    let phi = clamp_latitude(lat).to_radians();
    let y = (1.0 - (phi.tan() + 1.0 / phi.cos()).ln() / PI) / 2.0;
    (x, y.clamp(0.0, 1.0))
}

/// Unit Mercator `(x, y)` back to longitude and latitude in degrees.
pub fn unit_to_lonlat(x: f64, y: f64) -> (f64, f64) {
    let lon = x * 360.0 - 180.0;
    let lat = (PI * (1.0 - 2.0 * y)).sinh().atan().to_degrees();
    (lon, lat)
}

/// Longitude and latitude (degrees) to EPSG:3857 metres, latitude clamped.
pub fn lonlat_to_mercator(lon: f64, lat: f64) -> (f64, f64) {
    let (x, y) = lonlat_to_unit(lon, lat);
    unit_to_mercator(x, y)
}

/// EPSG:3857 metres back to longitude and latitude in degrees.
pub fn mercator_to_lonlat(mx: f64, my: f64) -> (f64, f64) {
    let (x, y) = mercator_to_unit(mx, my);
    unit_to_lonlat(x, y)
}

/// Unit Mercator to EPSG:3857 metres.
pub fn unit_to_mercator(x: f64, y: f64) -> (f64, f64) {
    (
        (x * 2.0 - 1.0) * MERCATOR_HALF_WORLD,
        (1.0 - y * 2.0) * MERCATOR_HALF_WORLD,
    )
}

/// EPSG:3857 metres to unit Mercator.
pub fn mercator_to_unit(mx: f64, my: f64) -> (f64, f64) {
    (
        (mx / MERCATOR_HALF_WORLD + 1.0) / 2.0,
        (1.0 - my / MERCATOR_HALF_WORLD) / 2.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_ids_outside_the_zoom_are_refused() {
        assert!(TileId::new(0, 0, 0).is_some());
        assert!(TileId::new(0, 1, 0).is_none());
        assert!(TileId::new(3, 7, 7).is_some());
        assert!(TileId::new(3, 8, 0).is_none());
        assert!(TileId::new(31, 0, 0).is_none());
    }

    #[test]
    fn tile_paths_are_read_as_urls_write_them() {
        assert_eq!(TileId::from_path("3", "7", "5.png"), TileId::new(3, 7, 5));
        assert_eq!(TileId::from_path("0", "0", "0.png"), TileId::new(0, 0, 0));
        for (z, x, y) in [
            ("3", "8", "0.png"),
            ("3", "7", "5"),
            ("3", "7", "5.jpg"),
            ("-1", "0", "0.png"),
            ("3", "+", "0.png"),
            ("+3", "+7", "+5.png"),
            ("03", "007", "5.png"),
            ("3", "7", "05.png"),
            ("99999", "0", "0.png"),
            ("31", "0", "0.png"),
            ("", "", ".png"),
        ] {
            assert_eq!(TileId::from_path(z, x, y), None, "{z}/{x}/{y}");
        }
    }

    #[test]
    fn unit_and_lonlat_round_trip() {
        for &(lon, lat) in &[(0.0, 0.0), (-122.4, 37.8), (179.9, -84.0), (-180.0, 85.0)] {
            let (x, y) = lonlat_to_unit(lon, lat);
            let (lon2, lat2) = unit_to_lonlat(x, y);
            assert!((lon - lon2).abs() < 1e-9, "{lon} -> {lon2}");
            assert!((lat - lat2).abs() < 1e-9, "{lat} -> {lat2}");
        }
    }

    #[test]
    fn parent_walks_up() {
        let t = TileId::new(5, 17, 10).unwrap();
        assert_eq!(t.parent(), TileId::new(4, 8, 5));
        assert_eq!(TileId::new(0, 0, 0).unwrap().parent(), None);
    }
}
