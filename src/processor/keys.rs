//! Per-key queues: while an order waits for a retry or for its DLQ write, later
//! orders with the same key queue behind it; other keys keep flowing.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, VecDeque},
    time::SystemTime,
};

use rdkafka::Message;
use tokio::time::Instant;

use super::Times;
use crate::{
    codec::Format,
    dlq::record::ErrorKind,
    order::{Order, now_ms},
    store::TimelineEvent,
};

/// What orders must stay in sequence with: the same key in the same partition.
/// Messages without a key have no ordering constraint, so each is its own queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QKey {
    Key(i32, Box<[u8]>),
    Solo(i32, i64),
}

impl QKey {
    fn partition(&self) -> i32 {
        match self {
            QKey::Key(p, _) | QKey::Solo(p, _) => *p,
        }
    }
}

/// One consumed message and what has happened to it so far.
#[derive(Debug)]
pub struct Job {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub attempts: u32,
    pub first_failure: Option<SystemTime>,
    pub last_failure: Option<SystemTime>,
    pub decoded: Option<(Order, Format)>,
    /// Set once the job is bound for the DLQ.
    pub dlq_reason: Option<(String, ErrorKind)>,
    /// A DLQ write failed and must be repeated.
    pub dlq_pending: bool,
    /// The DLQ refused the record as too large for it: write it again without
    /// the original bytes.
    pub dlq_refused_size: bool,
    pub received_ms: i64,
    /// The same moment on the monotonic clock, for the processing latency.
    pub received_at: Instant,
    /// How many replays of a dead letter this message is (its
    /// `orderflow.replay.count` header); 0 for a first delivery.
    pub replays: u32,
    /// Failed attempts, for the store.
    pub timeline: Vec<TimelineEvent>,
}

impl Job {
    pub fn from_message<M: Message>(m: &M) -> Self {
        Job {
            timestamp_ms: m.timestamp().to_millis(),
            replays: crate::dlq::record::replay_count(m.headers()),
            ..Job::new(
                m.partition(),
                m.offset(),
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
            )
        }
    }

    pub fn new(partition: i32, offset: i64, key: Option<Vec<u8>>, payload: Vec<u8>) -> Self {
        Job {
            partition,
            offset,
            timestamp_ms: None,
            key,
            payload,
            attempts: 0,
            first_failure: None,
            last_failure: None,
            decoded: None,
            dlq_reason: None,
            dlq_pending: false,
            dlq_refused_size: false,
            received_ms: now_ms(),
            received_at: Instant::now(),
            replays: 0,
            timeline: Vec::new(),
        }
    }

    pub fn qkey(&self) -> QKey {
        match &self.key {
            Some(k) => QKey::Key(self.partition, k.clone().into_boxed_slice()),
            None => QKey::Solo(self.partition, self.offset),
        }
    }

    pub fn note_failure(&mut self, reason: &str) {
        let now = SystemTime::now();
        self.first_failure.get_or_insert(now);
        self.last_failure = Some(now);
        self.timeline.push(TimelineEvent {
            at_ms: now_ms(),
            kind: "attempt_failed",
            detail: format!("attempt {}: {reason}", self.attempts),
        });
    }

    pub fn times(&self) -> Times {
        Times {
            produced_ms: self.timestamp_ms,
            received: self.received_at,
        }
    }

    /// The order id, or where the message sits when it could not be decoded.
    pub fn display_id(&self, topic: &str) -> String {
        match &self.decoded {
            Some((o, _)) => o.order_id.clone(),
            None => format!("{topic}[{}]@{}", self.partition, self.offset),
        }
    }
}

struct Blocked {
    generation: u64,
    jobs: VecDeque<Job>,
}

#[derive(Default)]
pub struct KeyQueues {
    blocked: HashMap<QKey, Blocked>,
    timers: BinaryHeap<Reverse<(Instant, u64, QKey)>>,
    next_generation: u64,
}

