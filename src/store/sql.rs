//! The store's connection trait and its writes, written once for both
//! databases. Statements use `$N` placeholders (SQLite reads them as `?N`) and
//! types both databases accept.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use super::{
    Applied, Batch, Error, Finished, TimelineEvent,
    dead_letters::{self, DeadLetter},
    delta,
};
use crate::aggregate::Stat;

/// A statement parameter.
#[derive(Debug, Clone, Copy)]
pub enum P<'a> {
    I(i64),
    OI(Option<i64>),
    F(Option<f64>),
    T(&'a str),
    OT(Option<&'a str>),
}

/// A value read back.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Null,
    I(i64),
    F(f64),
    T(String),
}

impl V {
    pub fn i(&self) -> Result<i64, Error> {
        match self {
            V::I(i) => Ok(*i),
            v => Err(Error::Corrupt(format!("expected an integer, got {v:?}"))),
        }
    }
    pub fn oi(&self) -> Result<Option<i64>, Error> {
        match self {
            V::Null => Ok(None),
            v => v.i().map(Some),
        }
    }
    pub fn f(&self) -> Result<Option<f64>, Error> {
        match self {
            V::Null => Ok(None),
            V::F(f) => Ok(Some(*f)),
            V::I(i) => Ok(Some(*i as f64)),
            v => Err(Error::Corrupt(format!("expected a number, got {v:?}"))),
        }
    }
    pub fn t(&self) -> Result<String, Error> {
        match self {
            V::T(s) => Ok(s.clone()),
            v => Err(Error::Corrupt(format!("expected text, got {v:?}"))),
        }
    }
    pub fn ot(&self) -> Result<Option<String>, Error> {
        match self {
            V::Null => Ok(None),
            v => v.t().map(Some),
        }
    }
}

pub trait Conn {
    /// The column definition of an append-only sequence key.
    const SEQ_PK: &'static str;
    /// What asks the database how it would run a statement.
    const EXPLAIN: &'static str;
    /// Orders in a bucket of the id index, as a power of two (docs/store.md): a
    /// random id lands among the newest bucket's, whose index pages then stay in
    /// the database's cache; a lookup by id probes each bucket. Migration 5 builds
    /// the index with it: another value needs a migration that rebuilds it.
    const ID_BUCKET_BITS: u32;
    /// The function `F(haystack, needle)` that is the needle's position, 0 when absent.
    const INSTR: &'static str;
    async fn exec(&mut self, sql: &str, params: &[P<'_>]) -> Result<u64, Error>;
    async fn rows(&mut self, sql: &str, params: &[P<'_>]) -> Result<Vec<Vec<V>>, Error>;
}

/// Orders per INSERT statement. One statement per order spent much of a write on
/// each statement's own round: binding, stepping and resetting it in SQLite, a
/// prepare and a round trip in PostgreSQL. 64 rows of 13 values stay far below
/// both databases' limits on parameters (32,766 and 65,535).
const ROWS_PER_INSERT: usize = 64;
/// Values bound per order. The source topic, the same for a whole batch, is bound
/// once per statement as `$1`: each text value bound costs two copies in libsql
/// and one in SQLite, and one fewer per order made SQLite writes about 6% faster.
const ORDER_VALUES: usize = 13;

/// Inserts `rows` orders, each unless its message (source position and id) is
/// stored already. `$1` is the source topic; each order's values follow.
fn insert_orders_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=ORDER_VALUES)
                .map(|i| format!("${}", 1 + r * ORDER_VALUES + i))
                .collect();
            format!("($1, {})", row.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO orders (source_topic, order_id, user_name, product, quantity, price,
            status, attempts, last_error, source_partition, source_offset, produced_ms,
            processed_ms, received_ms)
        VALUES {}
        ON CONFLICT DO NOTHING",
        values.join(", ")
    )
}

static INSERT_ORDERS: LazyLock<String> = LazyLock::new(|| insert_orders_sql(ROWS_PER_INSERT));
static INSERT_ORDER: LazyLock<String> = LazyLock::new(|| insert_orders_sql(1));

fn order_values(f: &Finished) -> [P<'_>; ORDER_VALUES] {
    let o = f.order.as_ref();
    [
        P::T(&f.id),
        P::T(o.map_or("", |o| &o.user)),
        P::T(o.map_or("", |o| &o.product)),
        P::I(o.map_or(0, |o| i64::from(o.quantity))),
        P::F(o.and_then(|o| o.price)),
        P::T(f.status.as_str()),
        P::I(i64::from(f.attempts)),
        P::OT(f.last_error.as_deref()),
        P::I(i64::from(f.partition)),
        P::I(f.offset),
        P::OI(f.produced_ms),
        P::I(f.processed_ms),
        P::I(f.received_ms),
    ]
}

/// The values of an insert of `orders` from `topic`.
fn bind_orders<'a>(values: &mut Vec<P<'a>>, topic: &'a str, orders: &'a [Finished]) {
    values.push(P::T(topic));
    for f in orders {
        values.extend(order_values(f));
    }
}

/// Inserts `items`, `ROWS_PER_INSERT` rows to a statement (`sql.1`) and the rest
/// one by one (`sql.0`), so that two statements serve every batch; `bind` gives a
/// chunk's values. `false` as soon as a statement inserts fewer rows than it was
/// given.
async fn insert_chunked<'a, T>(
    c: &mut impl Conn,
    items: &'a [T],
    sql: (&str, &str),
    mut bind: impl FnMut(&mut Vec<P<'a>>, &'a [T]),
) -> Result<bool, Error> {
    let whole = items.len() / ROWS_PER_INSERT * ROWS_PER_INSERT;
    let chunks = items[..whole]
        .chunks(ROWS_PER_INSERT)
        .chain(items[whole..].chunks(1));
    let mut values = Vec::new();
    for chunk in chunks {
        values.clear();
        bind(&mut values, chunk);
        let sql = if chunk.len() == 1 { sql.0 } else { sql.1 };
        if c.exec(sql, &values).await? < chunk.len() as u64 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Inserts `rows` timeline events of orders just inserted, `$1` their topic.
/// Each event names its order's message (partition, offset, id), which finds
/// the order's sequence: inserts need not return it. `CROSS JOIN` keeps SQLite
/// from scanning the orders of the topic for each event (it reads the events
/// first, then looks each order up).
fn insert_events_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let v = |i: usize| 2 + r * EVENT_VALUES + i;
            // Cast, so that PostgreSQL knows each column's type.
            format!(
                "(CAST(${} AS BIGINT), CAST(${} AS BIGINT), CAST(${} AS TEXT), \
                 CAST(${} AS BIGINT), CAST(${} AS BIGINT), CAST(${} AS TEXT), CAST(${} AS TEXT))",
                v(0),
                v(1),
                v(2),
                v(3),
                v(4),
                v(5),
                v(6)
            )
        })
        .collect();
    format!(
        "INSERT INTO order_events (order_seq, n, at_ms, kind, detail)
        SELECT o.seq, e.column4, e.column5, e.column6, e.column7
        FROM (VALUES {}) AS e
        CROSS JOIN orders o
        WHERE o.source_topic = $1 AND o.source_partition = e.column1
            AND o.source_offset = e.column2 AND o.order_id = e.column3",
        values.join(", ")
    )
}

