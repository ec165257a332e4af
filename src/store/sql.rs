//! The store's SQL and logic, written once for both databases over a minimal
//! connection trait. Statements use `$N` placeholders (SQLite reads them as `?N`)
//! and types both databases accept.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::{Applied, Batch, Error, Filter, Finished, StoredEvent, StoredOrder, delta};
use crate::aggregate::{Aggregates, Stat};

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
    async fn exec(&mut self, sql: &str, params: &[P<'_>]) -> Result<u64, Error>;
    async fn rows(&mut self, sql: &str, params: &[P<'_>]) -> Result<Vec<Vec<V>>, Error>;
}

/// Schema versions, applied in order, each once.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE orders (
        order_id TEXT PRIMARY KEY,
        user_name TEXT NOT NULL,
        product TEXT NOT NULL,
        quantity BIGINT NOT NULL,
        price DOUBLE PRECISION,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        last_error TEXT,
        source_topic TEXT NOT NULL,
        source_partition BIGINT NOT NULL,
        source_offset BIGINT NOT NULL,
        produced_ms BIGINT,
        processed_ms BIGINT NOT NULL
    );
    CREATE INDEX orders_status ON orders (status);
    CREATE INDEX orders_product ON orders (product);
    CREATE TABLE order_events (
        order_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL,
        PRIMARY KEY (order_id, seq)
    );
    CREATE TABLE aggregates (
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        orders BIGINT NOT NULL,
        units BIGINT NOT NULL,
        priced BIGINT NOT NULL,
        price_sum DOUBLE PRECISION NOT NULL,
        price_min DOUBLE PRECISION,
        price_max DOUBLE PRECISION,
        PRIMARY KEY (scope, name)
    );
    CREATE TABLE consumer_offsets (
        group_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition_id BIGINT NOT NULL,
        next_offset BIGINT NOT NULL,
        PRIMARY KEY (group_id, topic, partition_id)
    )",
    ),
    // Receipt becomes a column: one row per order instead of three in the
    // common case. Older orders keep their stored receipt and outcome events.
    (2, "ALTER TABLE orders ADD COLUMN received_ms BIGINT"),
    // `orders list` filters with `$1 = '' OR status = $1`, which no index on
    // status or product serves, yet each cost every insert a random B-tree write.
    // Lists are newest first: an index on processed_ms (appended in time order,
    // so cheap to keep) serves them.
    (
        3,
        "DROP INDEX orders_status;
        DROP INDEX orders_product;
        CREATE INDEX orders_processed ON orders (processed_ms)",
    ),
    // An order is applied once per id. Another message (another position in a
    // topic) with an id stored before is a different order reusing the id: it
    // is kept here, once per message, and `orders show` lists it.
    (
        4,
        "CREATE TABLE order_conflicts (
        source_topic TEXT NOT NULL,
        source_partition BIGINT NOT NULL,
        source_offset BIGINT NOT NULL,
        order_id TEXT NOT NULL,
        user_name TEXT NOT NULL,
        product TEXT NOT NULL,
        quantity BIGINT NOT NULL,
        price DOUBLE PRECISION,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        last_error TEXT,
        produced_ms BIGINT,
        processed_ms BIGINT NOT NULL,
        received_ms BIGINT,
        PRIMARY KEY (source_topic, source_partition, source_offset)
    );
    CREATE INDEX order_conflicts_id ON order_conflicts (order_id)",
    ),
];

pub const CREATE_MIGRATIONS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS orderflow_migrations (version BIGINT PRIMARY KEY)";

/// Versions already applied.
pub async fn applied_versions(c: &mut impl Conn) -> Result<Vec<i64>, Error> {
    c.exec(CREATE_MIGRATIONS_TABLE, &[]).await?;
    c.rows("SELECT version FROM orderflow_migrations", &[])
        .await?
        .iter()
        .map(|r| r[0].i())
        .collect()
}

