//! The layer style: a small JSON document.
//!
//! ```json
//! {
//!   "polygon": { "fill": "#88aadd", "fill_opacity": 1.0, "outline": "#4d6f9f", "outline_width": 1 },
//!   "line":    { "color": "#335588", "width": { "stops": [[0, 0.5], [8, 2]] } },
//!   "point":   { "color": "#cc3333", "radius": 2 }
//! }
//! ```
//!
//! A colour is `"#rgb"`, `"#rrggbb"` or `"#rrggbbaa"`, or data-driven:
//! `{"property": "continent", "match": {"Africa": "#..."}, "default": "#..."}` or
//! `{"property": "pop_est", "steps": [[0, "#..."], [1e7, "#..."]], "default": "#..."}`.
//! A width or radius is a number of pixels, or `{"stops": [[zoom, px], ...]}`,
//! interpolated linearly between stops and held beyond the ends.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use serde_json::Value;

use crate::feature::Feature;

/// A problem with a style document.
#[derive(Debug, thiserror::Error)]
#[error("style {path}: {message}")]
pub struct StyleError {
    /// Where in the document, as a dotted path (`polygon.fill`), or `document`.
    pub path: String,
    pub message: String,
}

/// A straight (not premultiplied) RGBA colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rgba(pub [u8; 4]);

impl Rgba {
    /// The colour with its alpha multiplied by `opacity` (0..=1).
    pub fn with_opacity(self, opacity: f32) -> Rgba {
        let [r, g, b, a] = self.0;
        Rgba([
            r,
            g,
            b,
            (f32::from(a) * opacity.clamp(0.0, 1.0)).round() as u8,
        ])
    }

    pub fn is_invisible(self) -> bool {
        self.0[3] == 0
    }
}

impl fmt::Display for Rgba {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, g, b, a] = self.0;
        write!(f, "#{r:02x}{g:02x}{b:02x}{a:02x}")
    }
}

/// Text that is not a colour ([`Rgba`]'s `FromStr`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a colour; expected #rgb, #rrggbb or #rrggbbaa")]
pub struct BadColour(pub String);

impl FromStr for Rgba {
    type Err = BadColour;
    fn from_str(s: &str) -> Result<Self, BadColour> {
        let bad = || BadColour(s.to_string());
        let hex = s.strip_prefix('#').ok_or_else(bad)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad());
        let nibble = |i: usize| {
            u8::from_str_radix(&hex[i..=i], 16)
                .map(|v| v * 17)
                .map_err(|_| bad())
        };
        match hex.len() {
            3 => Ok(Rgba([nibble(0)?, nibble(1)?, nibble(2)?, 255])),
            6 => Ok(Rgba([byte(0)?, byte(2)?, byte(4)?, 255])),
            8 => Ok(Rgba([byte(0)?, byte(2)?, byte(4)?, byte(6)?])),
            _ => Err(bad()),
        }
    }
}

impl<'de> Deserialize<'de> for Rgba {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A colour, fixed or chosen by a feature property.
#[derive(Clone, Debug, PartialEq)]
pub enum ColorRule {
    Fixed(Rgba),
    /// Categorical: the property's value (as text) picks the colour.
    Match {
        property: String,
        cases: BTreeMap<String, Rgba>,
        default: Option<Rgba>,
    },
    /// Numeric: the last step whose threshold is at most the value picks the colour.
    Steps {
        property: String,
        steps: Vec<(f64, Rgba)>,
        default: Option<Rgba>,
    },
}

impl ColorRule {
    /// The colour for a feature; `None` draws nothing.
    pub fn resolve(&self, feature: &Feature) -> Option<Rgba> {
        match self {
            ColorRule::Fixed(c) => Some(*c),
            ColorRule::Match {
                property,
                cases,
                default,
            } => {
                let key = match feature.property(property) {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    Some(Value::Bool(b)) => Some(b.to_string()),
                    _ => None,
                };
                key.and_then(|k| cases.get(&k).copied()).or(*default)
            }
            ColorRule::Steps {
                property,
                steps,
                default,
            } => {
                let value = feature.property(property).and_then(number_of);
                match value {
                    Some(v) => steps
                        .iter()
                        .rev()
                        .find(|(t, _)| v >= *t)
                        .map(|(_, c)| *c)
                        .or(*default),
                    None => *default,
                }
            }
        }
    }
}

fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A data-driven colour as written. Not an untagged enum with the fixed colour, so
/// that the real problem (a bad colour inside, an unknown or missing member) is told.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    property: String,
    #[serde(rename = "match")]
    cases: Option<BTreeMap<String, Rgba>>,
    steps: Option<Vec<(f64, Rgba)>>,
    default: Option<Rgba>,
}

