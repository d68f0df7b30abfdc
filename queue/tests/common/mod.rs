//! Helpers shared by the queue's integration tests: a database and a RabbitMQ
//! virtual host of each test's own (see tilefarm-testkit).
#![allow(dead_code)]

use tilefarm_queue::PgStore;
#[allow(unused_imports)]
pub use tilefarm_testkit::TestVhost;

/// A fresh, migrated database with a store on it, dropped at the end of the test.
pub struct TestDb {
    db: tilefarm_testkit::TestDb,
    pub store: PgStore,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let (db, store) = tilefarm_testkit::TestDb::migrated().await;
        TestDb { db, store }
    }

    pub async fn drop(self) {
        self.store.pool().close().await;
        self.db.drop().await;
    }
}
