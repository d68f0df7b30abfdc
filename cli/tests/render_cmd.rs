//! `tilefarm render` as a person runs it: a pyramid and a summary on success, a
//! non-zero exit and a message naming the problem otherwise.

use std::path::Path;
use std::process::{Command, Output};

fn tilefarm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tilefarm"))
        .args(args)
        .output()
        .expect("run tilefarm")
}

fn sample(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name)
        .display()
        .to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn renders_a_viewable_pyramid_with_a_summary() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("world");
    let o = tilefarm(&[
        "render",
        &sample("ne_110m_countries.geojson"),
        "--zooms",
        "0-3",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("rendered 85 tiles (z0-3)"),
        "summary: {stdout}"
    );
    for z in 0..=3u32 {
        for x in 0..1u32 << z {
            for y in 0..1u32 << z {
                assert!(
                    dir.join(format!("{z}/{x}/{y}.png")).is_file(),
                    "tile {z}/{x}/{y}"
                );
            }
        }
    }
    let html = std::fs::read_to_string(dir.join("index.html")).expect("a viewer page");
    assert!(
        html.contains("MINZ = 0, MAXZ = 3"),
        "the viewer knows the zoom range"
    );
}

#[test]
fn renders_newline_delimited_input_at_2x_into_an_object_store_url() {
    let out = tempfile::tempdir().unwrap();
    let input = out.path().join("cities.geojsonl");
    let text = std::fs::read_to_string(sample("ne_cities.geojson")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let lines: Vec<String> = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| serde_json::to_string(f).unwrap())
        .collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    let url = format!("file://{}/tiles", out.path().display());
    std::fs::create_dir_all(out.path().join("tiles")).unwrap();
    let o = tilefarm(&[
        "render",
        input.to_str().unwrap(),
        "--zooms",
        "0-2",
        "--tile-size",
        "512",
        "--out",
        &url,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let png = std::fs::read(out.path().join("tiles/2/1/1.png")).expect("a tile in the store");
    assert_eq!(&png[1..4], b"PNG");
    // 512 px wide: the IHDR width field.
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 512);
}

#[test]
fn renders_into_a_pmtiles_archive() {
    let out = tempfile::tempdir().unwrap();
    let archive = out.path().join("cities.pmtiles");
    let o = tilefarm(&[
        "render",
        &sample("ne_cities.geojson"),
        "--zooms",
        "0-3",
        "--out",
        archive.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&archive).expect("the archive");
    assert_eq!(&bytes[..7], b"PMTiles", "PMTiles magic");
    assert_eq!(bytes[7], 3, "PMTiles version 3");
    // The tile type (byte 99 of the header) is PNG (2).
    assert_eq!(bytes[99], 2);
}

#[test]
fn bad_input_fails_with_where_and_what() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.geojson");
    std::fs::write(
        &input,
        r#"{"type":"FeatureCollection","features":[
            {"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[1,2]}},
            {"type":"Feature","id":"oops","properties":{},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0.5]]]}}]}"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = tilefarm(&[
        "render",
        input.to_str().unwrap(),
        "--zooms",
        "0-1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("features[1]") && err.contains("id \"oops\"") && err.contains("not closed"),
        "{err}"
    );
    assert!(
        !out.join("0").exists(),
        "no tiles are written from bad input"
    );

    // With --skip-invalid the good feature renders and the bad one is reported.
    let o = tilefarm(&[
        "render",
        input.to_str().unwrap(),
        "--zooms",
        "0-1",
        "--skip-invalid",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipped features[1]"), "{}", stderr(&o));
}

#[test]
fn bad_arguments_and_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let data = sample("ne_cities.geojson");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["render", &data, "--zooms", "5-2", "--out", out],
            "runs backwards",
        ),
        (
            vec!["render", &data, "--zooms", "a-b", "--out", out],
            "not a zoom range",
        ),
        (
            vec!["render", &data, "--tile-size", "300", "--out", out],
            "tile size 300",
        ),
        (
            vec!["render", &data, "--metatile", "6", "--out", out],
            "metatile size 6",
        ),
        (
            vec!["render", "/nonexistent/x.geojson", "--out", out],
            "cannot open /nonexistent/x.geojson",
        ),
        (
            vec![
                "render",
                &data,
                "--style",
                "/nonexistent/style.json",
                "--out",
                out,
            ],
            "cannot read the style file",
        ),
    ];
    for (args, expected) in cases {
        let o = tilefarm(&args);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(
            stderr(&o).contains(expected),
            "{args:?}: expected {expected:?} in {}",
            stderr(&o)
        );
    }
    let style = dir.path().join("style.json");
    std::fs::write(&style, r##"{"polygon":{"fill":"#12345"}}"##).unwrap();
    let o = tilefarm(&[
        "render",
        &data,
        "--style",
        style.to_str().unwrap(),
        "--out",
        out,
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("polygon.fill"), "{}", stderr(&o));
}

#[test]
fn migrate_creates_the_job_store_schema_and_can_run_again() {
    let admin_url = std::env::var("TILEFARM_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("tilefarm_test_{}", uuid::Uuid::new_v4().simple());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin = runtime
        .block_on(sqlx::PgPool::connect(&admin_url))
        .unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable at {admin_url} ({e}); scripts/test starts it")
        });
    runtime
        .block_on(
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin),
        )
        .unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
    for _ in 0..2 {
        let o = tilefarm(&["migrate", "--database", &url]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("up to date"));
    }
    let tables: Vec<String> = runtime
        .block_on(async {
            let pool = sqlx::PgPool::connect(&url).await?;
            let t = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = 'public' ORDER BY table_name",
            )
            .fetch_all(&pool)
            .await;
            pool.close().await;
            t
        })
        .unwrap();
    for t in ["jobs", "layer_versions", "layers", "outbox", "tasks"] {
        assert!(tables.iter().any(|x| x == t), "table {t} in {tables:?}");
    }
    runtime
        .block_on(
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .execute(&admin),
        )
        .unwrap();

    let o = tilefarm(&[
        "migrate",
        "--database",
        "postgres://nobody:secret@127.0.0.1:1/none",
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("cannot connect to the job store"), "{err}");
    assert!(!err.contains("secret"), "the password is not shown: {err}");
}

#[test]
fn renders_into_an_s3_bucket_with_cache_headers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tiles")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("s3s-fs")
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            "k",
            "--secret-key",
            "s",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start s3s-fs ({e}); scripts/setup installs it"));
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed().as_secs() < 20, "s3s-fs did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = Command::new(env!("CARGO_BIN_EXE_tilefarm"))
        .args([
            "render",
            &sample("ne_cities.geojson"),
            "--zooms",
            "0-2",
            "--out",
            "s3://tiles/cities",
        ])
        .args([
            "--s3-endpoint",
            &format!("http://127.0.0.1:{port}"),
            "--cache-control",
            "max-age=5",
        ])
        .env("AWS_ACCESS_KEY_ID", "k")
        .env("AWS_SECRET_ACCESS_KEY", "s")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(o.status.success(), "{}", stderr(&o));
    // s3s-fs keeps each object as a file under its bucket's directory.
    let png =
        std::fs::read(dir.path().join("tiles/cities/2/1/1.png")).expect("a tile in the bucket");
    assert_eq!(&png[1..4], b"PNG");
}
