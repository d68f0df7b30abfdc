//! Source coordinate systems and the reprojection to WGS84 longitude/latitude.
//!
//! A CRS comes from an EPSG code (GeoPackage `srs_id`, FlatGeobuf header, a
//! parameter) or from WKT (a Shapefile's `.prj`, in the ESRI dialect GIS tools
//! write, or OGC WKT1/WKT2 with an authority). Each known code maps to a PROJ.4
//! definition that [`proj4rs`] runs in pure Rust. A CRS outside the table is an
//! error that names it: coordinates are never guessed.

use std::fmt;

use geo::{Coord, Geometry, LineString, Polygon};
use proj4rs::Proj;

/// A source coordinate system and how to bring it to WGS84.
pub struct Crs {
    label: String,
    /// `None` when the coordinates already are WGS84 longitude/latitude.
    proj: Option<Proj>,
}

impl fmt::Debug for Crs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crs").field("label", &self.label).finish()
    }
}

const WGS84: &str = "+proj=longlat +datum=WGS84 +no_defs";
const GRS80_NO_SHIFT: &str = "+ellps=GRS80 +towgs84=0,0,0,0,0,0,0";

/// The name and PROJ.4 definition of an EPSG code this crate knows.
fn epsg_definition(code: u32) -> Option<(String, String)> {
    let utm = |datum: &str, zone: u32, south: bool, extra: &str| {
        let hemisphere = if south { "S" } else { "N" };
        (
            format!("{datum} / UTM zone {zone}{hemisphere}"),
            format!(
                "+proj=utm +zone={zone}{} {extra} +units=m +no_defs",
                if south { " +south" } else { "" }
            ),
        )
    };
    let (name, def) = match code {
        4326 => ("WGS 84".into(), WGS84.into()),
        4269 => (
            "NAD83".into(),
            format!("+proj=longlat {GRS80_NO_SHIFT} +no_defs"),
        ),
        4258 => (
            "ETRS89".into(),
            format!("+proj=longlat {GRS80_NO_SHIFT} +no_defs"),
        ),
        4171 => (
            "RGF93".into(),
            format!("+proj=longlat {GRS80_NO_SHIFT} +no_defs"),
        ),
        27700 => (
            "OSGB36 / British National Grid".into(),
            "+proj=etmerc +lat_0=49 +lon_0=-2 +k=0.9996012717 +x_0=400000 +y_0=-100000 \
             +ellps=airy +towgs84=446.448,-125.157,542.06,0.15,0.247,0.842,-20.489 \
             +units=m +no_defs"
                .into(),
        ),
        2154 => (
            "RGF93 / Lambert-93".into(),
            format!(
                "+proj=lcc +lat_0=46.5 +lon_0=3 +lat_1=49 +lat_2=44 +x_0=700000 \
                 +y_0=6600000 {GRS80_NO_SHIFT} +units=m +no_defs"
            ),
        ),
        3857 | 3785 | 900913 | 102100 => (
            "WGS 84 / Pseudo-Mercator".into(),
            "+proj=merc +a=6378137 +b=6378137 +lat_ts=0 +lon_0=0 +x_0=0 +y_0=0 +k=1 \
             +units=m +no_defs"
                .into(),
        ),
        3395 => (
            "WGS 84 / World Mercator".into(),
            "+proj=merc +lon_0=0 +k=1 +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs".into(),
        ),
        3035 => (
            "ETRS89 / LAEA Europe".into(),
            format!(
                "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 {GRS80_NO_SHIFT} \
                 +units=m +no_defs"
            ),
        ),
        5070 => (
            "NAD83 / Conus Albers".into(),
            format!(
                "+proj=aea +lat_0=23 +lon_0=-96 +lat_1=29.5 +lat_2=45.5 +x_0=0 +y_0=0 \
                 {GRS80_NO_SHIFT} +units=m +no_defs"
            ),
        ),
        32601..=32660 => utm("WGS 84", code - 32600, false, "+datum=WGS84"),
        32701..=32760 => utm("WGS 84", code - 32700, true, "+datum=WGS84"),
        25828..=25838 => utm("ETRS89", code - 25800, false, GRS80_NO_SHIFT),
        26901..=26923 => utm("NAD83", code - 26900, false, GRS80_NO_SHIFT),
        _ => return None,
    };
    Some((name, def))
}

