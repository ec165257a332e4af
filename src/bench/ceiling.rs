//! The ceilings: what plain librdkafka does on the same broker, topic and orders,
//! with none of orderflow's work. Both run on a blocking thread, as a plain
//! librdkafka program would.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientContext, Message,
    consumer::{BaseConsumer, Consumer, DefaultConsumerContext},
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseRecord, DeliveryResult, Producer, ProducerContext},
};

use super::{Error, Rate};
use crate::kafka::{self, KafkaConfig};

#[derive(Default)]
struct Counting {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = if result.is_ok() {
            &self.delivered
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends pre-encoded `(key, payload)` messages as fast as librdkafka takes them
/// (its own thread serves delivery reports), with orderflow's producer settings,
/// and waits for every delivery.
pub fn raw_producer(
    kafka: &KafkaConfig,
    topic: &str,
    messages: &[(String, Vec<u8>)],
) -> Result<Rate, Error> {
    let client = |source| Error::Client {
        stage: "raw producer",
        source,
    };
    let producer: rdkafka::producer::ThreadedProducer<Counting> = kafka.create(
        "producer",
        &kafka.client_config(kafka::PRODUCER_DEFAULTS),
        Counting::default(),
    )?;
    let started = Instant::now();
    for (key, payload) in messages {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(client(e)),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).map_err(client)?;
    let seconds = started.elapsed().as_secs_f64();
    let ctx = producer.context();
    let (delivered, failed) = (
        ctx.delivered.load(Ordering::Relaxed),
        ctx.failed.load(Ordering::Relaxed),
    );
    if delivered != messages.len() as u64 {
        return Err(Error::Incomplete {
            stage: "raw producer",
            detail: format!(
                "{delivered} of {} messages delivered, {failed} failed",
                messages.len()
            ),
        });
    }
    Ok(Rate {
        count: delivered,
        seconds,
    })
}

/// Reads `expected` messages from `topic` with a new consumer group and does
/// nothing with them; timed from the first message to the last.
pub fn noop_consumer(
    kafka: &KafkaConfig,
    topic: &str,
    group: &str,
    expected: u64,
) -> Result<Rate, Error> {
    let client = |source| Error::Client {
        stage: "no-op consumer",
        source,
    };
    let consumer: BaseConsumer = kafka.create(
        "consumer",
        &kafka.consumer_config(group, &[("enable.auto.commit", "false")]),
        DefaultConsumerContext,
    )?;
    consumer.subscribe(&[topic]).map_err(client)?;
    let stall = Duration::from_secs(60);
    let (mut count, mut bytes) = (0u64, 0usize);
    let mut first = None;
    let mut last = Instant::now();
    while count < expected {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last = Instant::now();
                first.get_or_insert(last);
                count += 1;
                bytes += m.payload().map_or(0, <[u8]>::len);
            }
            Some(Err(e)) => tracing::warn!(error = %e, "no-op consumer"),
            None if last.elapsed() > stall => {
                return Err(Error::Incomplete {
                    stage: "no-op consumer",
                    detail: format!(
                        "read {count} of {expected} messages, then nothing for {}s",
                        stall.as_secs()
                    ),
                });
            }
            None => {}
        }
    }
    tracing::debug!(count, bytes, "no-op consumer done");
    Ok(Rate {
        count,
        seconds: first.map_or(0.0, |f| last.duration_since(f).as_secs_f64()),
    })
}
