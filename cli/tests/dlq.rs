//! Dead letters on a real farm: `tilefarm dlq list` shows the tasks that
//! failed for good, and `tilefarm dlq replay` puts them back to work once the
//! cause is fixed, with a fresh attempt count.

mod support;

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{BUCKET, Farm, PREFIX, sample};
use tilefarm_queue::{Broker, ChangeKind, DEAD_QUEUE, JobStore, NewLayer, RenderTask, Upload};
use tilefarm_renderer::{Layer, Style};

/// A job planned straight into the store, as an ingest would plan it, whose
/// prepared features are not in the bucket: every attempt at its render tasks
/// fails until they are put at `key`.
struct Unready {
    upload: Upload,
    key: String,
    features: Vec<u8>,
    tiles: u64,
}

async fn plan_without_data(
    store: &JobStore,
    name: &str,
    file: &str,
    zooms: RangeInclusive<u8>,
) -> Unready {
    let read = tilefarm_formats::read_path(&sample(file), &Default::default()).unwrap();
    let features = read.report.features;
    let mut bytes = Vec::new();
    for f in &features {
        serde_json::to_writer(&mut bytes, &f.to_geojson()).unwrap();
        bytes.push(b'\n');
    }
    let layer = Layer::new(&features, &Style::default());
    let tasks: Vec<RenderTask> = tilefarm_worker::plan_render(&layer, zooms.clone(), 8, 256)
        .metatiles
        .into_iter()
        .map(|m| tilefarm_worker::partial(m.meta, &m.tiles, false))
        .collect();
    assert!(tasks.len() > 1, "a job of several tasks");
    let new = NewLayer {
        name: name.into(),
        min_zoom: *zooms.start(),
        max_zoom: *zooms.end(),
        style: serde_json::json!({}),
    };
    let upload = store
        .create_upload(&new, &format!("{PREFIX}/uploads/{name}"))
        .await
        .unwrap();
    let key = format!("{PREFIX}/layers/{}/v1/features.geojsons", upload.layer_id);
    store
        .record_prepared(upload.layer_id, 1, &key, features.len() as i64, None)
        .await
        .unwrap();
    store
        .plan(upload.job_id, upload.ingest_task, &tasks)
        .await
        .unwrap();
    Unready {
        upload,
        key,
        features: bytes,
        tiles: tasks.iter().map(|t| u64::from(t.tiles)).sum(),
    }
}

