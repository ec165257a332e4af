//! Durable order history: orders, their timeline, aggregates and the processor's
//! consumed offsets, in SQLite (default) or PostgreSQL.
//!
//! The processor hands over finished work in batches; each batch is applied in one
//! database transaction together with the offsets it reaches. Orders are inserted
//! by id only if new, so a redelivered order is never applied twice, and the
//! aggregates move only for orders that were actually inserted.

mod postgres;
mod sql;
mod sqlite;

use std::collections::HashMap;

use serde::Serialize;

use crate::{aggregate::Aggregates, order::Order};

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
    /// Ids of orders from messages other than the one stored under their id:
    /// kept apart, not applied (see `orders show`).
    pub conflicts: Vec<String>,
}

/// A stored order as the read commands show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredOrder {
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

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<Status>,
    pub product: Option<String>,
    pub limit: i64,
}

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
        match self {
            Store::Sqlite(s) => s.offsets(group, topic).await,
            Store::Postgres(s) => s.offsets(group, topic).await,
        }
    }

    pub async fn aggregates(&self) -> Result<Aggregates, Error> {
        match self {
            Store::Sqlite(s) => s.aggregates().await,
            Store::Postgres(s) => s.aggregates().await,
        }
    }

    pub async fn list(&self, filter: &Filter) -> Result<Vec<StoredOrder>, Error> {
        match self {
            Store::Sqlite(s) => s.list(filter).await,
            Store::Postgres(s) => s.list(filter).await,
        }
    }

    pub async fn show(&self, id: &str) -> Result<Option<(StoredOrder, Vec<StoredEvent>)>, Error> {
        match self {
            Store::Sqlite(s) => s.show(id).await,
            Store::Postgres(s) => s.show(id).await,
        }
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
