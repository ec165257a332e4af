//! What the commands and the processor read from the store, written once for
//! both databases. Every list is served by an index and pages by key
//! (docs/store.md, with the plans).

use std::collections::HashMap;

use super::{
    Error, Failure, Filter, History, Read, StoredEvent, StoredOrder,
    sql::{Conn, P, V},
};
use crate::aggregate::{Aggregates, Stat};

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
            "SELECT scope, name, CAST(sum(orders) AS BIGINT), CAST(sum(units) AS BIGINT),
                CAST(sum(priced) AS BIGINT), sum(price_sum), min(price_min), max(price_max)
            FROM aggregates GROUP BY scope, name",
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

/// Two counts by bucket, each read from an index alone (`orders_by_time` and
/// the partial one of failures), not from the orders' rows.
pub async fn throughput(
    c: &mut impl Conn,
    since_ms: i64,
    bucket_ms: i64,
) -> Result<Vec<(i64, i64, i64)>, Error> {
    let mut by_bucket = std::collections::BTreeMap::<i64, (i64, i64)>::new();
    for (dead, filter) in [(false, ""), (true, "status = 'dlq' AND ")] {
        let rows = c
            .rows(
                &format!(
                    "SELECT processed_ms / $2 AS bucket, count(*) FROM orders
                    WHERE {filter}processed_ms >= $1 GROUP BY bucket"
                ),
                &[P::I(since_ms), P::I(bucket_ms)],
            )
            .await?;
        for r in rows {
            let e = by_bucket.entry(r[0].i()? * bucket_ms).or_default();
            if dead {
                e.1 = r[1].i()?;
            } else {
                e.0 = r[1].i()?;
            }
        }
    }
    Ok(by_bucket
        .into_iter()
        .map(|(b, (all, dead))| (b, all - dead, dead))
        .collect())
}

pub async fn dead_lettered(c: &mut impl Conn) -> Result<i64, Error> {
    // The partial index of failures serves it.
    let rows = c
        .rows("SELECT count(*) FROM orders WHERE status = 'dlq'", &[])
        .await?;
    rows[0][0].i()
}

pub async fn last_processed_ms(c: &mut impl Conn) -> Result<Option<i64>, Error> {
    let rows = c.rows("SELECT max(processed_ms) FROM orders", &[]).await?;
    rows[0][0].oi()
}

const ORDER_COLUMNS: &str = "seq, order_id, user_name, product, quantity, price, status,
    attempts, last_error, source_topic, source_partition, source_offset, produced_ms,
    processed_ms, received_ms";

fn stored_order(r: &[V]) -> Result<StoredOrder, Error> {
    Ok(StoredOrder {
        seq: r[0].i()?,
        id: r[1].t()?,
        user: r[2].t()?,
        product: r[3].t()?,
        quantity: r[4].i()?,
        price: r[5].f()?,
        status: r[6].t()?,
        attempts: r[7].i()?,
        last_error: r[8].ot()?,
        topic: r[9].t()?,
        partition: r[10].i()?,
        offset: r[11].i()?,
        produced_ms: r[12].oi()?,
        processed_ms: r[13].i()?,
        received_ms: r[14].oi()?,
    })
}

/// The statement and values of a list: only the filters given appear, so that
/// the database picks the index that serves them (a `$1 = '' OR` term serves
/// none). The status is one of ours, spelled into the statement so that the
/// partial index of failures can serve it.
pub fn list_query(f: &Filter) -> (String, Vec<P<'_>>) {
    fn param<'a>(values: &mut Vec<P<'a>>, p: P<'a>) -> String {
        values.push(p);
        format!("${}", values.len())
    }
    let mut conds = Vec::new();
    let mut values = Vec::new();
    if let Some(s) = f.status {
        conds.push(format!("status = '{}'", s.as_str()));
    }
    if let Some(p) = &f.product {
        conds.push(format!("product = {}", param(&mut values, P::T(p))));
    }
    if let Some(u) = &f.user {
        conds.push(format!("user_name = {}", param(&mut values, P::T(u))));
    }
    if let Some(ms) = f.since_ms {
        conds.push(format!("processed_ms >= {}", param(&mut values, P::I(ms))));
    }
    if let Some(ms) = f.until_ms {
        conds.push(format!("processed_ms < {}", param(&mut values, P::I(ms))));
    }
    if let Some(c) = f.before {
        let ms = param(&mut values, P::I(c.processed_ms));
        let seq = param(&mut values, P::I(c.seq));
        // Spelled so that both databases bound an index range with it (a row
        // value comparison is not one for every index in PostgreSQL).
        conds.push(format!(
            "processed_ms <= {ms} AND (processed_ms < {ms} OR seq < {seq})"
        ));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let limit = param(&mut values, P::I(f.limit));
    (
        format!(
            "SELECT {ORDER_COLUMNS} FROM orders {filter}
            ORDER BY processed_ms DESC, seq DESC LIMIT {limit}"
        ),
        values,
    )
}

