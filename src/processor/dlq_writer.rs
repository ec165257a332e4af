//! The DLQ writer: one produce request's worth of records in flight at a time.
//!
//! librdkafka 2.12's idempotent producer caps a partition at 5 requests in flight,
//! but it counts the messages in flight against that cap, not the requests
//! (`rd_kafka_toppar_producer_serve`, librdkafka PR #4989): once a request with 5
//! or more messages is out, the next waits for its answer. Meanwhile, with that
//! next batch ready, its broker thread polls without sleeping. Against a broker
//! that answers a DLQ request in 0.3-2 s, as the embedded one does while serving
//! fetches, that spin took a whole core from the processor's host for as long as
//! DLQ writes were queued behind one another. So the writer hands librdkafka the
//! next group of records only once the last group has landed: requests go out as
//! often as librdkafka would send them anyway, and none waits inside it.
//! The producer has orderflow's common settings: a group is all queued well within
//! their 5 ms `linger.ms`, so it goes out as one request per DLQ partition.
//!
//! The price: a group spans the DLQ topic's partitions, so a partition whose leader
//! is slow or gone holds back the DLQ writes bound for the others too, for up to
//! librdkafka's `message.timeout.ms` (then the writes fail and are retried), and
//! reading stops once `--max-in-flight` messages wait. Without the group, only that
//! partition's writes waited (and the processor's host spun).

use std::collections::VecDeque;

use futures::{StreamExt, stream::FuturesUnordered};
use rdkafka::{
    error::KafkaError,
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
};

use super::{
    dlq_record::DlqRecord,
    keys::{Job, KeyQueues, QKey},
};

/// The most records and bytes of one group, so that it fits one produce request
/// (librdkafka's `batch.num.messages` 10,000 and `batch.size` 1,000,000 by
/// default): half the records, as DLQ records are far larger than the 100 bytes
/// that would take 10,000 to 1 MB anyway, and room in the bytes for the record
/// framing the estimate below leaves out.
const GROUP_RECORDS: usize = 5_000;
const GROUP_BYTES: usize = 800_000;
/// A landed (or failed) DLQ write: the key, its generation, and where the record went.
pub type Delivery = (QKey, u64, Result<(i32, i64), KafkaError>);
type Pending = std::pin::Pin<Box<dyn Future<Output = Delivery> + Send>>;

pub struct DlqWriter {
    producer: FutureProducer,
    topic: String,
    in_flight: FuturesUnordered<Pending>,
    /// Keys blocked by `generation` whose head is owed a DLQ write, in order.
    waiting: VecDeque<(QKey, u64)>,
}

impl DlqWriter {
    /// The writer's client, free to ask the cluster questions that the consumer's
    /// connection would answer only after its pending fetch.
    pub fn client(&self) -> &rdkafka::client::Client<impl rdkafka::ClientContext> {
        rdkafka::producer::Producer::client(&self.producer)
    }

    pub fn new(producer: FutureProducer, topic: String) -> Self {
        DlqWriter {
            producer,
            topic,
            in_flight: FuturesUnordered::new(),
            waiting: VecDeque::new(),
        }
    }

    /// Owes the head job of `qk` (blocked by `generation`) a DLQ write.
    pub fn owe(&mut self, qk: QKey, generation: u64) {
        self.waiting.push_back((qk, generation));
    }

    pub fn in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Nothing in flight and nothing owed.
    pub fn is_idle(&self) -> bool {
        self.pending() == 0
    }

    /// Writes in flight or owed (keys revoked since they were owed included).
    pub fn pending(&self) -> usize {
        self.in_flight.len() + self.waiting.len()
    }

