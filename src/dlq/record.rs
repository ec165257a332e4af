//! The dead-letter record: seed-003's JSON value plus headers that say where the
//! order came from and how it failed, so it can be inspected and replayed.

use std::time::SystemTime;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

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
}

impl DlqValue {
    pub fn new(order: Option<&Order>, original: &[u8], reason: &str) -> Self {
        DlqValue {
            failed_order: order.map(|o| serde_json::to_value(o).expect("orders serialize")),
            reason: reason.to_string(),
            original_value: order
                .is_none()
                .then(|| base64::engine::general_purpose::STANDARD.encode(original)),
        }
    }

    pub fn original_bytes(&self) -> Option<Vec<u8>> {
        self.original_value
            .as_deref()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
    }
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