pub async fn list(c: &mut impl Conn, f: &Filter) -> Result<Vec<StoredOrder>, Error> {
    let (sql, values) = list_query(f);
    c.rows(&sql, &values)
        .await?
        .iter()
        .map(|r| stored_order(r))
        .collect()
}

/// Orders with an id, oldest first: one probe of the id index per bucket of
/// `1 << shift` orders.
pub fn by_id_sql(shift: u32) -> String {
    format!(
        "WITH RECURSIVE buckets (b) AS (
            SELECT (SELECT max(seq) FROM orders) >> {shift}
            UNION ALL
            SELECT b - 1 FROM buckets WHERE b > (SELECT min(seq) FROM orders) >> {shift}
        )
        SELECT {ORDER_COLUMNS} FROM buckets CROSS JOIN orders
        WHERE (orders.seq >> {shift}) = buckets.b AND orders.order_id = $1
        ORDER BY seq"
    )
}

pub async fn show<C: Conn>(c: &mut C, id: &str) -> Result<Vec<History>, Error> {
    let orders = c.rows(&by_id_sql(C::ID_BUCKET_BITS), &[P::T(id)]).await?;
    let mut found = Vec::with_capacity(orders.len());
    for row in orders {
        let order = stored_order(&row)?;
        let stored = c
            .rows(
                "SELECT at_ms, kind, detail FROM order_events WHERE order_seq = $1 ORDER BY n",
                &[P::I(order.seq)],
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
        let events = match order.received_ms {
            Some(received) => timeline(&order, received, stored),
            None => stored, // stored before receipt was a column: all events are rows
        };
        found.push(History { order, events });
    }
    Ok(found)
}

/// The whole timeline: receipt and outcome from the order's columns around the
/// stored events, and what came after the outcome (a replay of a dead letter).
fn timeline(o: &StoredOrder, received_ms: i64, stored: Vec<StoredEvent>) -> Vec<StoredEvent> {
    let (between, after): (Vec<_>, Vec<_>) =
        stored.into_iter().partition(|e| e.kind == "attempt_failed");
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
        .chain(after)
        .collect()
}

/// Dead-lettered orders grouped by their error, the most frequent first (the
/// partial index of failures holds every row it reads).
pub const FAILURES: &str = "SELECT coalesce(last_error, ''), count(*), max(processed_ms)
    FROM orders WHERE status = 'dlq'
    GROUP BY last_error ORDER BY count(*) DESC, last_error LIMIT $1";

pub async fn failures(c: &mut impl Conn, limit: i64) -> Result<Vec<Failure>, Error> {
    c.rows(FAILURES, &[P::I(limit)])
        .await?
        .iter()
        .map(|r| {
            Ok(Failure {
                reason: r[0].t()?,
                orders: r[1].i()?,
                last_ms: r[2].i()?,
            })
        })
        .collect()
}

/// How the database would run a read: the lines of its EXPLAIN.
pub async fn plan<C: Conn>(c: &mut C, read: &Read<'_>) -> Result<Vec<String>, Error> {
    let (sql, values) = match read {
        Read::ById(id) => (by_id_sql(C::ID_BUCKET_BITS), vec![P::T(id)]),
        Read::List(f) => list_query(f),
        Read::Failures => (FAILURES.to_string(), vec![P::I(20)]),
    };
    c.rows(&format!("{} {sql}", C::EXPLAIN), &values)
        .await?
        .iter()
        .map(|r| r.last().map_or(Ok(String::new()), V::t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Cursor;

    #[test]
    fn a_list_names_only_the_filters_given() {
        let filter = Filter {
            product: Some("pizza".into()),
            before: Some(Cursor {
                processed_ms: 10,
                seq: 7,
            }),
            limit: 5,
            ..Filter::default()
        };
        let (sql, values) = list_query(&filter);
        assert!(
            sql.contains("WHERE product = $1 AND processed_ms <= $2"),
            "{sql}"
        );
        assert!(sql.contains("seq < $3"), "{sql}");
        assert!(sql.ends_with("LIMIT $4"), "{sql}");
        assert!(!sql.contains("user_name ="), "{sql}");
        assert_eq!(values.len(), 4);
    }
}