/// Why a coordinate system cannot be used, or a position cannot be brought to
/// WGS84.
#[derive(Debug, thiserror::Error)]
pub enum CrsError {
    #[error("the coordinate system EPSG:{0} is not one tilefarm can reproject (it knows {KNOWN})")]
    UnknownCode(u32),
    #[error(
        "{0:?} is not a coordinate system tilefarm knows: give an EPSG code such as \
         EPSG:27700 (it knows {KNOWN})"
    )]
    UnknownName(String),
    #[error("the coordinate system {0:?} is not one tilefarm can reproject (it knows {KNOWN})")]
    UnknownWkt(String),
    #[error("{source}; the WKT names {name:?}")]
    WktCode {
        name: String,
        #[source]
        source: Box<CrsError>,
    },
    #[error("the coordinate system's WKT cannot be read: {0}")]
    BadWkt(String),
    #[error("cannot set up {label} ({definition}): {source}")]
    Setup {
        label: String,
        definition: String,
        #[source]
        source: proj4rs::errors::Error,
    },
    #[error("the position [{x}, {y}] has no place on Earth in {label}")]
    OffEarth { x: f64, y: f64, label: String },
    #[error("cannot reproject the position [{x}, {y}] from {label}: {source}")]
    Reproject {
        x: f64,
        y: f64,
        label: String,
        #[source]
        source: proj4rs::errors::Error,
    },
}

/// The EPSG codes this crate reprojects from, for messages.
pub const KNOWN: &str = "EPSG:4326, 4269, 4258, 4171, 27700, 2154, 3857, 3395, 3035, 5070, \
                         32601-32660, 32701-32760, 25828-25838 and 26901-26923";

impl Crs {
    /// WGS84 longitude/latitude: nothing to do.
    pub fn wgs84() -> Self {
        Self {
            label: "EPSG:4326 (WGS 84)".into(),
            proj: None,
        }
    }

    /// How the CRS is named in messages and summaries, e.g. `EPSG:27700 (OSGB36 /
    /// British National Grid)`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether coordinates need reprojecting.
    pub fn is_wgs84(&self) -> bool {
        self.proj.is_none()
    }

    /// A CRS by EPSG code.
    pub fn from_epsg(code: u32) -> Result<Self, CrsError> {
        let Some((name, def)) = epsg_definition(code) else {
            return Err(CrsError::UnknownCode(code));
        };
        let label = format!("EPSG:{code} ({name})");
        if code == 4326 {
            return Ok(Self { label, proj: None });
        }
        let proj = match Proj::from_proj_string(&def) {
            Ok(proj) => proj,
            Err(source) => {
                return Err(CrsError::Setup {
                    label,
                    definition: def,
                    source,
                });
            }
        };
        Ok(Self {
            label,
            proj: Some(proj),
        })
    }

    /// A CRS named by a parameter: `EPSG:27700`, `27700`, `urn:ogc:def:crs:EPSG::27700`,
    /// `CRS84` or `OGC:CRS84`.
    pub fn from_name(text: &str) -> Result<Self, CrsError> {
        let t = text.trim();
        let upper = t.to_ascii_uppercase();
        if matches!(
            upper.as_str(),
            "CRS84" | "OGC:CRS84" | "URN:OGC:DEF:CRS:OGC:1.3:CRS84" | "WGS84"
        ) {
            return Ok(Self::wgs84());
        }
        let code = upper
            .rsplit(':')
            .next()
            .filter(|_| upper.is_empty() || upper.contains("EPSG") || !upper.contains(':'))
            .and_then(|c| c.parse::<u32>().ok());
        match code {
            Some(code) => Self::from_epsg(code),
            None => Err(CrsError::UnknownName(t.to_string())),
        }
    }

    /// A CRS from WKT: its EPSG authority when it has one, else its name as ESRI
    /// and OGC tools write it.
    pub fn from_wkt(text: &str) -> Result<Self, CrsError> {
        let node = crate::wkt_crs::parse(text).map_err(CrsError::BadWkt)?;
        let name = node.name().unwrap_or("").to_string();
        if let Some(code) = node.epsg_code() {
            return Self::from_epsg(code).map_err(|e| CrsError::WktCode {
                name,
                source: Box::new(e),
            });
        }
        match epsg_for_name(&name) {
            Some(code) => Self::from_epsg(code),
            None => Err(CrsError::UnknownWkt(name)),
        }
    }

    /// Reprojects a geometry to WGS84 longitude/latitude in place.
    pub fn to_wgs84(&self, geometry: &mut Geometry<f64>) -> Result<(), CrsError> {
        let Some(src) = &self.proj else {
            return Ok(());
        };
        let dst = wgs84_proj();
        let geographic = src.is_latlong();
        map_coords(geometry, &|c: Coord<f64>| {
            let mut p = if geographic {
                (c.x.to_radians(), c.y.to_radians(), 0.0)
            } else {
                (c.x, c.y, 0.0)
            };
            match proj4rs::transform::transform(src, dst, &mut p) {
                Ok(()) if p.0.is_finite() && p.1.is_finite() => Ok(Coord {
                    x: p.0.to_degrees(),
                    y: p.1.to_degrees(),
                }),
                Ok(()) => Err(CrsError::OffEarth {
                    x: c.x,
                    y: c.y,
                    label: self.label.clone(),
                }),
                Err(source) => Err(CrsError::Reproject {
                    x: c.x,
                    y: c.y,
                    label: self.label.clone(),
                    source,
                }),
            }
        })
    }
}

