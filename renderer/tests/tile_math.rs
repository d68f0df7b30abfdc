//! Integration tests for XYZ tile math and for the tiles a geometry covers.
//!
//! Expected tile numbers and bounds were computed apart from this crate, in Python,
//! with the OpenStreetMap wiki's slippy-map formula:
//!
//! ```text
//! n = 2 ** z
//! x = floor((lon + 180) / 360 * n)
//! y = floor((1 - asinh(tan(radians(lat))) / pi) / 2 * n)      # lat clamped to ±85.0511287798066
//! lon(x) = x / n * 360 - 180;  lat(y) = degrees(atan(sinh(pi * (1 - 2 * y / n))))
//! mercator(lon, lat) = (R * radians(lon), R * ln(tan(pi / 4 + radians(lat) / 2))), R = 6378137
//! ```

use std::collections::{BTreeSet, VecDeque};
use std::f64::consts::PI;

use geo::{
    Contains, Coord, Geometry, GeometryCollection, Intersects, LineString, MultiPoint, Point,
    Polygon, Rect,
};
use tilefarm_renderer::{
    MAX_LATITUDE, MERCATOR_HALF_WORLD, TileId, lonlat_to_mercator, lonlat_to_unit,
    mercator_to_lonlat, tiles_covering, tiles_per_side,
};

/// The WGS84 / Web Mercator sphere radius in metres.
const EARTH_RADIUS: f64 = 6_378_137.0;

fn tile(z: u8, x: u32, y: u32) -> TileId {
    TileId::new(z, x, y).unwrap_or_else(|| panic!("{z}/{x}/{y} is not a tile"))
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance
}

fn assert_close4(what: &str, got: [f64; 4], want: [f64; 4], tolerance: f64) {
    for i in 0..4 {
        assert!(
            close(got[i], want[i], tolerance),
            "{what}: got {got:?}, want {want:?} (component {i})"
        );
    }
}

// ---- constants -------------------------------------------------------------------

#[test]
fn constants_match_their_definitions() {
    // Half the equator of the Web Mercator sphere.
    assert!(
        close(MERCATOR_HALF_WORLD, PI * EARTH_RADIUS, 1e-6),
        "{MERCATOR_HALF_WORLD}"
    );
    assert!(close(MERCATOR_HALF_WORLD, 20_037_508.342_789_244, 1e-6));
    // The latitude whose Mercator y equals the half-world: atan(sinh(pi)).
    assert!(
        close(MAX_LATITUDE, PI.sinh().atan().to_degrees(), 1e-12),
        "{MAX_LATITUDE}"
    );
    assert!(close(MAX_LATITUDE, 85.051_128_779_806_6, 1e-12));
    assert_eq!(tiles_per_side(0), 1);
    assert_eq!(tiles_per_side(1), 2);
    assert_eq!(tiles_per_side(10), 1024);
    assert_eq!(tiles_per_side(30), 1 << 30);
}

// ---- the tile of a longitude and latitude ----------------------------------------

/// A place (name, lon, lat) and its tiles `(z, x, y)`.
type KnownTile = (&'static str, f64, f64, &'static [(u8, u32, u32)]);

