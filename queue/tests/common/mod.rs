//! Helpers shared by the queue's integration tests: a job store of each test's
//! own, on PostgreSQL (a fresh database, see tilefarm-testkit) or SQLite (a
//! fresh file), so that one contract suite runs against both; and a RabbitMQ
//! virtual host of its own.
#![allow(dead_code)]

use serde_json::Value;
use sqlx::types::Json;
use tilefarm_queue::{Db, JobStore, Query, Row};
#[allow(unused_imports)]
pub use tilefarm_testkit::TestVhost;

/// A fresh, migrated job store, dropped at the end of the test.
pub struct TestDb {
    pub store: JobStore,
    backing: Backing,
}

enum Backing {
    Postgres(tilefarm_testkit::TestDb),
    Sqlite(tempfile::TempDir),
}

impl TestDb {
    /// A store on a database of its own on the test PostgreSQL.
    pub async fn postgres() -> TestDb {
        let (db, store) = tilefarm_testkit::TestDb::migrated().await;
        TestDb {
            store,
            backing: Backing::Postgres(db),
        }
    }

    /// A store in a SQLite file of its own.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = JobStore::open_sqlite(&dir.path().join("jobs.sqlite"))
            .await
            .expect("open the SQLite store");
        TestDb {
            store,
            backing: Backing::Sqlite(dir),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.backing, Backing::Postgres(_))
    }

    pub fn db(&self) -> &Db {
        self.store.db()
    }

    /// A statement on the store's database (`$n` placeholders, for both).
    pub fn query(&self, sql: &'static str) -> Query {
        self.db().query(sql)
    }

    pub async fn rows(&self, q: Query) -> Vec<Row> {
        self.db().fetch_all(q).await.expect("the query")
    }

    /// The first column of the one row `q` gives.
    pub async fn scalar<T: tilefarm_queue::Column>(&self, q: Query) -> T {
        let row = self.db().fetch_one(q).await.expect("the query");
        row.get(0).expect("the column")
    }

    /// The outbox, oldest first: each message's queue and payload.
    pub async fn outbox(&self) -> Vec<(String, Value)> {
        self.rows(self.query("SELECT queue, payload FROM outbox ORDER BY id"))
            .await
            .iter()
            .map(|r| {
                let payload: Json<Value> = r.get("payload").unwrap();
                (r.get("queue").unwrap(), payload.0)
            })
            .collect()
    }

    pub async fn drop(self) {
        self.store.close().await;
        match self.backing {
            Backing::Postgres(db) => db.drop().await,
            Backing::Sqlite(dir) => drop(dir),
        }
    }
}

/// Runs each named test (an `async fn(TestDb)` of the file) twice: on
/// PostgreSQL and on SQLite, each on a store of its own.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::TestDb::postgres().await).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::TestDb::sqlite().await).await
                }
            )*
        }
    };
}
