//! `tilefarm serve` with nothing configured: API and workers in one process on
//! SQLite, an in-process queue and a local folder; the same results as the farm.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{reference_render, sample};
use tilefarm_testkit::{free_port, tree, wait_for_port};

struct Embedded {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Embedded {
    fn start(data_dir: &std::path::Path, log: std::path::PathBuf) -> Embedded {
        let port = free_port();
        let file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tilefarm"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--concurrency", "2", "--data-dir"])
            .arg(data_dir)
            .env("NO_COLOR", "1")
            .env_remove("TILEFARM_AMQP_URL")
            .env_remove("TILEFARM_DATABASE_URL")
            .env_remove("TILEFARM_STORE")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, "tilefarm serve", Duration::from_secs(60));
        Embedded { child, port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn job(&self, id: &str) -> Value {
        reqwest::get(self.url(&format!("/v1/jobs/{id}")))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

async fn upload(server: &Embedded, file: &str, zooms: &str) -> (String, String) {
    let res = reqwest::Client::new()
        .post(server.url(&format!("/v1/layers?name=world&zooms={zooms}")))
        .header("content-type", "application/geo+json")
        .body(std::fs::read(sample(file)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let json: Value = res.json().await.unwrap();
    (
        json["job"]["id"].as_str().unwrap().into(),
        json["layer_id"].as_str().unwrap().into(),
    )
}

async fn wait(server: &Embedded, job: &str) -> Value {
    let started = Instant::now();
    loop {
        let j = server.job(job).await;
        if !matches!(j["state"].as_str(), Some("queued" | "running")) {
            return j;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stored(data_dir: &std::path::Path, layer: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    tree(&data_dir.join("store/tiles").join(layer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_mode_renders_the_same_tiles_as_tilefarm_render() {
    let dir = tempfile::tempdir().unwrap();
    let server = Embedded::start(dir.path(), dir.path().join("serve.log"));
    let (job, layer) = upload(&server, "ne_110m_countries.geojson", "0-4").await;
    let done = wait(&server, &job).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["progress"]["done"], done["progress"]["total"]);
    let out = tempfile::tempdir().unwrap();
    let reference = reference_render("ne_110m_countries.geojson", "0-4", out.path());
    let tiles = stored(dir.path(), &layer);
    assert!(!reference.is_empty());
    assert!(tiles == reference, "the same tiles as tilefarm render");
    // The page, the tile origin and readiness work the same way.
    let page = reqwest::get(server.url("/")).await.unwrap();
    assert!(page.text().await.unwrap().contains("EventSource"));
    let ready: Value = reqwest::get(server.url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let (key, bytes) = reference.iter().next().unwrap();
    let tile = reqwest::get(server.url(&format!("/tiles/{layer}/{key}")))
        .await
        .unwrap();
    assert_eq!(&tile.bytes().await.unwrap()[..], &bytes[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_server_killed_mid_job_finishes_it_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let mut server = Embedded::start(dir.path(), log.clone());
    let (job, layer) = upload(&server, "wa_countries_50m.geojson", "0-6").await;
    let started = Instant::now();
    loop {
        let j = server.job(&job).await;
        let done = j["progress"]["done"].as_i64().unwrap();
        if done > 0 {
            assert!(
                Some(done) < j["progress"]["total"].as_i64(),
                "finished before the kill"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress: {j}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    drop(server);
    let server = Embedded::start(dir.path(), log);
    let done = wait(&server, &job).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(
        done["progress"]["done"], done["progress"]["total"],
        "counted once each"
    );
    let out = tempfile::tempdir().unwrap();
    let reference = reference_render("wa_countries_50m.geojson", "0-6", out.path());
    assert!(
        stored(dir.path(), &layer) == reference,
        "the same tiles as tilefarm render"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tilefarm_upload_follows_a_job_to_its_end_and_says_why_one_failed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Embedded::start(dir.path(), dir.path().join("serve.log"));
    let upload = |file: std::path::PathBuf| {
        Command::new(env!("CARGO_BIN_EXE_tilefarm"))
            .arg("upload")
            .arg(file)
            .args(["--server", &server.url(""), "--zooms", "0-2"])
            .output()
            .unwrap()
    };
    let ok = upload(sample("ne_cities.geojson"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr),
    );
    assert!(ok.status.success(), "{stderr}");
    assert!(stdout.contains("job succeeded"), "{stdout}");
    assert!(stdout.contains("/tilejson"), "{stdout}");
    let bad_file = dir.path().join("bad.geojson");
    std::fs::write(
        &bad_file,
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[10,95]}}]}"#,
    )
    .unwrap();
    let bad = upload(bad_file);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("job failed") && stderr.contains("latitude 95"),
        "{stderr}"
    );
    let refused = upload(dir.path().join("serve.log"));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("refused") && stderr.contains("not GeoJSON"),
        "{stderr}"
    );
}