/// Tiles of places, from the Python formula in the module docs.
const KNOWN_TILES: &[KnownTile] = &[
    (
        "Berlin",
        13.405,
        52.52,
        &[
            (0, 0, 0),
            (1, 1, 0),
            (5, 17, 10),
            (10, 550, 335),
            (15, 17604, 10746),
            (18, 140833, 85971),
        ],
    ),
    (
        "Sydney",
        151.2093,
        -33.8688,
        &[
            (0, 0, 0),
            (1, 1, 1),
            (5, 29, 19),
            (10, 942, 614),
            (15, 30147, 19663),
            (18, 241179, 157310),
        ],
    ),
    (
        "New York",
        -74.006,
        40.7128,
        &[
            (1, 0, 0),
            (5, 9, 12),
            (10, 301, 385),
            (15, 9647, 12320),
            (18, 77182, 98561),
        ],
    ),
    (
        "Rio de Janeiro",
        -43.1729,
        -22.9068,
        &[
            (1, 0, 1),
            (5, 12, 18),
            (10, 389, 578),
            (15, 12454, 18526),
            (18, 99634, 148215),
        ],
    ),
    // Null Island sits on the corner of four tiles: it belongs to the south-east one.
    (
        "Null Island",
        0.0,
        0.0,
        &[
            (0, 0, 0),
            (1, 1, 1),
            (5, 16, 16),
            (10, 512, 512),
            (18, 131072, 131072),
        ],
    ),
    (
        "just north-east of Null Island",
        1e-9,
        1e-9,
        &[(1, 1, 0), (5, 16, 15), (10, 512, 511), (18, 131072, 131071)],
    ),
    (
        "just south-west of Null Island",
        -1e-9,
        -1e-9,
        &[(1, 0, 1), (5, 15, 16), (10, 511, 512), (18, 131071, 131072)],
    ),
    (
        "west of the antimeridian",
        -179.99,
        10.0,
        &[
            (1, 0, 0),
            (5, 0, 15),
            (10, 0, 483),
            (15, 0, 15469),
            (18, 7, 123752),
        ],
    ),
    (
        "east of the antimeridian",
        179.99,
        -10.0,
        &[
            (1, 1, 1),
            (5, 31, 16),
            (10, 1023, 540),
            (15, 32767, 17298),
            (18, 262136, 138391),
        ],
    ),
    // Beyond ±85.0511 the latitude clamps to the first or last row.
    (
        "near the north pole",
        10.0,
        89.0,
        &[
            (1, 1, 0),
            (5, 16, 0),
            (10, 540, 0),
            (15, 17294, 0),
            (18, 138353, 0),
        ],
    ),
    (
        "near the south pole",
        10.0,
        -89.0,
        &[
            (1, 1, 1),
            (5, 16, 31),
            (10, 540, 1023),
            (15, 17294, 32767),
            (18, 138353, 262143),
        ],
    ),
    // Just inside the cut-off: deep zooms have rows above it.
    (
        "85.05 N",
        10.0,
        85.05,
        &[(10, 540, 0), (15, 17294, 1), (18, 138353, 9)],
    ),
];

#[test]
fn tile_of_a_place_matches_the_slippy_map_formula() {
    for &(place, lon, lat, tiles) in KNOWN_TILES {
        for &(z, x, y) in tiles {
            assert_eq!(
                TileId::containing(lon, lat, z),
                tile(z, x, y),
                "{place} at z{z}"
            );
        }
    }
}

#[test]
fn the_edges_of_the_world_fall_in_the_first_and_last_tiles() {
    for z in [0u8, 1, 4, 12, 20, 30] {
        let last = (tiles_per_side(z) - 1) as u32;
        assert_eq!(TileId::containing(-180.0, 0.0, z).x, 0, "z{z}");
        assert_eq!(TileId::containing(180.0, 0.0, z).x, last, "z{z}");
        assert_eq!(TileId::containing(0.0, 90.0, z).y, 0, "z{z}");
        assert_eq!(TileId::containing(0.0, MAX_LATITUDE, z).y, 0, "z{z}");
        assert_eq!(TileId::containing(0.0, -90.0, z).y, last, "z{z}");
        assert_eq!(TileId::containing(0.0, -MAX_LATITUDE, z).y, last, "z{z}");
        assert_eq!(
            TileId::containing(180.0, -90.0, z),
            tile(z, last, last),
            "z{z}"
        );
        assert_eq!(TileId::containing(-180.0, 90.0, z), tile(z, 0, 0), "z{z}");
    }
}

#[test]
fn the_tile_of_a_point_contains_it_and_its_parent_is_the_tile_above() {
    for &(_, lon, lat, _) in KNOWN_TILES {
        for z in 1..=20u8 {
            let t = TileId::containing(lon, lat, z);
            let [w, s, e, n] = t.lonlat_bounds();
            let lat_c = lat.clamp(-MAX_LATITUDE, MAX_LATITUDE);
            assert!(w <= lon && lon <= e, "{lon} not in {w}..{e} for {t}");
            assert!(
                s <= lat_c + 1e-9 && lat_c <= n + 1e-9,
                "{lat} not in {s}..{n} for {t}"
            );
            assert_eq!(t.parent(), Some(TileId::containing(lon, lat, z - 1)), "{t}");
        }
    }
}

