//! `about.yml` follows the 18F about.yml standard: required fields present, enums valid.

use serde_json::Value;

/// about.yml read as JSON, as the standard's JSON schema sees it.
fn about() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../about.yml");
    let text = std::fs::read_to_string(path).expect("about.yml at the workspace root");
    serde_saphyr::from_str(&text).expect("about.yml is valid YAML")
}

fn text(v: &Value, field: &str) -> String {
    match &v[field] {
        Value::String(s) if !s.trim().is_empty() => s.clone(),
        other => panic!("{field} must be a non-empty string, found {other:?}"),
    }
}

#[test]
fn required_fields_are_present_and_valid() {
    let a = about();
    for field in ["name", "full_name", "description", "impact"] {
        text(&a, field);
    }
    let name = text(&a, "name");
    assert!(
        name.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'),
        "name {name:?} must be a short slug"
    );
    let owner = text(&a, "owner_type");
    assert!(
        ["guild", "working-group", "project"].contains(&owner.as_str()),
        "owner_type {owner:?}"
    );
    let stage = text(&a, "stage");
    assert!(
        ["discovery", "alpha", "beta", "live"].contains(&stage.as_str()),
        "stage {stage:?}"
    );
    assert!(
        matches!(a["testable"], Value::Bool(_)),
        "testable must be a boolean"
    );
}

#[test]
fn licenses_name_spdx_ids_with_urls() {
    let a = about();
    let Value::Object(licenses) = &a["licenses"] else {
        panic!("licenses must be a map")
    };
    assert!(!licenses.is_empty(), "at least one license");
    for (label, l) in licenses {
        let name = text(l, "name");
        assert!(
            ["Apache-2.0", "MIT", "CC0-1.0", "BSD-3-Clause"].contains(&name.as_str()),
            "{label:?}: {name} is not a known SPDX id"
        );
        assert!(text(l, "url").starts_with("https://"), "{label:?}: url");
    }
}

#[test]
fn team_has_a_lead() {
    let a = about();
    let Value::Array(team) = &a["team"] else {
        panic!("team must be a list")
    };
    for member in team {
        text(member, "github");
        text(member, "id");
        text(member, "role");
    }
    assert!(
        team.iter().any(|m| m["role"] == "lead"),
        "one member has role: lead"
    );
}

#[test]
fn optional_fields_have_allowed_values() {
    let a = about();
    if let Value::String(t) = &a["type"] {
        assert!(
            ["app", "docs", "policy"].contains(&t.as_str()),
            "type {t:?}"
        );
    }
    if let Value::Array(links) = &a["links"] {
        for l in links {
            text(l, "url");
            if let Value::String(c) = &l["category"] {
                assert!(
                    ["api", "process", "related"].contains(&c.as_str()),
                    "link category {c:?}"
                );
            }
        }
    }
}
