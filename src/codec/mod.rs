//! Wire formats. Every message is recognised from its own bytes, so one topic can
//! carry seed-003 raw Avro, our single-object Avro, Confluent's framing and
//! seed-000 JSON at once.

pub mod avro;
pub mod confluent;
pub mod json;

use std::sync::Arc;

use crate::order::Order;
use confluent::{SchemaError, Schemas};

/// The format a message was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// seed-003: a raw Avro datum of `com.assignment.Order` v1, no framing.
    SeedAvro,
    /// Avro single-object encoding (marker, schema fingerprint, datum).
    Avro,
    /// seed-000's JSON.
    Json,
    /// Confluent's wire format: zero byte, schema id, Avro datum.
    Confluent,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("single-object Avro: {0}")]
    Avro(#[source] avro::AvroError),
    #[error("JSON order: {0}")]
    Json(#[from] serde_json::Error),
    #[error("neither JSON, single-object Avro, Confluent framing nor a seed Avro datum ({0})")]
    Unrecognised(#[source] avro::AvroError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("Confluent-framed Avro with schema id {0}: {1}")]
    Confluent(u32, #[source] avro::AvroError),
}

/// Recognises and decodes orders in any supported format.
#[derive(Debug, Clone)]
pub struct Decoder {
    registry: avro::Registry,
    schemas: Arc<Schemas>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(avro::Registry::new(), Arc::new(Schemas::new(None)))
    }
}

impl Decoder {
    pub fn new(registry: avro::Registry, schemas: Arc<Schemas>) -> Self {
        Decoder { registry, schemas }
    }

    /// The writer schemas of Confluent-framed messages: [`Schemas::load`]
    /// fetches what a message needs before [`Decoder::decode`] reads it.
    pub fn schemas(&self) -> &Arc<Schemas> {
        &self.schemas
    }

    /// Detection cannot be fooled by a seed datum: its first byte is the zig-zag
    /// length of the order id, and both `{` (0x7B) and the single-object marker
    /// (0xC3 0x01) decode to negative lengths, which no valid datum has. The
    /// Confluent zero byte is the length of an empty order id, which no valid
    /// order has either.
    pub fn decode(&self, bytes: &[u8]) -> Result<(Order, Format), DecodeError> {
        if bytes.is_empty() {
            return Err(DecodeError::Empty);
        }
        if let Some((id, datum)) = confluent::split(bytes) {
            return self
                .schemas
                .plan(id)?
                .decode(datum)
                .map(|o| (o, Format::Confluent))
                .map_err(|e| DecodeError::Confluent(id, e));
        }
        if bytes.starts_with(&avro::SINGLE_OBJECT_MARKER) {
            return self
                .registry
                .decode_single_object(bytes)
                .map(|o| (o, Format::Avro))
                .map_err(DecodeError::Avro);
        }
        if bytes.trim_ascii_start().starts_with(b"{") {
            return Ok((json::decode(bytes)?, Format::Json));
        }
        self.registry
            .decode_seed(bytes)
            .map(|o| (o, Format::SeedAvro))
            .map_err(DecodeError::Unrecognised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_format() {
        let d = Decoder::default();
        let order = crate::order::random_order();
        let (o, f) = d.decode(&avro::Writer::new().encode(&order)).unwrap();
        assert_eq!((o, f), (order.clone(), Format::Avro));
        let (o, f) = d.decode(&avro::encode_seed_datum(&order)).unwrap();
        assert_eq!(
            (o.order_id, o.price, f),
            (order.order_id.clone(), order.price, Format::SeedAvro)
        );
        let (o, f) = d.decode(&json::encode(&order)).unwrap();
        assert_eq!((o.order_id, f), (order.order_id, Format::Json));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let d = Decoder::default();
        assert!(matches!(d.decode(b""), Err(DecodeError::Empty)));
        assert!(matches!(d.decode(b"{not json"), Err(DecodeError::Json(_))));
        assert!(matches!(
            d.decode(&[0xC3, 0x01, 1, 2]),
            Err(DecodeError::Avro(_))
        ));
        assert!(matches!(
            d.decode(b"\xff\xff\xff"),
            Err(DecodeError::Unrecognised(_))
        ));
        // Fuzz-ish: every byte string up to length 3 must decode or fail cleanly.
        for a in 0..=255u8 {
            for b in [0u8, 1, 0x7f, 0x80, 0xff] {
                let _ = d.decode(&[a, b]);
                let _ = d.decode(&[a, b, a]);
            }
        }
    }
}
