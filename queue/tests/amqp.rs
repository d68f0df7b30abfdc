//! The RabbitMQ transport against the real broker, each test on a virtual host
//! of its own (and, where the job store is involved, a database of its own).

mod common;

use common::{TestDb, TestVhost};
use lapin::options::{BasicGetOptions, BasicNackOptions};
use lapin::types::AMQPValue;
use std::time::{Duration, Instant};

use serde_json::json;
use tilefarm_queue::{
    Broker, BrokerError, DEAD_QUEUE, INGEST_QUEUE, NewLayer, QueuePolicy, RENDER_QUEUE, WORK_QUEUES,
};

/// Takes one message off `queue` for good (acknowledged on delivery).
async fn get(broker: &Broker, queue: &str) -> Option<lapin::message::BasicGetMessage> {
    let ch = broker.connection().create_channel().await.unwrap();
    ch.basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
}

#[tokio::test]
async fn topology_is_declared_idempotently_and_messages_are_persistent() {
    let vhost = TestVhost::new();
    let broker = Broker::connect(&vhost.url, QueuePolicy::default())
        .await
        .unwrap();
    // A second process declaring the same topology changes nothing.
    let again = Broker::connect(&vhost.url, QueuePolicy::default())
        .await
        .unwrap();
    again
        .publish(RENDER_QUEUE, br#"{"task":"t1"}"#)
        .await
        .unwrap();
    let msg = get(&broker, RENDER_QUEUE)
        .await
        .expect("the message is queued");
    assert_eq!(msg.delivery.data, br#"{"task":"t1"}"#);
    assert_eq!(
        msg.delivery.properties.delivery_mode(),
        &Some(2),
        "persistent"
    );
    for q in WORK_QUEUES.iter().chain([&DEAD_QUEUE]) {
        assert!(get(&broker, q).await.is_none(), "{q} holds nothing else");
    }
}

#[tokio::test]
async fn an_unroutable_message_is_an_error_not_a_silent_loss() {
    let vhost = TestVhost::new();
    let broker = Broker::connect(&vhost.url, QueuePolicy::default())
        .await
        .unwrap();
    let err = broker.publish("tilefarm.nowhere", b"{}").await.unwrap_err();
    assert!(matches!(err, BrokerError::NotConfirmed { .. }), "{err:?}");
    assert!(err.to_string().contains("tilefarm.nowhere"), "{err}");
}

#[tokio::test]
async fn a_message_past_its_delivery_limit_is_dead_lettered_with_the_reason() {
    let vhost = TestVhost::new();
    let broker = Broker::connect(
        &vhost.url,
        QueuePolicy {
            delivery_limit: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    broker.publish(RENDER_QUEUE, b"poison").await.unwrap();
    let ch = broker.connection().create_channel().await.unwrap();
    let mut deliveries = 0;
    // A worker that fails the task every time, asking for a redelivery.
    for _ in 0..20 {
        match ch
            .basic_get(RENDER_QUEUE.into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            Some(m) => {
                deliveries += 1;
                m.delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
            None => {
                if deliveries > 0 {
                    break;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        deliveries >= 2,
        "delivered {deliveries} times before giving up"
    );
    assert!(
        deliveries <= 3,
        "delivered {deliveries} times: the limit did not hold"
    );
    // Dead-lettering is asynchronous on quorum queues: wait for it.
    let mut dead = None;
    for _ in 0..50 {
        dead = get(&broker, DEAD_QUEUE).await;
        if dead.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let dead = dead.expect("the message reached the dead-letter queue");
    assert_eq!(dead.delivery.data, b"poison");
    let headers = dead
        .delivery
        .properties
        .headers()
        .clone()
        .expect("dead-letter headers");
    let reason = headers.inner().get("x-first-death-reason").cloned();
    assert_eq!(
        reason,
        Some(AMQPValue::LongString("delivery_limit".into())),
        "{headers:?}"
    );
}

#[tokio::test]
async fn the_outbox_relay_publishes_each_message_once() {
    let vhost = TestVhost::new();
    let db = TestDb::postgres().await;
    let broker = Broker::connect(&vhost.url, QueuePolicy::default())
        .await
        .unwrap();
    let layer = NewLayer {
        name: "world".into(),
        min_zoom: 0,
        max_zoom: 3,
        style: json!({}),
    };
    let up = db
        .store
        .create_upload(&layer, "uploads/world")
        .await
        .unwrap();
    assert_eq!(broker.relay_outbox(&db.store, 100).await.unwrap(), 1);
    assert_eq!(
        broker.relay_outbox(&db.store, 100).await.unwrap(),
        0,
        "nothing is sent twice"
    );
    let msg = get(&broker, INGEST_QUEUE)
        .await
        .expect("the ingest task is queued");
    let payload: serde_json::Value = serde_json::from_slice(&msg.delivery.data).unwrap();
    assert_eq!(payload, json!({"task": up.ingest_task, "job": up.job_id}));
    assert!(get(&broker, INGEST_QUEUE).await.is_none());
    db.drop().await;
}

/// The consumer's next delivery, failing the test after 10 s without one.
async fn next(c: &mut tilefarm_queue::TaskConsumer) -> tilefarm_queue::Incoming {
    tokio::time::timeout(std::time::Duration::from_secs(10), c.next())
        .await
        .expect("a delivery within 10 s")
        .expect("the consumer is open")
        .unwrap()
}

#[tokio::test]
async fn consumed_messages_are_settled_by_their_outcome_with_retries_after_a_delay() {
    use tilefarm_queue::{Outcome, TaskMessage};
    let vhost = TestVhost::new();
    let policy = QueuePolicy {
        retry_delays: vec![Duration::from_millis(300)],
        ..Default::default()
    };
    let broker = Broker::connect(&vhost.url, policy).await.unwrap();
    let tasks: Vec<TaskMessage> = (0..3)
        .map(|_| TaskMessage {
            task: uuid::Uuid::new_v4(),
            job: uuid::Uuid::new_v4(),
            replay: 0,
        })
        .collect();
    for t in &tasks {
        broker
            .publish(RENDER_QUEUE, &serde_json::to_vec(t).unwrap())
            .await
            .unwrap();
    }
    broker.publish(RENDER_QUEUE, b"not a task").await.unwrap();

    let mut consumer = broker.consume(RENDER_QUEUE, 1).await.unwrap();
    // Done: acknowledged and gone.
    let first = next(&mut consumer).await;
    assert_eq!(first.message.as_ref().ok(), Some(&tasks[0]));
    first.settle(&Outcome::Done).await.unwrap();
    // Retry: back after the backoff delay, behind the messages already queued.
    let second = next(&mut consumer).await;
    assert_eq!(second.message.as_ref().ok(), Some(&tasks[1]));
    assert_eq!(second.attempt(), 0);
    assert!(second.can_retry());
    let retried_at = Instant::now();
    second
        .settle(&Outcome::Retry("the store was busy".into()))
        .await
        .unwrap();
    // Permanent: dead-lettered at once, as is a body that is not a task.
    for _ in 0..2 {
        let m = next(&mut consumer).await;
        let outcome = match &m.message {
            Ok(t) => {
                assert_eq!(*t, tasks[2]);
                Outcome::Permanent("the data cannot be rendered".into())
            }
            Err(why) => {
                assert!(why.to_string().contains("not a task"), "{why}");
                Outcome::Permanent(why.to_string())
            }
        };
        m.settle(&outcome).await.unwrap();
    }
    let again = next(&mut consumer).await;
    assert_eq!(again.message.as_ref().ok(), Some(&tasks[1]));
    assert!(
        retried_at.elapsed() >= Duration::from_millis(250),
        "retried after {:?}, before its delay",
        retried_at.elapsed()
    );
    assert_eq!(again.attempt(), 1, "the retry carries its attempt count");
    assert!(!again.can_retry(), "one delay, so one retry");
    // Past the last delay a retry is dead-lettered.
    again
        .settle(&Outcome::Retry("still busy".into()))
        .await
        .unwrap();
    let mut dead = Vec::new();
    for _ in 0..50 {
        while let Some(m) = get(&broker, DEAD_QUEUE).await {
            dead.push(m.delivery.data.clone());
        }
        if dead.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dead.sort();
    let mut expected = vec![
        b"not a task".to_vec(),
        serde_json::to_vec(&tasks[1]).unwrap(),
        serde_json::to_vec(&tasks[2]).unwrap(),
    ];
    expected.sort();
    assert_eq!(dead, expected);
}
