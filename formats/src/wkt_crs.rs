//! Just enough of a WKT (CRS) parser to find a coordinate system's name and its
//! EPSG authority: `KEYWORD["name", ..., AUTHORITY["EPSG","27700"]]` (WKT1, ESRI)
//! or `...ID["EPSG",27700]]` (WKT2).

/// One `KEYWORD[...]` node.
#[derive(Debug, PartialEq)]
pub(crate) struct Node {
    pub keyword: String,
    pub args: Vec<Arg>,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Arg {
    Text(String),
    Word(String),
    Node(Node),
}

impl Node {
    /// The first quoted argument: the CRS's name.
    pub fn name(&self) -> Option<&str> {
        self.args.iter().find_map(|a| match a {
            Arg::Text(t) => Some(t.as_str()),
            _ => None,
        })
    }

    /// The EPSG code of this node itself (not of its datum or units).
    pub fn epsg_code(&self) -> Option<u32> {
        let node = if self.keyword.eq_ignore_ascii_case("BOUNDCRS") {
            self.child("SOURCECRS")?.args.iter().find_map(|a| match a {
                Arg::Node(n) => Some(n),
                _ => None,
            })?
        } else {
            self
        };
        ["AUTHORITY", "ID"].iter().find_map(|k| {
            let auth = node.child(k)?;
            let mut values = auth.args.iter().map(|a| match a {
                Arg::Text(t) | Arg::Word(t) => t.as_str(),
                Arg::Node(_) => "",
            });
            let org = values.next()?;
            let code = values.next()?;
            (org.eq_ignore_ascii_case("EPSG")).then(|| code.trim().parse().ok())?
        })
    }

    fn child(&self, keyword: &str) -> Option<&Node> {
        self.args.iter().find_map(|a| match a {
            Arg::Node(n) if n.keyword.eq_ignore_ascii_case(keyword) => Some(n),
            _ => None,
        })
    }
}

/// Parses one WKT node.
pub(crate) fn parse(text: &str) -> Result<Node, String> {
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Err("the coordinate system text is empty".into());
    }
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let node = p.node().map_err(|e| {
        let shown: String = text.chars().take(60).collect();
        format!("{shown:?} is not a WKT coordinate system: {e}")
    })?;
    Ok(node)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn word(&mut self) -> String {
        self.skip_space();
        let start = self.i;
        while self.i < self.s.len()
            && !matches!(self.s[self.i], b'[' | b']' | b'(' | b')' | b',' | b'"')
            && !self.s[self.i].is_ascii_whitespace()
        {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    fn node(&mut self) -> Result<Node, String> {
        let keyword = self.word();
        if keyword.is_empty()
            || !keyword
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(format!("expected a keyword at byte {}", self.i));
        }
        self.skip_space();
        if !matches!(self.s.get(self.i), Some(b'[' | b'(')) {
            return Err(format!("expected '[' after {keyword} at byte {}", self.i));
        }
        self.i += 1;
        let mut args = Vec::new();
        loop {
            self.skip_space();
            match self.s.get(self.i) {
                None => return Err(format!("{keyword}[ is never closed")),
                Some(b']' | b')') => {
                    self.i += 1;
                    return Ok(Node { keyword, args });
                }
                Some(b',') => self.i += 1,
                Some(b'"') => {
                    self.i += 1;
                    let mut t = Vec::new();
                    loop {
                        match self.s.get(self.i) {
                            None => return Err("a quoted name is never closed".into()),
                            // WKT doubles a quote inside a quoted text.
                            Some(b'"') if self.s.get(self.i + 1) == Some(&b'"') => {
                                t.push(b'"');
                                self.i += 2;
                            }
                            Some(b'"') => {
                                self.i += 1;
                                break;
                            }
                            Some(&b) => {
                                t.push(b);
                                self.i += 1;
                            }
                        }
                    }
                    args.push(Arg::Text(String::from_utf8_lossy(&t).into_owned()));
                }
                Some(_) => {
                    let start = self.i;
                    let w = self.word();
                    self.skip_space();
                    if matches!(self.s.get(self.i), Some(b'[' | b'(')) {
                        self.i = start;
                        args.push(Arg::Node(self.node()?));
                    } else if w.is_empty() {
                        return Err(format!("unexpected character at byte {}", self.i));
                    } else {
                        args.push(Arg::Word(w));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_names_and_authorities() {
        let esri = r#"PROJCS["British_National_Grid",GEOGCS["GCS_OSGB_1936",DATUM["D_OSGB_1936",SPHEROID["Airy_1830",6377563.396,299.3249646]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],UNIT["Meter",1.0]]"#;
        let n = parse(esri).unwrap();
        assert_eq!(
            (n.keyword.as_str(), n.name()),
            ("PROJCS", Some("British_National_Grid"))
        );
        assert_eq!(n.epsg_code(), None);
        let ogc = r#"PROJCS["RGF93 / Lambert-93",GEOGCS["RGF93",AUTHORITY["EPSG","4171"]],AUTHORITY["EPSG","2154"]]"#;
        assert_eq!(parse(ogc).unwrap().epsg_code(), Some(2154));
        let wkt2 = r#"PROJCRS["WGS 84 / UTM zone 31N",BASEGEOGCRS["WGS 84",ID["EPSG",4326]],ID["EPSG",32631]]"#;
        assert_eq!(parse(wkt2).unwrap().epsg_code(), Some(32631));
        assert!(parse("PROJCS[\"x\"").is_err());
        assert!(parse("not wkt").is_err());
    }
}
