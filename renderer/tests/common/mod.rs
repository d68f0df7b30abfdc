//! What the render core's tests share.

use tilefarm_renderer::{Feature, read_geojson};

/// The Natural Earth 110m countries from the project's data.
pub fn countries() -> Vec<Feature> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/ne_110m_countries.geojson"
    );
    let file = std::fs::File::open(path).expect("test data");
    read_geojson(std::io::BufReader::new(file), &Default::default())
        .expect("valid")
        .features
}
