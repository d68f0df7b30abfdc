//! Agreement with Mapnik, the renderer behind classic seeders: on the shared data
//! with the reference style, per-tile fill coverage agrees on at least 99 % of the
//! pixels away from anti-aliased edges.
//!
//! Needs the Mapnik peer (`python3-mapnik`, which `scripts/test` installs) and its
//! script at `../shared/peers/mapnik_render.py` (or `TILEFARM_MAPNIK_SCRIPT`).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{sample, sample_layer};
use tilefarm_renderer::{Style, TileId};
use tilefarm_worker::{DirSink, PyramidOptions, render_pyramid};

fn mapnik_script() -> PathBuf {
    std::env::var_os("TILEFARM_MAPNIK_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/peers/mapnik_render.py"
            ))
        })
}

fn alpha(path: &std::path::Path) -> Vec<u8> {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgba8();
    assert_eq!(img.dimensions(), (256, 256), "{}", path.display());
    img.pixels().map(|p| p.0[3]).collect()
}

/// Pixels that are fully opaque or fully clear, with every neighbour within two
/// pixels the same, in an alpha image.
fn settled(a: &[u8]) -> Vec<bool> {
    let at = |x: i32, y: i32| a[(y.clamp(0, 255) * 256 + x.clamp(0, 255)) as usize];
    let mut out = vec![false; 256 * 256];
    for y in 0..256i32 {
        for x in 0..256i32 {
            let v = at(x, y);
            out[(y * 256 + x) as usize] = (v == 0 || v == 255)
                && (-2..=2).all(|dy| (-2..=2).all(|dx| at(x + dx, y + dy) == v));
        }
    }
    out
}

#[test]
fn fill_coverage_agrees_with_mapnik() {
    let script = mapnik_script();
    assert!(
        script.exists(),
        "the Mapnik peer script {} is missing (set TILEFARM_MAPNIK_SCRIPT)",
        script.display()
    );
    let data = sample("ne_110m_countries.geojson");
    let zmax = 3u8;
    let peer_dir = tempfile::tempdir().unwrap();
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(&data)
        .arg(peer_dir.path())
        .args(["--zmax", &zmax.to_string(), "--metatile", "8"])
        .output()
        .expect(
            "run /usr/bin/python3 (Debian's python3 with python3-mapnik; scripts/test installs it)",
        );
    assert!(
        out.status.success(),
        "the Mapnik peer failed (is python3-mapnik installed? scripts/test installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let ours = tempfile::tempdir().unwrap();
    let layer = sample_layer("ne_110m_countries.geojson", &Style::default());
    let sink = DirSink::new(ours.path(), false).unwrap();
    let options = PyramidOptions {
        zooms: 0..=zmax,
        ..Default::default()
    };
    render_pyramid(&layer, &options, &sink, &|_| {}).unwrap();

    let (mut compared, mut agreed) = (0u64, 0u64);
    for z in 0..=zmax {
        for x in 0..1u32 << z {
            for y in 0..1u32 << z {
                let t = TileId::new(z, x, y).unwrap();
                let a = alpha(&sink.tile_path(t));
                let b = alpha(&peer_dir.path().join(format!("{z}/{x}/{y}.png")));
                let (sa, sb) = (settled(&a), settled(&b));
                let (mut tile_compared, mut tile_agreed) = (0u64, 0u64);
                for i in 0..a.len() {
                    if sa[i] && sb[i] {
                        tile_compared += 1;
                        if (a[i] >= 128) == (b[i] >= 128) {
                            tile_agreed += 1;
                        }
                    }
                }
                if tile_compared > 0 {
                    let share = tile_agreed as f64 / tile_compared as f64;
                    assert!(
                        share >= 0.99,
                        "tile {t}: coverage agrees on {:.2} % of settled pixels",
                        share * 100.0
                    );
                }
                compared += tile_compared;
                agreed += tile_agreed;
            }
        }
    }
    assert!(
        compared > 80 * 256 * 200,
        "too few settled pixels were compared: {compared}"
    );
    // The measure can tell renderings apart: our z3 tiles against Mapnik's tiles one
    // column to the east agree far less.
    let (mut shifted_compared, mut shifted_agreed) = (0u64, 0u64);
    for x in 0..8u32 {
        for y in 0..8u32 {
            let a = alpha(&sink.tile_path(TileId::new(3, x, y).unwrap()));
            let b = alpha(&peer_dir.path().join(format!("3/{}/{y}.png", (x + 1) % 8)));
            let (sa, sb) = (settled(&a), settled(&b));
            for i in 0..a.len() {
                if sa[i] && sb[i] {
                    shifted_compared += 1;
                    shifted_agreed += u64::from((a[i] >= 128) == (b[i] >= 128));
                }
            }
        }
    }
    let shifted = shifted_agreed as f64 / shifted_compared as f64;
    eprintln!(
        "mismatched tiles agree on {:.1} % of settled pixels",
        shifted * 100.0
    );
    assert!(
        shifted < 0.9,
        "mismatched tiles agree on {:.1} %: the measure does not discriminate",
        shifted * 100.0
    );
    let share = agreed as f64 / compared as f64;
    eprintln!(
        "coverage agrees with Mapnik on {:.3} % of {compared} settled pixels",
        share * 100.0
    );
    assert!(share >= 0.99);
}
