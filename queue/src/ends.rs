//! What the job store tells ops about the farm as a whole: how long the jobs
//! it ended took, by outcome, and the outbox's backlog.
//!
//! Every job ends in the store (its last task done, a failure, a cancel), so
//! the store observes each end there, once its transaction has committed: a
//! worker process sees the successes and failures, an API process the
//! cancels.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::job_store::JobStore;
use crate::model::JobState;

/// How a job can end.
pub const JOB_OUTCOMES: [JobState; 3] =
    [JobState::Succeeded, JobState::Failed, JobState::Cancelled];

/// A job's outcome, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// Histograms of seconds by outcome.
pub type JobDurations = Family<OutcomeLabel, Histogram, fn() -> Histogram>;

/// Seconds from a job's creation to its end, by outcome, for the jobs this
/// store (and its clones) ended.
#[derive(Clone, Debug)]
pub struct JobEnds {
    durations: JobDurations,
}

impl Default for JobEnds {
    fn default() -> Self {
        // A quarter of a second to four and a half hours.
        let durations = JobDurations::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.25, 2.0, 17))
        });
        // Every outcome is there from the start, at zero.
        for outcome in JOB_OUTCOMES {
            let _ = durations.get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            });
        }
        JobEnds { durations }
    }
}

impl JobEnds {
    /// Records that a job ended `outcome` after `seconds`.
    pub(crate) fn observe(&self, outcome: JobState, seconds: f64) {
        self.durations
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .observe(seconds.max(0.0));
    }

    /// Records a success, when the job ended (after `seconds`).
    pub(crate) fn succeeded(&self, seconds: Option<f64>) {
        if let Some(seconds) = seconds {
            self.observe(JobState::Succeeded, seconds);
        }
    }

    /// The histograms, to register for a scrape.
    pub fn durations(&self) -> JobDurations {
        self.durations.clone()
    }
}

/// The outbox messages no relay has published yet.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OutboxBacklog {
    pub messages: i64,
    /// Seconds since the oldest of them was written; 0 when there is none.
    pub oldest_age_seconds: f64,
}

impl JobStore {
    /// Adds what the job store tells of the farm to a scrape (`registry` with
    /// the prefix `tilefarm`): the durations of the jobs this process's store
    /// ended, by outcome, and the outbox's backlog (left out when the store
    /// does not answer). The backlog is the farm's, the same in every process.
    pub async fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "job_duration_seconds",
            "Seconds from a job's creation to its end, by outcome, for the jobs this process ended",
            self.job_ends().durations(),
        );
        match self.outbox_backlog().await {
            Ok(backlog) => {
                let (messages, age) = (Gauge::<i64>::default(), Gauge::<f64, AtomicU64>::default());
                messages.set(backlog.messages);
                age.set(backlog.oldest_age_seconds);
                registry.register(
                    "outbox_backlog",
                    "Task messages in the outbox that no relay has published to the broker yet",
                    messages,
                );
                registry.register(
                    "outbox_oldest_age_seconds",
                    "Seconds the oldest unpublished outbox message has waited (0 when there is none)",
                    age,
                );
            }
            Err(e) => tracing::debug!("no outbox figures for this scrape: {e}"),
        }
    }
}

/// The `Content-Type` of a scrape's page.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A registry's metrics as a scrape's page (OpenMetrics text).
pub fn openmetrics_text(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).expect("writing to a string");
    text
}
