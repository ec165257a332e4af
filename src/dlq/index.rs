//! The DLQ's records in the store. The processor records its own dead letters
//! with their batches; this reads the DLQ topic from where it last stopped, so
//! that records the store lacks (written by other producers, by orderflow before
//! the store kept dead letters, or landed just before a crash) are listed and
//! replayed too. Every record becomes a dead letter; one that names no order is
//! kept as such, never dropped.

use std::collections::BTreeMap;

use rdkafka::Message as _;
use serde::Deserialize;

use super::{
    consumer::DlqEvent,
    range::{self, Range},
    record::{self, DlqValue},
};
use crate::{
    codec::{Decoder, avro},
    kafka::KafkaConfig,
    order::{Order, now_ms, system_ms},
    store::{
        self, Store,
        dead_letters::{DeadLetter, Position},
    },
};

/// Where the store keeps how far it has read each DLQ partition (as a consumer
/// group's offsets; no such group exists in Kafka).
pub const GROUP: &str = "orderflow.dlq-index";

/// Records recorded per transaction, with the positions they reach, at most;
/// fewer when they hold more than `BATCH_BYTES`.
const BATCH: usize = 2_000;
const BATCH_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Read(#[from] range::Error),
    #[error("recording DLQ records in the store: {0}")]
    Store(#[from] store::Error),
}

/// What a catch-up read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaughtUp {
    pub read: u64,
    /// Records the store did not have.
    pub new: u64,
}

/// Reads the DLQ topic from the store's position to its end into the store.
pub async fn catch_up(
    kafka: &KafkaConfig,
    store: &Store,
    dlq_topic: &str,
) -> Result<CaughtUp, Error> {
    let stored = store.offsets(GROUP, dlq_topic).await?;
    let mut ranges = Vec::new();
    for (partition, low, high) in range::ends(kafka, dlq_topic)? {
        let from = stored.get(&partition).copied().unwrap_or(0).max(low);
        // The records the processor stored need not be read again: start after
        // the run of them that follows the position.
        let from = store
            .dead_letters_known_from(dlq_topic, partition, from)
            .await?;
        ranges.push(Range {
            topic: dlq_topic.to_string(),
            partition,
            from,
            to: high,
        });
    }
    let decoder = Decoder::default();
    let mut done = CaughtUp::default();
    let mut reader = range::Reader::start(kafka, "the DLQ topic", &ranges)?;
    let mut letters = Vec::new();
    let mut bytes = 0;
    let mut reached = BTreeMap::new();
    loop {
        let more = match reader.next().await? {
            Some(m) => {
                let l = letter(&DlqEvent::from_message(&m), dlq_topic, &decoder);
                bytes += l.value.as_ref().map_or(0, Vec::len) + l.key.as_ref().map_or(0, Vec::len);
                letters.push(l);
                reached.insert(m.partition(), m.offset() + 1);
                true
            }
            None => {
                // Read whole: each range reaches its end, even when its last
                // offsets hold no record (transaction markers).
                for r in &ranges {
                    reached.insert(r.partition, r.to.max(r.from));
                }
                false
            }
        };
        if letters.len() >= BATCH || bytes >= BATCH_BYTES || !more {
            let positions: Vec<(i32, i64)> = reached.iter().map(|(p, o)| (*p, *o)).collect();
            done.new += store
                .record_dead_letters(&letters, (GROUP, dlq_topic), &positions)
                .await?;
            done.read += letters.len() as u64;
            letters.clear();
            bytes = 0;
        }
        if !more {
            return Ok(done);
        }
    }
}

/// The seed's `failed_order` holds only some of an order's fields: orderId,
/// product and price.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FailedOrder {
    #[serde(alias = "order_id")]
    order_id: String,
    #[serde(default, alias = "item")]
    product: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    quantity: Option<i32>,
    #[serde(default)]
    price: Option<f64>,
    #[serde(default)]
    created_at: i64,
}

fn failed_order(v: &serde_json::Value) -> Option<Order> {
    let f: FailedOrder = serde_json::from_value(v.clone()).ok()?;
    Some(Order {
        order_id: f.order_id,
        user: f.user,
        product: f.product,
        quantity: f.quantity.unwrap_or(1),
        price: f.price,
        created_at_ms: f.created_at,
    })
}

