//! The order producer: random orders at a steady rate, idempotent, keyed by order id.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::{
    ClientContext, Message,
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    codec::{avro, confluent, json},
    console::Console,
    kafka::{self, KafkaConfig},
    order::{Ids, Order},
};

/// How orders are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WireFormat {
    /// The project's evolved schema in Avro single-object encoding.
    Avro,
    /// seed-000's JSON (`order_id`, `user`, `item`, `quantity`).
    Json,
    /// seed-003's raw Avro datum (`orderId`, `product`, `price`), no framing.
    SeedAvro,
    /// Confluent's framing (zero byte, schema id, Avro datum) under a schema
    /// registered in a schema registry.
    Confluent,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub topic: String,
    /// Orders per second; `None` sends as fast as the producer accepts them.
    pub rate: Option<f64>,
    pub count: Option<u64>,
    pub format: WireFormat,
    /// For [`WireFormat::Confluent`]: the registered schema orders are written with.
    pub confluent: Option<confluent::Writer>,
    pub ids: Ids,
}

/// How to show progress.
#[derive(Debug, Clone)]
pub enum Output {
    /// A `Produced:` and a `Delivered to` line per order, as in the seeds.
    Lines(Console),
    /// A progress bar (for `--count` on a terminal).
    Progress,
    Quiet,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    #[error(
        "the Confluent format needs a schema registered in a schema registry: give --schema-registry-url"
    )]
    NoSchema,
    #[error(
        "{failed} of {sent} orders were not delivered (first error: {first}); check the broker and topic {topic}"
    )]
    Undelivered {
        failed: u64,
        sent: u64,
        first: KafkaError,
        topic: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub sent: u64,
    pub delivered: u64,
}

/// The bytes of `order` in the configured format.
fn encode(cfg: &Config, writer: &avro::Writer, order: &Order) -> Vec<u8> {
    match (cfg.format, &cfg.confluent) {
        (WireFormat::Avro, _) => writer.encode(order),
        (WireFormat::Json, _) => json::encode(order),
        (WireFormat::SeedAvro, _) => avro::encode_seed_datum(order),
        (WireFormat::Confluent, Some(w)) => w
            .encode(order)
            .expect("confluent::Writer::new checked that the schema carries orders"),
        (WireFormat::Confluent, None) => unreachable!("run refuses Confluent without a schema"),
    }
}

/// Delivery reports, counted (and shown) on librdkafka's own polling thread: no
/// per-order future, channel or copy of the delivered message.
struct Deliveries {
    output: Output,
    bar: Option<ProgressBar>,
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<KafkaError>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                match &self.output {
                    Output::Lines(out) => out.line(format_args!(
                        "Delivered to {} [{}] @ {}",
                        m.topic(),
                        m.partition(),
                        m.offset()
                    )),
                    Output::Progress => self.bar.as_ref().expect("progress mode has a bar").inc(1),
                    Output::Quiet => {}
                }
            }
            Err((e, _)) => self.failed(e.clone()),
        }
    }
}

impl Deliveries {
    fn failed(&self, e: KafkaError) {
        tracing::error!(error = %e, "delivery failed");
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().expect("first error lock");
        first.get_or_insert(e);
    }
}

/// Sends orders until `count` is reached or `shutdown` is cancelled, then waits for
/// every delivery report.
pub async fn run(
    cfg: &Config,
    output: Output,
    shutdown: CancellationToken,
) -> Result<Report, Error> {
    if cfg.format == WireFormat::Confluent && cfg.confluent.is_none() {
        return Err(Error::NoSchema);
    }
    let bar = matches!(output, Output::Progress).then(|| progress_bar(cfg.count.unwrap_or(0)));
    let deliveries = Deliveries {
        output,
        bar,
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
    };
    let producer: ThreadedProducer<Deliveries> = cfg.kafka.producer_with(deliveries)?;
    let ctx = producer.context();
    let writer = avro::Writer::new();
    let mut sent = 0u64;
    let started = Instant::now();

    while cfg.count.is_none_or(|c| sent < c) && !shutdown.is_cancelled() {
        if let Some(rate) = cfg.rate {
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        let order = cfg.ids.random_order();
        let payload = encode(cfg, &writer, &order);
        if let Output::Lines(out) = &ctx.output {
            out.line(format_args!(
                "Produced: {}",
                describe(cfg.format, &order, &payload)
            ));
        }
        let mut record = BaseRecord::to(&cfg.topic)
            .key(&order.order_id)
            .payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Backpressure: librdkafka's queue is full until deliveries free room.
                    record = r;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => {
                    ctx.failed(e);
                    break;
                }
            }
        }
        sent += 1;
    }
    // librdkafka counts a message until its delivery report has been served, and
    // fails each one after `message.timeout.ms`; the deadline is only a backstop.
    let deadline = Instant::now() + FLUSH_TIMEOUT;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let delivered = ctx.delivered.load(Ordering::Relaxed);
    let missing = sent.saturating_sub(delivered + ctx.failed.load(Ordering::Relaxed));
    for _ in 0..missing {
        ctx.failed(KafkaError::Flush(RDKafkaErrorCode::MessageTimedOut));
    }
    if let Some(bar) = &ctx.bar {
        bar.finish();
    }
    let failed = ctx.failed.load(Ordering::Relaxed);
    match ctx.first_error.lock().expect("first error lock").take() {
        Some(first) => Err(Error::Undelivered {
            failed,
            sent,
            first,
            topic: cfg.topic.clone(),
        }),
        None => Ok(Report { sent, delivered }),
    }
}

/// How long the end of a run waits for its last deliveries.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(330);

/// The `Produced:` text: the order as JSON in the shape its format carries.
fn describe(format: WireFormat, order: &Order, payload: &[u8]) -> String {
    match format {
        WireFormat::Json => String::from_utf8_lossy(payload).into_owned(),
        WireFormat::SeedAvro => serde_json::json!({
            "orderId": order.order_id, "product": order.product, "price": order.price,
        })
        .to_string(),
        WireFormat::Avro | WireFormat::Confluent => {
            serde_json::to_string(order).expect("orders serialize")
        }
    }
}

fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40.cyan/blue} {pos}/{len} delivered ({per_sec}, eta {eta})",
        )
        .expect("valid template")
        .progress_chars("##-"),
    );
    bar
}
