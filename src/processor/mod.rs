//! The order processor: decode, validate, handle, aggregate; retry transient failures
//! with backoff without blocking other keys; dead-letter what cannot succeed; commit
//! only offsets whose messages are finished.

pub mod backoff;
mod dlq_writer;
mod keys;
pub mod membership;
pub mod offsets;
mod persist;
pub mod rule;
mod summary;
mod timer;

/// The most orders the processor hands the store in one transaction.
pub use persist::MAX_BATCH;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use rdkafka::{
    ClientContext, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::KafkaError,
    message::{Header, OwnedHeaders},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    aggregate::Aggregates,
    codec::{DecodeError, Decoder, Format},
    dlq::record::{
        DlqValue, ErrorKind, H_ORIGINAL_SHA256, H_ORIGINAL_SIZE, H_TRUNCATED, Provenance,
    },
    kafka::{self, KafkaConfig, WriteFailure},
    order::{Order, now_ms},
    store::{self, Finished, Status, Store},
};
use backoff::Backoff;
use dlq_writer::{DlqRecord, DlqWriter};
use keys::{Job, KeyQueues, QKey};
pub use membership::Membership;
use offsets::Offsets;
use persist::Persister;
use rule::FailWhen;
pub use summary::Summary;
use timer::Timer;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    #[error("subscribing to {topic} failed: {source}")]
    Subscribe {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("consumer failed: {0}")]
    Consume(#[source] KafkaError),
    #[error("reading the order store: {0}")]
    Store(#[from] store::Error),
    #[error(transparent)]
    Membership(#[from] membership::ClaimError),
    #[error("writing to the dead-letter topic {topic} failed for good: {source}; {hint}")]
    DlqWrite {
        topic: String,
        #[source]
        source: Box<KafkaError>,
        hint: &'static str,
    },
}

/// Why handling an order failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Might succeed later: retried with backoff, dead-lettered after the last attempt.
    Transient(String),
    /// Will never succeed: dead-lettered at once.
    Permanent(String),
}

/// The business step applied to each valid order. The processor owns retries,
/// ordering, dead-lettering and offsets; a handler only says whether it worked.
pub trait Handler: Send {
    /// `attempt` starts at 1.
    fn handle(&mut self, order: &Order, attempt: u32) -> Result<(), Failure>;
}

/// The seed's handler: succeeds unless `--fail-when` matches, which it reports as a
/// transient failure: on every attempt, as in the seed, or on the first
/// `fail_attempts` only, like a fault that clears.
#[derive(Debug, Clone, Default)]
pub struct Simulated {
    pub fail_when: Option<FailWhen>,
    pub fail_attempts: Option<u32>,
}

impl Handler for Simulated {
    fn handle(&mut self, order: &Order, attempt: u32) -> Result<(), Failure> {
        if self.fail_attempts.is_some_and(|n| attempt > n) {
            return Ok(());
        }
        match self.fail_when.as_ref().and_then(|r| r.check(order)) {
            Some(reason) => Err(Failure::Transient(reason)),
            None => Ok(()),
        }
    }
}

/// What the processor did, for printing, metrics and tests.
#[derive(Debug)]
pub enum Event<'a> {
    Processed {
        order: &'a Order,
        format: Format,
        avg: Option<f64>,
        partition: i32,
        offset: i64,
    },
    AttemptFailed {
        order_id: &'a str,
        attempt: u32,
        max_attempts: u32,
        reason: &'a str,
        retry_in: Duration,
    },
    DeadLettered {
        /// The order id, or `topic[partition]@offset` when the bytes did not decode.
        id: &'a str,
        order: Option<&'a Order>,
        reason: &'a str,
        kind: ErrorKind,
        attempts: u32,
        partition: i32,
        offset: i64,
    },
    /// A batch of finished orders is committed to the store (only with a store).
    Stored { orders: &'a [Finished] },
}

pub trait Observer: Send {
    fn on_event(&mut self, event: &Event<'_>);
}

impl<F: FnMut(&Event<'_>) + Send> Observer for F {
    fn on_event(&mut self, event: &Event<'_>) {
        self(event)
    }
}

/// The seed's console lines.
pub fn print_event(out: &crate::console::Console, event: &Event<'_>) {
    match event {
        Event::Processed {
            order,
            format: Format::Json,
            ..
        } => out.line(format_args!(
            "Message received: {} {} from {}",
            order.product, order.quantity, order.user
        )),
        Event::Processed { order, avg, .. } => out.line(format_args!(
            "Processed {} | price={} | avg={}",
            order.order_id,
            crate::console::amount(order.price),
            crate::console::amount(*avg),
        )),
        Event::AttemptFailed {
            attempt,
            max_attempts,
            reason,
            ..
        } => out.line(format_args!(
            "Attempt {attempt}/{max_attempts} failed: {reason}"
        )),
        Event::DeadLettered { id, reason, .. } => out.line(format_args!("DLQ: {id} -> {reason}")),
        Event::Stored { .. } => {}
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub topic: String,
    pub dlq_topic: String,
    pub group: String,
    /// Attempts in all, the first included (the seed's MAX_RETRIES).
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Stop reading new messages while this many wait for a retry or a DLQ
    /// write (orders waiting for the store have a bound of their own).
    pub max_in_flight: usize,
    pub commit_interval: Duration,
    pub membership: Membership,
}

/// How long reading may be held back by backpressure before the partitions are
/// paused so that polling (and so rebalances) goes on; far below librdkafka's
/// `max.poll.interval.ms` (5 minutes), far above a store write.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// Enough for a processor at 60,000 orders/s to keep reading while a tenth of
/// them wait out the default backoff (1 s and 2 s, then the DLQ write): that
/// holds about 20,000 at a time. At 10,000 the failure run of `bench` read at
/// about 60% of the speed of a run without failures.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 30_000;

impl Config {
    pub fn new(kafka: KafkaConfig) -> Self {
        Config {
            kafka,
            topic: "orders".into(),
            dlq_topic: "orders_dlq".into(),
            group: "order-group".into(),
            max_attempts: 3,
            backoff: Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(30),
            },
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            commit_interval: Duration::from_secs(1),
            membership: Membership::Dynamic,
        }
    }
}

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

/// How long a processor may wait for partitions before it says so.
const UNASSIGNED_WARNING: Duration = Duration::from_secs(60);

/// How often an idle processor that drains (`--exit-at-end`) asks the broker
/// whether it has read everything.
const END_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// State shared with the rebalance callbacks, which librdkafka runs inside `recv`.
#[derive(Default)]
struct Shared {
    offsets: Offsets,
    revoked: Vec<i32>,
    assigned: Vec<i32>,
    /// Counts assignments: a partition assigned while reading is paused must be
    /// paused too.
    assignments: u64,
}

struct Context {
    topic: String,
    shared: Arc<Mutex<Shared>>,
    /// Commits the broker has confirmed, taken in by the next `commit`. A lock
    /// of their own: librdkafka may serve this callback inside a commit made
    /// while `shared` is held.
    confirmed: Arc<Mutex<Vec<(i32, i64)>>>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        kafka::log_client_error(error, reason);
    }
}

impl ConsumerContext for Context {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        match result {
            Ok(()) => self.confirmed.lock().expect("confirmed lock").extend(
                offsets.elements().iter().filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                }),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "offset commit failed; the next one carries these offsets again");
            }
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let mut shared = self.shared.lock().expect("processor state lock");
        let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        // Hand over finished work before another member takes these partitions.
        let commits = shared.offsets.to_commit(Some(&revoked));
        if !commits.is_empty()
            && let Err(e) = consumer.commit(&commit_list(&self.topic, &commits), CommitMode::Sync)
        {
            tracing::warn!(error = %e, "commit on revoke failed; those messages will be redelivered");
        }
        for p in &revoked {
            shared.offsets.revoke(*p);
        }
        shared.revoked.extend(revoked);
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut shared = self.shared.lock().expect("processor state lock");
            for e in tpl.elements() {
                shared.offsets.assign(e.partition());
                shared.assigned.push(e.partition());
            }
            shared.assignments += 1;
            tracing::info!(partitions = ?tpl.elements().iter().map(|e| e.partition()).collect::<Vec<_>>(), "assigned");
        }
    }
}

