//! A message's way from arrival to done: into its key's queue, through its
//! attempts and retries, to the DLQ if it must, and into the store.

use std::{collections::VecDeque, time::Duration};

use rdkafka::error::KafkaError;
use tokio::time::Instant;

use super::{
    Error, Event, Processor,
    attempt::Outcome,
    event_loop::Run,
    keys::{Job, QKey},
    offsets::Receipt,
};
use crate::{
    kafka::{self, WriteFailure},
    order::now_ms,
    store::{self, Finished, Status, dead_letters::DeadLetter},
};

impl Processor {
    pub(super) fn received(&mut self, run: &mut Run, job: Job) {
        match run
            .source
            .offsets(|o| o.received(job.partition, job.offset))
        {
            Receipt::New => {}
            Receipt::Behind => return, // applied to the store before, or under way
            Receipt::NotOwned => {
                tracing::debug!(
                    partition = job.partition,
                    offset = job.offset,
                    "message of a partition no longer assigned; its next owner reads it"
                );
                return;
            }
        }
        let qk = job.qkey();
        if run.queues.is_blocked(&qk) {
            run.queues.push(&qk, job);
            return;
        }
        self.work(run, qk, std::iter::once(job).collect());
    }

    /// Works through a key's queue in order until it is empty or its head has to wait.
    fn work(&mut self, run: &mut Run, qk: QKey, mut jobs: VecDeque<Job>) {
        while let Some(mut job) = jobs.pop_front() {
            match self.attempt(run, &mut job) {
                Outcome::Done => self.complete(run, job, Status::Processed, None),
                Outcome::Retry(delay) => {
                    jobs.push_front(job);
                    run.queues.block(qk, jobs, Some(Instant::now() + delay));
                    return;
                }
                Outcome::DeadLetter => {
                    jobs.push_front(job);
                    let generation = run.queues.block(qk.clone(), jobs, None);
                    run.dlq.owe(qk, generation);
                    return;
                }
            }
        }
    }

    /// One attempt, with what it tells the observer and the report.
    fn attempt(&mut self, run: &mut Run, job: &mut Job) -> Outcome {
        let attempt = self.attempts.attempt(job);
        let Some((order, format)) = job.decoded.as_ref() else {
            return attempt.outcome;
        };
        match (&attempt.outcome, &attempt.transient) {
            (Outcome::Done, _) => {
                run.report.aggregates.add(order);
                run.report.processed += 1;
                self.observer.on_event(&Event::Processed {
                    order,
                    format: *format,
                    avg: run.report.aggregates.total.avg(),
                    partition: job.partition,
                    offset: job.offset,
                    times: job.times(),
                });
            }
            (outcome, Some(reason)) => {
                run.report.failed_attempts += 1;
                self.observer.on_event(&Event::AttemptFailed {
                    order_id: &order.order_id,
                    attempt: job.attempts,
                    max_attempts: self.attempts.max_attempts(),
                    reason,
                    retry_in: match outcome {
                        Outcome::Retry(delay) => *delay,
                        _ => Duration::ZERO,
                    },
                });
            }
            _ => {}
        }
        attempt.outcome
    }

    pub(super) fn retry(&mut self, run: &mut Run, qk: QKey, generation: u64) {
        if let Some(jobs) = run.queues.unblock(&qk, generation) {
            self.work(run, qk, jobs);
        }
    }

    pub(super) fn send_dlq(&self, run: &mut Run) {
        run.dlq
            .send_next(&run.queues, |job| self.records.build(job));
    }

