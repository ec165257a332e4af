//! The order producer: random orders at a steady rate, idempotent, keyed by order id.

use std::time::Duration;

use futures::{StreamExt, stream::FuturesUnordered};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    producer::{FutureProducer, FutureRecord, future_producer::OwnedDeliveryResult},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    codec::{avro, json},
    console::Console,
    kafka::{self, KafkaConfig},
    order::{Order, random_order},
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
}

#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub topic: String,
    /// Orders per second; `None` sends as fast as the producer accepts them.
    pub rate: Option<f64>,
    pub count: Option<u64>,
    pub format: WireFormat,
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
    /// Every order sent, in send order (kept for tests and the demo's checks).
    pub order_ids: Vec<String>,
}

pub fn encode(format: WireFormat, writer: &avro::Writer, order: &Order) -> Vec<u8> {
    match format {
        WireFormat::Avro => writer.encode(order),
        WireFormat::Json => json::encode(order),
        WireFormat::SeedAvro => avro::encode_seed_datum(order),
    }
}

/// Sends orders until `count` is reached or `shutdown` is cancelled, then waits for
/// every delivery report.
pub async fn run(
    cfg: &Config,
    output: Output,
    shutdown: CancellationToken,
) -> Result<Report, Error> {
    let producer: FutureProducer = cfg.kafka.producer(&[])?;
    let writer = avro::Writer::new();
    let bar = matches!(output, Output::Progress).then(|| progress_bar(cfg.count.unwrap_or(0)));
    let mut pending = FuturesUnordered::new();
    let mut report = Report::default();
    let mut failed = 0u64;
    let mut first_error = None;
    let started = Instant::now();

    let mut on_delivery = |result: Result<(i32, i64), KafkaError>, report: &mut Report| match result
    {
        Ok((partition, offset)) => {
            report.delivered += 1;
            match &output {
                Output::Lines(out) => out.line(format_args!(
                    "Delivered to {} [{partition}] @ {offset}",
                    cfg.topic
                )),
                Output::Progress => bar.as_ref().expect("progress mode has a bar").inc(1),
                Output::Quiet => {}
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "delivery failed");
            failed += 1;
            first_error.get_or_insert(e);
        }
    };

    while cfg.count.is_none_or(|c| report.sent < c) && !shutdown.is_cancelled() {
        if let Some(rate) = cfg.rate {
            let due = started + Duration::from_secs_f64(report.sent as f64 / rate);
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        let order = random_order();
        let payload = encode(cfg.format, &writer, &order);
        if let Output::Lines(out) = &output {
            out.line(format_args!(
                "Produced: {}",
                describe(cfg.format, &order, &payload)
            ));
        }
        let mut record = FutureRecord::to(&cfg.topic)
            .key(&order.order_id)
            .payload(&payload);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    // Backpressure: wait for a delivery to free room in the queue.
                    record = r;
                    match pending.next().await {
                        Some(result) => on_delivery(owned(result), &mut report),
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                Err((e, _)) => {
                    on_delivery(Err(e), &mut report);
                    break;
                }
            }
        }
        report.sent += 1;
        report.order_ids.push(order.order_id);
        // Report deliveries as they come, without waiting.
        while let Some(Some(result)) = futures::FutureExt::now_or_never(pending.next()) {
            on_delivery(owned(result), &mut report);
        }
    }
    while let Some(result) = pending.next().await {
        on_delivery(owned(result), &mut report);
    }
    if let Some(bar) = bar {
        bar.finish();
    }
    match first_error {
        Some(first) => Err(Error::Undelivered {
            failed,
            sent: report.sent,
            first,
            topic: cfg.topic.clone(),
        }),
        None => Ok(report),
    }
}

/// A delivery report as (partition, offset); a report that never came (the
/// producer went away) counts as a failed delivery.
fn owned(
    result: Result<OwnedDeliveryResult, futures::channel::oneshot::Canceled>,
) -> Result<(i32, i64), KafkaError> {
    match result {
        Ok(Ok(d)) => Ok((d.partition, d.offset)),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}

/// The `Produced:` text: the order as JSON in the shape its format carries.
fn describe(format: WireFormat, order: &Order, payload: &[u8]) -> String {
    match format {
        WireFormat::Json => String::from_utf8_lossy(payload).into_owned(),
        WireFormat::SeedAvro => serde_json::json!({
            "orderId": order.order_id, "product": order.product, "price": order.price,
        })
        .to_string(),
        WireFormat::Avro => serde_json::to_string(order).expect("orders serialize"),
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
