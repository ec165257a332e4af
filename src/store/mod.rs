//! Durable order history: orders, their timeline, aggregates and the processor's
//! consumed offsets, in SQLite (default) or PostgreSQL.
//!
//! The processor hands over finished work in batches; each batch is applied in one
//! database transaction together with the offsets it reaches. The unit applied
//! once is the message: an order is inserted only if its position in the topic
//! (with its id) is new, so a redelivered or replayed message is never applied
//! twice, and the aggregates move only for orders actually inserted. Two
//! messages with the same order id are two orders: both are kept, and a lookup
//! by id shows both. Design and measurements: docs/store.md.

pub mod audit;
pub mod dead_letters;
mod postgres;
mod read;
pub mod registry;
pub mod retention;
mod schema;
mod sql;
mod sqlite;

/// The schema's versions, each applied once, in order, when a store is opened.
pub use schema::MIGRATIONS;

use std::collections::HashMap;

use serde::Serialize;

use crate::{aggregate::Aggregates, order::Order};
use dead_letters::{
    Checkpoint, DeadLetter, JobRow, JobState, NewJob, Reason, Selection, StoredLetter,
};

/// Runs `$body` with `$c`, the connection of whichever database the store is,
/// through its `read` or `write` (a transaction).
macro_rules! on_conn {
    ($store:expr, $how:ident, |$c:ident| $body:expr) => {
        match $store {
            Store::Sqlite(s) => s.$how(async |$c| $body.await).await,
            Store::Postgres(s) => s.$how(async |$c| $body.await).await,
        }
    };
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported store URL {0:?}: use sqlite://PATH or postgres://USER:PASSWORD@HOST/DB")]
    Url(String),
    #[error("SQLite store {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: libsql::Error,
    },
    #[error("cannot create the directory of the SQLite store {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("PostgreSQL store: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("store holds an unexpected value: {0}")]
    Corrupt(String),
    #[error("replay job {0} is run by another process now: this one stops")]
    JobTaken(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    Processed,
    Dlq,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Processed => "processed",
            Status::Dlq => "dlq",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "processed" => Some(Status::Processed),
            "dlq" => Some(Status::Dlq),
            _ => None,
        }
    }
}

/// One step in an order's life between its receipt and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEvent {
    pub at_ms: i64,
    /// `attempt_failed`.
    pub kind: &'static str,
    pub detail: String,
}

/// A finished order, ready to be stored.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The order id; for undecodable messages `topic[partition]@offset`.
    pub id: String,
    pub order: Option<Order>,
    pub status: Status,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Where it was read (the topic is the batch's).
    pub partition: i32,
    pub offset: i64,
    pub produced_ms: Option<i64>,
    pub received_ms: i64,
    pub processed_ms: i64,
    /// What happened between receipt and outcome (failed attempts). Receipt and
    /// outcome are columns of the order, so the common case writes one row.
    pub timeline: Vec<TimelineEvent>,
    /// For a dead-lettered order: its DLQ record, stored with it.
    pub dead_letter: Option<DeadLetter>,
}

/// Work applied in one transaction: finished orders and the offsets they reach.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub group: String,
    pub topic: String,
    pub finished: Vec<Finished>,
    /// (partition, next offset to read).
    pub offsets: Vec<(i32, i64)>,
}

/// What applying a batch changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    pub inserted: usize,
    /// Orders already in the store (redeliveries), left untouched.
    pub duplicates: usize,
}

/// A stored order as the read commands show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredOrder {
    /// The store's own key, in the order orders were stored.
    pub seq: i64,
    pub id: String,
    pub user: String,
    pub product: String,
    pub quantity: i64,
    pub price: Option<f64>,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub topic: String,
    pub partition: i64,
    pub offset: i64,
    pub produced_ms: Option<i64>,
    /// `None` for orders stored before it was kept (their timeline has it).
    pub received_ms: Option<i64>,
    pub processed_ms: i64,
}

impl StoredOrder {
    /// Where the next page of a list that ends with this order starts.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            processed_ms: self.processed_ms,
            seq: self.seq,
        }
    }
}