#[test]
fn tile_ids_are_checked_and_printed_as_z_x_y() {
    assert!(TileId::new(0, 0, 0).is_some());
    assert!(TileId::new(0, 0, 1).is_none());
    assert!(TileId::new(10, 1023, 1023).is_some());
    assert!(TileId::new(10, 1024, 0).is_none());
    assert!(TileId::new(10, 0, 1024).is_none());
    assert!(TileId::new(30, (1 << 30) - 1, 0).is_some());
    assert!(TileId::new(31, 0, 0).is_none());
    let t = tile(10, 550, 335);
    assert_eq!(t.to_string(), "10/550/335");
    assert_eq!(t.path(), "10/550/335");
    assert_eq!(t.parent(), Some(tile(9, 275, 167)));
}

// ---- tile bounds -------------------------------------------------------------------

/// A tile (z, x, y), its mercator [w, s, e, n] and its lon/lat [w, s, e, n].
type KnownBounds = (u8, u32, u32, [f64; 4], [f64; 4]);

/// Tile bounds from the Python formula in the module docs.
const KNOWN_BOUNDS: &[KnownBounds] = &[
    (
        0,
        0,
        0,
        [
            -20037508.342789244,
            -20037508.342789244,
            20037508.342789244,
            20037508.342789244,
        ],
        [-180.0, -85.0511287798066, 180.0, 85.0511287798066],
    ),
    (
        1,
        0,
        0,
        [-20037508.342789244, 0.0, 0.0, 20037508.342789244],
        [-180.0, 0.0, 0.0, 85.0511287798066],
    ),
    (
        1,
        1,
        1,
        [0.0, -20037508.342789244, 20037508.342789244, 0.0],
        [0.0, -85.0511287798066, 180.0, 0.0],
    ),
    // The north-west corner tile: west edge on the antimeridian, north edge at the cut-off.
    (
        3,
        0,
        0,
        [
            -20037508.342789244,
            15028131.257091932,
            -15028131.257091932,
            20037508.342789244,
        ],
        [-180.0, 79.17133464081945, -135.0, 85.0511287798066],
    ),
    // The south-east corner tile: east edge on the antimeridian.
    (
        3,
        7,
        7,
        [
            15028131.257091936,
            -20037508.342789244,
            20037508.342789244,
            -15028131.257091936,
        ],
        [135.0, -85.0511287798066, 180.0, -79.17133464081945],
    ),
    (
        3,
        0,
        4,
        [
            -20037508.342789244,
            -5009377.085697312,
            -15028131.257091932,
            0.0,
        ],
        [-180.0, -40.97989806962013, -135.0, 0.0],
    ),
    // Berlin.
    (
        10,
        550,
        335,
        [
            1487158.8223163895,
            6887893.4928338025,
            1526294.5807983987,
            6927029.2513158135,
        ],
        [13.359375, 52.48278022207821, 13.7109375, 52.69636107827448],
    ),
    (
        5,
        31,
        0,
        [
            18785164.071364913,
            18785164.071364917,
            20037508.342789244,
            20037508.342789244,
        ],
        [168.75, 83.97925949886205, 180.0, 85.0511287798066],
    ),
    // Polar corner tiles at z12.
    (
        12,
        0,
        4095,
        [
            -20037508.342789244,
            -20037508.342789244,
            -20027724.40316874,
            -20027724.40316874,
        ],
        [
            -180.0,
            -85.0511287798066,
            -179.912109375,
            -85.04354094565655,
        ],
    ),
    (
        12,
        4095,
        0,
        [
            20027724.40316874,
            20027724.40316874,
            20037508.342789244,
            20037508.342789244,
        ],
        [179.912109375, 85.04354094565655, 180.0, 85.0511287798066],
    ),
];

#[test]
fn tile_bounds_match_the_slippy_map_formula() {
    for &(z, x, y, mercator, lonlat) in KNOWN_BOUNDS {
        let t = tile(z, x, y);
        assert_close4(
            &format!("{t} mercator"),
            t.mercator_bounds(),
            mercator,
            1e-6,
        );
        assert_close4(&format!("{t} lon/lat"), t.lonlat_bounds(), lonlat, 1e-9);
    }
}

