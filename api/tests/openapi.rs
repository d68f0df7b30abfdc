//! `/openapi.json` describes every route the router serves.

#[test]
fn every_route_is_in_the_openapi_document() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../openapi.json")).expect("valid JSON");
    let paths = doc["paths"].as_object().expect("paths");
    let router = include_str!("../src/lib.rs");
    let mut routes = std::collections::BTreeSet::new();
    for part in router.split(".route(\"").skip(1) {
        let route = part.split('"').next().unwrap();
        // The tile route takes `{y}.png` in one segment.
        let documented = route.replace("{y}", "{y}.png");
        assert!(
            paths.contains_key(&documented),
            "{documented} is not in openapi.json"
        );
        routes.insert(documented);
    }
    assert!(routes.len() >= 12, "found only {routes:?} in lib.rs");
    assert_eq!(
        paths.len(),
        routes.len(),
        "openapi.json documents routes the router lacks"
    );
}
