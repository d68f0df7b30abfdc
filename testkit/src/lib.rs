//! What tilefarm's integration tests share: a PostgreSQL database, a RabbitMQ
//! virtual host and an S3 server of each test's own, on the real servers that
//! `scripts/setup` installs and starts. A missing server fails the test with a
//! message saying so; nothing is skipped.
#![forbid(unsafe_code)]

pub mod gis;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tilefarm_queue::JobStore;
use uuid::Uuid;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The Python venv scripts/setup makes for the test tools (kubernetes-validate,
/// and with it jsonschema): `TILEFARM_DEPLOY_VENV`, or its default place.
pub fn tools_venv() -> PathBuf {
    std::env::var("TILEFARM_DEPLOY_VENV").map_or_else(
        |_| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/tilefarm/deploy-venv"),
        PathBuf::from,
    )
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a loopback port")
        .local_addr()
        .expect("an address")
        .port()
}

/// Waits until something listens on `port`.
pub fn wait_for_port(port: u16, what: &str, within: Duration) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < within,
            "{what} did not listen on port {port} within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fresh database on the local PostgreSQL, dropped at the end of the test.
#[derive(Debug)]
pub struct TestDb {
    admin: sqlx::PgPool,
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// An empty database (no schema).
    pub async fn empty() -> TestDb {
        let base_url = std::env::var("TILEFARM_TEST_DATABASE_URL")
            .unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
        let admin = sqlx::PgPool::connect(&base_url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable at {base_url} ({e}); scripts/test starts it")
        });
        let name = format!("tilefarm_test_{}", Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("CREATE DATABASE");
        let (base, _) = base_url
            .rsplit_once('/')
            .expect("a database URL ends in /DBNAME");
        let url = format!("{base}/{name}");
        TestDb { admin, name, url }
    }

    /// A database with the job store's schema, and a store on it.
    pub async fn migrated() -> (TestDb, JobStore) {
        let db = TestDb::empty().await;
        let store = JobStore::connect_postgres(&db.url).await.expect("connect");
        store.migrate().await.expect("migrations");
        (db, store)
    }

    /// Drops the database, closing whatever still uses it.
    pub async fn drop(self) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.name
        )))
        .execute(&self.admin)
        .await
        .expect("DROP DATABASE");
    }
}

/// Runs `rabbitmqctl`, failing the test with its error.
pub fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("rabbitmqctl is not available ({e}); scripts/test installs and starts RabbitMQ")
        });
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed (is RabbitMQ running? scripts/test starts it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A RabbitMQ virtual host of the test's own on the local broker, deleted at
/// the end of the test.
#[derive(Debug)]
pub struct TestVhost {
    pub name: String,
    pub url: String,
}

impl TestVhost {
    pub fn new() -> TestVhost {
        let name = format!("tilefarm_test_{}", Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        let url = format!("amqp://guest:guest@127.0.0.1:5672/{name}");
        TestVhost { name, url }
    }
}

impl Default for TestVhost {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

pub const S3_ACCESS_KEY: &str = "tilefarm";
pub const S3_SECRET_KEY: &str = "tilefarm-secret";

/// An S3 server (s3s-fs) on a free loopback port, serving a temporary
/// directory; each bucket is a folder and each object a file in it.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl S3Server {
    pub fn start(buckets: &[&str]) -> S3Server {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for bucket in buckets {
            std::fs::create_dir(dir.path().join(bucket)).expect("a bucket folder");
        }
        let port = free_port();
        let child = Self::spawn(port, dir.path());
        S3Server { child, port, dir }
    }

    fn spawn(port: u16, dir: &Path) -> Child {
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start s3s-fs ({e}); scripts/setup installs it"));
        wait_for_port(port, "s3s-fs", Duration::from_secs(20));
        child
    }

    /// Stops the server (its objects stay), as an outage would.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again after [`S3Server::stop`], on the same port and objects.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(self.port, self.dir.path());
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The folder holding `bucket`'s objects.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.dir.path().join(bucket)
    }

    /// The variables a process needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("TILEFARM_S3_ENDPOINT", self.endpoint()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every file below `root` (relative path -> bytes), hidden entries included.
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .expect("below root")
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).expect("readable file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}
