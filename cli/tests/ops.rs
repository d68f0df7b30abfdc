//! What ops run the farm with: the API reads the queues over one long-lived
//! broker connection, and a worker's own endpoint serves its metrics, a
//! liveness check and the drain hook a pod's preStop calls.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::Farm;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_metrics_and_drains_when_asked() {
    let mut farm = Farm::new().await;
    farm.serve(&["--api-only"]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let worker = farm.spawn(
        "worker",
        &["worker", "--concurrency", "2", "--metrics-listen", &listen],
    );
    wait_for_port(port, "the worker's metrics", Duration::from_secs(60));
    let base = format!("http://{listen}");
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
/// Prometheus text scrape; 0 when it is not there yet.
fn series(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_counters_move_as_its_jobs_run() {
    let mut farm = Farm::new().await.with_fast_retries();
    let lost = farm.plan_lost_job().await;
    farm.serve(&["--api-only"]);
    let listen = format!("127.0.0.1:{}", free_port());
    farm.spawn(
        "worker",
        &["worker", "--concurrency", "2", "--metrics-listen", &listen],
    );
    wait_for_port(
        listen.rsplit(':').next().unwrap().parse().unwrap(),
        "the worker's metrics",
        Duration::from_secs(60),
    );
    let url = format!("http://{listen}/metrics");
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