impl KeyQueues {
    pub fn is_blocked(&self, qk: &QKey) -> bool {
        self.blocked.contains_key(qk)
    }

    /// Queues a job behind a blocked key.
    pub fn push(&mut self, qk: &QKey, job: Job) {
        self.blocked
            .get_mut(qk)
            .expect("push only onto blocked keys")
            .jobs
            .push_back(job);
    }

    /// Blocks a key with `jobs` (head first); with `due`, the head is retried then.
    /// Returns the generation that identifies this blocking.
    pub fn block(&mut self, qk: QKey, jobs: VecDeque<Job>, due: Option<Instant>) -> u64 {
        self.next_generation += 1;
        let generation = self.next_generation;
        if let Some(due) = due {
            self.timers.push(Reverse((due, generation, qk.clone())));
        }
        self.blocked.insert(qk, Blocked { generation, jobs });
        generation
    }

    /// Takes a key's jobs back if it is still blocked by `generation` (not revoked
    /// and re-blocked since).
    pub fn unblock(&mut self, qk: &QKey, generation: u64) -> Option<VecDeque<Job>> {
        match self.blocked.get(qk) {
            Some(b) if b.generation == generation => self.blocked.remove(qk).map(|b| b.jobs),
            _ => None,
        }
    }

    /// The head job of a key, if it is still blocked by `generation`.
    pub fn head(&self, qk: &QKey, generation: u64) -> Option<&Job> {
        self.blocked
            .get(qk)
            .filter(|b| b.generation == generation)
            .and_then(|b| b.jobs.front())
    }

    /// Heads waiting for a timed retry: of their handling, or of a DLQ write
    /// that failed. Every timer belongs to a blocked key (revoking a partition
    /// drops both), so this is the timers' count.
    pub fn retries_waiting(&self) -> usize {
        self.timers.len()
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((due, _, _))| *due)
    }

    /// Keys whose retry time has come.
    pub fn take_due(&mut self, now: Instant) -> Vec<(QKey, u64)> {
        let mut due = Vec::new();
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, generation, qk)) = self.timers.pop().expect("peeked");
            due.push((qk, generation));
        }
        due
    }

    /// Forgets a revoked partition's waiting jobs; its new owner reads them again
    /// from the committed offset.
    pub fn drop_partition(&mut self, partition: i32) {
        self.blocked.retain(|qk, _| qk.partition() != partition);
        self.timers
            .retain(|Reverse((_, _, qk))| qk.partition() != partition);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::time::Duration;

    pub(in crate::processor) fn job(partition: i32, offset: i64) -> Job {
        Job::new(partition, offset, Some(b"k".to_vec()), Vec::new())
    }

    #[test]
    fn stale_generations_are_ignored() {
        let mut q = KeyQueues::default();
        let t0 = Instant::now();
        let qk = job(0, 1).qkey();
        let g1 = q.block(qk.clone(), VecDeque::from([job(0, 1)]), Some(t0));
        q.push(&qk, job(0, 2));
        q.drop_partition(0);
        assert!(!q.is_blocked(&qk));
        assert_eq!(q.next_due(), None);
        let g2 = q.block(
            qk.clone(),
            VecDeque::from([job(0, 3)]),
            Some(t0 + Duration::from_secs(1)),
        );
        assert!(
            q.unblock(&qk, g1).is_none(),
            "an old generation does not unblock a new one"
        );
        assert_eq!(q.take_due(t0), []);
        assert_eq!(q.take_due(t0 + Duration::from_secs(1)), [(qk.clone(), g2)]);
        assert_eq!(q.unblock(&qk, g2).unwrap()[0].offset, 3);
    }

    #[test]
    fn keyless_messages_are_independent() {
        let mut a = job(0, 1);
        a.key = None;
        let mut b = job(0, 2);
        b.key = None;
        assert_ne!(a.qkey(), b.qkey());
        assert_eq!(job(0, 1).qkey(), job(0, 2).qkey());
        assert_ne!(job(0, 1).qkey(), job(1, 1).qkey());
    }
}
