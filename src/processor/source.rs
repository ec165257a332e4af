//! Where the processor's messages come from: the group consumer, the partitions
//! assigned to this member and the offsets of what it has read, finished and
//! committed. librdkafka changes this state from its rebalance callbacks (inside
//! `recv`), the event loop from everything else; one lock keeps the two in step.

use std::{
    ffi::CString,
    sync::{Arc, Mutex},
    time::Duration,
};

use rdkafka::{
    ClientContext, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::{KafkaError, KafkaResult},
    message::BorrowedMessage,
};

use super::{Config, Error, offsets::Offsets};
use crate::kafka;

/// State shared with the rebalance callbacks.
#[derive(Default)]
struct Shared {
    offsets: Offsets,
    /// What rebalances changed since the event loop last looked, in the order
    /// they happened.
    changes: Vec<Change>,
    /// Counts assignments: a partition assigned while reading is paused must be
    /// paused too.
    assignments: u64,
}

/// One partition's move into or out of this member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Revoked(i32),
    Assigned(i32),
}

impl Shared {
    fn apply(&mut self, change: Change) {
        match change {
            Change::Revoked(p) => self.offsets.revoke(p),
            Change::Assigned(p) => self.offsets.assign(p),
        }
        self.changes.push(change);
    }

    /// Takes in the commits the broker has confirmed; returns what is finished
    /// and still to commit.
    fn take_confirmed(&mut self, confirmed: &Mutex<Vec<(i32, i64)>>) -> Vec<(i32, i64)> {
        for (p, o) in std::mem::take(&mut *confirmed.lock().expect("confirmed lock")) {
            self.offsets.committed(p, o);
        }
        self.offsets.to_commit(None)
    }
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
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
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
        for p in revoked {
            shared.apply(Change::Revoked(p));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut shared = self.shared.lock().expect("processor state lock");
            for e in tpl.elements() {
                shared.apply(Change::Assigned(e.partition()));
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

pub struct Source {
    consumer: StreamConsumer<Context>,
    topic: String,
    /// The topic for librdkafka's C API (see [`Source::lag`]).
    topic_c: CString,
    shared: Arc<Mutex<Shared>>,
    confirmed: Arc<Mutex<Vec<(i32, i64)>>>,
    /// Set while fetching is paused, to the assignment count it was paused at.
    paused: Option<u64>,
}

impl Source {
    /// Creates the group consumer and subscribes it to the order topic.
    pub fn subscribe(cfg: &Config, instance_id: Option<&str>) -> Result<Self, Error> {
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
        if let Some(id) = instance_id
            && consumer_config.get("group.instance.id").is_none()
        {
            tracing::info!(group = %cfg.group, instance = %id, "joining as a static member");
            consumer_config.set("group.instance.id", id);
        }
        let shared = Arc::new(Mutex::new(Shared::default()));
        let confirmed: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
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
        Ok(Source {
            consumer,
            topic: cfg.topic.clone(),
            topic_c: CString::new(cfg.topic.as_str()).map_err(|_| Error::Subscribe {
                topic: cfg.topic.clone(),
                source: KafkaError::Subscription("a topic name holds no NUL byte".into()),
            })?,
            shared,
            confirmed,
            paused: None,
        })
    }

    /// The next message. Rebalance callbacks run in here, and only in here,
    /// also when it returns nothing: look at [`Source::take_changes`] after
    /// each turn that polled it.
    pub async fn recv(&self) -> KafkaResult<BorrowedMessage<'_>> {
        self.consumer.recv().await
    }

    pub fn offsets<R>(&self, f: impl FnOnce(&mut Offsets) -> R) -> R {
        f(&mut self.shared.lock().expect("processor state lock").offsets)
    }

    /// What librdkafka's rebalance callbacks do to the state, for tests that
    /// need a rebalance at a given moment.
    #[cfg(test)]
    pub fn rebalance(&self, changes: &[Change]) {
        let mut shared = self.shared.lock().expect("processor state lock");
        for c in changes {
            shared.apply(*c);
        }
    }

    /// What rebalances changed since the last call, oldest first.
    pub fn take_changes(&self) -> Vec<Change> {
        std::mem::take(&mut self.shared.lock().expect("processor state lock").changes)
    }

    /// Starts reading `partition` at `next` (a stored position): below it,
    /// everything was applied already.
    pub fn start_at(&self, partition: i32, next: i64) {
        self.offsets(|o| o.assign_at(partition, next));
        // Fails harmlessly if fetching has not started; the floor still applies.
        if let Err(e) =
            self.consumer
                .seek(&self.topic, partition, Offset::Offset(next), Duration::ZERO)
        {
            tracing::debug!(partition, error = %e, "seek to stored offset deferred");
        }
    }

    /// Per assigned partition, how many messages are not finished: the high
    /// watermark librdkafka last saw in a fetch response, less the position a
    /// commit would reach. Local, unlike `fetch_watermarks` (a broker round
    /// trip), and the same on every broker, unlike the statistics' lag (which
    /// counts from the last commit). A partition counts once it has both: a
    /// fetch answered and a message received or a stored position. While
    /// fetching is paused the watermark is that of the last fetch.
    pub fn lag(&self) -> Vec<(i32, i64)> {
        let positions = self.offsets(|o| o.positions());
        positions
            .into_iter()
            .filter_map(|(p, safe)| {
                let (mut low, mut high) = (-1i64, -1i64);
                // SAFETY: the client pointer lives as long as `self.consumer`;
                // the topic is a NUL-terminated string that outlives the call;
                // librdkafka only writes the two offsets.
                let err = unsafe {
                    rdkafka::bindings::rd_kafka_get_watermark_offsets(
                        self.consumer.client().native_ptr(),
                        self.topic_c.as_ptr(),
                        p,
                        &mut low,
                        &mut high,
                    )
                };
                // An offset not known yet is RD_KAFKA_OFFSET_INVALID (-1001).
                (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                    && high >= 0)
                    .then(|| (p, (high - safe).max(0)))
            })
            .collect()
    }

    /// Whether every assigned partition is read to its end (asks the broker).
    pub fn caught_up(
        &self,
        client: &rdkafka::client::Client<impl ClientContext>,
    ) -> KafkaResult<bool> {
        kafka::caught_up(&self.consumer, client)
    }

    /// Commits what is finished and not yet known to be committed. An offset
    /// counts as committed once the broker says so: at once for a sync commit,
    /// through the commit callback for an async one (until then, each tick sends
    /// it again).
    pub fn commit(&self, mode: CommitMode) {
        let mut shared = self.shared.lock().expect("processor state lock");
        let commits = shared.take_confirmed(&self.confirmed);
        if commits.is_empty() {
            return;
        }
        match self
            .consumer
            .commit(&commit_list(&self.topic, &commits), mode)
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

    /// A fatal consumer error says only that there is one: librdkafka keeps the
    /// cause (say, FencedInstanceId) apart.
    pub fn with_fatal_cause(&self, e: KafkaError) -> KafkaError {
        match (&e, self.consumer.client().fatal_error()) {
            (KafkaError::MessageConsumptionFatal(_), Some((code, _))) => {
                KafkaError::MessageConsumptionFatal(code)
            }
            _ => e,
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    /// Pauses fetching from every assigned partition (`want`), or resumes it.
    /// Polling goes on meanwhile, so the member still takes part in rebalances.
    /// Messages queued before the pause still arrive and are taken in.
    pub fn pause_or_resume(&mut self, want: bool) {
        // Called on every turn of the event loop: the common case, reading and
        // not paused, returns before taking the lock.
        if !want && self.paused.is_none() {
            return;
        }
        let assignments = self
            .shared
            .lock()
            .expect("processor state lock")
            .assignments;
        if want && self.paused == Some(assignments) {
            return;
        }
        let tpl = match self.consumer.assignment() {
            Ok(tpl) => tpl,
            Err(e) => {
                tracing::warn!(error = %e, "reading the assignment to pause or resume it failed");
                return;
            }
        };
        let result = if want {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        match result {
            Ok(()) => self.paused = want.then_some(assignments),
            Err(e) => {
                tracing::warn!(error = %e, pause = want, "pausing or resuming the partitions failed")
            }
        }
    }
}

/// A consumer error librdkafka will not recover from: among them a static member
/// fenced by another processor that joined under the same instance id.
pub fn is_fatal(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::ClientCreation(_)
            | KafkaError::Subscription(_)
            | KafkaError::MessageConsumptionFatal(_)
    )
}

#[cfg(test)]
mod tests {
    use rdkafka::types::RDKafkaErrorCode;

    use super::*;

    fn context() -> Context {
        Context {
            topic: "orders".into(),
            shared: Arc::default(),
            confirmed: Arc::default(),
        }
    }

    #[test]
    fn an_async_commit_counts_only_once_the_broker_confirms_it() {
        let ctx = context();
        let committed = |ctx: &Context| ctx.shared.lock().unwrap().take_confirmed(&ctx.confirmed);
        {
            let o = &mut ctx.shared.lock().unwrap().offsets;
            o.assign(0);
            o.received(0, 0);
            o.finished(0, 0);
        }
        let sent = commit_list("orders", &[(0, 1)]);
        ctx.commit_callback(
            Err(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::RebalanceInProgress,
            )),
            &sent,
        );
        assert_eq!(committed(&ctx), [(0, 1)], "a failed commit is sent again");
        ctx.commit_callback(Ok(()), &sent);
        assert!(committed(&ctx).is_empty(), "a confirmed one is not");
    }
}