impl<'de> Deserialize<'de> for ColorRule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = Value::deserialize(d)?;
        if let Value::String(s) = &v {
            return s.parse().map(ColorRule::Fixed).map_err(D::Error::custom);
        }
        if !v.is_object() {
            return Err(D::Error::custom(format!(
                "expected a colour such as \"#88aadd\", or {{\"property\", \"match\" or \"steps\", \
                 \"default\"}}, found {v}"
            )));
        }
        let raw = RawRule::deserialize(v).map_err(D::Error::custom)?;
        match raw {
            RawRule {
                property,
                cases: Some(cases),
                steps: None,
                default,
            } => Ok(ColorRule::Match {
                property,
                cases,
                default,
            }),
            RawRule {
                property,
                cases: None,
                steps: Some(steps),
                default,
            } => {
                if steps.is_empty() {
                    return Err(D::Error::custom(
                        "\"steps\" needs at least one [value, colour]",
                    ));
                }
                if steps.windows(2).any(|w| w[0].0 >= w[1].0) {
                    return Err(D::Error::custom("\"steps\" thresholds must increase"));
                }
                Ok(ColorRule::Steps {
                    property,
                    steps,
                    default,
                })
            }
            RawRule { .. } => Err(D::Error::custom(
                "a data-driven colour needs exactly one of \"match\" or \"steps\"",
            )),
        }
    }
}

/// A size in pixels, fixed or varying by zoom.
#[derive(Clone, Debug, PartialEq)]
pub enum Size {
    Fixed(f32),
    /// `(zoom, px)` pairs, zooms increasing.
    Stops(Vec<(f32, f32)>),
}

impl Size {
    pub fn at(&self, z: u8) -> f32 {
        match self {
            Size::Fixed(v) => *v,
            Size::Stops(stops) => {
                let z = f32::from(z);
                let (first, last) = (stops[0], stops[stops.len() - 1]);
                if z <= first.0 {
                    return first.1;
                }
                if z >= last.0 {
                    return last.1;
                }
                let i = stops
                    .iter()
                    .position(|s| s.0 > z)
                    .unwrap_or(stops.len() - 1);
                let (a, b) = (stops[i - 1], stops[i]);
                a.1 + (b.1 - a.1) * (z - a.0) / (b.0 - a.0)
            }
        }
    }

    fn max(&self) -> f32 {
        match self {
            Size::Fixed(v) => *v,
            Size::Stops(s) => s.iter().map(|s| s.1).fold(0.0, f32::max),
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Stops {
            stops: Vec<(f32, f32)>,
        }
        let v = Value::deserialize(d)?;
        let size = if let Some(n) = v.as_f64() {
            Size::Fixed(n as f32)
        } else {
            let s = Stops::deserialize(v).map_err(|e| {
                D::Error::custom(format!(
                    "expected a number of pixels or {{\"stops\": [[zoom, px], ...]}} ({e})"
                ))
            })?;
            if s.stops.is_empty() {
                return Err(D::Error::custom("\"stops\" needs at least one [zoom, px]"));
            }
            if s.stops.windows(2).any(|w| w[0].0 >= w[1].0) {
                return Err(D::Error::custom("\"stops\" zooms must increase"));
            }
            Size::Stops(s.stops)
        };
        let bad = match &size {
            Size::Fixed(v) => !(0.0..=256.0).contains(v),
            Size::Stops(s) => s.iter().any(|(_, v)| !(0.0..=256.0).contains(v)),
        };
        if bad {
            return Err(D::Error::custom("sizes must be between 0 and 256 pixels"));
        }
        Ok(size)
    }
}

fn opacity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    let v = f32::deserialize(d)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "opacity {v} is outside 0..1"
        )))
    }
}

fn one() -> f32 {
    1.0
}

