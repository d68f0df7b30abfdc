//! The object store sink against a real S3 server (s3s-fs, which `scripts/setup`
//! installs), started on a free port of its own for this test.

mod common;

use std::sync::Arc;

use common::{sample_layer, tree};
use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;
use tilefarm_renderer::Style;
use tilefarm_testkit::{S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};
use tilefarm_worker::{DirSink, ObjectStoreSink, PyramidOptions, render_pyramid};

#[test]
fn tiles_rendered_into_s3_are_the_tiles_rendered_into_a_directory() {
    let server = S3Server::start(&["tiles"]);
    let store = AmazonS3Builder::new()
        .with_endpoint(format!("http://127.0.0.1:{}", server.port))
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name("tiles")
        .with_access_key_id(S3_ACCESS_KEY)
        .with_secret_access_key(S3_SECRET_KEY)
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
