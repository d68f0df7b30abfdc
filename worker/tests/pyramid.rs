//! Whole pyramids: determinism across thread counts, every tile addressable,
//! uniform tiles stored once, empty tiles skipped on request, object store sink.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{sample_layer, tree};
use object_store::ObjectStoreExt;
use object_store::memory::InMemory;
use tilefarm_renderer::{Style, TileId};
use tilefarm_worker::{DirSink, ObjectStoreSink, PmTilesSink, PyramidOptions, render_pyramid};

fn render_dir(
    threads: usize,
    options: &PyramidOptions,
    dir: &std::path::Path,
) -> tilefarm_worker::Summary {
    let layer = sample_layer("ne_110m_countries.geojson", &Style::default());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let sink = DirSink::new(dir, true).unwrap();
    pool.install(|| render_pyramid(&layer, options, &sink, &|_| {}))
        .expect("render")
}

#[test]
fn one_thread_and_many_give_byte_identical_pyramids() {
    let options = PyramidOptions {
        zooms: 0..=4,
        ..PyramidOptions::default()
    };
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let sa = render_dir(1, &options, a.path());
    let sb = render_dir(2, &options, b.path());
    let sc = render_dir(5, &options, c.path());
    let (ta, tb, tc) = (tree(a.path()), tree(b.path()), tree(c.path()));
    assert!(
        ta.len() > 341,
        "every tile and the shared uniform files: {}",
        ta.len()
    );
    assert!(ta == tb, "1 thread and 2 threads differ");
    assert!(ta == tc, "1 thread and 5 threads differ");
    assert_eq!((sa.encoded, sa.uniform), (sb.encoded, sb.uniform));
    assert_eq!((sa.encoded, sa.uniform), (sc.encoded, sc.uniform));
}

