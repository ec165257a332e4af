//! Avro for orders: the seed's schema (v1), the project's evolved schema (v2), Avro
//! single-object encoding, and a resolving decoder that reads either straight into
//! [`Order`].
//!
//! Decoding is planned once per writer schema (which writer field lands in which
//! `Order` field, which are skipped, which reader fields take their defaults), so the
//! hot path is a loop over a few primitive reads with no schema walk and no
//! intermediate `Value` tree.

use apache_avro::Schema;
use apache_avro::rabin::Rabin;

use crate::order::Order;

/// seed-003's schema, exactly as its producer writes it (raw datums, no framing).
pub const SEED_SCHEMA: &str = r#"{
  "type": "record",
  "name": "Order",
  "namespace": "com.assignment",
  "fields": [
    { "name": "orderId", "type": "string" },
    { "name": "product", "type": "string" },
    { "name": "price", "type": "float" }
  ]
}"#;

/// The project's schema: v1 plus fields with defaults, so v2 readers read v1 data and
/// v1 readers (which ignore unknown fields) read v2 data.
pub const ORDER_SCHEMA: &str = r#"{
  "type": "record",
  "name": "Order",
  "namespace": "com.assignment",
  "fields": [
    { "name": "orderId", "type": "string" },
    { "name": "product", "type": "string" },
    { "name": "price", "type": "float" },
    { "name": "user", "type": "string", "default": "" },
    { "name": "quantity", "type": "int", "default": 1 },
    { "name": "createdAt", "type": { "type": "long", "logicalType": "timestamp-millis" }, "default": 0 }
  ]
}"#;

/// The two marker bytes that open every Avro single-object encoded message.
pub const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AvroError {
    #[error("message ended early while reading {0}")]
    Truncated(&'static str),
    #[error("invalid {what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error("{0} trailing bytes after the Avro datum")]
    Trailing(usize),
    #[error("unknown writer schema fingerprint {0:016x}; register the writer schema")]
    UnknownFingerprint(u64),
    #[error("writer schema is not readable as an order: {0}")]
    IncompatibleSchema(String),
}

/// Where a writer field goes in an [`Order`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    OrderId,
    Product,
    Price,
    User,
    Quantity,
    CreatedAt,
}

/// The Avro types the decoder can read or skip.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    Enum,
    Union(Vec<Kind>),
    Record(Vec<Kind>),
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Read(Target, Kind),
    Skip(Kind),
}

/// A decoder for one writer schema, resolved against the order reader schema.
#[derive(Debug, Clone)]
pub struct Plan {
    steps: Vec<Step>,
    fingerprint: u64,
}

fn kind_of(schema: &Schema) -> Result<Kind, AvroError> {
    let unsupported = || AvroError::IncompatibleSchema(format!("unsupported type {schema:?}"));
    Ok(match schema {
        Schema::Null => Kind::Null,
        Schema::Boolean => Kind::Boolean,
        Schema::Int | Schema::Date | Schema::TimeMillis => Kind::Int,
        Schema::Long
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => Kind::Long,
        Schema::Float => Kind::Float,
        Schema::Double => Kind::Double,
        Schema::Bytes | Schema::BigDecimal => Kind::Bytes,
        Schema::String => Kind::String,
        Schema::Fixed(f) | Schema::Duration(f) => Kind::Fixed(f.size),
        Schema::Enum(_) => Kind::Enum,
        Schema::Union(u) => {
            Kind::Union(u.variants().iter().map(kind_of).collect::<Result<_, _>>()?)
        }
        Schema::Record(r) => Kind::Record(
            r.fields
                .iter()
                .map(|f| kind_of(&f.schema))
                .collect::<Result<_, _>>()?,
        ),
        Schema::Uuid(_) => Kind::String,
        _ => return Err(unsupported()),
    })
}