type CoordFn<'a> = dyn Fn(Coord<f64>) -> Result<Coord<f64>, CrsError> + 'a;

/// Maps every position of a geometry in place (through a `dyn` function, so that
/// nested collections do not instantiate it again and again).
fn map_coords(g: &mut Geometry<f64>, f: &CoordFn) -> Result<(), CrsError> {
    let line = |l: &mut LineString<f64>| -> Result<(), CrsError> {
        for c in &mut l.0 {
            *c = f(*c)?;
        }
        Ok(())
    };
    let polygon = |p: &mut Polygon<f64>| -> Result<(), CrsError> {
        let mut result = Ok(());
        p.exterior_mut(|e| result = line(e));
        result?;
        let mut result = Ok(());
        p.interiors_mut(|rings| result = rings.iter_mut().try_for_each(line));
        result
    };
    match g {
        Geometry::Point(p) => p.0 = f(p.0)?,
        Geometry::Line(l) => {
            l.start = f(l.start)?;
            l.end = f(l.end)?;
        }
        Geometry::LineString(l) => line(l)?,
        Geometry::Polygon(p) => polygon(p)?,
        Geometry::MultiPoint(m) => {
            for p in &mut m.0 {
                p.0 = f(p.0)?;
            }
        }
        Geometry::MultiLineString(m) => m.0.iter_mut().try_for_each(line)?,
        Geometry::MultiPolygon(m) => m.0.iter_mut().try_for_each(polygon)?,
        Geometry::GeometryCollection(c) => {
            for g in &mut c.0 {
                map_coords(g, f)?;
            }
        }
        Geometry::Rect(_) | Geometry::Triangle(_) => {
            let mut as_polygon = match g {
                Geometry::Rect(r) => r.to_polygon(),
                Geometry::Triangle(t) => t.to_polygon(),
                _ => unreachable!(),
            };
            polygon(&mut as_polygon)?;
            *g = Geometry::Polygon(as_polygon);
        }
    }
    Ok(())
}

fn wgs84_proj() -> &'static Proj {
    static WGS84_PROJ: std::sync::OnceLock<Proj> = std::sync::OnceLock::new();
    WGS84_PROJ.get_or_init(|| Proj::from_proj_string(WGS84).expect("a valid definition"))
}

/// The EPSG code of a CRS known by name (ESRI `.prj` files carry no authority).
fn epsg_for_name(name: &str) -> Option<u32> {
    let key: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let key: Vec<&str> = key.split('_').filter(|p| !p.is_empty()).collect();
    let key = key.join("_");
    let fixed = match key.as_str() {
        "gcs_wgs_1984" | "wgs_84" | "wgs84" | "wgs_1984" => Some(4326),
        "gcs_north_american_1983" | "nad83" | "nad_1983" => Some(4269),
        "gcs_etrs_1989" | "etrs89" | "etrs_1989" => Some(4258),
        "gcs_rgf_1993" | "rgf93" | "rgf93_v1" => Some(4171),
        "british_national_grid"
        | "osgb_1936_british_national_grid"
        | "osgb36_british_national_grid" => Some(27700),
        "rgf_1993_lambert_93" | "rgf93_lambert_93" | "rgf93_v1_lambert_93" => Some(2154),
        "wgs_1984_web_mercator_auxiliary_sphere"
        | "wgs_84_pseudo_mercator"
        | "wgs_1984_web_mercator"
        | "popular_visualisation_crs_mercator" => Some(3857),
        "wgs_1984_world_mercator" | "wgs_84_world_mercator" => Some(3395),
        "etrs_1989_laea"
        | "etrs89_laea_europe"
        | "etrs89_extended_laea_europe"
        | "etrs_1989_etrs_laea" => Some(3035),
        "nad_1983_contiguous_usa_albers"
        | "nad83_conus_albers"
        | "usa_contiguous_albers_equal_area_conic_usgs_version" => Some(5070),
        _ => None,
    };
    fixed.or_else(|| utm_for_name(&key))
}

