//! The outbox: each task's message, written in the transaction that makes the
//! task live, and relayed to the transport from there.

use crate::db::placeholders;
use crate::error::StoreResult;
use crate::job_store::JobStore;
use crate::model::OutboxMessage;

impl JobStore {
    /// Hands up to `limit` unpublished outbox messages, oldest first, to
    /// `publish`, and marks those it returns as sent.
    ///
    /// On PostgreSQL the messages stay locked (`FOR UPDATE SKIP LOCKED`) while
    /// they are sent, so that relays in other processes take others. SQLite's
    /// one relay reads them, sends them, then marks them, so that the writer is
    /// not held while the transport works.
    pub async fn relay_outbox<F, Fut>(&self, limit: i64, publish: F) -> StoreResult<usize>
    where
        F: FnOnce(Vec<OutboxMessage>) -> Fut,
        Fut: std::future::Future<Output = Vec<i64>>,
    {
        const UNPUBLISHED: &str =
            "SELECT id, queue, payload FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1";
        let mut tx = None;
        let rows = if self.db.is_postgres() {
            let mut locked = self.db.begin().await?;
            let q = locked
                .query_made(format!("{UNPUBLISHED} FOR UPDATE SKIP LOCKED"))
                .bind(limit);
            let rows = locked.fetch_all(q).await?;
            tx = Some(locked);
            rows
        } else {
            self.db
                .fetch_all(self.db.query(UNPUBLISHED).bind(limit))
                .await?
        };
        let messages = rows
            .iter()
            .map(|r| {
                Ok(OutboxMessage {
                    id: r.get("id")?,
                    queue: r.get("queue")?,
                    payload: r.get::<sqlx::types::Json<_>>("payload")?.0,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        if messages.is_empty() {
            if let Some(tx) = tx {
                tx.commit().await?;
            }
            return Ok(0);
        }
        let sent = publish(messages).await;
        let mut tx = match tx {
            Some(tx) => tx,
            None => self.db.begin().await?,
        };
        for ids in sent.chunks(500) {
            let sql = format!(
                "UPDATE outbox SET published_at = $1 WHERE id IN ({})",
                placeholders(2, ids.len())
            );
            let mut q = tx.query_made(sql).bind(tx.now());
            for id in ids {
                q = q.bind(*id);
            }
            tx.execute(q).await?;
        }
        tx.commit().await?;
        Ok(sent.len())
    }
}