/// Runs one migration's statements and records it (inside the caller's transaction).
pub async fn migrate(c: &mut impl Conn, version: i64, sql: &str) -> Result<(), Error> {
    for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        c.exec(stmt, &[]).await?;
    }
    c.exec(
        "INSERT INTO orderflow_migrations (version) VALUES ($1)",
        &[P::I(version)],
    )
    .await?;
    Ok(())
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

/// Inserts `rows` orders, each only if it is not stored yet: a redelivered order
/// is left as it is. `$1` is the source topic; each order's values follow.
fn insert_orders_sql(rows: usize) -> String {
    insert_sql("orders", "order_id", rows)
}

/// Inserts `rows` rows into `table` (`orders` or `order_conflicts`, which have
/// the same columns), each unless `key` is taken.
fn insert_sql(table: &str, key: &str, rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=ORDER_VALUES)
                .map(|i| format!("${}", 1 + r * ORDER_VALUES + i))
                .collect();
            format!("($1, {})", row.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO {table} (source_topic, order_id, user_name, product, quantity, price,
            status, attempts, last_error, source_partition, source_offset, produced_ms,
            processed_ms, received_ms)
        VALUES {}
        ON CONFLICT ({key}) DO NOTHING",
        values.join(", ")
    )
}

static INSERT_CONFLICT: LazyLock<String> = LazyLock::new(|| {
    insert_sql(
        "order_conflicts",
        "source_topic, source_partition, source_offset",
        1,
    )
});

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
    values.clear();
    values.push(P::T(topic));
    for f in orders {
        values.extend(order_values(f));
    }
}

/// Inserts every order, `ROWS_PER_INSERT` to a statement (the rest one by one,
/// so that two statements serve every batch). `false` as soon as a statement
/// inserts fewer rows than it was given: some orders were stored before.
async fn insert_all(c: &mut impl Conn, finished: &[Finished], topic: &str) -> Result<bool, Error> {
    let whole = finished.len() / ROWS_PER_INSERT * ROWS_PER_INSERT;
    let chunks = finished[..whole]
        .chunks(ROWS_PER_INSERT)
        .chain(finished[whole..].chunks(1));
    let mut values = Vec::with_capacity(1 + ROWS_PER_INSERT * ORDER_VALUES);
    for chunk in chunks {
        bind_orders(&mut values, topic, chunk);
        let sql = if chunk.len() == 1 {
            &*INSERT_ORDER
        } else {
            &*INSERT_ORDERS
        };
        if c.exec(sql, &values).await? < chunk.len() as u64 {
            return Ok(false);
        }
    }
    Ok(true)
}

const INSERT_EVENT: &str =
    "INSERT INTO order_events (order_id, seq, at_ms, kind, detail) VALUES ($1, $2, $3, $4, $5)";

const UPSERT_AGGREGATE: &str =
    "INSERT INTO aggregates (scope, name, orders, units, priced, price_sum, price_min, price_max)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (scope, name) DO UPDATE SET
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

/// Applies a batch inside the caller's transaction, all its orders new: `None`
/// if some were stored before (a redelivery). A statement of many rows only says
/// how many it inserted, not which, so the caller then rolls back and applies the
/// batch with [`apply_one_by_one`]. Rolling back to a savepoint instead cost
/// SQLite 0.3 µs per order (it journals pages for the savepoint), and asking each
/// statement for its inserted ids (`RETURNING`) made writes slower than one
/// statement per order.
pub async fn apply(c: &mut impl Conn, batch: &Batch) -> Result<Option<Applied>, Error> {
    if !insert_all(c, &batch.finished, &batch.topic).await? {
        return Ok(None);
    }
    let all: Vec<&Finished> = batch.finished.iter().collect();
    record(c, batch, &all).await.map(Some)
}

