//! The dead-letter record: seed-003's JSON value plus headers that say where the
//! order came from and how it failed, so it can be inspected and replayed.

use std::time::SystemTime;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::order::Order;

pub const H_TOPIC: &str = "orderflow.original.topic";
pub const H_PARTITION: &str = "orderflow.original.partition";
pub const H_OFFSET: &str = "orderflow.original.offset";
pub const H_TIMESTAMP: &str = "orderflow.original.timestamp";
pub const H_GROUP: &str = "orderflow.consumer.group";
pub const H_ATTEMPTS: &str = "orderflow.attempts";
pub const H_KIND: &str = "orderflow.error.kind";
pub const H_FIRST_FAILURE: &str = "orderflow.first.failure";
pub const H_LAST_FAILURE: &str = "orderflow.last.failure";
/// Set when the DLQ value keeps only the start of the original bytes: their full
/// size and SHA-256 (hex), so the original can still be found and checked.
pub const H_ORIGINAL_SIZE: &str = "orderflow.original.size";
pub const H_ORIGINAL_SHA256: &str = "orderflow.original.sha256";
pub const H_TRUNCATED: &str = "orderflow.original.truncated";
/// On a replayed message: how many times it has been replayed, which replay
/// sent it (`JOB-LETTER`), the job, and the DLQ record it came from.
pub const H_REPLAY_COUNT: &str = "orderflow.replay.count";
pub const H_REPLAY_ID: &str = "orderflow.replay.id";
pub const H_REPLAY_JOB: &str = "orderflow.replay.job";
pub const H_DLQ_TOPIC: &str = "orderflow.dlq.topic";
pub const H_DLQ_PARTITION: &str = "orderflow.dlq.partition";
pub const H_DLQ_OFFSET: &str = "orderflow.dlq.offset";
/// On a parked message: why it failed last.
pub const H_PARKED_REASON: &str = "orderflow.parked.reason";

/// A header's value as text, if the message has it.
pub fn header<'a, H: rdkafka::message::Headers>(
    headers: Option<&'a H>,
    name: &str,
) -> Option<&'a str> {
    headers?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

/// The replay count a message carries; 0 when it has none (or a bad one).
pub fn replay_count<H: rdkafka::message::Headers>(headers: Option<&H>) -> u32 {
    header(headers, H_REPLAY_COUNT)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The longest reason a DLQ value carries, in bytes (a reason quotes input).
const REASON_MAX: usize = 2_000;

/// Whether retrying could have helped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Transient,
    Permanent,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Permanent => "permanent",
        }
    }
}

/// The DLQ value. `failed_order` is null when the bytes could not be decoded; the
/// original bytes are then kept in `original_value` (base64) so nothing is lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqValue {
    pub failed_order: Option<serde_json::Value>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_value: Option<String>,
    /// Present when the record would not have fit the DLQ whole: `original_value`
    /// then holds only the first bytes (possibly none), and `failed_order` is null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_truncated: Option<Truncated>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truncated {
    pub size: usize,
    pub sha256: String,
}

impl DlqValue {
    pub fn new(order: Option<&Order>, original: &[u8], reason: &str) -> Self {
        DlqValue {
            failed_order: order.map(|o| serde_json::to_value(o).expect("orders serialize")),
            reason: cut(reason, REASON_MAX),
            original_value: order
                .is_none()
                .then(|| base64::engine::general_purpose::STANDARD.encode(original)),
            original_truncated: None,
        }
    }

    /// The value as JSON of at most `max` bytes: whole when it fits; otherwise the
    /// decoded order is dropped and the original bytes are cut to what fits, with
    /// their full size and SHA-256 kept. A poison pill never makes a record the
    /// DLQ refuses, so it never blocks its partition.
    pub fn fitted(
        order: Option<&Order>,
        original: &[u8],
        reason: &str,
        max: usize,
    ) -> (Vec<u8>, Option<Truncated>) {
        let whole = DlqValue::new(order, original, reason);
        let json = serde_json::to_vec(&whole).expect("DLQ values serialize");
        if json.len() <= max {
            return (json, None);
        }
        let mut v = DlqValue {
            failed_order: None,
            original_value: Some(String::new()),
            original_truncated: Some(Truncated {
                size: original.len(),
                sha256: hex::encode(sha2::Sha256::digest(original)),
            }),
            ..whole
        };
        let frame = serde_json::to_vec(&v).expect("DLQ values serialize").len();
        // base64 makes 4 characters of every 3 bytes.
        let keep = (max.saturating_sub(frame) / 4 * 3).min(original.len());
        v.original_value =
            (keep > 0).then(|| base64::engine::general_purpose::STANDARD.encode(&original[..keep]));
        let json = serde_json::to_vec(&v).expect("DLQ values serialize");
        (json, v.original_truncated)
    }