/// Whether a writer type can be read into the reader type of `target` (Avro's
/// promotion rules).
fn readable(target: Target, kind: &Kind) -> bool {
    match target {
        Target::OrderId | Target::Product | Target::User => {
            matches!(kind, Kind::String | Kind::Bytes)
        }
        Target::Price => matches!(kind, Kind::Int | Kind::Long | Kind::Float),
        Target::Quantity => matches!(kind, Kind::Int),
        Target::CreatedAt => matches!(kind, Kind::Int | Kind::Long),
    }
}

impl Plan {
    /// Resolves a writer schema against the order reader schema (v2).
    pub fn new(writer: &Schema) -> Result<Self, AvroError> {
        let Schema::Record(record) = writer else {
            return Err(AvroError::IncompatibleSchema(
                "writer schema is not a record".into(),
            ));
        };
        let mut steps = Vec::with_capacity(record.fields.len());
        let mut seen = Vec::new();
        for field in &record.fields {
            let kind = kind_of(&field.schema)?;
            let target = match field.name.as_str() {
                "orderId" => Some(Target::OrderId),
                "product" => Some(Target::Product),
                "price" => Some(Target::Price),
                "user" => Some(Target::User),
                "quantity" => Some(Target::Quantity),
                "createdAt" => Some(Target::CreatedAt),
                _ => None,
            };
            match target {
                Some(t) if readable(t, &kind) => {
                    seen.push(t);
                    steps.push(Step::Read(t, kind));
                }
                Some(t) => {
                    return Err(AvroError::IncompatibleSchema(format!(
                        "field {} has type {kind:?}, which cannot be read as {t:?}",
                        field.name
                    )));
                }
                None => steps.push(Step::Skip(kind)),
            }
        }
        // Reader fields without a default must come from the writer.
        for required in [Target::OrderId, Target::Product, Target::Price] {
            if !seen.contains(&required) {
                return Err(AvroError::IncompatibleSchema(format!(
                    "writer has no {required:?} field and the reader has no default for it"
                )));
            }
        }
        Ok(Plan {
            steps,
            fingerprint: fingerprint(writer),
        })
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Decodes one raw datum; every byte must be consumed.
    pub fn decode(&self, bytes: &[u8]) -> Result<Order, AvroError> {
        let mut r = Reader { buf: bytes };
        let mut order = Order {
            order_id: String::new(),
            user: String::new(),
            product: String::new(),
            quantity: 1,
            price: None,
            created_at_ms: 0,
        };
        for step in &self.steps {
            match step {
                Step::Skip(kind) => r.skip(kind)?,
                Step::Read(target, kind) => match target {
                    Target::OrderId => order.order_id = r.string(kind)?,
                    Target::Product => order.product = r.string(kind)?,
                    Target::User => order.user = r.string(kind)?,
                    Target::Price => order.price = Some(r.number(kind)?),
                    Target::Quantity => {
                        order.quantity =
                            i32::try_from(r.long()?).map_err(|_| AvroError::Invalid {
                                what: "int",
                                detail: "out of range".into(),
                            })?
                    }
                    Target::CreatedAt => order.created_at_ms = r.long()?,
                },
            }
        }
        if !r.buf.is_empty() {
            return Err(AvroError::Trailing(r.buf.len()));
        }
        Ok(order)
    }
}

/// The CRC-64-AVRO (Rabin) fingerprint of a schema's parsing canonical form.
pub fn fingerprint(schema: &Schema) -> u64 {
    let bytes = schema.fingerprint::<Rabin>().bytes;
    u64::from_le_bytes(bytes.try_into().expect("Rabin fingerprints are 8 bytes"))
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], AvroError> {
        if self.buf.len() < n {
            return Err(AvroError::Truncated(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn long(&mut self) -> Result<i64, AvroError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let [byte] = *self.take(1, "a varint")? else {
                unreachable!()
            };
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(AvroError::Invalid {
            what: "varint",
            detail: "longer than 10 bytes".into(),
        })
    }

    fn len(&mut self, what: &'static str) -> Result<usize, AvroError> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| AvroError::Invalid {
            what,
            detail: format!("negative length {n}"),
        })
    }

    fn string(&mut self, kind: &Kind) -> Result<String, AvroError> {
        debug_assert!(matches!(kind, Kind::String | Kind::Bytes));
        let n = self.len("string")?;
        let bytes = self.take(n, "a string")?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| AvroError::Invalid {
                what: "string",
                detail: e.to_string(),
            })
    }

