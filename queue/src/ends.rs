//! What the job store tells ops about the farm as a whole: how long the jobs
//! it ended took, by outcome, and the outbox's backlog.
//!
//! Every job ends in the store (its last task done, a failure, a cancel), so
//! the store observes each end there, once its transaction has committed: a
//! worker process sees the successes and failures, an API process the
//! cancels.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// How a job can end.
pub const JOB_OUTCOMES: [&str; 3] = ["succeeded", "failed", "cancelled"];

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
                outcome: outcome.into(),
            });
        }
        JobEnds { durations }
    }
}

impl JobEnds {
    /// Records that a job ended `outcome` after `seconds`.
    pub(crate) fn observe(&self, outcome: &str, seconds: f64) {
        self.durations
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .observe(seconds.max(0.0));
    }

    /// Records a success, when the job ended (after `seconds`).
    pub(crate) fn succeeded(&self, seconds: Option<f64>) {
        if let Some(seconds) = seconds {
            self.observe("succeeded", seconds);
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
