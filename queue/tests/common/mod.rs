//! Helpers shared by the queue's integration tests: a database and a RabbitMQ
//! virtual host of each test's own.
#![allow(dead_code)]

use tilefarm_queue::PgStore;
use uuid::Uuid;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh, migrated database, dropped at the end of the test.
pub struct TestDb {
    admin: sqlx::PgPool,
    name: String,
    pub store: PgStore,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let url =
            std::env::var("TILEFARM_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.into());
        let admin = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable at {url} ({e}); scripts/test starts it")
        });
        let name = format!("tilefarm_test_{}", Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        let (base, _) = url
            .rsplit_once('/')
            .expect("a database URL ends in /DBNAME");
        let store = PgStore::connect(&format!("{base}/{name}")).await.unwrap();
        store.migrate().await.unwrap();
        TestDb { admin, name, store }
    }

    pub async fn drop(self) {
        self.store.pool().close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.name
        )))
        .execute(&self.admin)
        .await
        .unwrap();
    }
}

/// A RabbitMQ virtual host of the test's own on the local broker (managed with
/// `rabbitmqctl`), deleted at the end of the test.
pub struct TestVhost {
    pub name: String,
    pub url: String,
}

fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl")
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

impl TestVhost {
    pub fn new() -> TestVhost {
        let name = format!("tilefarm_test_{}", Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        let url = format!("amqp://guest:guest@127.0.0.1:5672/{name}");
        TestVhost { name, url }
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}
