//! A delivered task from either transport, settled the same way.

use crate::amqp::{BrokerResult, Incoming, NotATask, Outcome, TaskMessage};
use crate::local::LocalIncoming;

/// A task message from RabbitMQ or from the in-process queue.
#[derive(Debug)]
pub enum Delivery {
    Amqp(Box<Incoming>),
    Local(LocalIncoming),
}

impl Delivery {
    /// The task, or why the body is not one.
    pub fn message(&self) -> &Result<TaskMessage, NotATask> {
        match self {
            Delivery::Amqp(i) => &i.message,
            Delivery::Local(i) => &i.message,
        }
    }

    /// Failed attempts before this delivery.
    pub fn attempt(&self) -> u32 {
        match self {
            Delivery::Amqp(i) => i.attempt(),
            Delivery::Local(i) => i.attempt(),
        }
    }

    /// Whether a retry would run the task again rather than dead-letter it.
    pub fn can_retry(&self) -> bool {
        match self {
            Delivery::Amqp(i) => i.can_retry(),
            Delivery::Local(i) => i.can_retry(),
        }
    }

    /// Acknowledges, retries after a backoff, or dead-letters the message.
    pub async fn settle(self, outcome: &Outcome) -> BrokerResult<()> {
        match self {
            Delivery::Amqp(i) => (*i).settle(outcome).await,
            Delivery::Local(i) => {
                i.settle(outcome);
                Ok(())
            }
        }
    }
}
