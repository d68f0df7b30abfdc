//! The RabbitMQ transport: topology, publishing with confirms, and the outbox relay.
//!
//! Work queues are durable quorum queues with an explicit delivery limit (RabbitMQ
//! 3.x sets none by default); a message delivered more often than that is
//! dead-lettered, without loss, to [`DEAD_QUEUE`] for ops to inspect. Interactive
//! work (edits) has a queue of its own so it never waits behind bulk seeding.

use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::job_store::JobStore;
use crate::model::{INGEST_QUEUE, INTERACTIVE_QUEUE, RENDER_QUEUE};

/// Where messages past their delivery limit (or rejected) end up.
pub const DEAD_QUEUE: &str = "tilefarm.dead";
/// A copy of every dead letter, for workers to fail the task's job (a task that
/// crashes its worker every time never reports a failure itself).
pub const DEAD_JOBS_QUEUE: &str = "tilefarm.dead.jobs";
/// The exchange that routes dead letters to [`DEAD_QUEUE`].
pub const DEAD_LETTER_EXCHANGE: &str = "tilefarm.dlx";
/// The work queues, each a quorum queue with the same dead-letter policy.
pub const WORK_QUEUES: [&str; 3] = [INGEST_QUEUE, RENDER_QUEUE, INTERACTIVE_QUEUE];

/// A broker failure.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("RabbitMQ did not take the message for {queue}: {reason}")]
    NotConfirmed { queue: String, reason: String },
    #[error("the broker closed the consumer")]
    ConsumerClosed,
    #[error("the job store: {0}")]
    Store(#[from] crate::error::StoreError),
}

pub type BrokerResult<T> = Result<T, BrokerError>;

/// Settings of the work queues.
#[derive(Clone, Debug)]
pub struct QueuePolicy {
    /// Deliveries of one message before it is dead-lettered: the backstop for a
    /// task that kills its worker each time it runs.
    pub delivery_limit: i64,
    /// The wait before each retry of a failed task; a task that fails once more
    /// than there are delays goes to the dead-letter queue.
    pub retry_delays: Vec<Duration>,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        QueuePolicy {
            delivery_limit: 5,
            retry_delays: [1, 5, 30].map(Duration::from_secs).to_vec(),
        }
    }
}

/// The delay queue holding messages of `queue` that wait `delay` for a retry;
/// when their time is up they are dead-lettered back to `queue`.
pub fn retry_queue(queue: &str, delay: Duration) -> String {
    format!("{queue}.retry.{}ms", delay.as_millis())
}

/// The message header counting a task's failed attempts.
pub const ATTEMPT_HEADER: &str = "x-tilefarm-attempt";

/// A connection to RabbitMQ with a publishing channel in confirm mode.
#[derive(Debug)]
pub struct Broker {
    connection: Connection,
    publisher: Channel,
    policy: QueuePolicy,
}

