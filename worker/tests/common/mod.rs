//! Helpers shared by the worker's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tilefarm_renderer::{Layer, Style, read_geojson};

/// A file of the bundled sample data.
pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name)
}

pub fn sample_layer(name: &str, style: &Style) -> Layer {
    let file = std::fs::File::open(sample(name)).expect("sample data");
    let report = read_geojson(file, &Default::default()).expect("valid sample");
    Layer::new(&report.features, style)
}

/// Every file below `root` (relative path -> bytes), hidden entries included.
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("readable dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).expect("readable file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}
