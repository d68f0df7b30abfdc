//! Logs for ops: with `--log-format json` every line about a task carries the
//! task's span (job, task, kind, layer; a render's metatile too), and each task
//! ends with one line that says its outcome and the seconds it took.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::Farm;

fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_task_span_and_say_how_each_task_ended() {
    let mut farm = Farm::new().await;
    farm.serve(&["--api-only"]);
    let worker = farm.spawn(
        "worker",
        &["--log-format", "json", "worker", "--concurrency", "2"],
    );
    let (job, layer) = farm
        .upload_sample("ne_110m_countries.geojson", "world", "0-3")
        .await;
    let (done, _) = farm.wait_job(&job, Duration::from_secs(120)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let renders = farm
        .store()
        .await
        .render_tasks(job.parse().unwrap())
        .await
        .unwrap()
        .len();
    assert!(renders > 1);
    // The last task's line follows the job's success by a moment.
    let started = Instant::now();
    let lines = loop {
        let lines = json_lines(&farm.log(worker));
        let finished = lines.iter().filter(|l| message(l) == "task finished");
        if finished.count() > renders || started.elapsed() > Duration::from_secs(10) {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let finished: Vec<&Value> = lines
        .iter()
        .filter(|l| message(l) == "task finished")
        .collect();
    let mut tasks = HashSet::new();
    let mut kinds = Vec::new();
    for line in &finished {
        let span = &line["span"];
        assert_eq!(span["name"], "task", "{line}");
        assert_eq!(span["job_id"], job.as_str(), "{line}");
        assert_eq!(span["layer_id"], layer.as_str(), "{line}");
        tasks.insert(span["task_id"].as_str().unwrap().to_string());
        kinds.push(span["kind"].as_str().unwrap().to_string());
        assert_eq!(line["fields"]["outcome"], "done", "{line}");
        let seconds = line["fields"]["seconds"].as_f64().unwrap();
        assert!((0.0..60.0).contains(&seconds), "{line}");
    }
    assert_eq!(finished.len(), renders + 1, "one line per task");
    assert_eq!(tasks.len(), renders + 1, "one line per task");
    kinds.sort();
    let mut expected = vec!["ingest".to_string()];
    expected.extend(std::iter::repeat_n("render".to_string(), renders));
    assert_eq!(kinds, expected);

    // A line from inside a render says which block, within the task's span.
    let rendered: Vec<&Value> = lines
        .iter()
        .filter(|l| message(l).contains(" tiles of block "))
        .collect();
    assert_eq!(rendered.len(), renders);
    for line in rendered {
        let span = &line["span"];
        assert_eq!(span["name"], "metatile", "{line}");
        let zxy = format!("{}/{}/{}", span["z"], span["x"], span["y"]);
        assert!(message(line).contains(&zxy), "{line}");
        let outer = &line["spans"][0];
        assert_eq!(outer["name"], "task", "{line}");
        assert_eq!(outer["job_id"], job.as_str(), "{line}");
        assert_eq!(outer["kind"], "render", "{line}");
    }
    farm.stop().await;
}
