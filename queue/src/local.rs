//! The embedded queue: the broker's semantics in one process, for `tilefarm
//! serve` with no broker configured. Retries wait out the same backoff delays;
//! a task past its last retry lands in the dead-letter list. What the queue
//! holds is lost with the process, so at start-up the embedded store sends every
//! pending task again (see `JobStore::requeue_pending`); the store also keeps
//! how often each task was delivered without settling
//! (`JobStore::count_delivery`), so a task that takes the process down with it
//! is dead-lettered past the delivery limit, as RabbitMQ does, instead of
//! crashing every restart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::amqp::{NotATask, Outcome, QueuePolicy, TaskMessage};

#[derive(Debug)]
struct Inner {
    queues: Mutex<HashMap<String, VecDeque<Item>>>,
    dead: Mutex<Vec<Vec<u8>>>,
    ready: Notify,
    retry_delays: Vec<Duration>,
    delivery_limit: i64,
}

#[derive(Debug)]
struct Item {
    body: Vec<u8>,
    attempt: u32,
}

/// An in-process queue of task messages.
#[derive(Clone, Debug)]
pub struct LocalQueue {
    inner: Arc<Inner>,
}

impl LocalQueue {
    /// A queue that retries after `policy.retry_delays` and dead-letters a
    /// message delivered more than `policy.delivery_limit` times over.
    pub fn new(policy: QueuePolicy) -> LocalQueue {
        LocalQueue {
            inner: Arc::new(Inner {
                queues: Mutex::default(),
                dead: Mutex::default(),
                ready: Notify::new(),
                retry_delays: policy.retry_delays,
                delivery_limit: policy.delivery_limit,
            }),
        }
    }

    fn push(&self, queue: &str, item: Item) {
        self.inner
            .queues
            .lock()
            .expect("lock")
            .entry(queue.to_string())
            .or_default()
            .push_back(item);
        self.inner.ready.notify_waiters();
    }

    /// Adds a message to `queue`.
    pub fn publish(&self, queue: &str, body: &[u8]) {
        self.push(
            queue,
            Item {
                body: body.to_vec(),
                attempt: 0,
            },
        );
    }

    fn pop(&self, queues: &[&str]) -> Option<(String, Item)> {
        let mut all = self.inner.queues.lock().expect("lock");
        queues.iter().find_map(|q| {
            all.get_mut(*q)
                .and_then(VecDeque::pop_front)
                .map(|item| (q.to_string(), item))
        })
    }

    /// The next message from the first of `queues` that has one.
    pub async fn next(&self, queues: &[&str]) -> LocalIncoming {
        loop {
            let ready = self.inner.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            if let Some((queue, item)) = self.pop(queues) {
                let message = TaskMessage::from_body(&item.body);
                return LocalIncoming {
                    message,
                    queue,
                    item,
                    owner: self.clone(),
                };
            }
            ready.await;
        }
    }

    /// Messages waiting in `queue`.
    pub fn depth(&self, queue: &str) -> usize {
        self.inner
            .queues
            .lock()
            .expect("lock")
            .get(queue)
            .map_or(0, VecDeque::len)
    }

    /// Messages dead-lettered so far.
    pub fn dead(&self) -> Vec<Vec<u8>> {
        self.inner.dead.lock().expect("lock").clone()
    }
}

/// One message taken from a [`LocalQueue`], to be settled by its outcome.
#[derive(Debug)]
pub struct LocalIncoming {
    pub message: Result<TaskMessage, NotATask>,
    queue: String,
    item: Item,
    owner: LocalQueue,
}

impl LocalIncoming {
    pub fn attempt(&self) -> u32 {
        self.item.attempt
    }

    pub fn can_retry(&self) -> bool {
        (self.item.attempt as usize) < self.owner.inner.retry_delays.len()
    }

    /// Whether a task delivered `deliveries` times without settling (this
    /// delivery included, as [`JobStore::count_delivery`] counts them) is past
    /// the delivery limit: redelivered more often than it allows, as a quorum
    /// queue counts.
    ///
    /// [`JobStore::count_delivery`]: crate::JobStore::count_delivery
    pub fn past_delivery_limit(&self, deliveries: i32) -> bool {
        i64::from(deliveries) - 1 > self.owner.inner.delivery_limit
    }

    /// Drops the message (done), queues it again after its backoff delay
    /// (retry), or dead-letters it (permanent, or no retries left).
    pub fn settle(self, outcome: &Outcome) {
        let LocalIncoming {
            queue, item, owner, ..
        } = self;
        match outcome {
            Outcome::Done => {}
            Outcome::Retry(_) => match owner.inner.retry_delays.get(item.attempt as usize) {
                Some(delay) => {
                    let delay = *delay;
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        owner.push(
                            &queue,
                            Item {
                                body: item.body,
                                attempt: item.attempt + 1,
                            },
                        );
                    });
                }
                None => owner.inner.dead.lock().expect("lock").push(item.body),
            },
            Outcome::Permanent(_) => owner.inner.dead.lock().expect("lock").push(item.body),
        }
    }
}