    pub(super) fn delivered(
        &mut self,
        run: &mut Run,
        qk: QKey,
        generation: u64,
        result: Result<(i32, i64), KafkaError>,
    ) -> Result<(), Error> {
        let Some(mut jobs) = run.queues.unblock(&qk, generation) else {
            return Ok(()); // the partition was revoked meanwhile
        };
        let e = match result {
            Ok(at) => {
                let head = jobs.pop_front().expect("a blocked key has a head");
                self.dead_lettered(run, head, at);
                self.work(run, qk, jobs);
                return Ok(());
            }
            Err(e) => e,
        };

        // The order must not be lost: it stays at the head and is written again,
        // unless nothing but an operator can make the write succeed.
        let head = jobs.front_mut().expect("a blocked key has a head");
        head.dlq_pending = true;
        let fatal = |hint| Error::DlqWrite {
            topic: self.config.dlq_topic.clone(),
            source: Box::new(e.clone()),
            hint,
        };
        let retry_at = match kafka::classify_write_error(&e) {
            WriteFailure::Fatal(hint) => return Err(fatal(hint)),
            WriteFailure::TooLarge if head.dlq_refused_size => {
                return Err(fatal(
                    "raise the DLQ topic's max.message.bytes (the record holds only the failure and a hash of the original)",
                ));
            }
            WriteFailure::TooLarge => {
                tracing::warn!(error = %e, topic = %self.config.dlq_topic, "the DLQ refused a record as too large; writing it again without the original bytes");
                head.dlq_refused_size = true;
                Instant::now()
            }
            WriteFailure::Retry => {
                tracing::error!(error = %e, topic = %self.config.dlq_topic, "DLQ write failed; retrying");
                Instant::now() + self.config.backoff.max.min(Duration::from_secs(5))
            }
        };
        run.queues.block(qk, jobs, Some(retry_at));
        Ok(())
    }

    /// At shutdown: record a landed DLQ write but start no new work.
    pub(super) fn delivered_final(
        &mut self,
        run: &mut Run,
        qk: QKey,
        generation: u64,
        result: Result<(i32, i64), KafkaError>,
    ) {
        if let (Ok(at), Some(mut jobs)) = (result, run.queues.unblock(&qk, generation)) {
            let head = jobs.pop_front().expect("a blocked key has a head");
            self.dead_lettered(run, head, at);
        }
    }

    /// `at`: where its DLQ record landed.
    fn dead_lettered(&mut self, run: &mut Run, job: Job, at: (i32, i64)) {
        run.report.dead_lettered += 1;
        let id = job.display_id(&self.config.topic);
        let (reason, kind) = job
            .dlq_reason
            .as_ref()
            .expect("dead-lettered jobs carry a reason");
        self.observer.on_event(&Event::DeadLettered {
            id: &id,
            order: job.decoded.as_ref().map(|(o, _)| o),
            reason,
            kind: *kind,
            attempts: job.attempts,
            partition: job.partition,
            offset: job.offset,
            times: job.times(),
        });
        let letter = run
            .persist
            .is_some()
            .then(|| self.records.dead_letter(&job, at));
        self.complete(run, job, Status::Dlq, letter);
    }

    /// A message's work is done: durable at once without a store, else once its
    /// batch is committed.
    fn complete(
        &mut self,
        run: &mut Run,
        mut job: Job,
        status: Status,
        dead_letter: Option<DeadLetter>,
    ) {
        let Some(persist) = run.persist.as_mut() else {
            run.source
                .offsets(|o| o.finished(job.partition, job.offset));
            run.report.finished += 1;
            return;
        };
        let id = job.display_id(&self.config.topic);
        let order = job.decoded.take().map(|(o, _)| o);
        persist.push(Finished {
            id,
            produced_ms: order
                .as_ref()
                .map(|o| o.created_at_ms)
                .filter(|t| *t > 0)
                .or(job.timestamp_ms),
            order,
            status,
            attempts: job.attempts,
            last_error: job.dlq_reason.map(|(r, _)| r),
            partition: job.partition,
            offset: job.offset,
            received_ms: job.received_ms,
            processed_ms: now_ms(),
            timeline: job.timeline,
            dead_letter,
        });
    }

    /// Takes in the end of a store write; the offsets it reaches become committable.
    pub(super) async fn stored(
        &mut self,
        run: &mut Run,
        batch: store::Batch,
        result: Result<store::Applied, store::Error>,
        took: Duration,
    ) {
        let Some(persist) = run.persist.as_mut() else {
            return;
        };
        let Some((applied, stored)) = run.source.offsets(|o| persist.done(batch, result, o)) else {
            return;
        };
        run.report.finished += stored.len() as u64;
        if !stored.is_empty() {
            self.observer.on_event(&Event::Stored {
                orders: &stored,
                took,
            });
        }
        if applied.duplicates > 0 {
            // Redelivered orders were not applied again; show the stored truth.
            match persist.store().aggregates().await {
                Ok(a) => run.report.aggregates = a,
                Err(e) => tracing::warn!(error = %e, "reloading aggregates failed"),
            }
        }
    }
}