    /// Starts the next group of owed records, unless a group is still in flight.
    /// Keys revoked (or re-blocked) since they were owed are skipped. The records
    /// reach librdkafka when `landed` is next polled, which polls every new send
    /// at once: the caller polls it right after, in its event loop.
    pub fn send_next(&mut self, queues: &KeyQueues, record: impl Fn(&Job) -> DlqRecord) {
        if self.in_flight() {
            return;
        }
        let mut bytes = 0;
        while self.in_flight.len() < GROUP_RECORDS
            && let Some((qk, generation)) = self.waiting.pop_front()
        {
            let Some(job) = queues.head(&qk, generation) else {
                continue;
            };
            let r = record(job);
            let size = r.size();
            if bytes > 0 && bytes + size > GROUP_BYTES {
                self.waiting.push_front((qk, generation));
                break;
            }
            bytes += size;
            self.in_flight.push(self.send(qk, generation, r));
        }
    }

    fn send(&self, qk: QKey, generation: u64, r: DlqRecord) -> Pending {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        Box::pin(async move {
            let mut fr = FutureRecord::to(&topic)
                .payload(&r.payload)
                .headers(r.headers);
            if let Some(k) = r.key.as_deref() {
                fr = fr.key(k);
            }
            let result = producer
                .send(fr, Timeout::After(std::time::Duration::from_secs(30)))
                .await
                .map(|d| (d.partition, d.offset))
                .map_err(|(e, _)| e);
            (qk, generation, result)
        })
    }

    /// The next write to land; pending while none is in flight.
    pub async fn landed(&mut self) -> Delivery {
        match self.in_flight.next().await {
            Some(d) => d,
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::{kafka::KafkaConfig, processor::keys::tests::job};

    fn record(payload_len: usize) -> DlqRecord {
        DlqRecord {
            key: None,
            payload: vec![b'x'; payload_len],
            headers: rdkafka::message::OwnedHeaders::new(),
            header_bytes: 0,
        }
    }

    /// A writer whose producer never reaches a broker. The tests never poll
    /// `landed`, so nothing reaches librdkafka: they check what is started.
    fn writer() -> DlqWriter {
        let producer = KafkaConfig::new("127.0.0.1:1")
            .producer()
            .expect("a producer needs no broker to be created");
        DlqWriter::new(producer, "dlq".into())
    }

    /// Blocks a key in `partition` with one job and owes it a DLQ write.
    fn owe_one(w: &mut DlqWriter, q: &mut KeyQueues, partition: i32) {
        let j = job(partition, 0);
        let qk = j.qkey();
        let generation = q.block(qk.clone(), VecDeque::from([j]), None);
        w.owe(qk, generation);
    }

    /// Keys in partitions 0..n, each blocked with one job and owed a DLQ write.
    fn owed(w: &mut DlqWriter, n: i32) -> KeyQueues {
        let mut q = KeyQueues::default();
        for p in 0..n {
            owe_one(w, &mut q, p);
        }
        q
    }

    #[tokio::test]
    async fn no_group_starts_while_one_is_in_flight() {
        let mut w = writer();
        let mut q = owed(&mut w, 3);
        w.send_next(&q, |_| record(100));
        assert_eq!((w.in_flight.len(), w.waiting.len()), (3, 0));
        owe_one(&mut w, &mut q, 7);
        w.send_next(&q, |_| record(100));
        assert_eq!(
            (w.in_flight.len(), w.waiting.len()),
            (3, 1),
            "nothing more is sent while a group is in flight"
        );
        assert!(!w.is_idle());
    }

    #[tokio::test]
    async fn a_group_stays_within_one_request() {
        let mut w = writer();
        let q = owed(&mut w, 3);
        w.send_next(&q, |_| record(GROUP_BYTES / 2));
        assert_eq!((w.in_flight.len(), w.waiting.len()), (1, 2));
    }

    #[tokio::test]
    async fn keys_revoked_since_they_were_owed_are_skipped() {
        let mut w = writer();
        let mut q = owed(&mut w, 3);
        q.drop_partition(1);
        w.send_next(&q, |_| record(100));
        assert_eq!((w.in_flight.len(), w.waiting.len()), (2, 0));
    }
}
