//! Integration tests for the style document: defaults, parsing, data-driven colours,
//! sizes by zoom, and errors that say where in the document and what is wrong.

use serde_json::{Value, json};
use tilefarm_renderer::{BadColour, ColorRule, Feature, FeaturePaint, Rgba, Size, Style};

fn rgba(r: u8, g: u8, b: u8, a: u8) -> Rgba {
    Rgba([r, g, b, a])
}

fn feature(properties: Value) -> Feature {
    let Value::Object(properties) = properties else {
        panic!("properties must be an object")
    };
    Feature {
        id: None,
        properties,
        geometry: None,
    }
}

fn style(text: &str) -> Style {
    Style::from_json(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn the_default_style_is_the_mapnik_peers() {
    // shared/peers/mapnik_render.py: polygons fill #88aadd with a 1 px #4d6f9f
    // stroke; lines 1 px #335588; points 4 px (radius 2) #cc3333 dots.
    let s = Style::default();
    assert_eq!(
        s.polygon.fill,
        Some(ColorRule::Fixed(rgba(0x88, 0xaa, 0xdd, 255)))
    );
    assert_eq!(
        s.polygon.outline,
        Some(ColorRule::Fixed(rgba(0x4d, 0x6f, 0x9f, 255)))
    );
    assert_eq!(s.polygon.outline_width, Size::Fixed(1.0));
    assert_eq!(s.polygon.fill_opacity, 1.0);
    assert_eq!(s.polygon.outline_opacity, 1.0);
    assert_eq!(
        s.line.color,
        Some(ColorRule::Fixed(rgba(0x33, 0x55, 0x88, 255)))
    );
    assert_eq!(s.line.width, Size::Fixed(1.0));
    assert_eq!(s.line.opacity, 1.0);
    assert_eq!(
        s.point.color,
        Some(ColorRule::Fixed(rgba(0xcc, 0x33, 0x33, 255)))
    );
    assert_eq!(s.point.radius, Size::Fixed(2.0));
    assert_eq!(s.point.opacity, 1.0);

    let paint = s.paint_for(&feature(json!({})));
    assert_eq!(
        paint,
        FeaturePaint {
            fill: Some(rgba(0x88, 0xaa, 0xdd, 255)),
            outline: Some(rgba(0x4d, 0x6f, 0x9f, 255)),
            line: Some(rgba(0x33, 0x55, 0x88, 255)),
            point: Some(rgba(0xcc, 0x33, 0x33, 255)),
        }
    );
}

#[test]
fn an_empty_document_is_the_default_style() {
    assert_eq!(style("{}"), Style::default());
    assert_eq!(style(" \n{ }\n "), Style::default());
}

#[test]
fn colours_are_parsed_in_three_forms() {
    assert_eq!("#abc".parse::<Rgba>(), Ok(rgba(0xaa, 0xbb, 0xcc, 255)));
    assert_eq!("#88aadd".parse::<Rgba>(), Ok(rgba(0x88, 0xaa, 0xdd, 255)));
    assert_eq!("#88AADD".parse::<Rgba>(), Ok(rgba(0x88, 0xaa, 0xdd, 255)));
    assert_eq!(
        "#88aadd80".parse::<Rgba>(),
        Ok(rgba(0x88, 0xaa, 0xdd, 0x80))
    );
    assert_eq!("#00000000".parse::<Rgba>(), Ok(rgba(0, 0, 0, 0)));
    for bad in [
        "",
        "#",
        "88aadd",
        "#88aadd8",
        "#8a",
        "#ggg",
        "#+1+2+3",
        "#éé",
        "#12345é",
        "red",
        "#88aadd800",
    ] {
        let e = bad.parse::<Rgba>().expect_err(bad);
        assert_eq!(e, BadColour(bad.to_string()));
        assert!(e.to_string().contains("is not a colour"), "{bad}: {e}");
    }
    assert_eq!(rgba(0x88, 0xaa, 0xdd, 255).to_string(), "#88aaddff");
    assert_eq!(
        rgba(0x88, 0xaa, 0xdd, 255).with_opacity(0.5),
        rgba(0x88, 0xaa, 0xdd, 128)
    );
    assert_eq!(rgba(1, 2, 3, 200).with_opacity(2.0), rgba(1, 2, 3, 200));
    assert!(rgba(1, 2, 3, 200).with_opacity(0.0).is_invisible());
}

const FULL: &str = r##"{
    "polygon": {
        "fill": {"property": "continent", "match": {"Africa": "#ff0000", "Europe": "#00f", "Asia": "#00ff0080"}, "default": "#808080"},
        "fill_opacity": 0.5,
        "outline": "#000000",
        "outline_width": {"stops": [[0, 0.5], [6, 2], [10, 4]]},
        "outline_opacity": 1
    },
    "line": {
        "color": {"property": "pop_est", "steps": [[0, "#111111"], [1e6, "#222222"], [1e8, "#333333"]]},
        "width": 3,
        "opacity": 0.25
    },
    "point": {"color": "#cc333380", "radius": {"stops": [[3, 1], [8, 6]]}}
}"##;

#[test]
fn a_full_style_document_is_parsed() {
    let s = style(FULL);
    assert_eq!(s.polygon.fill_opacity, 0.5);
    assert_eq!(
        s.polygon.outline,
        Some(ColorRule::Fixed(rgba(0, 0, 0, 255)))
    );
    assert_eq!(
        s.polygon.outline_width,
        Size::Stops(vec![(0.0, 0.5), (6.0, 2.0), (10.0, 4.0)])
    );
    match &s.polygon.fill {
        Some(ColorRule::Match {
            property,
            cases,
            default,
        }) => {
            assert_eq!(property, "continent");
            assert_eq!(cases.len(), 3);
            assert_eq!(cases["Africa"], rgba(255, 0, 0, 255));
            assert_eq!(cases["Europe"], rgba(0, 0, 255, 255));
            assert_eq!(cases["Asia"], rgba(0, 255, 0, 128));
            assert_eq!(*default, Some(rgba(128, 128, 128, 255)));
        }
        other => panic!("not a match rule: {other:?}"),
    }
    match &s.line.color {
        Some(ColorRule::Steps {
            property,
            steps,
            default,
        }) => {
            assert_eq!(property, "pop_est");
            assert_eq!(
                steps,
                &vec![
                    (0.0, rgba(0x11, 0x11, 0x11, 255)),
                    (1e6, rgba(0x22, 0x22, 0x22, 255)),
                    (1e8, rgba(0x33, 0x33, 0x33, 255)),
                ]
            );
            assert_eq!(*default, None);
        }
        other => panic!("not a steps rule: {other:?}"),
    }
    assert_eq!(s.line.width, Size::Fixed(3.0));
    assert_eq!(s.line.opacity, 0.25);
    assert_eq!(
        s.point.color,
        Some(ColorRule::Fixed(rgba(0xcc, 0x33, 0x33, 0x80)))
    );
    assert_eq!(s.point.radius, Size::Stops(vec![(3.0, 1.0), (8.0, 6.0)]));
    assert_eq!(s.point.opacity, 1.0);
}

#[test]
fn sections_left_out_keep_their_defaults() {
    let s = style(r##"{"line": {"color": "#010203", "width": 2}}"##);
    assert_eq!(s.polygon, Style::default().polygon);
    assert_eq!(s.point, Style::default().point);
    assert_eq!(s.line.color, Some(ColorRule::Fixed(rgba(1, 2, 3, 255))));
    assert_eq!(s.line.width, Size::Fixed(2.0));
    assert_eq!(s.line.opacity, 1.0);
}

#[test]
fn a_null_colour_draws_nothing() {
    let s = style(
        r##"{"polygon": {"fill": null, "outline": "#000"}, "point": {"color": "#ff000000"}}"##,
    );
    let paint = s.paint_for(&feature(json!({})));
    assert_eq!(paint.fill, None);
    assert_eq!(paint.outline, Some(rgba(0, 0, 0, 255)));
    assert_eq!(
        paint.point, None,
        "a fully transparent colour draws nothing"
    );
}

#[test]
fn colours_by_category_are_resolved_per_feature() {
    let s = style(FULL);
    let fill = |props: Value| s.paint_for(&feature(props)).fill;
    // fill_opacity 0.5 halves alpha: 255 * 0.5 = 127.5, rounded to 128; 128 * 0.5 = 64.
    assert_eq!(
        fill(json!({"continent": "Africa"})),
        Some(rgba(255, 0, 0, 128))
    );
    assert_eq!(
        fill(json!({"continent": "Europe", "pop_est": 5})),
        Some(rgba(0, 0, 255, 128))
    );
    assert_eq!(
        fill(json!({"continent": "Asia"})),
        Some(rgba(0, 255, 0, 64))
    );
    // No such case, no such property, or not a string: the default.
    assert_eq!(
        fill(json!({"continent": "Antarctica"})),
        Some(rgba(128, 128, 128, 128))
    );
    assert_eq!(
        fill(json!({"name": "Fiji"})),
        Some(rgba(128, 128, 128, 128))
    );
    assert_eq!(
        fill(json!({"continent": null})),
        Some(rgba(128, 128, 128, 128))
    );
    assert_eq!(
        fill(json!({"continent": "africa"})),
        Some(rgba(128, 128, 128, 128)),
        "case matters"
    );
    // The other colours of the same feature are unaffected.
    let paint = s.paint_for(&feature(json!({"continent": "Africa"})));
    assert_eq!(paint.outline, Some(rgba(0, 0, 0, 255)));
    assert_eq!(paint.point, Some(rgba(0xcc, 0x33, 0x33, 0x80)));
}

#[test]
fn a_match_without_default_draws_nothing_for_other_values() {
    let s = style(
        r##"{"point": {"color": {"property": "kind", "match": {"capital": "#f00", "1": "#0f0", "true": "#00f"}}}}"##,
    );
    let point = |props: Value| s.paint_for(&feature(props)).point;
    assert_eq!(
        point(json!({"kind": "capital"})),
        Some(rgba(255, 0, 0, 255))
    );
    assert_eq!(point(json!({"kind": "town"})), None);
    assert_eq!(point(json!({})), None);
    // Numbers and booleans match by their text.
    assert_eq!(point(json!({"kind": 1})), Some(rgba(0, 255, 0, 255)));
    assert_eq!(point(json!({"kind": true})), Some(rgba(0, 0, 255, 255)));
}

#[test]
fn colours_by_numeric_steps_are_resolved_per_feature() {
    let s = style(FULL);
    let line = |props: Value| s.paint_for(&feature(props)).line;
    // opacity 0.25: 255 * 0.25 = 63.75, rounded to 64.
    let dark = Some(rgba(0x11, 0x11, 0x11, 64));
    let mid = Some(rgba(0x22, 0x22, 0x22, 64));
    let light = Some(rgba(0x33, 0x33, 0x33, 64));
    assert_eq!(
        line(json!({"pop_est": 0})),
        dark,
        "a threshold picks its own step"
    );
    assert_eq!(line(json!({"pop_est": 889953.0})), dark);
    assert_eq!(line(json!({"pop_est": 999_999.9})), dark);
    assert_eq!(line(json!({"pop_est": 1_000_000})), mid);
    assert_eq!(line(json!({"pop_est": 67_059_887})), mid);
    assert_eq!(line(json!({"pop_est": 1e8})), light);
    assert_eq!(line(json!({"pop_est": 1_397_715_000_u64})), light);
    assert_eq!(
        line(json!({"pop_est": "2e6"})),
        mid,
        "numbers written as text"
    );
    // Below the first step, missing or not a number, and no default: nothing.
    assert_eq!(line(json!({"pop_est": -5})), None);
    assert_eq!(line(json!({})), None);
    assert_eq!(line(json!({"pop_est": "many"})), None);
    assert_eq!(line(json!({"pop_est": [1, 2]})), None);

    let s = style(
        r##"{"polygon": {"fill": {"property": "pop_est", "steps": [[10, "#010101"], [20, "#020202"]], "default": "#ffffff"}}}"##,
    );
    let fill = |props: Value| s.paint_for(&feature(props)).fill;
    assert_eq!(
        fill(json!({})),
        Some(rgba(255, 255, 255, 255)),
        "missing property: the default"
    );
    assert_eq!(
        fill(json!({"pop_est": 5})),
        Some(rgba(255, 255, 255, 255)),
        "below the first step: the default"
    );
    assert_eq!(fill(json!({"pop_est": 15})), Some(rgba(1, 1, 1, 255)));
    assert_eq!(fill(json!({"pop_est": 25})), Some(rgba(2, 2, 2, 255)));
}

#[test]
fn sizes_by_zoom_interpolate_between_stops_and_hold_beyond_them() {
    let s = style(FULL);
    let outline = &s.polygon.outline_width;
    // Stops [[0, 0.5], [6, 2], [10, 4]].
    let expected = [
        (0u8, 0.5f32),
        (1, 0.75),
        (3, 1.25),
        (6, 2.0),
        (7, 2.5),
        (8, 3.0),
        (9, 3.5),
        (10, 4.0),
        (11, 4.0),
        (22, 4.0),
    ];
    for (z, px) in expected {
        assert!(
            (outline.at(z) - px).abs() < 1e-6,
            "z{z}: {} not {px}",
            outline.at(z)
        );
    }
    // Stops [[3, 1], [8, 6]]: held at 1 below z3 and at 6 above z8.
    let radius = &s.point.radius;
    for (z, px) in [
        (0u8, 1.0f32),
        (2, 1.0),
        (3, 1.0),
        (4, 2.0),
        (5, 3.0),
        (7, 5.0),
        (8, 6.0),
        (18, 6.0),
    ] {
        assert!(
            (radius.at(z) - px).abs() < 1e-6,
            "z{z}: {} not {px}",
            radius.at(z)
        );
    }
    assert_eq!(s.line.width.at(0), 3.0);
    assert_eq!(s.line.width.at(20), 3.0);

    let one = style(r#"{"line": {"width": {"stops": [[5, 7]]}}}"#);
    for z in [0u8, 5, 12] {
        assert_eq!(one.line.width.at(z), 7.0, "z{z}");
    }
    let fractional = style(r#"{"line": {"width": {"stops": [[2.5, 1], [4.5, 3]]}}}"#);
    assert_eq!(fractional.line.width.at(2), 1.0);
    assert!((fractional.line.width.at(3) - 1.5).abs() < 1e-6);
    assert!((fractional.line.width.at(4) - 2.5).abs() < 1e-6);
    assert_eq!(fractional.line.width.at(5), 3.0);
}

#[test]
fn the_reach_of_a_style_covers_its_widest_stroke_and_largest_point() {
    let s = style(FULL);
    // Widest stroke 4 px (outline at z10+), largest radius 6 px.
    assert!(s.reach_px() >= 4.0 / 2.0);
    assert!(s.reach_px() >= 6.0);
    let d = Style::default();
    assert!(
        d.reach_px() >= 0.5 && d.reach_px() >= 2.0,
        "{}",
        d.reach_px()
    );
}

#[test]
fn bad_styles_are_refused_with_the_path_and_the_problem() {
    // (name, document, [substrings of the error's Display])
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "bad colour",
            r##"{"polygon": {"fill": "#12345"}}"##,
            &["polygon.fill", "\"#12345\" is not a colour"],
        ),
        (
            "colour by name",
            r##"{"line": {"color": "blue"}}"##,
            &["line.color", "\"blue\" is not a colour"],
        ),
        (
            "colour as a number",
            r##"{"point": {"color": 255}}"##,
            &["point.color", "expected a colour", "found 255"],
        ),
        (
            "bad colour in a match",
            r##"{"polygon": {"outline": {"property": "c", "match": {"A": "#zzz"}}}}"##,
            &["polygon.outline", "\"#zzz\" is not a colour"],
        ),
        (
            "bad default colour",
            r##"{"polygon": {"fill": {"property": "c", "match": {"A": "#fff"}, "default": "grey"}}}"##,
            &["polygon.fill", "\"grey\" is not a colour"],
        ),
        (
            "bad colour in steps",
            r##"{"line": {"color": {"property": "p", "steps": [[0, "#fff"], [1, "#ff"]]}}}"##,
            &["line.color", "\"#ff\" is not a colour"],
        ),
        (
            "unknown field in a section",
            r##"{"polygon": {"fil": "#fff"}}"##,
            &["polygon", "unknown field `fil`"],
        ),
        (
            "unknown section",
            r##"{"polygons": {}}"##,
            &["unknown field `polygons`"],
        ),
        (
            "unknown field in a data-driven colour",
            r##"{"polygon": {"fill": {"property": "c", "match": {"A": "#fff"}, "defualt": "#000"}}}"##,
            &["polygon.fill", "unknown field `defualt`"],
        ),
        (
            "data-driven colour without property",
            r##"{"polygon": {"fill": {"match": {"A": "#fff"}}}}"##,
            &["polygon.fill", "missing field `property`"],
        ),
        (
            "opacity above 1",
            r#"{"polygon": {"fill_opacity": 1.5}}"#,
            &["polygon.fill_opacity", "opacity 1.5 is outside 0..1"],
        ),
        (
            "negative opacity",
            r#"{"line": {"opacity": -0.1}}"#,
            &["line.opacity", "opacity -0.1 is outside 0..1"],
        ),
        (
            "opacity as text",
            r#"{"point": {"opacity": "half"}}"#,
            &["point.opacity", "invalid type: string"],
        ),
        (
            "zoom stops not increasing",
            r#"{"line": {"width": {"stops": [[5, 1], [3, 2]]}}}"#,
            &["line.width", "zooms must increase"],
        ),
        (
            "repeated zoom stop",
            r#"{"polygon": {"outline_width": {"stops": [[2, 1], [2, 2]]}}}"#,
            &["polygon.outline_width", "zooms must increase"],
        ),
        (
            "no zoom stops",
            r#"{"point": {"radius": {"stops": []}}}"#,
            &["point.radius", "needs at least one [zoom, px]"],
        ),
        (
            "step thresholds not increasing",
            r##"{"line": {"color": {"property": "p", "steps": [[10, "#fff"], [5, "#000"]]}}}"##,
            &["line.color", "thresholds must increase"],
        ),
        (
            "no steps",
            r##"{"line": {"color": {"property": "p", "steps": []}}}"##,
            &["line.color", "at least one [value, colour]"],
        ),
        (
            "both match and steps",
            r##"{"point": {"color": {"property": "p", "match": {"a": "#fff"}, "steps": [[0, "#000"]]}}}"##,
            &["point.color", "exactly one of \"match\" or \"steps\""],
        ),
        (
            "neither match nor steps",
            r##"{"point": {"color": {"property": "p", "default": "#000"}}}"##,
            &["point.color", "exactly one of \"match\" or \"steps\""],
        ),
        (
            "negative width",
            r#"{"polygon": {"outline_width": -1}}"#,
            &["polygon.outline_width", "between 0 and 256"],
        ),
        (
            "huge width",
            r#"{"line": {"width": 1000}}"#,
            &["line.width", "between 0 and 256"],
        ),
        (
            "negative width in stops",
            r#"{"line": {"width": {"stops": [[0, 1], [5, -2]]}}}"#,
            &["line.width", "between 0 and 256"],
        ),
        (
            "width as text",
            r#"{"line": {"width": "2px"}}"#,
            &["line.width", "expected a number of pixels"],
        ),
        (
            "unknown field in stops",
            r#"{"line": {"width": {"stops": [[0, 1]], "base": 2}}}"#,
            &["line.width", "unknown field `base`"],
        ),
        (
            "section not an object",
            r#"{"polygon": 5}"#,
            &["polygon", "invalid type: integer `5`"],
        ),
        (
            "not JSON",
            r##"{"polygon": {"fill": "#fff",}}"##,
            &["style", "trailing comma"],
        ),
        (
            "truncated",
            r##"{"polygon": {"fill": "#fff""##,
            &["style", "EOF"],
        ),
        (
            "trailing text",
            r##"{"polygon": {"fill": "#fff"}} {"line": {}}"##,
            &["style", "trailing characters"],
        ),
        (
            "top-level string",
            r##""#fff""##,
            &["style document", "invalid type: string"],
        ),
    ];
    assert!(cases.len() >= 8);
    let mut failures = Vec::new();
    for (name, text, expect) in cases {
        match Style::from_json(text) {
            Ok(s) => failures.push(format!("{name}: accepted as {s:?}")),
            Err(e) => {
                let msg = e.to_string();
                for want in *expect {
                    if !msg.contains(want) {
                        failures.push(format!("{name}: {msg:?} does not contain {want:?}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_error_path_is_structured() {
    let e = Style::from_json(r##"{"point": {"color": "#1234567"}}"##).unwrap_err();
    assert_eq!(e.path, "point.color");
    assert!(
        e.message.contains("\"#1234567\" is not a colour"),
        "{}",
        e.message
    );
    assert!(e.to_string().starts_with("style point.color: "), "{e}");
}

#[test]
fn a_part_given_partly_keeps_the_reference_values_for_the_rest() {
    let s =
        Style::from_json(r#"{"point": {"radius": 3}, "polygon": {"outline_width": 2}}"#).unwrap();
    let reference = Style::default();
    assert_eq!(
        s.point.color, reference.point.color,
        "the point colour stays"
    );
    assert_eq!(s.point.radius, Size::Fixed(3.0));
    assert_eq!(s.polygon.fill, reference.polygon.fill);
    assert_eq!(s.polygon.outline, reference.polygon.outline);
    assert_eq!(s.polygon.outline_width, Size::Fixed(2.0));
    assert_eq!(s.line, reference.line);
}
