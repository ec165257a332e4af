//! Confluent's wire format: a zero magic byte, the writer schema's global id in
//! the registry (4 bytes, big-endian), then the Avro datum. Writer schemas are
//! fetched from the registry once per id and resolved against the order schema.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use apache_avro::{Schema, types::Value};

use super::avro::{AvroError, Plan};
use crate::{
    order::Order,
    registry::client::{Client, SCHEMA_NOT_FOUND},
};

pub const MAGIC: u8 = 0;

/// The schema id and datum of a Confluent-framed message, if it is one.
pub fn split(bytes: &[u8]) -> Option<(u32, &[u8])> {
    match bytes {
        [MAGIC, a, b, c, d, datum @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        _ => None,
    }
}

/// Writes orders under one registered schema.
#[derive(Debug, Clone)]
pub struct Writer {
    id: u32,
    schema: Schema,
}

impl Writer {
    /// Checks that `schema` can carry an order: each of its fields is an order
    /// field or has a default.
    pub fn new(id: u32, schema: Schema) -> Result<Writer, AvroError> {
        let w = Writer { id, schema };
        w.encode(&crate::order::random_order())?;
        Ok(w)
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn encode(&self, order: &Order) -> Result<Vec<u8>, AvroError> {
        let invalid = |detail: String| AvroError::Invalid {
            what: "order for the schema",
            detail,
        };
        let Schema::Record(record) = &self.schema else {
            return Err(invalid("the schema is not a record".into()));
        };
        let mut fields = Vec::with_capacity(record.fields.len());
        for f in &record.fields {
            let value = match f.name.as_str() {
                "orderId" => Value::String(order.order_id.clone()),
                "product" => Value::String(order.product.clone()),
                "user" => Value::String(order.user.clone()),
                "price" => Value::Double(order.price.unwrap_or(0.0)),
                "quantity" => Value::Int(order.quantity),
                "createdAt" => Value::Long(order.created_at_ms),
                other => match &f.default {
                    Some(d) => Value::try_from(d.clone())
                        .map_err(|e| invalid(format!("default of field {other}: {e}")))?,
                    None => {
                        return Err(invalid(format!(
                            "field {other} is no order field and has no default"
                        )));
                    }
                },
            };
            let value = value
                .resolve(&f.schema)
                .map_err(|e| invalid(format!("field {}: {e}", f.name)))?;
            fields.push((f.name.clone(), value));
        }
        let mut out = vec![MAGIC];
        out.extend_from_slice(&self.id.to_be_bytes());
        let datum = apache_avro::writer::datum::GenericDatumWriter::builder(&self.schema)
            .build()
            .and_then(|w| w.write_value_to_vec(Value::Record(fields)))
            .map_err(|e| invalid(e.to_string()))?;
        out.extend_from_slice(&datum);
        Ok(out)
    }
}

/// Why a Confluent-framed message cannot be decoded now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SchemaError {
    /// Nothing to look the id up in: permanent until the processor is given one.
    #[error(
        "Confluent-framed message (schema id {0}) but no schema registry: run with --schema-registry-url"
    )]
    NoRegistry(u32),
    /// Not fetched yet, or the registry is unreachable: wait, without counting.
    #[error("schema id {0} not loaded yet: {1}")]
    Waiting(u32, String),
    /// The registry has no such id: may appear (a registry catching up), so it
    /// is retried as a transient failure, then dead-lettered.
    #[error("schema id {0} is not in the registry: {1}")]
    Unknown(u32, String),
    /// A schema that cannot be read as an order: permanent.
    #[error("writer schema {0} is not readable as an order: {1}")]
    Unreadable(u32, String),
}

#[derive(Debug, Clone)]
enum Entry {
    Ready(Arc<Plan>),
    Unreadable(String),
    Failed { error: SchemaError, at: Instant },
    Loading,
}

/// How long a failed lookup is believed before the registry is asked again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Writer schemas by id, fetched from the registry on first sight.
#[derive(Debug)]
pub struct Schemas {
    client: Option<Client>,
    entries: Mutex<HashMap<u32, Entry>>,
}

impl Schemas {
    pub fn new(client: Option<Client>) -> Self {
        Schemas {
            client,
            entries: Mutex::default(),
        }
    }

    /// The decoder of schema `id`, if it is known already.
    pub fn plan(&self, id: u32) -> Result<Arc<Plan>, SchemaError> {
        if self.client.is_none() {
            return Err(SchemaError::NoRegistry(id));
        }
        match self.entries.lock().expect("schema cache").get(&id) {
            Some(Entry::Ready(p)) => Ok(p.clone()),
            Some(Entry::Unreadable(why)) => Err(SchemaError::Unreadable(id, why.clone())),
            Some(Entry::Failed { error, .. }) => Err(error.clone()),
            Some(Entry::Loading) => Err(SchemaError::Waiting(id, "being fetched".into())),
            None => Err(SchemaError::Waiting(id, "not fetched yet".into())),
        }
    }

    /// Whether `id` should be fetched now: never asked, or a failure old enough.
    fn claim(&self, id: u32) -> bool {
        let mut entries = self.entries.lock().expect("schema cache");
        let due = match entries.get(&id) {
            None => true,
            Some(Entry::Failed { at, .. }) => at.elapsed() >= RETRY_AFTER,
            Some(_) => false,
        };
        if due {
            entries.insert(id, Entry::Loading);
        }
        due
    }

    /// Fetches schema `id` unless it is known or being fetched.
    pub async fn load(&self, id: u32) {
        let Some(client) = &self.client else { return };
        if !self.claim(id) {
            return;
        }
        let entry = match client.schema(id).await {
            Ok(text) => match Schema::parse_str(&text)
                .map_err(|e| e.to_string())
                .and_then(|s| Plan::new(&s).map_err(|e| e.to_string()))
            {
                Ok(plan) => Entry::Ready(Arc::new(plan)),
                Err(why) => Entry::Unreadable(why),
            },
            Err(e) => match e.code() {
                Some(SCHEMA_NOT_FOUND) => Entry::Failed {
                    error: SchemaError::Unknown(id, e.to_string()),
                    at: Instant::now(),
                },
                Some(_) => Entry::Unreadable(e.to_string()),
                None => {
                    tracing::warn!(schema_id = id, error = %e, "cannot fetch a writer schema; orders written with it wait");
                    Entry::Failed {
                        error: SchemaError::Waiting(id, e.to_string()),
                        at: Instant::now(),
                    }
                }
            },
        };
        self.entries.lock().expect("schema cache").insert(id, entry);
    }
}
