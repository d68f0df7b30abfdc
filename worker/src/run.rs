//! The long-running loops of a farm process: the worker, which consumes tasks
//! and settles each by its outcome, and the outbox relay. Both reconnect after
//! the broker or the database goes away, and both stop when asked.

use std::sync::Arc;
use std::time::Duration;

use tilefarm_queue::{
    Broker, BrokerConfig, BrokerError, DEAD_JOBS_QUEUE, Delivery, INGEST_QUEUE, INTERACTIVE_QUEUE,
    Incoming, JobStore, LocalQueue, Outcome, RENDER_QUEUE, TaskConsumer, TaskMessage,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::farm::{Farm, TaskError, TaskRun};
use crate::metrics::WorkerMetrics;

const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// Connects to the broker, trying again with a growing pause until it answers
/// or `stop` is cancelled.
async fn connect(config: &BrokerConfig, stop: &CancellationToken, who: &str) -> Option<Broker> {
    let mut pause = Duration::from_millis(250);
    loop {
        match Broker::connect(&config.url, config.policy.clone()).await {
            Ok(broker) => return Some(broker),
            Err(e) => {
                tracing::warn!("{who}: RabbitMQ is not reachable ({e}); trying again in {pause:?}");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_BACKOFF);
    }
}

/// Runs tasks from RabbitMQ until `stop` is cancelled: at most `concurrency`
/// at a time, interactive work first. On stop it takes no new task, finishes
/// those in hand and returns. A lost broker connection is re-established.
pub async fn run_worker(
    farm: Arc<Farm>,
    broker: BrokerConfig,
    concurrency: usize,
    stop: CancellationToken,
) {
    let concurrency = concurrency.max(1);
    while let Some(connection) = connect(&broker, &stop, "worker").await {
        tracing::info!(concurrency, "worker connected to RabbitMQ");
        let prefetch = u16::try_from(concurrency).unwrap_or(u16::MAX);
        let taken = match Tasks::consume(&connection, prefetch).await {
            Ok(tasks) => take_tasks(&farm, tasks, concurrency, &stop).await,
            Err(e) => Err(e),
        };
        match taken {
            Ok(()) => {
                let _ = connection
                    .connection()
                    .close(200, "shutting down".into())
                    .await;
                return;
            }
            Err(e) => tracing::warn!("worker lost RabbitMQ ({e}); reconnecting"),
        }
    }
}

/// [`run_worker`] on the embedded, in-process queue.
pub async fn run_local_worker(
    farm: Arc<Farm>,
    queue: LocalQueue,
    concurrency: usize,
    stop: CancellationToken,
) {
    // The in-process queue is never lost: this returns only on a stop.
    let _ = take_tasks(&farm, Tasks::Local(queue), concurrency.max(1), &stop).await;
}

/// Where a worker takes its tasks from: RabbitMQ's work queues (and the
/// dead-letter queue of tasks past their delivery limit), or the in-process
/// queue.
enum Tasks {
    Broker(Box<BrokerTasks>),
    Local(LocalQueue),
}

/// A consumer on each of RabbitMQ's work queues, and on the dead letters.
struct BrokerTasks {
    interactive: TaskConsumer,
    ingest: TaskConsumer,
    render: TaskConsumer,
    dead: TaskConsumer,
}

/// What a worker took.
enum Taken {
    Task(Delivery),
    /// A task the broker gave up on: its job fails.
    DeadLetter(Box<Incoming>),
}

impl Tasks {
    async fn consume(broker: &Broker, prefetch: u16) -> Result<Tasks, BrokerError> {
        Ok(Tasks::Broker(Box::new(BrokerTasks {
            interactive: broker.consume(INTERACTIVE_QUEUE, prefetch).await?,
            ingest: broker.consume(INGEST_QUEUE, prefetch).await?,
            render: broker.consume(RENDER_QUEUE, prefetch).await?,
            dead: broker.consume(DEAD_JOBS_QUEUE, 1).await?,
        })))
    }

    /// The next thing to do, most urgent first: dead letters, then tasks in
    /// [`QUEUES_BY_PRIORITY`] order. An error means the broker is lost.
    async fn next(&mut self) -> Result<Taken, BrokerError> {
        let next = match self {
            Tasks::Local(queue) => {
                let task = queue.next(&QUEUES_BY_PRIORITY).await;
                return Ok(Taken::Task(Delivery::Local(task)));
            }
            Tasks::Broker(b) => tokio::select! {
                biased;
                letter = b.dead.next() => letter.map(|l| l.map(|l| Taken::DeadLetter(Box::new(l)))),
                m = b.interactive.next() => m.map(|m| m.map(|m| Taken::Task(Delivery::Amqp(Box::new(m))))),
                m = b.ingest.next() => m.map(|m| m.map(|m| Taken::Task(Delivery::Amqp(Box::new(m))))),
                m = b.render.next() => m.map(|m| m.map(|m| Taken::Task(Delivery::Amqp(Box::new(m))))),
            },
        };
        next.unwrap_or(Err(BrokerError::ConsumerClosed))
    }
}

/// The worker loop: takes tasks while a slot is free and settles each on a
/// task of its own; on a stop, finishes those in hand. Returns an error when
/// the transport is lost (the tasks in hand are finished first).
async fn take_tasks(
    farm: &Arc<Farm>,
    mut tasks: Tasks,
    concurrency: usize,
    stop: &CancellationToken,
) -> Result<(), BrokerError> {
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut running = JoinSet::new();
    let result = loop {
        let slot = tokio::select! {
            biased;
            _ = stop.cancelled() => break Ok(()),
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
        };
        let taken = tokio::select! {
            biased;
            _ = stop.cancelled() => break Ok(()),
            taken = tasks.next() => taken,
        };
        match taken {
            Ok(Taken::DeadLetter(letter)) => fail_dead_letter(farm, *letter).await,
            Ok(Taken::Task(delivery)) => {
                let (farm, stop) = (farm.clone(), stop.clone());
                running.spawn(async move {
                    settle(&farm, delivery, &stop).await;
                    drop(slot);
                });
            }
            Err(e) => break Err(e),
        }
        while running.try_join_next().is_some() {}
    };
    if result.is_ok() && !running.is_empty() {
        tracing::info!(
            in_hand = running.len(),
            "stopping: finishing the tasks in hand"
        );
    }
    while running.join_next().await.is_some() {}
    result
}

/// Fails the job of a dead-lettered task, if it has not ended already: a task
/// past the broker's delivery limit (it crashed or lost its worker every time)
/// reports nothing itself.
async fn fail_dead_letter(farm: &Farm, letter: Incoming) {
    let outcome = match &letter.message {
        Ok(msg) => {
            let reason = match letter.death_reason().as_deref() {
                Some("delivery_limit") => DELIVERY_LIMIT_REASON.to_string(),
                Some(other) => format!("a task was dead-lettered ({other})"),
                None => "a task was dead-lettered".to_string(),
            };
            fail_dead_task(farm, msg, &reason).await
        }
        // Not a task: nothing to fail; ops find it in the dead-letter queue.
        Err(_) => Outcome::Done,
    };
    if let Err(e) = letter.settle(&outcome).await {
        tracing::warn!("could not settle a dead letter ({e})");
    }
}

/// Why a task past the delivery limit failed its job.
const DELIVERY_LIMIT_REASON: &str = "a task was delivered to workers as often as the broker \
                                     allows without finishing (each one crashed or lost its \
                                     connection)";

/// Records a dead-lettered task and fails its job, unless the letter is stale
/// or the job has ended: no worker holds the task any more. Settles the
/// letter once that is recorded; retries it when the store cannot say.
async fn fail_dead_task(farm: &Farm, msg: &TaskMessage, reason: &str) -> Outcome {
    // A letter from before the task was replayed, or of an unknown task,
    // fails nothing.
    let failed = match farm
        .store
        .record_dead_letter(msg.task, msg.replay, reason)
        .await
    {
        Ok(false) => Ok(false),
        Ok(true) => match farm.store.fail_job(msg.job, "task_failed", reason).await {
            Ok(failed) => farm.store.release_task(msg.task).await.map(|()| failed),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match failed {
        Ok(true) => {
            tracing::error!(job_id = %msg.job, task_id = %msg.task, "job failed: {reason}");
            Outcome::Done
        }
        Ok(false) => Outcome::Done,
        Err(e) => {
            tracing::warn!(job_id = %msg.job, "could not fail the job of a dead letter: {e}");
            Outcome::Retry(e.to_string())
        }
    }
}

/// Whether the in-process queue's task is past the delivery limit. That queue
/// loses its messages with the process, so the job store counts each delivery
/// (RabbitMQ counts its own): a task delivered too often without settling
/// took the process down with it every time, and must not run again.
async fn past_delivery_limit(farm: &Farm, incoming: &Delivery, msg: &TaskMessage) -> bool {
    let Delivery::Local(local) = incoming else {
        return false;
    };
    match farm.store.count_delivery(msg.task).await {
        Ok(Some(deliveries)) => local.past_delivery_limit(deliveries),
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(job_id = %msg.job, task_id = %msg.task, "could not count the delivery: {e}");
            false
        }
    }
}

/// Runs a task; while the job store is unreachable, waits until it answers
/// again and runs the task anew, keeping its message in hand.
/// On a stop it gives the task back for a retry instead.
async fn run_holding_through_outages(
    farm: &Farm,
    msg: &TaskMessage,
    stop: &CancellationToken,
) -> TaskRun {
    let mut pause = Duration::from_millis(250);
    loop {
        let run = farm.run_task(msg).await;
        match &run.result {
            Err(TaskError::StoreDown(why)) => {
                tracing::warn!(
                    job_id = %msg.job,
                    task_id = %msg.task,
                    "the job store is unreachable ({why}); holding the task until it answers"
                );
                while farm.store.ping().await.is_err() {
                    if stop.is_cancelled() {
                        let why = format!("stopped while the job store was unreachable ({why})");
                        return TaskRun {
                            result: Err(TaskError::Transient(why.into())),
                            ..run
                        };
                    }
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(MAX_BACKOFF);
                }
            }
            _ => return run,
        }
    }
}

/// Runs one delivered task and settles its message by the outcome, in a span
/// with the task's job, id, kind and layer, ending with one line that says
/// the outcome and the seconds it took.
async fn settle(farm: &Farm, incoming: Delivery, stop: &CancellationToken) {
    let span = match incoming.message() {
        Ok(msg) => tracing::info_span!(
            "task",
            job_id = %msg.job,
            task_id = %msg.task,
            kind = tracing::field::Empty,
            layer_id = tracing::field::Empty,
        ),
        Err(_) => tracing::info_span!("task"),
    };
    settle_task(farm, incoming, stop).instrument(span).await
}

async fn settle_task(farm: &Farm, incoming: Delivery, stop: &CancellationToken) {
    let started = std::time::Instant::now();
    let metrics = &farm.metrics;
    metrics.in_flight.inc();
    let outcome = match incoming.message() {
        Err(why) => {
            tracing::error!("dead-lettered a message that is not a task: {why}");
            WorkerMetrics::count(&metrics.dead_lettered, "unknown");
            Outcome::Permanent(why.to_string())
        }
        Ok(msg) if past_delivery_limit(farm, &incoming, msg).await => {
            WorkerMetrics::count(&metrics.dead_lettered, "unknown");
            fail_dead_task(farm, msg, DELIVERY_LIMIT_REASON).await
        }
        Ok(msg) => {
            let (job_id, task_id, replay) = (msg.job, msg.task, msg.replay);
            let run = run_holding_through_outages(farm, msg, stop).await;
            let kind = run.kind_label();
            match run.result {
                Ok(()) => Outcome::Done,
                Err(TaskError::Transient(why)) if incoming.can_retry() => {
                    WorkerMetrics::count(&metrics.retried, kind);
                    let attempt = incoming.attempt() + 1;
                    tracing::warn!(%job_id, %task_id, attempt, "task failed, will retry: {why}");
                    let why = why.to_string();
                    if let Err(e) = farm.store.record_attempt(task_id, &why).await {
                        tracing::warn!(%job_id, %task_id, "could not record the attempt: {e}");
                    }
                    Outcome::Retry(why)
                }
                Err(e) => {
                    let attempts = incoming.attempt() + 1;
                    let message = match &e {
                        TaskError::Permanent(why) => format!("a task failed: {why}"),
                        TaskError::Transient(_) | TaskError::StoreDown(_) => {
                            format!("a task failed {attempts} times; the last error: {e}")
                        }
                    };
                    tracing::error!(%job_id, %task_id, "task dead-lettered: {e}");
                    WorkerMetrics::count(&metrics.dead_lettered, kind);
                    if let Err(e) = record_dead_letter(farm, task_id, replay, &e, &message).await {
                        tracing::warn!(%job_id, %task_id, "could not record the dead letter: {e}");
                    }
                    if let Err(e) = farm.fail_job(job_id, "task_failed", &message).await {
                        tracing::error!(%job_id, "could not record the failure: {e}");
                    } else if let Err(e) = farm.store.release_task(task_id).await {
                        tracing::warn!(%job_id, %task_id, "could not release the task: {e}");
                    }
                    Outcome::Permanent(e.to_string())
                }
            }
        }
    };
    if let Err(e) = incoming.settle(&outcome).await {
        tracing::warn!("could not settle a task ({e}); the broker will deliver it again");
    }
    metrics.in_flight.dec();
    let ended = match outcome {
        Outcome::Done => "done",
        Outcome::Retry(_) => "retried",
        Outcome::Permanent(_) => "dead_lettered",
    };
    tracing::info!(
        outcome = ended,
        seconds = started.elapsed().as_secs_f64(),
        "task finished"
    );
}

/// Records a task's last failed attempt and its dead letter, for `tilefarm dlq`.
async fn record_dead_letter(
    farm: &Farm,
    task_id: uuid::Uuid,
    replay: i32,
    error: &TaskError,
    reason: &str,
) -> Result<(), tilefarm_queue::StoreError> {
    farm.store
        .record_attempt(task_id, &error.to_string())
        .await?;
    farm.store
        .record_dead_letter(task_id, replay, reason)
        .await?;
    Ok(())
}

/// Publishes outbox rows to RabbitMQ until `stop` is cancelled, each as soon
/// as it is committed (within a poll interval). Reconnects to the broker when
/// it goes away and waits out database outages.
pub async fn run_relay(store: JobStore, broker: BrokerConfig, stop: CancellationToken) {
    let mut sweep = Sweep::default();
    while let Some(connection) = connect(&broker, &stop, "outbox relay").await {
        match relay(&store, Outlet::Broker(&connection), &mut sweep, &stop).await {
            Ok(()) => return,
            Err(e) => tracing::warn!("outbox relay lost RabbitMQ ({e}); reconnecting"),
        }
    }
}

/// [`run_relay`] into the embedded, in-process queue.
pub async fn run_local_relay(store: JobStore, queue: LocalQueue, stop: CancellationToken) {
    // The in-process queue is never lost: this returns only on a stop.
    let _ = relay(&store, Outlet::Local(&queue), &mut Sweep::default(), &stop).await;
}

/// Work taken first: interactive edits, then ingests, then bulk renders.
const QUEUES_BY_PRIORITY: [&str; 3] = [INTERACTIVE_QUEUE, INGEST_QUEUE, RENDER_QUEUE];

/// Where the relay publishes.
#[derive(Clone, Copy)]
enum Outlet<'a> {
    Broker(&'a Broker),
    Local(&'a LocalQueue),
}

/// The relay loop: publishes the outbox, a batch at a time, until `stop`;
/// waits out database outages; returns an error when the broker is lost.
async fn relay(
    store: &JobStore,
    outlet: Outlet<'_>,
    sweep: &mut Sweep,
    stop: &CancellationToken,
) -> Result<(), BrokerError> {
    const BATCH: i64 = 500;
    const POLL: Duration = Duration::from_millis(50);
    loop {
        sweep.run(store).await;
        let sent = match outlet {
            Outlet::Broker(broker) => broker.relay_outbox(store, BATCH).await,
            Outlet::Local(queue) => store
                .relay_outbox(BATCH, |messages| async {
                    messages
                        .into_iter()
                        .map(|m| {
                            queue.publish(&m.queue, m.payload.to_string().as_bytes());
                            m.id
                        })
                        .collect()
                })
                .await
                .map_err(BrokerError::Store),
        };
        let pause = match sent {
            Ok(n) if n as i64 == BATCH => Duration::ZERO,
            Ok(_) => POLL,
            Err(BrokerError::Store(e)) => {
                tracing::warn!("outbox relay: the job store is not answering ({e})");
                Duration::from_secs(1)
            }
            Err(e) => return Err(e),
        };
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// Every few seconds, starts waiting jobs whose layer has nothing under way any
/// more: a job held up by a task whose worker vanished starts once the task's
/// lease runs out.
#[derive(Debug, Default)]
struct Sweep {
    last: Option<std::time::Instant>,
}

impl Sweep {
    const EVERY: Duration = Duration::from_secs(5);

    async fn run(&mut self, store: &JobStore) {
        if self.last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return;
        }
        self.last = Some(std::time::Instant::now());
        match store.start_waiting().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                jobs = n,
                "started jobs that waited for an ended job's tasks"
            ),
            Err(e) => tracing::debug!("could not look for waiting jobs: {e}"),
        }
    }
}