/// How polygons are drawn.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolygonStyle {
    pub fill: Option<ColorRule>,
    #[serde(default = "one", deserialize_with = "opacity")]
    pub fill_opacity: f32,
    pub outline: Option<ColorRule>,
    #[serde(default = "default_width")]
    pub outline_width: Size,
    #[serde(default = "one", deserialize_with = "opacity")]
    pub outline_opacity: f32,
}

/// How lines are drawn.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LineStyle {
    pub color: Option<ColorRule>,
    #[serde(default = "default_width")]
    pub width: Size,
    #[serde(default = "one", deserialize_with = "opacity")]
    pub opacity: f32,
}

/// How points are drawn: filled circles.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PointStyle {
    pub color: Option<ColorRule>,
    #[serde(default = "default_radius")]
    pub radius: Size,
    #[serde(default = "one", deserialize_with = "opacity")]
    pub opacity: f32,
}

fn default_width() -> Size {
    Size::Fixed(1.0)
}

fn default_radius() -> Size {
    Size::Fixed(2.0)
}

/// A complete style. Anything left out of the document keeps the reference
/// style's value; a colour set to `null` is not drawn.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Style {
    pub polygon: PolygonStyle,
    pub line: LineStyle,
    pub point: PointStyle,
}

impl Default for Style {
    /// The reference style, the same as the Mapnik peer's: polygons `#88aadd` with a
    /// 1 px `#4d6f9f` outline, lines 1 px `#335588`, points 4 px `#cc3333` dots.
    fn default() -> Self {
        let fixed = |s: &str| Some(ColorRule::Fixed(s.parse().expect("valid colour")));
        Style {
            polygon: PolygonStyle {
                fill: fixed("#88aadd"),
                fill_opacity: 1.0,
                outline: fixed("#4d6f9f"),
                outline_width: default_width(),
                outline_opacity: 1.0,
            },
            line: LineStyle {
                color: fixed("#335588"),
                width: default_width(),
                opacity: 1.0,
            },
            point: PointStyle {
                color: fixed("#cc3333"),
                radius: default_radius(),
                opacity: 1.0,
            },
        }
    }
}

impl Default for PolygonStyle {
    fn default() -> Self {
        Style::default().polygon
    }
}

impl Default for LineStyle {
    fn default() -> Self {
        Style::default().line
    }
}

impl Default for PointStyle {
    fn default() -> Self {
        Style::default().point
    }
}

/// The colours one feature is drawn with, resolved from its properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeaturePaint {
    pub fill: Option<Rgba>,
    pub outline: Option<Rgba>,
    pub line: Option<Rgba>,
    pub point: Option<Rgba>,
}

impl Style {
    /// Parses a style document, naming the place of any problem.
    pub fn from_json(text: &str) -> Result<Style, StyleError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let style = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." {
                "document".to_string()
            } else {
                path
            };
            StyleError {
                path,
                message: e.into_inner().to_string(),
            }
        })?;
        // Nothing but whitespace may follow the document.
        de.end().map_err(|e| StyleError {
            path: "document".into(),
            message: e.to_string(),
        })?;
        Ok(style)
    }

    /// Resolves the data-driven colours for one feature.
    pub fn paint_for(&self, feature: &Feature) -> FeaturePaint {
        let pick = |rule: &Option<ColorRule>, opacity: f32| {
            rule.as_ref()
                .and_then(|r| r.resolve(feature))
                .map(|c| c.with_opacity(opacity))
                .filter(|c| !c.is_invisible())
        };
        FeaturePaint {
            fill: pick(&self.polygon.fill, self.polygon.fill_opacity),
            outline: pick(&self.polygon.outline, self.polygon.outline_opacity),
            line: pick(&self.line.color, self.line.opacity),
            point: pick(&self.point.color, self.point.opacity),
        }
    }

    /// How far, in pixels, drawing can reach beyond a feature's geometry at any zoom:
    /// half the widest stroke (with room for miter joins) or the largest point radius.
    pub fn reach_px(&self) -> f32 {
        let stroke = self.polygon.outline_width.max().max(self.line.width.max());
        // Miter joins reach up to the miter limit (4) times half the width.
        (stroke * 2.0).max(self.point.radius.max())
    }
}