/// What a DLQ record says, whoever wrote it. A replay sends the original bytes
/// when the record keeps them whole, else the order it names, encoded anew.
pub fn letter(e: &DlqEvent, dlq_topic: &str, decoder: &Decoder) -> DeadLetter {
    let h = |k: &str| e.headers.get(k).map(String::as_str);
    let int = |k: &str| h(k).and_then(|v| v.trim().parse::<i64>().ok());
    let time = |k: &str| {
        h(k).and_then(|v| humantime::parse_rfc3339_weak(v).ok())
            .map(system_ms)
    };
    let source = match (
        h(record::H_TOPIC),
        int(record::H_PARTITION),
        int(record::H_OFFSET),
    ) {
        (Some(topic), Some(p), Some(offset)) => Some(Position {
            topic: topic.to_string(),
            partition: p as i32,
            offset,
        }),
        _ => None,
    };
    let (order, value, reason) = match &e.value {
        Some(v) => parse_value(v, decoder),
        None => match decoder.decode(&e.raw) {
            // Someone wrote the order itself to the DLQ.
            Ok((o, _)) => (
                Some(o),
                Some(e.raw.clone()),
                "(no reason: the record is the order itself)".to_string(),
            ),
            Err(_) => (
                None,
                Some(e.raw.clone()),
                format!("(not a DLQ record: {} bytes)", e.raw.len()),
            ),
        },
    };
    let last_failure = time(record::H_LAST_FAILURE);
    DeadLetter {
        record: Position {
            topic: dlq_topic.to_string(),
            partition: e.partition,
            offset: e.offset,
        },
        order_id: order.as_ref().map(|o| o.order_id.clone()),
        user: order.as_ref().map(|o| o.user.clone()),
        product: order.as_ref().map(|o| o.product.clone()),
        reason,
        kind: h(record::H_KIND).map(str::to_string),
        attempts: int(record::H_ATTEMPTS),
        source,
        source_ms: int(record::H_TIMESTAMP),
        first_failure_ms: time(record::H_FIRST_FAILURE),
        last_failure_ms: last_failure,
        dead_ms: last_failure.or(e.timestamp_ms).unwrap_or_else(now_ms),
        replays: int(record::H_REPLAY_COUNT).unwrap_or(0),
        key: e.key.clone(),
        value,
    }
}

fn parse_value(v: &DlqValue, decoder: &Decoder) -> (Option<Order>, Option<Vec<u8>>, String) {
    // Bytes cut to fit the DLQ cannot be sent as the message they were.
    let original = v
        .original_bytes()
        .filter(|_| v.original_truncated.is_none());
    let order = v.failed_order.as_ref().and_then(failed_order).or_else(|| {
        original
            .as_deref()
            .and_then(|b| decoder.decode(b).ok().map(|(o, _)| o))
    });
    let value = original.or_else(|| order.as_ref().map(|o| avro::Writer::new().encode(o)));
    (order, value, v.reason.clone())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn event(raw: &[u8], headers: &[(&str, &str)]) -> DlqEvent {
        DlqEvent {
            partition: 0,
            offset: 7,
            timestamp_ms: Some(1_000),
            key: None,
            value: serde_json::from_slice(raw).ok(),
            raw: raw.to_vec(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn a_seed_record_names_its_order_and_is_sent_as_a_new_encoding() {
        let raw = br#"{"failed_order": {"orderId": "e5f6", "product": "item1", "price": 125.5}, "reason": "Simulated error: high price"}"#;
        let l = letter(&event(raw, &[]), "orders_dlq", &Decoder::default());
        assert_eq!(l.order_id.as_deref(), Some("e5f6"));
        assert_eq!(l.product.as_deref(), Some("item1"));
        assert_eq!((l.source, l.dead_ms, l.replays), (None, 1_000, 0));
        let (o, _) = Decoder::default().decode(&l.value.unwrap()).unwrap();
        assert_eq!((o.order_id.as_str(), o.price), ("e5f6", Some(125.5)));
    }

    #[test]
    fn a_record_of_no_order_is_kept_with_its_bytes() {
        let l = letter(
            &event(b"\xff\x00junk", &[]),
            "orders_dlq",
            &Decoder::default(),
        );
        assert_eq!(l.order_id, None);
        assert_eq!(l.value.as_deref(), Some(&b"\xff\x00junk"[..]));
        assert!(l.reason.starts_with("(not a DLQ record"), "{}", l.reason);
    }

    #[test]
    fn orderflow_headers_give_the_source_and_the_failures() {
        let raw = br#"{"failed_order": null, "reason": "undecodable", "original_value": "AQID"}"#;
        let l = letter(
            &event(
                raw,
                &[
                    (record::H_TOPIC, "orders"),
                    (record::H_PARTITION, "2"),
                    (record::H_OFFSET, "41"),
                    (record::H_ATTEMPTS, "1"),
                    (record::H_LAST_FAILURE, "2026-12-01T10:00:00.000Z"),
                    (record::H_REPLAY_COUNT, "2"),
                ],
            ),
            "orders_dlq",
            &Decoder::default(),
        );
        assert_eq!(l.source.unwrap().to_string(), "orders[2]@41");
        assert_eq!((l.attempts, l.replays), (Some(1), 2));
        assert_eq!(l.value.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(l.dead_ms, 1_796_119_200_000);
    }
}