fn short(s: &str) -> ShortString {
    s.into()
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

impl Broker {
    /// Connects to `url` (`amqp://user:pass@host:5672/vhost`) and declares the
    /// topology (idempotently).
    pub async fn connect(url: &str, policy: QueuePolicy) -> BrokerResult<Broker> {
        let mut broker = Broker::connect_existing(url).await?;
        broker.policy = policy;
        broker.declare_topology().await?;
        Ok(broker)
    }

    /// Connects to `url` without declaring the topology, for tools that work
    /// on a running farm's queues whatever their policy (which only the farm's
    /// own processes declare).
    pub async fn connect_existing(url: &str) -> BrokerResult<Broker> {
        let connection = Connection::connect(url, ConnectionProperties::default()).await?;
        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Broker {
            connection,
            publisher,
            policy: QueuePolicy::default(),
        })
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Declares the dead-letter exchange and queue and the work queues. Safe to
    /// run from every process at start-up.
    pub async fn declare_topology(&self) -> BrokerResult<()> {
        let ch = &self.publisher;
        let policy = &self.policy;
        ch.exchange_declare(
            short(DEAD_LETTER_EXCHANGE),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
        for dead in [DEAD_QUEUE, DEAD_JOBS_QUEUE] {
            let mut dead_args = FieldTable::default();
            dead_args.insert(short("x-queue-type"), long("quorum"));
            ch.queue_declare(short(dead), QueueDeclareOptions::durable(), dead_args)
                .await?;
        }
        for queue in WORK_QUEUES {
            for dead in [DEAD_QUEUE, DEAD_JOBS_QUEUE] {
                ch.queue_bind(
                    short(dead),
                    short(DEAD_LETTER_EXCHANGE),
                    short(queue),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            }
            let mut args = FieldTable::default();
            args.insert(short("x-queue-type"), long("quorum"));
            args.insert(
                short("x-delivery-limit"),
                AMQPValue::LongLongInt(policy.delivery_limit),
            );
            args.insert(short("x-dead-letter-exchange"), long(DEAD_LETTER_EXCHANGE));
            // Loss-free dead-lettering, which needs overflow by rejecting publishes.
            args.insert(short("x-dead-letter-strategy"), long("at-least-once"));
            args.insert(short("x-overflow"), long("reject-publish"));
            ch.queue_declare(short(queue), QueueDeclareOptions::durable(), args)
                .await?;
            for delay in &policy.retry_delays {
                let mut args = FieldTable::default();
                args.insert(
                    short("x-message-ttl"),
                    AMQPValue::LongLongInt(delay.as_millis() as i64),
                );
                args.insert(short("x-dead-letter-exchange"), long(""));
                args.insert(short("x-dead-letter-routing-key"), long(queue));
                ch.queue_declare(
                    short(&retry_queue(queue, *delay)),
                    QueueDeclareOptions::durable(),
                    args,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Messages ready in `queue` (not counting those delivered and unacknowledged).
    pub async fn depth(&self, queue: &str) -> BrokerResult<u32> {
        let q = self
            .publisher
            .queue_declare(
                short(queue),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(q.message_count())
    }

    /// Publishes a persistent message to `queue` and waits until the broker has
    /// taken responsibility for it (publisher confirm). A message the broker
    /// cannot route or refuses is an error.
    pub async fn publish(&self, queue: &str, payload: &[u8]) -> BrokerResult<()> {
        publish_confirmed(&self.publisher, queue, payload, FieldTable::default()).await
    }
}

/// Publishes a persistent message to `queue` on a channel in confirm mode and
/// waits for the broker's confirm.
async fn publish_confirmed(
    channel: &Channel,
    queue: &str,
    payload: &[u8],
    headers: FieldTable,
) -> BrokerResult<()> {
    let confirm = channel
        .basic_publish(
            short(""),
            short(queue),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            payload,
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(short("application/json"))
                .with_headers(headers),
        )
        .await?
        .await?;
    if confirm.is_nack() {
        return Err(BrokerError::NotConfirmed {
            queue: queue.into(),
            reason: "nacked".into(),
        });
    }
    if let Some(returned) = confirm.take_message() {
        return Err(BrokerError::NotConfirmed {
            queue: queue.into(),
            reason: format!("returned: {}", returned.reply_text),
        });
    }
    Ok(())
}

impl Broker {
    /// Starts consuming `queue` on a channel of its own, with at most `prefetch`
    /// unacknowledged messages in hand (match it to the render concurrency).
    pub async fn consume(&self, queue: &str, prefetch: u16) -> BrokerResult<TaskConsumer> {
        let channel = self.connection.create_channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        // Retries are republished on this channel, confirmed before the ack.
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                short(queue),
                short(&format!("tilefarm-{}", Uuid::new_v4().simple())),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(TaskConsumer {
            channel,
            consumer,
            queue: queue.to_string(),
            retry_delays: self.policy.retry_delays.clone(),
        })
    }

    /// Publishes up to `limit` outbox messages and marks those the broker
    /// confirmed; the rest stay for the next pass. Returns how many were sent.
    pub async fn relay_outbox(&self, store: &JobStore, limit: i64) -> BrokerResult<usize> {
        let mut failure = None;
        let sent = store
            .relay_outbox(limit, |messages| async {
                let mut sent = Vec::with_capacity(messages.len());
                for m in messages {
                    let body = m.payload.to_string();
                    match self.publish(&m.queue, body.as_bytes()).await {
                        Ok(()) => sent.push(m.id),
                        Err(e) => {
                            tracing::warn!(outbox_id = m.id, queue = %m.queue, "not relayed: {e}");
                            failure = Some(e);
                            break;
                        }
                    }
                }
                sent
            })
            .await?;
        match failure {
            Some(e) if sent == 0 => Err(e),
            _ => Ok(sent),
        }
    }
}

impl Broker {
    /// Takes every message of [`DEAD_QUEUE`] in hand, removes those of them
    /// that `remove` picks (it sees the ones that are tasks, in order, and
    /// answers one `bool` each) and gives the others back. Returns how many
    /// were removed and how many are left.
    pub async fn sweep_dead_letters<F, Fut>(&self, remove: F) -> BrokerResult<(usize, usize)>
    where
        F: FnOnce(Vec<TaskMessage>) -> Fut,
        Fut: std::future::Future<Output = BrokerResult<Vec<bool>>>,
    {
        let channel = self.connection.create_channel().await?;
        let mut held = Vec::new();
        while let Some(m) = channel
            .basic_get(short(DEAD_QUEUE), BasicGetOptions::default())
            .await?
        {
            held.push(m.delivery);
        }
        let tasks: Vec<(usize, TaskMessage)> = held
            .iter()
            .enumerate()
            .filter_map(|(i, d)| Some((i, serde_json::from_slice(&d.data).ok()?)))
            .collect();
        let verdicts = match remove(tasks.iter().map(|(_, t)| *t).collect()).await {
            Ok(v) => v,
            Err(e) => {
                // Closing the channel gives the messages back.
                let _ = channel.close(200, "dead letters kept".into()).await;
                return Err(e);
            }
        };
        let mut removed = 0;
        for ((i, _), remove) in tasks.iter().zip(verdicts) {
            if remove {
                held[*i].ack(BasicAckOptions::default()).await?;
                removed += 1;
            }
        }
        channel.close(200, "dead letters swept".into()).await?;
        Ok((removed, held.len() - removed))
    }
}

/// The body of a task message, as the outbox writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub task: Uuid,
    pub job: Uuid,
    /// How often the task had been replayed from the dead letters when this
    /// message was sent (left out when never).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replay: i32,
}

/// Where the broker is and how its queues behave.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub url: String,
    pub policy: QueuePolicy,
}

impl TaskMessage {
    /// A task's first message: it has never been replayed.
    pub fn new(task: Uuid, job: Uuid) -> TaskMessage {
        TaskMessage {
            task,
            job,
            replay: 0,
        }
    }

    /// Reads a message's body, as either transport delivers it.
    pub fn from_body(body: &[u8]) -> Result<TaskMessage, NotATask> {
        serde_json::from_slice(body).map_err(|source| NotATask {
            body: String::from_utf8_lossy(body).into_owned(),
            source,
        })
    }
}

/// A delivered message whose body is not a [`TaskMessage`].
#[derive(Debug, thiserror::Error)]
#[error("the message is not a task ({source}): {body}")]
pub struct NotATask {
    /// The body, as text.
    pub body: String,
    #[source]
    pub source: serde_json::Error,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// How handling a task ended, which decides what happens to its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The side effects are durable: the message is acknowledged.
    Done,
    /// A passing failure (a store or broker hiccup): the message goes back for
    /// another delivery, up to the queue's delivery limit.
    Retry(String),
    /// A failure no retry can mend (bad data, a bug): the message is
    /// dead-lettered at once.
    Permanent(String),
}

/// Messages delivered from one queue.
#[derive(Debug)]
pub struct TaskConsumer {
    channel: Channel,
    consumer: lapin::Consumer,
    queue: String,
    retry_delays: Vec<Duration>,
}

impl TaskConsumer {
    /// The next delivery; `None` when the consumer was cancelled.
    pub async fn next(&mut self) -> Option<BrokerResult<Incoming>> {
        let delivery = self.consumer.next().await?;
        Some(delivery.map_err(BrokerError::from).map(|delivery| {
            let message = TaskMessage::from_body(&delivery.data);
            let attempt = delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(ATTEMPT_HEADER).cloned())
                .and_then(|v| match v {
                    AMQPValue::LongLongInt(n) => Some(n as u32),
                    AMQPValue::LongInt(n) => Some(n as u32),
                    _ => None,
                })
                .unwrap_or(0);
            Incoming {
                message,
                delivery,
                attempt,
                channel: self.channel.clone(),
                queue: self.queue.clone(),
                retry_delays: self.retry_delays.clone(),
            }
        }))
    }
}

/// One delivered message, to be settled with its [`Outcome`].
#[derive(Debug)]
pub struct Incoming {
    /// The task, or why the body is not one (settle that as permanent).
    pub message: Result<TaskMessage, NotATask>,
    delivery: Delivery,
    attempt: u32,
    channel: Channel,
    queue: String,
    retry_delays: Vec<Duration>,
}

impl Incoming {
    /// Whether the broker delivered this message before (to this or another worker).
    pub fn redelivered(&self) -> bool {
        self.delivery.redelivered
    }

    /// Why a dead letter died last (`rejected`, `delivery_limit`, ...), for
    /// messages from the dead-letter queues. `x-death` lists the deaths, the
    /// latest first: a task that waited out a retry died first as `expired`
    /// from the delay queue.
    pub fn death_reason(&self) -> Option<String> {
        let headers = self.delivery.properties.headers().as_ref()?.inner();
        let latest = match headers.get("x-death") {
            Some(AMQPValue::FieldArray(deaths)) => match deaths.as_slice().first() {
                Some(AMQPValue::FieldTable(death)) => death.inner().get("reason"),
                _ => None,
            },
            _ => None,
        };
        match latest.or_else(|| headers.get("x-first-death-reason"))? {
            AMQPValue::LongString(s) => Some(s.to_string()),
            AMQPValue::ShortString(s) => Some(s.to_string()),
            _ => None,
        }
    }

    /// Failed attempts at this task before this delivery.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether a [`Outcome::Retry`] would run the task again; when not, it
    /// would go to the dead-letter queue.
    pub fn can_retry(&self) -> bool {
        (self.attempt as usize) < self.retry_delays.len()
    }

    /// Acknowledges, retries (after the next backoff delay) or dead-letters the
    /// message. A retry past the last delay is dead-lettered.
    pub async fn settle(self, outcome: &Outcome) -> BrokerResult<()> {
        match outcome {
            Outcome::Done => self.delivery.ack(BasicAckOptions::default()).await?,
            Outcome::Retry(reason) => {
                let Some(delay) = self.retry_delays.get(self.attempt as usize) else {
                    tracing::warn!(queue = %self.queue, "no retries left: {reason}");
                    self.delivery
                        .reject(BasicRejectOptions { requeue: false })
                        .await?;
                    return Ok(());
                };
                let mut headers = FieldTable::default();
                headers.insert(
                    short(ATTEMPT_HEADER),
                    AMQPValue::LongLongInt(i64::from(self.attempt) + 1),
                );
                let target = retry_queue(&self.queue, *delay);
                // The copy is confirmed before the original is acknowledged: a
                // crash in between delivers the task twice, never zero times.
                match publish_confirmed(&self.channel, &target, &self.delivery.data, headers).await
                {
                    Ok(()) => self.delivery.ack(BasicAckOptions::default()).await?,
                    Err(e) => {
                        tracing::warn!(queue = %self.queue, "could not delay the retry ({e}); requeued");
                        self.delivery
                            .nack(BasicNackOptions {
                                multiple: false,
                                requeue: true,
                            })
                            .await?
                    }
                }
            }
            Outcome::Permanent(_) => {
                self.delivery
                    .reject(BasicRejectOptions { requeue: false })
                    .await?
            }
        };
        Ok(())
    }
}
