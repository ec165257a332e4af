//! Hands finished work to the store in batches. A message's offset counts as
//! finished only once its batch is committed in the database, together with the
//! offsets it reaches; if the database is down, the batch waits and consumption
//! pauses until it is back.
//!
//! One batch is written at a time, on a blocking thread (SQLite runs on the
//! calling thread), while the processor goes on reading and fills the next one.
//! When the write ends, the next batch takes everything that waits: the slower
//! the store, the bigger (and the cheaper per order) its batches.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{task::JoinHandle, time::Instant};

use super::{backoff::Backoff, offsets::Offsets};
use crate::store::{self, Applied, Batch, Finished, Store};

/// Start a write when this many orders are waiting... Ids from producers that
/// make them random (UUID v4) put each order's index entry on a random page, and
/// a commit writes every page it touched to the WAL: the more orders share a
/// commit, the fewer pages each one costs (SQLite, 200,000 such orders: 223,000
/// WAL writes with batches of 2,000, 156,000 with 5,000).
pub const MAX_BATCH: usize = 5000;
/// ...or when the oldest has waited this long.
pub const MAX_WAIT: Duration = Duration::from_millis(20);
/// Reading stops while this many orders wait for the store or are being written:
/// a bound on memory when the store is slower than the topic.
pub const MAX_HELD: usize = 2 * MAX_BATCH;

/// A write's batch, its result and how long its transaction took.
type Write = JoinHandle<(Batch, Result<Applied, store::Error>, Duration)>;

pub struct Persister {
    store: Arc<Store>,
    group: String,
    topic: String,
    /// What waits for the next write.
    waiting: Vec<Finished>,
    oldest: Option<Instant>,
    writing: Option<Write>,
    /// How many orders the write under way holds.
    writing_len: usize,
    /// Partitions revoked while a write was under way: if it fails, their orders
    /// are not written again (the new owner redoes them).
    revoked_while_writing: Vec<i32>,
    /// While the store is failing: when to try again, and how often it failed.
    retry_at: Option<Instant>,
    failures: u32,
    backoff: Backoff,
}

