//! The page in a real browser: Debian's Chromium driven by playwright-core
//! (web/test/browser.mjs) against `tilefarm serve` in the embedded mode. The
//! script uploads through the page, checks the progress bar, the tiles' pixels
//! and answers, a bad file's message, the page while the server is stopped and
//! after it is started again, a deletion and upserts made from the page, a
//! reload, a phone-sized screen and a cancel. It asks this test to stop and
//! start the server.
//!
//! Needs `scripts/setup-browser` (Chromium and web/node_modules); fails, never
//! skips, without them. Screenshots go to web/test/out/, and to docs/img/ with
//! `TILEFARM_UPDATE_SCREENSHOTS=1` (the user guide's pictures).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{Embedded, sample};
use tilefarm_testkit::free_port;

const CHROMIUM: &str = "/usr/bin/chromium";
const TOKEN: &str = "sesame";

/// `tilefarm serve` with nothing configured, with a token and a 64 MB limit, on
/// a data folder and port that outlive it, so it can be started again where it
/// was.
fn serve(port: u16, data_dir: &Path, log: &Path) -> Embedded {
    Embedded::start_on(
        port,
        data_dir,
        log.to_path_buf(),
        &["--token", TOKEN, "--max-upload-mb", "64"],
    )
}

fn web() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web")
}

/// What the browser test needs, or a panic that says what to run.
fn require_tools() {
    let setup = "run scripts/setup-browser (it installs Debian's chromium and web/node_modules)";
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: {setup}"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: apt-get install -y nodejs npm, then {setup}"
    );
    assert!(
        web()
            .join("node_modules/playwright-core/package.json")
            .exists()
            && web().join("node_modules/leaflet/package.json").exists()
            && web().join("node_modules/esbuild/package.json").exists(),
        "web/node_modules is missing or incomplete: {setup}"
    );
}

#[test]
fn the_page_uploads_watches_survives_a_restart_and_edits_in_chromium() {
    require_tools();
    // The page the binary embeds is the one web/ builds.
    let check = Command::new("node")
        .arg(web().join("build.mjs"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let tmp = tempfile::tempdir().unwrap();
    let (data_dir, log) = (tmp.path().join("data"), tmp.path().join("serve.log"));
    // A polygon whose ring does not close: accepted, then failed with where and what.
    let bad = tmp.path().join("broken.geojson");
    std::fs::write(
        &bad,
        r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
            "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 9]]]}}]}"#,
    )
    .unwrap();
    let shots = if std::env::var("TILEFARM_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/img")
    } else {
        web().join("test/out")
    };

    let port = free_port();
    let mut server = Some(serve(port, &data_dir, &log));
    let mut node = Command::new("node")
        .arg(web().join("test/browser.mjs"))
        .env("TILEFARM_URL", format!("http://127.0.0.1:{port}/"))
        .env("TILEFARM_TOKEN", TOKEN)
        .env("TILEFARM_MAX_UPLOAD", "64 MB")
        .env("TILEFARM_SAMPLE", sample("ne_110m_countries.geojson"))
        .env("TILEFARM_WORLD", sample("wa_countries_50m.geojson"))
        .env("TILEFARM_BAD", &bad)
        .env("TILEFARM_SHOTS", &shots)
        .current_dir(web())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let mut to_node = node.stdin.take().unwrap();
    let stderr = node.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    for line in BufReader::new(node.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        let reply = match line.as_str() {
            "@@server stop" => {
                drop(server.take());
                "ok"
            }
            "@@server start" => {
                server = Some(serve(port, &data_dir, &log));
                "ok"
            }
            other => {
                println!("{other}");
                continue;
            }
        };
        writeln!(to_node, "{reply}").unwrap();
    }
    let status = node.wait().unwrap();
    let errors = errors.join().unwrap();
    drop(server);
    if !status.success() {
        eprintln!(
            "--- tilefarm serve's log ---\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        panic!("the browser test failed ({status}): {errors}");
    }
}