    fn number(&mut self, kind: &Kind) -> Result<f64, AvroError> {
        Ok(match kind {
            Kind::Int | Kind::Long => self.long()? as f64,
            Kind::Float => {
                let b = self.take(4, "a float")?;
                let f = f32::from_le_bytes(b.try_into().expect("4 bytes"));
                // Shortest decimal that round-trips the float: 45.67f32 reads as 45.67,
                // not 45.66999816894531, so sums and JSON show what the producer meant.
                if f.is_finite() {
                    f.to_string().parse().unwrap_or(f64::from(f))
                } else {
                    f64::from(f)
                }
            }
            Kind::Double => {
                f64::from_le_bytes(self.take(8, "a double")?.try_into().expect("8 bytes"))
            }
            other => unreachable!("plan only reads numbers from numeric kinds, got {other:?}"),
        })
    }

    fn skip(&mut self, kind: &Kind) -> Result<(), AvroError> {
        match kind {
            Kind::Null => {}
            Kind::Boolean => {
                self.take(1, "a boolean")?;
            }
            Kind::Int | Kind::Long | Kind::Enum => {
                self.long()?;
            }
            Kind::Float => {
                self.take(4, "a float")?;
            }
            Kind::Double => {
                self.take(8, "a double")?;
            }
            Kind::Bytes | Kind::String => {
                let n = self.len("bytes")?;
                self.take(n, "bytes")?;
            }
            Kind::Fixed(n) => {
                self.take(*n, "a fixed")?;
            }
            Kind::Union(variants) => {
                let i = self.long()?;
                let variant = usize::try_from(i)
                    .ok()
                    .and_then(|i| variants.get(i))
                    .ok_or_else(|| AvroError::Invalid {
                        what: "union branch",
                        detail: i.to_string(),
                    })?;
                self.skip(variant)?;
            }
            Kind::Record(fields) => {
                for f in fields {
                    self.skip(f)?;
                }
            }
        }
        Ok(())
    }
}

/// Writes orders as v2 datums, framed with single-object encoding.
#[derive(Debug, Clone)]
pub struct Writer {
    header: [u8; 10],
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl Writer {
    pub fn new() -> Self {
        let schema = Schema::parse_str(ORDER_SCHEMA).expect("ORDER_SCHEMA is valid Avro");
        let mut header = [0u8; 10];
        header[..2].copy_from_slice(&SINGLE_OBJECT_MARKER);
        header[2..].copy_from_slice(&fingerprint(&schema).to_le_bytes());
        Writer { header }
    }

    /// The single-object encoding of `order` under the v2 schema.
    pub fn encode(&self, order: &Order) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(&self.header);
        encode_datum(order, &mut out);
        out
    }
}

/// The raw v2 datum of `order` (no framing). A missing price is written as 0, which
/// only happens for orders that came from seed-000 JSON.
pub fn encode_datum(order: &Order, out: &mut Vec<u8>) {
    put_string(out, &order.order_id);
    put_string(out, &order.product);
    out.extend_from_slice(&(order.price.unwrap_or(0.0) as f32).to_le_bytes());
    put_string(out, &order.user);
    put_long(out, i64::from(order.quantity));
    put_long(out, order.created_at_ms);
}

