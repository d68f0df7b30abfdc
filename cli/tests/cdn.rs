//! The CDN side of edits, with a real caching proxy (Varnish) in front of the
//! tile origin on the farm (RabbitMQ, PostgreSQL, S3): after an edit the proxy
//! serves the new tiles, and the tiles the edit did not touch stay cached.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Farm, features_with_ids, shift};
use tilefarm_testkit::{free_port, wait_for_port};

/// `varnishd` in the foreground on a free port, caching the tile origin and
/// honouring `PURGE` from loopback.
struct Varnish {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Varnish {
    fn start(origin_port: u16) -> Varnish {
        let bin = ["/usr/sbin/varnishd", "/usr/local/sbin/varnishd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("varnishd is not installed: run scripts/setup (it installs Varnish)");
        let dir = tempfile::tempdir().unwrap();
        let vcl = dir.path().join("tiles.vcl");
        std::fs::write(
            &vcl,
            format!(
                r#"vcl 4.1;
backend origin {{ .host = "127.0.0.1"; .port = "{origin_port}"; }}
acl purgers {{ "127.0.0.1"; }}
sub vcl_recv {{
    if (req.method == "PURGE") {{
        if (client.ip !~ purgers) {{ return (synth(405, "not allowed")); }}
        return (purge);
    }}
}}
"#
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("varnishd.log")).unwrap();
        let child = Command::new(bin)
            .args(["-F", "-j", "none", "-a"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-f")
            .arg(&vcl)
            .arg("-n")
            .arg(dir.path().join("work"))
            .args(["-s", "malloc,64m", "-T", "none"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start varnishd");
        wait_for_port(port, "varnishd", Duration::from_secs(30));
        Varnish {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Varnish {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tile through the proxy, as a browser asks for it: with `If-None-Match`
/// when it holds a copy. The status, the bytes, the ETag and whether the proxy
/// had it cached (`X-Varnish` names two requests on a hit).
async fn revalidate(
    http: &reqwest::Client,
    port: u16,
    path: &str,
    etag: Option<&str>,
) -> (u16, Vec<u8>, String, bool) {
    let mut req = http.get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(tag) = etag {
        req = req.header(reqwest::header::IF_NONE_MATCH, tag);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    assert!(status == 200 || status == 304, "{path}: {status}");
    let hit = res
        .headers()
        .get("x-varnish")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split_whitespace().count() == 2);
    let tag = res
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, res.bytes().await.unwrap().to_vec(), tag, hit)
}

/// A tile through the proxy: its bytes and whether the proxy had it cached.
async fn through(http: &reqwest::Client, port: u16, path: &str) -> (Vec<u8>, bool) {
    let (status, bytes, _, hit) = revalidate(http, port, path, None).await;
    assert_eq!(status, 200, "{path}");
    (bytes, hit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_edit_the_proxy_serves_new_tiles_and_keeps_the_untouched_ones() {
    let mut farm = Farm::new().await;
    let varnish = Varnish::start(farm.api_port);
    let purge = format!("http://127.0.0.1:{}", varnish.port);
    let serve = farm.serve(&["--concurrency", "2", "--purge-url", &purge]);

    // The countries with ids, at zooms 0-3.
    let features = features_with_ids("ne_110m_countries.geojson");
    let layer = farm.upload_ready("world", "0-3", &features).await;

    // Every tile of the layer (and the transparent ones beside them) cached.
    let paths: Vec<String> = (0..=3u32)
        .flat_map(|z| {
            let n = 1u32 << z;
            (0..n).flat_map(move |x| (0..n).map(move |y| (z, x, y)))
        })
        .map(|(z, x, y)| format!("/tiles/{layer}/{z}/{x}/{y}.png"))
        .collect();
    let http = reqwest::Client::new();
    let mut old = BTreeMap::new();
    let mut tags = BTreeMap::new();
    let mut first_hits = 0;
    for p in &paths {
        first_hits += usize::from(through(&http, varnish.port, p).await.1);
        let (_, bytes, tag, hit) = revalidate(&http, varnish.port, p, None).await;
        assert!(hit, "{p} is cached after a second request");
        old.insert(p.clone(), bytes);
        tags.insert(p.clone(), tag);
    }

    // Move France far to the west, into the Atlantic.
    let i = features
        .iter()
        .position(|f| f["properties"]["name"] == "France")
        .expect("France is in the sample");
    let mut moved = features[i].clone();
    shift(&mut moved["geometry"]["coordinates"], -25.0, 0.0);
    let edit = json!({"upsert": {"type": "FeatureCollection", "features": [moved]}});
    let res = http
        .post(format!("{}/v1/layers/{layer}/edits", farm.base))
        .json(&edit)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    let accepted: Value = res.json().await.unwrap();
    let job = accepted["job"]["id"].as_str().unwrap().to_string();
    let (done, _) = farm.wait_job(&job, Duration::from_secs(60)).await;
    assert_eq!(done["state"], "succeeded", "{done}");

    // The worker logged the exact tiles it changed, and purged them.
    let log = farm.log(serve);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tiles changed") && l.contains(&job))
        .collect();
    assert!(!lines.is_empty(), "no 'tiles changed' line for job {job}");
    let purged: BTreeSet<String> = lines
        .iter()
        .flat_map(|l| l.split_whitespace())
        .map(|w| w.strip_prefix("paths=").unwrap_or(w))
        .filter(|w| w.starts_with("/tiles/"))
        .map(String::from)
        .collect();
    // The edit re-rendered its dirty tiles and purged those that changed.
    assert!(done["progress"]["total"].as_u64().unwrap() >= purged.len() as u64);
    assert!(
        !purged.is_empty() && purged.len() < paths.len() / 2,
        "{purged:?}"
    );

    let mut changed = 0;
    let mut hits_after = 0;
    for p in &paths {
        let origin = http
            .get(format!("{}{p}", farm.base))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let (bytes, hit) = through(&http, varnish.port, p).await;
        assert!(bytes == origin, "{p}: the proxy serves what the origin has");
        // Purged exactly where the tile changed.
        assert_eq!(
            purged.contains(p),
            bytes != old[p],
            "{p}: purged if and only if changed"
        );
        if purged.contains(p) {
            assert!(!hit, "{p} changed and was purged, yet came from the cache");
            changed += 1;
        } else {
            assert!(hit, "{p} was not changed by the edit, yet left the cache");
        }
        hits_after += usize::from(hit);
        // A browser holding the old tile revalidates it (max-age=0): the
        // proxy says 304 for a tile the edit did not touch, and sends the new
        // bytes of one it did, at once.
        let (status, body, _, hit) = revalidate(&http, varnish.port, p, Some(&tags[p])).await;
        assert!(hit, "{p}: the revalidation is answered by the proxy");
        if purged.contains(p) {
            assert_eq!((status, &body), (200, &origin), "{p}: the new tile at once");
        } else {
            assert_eq!(status, 304, "{p}: the browser keeps its copy");
        }
    }
    assert!(changed > 0, "the edit changed some tiles");
    // The figures docs/cdn.md quotes (run with --nocapture to see them).
    println!(
        "proxy hit ratio: first views {first_hits}/{n}, second views {n}/{n}, \
         after the edit {hits_after}/{n} ({changed} tiles changed)",
        n = paths.len()
    );
    farm.stop().await;
}
