//! What ops run the farm with: the API reads the queues over one long-lived
//! broker connection, and a worker's own endpoint serves its metrics, a
//! liveness check and the drain hook a pod's preStop calls.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Embedded, Farm};
use tilefarm_testkit::{free_port, wait_for_port};

async fn text(farm: &Farm, url: &str) -> (u16, String) {
    let res = farm.http.get(url).send().await.expect("an answer");
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The connections open on the test's virtual host.
fn connections(vhost: &str) -> usize {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "vhost"])
        .output()
        .expect("rabbitmqctl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim() == vhost)
        .count()
}

fn rabbitmqctl(args: &[&str]) {
    tilefarm_testkit::rabbitmqctl(args);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reads_the_queues_over_one_connection_it_keeps() {
    let mut farm = Farm::new().await;
    farm.serve(&["--api-only"]);
    let metrics = format!("{}/metrics", farm.base);
    let readyz = format!("{}/readyz", farm.base);
    let (status, first) = text(&farm, &metrics).await;
    assert_eq!(status, 200);
    assert!(
        first.lines().any(|l| l == "tilefarm_broker_up 1"),
        "{first}"
    );
    assert!(
        first.lines().any(|l| l == "tilefarm_dead_letters 0"),
        "{first}"
    );
    // The outbox relay's connection and the one the scrapes read over.
    let held = connections(&farm.vhost.name);
    assert!(held >= 1, "the API holds its connections");

    // No room for one more connection: a scrape that opened its own would fail.
    let limit = format!("{{\"max-connections\": {held}}}");
    rabbitmqctl(&["set_vhost_limits", "-p", &farm.vhost.name, &limit]);
    for _ in 0..5 {
        let (status, body) = text(&farm, &metrics).await;
        assert_eq!(status, 200);
        assert!(body.lines().any(|l| l == "tilefarm_broker_up 1"), "{body}");
        let (status, body) = text(&farm, &readyz).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        connections(&farm.vhost.name),
        held,
        "no connection per scrape"
    );
    rabbitmqctl(&["clear_vhost_limits", "-p", &farm.vhost.name]);

    // A broken connection is made again at the next scrape.
    let out = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "vhost"])
        .output()
        .unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((pid, vhost)) = line.split_once('\t')
            && vhost.trim() == farm.vhost.name
        {
            let _ = Command::new("rabbitmqctl")
                .args([
                    "close_connection",
                    pid.trim(),
                    "test: the broker dropped it",
                ])
                .output();
        }
    }
    let started = Instant::now();
    loop {
        let (status, body) = text(&farm, &readyz).await;
        if status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the API did not reconnect: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, body) = text(&farm, &metrics).await;
    assert!(body.lines().any(|l| l == "tilefarm_broker_up 1"), "{body}");
    farm.stop().await;
}