#[test]
fn the_first_and_last_columns_reach_the_antimeridian_and_rows_the_cut_off() {
    for z in [1u8, 2, 7, 15, 22] {
        let last = (tiles_per_side(z) - 1) as u32;
        let mid = last / 2;
        assert!(
            close(tile(z, 0, mid).lonlat_bounds()[0], -180.0, 1e-9),
            "z{z}"
        );
        assert!(
            close(tile(z, last, mid).lonlat_bounds()[2], 180.0, 1e-9),
            "z{z}"
        );
        assert!(close(
            tile(z, 0, mid).mercator_bounds()[0],
            -MERCATOR_HALF_WORLD,
            1e-6
        ));
        assert!(close(
            tile(z, last, mid).mercator_bounds()[2],
            MERCATOR_HALF_WORLD,
            1e-6
        ));
        assert!(
            close(tile(z, mid, 0).lonlat_bounds()[3], 85.0511287798066, 1e-9),
            "z{z}"
        );
        assert!(
            close(
                tile(z, mid, last).lonlat_bounds()[1],
                -85.0511287798066,
                1e-9
            ),
            "z{z}"
        );
        assert!(close(
            tile(z, mid, 0).mercator_bounds()[3],
            MERCATOR_HALF_WORLD,
            1e-6
        ));
        assert!(close(
            tile(z, mid, last).mercator_bounds()[1],
            -MERCATOR_HALF_WORLD,
            1e-6
        ));
    }
}

#[test]
fn neighbouring_tiles_share_their_edges_and_tiles_are_square_in_metres() {
    let z = 6;
    let side = 2.0 * MERCATOR_HALF_WORLD / 64.0;
    for (x, y) in [(0u32, 0u32), (10, 20), (31, 31), (62, 62)] {
        let here = tile(z, x, y).mercator_bounds();
        let east = tile(z, x + 1, y).mercator_bounds();
        let south = tile(z, x, y + 1).mercator_bounds();
        assert!(close(here[2], east[0], 1e-6), "{x},{y}");
        assert!(close(here[1], south[3], 1e-6), "{x},{y}");
        assert!(close(here[2] - here[0], side, 1e-6), "{x},{y}: {here:?}");
        assert!(close(here[3] - here[1], side, 1e-6), "{x},{y}: {here:?}");
        let ll = tile(z, x, y).lonlat_bounds();
        let ll_s = tile(z, x, y + 1).lonlat_bounds();
        assert!(close(ll[1], ll_s[3], 1e-9));
        assert!(ll[3] > ll[1] && ll[2] > ll[0], "{ll:?}");
    }
}

// ---- Web Mercator --------------------------------------------------------------------

#[test]
fn lonlat_to_mercator_matches_known_values() {
    // (lon, lat, x, y) from the Python formula in the module docs.
    let known: &[(f64, f64, f64, f64)] = &[
        (0.0, 0.0, 0.0, 0.0),
        (180.0, 0.0, 20037508.342789244, 0.0),
        (-180.0, 0.0, -20037508.342789244, 0.0),
        (13.405, 52.52, 1492237.774083832, 6894699.801282422),
        (151.2093, -33.8688, 16832542.27920734, -4011198.6473075734),
        (-74.006, 40.7128, -8238310.235647004, 4970071.579142425),
        (45.0, 45.0, 5009377.085697311, 5621521.486192066),
        (0.0, 85.0511287798066, 0.0, 20037508.342789244),
    ];
    for &(lon, lat, x, y) in known {
        let (mx, my) = lonlat_to_mercator(lon, lat);
        assert!(
            close(mx, x, 1e-3) && close(my, y, 1e-3),
            "({lon}, {lat}) -> ({mx}, {my}), want ({x}, {y})"
        );
        let (lon2, lat2) = mercator_to_lonlat(x, y);
        assert!(
            close(lon2, lon, 1e-9) && close(lat2, lat, 1e-9),
            "({x}, {y}) -> ({lon2}, {lat2})"
        );
    }
    // Latitudes past the cut-off are clamped to the edge of the square world.
    let (_, y) = lonlat_to_mercator(0.0, 89.9);
    assert!(close(y, MERCATOR_HALF_WORLD, 1e-3), "{y}");
    let (_, y) = lonlat_to_mercator(0.0, -90.0);
    assert!(close(y, -MERCATOR_HALF_WORLD, 1e-3), "{y}");
}

// ---- tiles covering a geometry --------------------------------------------------------

/// Unit Mercator scaled to the tile grid at zoom `z`: an implementation apart from
/// the crate's (asinh of tan rather than ln of tan + sec).
fn grid(lon: f64, lat: f64, z: u8) -> Coord<f64> {
    let n = f64::from(1u32 << z);
    let lat = lat.clamp(-85.0511287798066, 85.0511287798066).to_radians();
    Coord {
        x: (lon + 180.0) / 360.0 * n,
        y: (1.0 - lat.tan().asinh() / PI) / 2.0 * n,
    }
}