/// Applies a batch inside the caller's transaction, inserting one order at a time
/// so that each insert says whether its order is new. An order whose id is
/// stored already is the same message again (a redelivery, a replay: left as it
/// is) or, from another position, a different order that reuses the id: kept
/// in `order_conflicts`.
pub async fn apply_one_by_one(c: &mut impl Conn, batch: &Batch) -> Result<Applied, Error> {
    let mut inserted = Vec::with_capacity(batch.finished.len());
    let mut conflicts = Vec::new();
    let mut values = Vec::with_capacity(1 + ORDER_VALUES);
    for f in &batch.finished {
        bind_orders(&mut values, &batch.topic, std::slice::from_ref(f));
        if c.exec(&INSERT_ORDER, &values).await? > 0 {
            inserted.push(f);
            continue;
        }
        let stored = c
            .rows(
                "SELECT source_topic, source_partition, source_offset FROM orders WHERE order_id = $1",
                &[P::T(&f.id)],
            )
            .await?;
        let same_message = stored.first().is_some_and(|r| {
            matches!(&r[0], V::T(topic) if *topic == batch.topic)
                && r[1] == V::I(i64::from(f.partition))
                && r[2] == V::I(f.offset)
        });
        if !same_message && c.exec(&INSERT_CONFLICT, &values).await? > 0 {
            conflicts.push(f.id.clone());
        }
    }
    let mut applied = record(c, batch, &inserted).await?;
    applied.duplicates -= conflicts.len();
    applied.conflicts = conflicts;
    Ok(applied)
}

/// Writes what follows from the orders a batch inserted: their timelines and
/// aggregates, and the offsets the batch reaches.
async fn record(
    c: &mut impl Conn,
    batch: &Batch,
    inserted: &[&Finished],
) -> Result<Applied, Error> {
    for f in inserted {
        for (seq, e) in f.timeline.iter().enumerate() {
            c.exec(
                INSERT_EVENT,
                &[
                    P::T(&f.id),
                    P::I(seq as i64),
                    P::I(e.at_ms),
                    P::T(e.kind),
                    P::T(&e.detail),
                ],
            )
            .await?;
        }
    }
    let d = delta(inserted.iter().copied());
    if d.total.orders > 0 {
        upsert_stat(c, "total", "", &d.total).await?;
        for (product, s) in &d.by_product {
            upsert_stat(c, "product", product, s).await?;
        }
    }
    for (p, o) in &batch.offsets {
        c.exec(
            UPSERT_OFFSET,
            &[
                P::T(&batch.group),
                P::T(&batch.topic),
                P::I(i64::from(*p)),
                P::I(*o),
            ],
        )
        .await?;
    }
    Ok(Applied {
        inserted: inserted.len(),
        duplicates: batch.finished.len() - inserted.len(),
        conflicts: Vec::new(),
    })
}