impl Persister {
    pub fn new(store: Arc<Store>, group: &str, topic: &str) -> Self {
        Persister {
            store,
            group: group.to_string(),
            topic: topic.to_string(),
            waiting: Vec::new(),
            oldest: None,
            writing: None,
            writing_len: 0,
            revoked_while_writing: Vec::new(),
            retry_at: None,
            failures: 0,
            backoff: Backoff {
                base: Duration::from_millis(500),
                max: Duration::from_secs(15),
            },
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn push(&mut self, f: Finished) {
        self.oldest.get_or_insert_with(Instant::now);
        self.waiting.push(f);
    }

    /// True while the store is failing: the processor stops reading.
    pub fn paused(&self) -> bool {
        self.retry_at.is_some()
    }

    pub fn writing(&self) -> bool {
        self.writing.is_some()
    }

    /// Finished orders not stored yet: waiting, or in the write under way.
    pub fn held(&self) -> usize {
        self.waiting.len() + self.writing_len
    }

    /// Whether to start a write when the processor has nothing else to do: there
    /// is work waiting, no write under way and the store is not failing.
    pub fn idle_flush(&self) -> bool {
        !self.waiting.is_empty() && self.writing.is_none() && self.retry_at.is_none()
    }

    /// When the next write should start; none while one is under way (its end
    /// wakes the processor).
    pub fn due(&self) -> Option<Instant> {
        match (self.retry_at, self.oldest) {
            _ if self.writing.is_some() => None,
            (Some(r), _) => Some(r),
            (None, Some(o)) if self.waiting.len() >= MAX_BATCH => Some(o),
            (None, Some(o)) => Some(o + MAX_WAIT),
            (None, None) => None,
        }
    }

    /// Starts writing what waits, with the offsets it reaches, in one
    /// transaction. Its offsets count as finished only once the write succeeds,
    /// so a Kafka commit meanwhile stops short of them.
    pub fn start(&mut self, o: &mut Offsets) {
        if self.writing.is_some() || self.waiting.is_empty() {
            return;
        }
        let finished = std::mem::take(&mut self.waiting);
        for f in &finished {
            o.finished(f.partition, f.offset);
        }
        let offsets = o.positions();
        for f in &finished {
            o.unfinish(f.partition, f.offset);
        }
        let batch = Batch {
            group: self.group.clone(),
            topic: self.topic.clone(),
            finished,
            offsets,
        };
        self.oldest = None;
        self.writing_len = batch.finished.len();
        let store = self.store.clone();
        let runtime = tokio::runtime::Handle::current();
        self.writing = Some(tokio::task::spawn_blocking(move || {
            // Timed here, not by the event loop: its turn may come later.
            let started = Instant::now();
            let result = runtime.block_on(store.apply(&batch));
            (batch, result, started.elapsed())
        }));
    }

    /// Waits for the write under way. Cancel-safe: it can lose a `select!` and
    /// be called again.
    pub async fn written(&mut self) -> (Batch, Result<Applied, store::Error>, Duration) {
        let write = self.writing.as_mut().expect("a write is under way");
        let done = write.await;
        self.writing = None;
        self.writing_len = 0;
        done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// Takes in the end of a write. Returns what was applied and the stored
    /// orders, or `None` when the store failed: the orders wait again, ahead of
    /// the newer ones, and consumption pauses until the retry.
    pub fn done(
        &mut self,
        batch: Batch,
        result: Result<Applied, store::Error>,
        o: &mut Offsets,
    ) -> Option<(Applied, Vec<Finished>)> {
        let revoked = std::mem::take(&mut self.revoked_while_writing);
        let mut failed = match result {
            Ok(applied) => {
                for f in &batch.finished {
                    o.finished(f.partition, f.offset);
                }
                if self.failures > 0 {
                    eprintln!("store is available again; resuming consumption");
                }
                self.failures = 0;
                self.retry_at = None;
                return Some((applied, batch.finished));
            }
            Err(e) => {
                self.failures += 1;
                let wait = self.backoff.delay(self.failures);
                eprintln!(
                    "store unavailable ({e}); consumption paused, {} orders waiting, retrying in {:.1}s",
                    batch.finished.len() + self.waiting.len(),
                    wait.as_secs_f64()
                );
                self.retry_at = Some(Instant::now() + wait);
                batch.finished
            }
        };
        failed.retain(|f| !revoked.contains(&f.partition));
        failed.append(&mut self.waiting);
        self.waiting = failed;
        if !self.waiting.is_empty() {
            self.oldest.get_or_insert_with(Instant::now);
        }
        None
    }

    /// Drops waiting work of revoked partitions: the new owner redoes it.
    pub fn revoke(&mut self, partition: i32) {
        self.waiting.retain(|f| f.partition != partition);
        if self.writing.is_some() {
            self.revoked_while_writing.push(partition);
        }
        if self.waiting.is_empty() {
            self.oldest = None;
        }
    }

    /// Per partition, the stored next offset: anything below it is already applied.
    pub async fn stored_positions(&self) -> Result<HashMap<i32, i64>, store::Error> {
        self.store.offsets(&self.group, &self.topic).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Status;

    fn finished(partition: i32, offset: i64) -> Finished {
        Finished {
            id: format!("p{partition}-{offset}"),
            order: None,
            status: Status::Dlq,
            attempts: 1,
            last_error: Some("undecodable".into()),
            partition,
            offset,
            produced_ms: None,
            received_ms: 0,
            processed_ms: 0,
            timeline: Vec::new(),
            dead_letter: None,
        }
    }

    fn waiting(p: &Persister) -> Vec<&str> {
        p.waiting.iter().map(|f| f.id.as_str()).collect()
    }

    fn positions(o: &Offsets) -> Vec<(i32, i64)> {
        let mut p = o.positions();
        p.sort();
        p
    }

    #[tokio::test]
    async fn offsets_move_only_after_a_write_and_a_failed_write_waits_ahead_of_newer_work() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Arc::new(Store::connect(&url).await.unwrap());
        let mut o = Offsets::default();
        let mut p = Persister::new(store, "g", "t");
        o.assign(0);
        o.assign(1);
        for (partition, offset) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            o.received(partition, offset);
        }
        p.push(finished(0, 0));
        p.push(finished(1, 0));
        p.start(&mut o);
        assert!(p.writing() && p.due().is_none() && !p.idle_flush());
        p.push(finished(0, 1));
        p.push(finished(1, 1));
        p.start(&mut o); // one write at a time: this one waits
        assert_eq!(p.held(), 4);
        assert_eq!(
            positions(&o),
            [(0, 0), (1, 0)],
            "nothing counts as finished while its write is under way"
        );
        o.revoke(1);
        p.revoke(1);
        assert_eq!(waiting(&p), ["p0-1"]);

        let (batch, result, _) = p.written().await;
        let mut stored_with = batch.offsets.clone();
        stored_with.sort();
        assert_eq!(stored_with, [(0, 1), (1, 1)], "its offsets, stored with it");
        assert!(result.is_ok());
        // Had it failed: it waits again ahead of newer work, without the revoked
        // partition's orders, and reading pauses until the retry.
        let failed = p.done(batch, Err(store::Error::Corrupt("test".into())), &mut o);
        assert!(failed.is_none() && p.paused());
        assert_eq!(waiting(&p), ["p0-0", "p0-1"]);
        assert_eq!(positions(&o), [(0, 0)]);

        p.start(&mut o);
        let (batch, result, _) = p.written().await;
        let (applied, stored) = p.done(batch, result, &mut o).expect("stored");
        assert_eq!(
            (applied.inserted, stored.len()),
            (1, 2),
            "p0-0 was in already"
        );
        assert!(!p.paused() && p.held() == 0);
        assert_eq!(positions(&o), [(0, 2)]);
    }
}
