//! Well-known binary geometries (ISO and extended Z/M flags), as GeoPackage
//! stores them behind its own small header.

use geo::{
    Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon,
};

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
    little: bool,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .i
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| {
                format!(
                    "the geometry is cut short: it needs {} bytes at offset {} of {}",
                    n,
                    self.i,
                    self.b.len()
                )
            })?;
        let s = &self.b[self.i..end];
        self.i = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let s: [u8; 4] = self.take(4)?.try_into().expect("4 bytes");
        Ok(if self.little {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    }

    fn f64(&mut self) -> Result<f64, String> {
        let s: [u8; 8] = self.take(8)?.try_into().expect("8 bytes");
        Ok(if self.little {
            f64::from_le_bytes(s)
        } else {
            f64::from_be_bytes(s)
        })
    }

    fn count(&mut self, item_size: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        // A count the bytes left cannot hold is corruption, not a huge allocation.
        if n.saturating_mul(item_size) > self.b.len() - self.i {
            return Err(format!(
                "the geometry claims {n} parts, more than its bytes hold"
            ));
        }
        Ok(n)
    }
}

/// Parses one WKB geometry; `None` for an empty point (NaN coordinates).
pub(crate) fn parse(bytes: &[u8]) -> Result<Option<Geometry<f64>>, String> {
    let mut c = Cursor {
        b: bytes,
        i: 0,
        little: true,
    };
    geometry(&mut c, 0)
}

fn geometry(c: &mut Cursor, depth: usize) -> Result<Option<Geometry<f64>>, String> {
    if depth > 16 {
        return Err("the geometry nests collections too deeply".into());
    }
    c.little = match c.take(1)?[0] {
        0 => false,
        1 => true,
        b => return Err(format!("the geometry's byte order mark is {b}, not 0 or 1")),
    };
    let raw = c.u32()?;
    let (mut z, mut m) = (raw & 0x8000_0000 != 0, raw & 0x4000_0000 != 0);
    let code = raw & 0x0fff_ffff;
    let base = code % 1000;
    match code / 1000 {
        0 => {}
        1 => z = true,
        2 => m = true,
        3 => (z, m) = (true, true),
        _ => return Err(format!("unknown WKB geometry type {raw}")),
    }
    let dims = 2 + usize::from(z) + usize::from(m);
    let coord = |c: &mut Cursor| -> Result<Coord<f64>, String> {
        let (x, y) = (c.f64()?, c.f64()?);
        for _ in 2..dims {
            c.f64()?;
        }
        Ok(Coord { x, y })
    };
    let line = |c: &mut Cursor| -> Result<LineString<f64>, String> {
        let n = c.count(8 * dims)?;
        (0..n)
            .map(|_| coord(c))
            .collect::<Result<Vec<_>, _>>()
            .map(LineString)
    };
    let polygon = |c: &mut Cursor| -> Result<Option<Polygon<f64>>, String> {
        let n = c.count(4)?;
        let mut rings = (0..n).map(|_| line(c)).collect::<Result<Vec<_>, _>>()?;
        if rings.is_empty() {
            return Ok(None);
        }
        let exterior = rings.remove(0);
        Ok(Some(Polygon::new(exterior, rings)))
    };
    let parts = |c: &mut Cursor| -> Result<Vec<Geometry<f64>>, String> {
        let n = c.count(5)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            if let Some(g) = geometry(c, depth + 1)? {
                out.push(g);
            }
        }
        Ok(out)
    };
    Ok(match base {
        1 => {
            let p = coord(c)?;
            (!p.x.is_nan() || !p.y.is_nan()).then_some(Geometry::Point(Point(p)))
        }
        2 => Some(Geometry::LineString(line(c)?)),
        3 => polygon(c)?.map(Geometry::Polygon),
        4 => Some(Geometry::MultiPoint(MultiPoint(
            parts(c)?
                .into_iter()
                .filter_map(|g| match g {
                    Geometry::Point(p) => Some(p),
                    _ => None,
                })
                .collect(),
        ))),
        5 => Some(Geometry::MultiLineString(MultiLineString(
            parts(c)?
                .into_iter()
                .filter_map(|g| match g {
                    Geometry::LineString(l) => Some(l),
                    _ => None,
                })
                .collect(),
        ))),
        6 => Some(Geometry::MultiPolygon(MultiPolygon(
            parts(c)?
                .into_iter()
                .filter_map(|g| match g {
                    Geometry::Polygon(p) => Some(p),
                    _ => None,
                })
                .collect(),
        ))),
        7 => Some(Geometry::GeometryCollection(GeometryCollection(parts(c)?))),
        other => {
            return Err(format!(
                "WKB geometry type {other} (curves, surfaces, ...) is not supported"
            ));
        }
    })
}

/// The WKB inside a GeoPackage geometry blob (`GP`, version, flags, SRS id and
/// envelope), and whether the header marks it empty.
pub(crate) fn gpkg_wkb(blob: &[u8]) -> Result<Option<&[u8]>, String> {
    if blob.len() < 8 || &blob[..2] != b"GP" {
        return Err(
            "the geometry is not a GeoPackage geometry blob (it does not start with GP)".into(),
        );
    }
    let flags = blob[3];
    if flags & 0b0010_0000 != 0 {
        return Err("the geometry uses an extended GeoPackage geometry type".into());
    }
    let envelope = match (flags >> 1) & 0b111 {
        0 => 0,
        1 => 32,
        2 | 3 => 48,
        4 => 64,
        e => return Err(format!("the geometry's envelope code {e} is not valid")),
    };
    let start = 8 + envelope;
    if blob.len() < start {
        return Err("the geometry blob is cut short in its header".into());
    }
    if flags & 0b0001_0000 != 0 {
        return Ok(None);
    }
    Ok(Some(&blob[start..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_points_lines_and_polygons() {
        // POINT(1 2), little endian.
        let mut p = vec![1u8, 1, 0, 0, 0];
        p.extend(1f64.to_le_bytes());
        p.extend(2f64.to_le_bytes());
        assert_eq!(
            parse(&p).unwrap(),
            Some(Geometry::Point(Point::new(1.0, 2.0)))
        );
        // POINT Z (1 2 3), big endian, ISO code 1001.
        let mut pz = vec![0u8, 0, 0, 0x03, 0xe9];
        for v in [1f64, 2.0, 3.0] {
            pz.extend(v.to_be_bytes());
        }
        assert_eq!(
            parse(&pz).unwrap(),
            Some(Geometry::Point(Point::new(1.0, 2.0)))
        );
        assert!(parse(&p[..10]).unwrap_err().contains("cut short"));
        // A line claiming a billion points.
        let mut l = vec![1u8, 2, 0, 0, 0];
        l.extend(1_000_000_000u32.to_le_bytes());
        assert!(parse(&l).unwrap_err().contains("more than its bytes hold"));
    }
}