/// `wgs_1984_utm_zone_31n`, `wgs_84_utm_zone_33s`, `etrs_1989_utm_zone_32n`,
/// `nad_1983_utm_zone_10n`.
fn utm_for_name(key: &str) -> Option<u32> {
    let (datum, zone) = key.split_once("_utm_zone_")?;
    let (number, hemisphere) = zone.split_at(zone.len().checked_sub(1)?);
    let number: u32 = number.parse().ok()?;
    let code = match (datum, hemisphere) {
        ("wgs_1984" | "wgs_84", "n") => 32600 + number,
        ("wgs_1984" | "wgs_84", "s") => 32700 + number,
        ("etrs_1989" | "etrs89", "n") => 25800 + number,
        ("nad_1983" | "nad83", "n") => 26900 + number,
        _ => return None,
    };
    epsg_definition(code).map(|_| code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::Point;

    fn back(crs: &Crs, x: f64, y: f64) -> (f64, f64) {
        let mut g = Geometry::Point(Point::new(x, y));
        crs.to_wgs84(&mut g).unwrap();
        let Geometry::Point(p) = g else {
            unreachable!()
        };
        (p.x(), p.y())
    }

    fn near(got: (f64, f64), want: (f64, f64), tolerance: f64) {
        assert!(
            (got.0 - want.0).abs() < tolerance && (got.1 - want.1).abs() < tolerance,
            "{got:?} is not {want:?}"
        );
    }

    // Reference values from GDAL 3.6 / PROJ 9 (`gdaltransform -s_srs EPSG:xxxx -t_srs EPSG:4326`).
    #[test]
    fn known_systems_land_where_proj_puts_them() {
        let cases = [
            (
                27700,
                (530_268.0, 179_640.0),
                (-0.124_627_644, 51.500_693_986),
            ),
            (
                2154,
                (652_469.0, 6_862_035.0),
                (2.352_199_720, 48.856_597_665),
            ),
            (
                5070,
                (-1_000_000.0, 1_500_000.0),
                (-107.222_181_139, 36.019_201_537),
            ),
            (
                3035,
                (3_500_000.0, 2_500_000.0),
                (-0.450_869_717, 45.093_292_218),
            ),
            (
                32631,
                (700_000.0, 5_700_000.0),
                (5.876_291_768, 51.415_883_589),
            ),
            (32733, (500_000.0, 10_000_000.0), (15.0, 0.0)),
            (3857, (20_037_508.342_789_244, 0.0), (180.0, 0.0)),
            (4269, (-77.0, 38.9), (-77.0, 38.9)),
        ];
        for (code, (x, y), want) in cases {
            let crs = Crs::from_epsg(code).unwrap();
            near(back(&crs, x, y), want, 1e-6);
        }
    }

    #[test]
    fn esri_prj_names_are_recognised() {
        for (name, code) in [
            ("British_National_Grid", 27700),
            ("RGF_1993_Lambert_93", 2154),
            ("WGS_1984_UTM_Zone_31N", 32631),
            ("WGS_1984_UTM_Zone_33S", 32733),
            ("WGS 84 / UTM zone 18N", 32618),
            ("WGS_1984_Web_Mercator_Auxiliary_Sphere", 3857),
            ("GCS_North_American_1983", 4269),
            ("ETRS_1989_LAEA", 3035),
            ("NAD_1983_Contiguous_USA_Albers", 5070),
            ("GCS_WGS_1984", 4326),
        ] {
            assert_eq!(epsg_for_name(name), Some(code), "{name}");
        }
        assert_eq!(epsg_for_name("Tokyo_1918_Japan_Zone_IX"), None);
    }

    #[test]
    fn unknown_systems_are_named_in_the_error() {
        let e = Crs::from_epsg(2056).unwrap_err();
        assert!(matches!(e, CrsError::UnknownCode(2056)), "{e:?}");
        assert!(e.to_string().contains("EPSG:2056"), "{e}");
        let e = Crs::from_wkt(r#"PROJCS["CH1903+_LV95",GEOGCS["GCS_CH1903+"]]"#).unwrap_err();
        assert!(e.to_string().contains("CH1903+_LV95"), "{e}");
        let e = Crs::from_wkt(r#"PROJCS["x",AUTHORITY["EPSG","2056"]]"#).unwrap_err();
        let cause = std::error::Error::source(&e).expect("the code's error");
        assert!(cause.to_string().contains("EPSG:2056"), "{e}: {cause}");
        let e = Crs::from_name("EPSG:99999").unwrap_err();
        assert!(e.to_string().contains("99999"), "{e}");
        let e = Crs::from_name("Lambert").unwrap_err();
        assert!(
            matches!(&e, CrsError::UnknownName(n) if n == "Lambert"),
            "{e:?}"
        );
    }
}
