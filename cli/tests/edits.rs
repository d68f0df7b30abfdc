//! Edits on the farm (RabbitMQ, PostgreSQL, S3): sent while the layer's first
//! render is under way and all at once, they apply one after another in the
//! order accepted, none is lost, and no tile is left stale.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Farm, collection, features_with_ids, reference_render, shift};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_racing_a_render_and_each_other_apply_in_order_with_no_stale_tile() {
    const ZOOMS: &str = "0-6";
    let mut farm = Farm::new().await;
    farm.serve(&["--concurrency", "2"]);
    let mut features = features_with_ids("wa_countries_50m.geojson");
    let body = collection(&features);
    let (status, accepted) = farm
        .upload(
            &format!("name=world&zooms={ZOOMS}"),
            Some("application/geo+json"),
            body,
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let upload_job = accepted["job"]["id"].as_str().unwrap().to_string();
    let layer = accepted["layer_id"].as_str().unwrap().to_string();
    farm.wait_for_progress(&upload_job).await;

    // Six edits at once, while the layer renders: each moves a feature of its
    // own and adds a point.
    let edits: Vec<Value> = (0..6)
        .map(|k| {
            let mut moved = features[k * 11].clone();
            shift(&mut moved["geometry"]["coordinates"], 3.0, 0.0);
            let point = json!({"type": "Feature", "id": 10_000 + k, "properties": {},
                "geometry": {"type": "Point", "coordinates": [-120.0 + 40.0 * k as f64, 10.0]}});
            json!({"upsert": {"type": "FeatureCollection", "features": [moved, point]}})
        })
        .collect();
    let sent = edits.iter().map(|edit| {
        let (http, url, edit) = (
            farm.http.clone(),
            format!("{}/v1/layers/{layer}/edits", farm.base),
            edit.clone(),
        );
        tokio::spawn(async move {
            let res = http.post(url).json(&edit).send().await.unwrap();
            assert_eq!(res.status().as_u16(), 202);
            res.json::<Value>().await.unwrap()
        })
    });
    let mut accepted = Vec::new();
    for (k, handle) in sent.collect::<Vec<_>>().into_iter().enumerate() {
        accepted.push((k, handle.await.unwrap()));
    }
    accepted.sort_by_key(|(_, a)| a["version"].as_i64().unwrap());
    let versions: Vec<i64> = accepted
        .iter()
        .map(|(_, a)| a["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, (2..=7).collect::<Vec<_>>(), "one version each");

    let (first, _) = farm.wait_job(&upload_job, Duration::from_secs(180)).await;
    assert_eq!(first["state"], "succeeded", "{first}");
    let mut last_end = first["finished_at"].as_str().unwrap().to_string();
    for (k, a) in &accepted {
        let (done, _) = farm
            .wait_job(a["job"]["id"].as_str().unwrap(), Duration::from_secs(120))
            .await;
        assert_eq!(done["state"], "succeeded", "edit {k}: {done}");
        // Each started only once the job before it had ended.
        let started = done["started_at"].as_str().unwrap();
        assert!(
            started >= last_end.as_str(),
            "edit {k} started at {started}, before {last_end}"
        );
        last_end = done["finished_at"].as_str().unwrap().to_string();
    }

    // The final data: each edit applied in version order.
    for (k, _) in &accepted {
        let upsert = edits[*k]["upsert"]["features"].as_array().unwrap();
        features[k * 11] = upsert[0].clone();
        features.push(upsert[1].clone());
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("final.geojson");
    std::fs::write(
        &file,
        serde_json::to_vec(&json!({"type": "FeatureCollection", "features": features})).unwrap(),
    )
    .unwrap();
    let reference = reference_render(file.to_str().unwrap(), ZOOMS, &dir.path().join("tiles"));
    let stored = farm.served_from_bucket(&layer, ZOOMS).await;
    assert_eq!(stored.len(), reference.len(), "every tile and no other");
    assert!(
        stored == reference,
        "no stale tile: the same tiles as a fresh render"
    );
    let (_, info) = farm.get_json(&format!("/v1/layers/{layer}")).await;
    assert_eq!(info["published_version"], 7);
    assert_eq!(info["feature_count"], features.len());
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_beside_a_bulk_job_goes_first_and_finishes_while_it_runs() {
    let mut farm = Farm::new().await;
    farm.serve(&["--concurrency", "2"]);
    // A small layer to edit, with ids.
    let features = features_with_ids("ne_110m_countries.geojson");
    let layer = farm.upload_ready("small", "0-5", &features).await;
    // A bulk job of another layer, under way.
    let (bulk, _) = farm
        .upload_sample("wa_countries_50m.geojson", "bulk", "0-9")
        .await;
    farm.wait_for_progress(&bulk).await;
    let mut moved = features[43].clone();
    shift(&mut moved["geometry"]["coordinates"], 1.0, 0.0);
    let res = farm
        .http
        .post(format!("{}/v1/layers/{layer}/edits", farm.base))
        .json(&json!({"upsert": {"type": "FeatureCollection", "features": [moved]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let edit: Value = res.json().await.unwrap();
    let (edited, _) = farm
        .wait_job(
            edit["job"]["id"].as_str().unwrap(),
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(edited["state"], "succeeded", "{edited}");
    let bulk_now = farm.job(&bulk).await;
    assert_eq!(
        bulk_now["state"], "running",
        "the edit finished while the bulk job ran: {bulk_now}"
    );
    let (bulk_done, _) = farm.wait_job(&bulk, Duration::from_secs(300)).await;
    assert_eq!(bulk_done["state"], "succeeded", "{bulk_done}");
    assert!(bulk_done["progress"]["total"].as_i64().unwrap() >= 20_000);
    farm.stop().await;
}