async fn upsert_stat(c: &mut impl Conn, scope: &str, name: &str, s: &Stat) -> Result<(), Error> {
    c.exec(
        UPSERT_AGGREGATE,
        &[
            P::T(scope),
            P::T(name),
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

pub async fn offsets(
    c: &mut impl Conn,
    group: &str,
    topic: &str,
) -> Result<HashMap<i32, i64>, Error> {
    c.rows(
        "SELECT partition_id, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2",
        &[P::T(group), P::T(topic)],
    )
    .await?
    .iter()
    .map(|r| Ok((r[0].i()? as i32, r[1].i()?)))
    .collect()
}

pub async fn aggregates(c: &mut impl Conn) -> Result<Aggregates, Error> {
    let mut a = Aggregates::default();
    let rows = c
        .rows(
            "SELECT scope, name, orders, units, priced, price_sum, price_min, price_max FROM aggregates",
            &[],
        )
        .await?;
    for r in rows {
        let s = Stat {
            orders: r[2].i()? as u64,
            units: r[3].i()? as u64,
            priced: r[4].i()? as u64,
            price_sum: r[5].f()?.unwrap_or(0.0),
            price_min: r[6].f()?,
            price_max: r[7].f()?,
        };
        match r[0].t()?.as_str() {
            "total" => a.total = s,
            _ => {
                a.by_product.insert(r[1].t()?, s);
            }
        }
    }
    Ok(a)
}

const ORDER_COLUMNS: &str =
    "order_id, user_name, product, quantity, price, status, attempts, last_error,
    source_topic, source_partition, source_offset, produced_ms, processed_ms, received_ms";

fn stored_order(r: &[V]) -> Result<StoredOrder, Error> {
    Ok(StoredOrder {
        id: r[0].t()?,
        user: r[1].t()?,
        product: r[2].t()?,
        quantity: r[3].i()?,
        price: r[4].f()?,
        status: r[5].t()?,
        attempts: r[6].i()?,
        last_error: r[7].ot()?,
        topic: r[8].t()?,
        partition: r[9].i()?,
        offset: r[10].i()?,
        produced_ms: r[11].oi()?,
        processed_ms: r[12].i()?,
        received_ms: r[13].oi()?,
    })
}

pub async fn list(c: &mut impl Conn, f: &Filter) -> Result<Vec<StoredOrder>, Error> {
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM orders
         WHERE ($1 = '' OR status = $1) AND ($2 = '' OR product = $2)
         ORDER BY processed_ms DESC, order_id LIMIT $3"
    );
    let status = f.status.map_or("", |s| s.as_str());
    let product = f.product.as_deref().unwrap_or("");
    c.rows(&sql, &[P::T(status), P::T(product), P::I(f.limit)])
        .await?
        .iter()
        .map(|r| stored_order(r))
        .collect()
}

pub async fn show(
    c: &mut impl Conn,
    id: &str,
) -> Result<Option<(StoredOrder, Vec<StoredEvent>)>, Error> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = $1");
    let Some(row) = c.rows(&sql, &[P::T(id)]).await?.into_iter().next() else {
        return Ok(None);
    };
    let order = stored_order(&row)?;
    let stored = c
        .rows(
            "SELECT at_ms, kind, detail FROM order_events WHERE order_id = $1 ORDER BY seq",
            &[P::T(id)],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(StoredEvent {
                at_ms: r[0].i()?,
                kind: r[1].t()?,
                detail: r[2].t()?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let mut events = match order.received_ms {
        Some(received) => timeline(&order, received, stored),
        None => stored, // stored before receipt was a column: all events are rows
    };
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM order_conflicts WHERE order_id = $1
         ORDER BY processed_ms, source_partition, source_offset"
    );
    for r in c.rows(&sql, &[P::T(id)]).await? {
        let other = stored_order(&r)?;
        events.push(StoredEvent {
            at_ms: other.processed_ms,
            kind: "id_conflict".into(),
            detail: format!(
                "another order with this id, kept apart: {}[{}]@{}, {} {} x {} at {}, {}",
                other.topic,
                other.partition,
                other.offset,
                other.user,
                other.product,
                other.quantity,
                other.price.map_or("-".into(), |p| format!("{p:.2}")),
                other.status
            ),
        });
    }
    Ok(Some((order, events)))
}

/// The whole timeline: receipt and outcome from the order's columns around the
/// stored events.
fn timeline(o: &StoredOrder, received_ms: i64, between: Vec<StoredEvent>) -> Vec<StoredEvent> {
    let received = StoredEvent {
        at_ms: received_ms,
        kind: "received".into(),
        detail: format!("partition {} offset {}", o.partition, o.offset),
    };
    let outcome = StoredEvent {
        at_ms: o.processed_ms,
        kind: o.status.clone(),
        detail: o
            .last_error
            .clone()
            .filter(|_| o.status == "dlq")
            .unwrap_or_default(),
    };
    std::iter::once(received)
        .chain(between)
        .chain(std::iter::once(outcome))
        .collect()
}