fn grid_ring(points: &[(f64, f64)], z: u8) -> LineString<f64> {
    LineString(points.iter().map(|&(lon, lat)| grid(lon, lat, z)).collect())
}

fn ring(points: &[(f64, f64)]) -> LineString<f64> {
    LineString(points.iter().map(|&(x, y)| Coord { x, y }).collect())
}

fn cell(t: &TileId) -> Rect<f64> {
    let (x, y) = (f64::from(t.x), f64::from(t.y));
    Rect::new(
        Coord { x, y },
        Coord {
            x: x + 1.0,
            y: y + 1.0,
        },
    )
}

/// Every tile at zoom `z` in the grid-space bounding box of `shape` for which `keep` holds.
fn tiles_where(
    shape: &LineString<f64>,
    z: u8,
    keep: impl Fn(&Rect<f64>) -> bool,
) -> BTreeSet<TileId> {
    let last = tiles_per_side(z) as f64 - 1.0;
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for c in &shape.0 {
        (x0, y0, x1, y1) = (x0.min(c.x), y0.min(c.y), x1.max(c.x), y1.max(c.y));
    }
    let mut out = BTreeSet::new();
    for y in y0.floor().max(0.0) as u32..=y1.floor().min(last) as u32 {
        for x in x0.floor().max(0.0) as u32..=x1.floor().min(last) as u32 {
            let t = tile(z, x, y);
            if keep(&cell(&t)) {
                out.insert(t);
            }
        }
    }
    out
}

fn bbox_tile_count(tiles: &BTreeSet<TileId>) -> usize {
    let xs = tiles.iter().map(|t| t.x);
    let ys = tiles.iter().map(|t| t.y);
    let w = xs.clone().max().unwrap() - xs.min().unwrap() + 1;
    let h = ys.clone().max().unwrap() - ys.min().unwrap() + 1;
    (w * h) as usize
}

/// Whether the tiles form one piece, neighbours sharing an edge (not only a corner).
fn four_connected(tiles: &BTreeSet<TileId>) -> bool {
    let Some(&first) = tiles.iter().next() else {
        return true;
    };
    let mut seen = BTreeSet::from([first]);
    let mut queue = VecDeque::from([first]);
    while let Some(t) = queue.pop_front() {
        let (x, y) = (i64::from(t.x), i64::from(t.y));
        for (nx, ny) in [(x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)] {
            let (Ok(nx), Ok(ny)) = (u32::try_from(nx), u32::try_from(ny)) else {
                continue;
            };
            let n = TileId {
                z: t.z,
                x: nx,
                y: ny,
            };
            if tiles.contains(&n) && seen.insert(n) {
                queue.push_back(n);
            }
        }
    }
    seen.len() == tiles.len()
}

fn covering(g: &Geometry<f64>, z: u8) -> BTreeSet<TileId> {
    let tiles = tiles_covering(g, z);
    let set: BTreeSet<TileId> = tiles.iter().copied().collect();
    assert_eq!(set.len(), tiles.len(), "duplicates in {tiles:?}");
    // Sorted by row, then column.
    let mut sorted = tiles.clone();
    sorted.sort_by_key(|t| (t.y, t.x));
    assert_eq!(tiles, sorted, "not sorted by row, then column");
    assert!(
        tiles
            .iter()
            .all(|t| t.z == z && TileId::new(t.z, t.x, t.y).is_some()),
        "{tiles:?}"
    );
    set
}

#[test]
fn a_diagonal_line_covers_the_tiles_it_crosses_and_no_others() {
    let path = [(-120.3, -50.2), (130.7, 60.1)];
    for z in [3u8, 6, 9] {
        let got = covering(&Geometry::LineString(ring(&path)), z);
        let line = grid_ring(&path, z);
        let want = tiles_where(&line, z, |r| r.intersects(&line));
        assert_eq!(got, want, "z{z}");
        assert!(four_connected(&got), "z{z}: {got:?}");
        assert!(got.contains(&TileId::containing(path[0].0, path[0].1, z)));
        assert!(got.contains(&TileId::containing(path[1].0, path[1].1, z)));
        let bbox = bbox_tile_count(&got);
        if z >= 6 {
            assert!(
                got.len() * 10 < bbox,
                "z{z}: {} tiles of a {bbox}-tile bbox",
                got.len()
            );
        }
    }
}

