//! Progress on the terminal: a bar when stderr is a terminal, log lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports tiles done out of a known total.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    log: Mutex<LogState>,
}

#[derive(Debug)]
struct LogState {
    done: u64,
    started: Instant,
    last: Instant,
}

const LOG_EVERY: Duration = Duration::from_secs(2);

impl Progress {
    pub fn new(total: u64, what: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} tiles, {per_sec}, ETA {eta}",
                )
                .expect("valid template"),
            );
            bar.set_message(what.to_string());
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            total,
            log: Mutex::new(LogState {
                done: 0,
                started: now,
                last: now,
            }),
        }
    }

    pub fn add(&self, tiles: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(tiles);
            return;
        }
        let mut s = self.log.lock().expect("lock");
        s.done += tiles;
        if s.last.elapsed() >= LOG_EVERY {
            s.last = Instant::now();
            let secs = s.started.elapsed().as_secs_f64();
            let rate = s.done as f64 / secs.max(1e-9);
            let eta = (self.total - s.done) as f64 / rate.max(1e-9);
            tracing::info!(
                done = s.done,
                total = self.total,
                "{} / {} tiles, {rate:.0} tiles/s, ETA {eta:.0} s",
                s.done,
                self.total
            );
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