/// Runs `tilefarm dlq ARGS...`; its standard output, checking the exit status.
fn dlq(farm: &Farm, args: &[&str], succeeds: bool) -> String {
    let mut all = vec!["dlq"];
    all.extend_from_slice(args);
    let out = farm.run(&all);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(
        out.status.success(),
        succeeds,
        "tilefarm {all:?}: {}\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// `tilefarm dlq list --json` (of one job).
fn letters(farm: &Farm, job: Option<&Upload>) -> Vec<Value> {
    let id = job.map(|j| j.job_id.to_string());
    let mut args = vec!["list", "--json"];
    if let Some(id) = &id {
        args.extend(["--job", id]);
    }
    let out = dlq(farm, &args, true);
    serde_json::from_str::<Value>(&out)
        .unwrap_or_else(|e| panic!("{e}: {out}"))
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until the dead-letter queue holds `count()` messages, `count` being
/// read anew each time.
async fn wait_depth(broker: &Broker, mut count: impl FnMut() -> usize) {
    let started = Instant::now();
    loop {
        let (depth, want) = (broker.depth(DEAD_QUEUE).await.unwrap() as usize, count());
        if depth == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{DEAD_QUEUE} holds {depth} messages, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn check_failed_four_times(letter: &Value) {
    assert_eq!(letter["attempts"], 4, "{letter}");
    assert_eq!(letter["kind"], "render", "{letter}");
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("failed 4 times"), "{letter}");
    assert!(
        reason.contains("not found") || reason.contains("NotFound"),
        "{letter}"
    );
    let (first, last) = (
        letter["first_failure"].as_str().unwrap(),
        letter["last_failure"].as_str().unwrap(),
    );
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    assert!(parse(first) < parse(last), "{letter}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed_to_success_once_their_cause_is_fixed() {
    let mut farm = Farm::new().await.with_fast_retries();
    let store = farm.store().await;
    // Planned before the farm starts, so no worker takes their ingest tasks
    // (whose uploads do not exist) first.
    let file = "ne_110m_countries.geojson";
    let fixed = plan_without_data(&store, "fixed", file, 0..=3).await;
    let broken = plan_without_data(&store, "broken", file, 0..=1).await;
    farm.serve(&["--concurrency", "2"]);
    for job in [&fixed, &broken] {
        let id = job.upload.job_id.to_string();
        let (failed, _) = farm.wait_job(&id, Duration::from_secs(60)).await;
        assert_eq!(failed["state"], "failed", "{failed}");
        assert_eq!(failed["error"]["code"], "task_failed", "{failed}");
    }

    // Listed: each dead-lettered task of both jobs, why, and its attempts.
    let all = letters(&farm, None);
    for job in [&fixed, &broken] {
        let id = job.upload.job_id.to_string();
        let of_job: Vec<&Value> = all.iter().filter(|l| l["job_id"] == id).collect();
        assert!(!of_job.is_empty(), "no dead letter of job {id}: {all:?}");
        of_job.iter().for_each(|l| check_failed_four_times(l));
    }
    assert_eq!(letters(&farm, Some(&fixed.upload)).len(), {
        let id = fixed.upload.job_id.to_string();
        all.iter().filter(|l| l["job_id"] == id).count()
    });
    let broker = Broker::connect_existing(&farm.vhost.url).await.unwrap();
    wait_depth(&broker, || all.len()).await;
    let table = dlq(&farm, &["list"], true);
    let header = table.lines().next().unwrap();
    for column in [
        "TASK",
        "JOB",
        "KIND",
        "ATTEMPTS",
        "FIRST FAILURE",
        "LAST FAILURE",
        "REASON",
    ] {
        assert!(header.contains(column), "{table}");
    }
    for l in &all {
        let line = table
            .lines()
            .find(|line| line.starts_with(l["task_id"].as_str().unwrap()))
            .unwrap_or_else(|| panic!("{l} is not in the table:\n{table}"));
        assert!(line.contains(l["job_id"].as_str().unwrap()), "{line}");
        assert!(line.contains("failed 4 times"), "{line}");
    }
    assert!(
        table.contains(&format!(
            "{} dead-lettered task(s); {} message(s) in {DEAD_QUEUE}",
            all.len(),
            all.len()
        )),
        "{table}"
    );

    // The cause is fixed for one job, which is replayed and ends as a render does.
    let path = farm.s3.bucket_dir(BUCKET).join(&fixed.key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &fixed.features).unwrap();
    let id = fixed.upload.job_id.to_string();
    let out = dlq(&farm, &["replay", "--job", &id], true);
    assert!(out.contains(&format!("job {id}: ")), "{out}");
    assert!(out.contains("dead letter(s) replayed"), "{out}");
    let (done, _) = farm.wait_job(&id, Duration::from_secs(120)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(done["error"].is_null(), "{done}");
    assert_eq!(done["progress"]["total"], fixed.tiles);
    assert_eq!(
        done["progress"]["done"], fixed.tiles,
        "each tile counted once"
    );
    farm.assert_tiles_match_render(&fixed.upload.layer_id.to_string(), file, "0-3")
        .await;
    let (status, layer) = farm
        .get_json(&format!("/v1/layers/{}", fixed.upload.layer_id))
        .await;
    assert_eq!(
        (status, &layer["published_version"]),
        (200, &Value::from(1))
    );
    // Its letters are gone from the list and the queue; the other job's stay.
    assert_eq!(letters(&farm, Some(&fixed.upload)), Vec::<Value>::new());
    let left = letters(&farm, None);
    assert!(
        !left.is_empty()
            && left
                .iter()
                .all(|l| l["job_id"] == broken.upload.job_id.to_string()),
        "{left:?}"
    );
    assert_eq!(broker.depth(DEAD_QUEUE).await.unwrap() as usize, left.len());
    let again = dlq(&farm, &["replay", "--job", &id], true);
    assert!(again.contains("has no dead letters"), "{again}");
    let unsaid = farm.run(&["dlq", "replay"]);
    let stderr = String::from_utf8_lossy(&unsaid.stderr);
    assert!(
        !unsaid.status.success() && stderr.contains("--job <ID>|--all"),
        "replay asks which: {stderr}"
    );

    // The other, still broken, runs again with a fresh attempt count and is
    // dead-lettered anew.
    let out = dlq(&farm, &["replay", "--all"], true);
    assert!(
        out.contains(&format!("job {}: ", broken.upload.job_id)),
        "{out}"
    );
    let id = broken.upload.job_id.to_string();
    let started = Instant::now();
    let relisted = loop {
        let job = farm.job(&id).await;
        let listed = letters(&farm, Some(&broken.upload));
        if job["state"] == "failed" && !listed.is_empty() {
            break listed;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not dead-lettered again: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for l in &relisted {
        check_failed_four_times(l);
        assert_eq!(l["replays"], 1, "{l}");
    }
    // The letters from before the replay left the queue: only the new ones are there.
    wait_depth(&broker, || letters(&farm, None).len()).await;

    // A job whose layer has changed since is not replayed over the newer tiles.
    store
        .create_change(
            broken.upload.layer_id,
            ChangeKind::Replace,
            &format!("{PREFIX}/uploads/none"),
        )
        .await
        .unwrap();
    let out = dlq(&farm, &["replay", "--job", &id], false);
    assert!(out.contains("has a newer job"), "{out}");
    assert_eq!(farm.job(&id).await["state"], "failed");
    assert_eq!(letters(&farm, Some(&broken.upload)).len(), relisted.len());
    farm.stop().await;
}