fn commit_list(topic: &str, commits: &[(i32, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (p, o) in commits {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
            .expect("a non-negative offset is valid");
    }
    tpl
}

/// The result of one attempt at a job.
enum Outcome {
    Done,
    Retry(Duration),
    /// Bound for the DLQ; the reason is in the job.
    DeadLetter,
}

pub struct Processor {
    config: Config,
    handler: Box<dyn Handler>,
    observer: Box<dyn Observer>,
    decoder: Decoder,
    store: Option<Arc<Store>>,
}

struct Run {
    consumer: StreamConsumer<Context>,
    /// Set while fetching is paused, to the assignment count it was paused at.
    paused: Option<u64>,
    shared: Arc<Mutex<Shared>>,
    confirmed: Arc<Mutex<Vec<(i32, i64)>>>,
    queues: KeyQueues,
    dlq: DlqWriter,
    report: Report,
    persist: Option<Persister>,
}

impl Processor {
    pub fn new(config: Config, handler: Box<dyn Handler>, observer: Box<dyn Observer>) -> Self {
        Processor {
            config,
            handler,
            observer,
            decoder: Decoder::default(),
            store: None,
        }
    }

    /// Keeps order history, aggregates and consumed offsets in `store`, which then
    /// decides where each partition is read from: every order is applied to it
    /// exactly once.
    pub fn with_store(mut self, store: Arc<Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Processes until `shutdown` is cancelled, or, once `drain` is cancelled, until
    /// every assigned partition is read to its end and nothing is pending.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        drain: CancellationToken,
    ) -> Result<Report, Error> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let confirmed: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
        let cfg = &self.config;
        // Declared before `run`, so dropped after its consumer: the slot stays this
        // processor's until it has left the group.
        let instance = cfg
            .membership
            .claim(&cfg.kafka.bootstrap_servers, &cfg.group)?;
        let mut consumer_config = cfg.kafka.consumer_config(
            &cfg.group,
            &[
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "true"),
                // librdkafka prefetches up to 100,000 messages or 64 MiB per
                // partition by default; 8 MiB keeps a processor within 64 MB. The
                // message bound sits above what one fetch brings (Tansu answers
                // with up to 5 MiB, about 50,000 orders), so that the next fetch
                // is asked for as soon as one lands, not after the processor has
                // worked through most of it: at 20,000 the broker sat idle
                // meanwhile. Topping the queue up after 5 ms instead of 1 s keeps
                // it from running dry.
                ("queued.min.messages", "60000"),
                ("queued.max.messages.kbytes", "8192"),
                ("fetch.queue.backoff.ms", "5"),
            ],
        );
        if let Some(id) = &instance.id
            && consumer_config.get("group.instance.id").is_none()
        {
            tracing::info!(group = %cfg.group, instance = %id, "joining as a static member");
            consumer_config.set("group.instance.id", id);
        }
        let consumer: StreamConsumer<Context> = cfg.kafka.create(
            "consumer",
            &consumer_config,
            Context {
                topic: cfg.topic.clone(),
                shared: shared.clone(),
                confirmed: confirmed.clone(),
            },
        )?;
        consumer
            .subscribe(&[&cfg.topic])
            .map_err(|source| Error::Subscribe {
                topic: cfg.topic.clone(),
                source,
            })?;
        let dlq = DlqWriter::new(cfg.kafka.producer()?, cfg.dlq_topic.clone());
        let mut run = Run {
            consumer,
            paused: None,
            shared,
            confirmed,
            queues: KeyQueues::default(),
            dlq,
            report: Report::default(),
            persist: None,
        };
        if let Some(store) = &self.store {
            run.report.aggregates = store.aggregates().await?;
            run.persist = Some(Persister::new(
                store.clone(),
                &self.config.group,
                &self.config.topic,
            ));
        }
        let result = self.event_loop(&mut run, &shutdown, &drain).await;
        self.finish(&mut run).await;
        run.report.ended = Some(Instant::now());
        result.map(|()| run.report)
    }

    async fn event_loop(
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
            self.pause_or_resume(run, pause_at.is_some_and(|t| Instant::now() >= t));
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
                _ = flush_timer.fired(), if flush_timer.is_armed() => start_write(run),
                (batch, result) = async { run.persist.as_mut().expect("writing implies a store").written().await },
                    if run.persist.as_ref().is_some_and(Persister::writing) => {
                    self.stored(run, batch, result).await;
                }
                _ = commit_tick.tick() => {
                    self.commit(run, CommitMode::Async);
                    if !warned_unassigned
                        && started.elapsed() >= UNASSIGNED_WARNING
                        && run.shared.lock().expect("lock").offsets.is_empty()
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
                    if pause_at.is_some() && run.paused.is_none() => {}
                msg = run.consumer.recv(), if can_read || run.paused.is_some() => match msg {
                    Ok(m) => {
                        let now = Instant::now();
                        last_received = now;
                        run.report.first_message.get_or_insert(now);
                        run.report.last_message = Some(now);
                        run.report.finished_by_last_message = run.report.finished;
                        let job = Job::from_message(&m);
                        drop(m);
                        // A rebalance served inside this recv may have revoked and
                        // re-assigned partitions: the old state goes before the
                        // new assignment and its first message are taken in.
                        self.forget_revoked(run);
                        self.take_assignments(run).await?;
                        self.received(run, job);
                    }
                    Err(KafkaError::PartitionEOF(p)) => run.shared.lock().expect("lock").offsets.reached_end(p),
                    Err(e) if is_fatal(&e) => return Err(Error::Consume(e)),
                    Err(e) => tracing::warn!(error = %e, "consumer error; librdkafka retries on its own"),
                },
                _ = end_tick.tick(), if drain.is_cancelled() => {}
                // Nothing else is ready: store what is waiting now rather than when
                // its timer says. Under load the batch fills first; when idle, an
                // order is stored without waiting for others.
                () = std::future::ready(()), if run.persist.as_ref().is_some_and(Persister::idle_flush) => {
                    start_write(run);
                }
            }
            self.forget_revoked(run);
            self.take_assignments(run).await?;
            self.send_dlq(run);
            if drain.is_cancelled() && run.dlq.is_idle() {
                let (idle, at_end) = {
                    let o = &run.shared.lock().expect("lock").offsets;
                    (o.idle(), o.all_done())
                };
                // End-of-partition events say when to look; as they can be late or
                // lost, a processor that has read nothing for a while looks too (a
                // round trip to the broker, so never while messages flow).
                let quiet = last_received.elapsed() >= END_CHECK_INTERVAL
                    && last_end_check.elapsed() >= END_CHECK_INTERVAL;
                if idle && (at_end || quiet) {
                    last_end_check = Instant::now();
                    if kafka::caught_up(&run.consumer, run.dlq.client()).map_err(Error::Consume)? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Backpressure over more than `PAUSE_AFTER`: pauses fetching from every
    /// assigned partition (`want`) and polls on, so that the member still takes
    /// part in rebalances; resumes once reading may go on. A pause drops what
    /// librdkafka had prefetched, so the short waits of a store that is merely
    /// behind just skip polling for a moment. Messages queued before the pause
    /// still arrive and are taken in.
    fn pause_or_resume(&self, run: &mut Run, want: bool) {
        // Called on every turn of the event loop: the common case, reading and
        // not paused, returns before taking the lock.
        if !want && run.paused.is_none() {
            return;
        }
        let assignments = run.shared.lock().expect("lock").assignments;
        if want && run.paused == Some(assignments) {
            return;
        }
        let tpl = match run.consumer.assignment() {
            Ok(tpl) => tpl,
            Err(e) => {
                tracing::warn!(error = %e, "reading the assignment to pause or resume it failed");
                return;
            }
        };
        let result = if want {
            run.consumer.pause(&tpl)
        } else {
            run.consumer.resume(&tpl)
        };
        match result {
            Ok(()) => run.paused = want.then_some(assignments),
            Err(e) => {
                tracing::warn!(error = %e, pause = want, "pausing or resuming the partitions failed")
            }
        }
    }

    /// Whether to take another message: not while `max_in_flight` messages wait
    /// for a retry or a DLQ write, nor while the store is failing or behind.
    fn can_read(&self, run: &Run) -> bool {
        let held = run.persist.as_ref().map_or(0, Persister::held);
        let unfinished = run.shared.lock().expect("lock").offsets.unfinished();
        unfinished.saturating_sub(held) < self.config.max_in_flight
            && held < persist::MAX_HELD
            && !run.persist.as_ref().is_some_and(Persister::paused)
    }

    /// Lets pending DLQ writes land (they are finished work), then commits.
    async fn finish(&mut self, run: &mut Run) {
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
            let Some(persist) = run.persist.as_mut() else {
                break;
            };
            persist.start(&run.shared);
            if !persist.writing() {
                break;
            }
            let (batch, result) = persist.written().await;
            self.stored(run, batch, result).await;
        }
        self.commit(run, CommitMode::Sync);
    }

    /// Takes in the end of a store write; the offsets it reaches become committable.
    async fn stored(
        &mut self,
        run: &mut Run,
        batch: store::Batch,
        result: Result<store::Applied, store::Error>,
    ) {
        let Some(persist) = run.persist.as_mut() else {
            return;
        };
        let Some((applied, stored)) = persist.done(batch, result, &run.shared) else {
            return;
        };
        run.report.finished += stored.len() as u64;
        if !stored.is_empty() {
            self.observer.on_event(&Event::Stored { orders: &stored });
        }
        if applied.duplicates > 0 {
            // Redelivered orders were not applied again; show the stored truth.
            match persist.store().aggregates().await {
                Ok(a) => run.report.aggregates = a,
                Err(e) => tracing::warn!(error = %e, "reloading aggregates failed"),
            }
        }
    }

    /// After an assignment, reads the stored positions of the new partitions and
    /// seeks there; messages below them were applied already and are skipped.
    async fn take_assignments(&mut self, run: &mut Run) -> Result<(), Error> {
        let assigned = std::mem::take(&mut run.shared.lock().expect("lock").assigned);
        let Some(persist) = run.persist.as_mut() else {
            return Ok(());
        };
        if assigned.is_empty() {
            return Ok(());
        }
        persist.load_floors().await?;
        let mut shared = run.shared.lock().expect("lock");
        for p in assigned {
            let Some(&next) = persist.floors.get(&p) else {
                continue;
            };
            shared.offsets.assign_at(p, next);
            // Fails harmlessly if fetching has not started; the floor still applies.
            if let Err(e) =
                run.consumer
                    .seek(&self.config.topic, p, Offset::Offset(next), Duration::ZERO)
            {
                tracing::debug!(partition = p, error = %e, "seek to stored offset deferred");
            }
        }
        Ok(())
    }

    /// A message's work is done: durable at once without a store, else once its
    /// batch is committed.
    fn complete(&mut self, run: &mut Run, mut job: Job, status: Status) {
        let Some(persist) = run.persist.as_mut() else {
            run.shared
                .lock()
                .expect("lock")
                .offsets
                .finished(job.partition, job.offset);
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
        });
    }

    /// Commits what is finished and not yet known to be committed. An offset
    /// counts as committed once the broker says so: at once for a sync commit,
    /// through the commit callback for an async one (until then, each tick sends
    /// it again).
    fn commit(&self, run: &mut Run, mode: CommitMode) {
        let mut shared = run.shared.lock().expect("lock");
        for (p, o) in std::mem::take(&mut *run.confirmed.lock().expect("confirmed lock")) {
            shared.offsets.committed(p, o);
        }
        let commits = shared.offsets.to_commit(None);
        if commits.is_empty() {
            return;
        }
        match run
            .consumer
            .commit(&commit_list(&self.config.topic, &commits), mode)
        {
            Ok(()) if matches!(mode, CommitMode::Sync) => {
                for (p, o) in commits {
                    shared.offsets.committed(p, o);
                }
            }
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "offset commit failed; will retry"),
        }
    }

    fn forget_revoked(&mut self, run: &mut Run) {
        let revoked = std::mem::take(&mut run.shared.lock().expect("lock").revoked);
        for p in revoked {
            run.queues.drop_partition(p);
            if let Some(persist) = run.persist.as_mut() {
                persist.revoke(p);
            }
        }
    }

    fn received(&mut self, run: &mut Run, job: Job) {
        if let Some(floor) = run
            .persist
            .as_ref()
            .and_then(|p| p.floors.get(&job.partition))
            && job.offset < *floor
        {
            return; // applied to the store before
        }
        let owned = run
            .shared
            .lock()
            .expect("lock")
            .offsets
            .received(job.partition, job.offset);
        if !owned {
            tracing::debug!(
                partition = job.partition,
                offset = job.offset,
                "message of a partition no longer assigned; its next owner reads it"
            );
            return;
        }
        let qk = job.qkey();
        if run.queues.is_blocked(&qk) {
            run.queues.push(&qk, job);
            return;
        }
        self.work(run, qk, std::iter::once(job).collect());
    }

    /// Works through a key's queue in order until it is empty or its head has to wait.
    fn work(&mut self, run: &mut Run, qk: QKey, mut jobs: std::collections::VecDeque<Job>) {
        while let Some(mut job) = jobs.pop_front() {
            match self.attempt(run, &mut job) {
                Outcome::Done => self.complete(run, job, Status::Processed),
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

    fn retry(&mut self, run: &mut Run, qk: QKey, generation: u64) {
        if let Some(jobs) = run.queues.unblock(&qk, generation) {
            self.work(run, qk, jobs);
        }
    }

    fn delivered(
        &mut self,
        run: &mut Run,
        qk: QKey,
        generation: u64,
        result: Result<(), KafkaError>,
    ) -> Result<(), Error> {
        let Some(mut jobs) = run.queues.unblock(&qk, generation) else {
            return Ok(()); // the partition was revoked meanwhile
        };
        let Err(e) = result else {
            let head = jobs.pop_front().expect("a blocked key has a head");
            self.dead_lettered(run, head);
            self.work(run, qk, jobs);
            return Ok(());
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
    fn delivered_final(
        &mut self,
        run: &mut Run,
        qk: QKey,
        generation: u64,
        result: Result<(), KafkaError>,
    ) {
        if let (Ok(()), Some(mut jobs)) = (result, run.queues.unblock(&qk, generation)) {
            let head = jobs.pop_front().expect("a blocked key has a head");
            self.dead_lettered(run, head);
        }
    }

    fn dead_lettered(&mut self, run: &mut Run, job: Job) {
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
        });
        self.complete(run, job, Status::Dlq);
    }

    fn attempt(&mut self, run: &mut Run, job: &mut Job) -> Outcome {
        if job.dlq_pending {
            return Outcome::DeadLetter;
        }
        if job.decoded.is_none() {
            match self.decoder.decode(&job.payload) {
                Ok(d) => job.decoded = Some(d),
                Err(e) => return self.permanent(job, describe_decode_error(&e)),
            }
        }
        let order = &job.decoded.as_ref().expect("decoded above").0;
        if let Err(e) = order.validate() {
            return self.permanent(job, format!("invalid order: {e}"));
        }
        job.attempts += 1;
        let result = self.handler.handle(order, job.attempts);
        if let Err(Failure::Transient(reason) | Failure::Permanent(reason)) = &result {
            job.note_failure(reason);
        }
        let (order, format) = job.decoded.as_ref().expect("decoded above");
        match result {
            Ok(()) => {
                run.report.aggregates.add(order);
                run.report.processed += 1;
                self.observer.on_event(&Event::Processed {
                    order,
                    format: *format,
                    avg: run.report.aggregates.total.avg(),
                    partition: job.partition,
                    offset: job.offset,
                });
                Outcome::Done
            }
            Err(Failure::Permanent(reason)) => self.dead_letter(job, reason, ErrorKind::Permanent),
            Err(Failure::Transient(reason)) => {
                run.report.failed_attempts += 1;
                let max = self.config.max_attempts;
                let retry_in = if job.attempts < max {
                    self.config.backoff.delay(job.attempts)
                } else {
                    Duration::ZERO
                };
                self.observer.on_event(&Event::AttemptFailed {
                    order_id: &order.order_id,
                    attempt: job.attempts,
                    max_attempts: max,
                    reason: &reason,
                    retry_in,
                });
                if job.attempts < max {
                    Outcome::Retry(retry_in)
                } else {
                    self.dead_letter(job, reason, ErrorKind::Transient)
                }
            }
        }
    }

    fn permanent(&self, job: &mut Job, reason: String) -> Outcome {
        job.attempts += 1;
        job.note_failure(&reason);
        self.dead_letter(job, reason, ErrorKind::Permanent)
    }

    fn dead_letter(&self, job: &mut Job, reason: String, kind: ErrorKind) -> Outcome {
        job.dlq_reason = Some((reason, kind));
        Outcome::DeadLetter
    }

    fn send_dlq(&self, run: &mut Run) {
        run.dlq.send_next(&run.queues, |job| self.dlq_record(job));
    }

    /// The DLQ record of a job bound for the DLQ: the seed's JSON value, and
    /// headers that say where the order came from and how it failed; cut to what
    /// the producer may send (see `DlqValue::fitted`).
    fn dlq_record(&self, job: &Job) -> DlqRecord {
        let (reason, kind) = job
            .dlq_reason
            .as_ref()
            .expect("jobs bound for the DLQ carry a reason");
        let now = SystemTime::now();
        let provenance = Provenance {
            topic: &self.config.topic,
            partition: job.partition,
            offset: job.offset,
            timestamp_ms: job.timestamp_ms,
            group: &self.config.group,
            attempts: job.attempts,
            kind: *kind,
            first_failure: job.first_failure.unwrap_or(now),
            last_failure: job.last_failure.unwrap_or(now),
        };
        let mut pairs = provenance.headers();
        let key = job
            .key
            .as_ref()
            .map(|k| k[..k.len().min(DLQ_KEY_MAX)].to_vec());
        let key_cut = job.key.as_ref().is_some_and(|k| k.len() > DLQ_KEY_MAX);
        let fixed = pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + key.as_ref().map_or(0, Vec::len)
            + DLQ_RECORD_SLACK;
        let max_value = if job.dlq_refused_size {
            0
        } else {
            self.config.kafka.message_max_bytes().saturating_sub(fixed)
        };
        let (payload, truncated) = DlqValue::fitted(
            job.decoded.as_ref().map(|(o, _)| o),
            &job.payload,
            reason,
            max_value,
        );
        let cut: Vec<&str> = [(key_cut, "key"), (truncated.is_some(), "value")]
            .into_iter()
            .filter_map(|(cut, part)| cut.then_some(part))
            .collect();
        if !cut.is_empty() {
            pairs.push((H_TRUNCATED, cut.join(",")));
        }
        if let Some(t) = truncated {
            pairs.push((H_ORIGINAL_SIZE, t.size.to_string()));
            pairs.push((H_ORIGINAL_SHA256, t.sha256));
        }
        let (mut headers, mut header_bytes) = (OwnedHeaders::new(), 0);
        for (k, v) in pairs {
            header_bytes += k.len() + v.len();
            headers = headers.insert(Header {
                key: k,
                value: Some(&v),
            });
        }
        DlqRecord {
            key,
            payload,
            headers,
            header_bytes,
        }
    }
}

/// The longest key a DLQ record repeats: keys are ids, and one near the record
/// limit would leave no room for the rest.
const DLQ_KEY_MAX: usize = 16 * 1024;
/// Room in a DLQ record for its framing and the truncation headers.
const DLQ_RECORD_SLACK: usize = 512;

/// Starts writing what waits for the store, unless a write is under way.
fn start_write(run: &mut Run) {
    if let Some(persist) = run.persist.as_mut() {
        persist.start(&run.shared);
    }
}

fn describe_decode_error(e: &DecodeError) -> String {
    format!("undecodable message: {e}")
}

/// A consumer error librdkafka will not recover from: among them a static member
/// fenced by another processor that joined under the same instance id.
fn is_fatal(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::ClientCreation(_)
            | KafkaError::Subscription(_)
            | KafkaError::MessageConsumptionFatal(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_fault_that_clears_fails_only_the_first_attempts() {
        let rule: FailWhen = "price>100".parse().unwrap();
        let mut order = crate::order::random_order();
        order.price = Some(120.0);
        let mut clears = Simulated {
            fail_when: Some(rule),
            fail_attempts: Some(2),
        };
        let ok: Vec<bool> = (1..=4).map(|a| clears.handle(&order, a).is_ok()).collect();
        assert_eq!(ok, [false, false, true, true]);
        let mut stays = Simulated {
            fail_when: Some(rule),
            fail_attempts: None,
        };
        assert!((1..=4).all(|a| stays.handle(&order, a).is_err()));
        order.price = Some(50.0);
        assert!(clears.handle(&order, 1).is_ok());
    }
}