/// A position in a list, newest first: the page after it holds older orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cursor {
    pub processed_ms: i64,
    pub seq: i64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.processed_ms, self.seq)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is no list position: give the MS.SEQ a list printed");
        let (ms, seq) = s.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            processed_ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// Which orders a list shows, newest (by processing time) first.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<Status>,
    pub product: Option<String>,
    pub user: Option<String>,
    /// Processed at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Processed before this time.
    pub until_ms: Option<i64>,
    /// Only orders after this position: the next page.
    pub before: Option<Cursor>,
    pub limit: i64,
}

/// A stored order and its timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    pub order: StoredOrder,
    pub events: Vec<StoredEvent>,
}

/// Dead-lettered orders that failed with one error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub reason: String,
    pub orders: i64,
    /// When the last of them was dead-lettered.
    pub last_ms: i64,
}

/// A read the store serves, to see its plan ([`Store::plan`]).
#[derive(Debug, Clone)]
pub enum Read<'a> {
    ById(&'a str),
    List(&'a Filter),
    /// Failures grouped by error.
    Failures,
}

/// Orders deleted per transaction by [`Store::prune`]: each transaction is short,
/// so a processor writing to the same store waits for one at most.
const PRUNE_BATCH: i64 = 2_000;

/// A connected store.
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Connects and applies migrations.
    pub async fn connect(url: &str) -> Result<Store, Error> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            Ok(Store::Sqlite(sqlite::SqliteStore::open(path).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(postgres::PgStore::connect(url).await?))
        } else {
            Err(Error::Url(url.to_string()))
        }
    }

    pub async fn apply(&self, batch: &Batch) -> Result<Applied, Error> {
        match self {
            Store::Sqlite(s) => s.apply(batch).await,
            Store::Postgres(s) => s.apply(batch).await,
        }
    }

    /// Next offsets to read per partition, as last stored for `group` and `topic`.
    pub async fn offsets(&self, group: &str, topic: &str) -> Result<HashMap<i32, i64>, Error> {
        on_conn!(self, read, |c| read::offsets(c, group, topic))
    }

    pub async fn aggregates(&self) -> Result<Aggregates, Error> {
        on_conn!(self, read, |c| read::aggregates(c))
    }

    pub async fn list(&self, filter: &Filter) -> Result<Vec<StoredOrder>, Error> {
        on_conn!(self, read, |c| read::list(c, filter))
    }

    /// Every order stored with this id (usually one), oldest first.
    pub async fn show(&self, id: &str) -> Result<Vec<History>, Error> {
        on_conn!(self, read, |c| read::show(c, id))
    }

    /// Dead-lettered orders grouped by error, the most frequent first.
    pub async fn failures(&self, limit: i64) -> Result<Vec<Failure>, Error> {
        on_conn!(self, read, |c| read::failures(c, limit))
    }

    /// How the database would run a read (its EXPLAIN), to check which index
    /// serves it.
    pub async fn plan(&self, read: &Read<'_>) -> Result<Vec<String>, Error> {
        on_conn!(self, read, |c| read::plan(c, read))
    }

    /// Deletes the orders processed before `before_ms`, with their timelines, a
    /// batch per transaction; the aggregates keep counting them. Returns how
    /// many went.
    pub async fn prune(&self, before_ms: i64) -> Result<u64, Error> {
        let mut pruned = 0;
        loop {
            let n = on_conn!(self, write, |c| sql::prune(c, before_ms, PRUNE_BATCH))?;
            pruned += n;
            if n < PRUNE_BATCH as u64 {
                return Ok(pruned);
            }
            // Room for a processor's batch between two of ours: SQLite does not
            // queue writers fairly.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Dead letters and replay jobs.
impl Store {
    /// Records dead letters read from the DLQ topic with the positions they
    /// reach there (`group` and `topic` as `offsets` reads them), in one
    /// transaction. Returns how many were new.
    pub async fn record_dead_letters(
        &self,
        letters: &[DeadLetter],
        (group, topic): (&str, &str),
        positions: &[(i32, i64)],
    ) -> Result<u64, Error> {
        let letters: Vec<&DeadLetter> = letters.iter().collect();
        on_conn!(self, write, |c| dead_letters::insert_read(
            c,
            &letters,
            (group, topic),
            positions
        ))
    }

    /// Where a read of a DLQ partition from `from` may start: after the run of
    /// records from `from` on that the store holds already (those the processor
    /// stored with its batches), so the DLQ index skips them.
    pub async fn dead_letters_known_from(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
    ) -> Result<i64, Error> {
        on_conn!(self, read, |c| dead_letters::known_from(
            c, topic, partition, from
        ))
    }

    /// Dead letters of a selection, newest first; `before` (an id) pages on.
    pub async fn dead_letters(
        &self,
        selection: &Selection,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StoredLetter>, Error> {
        on_conn!(self, read, |c| dead_letters::list(
            c, selection, before, limit
        ))
    }

    /// Dead letters grouped by normalised reason, the most frequent first.
    pub async fn dead_letter_reasons(
        &self,
        selection: &Selection,
        limit: i64,
    ) -> Result<Vec<Reason>, Error> {
        on_conn!(self, read, |c| dead_letters::reasons(c, selection, limit))
    }

    /// How many dead letters a replay of `selection` would take, and a sample.
    pub async fn replay_preview(
        &self,
        selection: &Selection,
        limit: Option<i64>,
        sample: i64,
    ) -> Result<(i64, Vec<StoredLetter>), Error> {
        on_conn!(self, read, |c| dead_letters::preview(
            c, selection, limit, sample
        ))
    }

    /// Makes a replay job that holds its selection; returns its id.
    pub async fn create_replay_job(
        &self,
        job: &NewJob<'_>,
        checkpoint: &Checkpoint,
    ) -> Result<i64, Error> {
        on_conn!(self, write, |c| dead_letters::create_job(
            c, job, checkpoint
        ))
    }

    pub async fn replay_job(&self, id: i64) -> Result<Option<JobRow>, Error> {
        on_conn!(self, read, |c| dead_letters::job(c, id))
    }

    /// Replay jobs, the newest first.
    pub async fn replay_jobs(&self, limit: i64) -> Result<Vec<JobRow>, Error> {
        on_conn!(self, read, |c| dead_letters::jobs(c, limit))
    }

    /// The next dead letters a job has still to move, after the letter `after`.
    pub async fn replay_pending(
        &self,
        job: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredLetter>, Error> {
        on_conn!(self, read, |c| dead_letters::pending(c, job, after, limit))
    }

    pub async fn record_replay(&self, p: &dead_letters::Progress<'_>) -> Result<(), Error> {
        on_conn!(self, write, |c| dead_letters::record(c, p))
    }

    /// Says a job's runner is alive; returns whether it was asked to stop.
    pub async fn replay_heartbeat(
        &self,
        job: i64,
        owner: &str,
        now_ms: i64,
    ) -> Result<bool, Error> {
        on_conn!(self, write, |c| dead_letters::heartbeat(
            c, job, owner, now_ms
        ))
    }

    pub async fn request_replay_cancel(&self, job: i64) -> Result<(), Error> {
        on_conn!(self, write, |c| dead_letters::request_cancel(c, job))
    }

    /// Ends a job that `owner` runs.
    pub async fn finish_replay(
        &self,
        (job, owner): (i64, &str),
        state: JobState,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<(), Error> {
        on_conn!(self, write, |c| dead_letters::finish(
            c, job, owner, state, error, now_ms
        ))
    }

    /// Makes `owner` the runner of a job last seen run by `seen` (owner, last
    /// heartbeat); false when another process changed it first.
    pub async fn claim_replay(
        &self,
        (job, owner): (i64, &str),
        seen: (&str, i64),
        now_ms: i64,
    ) -> Result<bool, Error> {
        on_conn!(self, write, |c| dead_letters::claim(
            c, job, owner, seen, now_ms
        ))
    }
}

/// The web console's audit log and dashboard.
impl Store {
    pub async fn audit(
        &self,
        at_ms: i64,
        principal: &str,
        (action, target): (&str, &str),
        detail: &str,
    ) -> Result<(), Error> {
        on_conn!(self, write, |c| audit::record(
            c,
            at_ms,
            principal,
            (action, target),
            detail
        ))
    }

    pub async fn audit_log(
        &self,
        target: Option<&str>,
        limit: i64,
    ) -> Result<Vec<audit::AuditEntry>, Error> {
        on_conn!(self, read, |c| audit::list(c, target, limit))
    }

    /// Orders finished since `since_ms`, per `bucket_ms`: (bucket start,
    /// processed, dead-lettered), oldest first; buckets with none are absent.
    pub async fn throughput(
        &self,
        since_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, i64, i64)>, Error> {
        on_conn!(self, read, |c| read::throughput(c, since_ms, bucket_ms))
    }

    /// How many stored orders were dead-lettered.
    pub async fn dead_lettered(&self) -> Result<i64, Error> {
        on_conn!(self, read, |c| read::dead_lettered(c))
    }

    /// When the newest stored order finished.
    pub async fn last_processed_ms(&self) -> Result<Option<i64>, Error> {
        on_conn!(self, read, |c| read::last_processed_ms(c))
    }
}

/// The schema registry's storage (`crate::registry` holds its rules).
impl Store {
    /// See [`registry::insert_version`].
    pub async fn registry_insert(
        &self,
        subject: &str,
        fingerprint: &str,
        schema_type: &str,
        schema: &str,
    ) -> Result<Option<(i64, i64)>, Error> {
        on_conn!(self, write, |c| registry::insert_version(
            c,
            subject,
            fingerprint,
            schema_type,
            schema
        ))
    }

    /// A subject's versions, deleted ones too, oldest first.
    pub async fn registry_versions(
        &self,
        subject: &str,
    ) -> Result<Vec<registry::SubjectVersion>, Error> {
        on_conn!(self, read, |c| registry::versions(c, subject))
    }

    /// The versions, deleted ones too, that hold schema `id`.
    pub async fn registry_versions_of(
        &self,
        id: i64,
    ) -> Result<Vec<registry::SubjectVersion>, Error> {
        on_conn!(self, read, |c| registry::versions_of(c, id))
    }

    /// Subjects, each with whether all its versions are soft-deleted.
    pub async fn registry_subjects(&self) -> Result<Vec<(String, bool)>, Error> {
        on_conn!(self, read, |c| registry::subjects(c))
    }

    pub async fn registry_schema(&self, id: i64) -> Result<Option<registry::StoredSchema>, Error> {
        on_conn!(self, read, |c| registry::schema(c, id))
    }

    /// See [`registry::delete`].
    pub async fn registry_delete(
        &self,
        subject: &str,
        version: Option<i64>,
        permanent: bool,
    ) -> Result<Vec<i64>, Error> {
        on_conn!(self, write, |c| registry::delete(
            c, subject, version, permanent
        ))
    }

    pub async fn registry_config(
        &self,
        subject: &str,
    ) -> Result<(Option<String>, Option<String>), Error> {
        on_conn!(self, read, |c| registry::config(c, subject))
    }

    pub async fn registry_set_config(
        &self,
        subject: &str,
        setting: &'static str,
        value: Option<&str>,
    ) -> Result<(), Error> {
        on_conn!(self, write, |c| registry::set_config(
            c, subject, setting, value
        ))
    }
}

/// A timeline row as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    pub at_ms: i64,
    pub kind: String,
    pub detail: String,
}

/// The aggregate delta of the orders a batch inserted.
fn delta<'a>(inserted: impl Iterator<Item = &'a Finished>) -> Aggregates {
    let mut a = Aggregates::default();
    for f in inserted {
        if let (Status::Processed, Some(o)) = (f.status, &f.order) {
            a.add(o);
        }
    }
    a
}
