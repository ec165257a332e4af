//! The end-of-run summary of `orderflow process`, as text for people or JSON for
//! scripts (the benchmark reads it from a child process).

use std::fmt;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::aggregate::Aggregates;

/// What one run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub processed: u64,
    pub dead_lettered: u64,
    pub failed_attempts: u64,
    pub aggregates: Aggregates,
    /// When the first and the last message of the run arrived, and when it ended
    /// (everything stored and committed): what throughput is measured over.
    pub first_message: Option<Instant>,
    pub last_message: Option<Instant>,
    pub ended: Option<Instant>,
    /// Messages whose work is done for good (with a store: once their batch is
    /// committed), and how many of them were done when the last message arrived:
    /// the throughput while reading, which leaves out the retries still waiting
    /// at the end of a finite topic.
    pub finished: u64,
    pub finished_by_last_message: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub processed: u64,
    pub dead_lettered: u64,
    pub failed_attempts: u64,
    /// From the first message to the end of the run (everything stored and committed).
    pub seconds: Option<f64>,
    /// From the first message to the last one read.
    pub reading_seconds: Option<f64>,
    /// Finished messages (processed or dead-lettered) per second over `seconds`.
    pub per_second: Option<f64>,
    /// Messages finished (with a store: stored) by the time the last one was
    /// read, per second over `reading_seconds`: the rate a processor keeps up
    /// while input flows, without the retries still waiting when a finite topic
    /// ends.
    pub sustained_per_second: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
    /// CPU time of the whole process, start-up included.
    pub cpu_seconds: Option<f64>,
}

impl Summary {
    pub fn new(report: &Report) -> Self {
        let since_first = |t: Option<Instant>| Some((t? - report.first_message?).as_secs_f64());
        let rate =
            |count: u64, secs: Option<f64>| secs.filter(|s| *s > 0.0).map(|s| count as f64 / s);
        let seconds = since_first(report.ended);
        let reading_seconds = since_first(report.last_message);
        Summary {
            processed: report.processed,
            dead_lettered: report.dead_lettered,
            failed_attempts: report.failed_attempts,
            seconds,
            reading_seconds,
            per_second: rate(report.processed + report.dead_lettered, seconds),
            sustained_per_second: rate(report.finished_by_last_message, reading_seconds),
            peak_rss_bytes: crate::resources::peak_rss_bytes(),
            cpu_seconds: crate::resources::cpu_seconds(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} processed, {} dead-lettered, {} failed attempts",
            self.processed, self.dead_lettered, self.failed_attempts
        )?;
        if let (Some(secs), Some(rate)) = (self.seconds, self.per_second) {
            write!(f, " in {secs:.1} s ({rate:.0}/s)")?;
        }
        if let Some(rss) = self.peak_rss_bytes {
            write!(f, "; peak RSS {:.1} MiB", rss as f64 / (1024.0 * 1024.0))?;
        }
        Ok(())
    }
}