/// Values bound per event after the topic.
const EVENT_VALUES: usize = 7;

static INSERT_EVENTS: LazyLock<String> = LazyLock::new(|| insert_events_sql(ROWS_PER_INSERT));
static INSERT_EVENT: LazyLock<String> = LazyLock::new(|| insert_events_sql(1));

/// Inserts the timelines of `inserted`.
async fn insert_events(
    c: &mut impl Conn,
    topic: &str,
    inserted: &[&Finished],
) -> Result<(), Error> {
    let events: Vec<(&Finished, usize, &TimelineEvent)> = inserted
        .iter()
        .flat_map(|f| f.timeline.iter().enumerate().map(move |(n, e)| (*f, n, e)))
        .collect();
    let sql = (INSERT_EVENT.as_str(), INSERT_EVENTS.as_str());
    let all = insert_chunked(c, &events, sql, |values, chunk| {
        values.push(P::T(topic));
        for (f, n, e) in chunk {
            values.extend([
                P::I(i64::from(f.partition)),
                P::I(f.offset),
                P::T(&f.id),
                P::I(*n as i64),
                P::I(e.at_ms),
                P::T(e.kind),
                P::T(&e.detail),
            ]);
        }
    })
    .await?;
    if !all {
        // Each event's order was inserted by this transaction.
        return Err(Error::Corrupt("a timeline event found no order".into()));
    }
    Ok(())
}

const UPSERT_AGGREGATE: &str = "INSERT INTO aggregates
        (scope, name, shard, orders, units, priced, price_sum, price_min, price_max)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (scope, name, shard) DO UPDATE SET
        orders = aggregates.orders + excluded.orders,
        units = aggregates.units + excluded.units,
        priced = aggregates.priced + excluded.priced,
        price_sum = aggregates.price_sum + excluded.price_sum,
        price_min = CASE WHEN aggregates.price_min IS NULL THEN excluded.price_min
                         WHEN excluded.price_min IS NULL THEN aggregates.price_min
                         WHEN excluded.price_min < aggregates.price_min THEN excluded.price_min
                         ELSE aggregates.price_min END,
        price_max = CASE WHEN aggregates.price_max IS NULL THEN excluded.price_max
                         WHEN excluded.price_max IS NULL THEN aggregates.price_max
                         WHEN excluded.price_max > aggregates.price_max THEN excluded.price_max
                         ELSE aggregates.price_max END";

const UPSERT_OFFSET: &str =
    "INSERT INTO consumer_offsets (group_id, topic, partition_id, next_offset)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (group_id, topic, partition_id) DO UPDATE SET next_offset = excluded.next_offset";