#[test]
fn a_line_with_several_segments_is_covered_along_its_whole_path() {
    let path = [
        (-10.1, 40.2),
        (30.3, 45.7),
        (25.9, 10.4),
        (-40.6, -20.8),
        (100.2, -5.3),
    ];
    for z in [4u8, 8] {
        let got = covering(&Geometry::LineString(ring(&path)), z);
        let line = grid_ring(&path, z);
        let want = tiles_where(&line, z, |r| r.intersects(&line));
        assert_eq!(got, want, "z{z}");
        assert!(four_connected(&got), "z{z}");
    }
}

#[test]
fn a_line_through_tile_corners_stays_four_connected() {
    // From the north-west corner of the world to the south-east one: every step of
    // the diagonal passes exactly through a tile corner.
    let line = Geometry::LineString(ring(&[
        (-180.0, 85.0511287798066),
        (180.0, -85.0511287798066),
    ]));
    for z in [1u8, 2, 5] {
        let got = covering(&line, z);
        let n = tiles_per_side(z) as u32;
        for i in 0..n {
            assert!(
                got.contains(&tile(z, i, i)),
                "z{z}: {i},{i} missing from {got:?}"
            );
        }
        assert!(four_connected(&got), "z{z}: {got:?}");
        assert!(got.len() <= 2 * n as usize, "z{z}: {} tiles", got.len());
    }
}

#[test]
fn lines_along_the_equator_and_the_antimeridian() {
    // The equator is the boundary between two rows; like a point on it, it belongs
    // to the row south of it.
    let equator = Geometry::LineString(ring(&[(-179.0, 0.0), (179.0, 0.0)]));
    let got: Vec<TileId> = tiles_covering(&equator, 2);
    assert_eq!(got, (0..4).map(|x| tile(2, x, 2)).collect::<Vec<_>>());

    // Along the antimeridian, from pole to pole: the last column, every row.
    let meridian = Geometry::LineString(ring(&[(180.0, 90.0), (180.0, -90.0)]));
    let got: Vec<TileId> = tiles_covering(&meridian, 3);
    assert_eq!(got, (0..8).map(|y| tile(3, 7, y)).collect::<Vec<_>>());

    // Eastwards to the antimeridian (as in Fiji's outline).
    let east = Geometry::LineString(ring(&[(170.1, -16.5), (180.0, -16.5)]));
    let got = covering(&east, 5);
    let row = TileId::containing(175.0, -16.5, 5).y;
    assert_eq!(got, BTreeSet::from([tile(5, 31, row)]));
}

#[test]
fn an_l_shaped_polygon_covers_its_inside_but_not_its_bbox() {
    let outline = [
        (-100.3, -50.7),
        (60.2, -50.7),
        (60.2, -20.1),
        (-60.4, -20.1),
        (-60.4, 60.3),
        (-100.3, 60.3),
        (-100.3, -50.7),
    ];
    let polygon = Geometry::Polygon(Polygon::new(ring(&outline), vec![]));
    for z in [3u8, 5, 7] {
        let got = covering(&polygon, z);
        let shape = Polygon::new(grid_ring(&outline, z), vec![]);
        let want = tiles_where(shape.exterior(), z, |r| r.intersects(&shape));
        assert_eq!(got, want, "z{z}");
        assert!(
            got.len() < bbox_tile_count(&got),
            "z{z}: the bbox is not an L"
        );
        if z >= 5 {
            // Tiles no edge touches, yet inside: found by the fill, not the outline.
            let interior: Vec<_> = got
                .iter()
                .filter(|t| !cell(t).intersects(shape.exterior()))
                .collect();
            assert!(!interior.is_empty(), "z{z}: no interior tiles");
            // The notch of the L (north-east of the corner) is left out.
            let notch = TileId::containing(30.0, 30.0, z);
            assert!(!got.contains(&notch), "z{z}: {notch} is in the notch");
        }
    }
}