/// Starts a worker of two slots with `--metrics-listen` and waits for its
/// endpoint; the process and the endpoint's address.
fn worker_with_metrics(farm: &mut Farm) -> (usize, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let worker = farm.spawn(
        "worker",
        &["worker", "--concurrency", "2", "--metrics-listen", &listen],
    );
    wait_for_port(port, "the worker's metrics", Duration::from_secs(60));
    (worker, format!("http://{listen}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_metrics_and_drains_when_asked() {
    let mut farm = Farm::new().await;
    farm.serve(&["--api-only"]);
    let (worker, base) = worker_with_metrics(&mut farm);
    let (status, health) = text(&farm, &format!("{base}/healthz")).await;
    assert_eq!((status, health.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, metrics) = text(&farm, &format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        metrics.lines().any(|l| l == "tilefarm_worker_slots 2"),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"), "OpenMetrics text: {metrics}");

    // A job in hand, then the drain: it answers once the worker is done with
    // its tasks, and the worker exits by itself.
    let (job, layer) = farm
        .upload_sample("wa_countries_50m.geojson", "world", "0-6")
        .await;
    farm.wait_for_progress(&job).await;
    let (status, drained) = text(&farm, &format!("{base}/drain")).await;
    assert_eq!((status, drained.as_str()), (200, r#"{"status":"drained"}"#));
    let exit = farm.wait_exit(worker, Duration::from_secs(10)).await;
    assert!(exit.success(), "exit {exit}");
    let log = farm.log(worker);
    assert!(log.contains("drain requested"), "{log}");
    assert!(log.contains("finishing the tasks in hand"), "{log}");

    // Nothing it held was lost: another worker finishes the job.
    if farm.job(&job).await["state"] == "running" {
        farm.worker("second", 2);
    }
    let (done, _) = farm.wait_job(&job, Duration::from_secs(300)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    farm.assert_tiles_match_render(&layer, "wa_countries_50m.geojson", "0-6")
        .await;
    farm.stop().await;
}

/// The value of one series (`name{labels}` as the scrape spells it) in a
/// Prometheus text scrape, if it is there.
fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// A series' value; 0 when it is not there yet.
fn series(scrape: &str, name: &str) -> f64 {
    sample(scrape, name).unwrap_or(0.0)
}

/// A series' value; fails when it is not there.
fn served(scrape: &str, name: &str) -> f64 {
    sample(scrape, name).unwrap_or_else(|| panic!("no {name} in the scrape: {scrape}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_counters_move_as_its_jobs_run() {
    let mut farm = Farm::new().await.with_fast_retries();
    let lost = farm.plan_lost_job().await;
    farm.serve(&["--api-only"]);
    let url = format!("{}/metrics", worker_with_metrics(&mut farm).1);
    let kind = |family: &str, kind: &str| {
        format!("tilefarm_worker_tasks_{family}_total{{kind=\"{kind}\"}}")
    };

    // The lost job's one task: tried four times, then given up on.
    let (failed, _) = farm
        .wait_job(&lost.job_id.to_string(), Duration::from_secs(60))
        .await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let (_, before) = text(&farm, &url).await;
    assert_eq!(series(&before, &kind("started", "render")), 4.0, "{before}");
    assert_eq!(series(&before, &kind("retried", "render")), 3.0, "{before}");
    assert_eq!(
        series(&before, &kind("dead_lettered", "render")),
        1.0,
        "{before}"
    );
    assert_eq!(
        series(&before, &kind("succeeded", "render")),
        0.0,
        "{before}"
    );
    assert_eq!(
        series(&before, "tilefarm_worker_layer_cache_misses_total"),
        4.0,
        "{before}"
    );

    // A job that succeeds moves the others.
    let (job, layer) = farm
        .upload_sample("ne_110m_countries.geojson", "world", "0-4")
        .await;
    let (done, _) = farm.wait_job(&job, Duration::from_secs(120)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let store = farm.store().await;
    let renders = store
        .render_tasks(job.parse().unwrap())
        .await
        .unwrap()
        .len() as f64;
    assert!(renders > 1.0);
    let (_, after) = text(&farm, &url).await;
    let moved = |name: &str| series(&after, name) - series(&before, name);
    for family in ["started", "succeeded"] {
        assert_eq!(moved(&kind(family, "ingest")), 1.0, "{family}: {after}");
        assert_eq!(moved(&kind(family, "render")), renders, "{family}: {after}");
    }
    assert_eq!(moved(&kind("retried", "render")), 0.0, "{after}");
    assert_eq!(moved(&kind("dead_lettered", "render")), 0.0, "{after}");
    for histogram in ["render", "encode", "store"] {
        let count = format!("tilefarm_worker_{histogram}_seconds_count");
        assert_eq!(moved(&count), renders, "{histogram}: {after}");
        let sum = format!("tilefarm_worker_{histogram}_seconds_sum");
        assert!(moved(&sum) > 0.0, "{histogram}: {after}");
    }
    let total = done["progress"]["total"].as_f64().unwrap();
    let stored = farm.stored_tiles(&layer).len() as f64;
    assert_eq!(
        moved("tilefarm_worker_tiles_rendered_total"),
        total,
        "{after}"
    );
    assert_eq!(
        moved("tilefarm_worker_tiles_skipped_total"),
        total - stored,
        "the transparent tiles: {after}"
    );
    let one_colour = moved("tilefarm_worker_tiles_one_colour_total");
    assert!(
        one_colour >= total - stored && one_colour < total,
        "{after}"
    );
    // The worker that ingested the layer has it at hand for every render.
    assert_eq!(
        moved("tilefarm_worker_layer_cache_hits_total"),
        renders,
        "{after}"
    );
    assert_eq!(
        moved("tilefarm_worker_layer_cache_misses_total"),
        0.0,
        "{after}"
    );
    assert_eq!(
        series(&after, "tilefarm_worker_layer_cache_layers"),
        2.0,
        "{after}"
    );
    assert_eq!(
        series(&after, "tilefarm_worker_tasks_in_flight"),
        0.0,
        "{after}"
    );
    farm.stop().await;
}

fn job_ends(outcome: &str, part: &str) -> String {
    format!("tilefarm_job_duration_seconds_{part}{{outcome=\"{outcome}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_durations_and_the_outbox_backlog_are_scraped_and_on_the_dashboard() {
    let mut farm = Farm::new().await.with_fast_retries();
    // A job whose one task always fails: a worker fails it.
    let lost = farm.plan_lost_job().await;
    // No broker at first: whatever is written stays in the outbox.
    rabbitmqctl(&[
        "set_vhost_limits",
        "-p",
        &farm.vhost.name,
        r#"{"max-connections": 0}"#,
    ]);
    farm.serve(&["--api-only"]);
    let (api, worker) = (
        format!("{}/metrics", farm.base),
        format!("{}/metrics", worker_with_metrics(&mut farm).1),
    );
    // A job that succeeds, and one the API cancels while it waits.
    let (job, _) = farm
        .upload_sample("ne_110m_countries.geojson", "world", "0-3")
        .await;
    let (cancelled, _) = farm
        .upload_sample("ne_110m_countries.geojson", "cancelled", "0-3")
        .await;
    let res = farm
        .http
        .delete(format!("{}/v1/jobs/{cancelled}", farm.base))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    let blocked = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The lost job's two messages (its ingest and its render) and an ingest
    // for each upload wait in the outbox, in the figures of every process.
    let (_, scrape) = text(&farm, &api).await;
    assert_eq!(served(&scrape, "tilefarm_broker_up"), 0.0, "{scrape}");
    for scrape in [scrape, text(&farm, &worker).await.1] {
        assert_eq!(served(&scrape, "tilefarm_outbox_backlog"), 4.0, "{scrape}");
        let age = served(&scrape, "tilefarm_outbox_oldest_age_seconds");
        assert!((1.5..120.0).contains(&age), "{scrape}");
    }
    let (_, scrape) = text(&farm, &api).await;
    assert_eq!(served(&scrape, &job_ends("cancelled", "count")), 1.0);
    assert_eq!(served(&scrape, &job_ends("succeeded", "count")), 0.0);

    // With the broker back, the outbox drains and the jobs end.
    rabbitmqctl(&["clear_vhost_limits", "-p", &farm.vhost.name]);
    let (done, _) = farm.wait_job(&job, Duration::from_secs(120)).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let (failed, _) = farm
        .wait_job(&lost.job_id.to_string(), Duration::from_secs(60))
        .await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let took = blocked.elapsed().as_secs_f64();

    // The worker saw the success and the failure, the API the cancel.
    let (_, at_worker) = text(&farm, &worker).await;
    assert_eq!(served(&at_worker, &job_ends("succeeded", "count")), 1.0);
    assert_eq!(served(&at_worker, &job_ends("failed", "count")), 1.0);
    assert_eq!(served(&at_worker, &job_ends("cancelled", "count")), 0.0);
    // From the upload's creation: at least the time the broker was away.
    let seconds = served(&at_worker, &job_ends("succeeded", "sum"));
    assert!((1.5..=took + 5.0).contains(&seconds), "{at_worker}");
    let (_, at_api) = text(&farm, &api).await;
    assert_eq!(served(&at_api, &job_ends("cancelled", "count")), 1.0);
    assert_eq!(served(&at_api, &job_ends("succeeded", "count")), 0.0);
    assert_eq!(served(&at_api, "tilefarm_outbox_backlog"), 0.0, "{at_api}");
    assert_eq!(
        served(&at_api, "tilefarm_outbox_oldest_age_seconds"),
        0.0,
        "{at_api}"
    );

    // The dashboard reads only what the processes serve, and shows all of it.
    let dashboard = Dashboard::load();
    let names = sample_names(&[&at_api, &at_worker]);
    let missing: Vec<&String> = dashboard.metrics.difference(&names).collect();
    assert!(
        missing.is_empty(),
        "the dashboard reads metrics no process serves: {missing:?}"
    );
    let unshown: Vec<String> = families(&[&at_api, &at_worker])
        .into_iter()
        .filter(|family| {
            !dashboard
                .metrics
                .iter()
                .any(|m| m == family || m.strip_prefix(family.as_str()).is_some_and(is_suffix))
        })
        .collect();
    assert!(
        unshown.is_empty(),
        "metrics the dashboard does not show: {unshown:?}"
    );
    farm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_server_reports_its_jobs_and_outbox_once() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let server = Embedded::start_with(
        dir.path(),
        dir.path().join("serve.log"),
        &["--metrics-listen", &listen],
    );
    let done = server
        .change(
            reqwest::Client::new()
                .post(server.url("/v1/layers?name=world&zooms=0-2"))
                .header("content-type", "application/geo+json")
                .body(std::fs::read(support::sample("ne_110m_countries.geojson")).unwrap()),
        )
        .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let http = reqwest::Client::new();
    let get = |url: String| {
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let api = get(server.url("/metrics")).await;
    assert_eq!(served(&api, &job_ends("succeeded", "count")), 1.0, "{api}");
    assert!(served(&api, &job_ends("succeeded", "sum")) > 0.0, "{api}");
    assert_eq!(served(&api, "tilefarm_outbox_backlog"), 0.0, "{api}");
    assert_eq!(served(&api, "tilefarm_outbox_oldest_age_seconds"), 0.0);
    // The worker beside the API in the same process leaves them to the API,
    // so that summing over the endpoints counts each job once.
    let worker = get(format!("http://{listen}/metrics")).await;
    assert!(
        worker.contains("tilefarm_worker_tasks_succeeded_total"),
        "{worker}"
    );
    assert!(
        !worker.contains("tilefarm_job_duration_seconds"),
        "{worker}"
    );
    assert!(!worker.contains("tilefarm_outbox"), "{worker}");
}

/// `deploy/grafana/tilefarm.json`, and the metric names its queries read.
struct Dashboard {
    metrics: BTreeSet<String>,
}

impl Dashboard {
    fn load() -> Dashboard {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/grafana/tilefarm.json");
        let json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        assert!(
            json["schemaVersion"].as_u64() >= Some(38),
            "Grafana 10's schema"
        );
        let variables = json["templating"]["list"].as_array().unwrap();
        assert!(
            variables.iter().any(|v| v["name"] == "DS_PROMETHEUS"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "a Prometheus data source variable DS_PROMETHEUS"
        );
        let mut targets = Vec::new();
        collect_targets(&json["panels"], &mut targets);
        assert!(targets.len() >= 20, "the dashboard's queries");
        let mut metrics = BTreeSet::new();
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{target}");
            let expr = target["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "a query of no metric: {expr}");
            metrics.extend(names);
        }
        Dashboard { metrics }
    }
}

/// Every query target of a list of panels, rows' panels included.
fn collect_targets<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
    for panel in panels.as_array().into_iter().flatten() {
        out.extend(panel["targets"].as_array().into_iter().flatten());
        collect_targets(&panel["panels"], out);
    }
}

/// PromQL's aggregations and keywords: the identifiers of a query that are
/// not metric names (functions are those followed by a parenthesis).
const PROMQL_WORDS: [&str; 23] = [
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
];

/// The metric names a PromQL expression reads: its identifiers outside label
/// matchers, range selectors, strings and `by (...)` lists, less functions
/// and keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let (mut i, mut nesting, mut labels_next) = (0, 0usize, false);
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
        } else if c == '{' || c == '[' {
            nesting += 1;
        } else if c == '}' || c == ']' {
            nesting -= 1;
        } else if c == '(' && labels_next {
            // by (...), without (...), on (...): label names.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            labels_next = false;
        } else if c.is_ascii_digit() || c == '$' {
            // A number, a duration or a dashboard variable.
            while i + 1 < chars.len()
                && (chars[i + 1].is_ascii_alphanumeric() || ".$_".contains(chars[i + 1]))
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i + 1 < chars.len()
                && (chars[i + 1].is_ascii_alphanumeric() || "_:".contains(chars[i + 1]))
            {
                i += 1;
            }
            let word: String = chars[start..=i].iter().collect();
            let next = chars[i + 1..].iter().find(|c| !c.is_whitespace());
            if nesting > 0 {
                // A label name or value inside a matcher.
            } else if PROMQL_WORDS.contains(&word.as_str()) {
                labels_next = matches!(
                    word.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                );
            } else if next != Some(&'(') {
                names.insert(word);
            }
        }
        i += 1;
    }
    names
}

#[test]
fn the_dashboards_queries_are_read_for_their_metric_names() {
    let names = |expr: &str| metric_names(expr).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.95, sum by (le, outcome) (rate(tilefarm_job_duration_seconds_bucket{outcome!="x"}[$__rate_interval])))"#
        ),
        ["tilefarm_job_duration_seconds_bucket"]
    );
    assert_eq!(
        names(
            "sum(rate(a_total[5m])) / (sum(rate(a_total[5m])) + sum(rate(b_total[5m]))) > bool 0.5"
        ),
        ["a_total", "b_total"]
    );
    assert_eq!(
        names(
            r#"max by (queue) (tilefarm_queue_ready_messages{queue="tilefarm.render"}) offset 1h"#
        ),
        ["tilefarm_queue_ready_messages"]
    );
    // A misspelt name is read as it is, and is not among what a scrape serves.
    let scrape = "# TYPE tilefarm_c counter\n# TYPE tilefarm_h histogram\n# TYPE tilefarm_g gauge\ntilefarm_g 1\n";
    let served = sample_names(&[scrape]);
    assert_eq!(names("sum(rate(tilefarm_c[1m]))"), ["tilefarm_c"]);
    assert!(!served.contains("tilefarm_c"), "{served:?}");
    for name in [
        "tilefarm_c_total",
        "tilefarm_h_bucket",
        "tilefarm_h_count",
        "tilefarm_g",
    ] {
        assert!(served.contains(name), "{name}: {served:?}");
    }
}

/// What follows a family's name in its samples' names.
fn is_suffix(rest: &str) -> bool {
    matches!(rest, "_total" | "_bucket" | "_sum" | "_count" | "_created")
}

/// The names of the samples that `scrapes` (OpenMetrics text) can have: a
/// family declared with no samples yet (a counter by kind before its first
/// count) counts, under the names its samples take.
fn sample_names(scrapes: &[&str]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for scrape in scrapes {
        for line in scrape.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (family, kind) = declared.split_once(' ').unwrap();
                let suffixes: &[&str] = match kind {
                    "counter" => &["_total"],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    _ => &[""],
                };
                names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
            } else if !line.starts_with('#') && !line.is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                names.insert(line[..end].to_string());
            }
        }
    }
    names
}

/// The metric families `scrapes` declare.
fn families(scrapes: &[&str]) -> BTreeSet<String> {
    scrapes
        .iter()
        .flat_map(|s| s.lines())
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
        .map(|(family, _)| family.to_string())
        .collect()
}