/// Applies a batch inside the caller's transaction, all its messages new: `None`
/// if some were stored before (a redelivery). A statement of many rows only says
/// how many it inserted, not which, so the caller then rolls back and applies the
/// batch with [`apply_one_by_one`]. Rolling back to a savepoint instead cost
/// SQLite 0.3 µs per order (it journals pages for the savepoint), and asking each
/// statement for its inserted rows (`RETURNING`) made writes slower than one
/// statement per order.
pub async fn apply(c: &mut impl Conn, batch: &Batch) -> Result<Option<Applied>, Error> {
    let sql = (INSERT_ORDER.as_str(), INSERT_ORDERS.as_str());
    let bind = |values: &mut Vec<_>, chunk| bind_orders(values, &batch.topic, chunk);
    if !insert_chunked(c, &batch.finished, sql, bind).await? {
        return Ok(None);
    }
    let all: Vec<&Finished> = batch.finished.iter().collect();
    record(c, batch, &all).await.map(Some)
}

/// Applies a batch inside the caller's transaction, inserting one order at a time
/// so that each insert says whether its message is new; those stored before
/// (a redelivery, a replay) are left as they are.
pub async fn apply_one_by_one(c: &mut impl Conn, batch: &Batch) -> Result<Applied, Error> {
    let mut inserted = Vec::with_capacity(batch.finished.len());
    let mut values = Vec::with_capacity(1 + ORDER_VALUES);
    for f in &batch.finished {
        values.clear();
        bind_orders(&mut values, &batch.topic, std::slice::from_ref(f));
        if c.exec(&INSERT_ORDER, &values).await? > 0 {
            inserted.push(f);
        }
    }
    record(c, batch, &inserted).await
}

/// Writes what follows from the orders a batch inserted: their timelines and
/// aggregates (one row per partition: a processor's rows are its own), and the
/// offsets the batch reaches.
async fn record(
    c: &mut impl Conn,
    batch: &Batch,
    inserted: &[&Finished],
) -> Result<Applied, Error> {
    insert_events(c, &batch.topic, inserted).await?;
    let mut by_partition: BTreeMap<i32, Vec<&Finished>> = BTreeMap::new();
    for f in inserted {
        by_partition.entry(f.partition).or_default().push(f);
    }
    for (partition, finished) in by_partition {
        let d = delta(finished.into_iter());
        let shard = i64::from(partition);
        if d.total.orders > 0 {
            upsert_stat(c, ("total", ""), shard, &d.total).await?;
            for (product, s) in &d.by_product {
                upsert_stat(c, ("product", product), shard, s).await?;
            }
        }
    }
    let letters: Vec<&DeadLetter> = inserted
        .iter()
        .filter_map(|f| f.dead_letter.as_ref())
        .collect();
    dead_letters::insert(c, &letters).await?;
    upsert_offsets(c, &batch.group, &batch.topic, &batch.offsets).await?;
    Ok(Applied {
        inserted: inserted.len(),
        duplicates: batch.finished.len() - inserted.len(),
    })
}

/// Stores the next offsets of `group` in `topic`'s partitions.
pub async fn upsert_offsets(
    c: &mut impl Conn,
    group: &str,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Result<(), Error> {
    for (p, o) in offsets {
        c.exec(
            UPSERT_OFFSET,
            &[P::T(group), P::T(topic), P::I(i64::from(*p)), P::I(*o)],
        )
        .await?;
    }
    Ok(())
}

async fn upsert_stat(
    c: &mut impl Conn,
    (scope, name): (&str, &str),
    shard: i64,
    s: &Stat,
) -> Result<(), Error> {
    c.exec(
        UPSERT_AGGREGATE,
        &[
            P::T(scope),
            P::T(name),
            P::I(shard),
            P::I(s.orders as i64),
            P::I(s.units as i64),
            P::I(s.priced as i64),
            P::F(Some(s.price_sum)),
            P::F(s.price_min),
            P::F(s.price_max),
        ],
    )
    .await?;
    Ok(())
}

/// The oldest orders processed before a time, at most `$2` of them, in the order
/// of the time index (which the deletes then walk along).
const OLDEST: &str =
    "SELECT seq FROM orders WHERE processed_ms < $1 ORDER BY processed_ms, seq LIMIT $2";

/// Deletes up to `limit` orders processed before `before_ms`, with their
/// timelines, inside the caller's transaction; aggregates keep them. Returns
/// how many went.
pub async fn prune(c: &mut impl Conn, before_ms: i64, limit: i64) -> Result<u64, Error> {
    let values = [P::I(before_ms), P::I(limit)];
    c.exec(
        &format!("DELETE FROM order_events WHERE order_seq IN ({OLDEST})"),
        &values,
    )
    .await?;
    c.exec(
        &format!("DELETE FROM orders WHERE seq IN ({OLDEST})"),
        &values,
    )
    .await
}
