//! TileJSON 3.0.0 for a published layer, valid against the specification's
//! schema, with bounds and centre that hold for data across the antimeridian.

use serde_json::{Value, json};
use tilefarm_queue::LayerInfo;
use tilefarm_renderer::MAX_LATITUDE;

/// Map clients (MapLibre, Leaflet) draw 256 px tiles of the layer into a view
/// of about this many pixels across when they open at the centre's zoom.
const VIEW_PX: f64 = 768.0;

/// The TileJSON of layer `l` at `version`, its tiles under `base`
/// (`https://host`).
pub fn tilejson(l: &LayerInfo, version: i32, base: &str, tile_size: u32) -> Value {
    let whole = [-180.0, -MAX_LATITUDE, 180.0, MAX_LATITUDE];
    let [w, s, e, n] = l.bounds.unwrap_or(whole);
    // West above east: the data crosses the antimeridian. TileJSON clients
    // read bounds as west <= east, so those are the whole band of longitudes,
    // and the centre the middle of the data's own band.
    let crosses = w > e;
    let width = if crosses { e + 360.0 - w } else { e - w };
    let mut lon = w + width / 2.0;
    if lon > 180.0 {
        lon -= 360.0;
    }
    let lat = (s + n) / 2.0;
    let bounds = if crosses {
        [-180.0, s, 180.0, n]
    } else {
        [w, s, e, n]
    };
    let zoom = fitting_zoom(width, s, n, tile_size).clamp(l.min_zoom, l.max_zoom);
    json!({
        "tilejson": "3.0.0",
        "name": l.name,
        "description": format!("{} (raster tiles rendered by tilefarm)", l.name),
        "version": format!("{version}.0.0"),
        "scheme": "xyz",
        "tiles": [format!("{base}/tiles/{}/{{z}}/{{x}}/{{y}}.png", l.id)],
        // Raster tiles have no vector layers; the schema asks for the key.
        "vector_layers": [],
        "minzoom": l.min_zoom,
        "maxzoom": l.max_zoom,
        "bounds": bounds.map(round6),
        "center": [round6(lon), round6(lat), zoom],
    })
}

/// The deepest zoom at which a box `width` degrees wide and from latitude `s`
/// to `n` fits a view of [`VIEW_PX`].
fn fitting_zoom(width: f64, s: f64, n: f64, tile_size: u32) -> u8 {
    let y = |lat: f64| {
        let phi = lat.clamp(-MAX_LATITUDE, MAX_LATITUDE).to_radians();
        (std::f64::consts::PI - phi.tan().asinh()) / (2.0 * std::f64::consts::PI)
    };
    // The box's size as a fraction of the world, across and down.
    let across = (width / 360.0).max(y(s) - y(n)).max(1e-9);
    let zoom = (VIEW_PX / (f64::from(tile_size) * across)).log2().floor();
    // In 0..=30 (the schema's range); the layer's zooms narrow it further.
    zoom.clamp(0.0, 30.0) as u8
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(bounds: Option<[f64; 4]>, zooms: (u8, u8)) -> LayerInfo {
        LayerInfo {
            id: uuid::Uuid::nil(),
            name: "t".into(),
            min_zoom: zooms.0,
            max_zoom: zooms.1,
            style: json!({}),
            published_version: Some(1),
            bounds,
            feature_count: Some(1),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn data_across_the_antimeridian_is_centred_on_itself() {
        // Alaska with the western Aleutians: 172°E eastward to 130°W.
        let t = tilejson(
            &layer(Some([172.0, 51.0, -130.0, 71.0]), (0, 12)),
            3,
            "http://h",
            256,
        );
        assert_eq!(t["bounds"], json!([-180.0, 51.0, 180.0, 71.0]));
        assert_eq!(t["center"][0], json!(-159.0));
        assert_eq!(t["center"][1], json!(61.0));
        assert_eq!(t["version"], "3.0.0");
        assert_eq!(t["vector_layers"], json!([]));
    }

    #[test]
    fn the_centre_zoom_fits_the_data_within_the_layers_zooms() {
        let small = |zooms| {
            tilejson(&layer(Some([2.0, 48.0, 2.5, 49.0]), zooms), 1, "", 256)["center"][2].clone()
        };
        // A degree of latitude at 48°N is 550 px tall at zoom 9, 1100 at 10.
        assert_eq!(small((0, 18)), json!(9));
        assert_eq!(small((0, 5)), json!(5));
        assert_eq!(small((10, 12)), json!(10));
        let world = tilejson(&layer(None, (0, 9)), 1, "", 256);
        assert_eq!(world["center"], json!([0.0, 0.0, 1]));
    }
}
