//! The DLQ consumer: prints each dead-lettered order as seed-003 does, with where
//! it came from and how it failed.

use std::collections::{BTreeMap, HashSet};

use rdkafka::{
    Message, TopicPartitionList,
    consumer::{CommitMode, Consumer, StreamConsumer},
    error::KafkaError,
};
use tokio_util::sync::CancellationToken;

use super::record::{self, DlqValue};
use crate::{
    console::Console,
    kafka::{self, KafkaConfig},
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    #[error("DLQ consumer failed: {0}")]
    Consume(#[from] KafkaError),
}

/// One record read from the DLQ.
#[derive(Debug, Clone)]
pub struct DlqEvent {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    /// `None` when the value is not a DLQ record (then `raw` holds it).
    pub value: Option<DlqValue>,
    pub raw: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl DlqEvent {
    pub fn from_message<M: Message>(m: &M) -> Self {
        let raw = m.payload().unwrap_or_default().to_vec();
        let headers = crate::kafka::text_headers(m).collect();
        DlqEvent {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            value: serde_json::from_slice(&raw).ok(),
            raw,
            headers,
        }
    }

    /// The seed's block: a marker line and the pretty JSON, then a summary of the headers.
    pub fn render(&self) -> String {
        let body = match &self.value {
            Some(v) => serde_json::to_string_pretty(v).expect("DLQ values serialize"),
            None => format!(
                "(not a DLQ record: {} bytes) {}",
                self.raw.len(),
                String::from_utf8_lossy(&self.raw)
            ),
        };
        let h = |k: &str| self.headers.get(k).map_or("?", String::as_str);
        let summary = if self.headers.contains_key(record::H_TOPIC) {
            format!(
                "from {}[{}]@{} | group {} | {} after {} attempt(s) | first failure {} | last failure {}",
                h(record::H_TOPIC),
                h(record::H_PARTITION),
                h(record::H_OFFSET),
                h(record::H_GROUP),
                h(record::H_KIND),
                h(record::H_ATTEMPTS),
                h(record::H_FIRST_FAILURE),
                h(record::H_LAST_FAILURE),
            )
        } else {
            "(no orderflow headers)".to_string()
        };
        format!("\n--- DLQ EVENT ---\n{body}\n{summary}")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub topic: String,
    pub group: String,
}

/// Reads the DLQ until `shutdown`, or, once `drain` is cancelled, until every
/// assigned partition is read to its end. Each event goes to `on_event`.
pub async fn run(
    cfg: &Config,
    mut on_event: impl FnMut(&DlqEvent),
    shutdown: CancellationToken,
    drain: CancellationToken,
) -> Result<u64, Error> {
    let consumer: StreamConsumer<kafka::ConsumerLog> = cfg.kafka.create(
        "consumer",
        &cfg.kafka.consumer_config(
            &cfg.group,
            &[
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "true"),
            ],
        ),
        kafka::ConsumerLog,
    )?;
    consumer.subscribe(&[&cfg.topic])?;
    let mut at_end: HashSet<i32> = HashSet::new();
    let mut seen = 0u64;
    loop {
        if drain.is_cancelled()
            && all_at_end(&consumer, &at_end)
            && kafka::caught_up(&consumer, consumer.client())?
        {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = drain.cancelled(), if !drain.is_cancelled() => {}
            // While draining, look again now and then: the end may have been
            // reached before the drain began.
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)), if drain.is_cancelled() => {}
            m = consumer.recv() => match m {
                Ok(m) => {
                    at_end.remove(&m.partition());
                    on_event(&DlqEvent::from_message(&m));
                    seen += 1;
                    consumer.store_offset_from_message(&m)?;
                }
                Err(KafkaError::PartitionEOF(p)) => {
                    at_end.insert(p);
                }
                Err(e) => tracing::warn!(error = %e, "DLQ consumer error; librdkafka retries on its own"),
            },
        }
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit is not a failure.
        if !matches!(
            e,
            KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)
        ) {
            return Err(e.into());
        }
    }
    Ok(seen)
}

fn all_at_end(consumer: &StreamConsumer<kafka::ConsumerLog>, at_end: &HashSet<i32>) -> bool {
    let assignment = consumer
        .assignment()
        .unwrap_or_else(|_| TopicPartitionList::new());
    let parts = assignment.elements();
    !parts.is_empty() && parts.iter().all(|e| at_end.contains(&e.partition()))
}

pub fn print(out: &Console, event: &DlqEvent) {
    out.line(format_args!("{}", event.render()));
}
