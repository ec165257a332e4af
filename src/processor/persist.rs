//! Hands finished work to the store in batches. A message's offset counts as
//! finished only once its batch is committed in the database, together with the
//! offsets it reaches; if the database is down, the batch waits and consumption
//! pauses until it is back.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::time::Instant;

use super::{Shared, backoff::Backoff};
use crate::store::{self, Applied, Batch, Finished, Store};

/// Flush when this many orders are waiting... Order ids are random, so each
/// order's index entry lands on a random page, and a commit writes every page it
/// touched to the WAL: the more orders share a commit, the fewer pages each one
/// costs (SQLite, 200,000 orders: 223,000 WAL writes with batches of 2,000,
/// 156,000 with 5,000).
pub const MAX_BATCH: usize = 5000;
/// ...or when the oldest has waited this long.
pub const MAX_WAIT: Duration = Duration::from_millis(20);

pub struct Persister {
    store: Arc<Store>,
    batch: Batch,
    oldest: Option<Instant>,
    /// While the store is failing: when to try again, and how often it failed.
    retry_at: Option<Instant>,
    failures: u32,
    backoff: Backoff,
    /// Per partition, the stored next offset: anything below it is already applied.
    pub floors: HashMap<i32, i64>,
}

impl Persister {
    pub fn new(store: Arc<Store>, group: &str, topic: &str) -> Self {
        Persister {
            store,
            batch: Batch {
                group: group.to_string(),
                topic: topic.to_string(),
                ..Batch::default()
            },
            oldest: None,
            retry_at: None,
            failures: 0,
            backoff: Backoff {
                base: Duration::from_millis(500),
                max: Duration::from_secs(15),
            },
            floors: HashMap::new(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn push(&mut self, f: Finished) {
        self.oldest.get_or_insert_with(Instant::now);
        self.batch.finished.push(f);
    }

    /// True while the store is failing: the processor stops reading.
    pub fn paused(&self) -> bool {
        self.retry_at.is_some()
    }

    /// Whether to flush when the processor has nothing else to do: there is work
    /// waiting and the store is not failing.
    pub fn idle_flush(&self) -> bool {
        !self.batch.finished.is_empty() && self.retry_at.is_none()
    }

    /// When the batch should be flushed next.
    pub fn due(&self) -> Option<Instant> {
        match (self.retry_at, self.oldest) {
            (Some(r), _) => Some(r),
            (None, Some(o)) if self.batch.finished.len() >= MAX_BATCH => Some(o),
            (None, Some(o)) => Some(o + MAX_WAIT),
            (None, None) => None,
        }
    }

    /// Applies the batch and the offsets it reaches in one transaction. Returns
    /// what was applied and the batch, or `None` when the store failed (the batch
    /// is kept).
    pub async fn flush(
        &mut self,
        shared: &std::sync::Mutex<Shared>,
    ) -> Option<(Applied, Vec<Finished>)> {
        if self.batch.finished.is_empty() {
            return Some((Applied::default(), Vec::new()));
        }
        {
            let o = &mut shared.lock().expect("lock").offsets;
            for f in &self.batch.finished {
                o.finished(f.partition, f.offset);
            }
            self.batch.offsets = o.positions();
        }
        match self.store.apply(&self.batch).await {
            Ok(applied) => {
                if self.failures > 0 {
                    eprintln!("store is available again; resuming consumption");
                }
                self.failures = 0;
                self.retry_at = None;
                self.oldest = None;
                let stored = std::mem::take(&mut self.batch.finished);
                Some((applied, stored))
            }
            Err(e) => {
                {
                    let o = &mut shared.lock().expect("lock").offsets;
                    for f in &self.batch.finished {
                        o.unfinish(f.partition, f.offset);
                    }
                }
                self.failures += 1;
                let wait = self.backoff.delay(self.failures);
                eprintln!(
                    "store unavailable ({e}); consumption paused, {} orders waiting, retrying in {:.1}s",
                    self.batch.finished.len(),
                    wait.as_secs_f64()
                );
                self.retry_at = Some(Instant::now() + wait);
                None
            }
        }
    }

    /// Drops waiting work of revoked partitions: the new owner redoes it.
    pub fn revoke(&mut self, partition: i32) {
        self.batch.finished.retain(|f| f.partition != partition);
        self.floors.remove(&partition);
        if self.batch.finished.is_empty() {
            self.oldest = None;
        }
    }

    pub async fn load_floors(&mut self) -> Result<(), store::Error> {
        self.floors = self
            .store
            .offsets(&self.batch.group, &self.batch.topic)
            .await?;
        Ok(())
    }
}
