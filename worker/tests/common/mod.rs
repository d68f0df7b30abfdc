//! Helpers shared by the worker's integration tests.
#![allow(dead_code)]

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

#[allow(unused_imports)]
pub use tilefarm_testkit::tree;
