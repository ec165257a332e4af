//! What the processor does when: one `select!` over shutdown, landed DLQ writes,
//! due retries, store writes, commit ticks and the next message; then the drain
//! check and, at the end, the last writes and commit.

use std::time::Duration;

use rdkafka::{
    consumer::CommitMode,
    error::{KafkaError, KafkaResult},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::codec::confluent;

use super::{
    Error, Event, Processor, Report,
    dlq_writer::DlqWriter,
    keys::{Job, KeyQueues},
    persist::{self, Persister},
    source::{self, Change, Source},
    timer::Timer,
};

/// How long reading may be held back by backpressure before the partitions are
/// paused so that polling (and so rebalances) goes on; far below librdkafka's
/// `max.poll.interval.ms` (5 minutes), far above a store write. A pause drops
/// what librdkafka had prefetched, so the short waits of a store that is merely
/// behind just skip polling for a moment.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// How long a processor may wait for partitions before it says so.
const UNASSIGNED_WARNING: Duration = Duration::from_secs(60);

/// How often an idle processor that drains (`--exit-at-end`) asks the broker
/// whether it has read everything.
const END_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Everything one run owns.
pub(super) struct Run {
    pub source: Source,
    pub queues: KeyQueues,
    pub dlq: DlqWriter,
    pub report: Report,
    pub persist: Option<Persister>,
}

impl Run {
    /// Starts writing what waits for the store, unless a write is under way.
    pub fn start_write(&mut self) {
        if let Some(persist) = self.persist.as_mut() {
            self.source.offsets(|o| persist.start(o));
        }
    }
}

impl Processor {
    pub(super) async fn event_loop(
        &mut self,
        run: &mut Run,
        shutdown: &CancellationToken,
        drain: &CancellationToken,
    ) -> Result<(), Error> {
        let mut commit_tick = tokio::time::interval(self.config.commit_interval);
        let (mut last_end_check, mut last_received) = (Instant::now(), Instant::now());
        // While draining, the loop wakes this often to look for the end: the
        // end-of-partition event can come a whole fetch wait (500 ms on Apache
        // Kafka) after the last message, and can be lost to a seek.
        let mut end_tick = tokio::time::interval(END_CHECK_INTERVAL);
        end_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        commit_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut retry_timer, mut flush_timer) = (Timer::new(), Timer::new());
        let started = Instant::now();
        let mut warned_unassigned = false;
        let mut blocked_since: Option<Instant> = None;
        loop {
            retry_timer.set(run.queues.next_due());
            flush_timer.set(run.persist.as_ref().and_then(Persister::due));
            let can_read = self.can_read(run);
            blocked_since = match (can_read, blocked_since) {
                (true, _) => None,
                (false, since) => Some(since.unwrap_or_else(Instant::now)),
            };
            let pause_at = blocked_since.map(|t| t + PAUSE_AFTER);
            run.source
                .pause_or_resume(pause_at.is_some_and(|t| Instant::now() >= t));
            // Biased, in this order: everything timed or finished comes before the
            // next message, which under a backlog is always ready and would
            // otherwise starve commits, retries and store writes.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                (qk, generation, result) = run.dlq.landed(), if run.dlq.in_flight() => {
                    self.delivered(run, qk, generation, result)?;
                }
                _ = retry_timer.fired(), if retry_timer.is_armed() => {
                    for (qk, generation) in run.queues.take_due(Instant::now()) {
                        self.retry(run, qk, generation);
                    }
                }
                _ = flush_timer.fired(), if flush_timer.is_armed() => run.start_write(),
                (batch, result, took) = async { run.persist.as_mut().expect("writing implies a store").written().await },
                    if run.persist.as_ref().is_some_and(Persister::writing) => {
                    self.stored(run, batch, result, took).await;
                }
                _ = commit_tick.tick() => {
                    run.source.commit(CommitMode::Async);
                    self.backlog(run);
                    if !warned_unassigned
                        && started.elapsed() >= UNASSIGNED_WARNING
                        && run.source.offsets(|o| o.is_empty())
                    {
                        warned_unassigned = true;
                        tracing::warn!(
                            group = %self.config.group,
                            "no partition assigned to this processor after {} s: the group has more members than {} has partitions, or it cannot form (on the embedded Tansu broker, after a member was killed and this one joined under another --instance-id; see README, \"Limits of the embedded broker\")",
                            UNASSIGNED_WARNING.as_secs(),
                            self.config.topic
                        );
                    }
                }
                _ = tokio::time::sleep_until(pause_at.unwrap_or_else(Instant::now)),
                    if pause_at.is_some() && !run.source.is_paused() => {}
                msg = run.source.recv(), if can_read || run.source.is_paused() => {
                    let msg = msg.map(|m| Job::from_message(&m));
                    if msg.is_ok() {
                        last_received = Instant::now();
                    }
                    self.arrived(run, msg).await?;
                }
                _ = end_tick.tick(), if drain.is_cancelled() => {}
                // Nothing else is ready: store what is waiting now rather than when
                // its timer says. Under load the batch fills first; when idle, an
                // order is stored without waiting for others.
                () = std::future::ready(()), if run.persist.as_ref().is_some_and(Persister::idle_flush) => {
                    run.start_write();
                }
            }
            // A recv that serves a rebalance returns nothing (rdkafka counts the
            // event as consumed and polls again), so another arm may have won
            // this turn: what changed goes before any further work.
            self.rebalanced(run).await?;
            self.send_dlq(run);
            if drain.is_cancelled() && run.dlq.is_idle() {
                let (idle, at_end) = run.source.offsets(|o| (o.idle(), o.all_done()));
                // End-of-partition events say when to look; as they can be late or
                // lost, a processor that has read nothing for a while looks too (a
                // round trip to the broker, so never while messages flow).
                let quiet = last_received.elapsed() >= END_CHECK_INTERVAL
                    && last_end_check.elapsed() >= END_CHECK_INTERVAL;
                if idle && (at_end || quiet) {
                    last_end_check = Instant::now();
                    if run
                        .source
                        .caught_up(run.dlq.client())
                        .map_err(Error::Consume)?
                    {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Tells the observer what waits; once per commit tick, as it asks
    /// librdkafka for every assigned partition.
    fn backlog(&mut self, run: &Run) {
        let lag = run.source.lag();
        self.observer.on_event(&Event::Backlog {
            topic: &self.config.topic,
            retries_waiting: run.queues.retries_waiting(),
            lag: &lag,
        });
    }

    /// Whether to take another message: not while `max_in_flight` messages wait
    /// for a retry or a DLQ write, nor while the store is failing or behind.
    fn can_read(&self, run: &Run) -> bool {
        let held = run.persist.as_ref().map_or(0, Persister::held);
        let unfinished = run.source.offsets(|o| o.unfinished());
        unfinished.saturating_sub(held) < self.config.max_in_flight
            && held < persist::MAX_HELD
            && !run.persist.as_ref().is_some_and(Persister::paused)
    }

    /// Takes in what `recv` returned, after what rebalances served inside it
    /// changed.
    async fn arrived(&mut self, run: &mut Run, msg: KafkaResult<Job>) -> Result<(), Error> {
        self.rebalanced(run).await?;
        match msg {
            Ok(job) => {
                if let Some((id, _)) = confluent::split(&job.payload) {
                    let schemas = self.attempts.schemas();
                    schemas.load(id).await;
                }
                let now = Instant::now();
                run.report.first_message.get_or_insert(now);
                run.report.last_message = Some(now);
                run.report.finished_by_last_message = run.report.finished;
                self.received(run, job);
            }
            Err(KafkaError::PartitionEOF(p)) => run.source.offsets(|o| o.reached_end(p)),
            Err(e) if source::is_fatal(&e) => {
                return Err(Error::Consume(run.source.with_fatal_cause(e)));
            }
            Err(e) => tracing::warn!(error = %e, "consumer error; librdkafka retries on its own"),
        }
        Ok(())
    }

    /// Applies what rebalances served inside the last `recv` changed, in the
    /// order they happened and before anything that `recv` returned is taken
    /// in: the retries, DLQ writes and store work of a revoked partition go, and
    /// a newly assigned partition starts at its stored position, where messages
    /// below it were applied already and are skipped.
    async fn rebalanced(&mut self, run: &mut Run) -> Result<(), Error> {
        let mut stored = None;
        for change in run.source.take_changes() {
            match change {
                Change::Revoked(p) => {
                    run.queues.drop_partition(p);
                    if let Some(persist) = run.persist.as_mut() {
                        persist.revoke(p);
                    }
                }
                Change::Assigned(p) => {
                    let Some(persist) = run.persist.as_ref() else {
                        continue;
                    };
                    if stored.is_none() {
                        stored = Some(persist.stored_positions().await?);
                    }
                    if let Some(&next) = stored.as_ref().and_then(|s| s.get(&p)) {
                        run.source.start_at(p, next);
                    }
                }
            }
        }
        Ok(())
    }

    /// Lets pending DLQ writes land (they are finished work), then commits.
    pub(super) async fn finish(&mut self, run: &mut Run) {
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        loop {
            self.send_dlq(run);
            if !run.dlq.in_flight() {
                break;
            }
            tokio::select! {
                (qk, generation, result) = run.dlq.landed() => {
                    // Completing a delivery may start more work for that key; later
                    // messages on it stay unfinished and are redelivered next time.
                    self.delivered_final(run, qk, generation, result);
                }
                _ = &mut deadline => {
                    tracing::warn!(pending = run.dlq.pending(), "DLQ writes still pending at shutdown; those orders will be redelivered");
                    break;
                }
            }
        }
        // The write under way, then what waits (or, if that write failed, it again).
        for _ in 0..2 {
            run.start_write();
            let Some(persist) = run.persist.as_mut().filter(|p| p.writing()) else {
                break;
            };
            let (batch, result, took) = persist.written().await;
            self.stored(run, batch, result, took).await;
        }
        run.source.commit(CommitMode::Sync);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        codec::json,
        kafka::KafkaConfig,
        order::random_order,
        processor::{Config, Event},
        simulated::Simulated,
    };

    /// A processor and its run state, with clients that never reach a broker:
    /// the test plays the broker's part by hand.
    fn processor(fail_attempts: u32) -> (Processor, Run) {
        let config = Config::new(KafkaConfig::new("127.0.0.1:1"));
        let run = Run {
            source: Source::subscribe(&config, None).expect("no broker needed to subscribe"),
            queues: KeyQueues::default(),
            dlq: DlqWriter::new(config.kafka.producer().unwrap(), config.dlq_topic.clone()),
            report: Report::default(),
            persist: None,
        };
        let handler = Simulated {
            fail_when: Some("quantity>5".parse().unwrap()),
            fail_attempts: Some(fail_attempts),
        };
        let observer = Box::new(|_: &Event<'_>| {});
        (Processor::new(config, Box::new(handler), observer), run)
    }

    fn job(offset: i64) -> Job {
        let mut order = random_order();
        order.quantity = 9;
        Job::new(0, offset, Some(b"key".to_vec()), json::encode(&order))
    }

    /// The race of issue 19: a rebalance served inside one `recv` revokes a
    /// partition and assigns it back, and that `recv` returns the partition's
    /// next message. Applied after the message, the revocation dropped it with
    /// the old owner's queue: the partition never committed past it again.
    #[tokio::test]
    async fn a_partition_revoked_and_assigned_back_within_one_recv_loses_nothing() {
        let (mut p, mut run) = processor(1);
        run.source.rebalance(&[Change::Assigned(0)]);
        p.arrived(&mut run, Ok(job(0))).await.unwrap();
        assert!(
            run.queues.next_due().is_some(),
            "the first attempt failed: a retry waits"
        );

        // The group rebalances; the committed offset is still 0, so the message
        // comes again, in the same recv.
        run.source
            .rebalance(&[Change::Revoked(0), Change::Assigned(0)]);
        p.arrived(&mut run, Ok(job(0))).await.unwrap();
        assert_eq!(
            run.report.failed_attempts, 2,
            "the redelivered message was attempted"
        );
        let due = run
            .queues
            .take_due(Instant::now() + Duration::from_secs(60));
        assert_eq!(
            due.len(),
            1,
            "one retry waits, the redelivered message's, not the revoked one's"
        );
        for (qk, generation) in due {
            p.retry(&mut run, qk, generation);
        }
        assert_eq!(run.report.processed, 1);
        assert_eq!(run.source.offsets(|o| o.to_commit(None)), [(0, 1)]);
    }

    /// Nothing of a revoked partition runs after the revoke: not its retries,
    /// not the end of its DLQ writes (another member owns its keys now).
    #[tokio::test]
    async fn a_revoked_partition_retries_and_dead_letters_nothing() {
        let (mut p, mut run) = processor(1);
        run.source
            .rebalance(&[Change::Assigned(0), Change::Assigned(1)]);
        p.arrived(&mut run, Ok(job(0))).await.unwrap();
        let bound_for_dlq = Job {
            payload: b"not an order".to_vec(),
            partition: 1,
            ..job(0)
        };
        let dlq_key = bound_for_dlq.qkey();
        p.arrived(&mut run, Ok(bound_for_dlq)).await.unwrap();
        assert!(
            !run.dlq.is_idle(),
            "the undecodable message is owed a DLQ write"
        );

        run.source
            .rebalance(&[Change::Revoked(0), Change::Revoked(1)]);
        p.arrived(&mut run, Err(KafkaError::PartitionEOF(2)))
            .await
            .unwrap();
        assert!(run.queues.next_due().is_none(), "no retry is left to fire");
        // A DLQ write that lands after the revoke finishes nothing.
        p.delivered(&mut run, dlq_key, 2, Ok((0, 0))).unwrap();
        assert_eq!((run.report.processed, run.report.dead_lettered), (0, 0));
        assert!(run.source.offsets(|o| o.to_commit(None)).is_empty());
    }

    /// librdkafka reads a message again after the seek to a partition's stored
    /// position when it had fetched it already: it is handled once.
    #[tokio::test]
    async fn a_message_read_again_is_handled_once() {
        let (mut p, mut run) = processor(0);
        run.source.rebalance(&[Change::Assigned(0)]);
        for _ in 0..2 {
            p.arrived(&mut run, Ok(job(4))).await.unwrap();
        }
        assert_eq!(run.report.processed, 1);
        assert_eq!(run.source.offsets(|o| o.to_commit(None)), [(0, 5)]);
    }
}