/// The raw seed-003 (v1) datum of an order, as fastavro's schemaless writer emits it.
pub fn encode_seed_datum(order: &Order) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_string(&mut out, &order.order_id);
    put_string(&mut out, &order.product);
    out.extend_from_slice(&(order.price.unwrap_or(0.0) as f32).to_le_bytes());
    out
}

fn put_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    put_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// Decoders for every known writer schema, looked up by fingerprint.
#[derive(Debug, Clone)]
pub struct Registry {
    seed: Plan,
    by_fingerprint: Vec<Plan>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        let seed = Schema::parse_str(SEED_SCHEMA).expect("SEED_SCHEMA is valid Avro");
        let v2 = Schema::parse_str(ORDER_SCHEMA).expect("ORDER_SCHEMA is valid Avro");
        let seed = Plan::new(&seed).expect("the seed schema resolves against v2");
        let v2 = Plan::new(&v2).expect("v2 resolves against itself");
        Registry {
            by_fingerprint: vec![seed.clone(), v2],
            seed,
        }
    }

    /// Adds a writer schema (e.g. a newer producer's), so its single-object messages decode.
    pub fn register(&mut self, writer: &Schema) -> Result<u64, AvroError> {
        let plan = Plan::new(writer)?;
        let fp = plan.fingerprint;
        self.by_fingerprint.retain(|p| p.fingerprint != fp);
        self.by_fingerprint.push(plan);
        Ok(fp)
    }

    /// Decodes a single-object encoded message (marker already checked by the caller).
    pub fn decode_single_object(&self, bytes: &[u8]) -> Result<Order, AvroError> {
        let header = bytes
            .get(2..10)
            .ok_or(AvroError::Truncated("the single-object header"))?;
        let fp = u64::from_le_bytes(header.try_into().expect("8 bytes"));
        let plan = self
            .by_fingerprint
            .iter()
            .find(|p| p.fingerprint == fp)
            .ok_or(AvroError::UnknownFingerprint(fp))?;
        plan.decode(&bytes[10..])
    }

    /// Decodes a raw seed-003 datum.
    pub fn decode_seed(&self, bytes: &[u8]) -> Result<Order, AvroError> {
        self.seed.decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value;

    fn datum(schema: &Schema, value: Value) -> Vec<u8> {
        apache_avro::writer::datum::GenericDatumWriter::builder(schema)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap()
    }

    fn sample() -> Order {
        Order {
            order_id: "a1b2".into(),
            user: "john".into(),
            product: "item3".into(),
            quantity: 2,
            price: Some(45.67),
            created_at_ms: 1_700_000_000_000,
        }
    }

    /// The bytes fastavro's schemaless_writer emits for
    /// {"orderId": "a1b2", "product": "item3", "price": 45.67} under the seed schema,
    /// derived by hand from the Avro spec: a string is its zig-zag varint length
    /// (4 -> 0x08, 5 -> 0x0A) then UTF-8; a float is IEEE-754 single precision,
    /// little-endian (45.67f32 = 0x4236AE14).
    const SEED_BYTES: [u8; 15] = [
        0x08, b'a', b'1', b'b', b'2', 0x0A, b'i', b't', b'e', b'm', b'3', 0x14, 0xAE, 0x36, 0x42,
    ];

    #[test]
    fn seed_datum_decodes_from_spec_bytes() {
        let order = Registry::new().decode_seed(&SEED_BYTES).unwrap();
        assert_eq!(order.order_id, "a1b2");
        assert_eq!(order.product, "item3");
        assert_eq!(order.price, Some(45.67));
        // v2 defaults fill what v1 lacks.
        assert_eq!(
            (order.user.as_str(), order.quantity, order.created_at_ms),
            ("", 1, 0)
        );
        assert_eq!(encode_seed_datum(&order), SEED_BYTES);
    }

    #[test]
    fn seed_datum_matches_apache_avro() {
        let schema = Schema::parse_str(SEED_SCHEMA).unwrap();
        let value = Value::Record(vec![
            ("orderId".into(), Value::String("a1b2".into())),
            ("product".into(), Value::String("item3".into())),
            ("price".into(), Value::Float(45.67)),
        ]);
        assert_eq!(datum(&schema, value), SEED_BYTES);
    }

    #[test]
    fn v2_round_trips_and_matches_apache_avro() {
        let reg = Registry::new();
        let writer = Writer::new();
        let bytes = writer.encode(&sample());
        assert_eq!(bytes[..2], SINGLE_OBJECT_MARKER);
        assert_eq!(reg.decode_single_object(&bytes).unwrap(), sample());

        let schema = Schema::parse_str(ORDER_SCHEMA).unwrap();
        let value = Value::Record(vec![
            ("orderId".into(), Value::String("a1b2".into())),
            ("product".into(), Value::String("item3".into())),
            ("price".into(), Value::Float(45.67)),
            ("user".into(), Value::String("john".into())),
            ("quantity".into(), Value::Int(2)),
            (
                "createdAt".into(),
                Value::TimestampMillis(1_700_000_000_000),
            ),
        ]);
        assert_eq!(datum(&schema, value), bytes[10..]);
    }

    #[test]
    fn schemas_are_compatible_both_ways() {
        use apache_avro::schema_compatibility::SchemaCompatibility;
        let v1 = Schema::parse_str(SEED_SCHEMA).unwrap();
        let v2 = Schema::parse_str(ORDER_SCHEMA).unwrap();
        SchemaCompatibility::can_read(&v1, &v2).expect("v2 reads v1 data");
        SchemaCompatibility::can_read(&v2, &v1).expect("v1 reads v2 data");
    }

    #[test]
    fn a_newer_writer_with_extra_fields_and_promotion_is_readable_once_registered() {
        let v3 = Schema::parse_str(
            r#"{"type":"record","name":"Order","namespace":"com.assignment","fields":[
                {"name":"orderId","type":"string"},
                {"name":"coupon","type":["null","string"],"default":null},
                {"name":"product","type":"string"},
                {"name":"price","type":"int"},
                {"name":"quantity","type":"int","default":1}]}"#,
        )
        .unwrap();
        let value = Value::Record(vec![
            ("orderId".into(), Value::String("x".into())),
            (
                "coupon".into(),
                Value::Union(1, Box::new(Value::String("SAVE".into()))),
            ),
            ("product".into(), Value::String("pizza".into())),
            ("price".into(), Value::Int(12)),
            ("quantity".into(), Value::Int(3)),
        ]);
        let datum = datum(&v3, value);
        let mut msg = SINGLE_OBJECT_MARKER.to_vec();
        msg.extend_from_slice(&fingerprint(&v3).to_le_bytes());
        msg.extend_from_slice(&datum);

        let mut reg = Registry::new();
        assert!(matches!(
            reg.decode_single_object(&msg),
            Err(AvroError::UnknownFingerprint(_))
        ));
        reg.register(&v3).unwrap();
        let order = reg.decode_single_object(&msg).unwrap();
        assert_eq!(
            (order.product.as_str(), order.price, order.quantity),
            ("pizza", Some(12.0), 3)
        );
    }

    #[test]
    fn incompatible_writer_is_refused_with_reason() {
        let bad = Schema::parse_str(
            r#"{"type":"record","name":"Order","fields":[{"name":"orderId","type":"string"}]}"#,
        )
        .unwrap();
        let err = Plan::new(&bad).unwrap_err();
        assert!(err.to_string().contains("Product"), "{err}");
    }

    #[test]
    fn truncated_and_trailing_bytes_are_errors() {
        let reg = Registry::new();
        for n in 0..SEED_BYTES.len() {
            assert!(
                reg.decode_seed(&SEED_BYTES[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        let mut long = SEED_BYTES.to_vec();
        long.push(0);
        assert_eq!(reg.decode_seed(&long), Err(AvroError::Trailing(1)));
    }
}
