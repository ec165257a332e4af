//! The DLQ record of a job bound for the DLQ: the seed's JSON value and headers
//! that say where the order came from and how it failed, cut to what the
//! producer may send (see `DlqValue::fitted`).

use std::time::SystemTime;

use rdkafka::message::{Header, OwnedHeaders};

use super::{Config, keys::Job};
use crate::{
    dlq::record::{DlqValue, H_ORIGINAL_SHA256, H_ORIGINAL_SIZE, H_TRUNCATED, Provenance},
    order::now_ms,
    store::dead_letters::{DeadLetter, Position},
};

/// The longest key a DLQ record repeats: keys are ids, and one near the record
/// limit would leave no room for the rest.
const KEY_MAX: usize = 16 * 1024;
/// Room in a DLQ record for its framing and the truncation headers.
const RECORD_SLACK: usize = 512;
/// Framing of a record in a batch, beyond its key, value and headers.
const RECORD_OVERHEAD: usize = 32;

/// One dead-letter record, ready to send.
pub struct DlqRecord {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: OwnedHeaders,
    /// Bytes of the headers' names and values.
    pub header_bytes: usize,
}

impl DlqRecord {
    /// About what the record takes in a produce request.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self.payload.len()
            + self.header_bytes
            + RECORD_OVERHEAD
    }
}

pub struct Records {
    topic: String,
    dlq_topic: String,
    group: String,
    /// The producer's `message.max.bytes`.
    max_bytes: usize,
}

impl Records {
    pub fn new(cfg: &Config) -> Self {
        Records {
            topic: cfg.topic.clone(),
            dlq_topic: cfg.dlq_topic.clone(),
            group: cfg.group.clone(),
            max_bytes: cfg.kafka.message_max_bytes(),
        }
    }

    /// What the store keeps of the record of `job` that landed at `at` in the
    /// DLQ: a replay sends the message's own key and bytes, unless they are
    /// more than a record may hold (the DLQ kept only their start).
    pub fn dead_letter(&self, job: &Job, (partition, offset): (i32, i64)) -> DeadLetter {
        let (reason, kind) = job
            .dlq_reason
            .as_ref()
            .expect("jobs bound for the DLQ carry a reason");
        let order = job.decoded.as_ref().map(|(o, _)| o);
        let ms = |t: Option<SystemTime>| t.map(crate::order::system_ms);
        let now = now_ms();
        DeadLetter {
            record: Position {
                topic: self.dlq_topic.clone(),
                partition,
                offset,
            },
            order_id: order.map(|o| o.order_id.clone()),
            user: order.map(|o| o.user.clone()),
            product: order.map(|o| o.product.clone()),
            reason: reason.clone(),
            kind: Some(kind.as_str().to_string()),
            attempts: Some(i64::from(job.attempts)),
            source: Some(Position {
                topic: self.topic.clone(),
                partition: job.partition,
                offset: job.offset,
            }),
            source_ms: job.timestamp_ms,
            first_failure_ms: ms(job.first_failure),
            last_failure_ms: ms(job.last_failure),
            dead_ms: ms(job.last_failure).unwrap_or(now),
            replays: i64::from(job.replays),
            key: job.key.clone(),
            value: (job.payload.len() <= self.max_bytes).then(|| job.payload.clone()),
        }
    }

    pub fn build(&self, job: &Job) -> DlqRecord {
        let (reason, kind) = job
            .dlq_reason
            .as_ref()
            .expect("jobs bound for the DLQ carry a reason");
        let now = SystemTime::now();
        let provenance = Provenance {
            topic: &self.topic,
            partition: job.partition,
            offset: job.offset,
            timestamp_ms: job.timestamp_ms,
            group: &self.group,
            attempts: job.attempts,
            kind: *kind,
            first_failure: job.first_failure.unwrap_or(now),
            last_failure: job.last_failure.unwrap_or(now),
            replays: job.replays,
        };
        let mut pairs = provenance.headers();
        let key = job.key.as_ref().map(|k| k[..k.len().min(KEY_MAX)].to_vec());
        let key_cut = job.key.as_ref().is_some_and(|k| k.len() > KEY_MAX);
        let fixed = pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + key.as_ref().map_or(0, Vec::len)
            + RECORD_SLACK;
        // A record the DLQ refused as too large goes again without the original.
        let max_value = if job.dlq_refused_size {
            0
        } else {
            self.max_bytes.saturating_sub(fixed)
        };
        let (payload, truncated) = DlqValue::fitted(
            job.decoded.as_ref().map(|(o, _)| o),
            &job.payload,
            reason,
            max_value,
        );
        let cut: Vec<&str> = [(key_cut, "key"), (truncated.is_some(), "value")]
            .into_iter()
            .filter_map(|(cut, part)| cut.then_some(part))
            .collect();
        if !cut.is_empty() {
            pairs.push((H_TRUNCATED, cut.join(",")));
        }
        if let Some(t) = truncated {
            pairs.push((H_ORIGINAL_SIZE, t.size.to_string()));
            pairs.push((H_ORIGINAL_SHA256, t.sha256));
        }
        let (mut headers, mut header_bytes) = (OwnedHeaders::new(), 0);
        for (k, v) in pairs {
            header_bytes += k.len() + v.len();
            headers = headers.insert(Header {
                key: k,
                value: Some(&v),
            });
        }
        DlqRecord {
            key,
            payload,
            headers,
            header_bytes,
        }
    }
}