#[test]
fn a_hole_leaves_out_the_tiles_wholly_inside_it() {
    let outer = [
        (-150.5, -70.5),
        (150.5, -70.5),
        (150.5, 70.5),
        (-150.5, 70.5),
        (-150.5, -70.5),
    ];
    // A hole wound the other way, as RFC 7946 asks.
    let hole = [
        (-100.2, -40.3),
        (-100.2, 40.9),
        (100.7, 40.9),
        (100.7, -40.3),
        (-100.2, -40.3),
    ];
    let polygon = Geometry::Polygon(Polygon::new(ring(&outer), vec![ring(&hole)]));
    for z in [4u8, 5, 6] {
        let got = covering(&polygon, z);
        let shape = Polygon::new(grid_ring(&outer, z), vec![grid_ring(&hole, z)]);
        let want = tiles_where(shape.exterior(), z, |r| r.intersects(&shape));
        assert_eq!(got, want, "z{z}");
        let hole_shape = Polygon::new(grid_ring(&hole, z), vec![]);
        let in_hole = tiles_where(hole_shape.exterior(), z, |r| {
            hole_shape.contains(r) && !r.intersects(hole_shape.exterior())
        });
        assert!(!in_hole.is_empty(), "z{z}: the hole holds no whole tile");
        for t in &in_hole {
            assert!(!got.contains(t), "z{z}: {t} lies wholly in the hole");
        }
        assert!(
            got.contains(&TileId::containing(-125.0, 0.0, z)),
            "z{z}: the rim between hole and edge"
        );
    }
}

#[test]
fn the_whole_world_covers_every_tile() {
    let world = Geometry::Polygon(Polygon::new(
        ring(&[
            (-180.0, -90.0),
            (180.0, -90.0),
            (180.0, 90.0),
            (-180.0, 90.0),
            (-180.0, -90.0),
        ]),
        vec![],
    ));
    for z in [0u8, 1, 3] {
        let n = tiles_per_side(z) as usize;
        assert_eq!(tiles_covering(&world, z).len(), n * n, "z{z}");
    }
}

#[test]
fn a_point_covers_exactly_its_tile() {
    for &(place, lon, lat, tiles) in KNOWN_TILES {
        for &(z, x, y) in tiles {
            let got = tiles_covering(&Geometry::Point(Point::new(lon, lat)), z);
            assert_eq!(got, vec![tile(z, x, y)], "{place} at z{z}");
        }
    }
}

#[test]
fn multipoints_and_collections_cover_the_union_of_their_parts() {
    // Berlin 10/550/335, Sydney 10/942/614, New York 10/301/385 (Python formula),
    // and a second point in Berlin's tile.
    let points = MultiPoint(vec![
        Point::new(151.2093, -33.8688),
        Point::new(13.405, 52.52),
        Point::new(-74.006, 40.7128),
        Point::new(13.5, 52.6),
    ]);
    let got = tiles_covering(&Geometry::MultiPoint(points.clone()), 10);
    assert_eq!(
        got,
        vec![tile(10, 550, 335), tile(10, 301, 385), tile(10, 942, 614)]
    );

    let line = ring(&[(-10.1, 40.2), (30.3, 45.7)]);
    let collection = Geometry::GeometryCollection(GeometryCollection(vec![
        Geometry::MultiPoint(points),
        Geometry::LineString(line.clone()),
        Geometry::GeometryCollection(GeometryCollection(vec![Geometry::Point(Point::new(
            0.0, 0.0,
        ))])),
    ]));
    let got = covering(&collection, 10);
    let mut want = covering(&Geometry::LineString(line), 10);
    want.extend([
        tile(10, 550, 335),
        tile(10, 301, 385),
        tile(10, 942, 614),
        tile(10, 512, 512),
    ]);
    assert_eq!(got, want);

    assert!(
        tiles_covering(&Geometry::GeometryCollection(GeometryCollection(vec![])), 4).is_empty()
    );
}

#[test]
fn a_tiny_polygon_covers_the_one_tile_it_is_in() {
    let p = Geometry::Polygon(Polygon::new(
        ring(&[
            (13.40, 52.51),
            (13.41, 52.51),
            (13.41, 52.52),
            (13.40, 52.51),
        ]),
        vec![],
    ));
    assert_eq!(tiles_covering(&p, 10), vec![tile(10, 550, 335)]);
    // lonlat_to_unit agrees with the independent grid projection used above.
    let (ux, uy) = lonlat_to_unit(13.405, 52.52);
    let g = grid(13.405, 52.52, 0);
    assert!(
        close(ux, g.x, 1e-12) && close(uy, g.y, 1e-12),
        "({ux}, {uy}) vs {g:?}"
    );
}