    pub fn original_bytes(&self) -> Option<Vec<u8>> {
        self.original_value
            .as_deref()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
    }
}

/// At most `max` bytes of `s`, cut at a character boundary, marked when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &s[..end], s.len())
}

/// Everything the headers record about a failure.
#[derive(Debug, Clone)]
pub struct Provenance<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub group: &'a str,
    pub attempts: u32,
    pub kind: ErrorKind,
    pub first_failure: SystemTime,
    pub last_failure: SystemTime,
    pub replays: u32,
}

impl Provenance<'_> {
    /// Header name/value pairs, values as UTF-8 text so any tool (kcat -f '%h') reads them.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            (H_TOPIC, self.topic.to_string()),
            (H_PARTITION, self.partition.to_string()),
            (H_OFFSET, self.offset.to_string()),
            (H_GROUP, self.group.to_string()),
            (H_ATTEMPTS, self.attempts.to_string()),
            (H_KIND, self.kind.as_str().to_string()),
            (
                H_FIRST_FAILURE,
                humantime::format_rfc3339_millis(self.first_failure).to_string(),
            ),
            (
                H_LAST_FAILURE,
                humantime::format_rfc3339_millis(self.last_failure).to_string(),
            ),
        ];
        if let Some(ts) = self.timestamp_ms {
            h.push((H_TIMESTAMP, ts.to_string()));
        }
        if self.replays > 0 {
            h.push((H_REPLAY_COUNT, self.replays.to_string()));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_bytes_are_kept() {
        let v = DlqValue::new(None, &[0xff, 0, 1], "bad");
        let json = serde_json::to_string(&v).unwrap();
        assert!(json.contains(r#""failed_order":null"#), "{json}");
        let back: DlqValue = serde_json::from_str(&json).unwrap();
        assert_eq!(back.original_bytes().unwrap(), [0xff, 0, 1]);
    }

    #[test]
    fn a_value_too_large_keeps_the_start_of_the_original_its_size_and_hash() {
        let original: Vec<u8> = (0..800_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let reason = format!("undecodable message: {}", "x".repeat(5_000));
        let (json, truncated) = DlqValue::fitted(None, &original, &reason, 100_000);
        assert!(json.len() <= 100_000, "{}", json.len());
        let v: DlqValue = serde_json::from_slice(&json).unwrap();
        let t = v.original_truncated.clone().expect("marked as truncated");
        assert_eq!(truncated, Some(t.clone()));
        assert_eq!(t.size, 800_000);
        assert_eq!(t.sha256, hex::encode(sha2::Sha256::digest(&original)));
        let kept = v.original_bytes().unwrap();
        // Three bytes in four characters of base64.
        assert!(kept.len() > 72_000, "{}", kept.len());
        assert_eq!(kept[..], original[..kept.len()]);
        assert!(v.reason.len() < 2_100 && v.reason.ends_with("(5021 bytes in all)"));
    }

    #[test]
    fn a_value_that_fits_is_whole_and_a_tiny_budget_keeps_only_the_hash() {
        let o = crate::order::random_order();
        let (whole, truncated) = DlqValue::fitted(Some(&o), b"abc", "r", 10_000);
        assert_eq!(
            whole,
            serde_json::to_vec(&DlqValue::new(Some(&o), b"abc", "r")).unwrap()
        );
        assert_eq!(truncated, None);
        let tiny: DlqValue =
            serde_json::from_slice(&DlqValue::fitted(Some(&o), &[1; 5_000], "r", 10).0).unwrap();
        assert_eq!(tiny.failed_order, None);
        assert_eq!(tiny.original_value, None);
        assert_eq!(tiny.original_truncated.unwrap().size, 5_000);
    }

    #[test]
    fn failed_order_uses_seed_field_names() {
        let o = crate::order::random_order();
        let v = DlqValue::new(Some(&o), b"", "Simulated error: high price");
        let j = serde_json::to_value(&v).unwrap();
        assert_eq!(j["failed_order"]["orderId"], o.order_id.as_str());
        assert_eq!(j["failed_order"]["product"], o.product.as_str());
        assert_eq!(j["reason"], "Simulated error: high price");
        assert!(j.get("original_value").is_none());
    }
}
