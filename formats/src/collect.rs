//! The common end of every reader: a feature read from the source is
//! reprojected to WGS84, checked as a GeoJSON feature would be, and kept or
//! (under [`OnInvalid::Skip`]) left out with its reason.

use geo::Geometry;
use serde_json::{Map, Value};
use tilefarm_renderer::{
    Feature, FeatureId, InputError, Location, OnInvalid, ReadReport, geometry_from_value,
    geometry_to_geojson,
};

use crate::{Crs, Error, Format, Upload};

pub(crate) struct Collector<'a> {
    format: Format,
    /// The part of the upload being read, e.g. `countries.shp`.
    part: String,
    crs: &'a Crs,
    on_invalid: OnInvalid,
    report: ReadReport,
    seen: usize,
}

impl<'a> Collector<'a> {
    pub fn new(
        format: Format,
        part: impl Into<String>,
        crs: &'a Crs,
        on_invalid: OnInvalid,
    ) -> Self {
        Self {
            format,
            part: part.into(),
            crs,
            on_invalid,
            report: ReadReport::default(),
            seen: 0,
        }
    }

    /// Takes one feature, or the reason it could not be read. `where_` says
    /// where it is (`record 12`, `line 40`, `features[3]`).
    pub fn take(
        &mut self,
        where_: impl FnOnce() -> Location,
        id: Option<FeatureId>,
        properties: Map<String, Value>,
        geometry: Result<Option<Geometry<f64>>, String>,
    ) -> Result<(), Error> {
        self.seen += 1;
        let checked = geometry.and_then(|g| match g {
            None => Ok(None),
            Some(mut g) => {
                self.crs.to_wgs84(&mut g).map_err(|e| e.to_string())?;
                geometry_from_value(&geometry_to_geojson(&g), "geometry")
                    .map(Some)
                    .map_err(|e| e.0)
            }
        });
        match checked {
            Ok(geometry) => {
                self.report.features.push(Feature {
                    id,
                    properties,
                    geometry,
                });
                Ok(())
            }
            Err(problem) => {
                let err = InputError {
                    location: where_(),
                    problem,
                };
                match self.on_invalid {
                    OnInvalid::Skip => {
                        self.report.skipped.push(err);
                        Ok(())
                    }
                    OnInvalid::Fail => Err(self.error(err.to_string())),
                }
            }
        }
    }

    /// An error about the part being read.
    pub fn error(&self, problem: impl Into<String>) -> Error {
        Error::input(self.format, self.part.clone(), problem)
    }

    /// What was read, from `layer` of the upload's `layers` (listed when several).
    pub fn upload(self, layer: Option<String>, layers: Vec<String>) -> Result<Upload, Error> {
        let (format, crs) = (self.format, self.crs.label().to_string());
        Ok(Upload {
            format,
            crs,
            layer,
            layers: if layers.len() > 1 { layers } else { Vec::new() },
            report: self.finish()?,
        })
    }

    /// The features read; an error when there are none, or none valid.
    pub fn finish(self) -> Result<ReadReport, Error> {
        if self.seen == 0 {
            return Err(self.error("it holds no features"));
        }
        if self.report.features.is_empty() {
            let first = &self.report.skipped[0];
            return Err(self.error(format!(
                "none of the {} features is valid; the first problem is at {first}",
                self.seen
            )));
        }
        Ok(self.report)
    }
}
