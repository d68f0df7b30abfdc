//! The object store sink against a real S3 server (s3s-fs, which `scripts/setup`
//! installs), started on a free port of its own for this test.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{sample_layer, tree};
use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;
use tilefarm_renderer::Style;
use tilefarm_worker::{DirSink, ObjectStoreSink, PyramidOptions, render_pyramid};

const ACCESS_KEY: &str = "tilefarm";
const SECRET_KEY: &str = "tilefarm-secret";

/// An S3 server on a free loopback port, serving a temporary directory.
struct S3Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl S3Server {
    fn start(bucket: &str) -> S3Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(bucket)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start s3s-fs ({e}); scripts/setup installs it"));
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "s3s-fs did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tiles_rendered_into_s3_are_the_tiles_rendered_into_a_directory() {
    let server = S3Server::start("tiles");
    let store = AmazonS3Builder::new()
        .with_endpoint(format!("http://127.0.0.1:{}", server.port))
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name("tiles")
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .build()
        .expect("an S3 client");
    let store = Arc::new(store);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    let options = PyramidOptions {
        zooms: 0..=3,
        ..PyramidOptions::default()
    };
    let layer = sample_layer("ne_110m_countries.geojson", &Style::default());
    let dir = tempfile::tempdir().unwrap();
    render_pyramid(
        &layer,
        &options,
        &DirSink::new(dir.path(), false).unwrap(),
        &|_| {},
    )
    .unwrap();
    let sink = ObjectStoreSink::new(
        store.clone(),
        "layers/world".into(),
        runtime.handle().clone(),
    )
    .with_http_headers("public, max-age=60");
    let summary = render_pyramid(&layer, &options, &sink, &|_| {}).unwrap();
    assert_eq!(summary.tiles, 85);

    let on_disk = tree(dir.path());
    let mut checked = 0;
    runtime.block_on(async {
        for (rel, bytes) in on_disk.iter().filter(|(k, _)| k.ends_with(".png")) {
            let key = object_store::path::Path::from(format!("layers/world/{rel}"));
            let got = store
                .get(&key)
                .await
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            let attrs = got.attributes.clone();
            assert_eq!(
                attrs
                    .get(&object_store::Attribute::ContentType)
                    .map(|v| v.as_ref()),
                Some("image/png"),
                "{key}"
            );
            assert_eq!(
                attrs
                    .get(&object_store::Attribute::CacheControl)
                    .map(|v| v.as_ref()),
                Some("public, max-age=60"),
                "{key}"
            );
            assert_eq!(&got.bytes().await.unwrap()[..], &bytes[..], "{key}");
            checked += 1;
        }
    });
    assert_eq!(checked, 85, "every tile is in the bucket");
}