#[test]
fn every_tile_is_addressable_and_uniform_tiles_share_one_file() {
    let options = PyramidOptions {
        zooms: 0..=4,
        ..PyramidOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let summary = render_dir(2, &options, dir.path());
    assert_eq!(summary.tiles, 1 + 4 + 16 + 64 + 256);
    assert_eq!(summary.encoded + summary.uniform, summary.tiles);
    assert!(
        summary.uniform > 50,
        "a world pyramid has much open ocean: {summary:?}"
    );
    let sink = DirSink::new(dir.path(), true).unwrap();
    for z in 0..=4u8 {
        for x in 0..1u32 << z {
            for y in 0..1u32 << z {
                let path = sink.tile_path(TileId::new(z, x, y).unwrap());
                let png =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let img = image::load_from_memory(&png).expect("a PNG");
                assert_eq!((img.width(), img.height()), (256, 256));
            }
        }
    }
    // Transparent tiles are hard links to one file.
    use std::os::unix::fs::MetadataExt;
    let empty = dir.path().join(".uniform/00000000.png");
    let links = std::fs::metadata(&empty)
        .expect("the shared transparent tile")
        .nlink();
    assert_eq!(
        links,
        summary.empty + 1,
        "each empty tile links to the one file"
    );
}

#[test]
fn empty_tiles_can_be_left_out() {
    let options = PyramidOptions {
        zooms: 0..=3,
        skip_empty: true,
        ..PyramidOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let summary = render_dir(2, &options, dir.path());
    assert!(summary.skipped > 0);
    assert_eq!(summary.skipped, summary.empty);
    let files = tree(dir.path())
        .keys()
        .filter(|k| !k.starts_with('.') && k.ends_with(".png"))
        .count();
    assert_eq!(files as u64, summary.tiles - summary.skipped);
}

#[test]
fn the_object_store_sink_holds_the_same_tiles_as_the_directory() {
    let options = PyramidOptions {
        zooms: 0..=3,
        ..PyramidOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    render_dir(2, &options, dir.path());
    let on_disk = tree(dir.path());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(InMemory::new());
    let sink = ObjectStoreSink::new(
        store.clone(),
        "layers/world".into(),
        runtime.handle().clone(),
    )
    .with_http_headers("public, max-age=3600");
    let layer = sample_layer("ne_110m_countries.geojson", &Style::default());
    let done = AtomicU64::new(0);
    let summary = render_pyramid(&layer, &options, &sink, &|n| {
        done.fetch_add(n, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(
        done.load(Ordering::Relaxed),
        summary.tiles,
        "progress adds up to the total"
    );
    runtime.block_on(async {
        for (rel, bytes) in on_disk
            .iter()
            .filter(|(k, _)| !k.starts_with('.') && k.ends_with(".png"))
        {
            let key = object_store::path::Path::from(format!("layers/world/{rel}"));
            let got = store
                .get(&key)
                .await
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            let attrs = got.attributes.clone();
            assert_eq!(&got.bytes().await.unwrap()[..], &bytes[..], "{key}");
            assert_eq!(
                attrs
                    .get(&object_store::Attribute::ContentType)
                    .map(|v| v.as_ref()),
                Some("image/png")
            );
            assert_eq!(
                attrs
                    .get(&object_store::Attribute::CacheControl)
                    .map(|v| v.as_ref()),
                Some("public, max-age=3600")
            );
        }
    });
}

#[test]
fn bad_options_are_refused_before_any_work() {
    let layer = sample_layer("ne_cities.geojson", &Style::default());
    let dir = tempfile::tempdir().unwrap();
    let sink = DirSink::new(dir.path(), true).unwrap();
    for (options, expected) in [
        (
            PyramidOptions {
                tile_size: 300,
                ..Default::default()
            },
            "tile size 300",
        ),
        (
            PyramidOptions {
                metatile: 3,
                ..Default::default()
            },
            "metatile size 3",
        ),
        (
            PyramidOptions {
                zooms: 0..=25,
                ..Default::default()
            },
            "zoom 25",
        ),
    ] {
        let err = render_pyramid(&layer, &options, &sink, &|_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(expected),
            "{err:?} should mention {expected:?}"
        );
    }
    assert!(tree(dir.path()).is_empty(), "nothing was written");
}

#[test]
fn the_pmtiles_archive_holds_the_same_tiles_as_the_directory() {
    let options = PyramidOptions {
        zooms: 0..=4,
        ..PyramidOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    render_dir(2, &options, dir.path());
    let on_disk = tree(dir.path());

    let archive = dir.path().join("world.pmtiles");
    let sink = PmTilesSink::create(&archive, 0, 4, [-180.0, -85.0, 180.0, 85.0]).unwrap();
    let layer = sample_layer("ne_110m_countries.geojson", &Style::default());
    let summary = render_pyramid(&layer, &options, &sink, &|_| {}).unwrap();
    assert!(archive.is_file(), "the archive is in place once finished");
    assert!(!dir.path().join("world.pmtiles.tmp").exists());

    let every_tile: BTreeMap<String, Vec<u8>> = on_disk
        .into_iter()
        .filter(|(k, _)| !k.starts_with('.') && k.ends_with(".png"))
        .collect();
    assert_eq!(
        every_tile.len(),
        341,
        "the directory has every tile of z0-4"
    );
    let counts = check_archive(&archive, &every_tile);
    assert_eq!(counts.addressed, summary.tiles);
    assert!(
        counts.contents <= summary.encoded + 3,
        "one-colour tiles are stored once per colour: {} contents for {} encoded tiles",
        counts.contents,
        summary.encoded
    );
}

#[test]
fn leaving_empty_tiles_out_costs_in_proportion_to_the_data() {
    // 1.4 million tiles, almost all empty: only metatiles near the cities are drawn.
    let options = PyramidOptions {
        zooms: 6..=10,
        skip_empty: true,
        ..PyramidOptions::default()
    };
    let layer = sample_layer("ne_cities.geojson", &Style::default());
    let dir = tempfile::tempdir().unwrap();
    let sink = DirSink::new(dir.path(), true).unwrap();
    let done = AtomicU64::new(0);
    let summary = render_pyramid(&layer, &options, &sink, &|n| {
        done.fetch_add(n, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(
        summary.tiles,
        (6..=10).map(|z| 1u64 << (2 * z)).sum::<u64>()
    );
    assert_eq!(
        done.load(Ordering::Relaxed),
        summary.tiles,
        "progress still reaches the total"
    );
    assert!(summary.metatiles_drawn < 2000, "{summary:?}");
    let files = tree(dir.path())
        .keys()
        .filter(|k| !k.starts_with('.') && k.ends_with(".png"))
        .count() as u64;
    assert_eq!(files, summary.tiles - summary.skipped);
    // Every city's tile at zoom 10 is there.
    assert!(files >= 200, "{files} tiles written");
}

/// The tiles of a full render (every tile drawn) that are not transparent.
fn drawn_tiles(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let transparent = tilefarm_renderer::encode_png(
        &tilefarm_renderer::TileImage::Uniform(tilefarm_renderer::Rgba([0, 0, 0, 0])),
        256,
    )
    .unwrap();
    tree(dir)
        .into_iter()
        .filter(|(k, png)| !k.starts_with('.') && k.ends_with(".png") && *png != transparent)
        .collect()
}

#[test]
fn planned_tasks_and_regions_give_the_tiles_of_a_full_render() {
    use tilefarm_renderer::ZoomLayer;
    use tilefarm_worker::{TileSink, UniformPngs, plan_render, render_tiles_into};
    let zooms = 0..=6;
    let layer = sample_layer("ne_110m_countries.geojson", &Style::default());
    let full = tempfile::tempdir().unwrap();
    let options = PyramidOptions {
        zooms: zooms.clone(),
        ..PyramidOptions::default()
    };
    render_pyramid(
        &layer,
        &options,
        &DirSink::new(full.path(), true).unwrap(),
        &|_| {},
    )
    .unwrap();

    let plan = plan_render(&layer, zooms.clone(), 8, 256);
    assert!(!plan.regions.is_empty());
    assert!(
        plan.tiles + plan.region_tiles < plan.pyramid_tiles,
        "the plan leaves out the empty ocean"
    );
    let tasks = tempfile::tempdir().unwrap();
    let sink = DirSink::new(tasks.path(), true).unwrap();
    let pngs = UniformPngs::default();
    let zls: Vec<ZoomLayer> = zooms
        .clone()
        .map(|z| ZoomLayer::new(&layer, z, 256))
        .collect();
    // In reverse order, and the first task twice, as a redelivery would.
    for m in plan.metatiles.iter().rev().chain(plan.metatiles.first()) {
        render_tiles_into(&zls[m.meta.z as usize], m.meta, &m.tiles, 8, &sink, &pngs).unwrap();
    }
    let mut region_tiles = 0;
    for r in &plan.regions {
        let png = pngs.get(r.color, 256).unwrap();
        region_tiles += sink.put_region(*r, zooms.clone(), &png).unwrap();
    }
    assert_eq!(region_tiles, plan.region_tiles);
    let (ours, theirs) = (drawn_tiles(tasks.path()), drawn_tiles(full.path()));
    let differ: Vec<&String> = theirs
        .iter()
        .filter(|(k, png)| ours.get(*k) != Some(png))
        .map(|(k, _)| k)
        .chain(ours.keys().filter(|k| !theirs.contains_key(*k)))
        .collect();
    assert!(
        differ.is_empty(),
        "{} tiles differ from a full render, first {:?}",
        differ.len(),
        &differ[..differ.len().min(5)]
    );
    // Left to regions, not drawn: most of the tiles inside countries.
    assert!(
        plan.region_tiles > plan.tiles / 4,
        "{} drawn, {} in regions",
        plan.tiles,
        plan.region_tiles
    );
}

#[test]
fn a_pmtiles_archive_keeps_each_region_as_one_run_per_zoom() {
    let zooms = 0..=7;
    let options = PyramidOptions {
        zooms: zooms.clone(),
        skip_empty: true,
        ..PyramidOptions::default()
    };
    let layer = sample_layer("ne_110m_countries.geojson", &Style::default());
    let dir = tempfile::tempdir().unwrap();
    let full = tempfile::tempdir().unwrap();
    render_pyramid(
        &layer,
        &PyramidOptions {
            skip_empty: false,
            ..options.clone()
        },
        &DirSink::new(full.path(), true).unwrap(),
        &|_| {},
    )
    .unwrap();
    let expected = drawn_tiles(full.path());
    let archive = dir.path().join("world.pmtiles");
    let sink = PmTilesSink::create(&archive, 0, 7, [-180.0, -85.0, 180.0, 85.0]).unwrap();
    let summary = render_pyramid(&layer, &options, &sink, &|_| {}).unwrap();
    assert!(
        summary.regions > 0 && summary.region_tiles > 0,
        "{summary:?}"
    );
    let counts = check_archive(&archive, &expected);
    assert_eq!(counts.addressed, summary.tiles - summary.skipped);
    // A region's tiles at a zoom are one run: far fewer entries than tiles.
    assert!(
        counts.entries + summary.region_tiles / 2 < counts.addressed,
        "{} entries for {} tiles, {} of them in regions",
        counts.entries,
        counts.addressed,
        summary.region_tiles
    );
}

/// What a PMTiles archive's header counts.
struct ArchiveCounts {
    addressed: u64,
    contents: u64,
    entries: u64,
}

/// Opens a PMTiles archive, checks that it holds every tile of `expected`
/// (`z/x/y.png` -> bytes) with those bytes, and gives its header's counts.
fn check_archive(archive: &std::path::Path, expected: &BTreeMap<String, Vec<u8>>) -> ArchiveCounts {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let reader = pmtiles::AsyncPmTilesReader::new_with_path(archive)
            .await
            .unwrap();
        for (path, png) in expected {
            let p: Vec<u32> = path
                .trim_end_matches(".png")
                .split('/')
                .map(|v| v.parse().unwrap())
                .collect();
            let coord = pmtiles::TileCoord::new(p[0] as u8, p[1], p[2]).unwrap();
            let got = reader
                .get_tile(coord)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{path} missing"));
            assert_eq!(&got[..], &png[..], "tile {path}");
        }
        let header = reader.get_header();
        ArchiveCounts {
            addressed: header.n_addressed_tiles().unwrap().get(),
            contents: header.n_tile_contents().unwrap().get(),
            entries: header.n_tile_entries().unwrap().get(),
        }
    })
}
