//! What the console reads from Kafka itself: partition ends (for the lag), the
//! processor's consumer group, and one message by its coordinates. rdkafka's
//! calls block, so each runs on the blocking pool.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};
use serde::Serialize;

use crate::kafka::KafkaConfig;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A partition's lag: its end against the processor's stored position.
#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    pub partition: i32,
    /// The offset the next record will get.
    pub end: i64,
    /// The next offset the processor will read, as its store records it.
    pub position: Option<i64>,
    pub lag: i64,
}

/// The processor's consumer group as the cluster sees it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupState {
    pub group: String,
    /// `Stable`, `Empty`, `PreparingRebalance`, ... or `Unknown` when the
    /// cluster could not say (`error` tells why).
    pub state: String,
    pub members: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One message as it is in Kafka.
#[derive(Debug, Clone, Serialize)]
pub struct RawMessage {
    pub key: Option<String>,
    pub timestamp_ms: Option<i64>,
    pub headers: Vec<(String, String)>,
    pub size: usize,
    /// The bytes as hex (the first 512).
    pub hex: String,
    /// The order the processor decodes from it, as JSON...
    pub decoded: Option<serde_json::Value>,
    /// ...or why it cannot.
    pub decode_error: Option<String>,
}

fn consumer(kafka: &KafkaConfig) -> Result<BaseConsumer, String> {
    // A group id is required by librdkafka even for assign(): it is never
    // joined or committed to.
    kafka
        .consumer_config("orderflow.console", &[("enable.auto.commit", "false")])
        .create()
        .map_err(|e| format!("cannot create a Kafka client: {e}"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("the Kafka read panicked: {e}"))?
}

/// A client for metadata, partition ends and groups, made on first use and
/// kept: a librdkafka client costs threads and connections, and the dashboard
/// asks every few seconds. Reading one message takes a client of its own, as
/// it assigns a partition.
pub struct Cluster {
    kafka: KafkaConfig,
    client: Mutex<Option<Arc<BaseConsumer>>>,
}

impl Cluster {
    pub fn new(kafka: KafkaConfig) -> Cluster {
        Cluster {
            kafka,
            client: Mutex::new(None),
        }
    }

    fn client(&self) -> Result<Arc<BaseConsumer>, String> {
        let mut client = self.client.lock().expect("cluster client lock");
        if let Some(c) = client.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(consumer(&self.kafka)?);
        *client = Some(c.clone());
        Ok(c)
    }

    /// The end offset of each partition of `topic`.
    pub async fn ends(&self, topic: &str) -> Result<Vec<(i32, i64)>, String> {
        let c = self.client()?;
        let topic = topic.to_string();
        blocking(move || ends(&c, &topic)).await
    }

    pub async fn group_state(&self, group: &str) -> GroupState {
        let g = group.to_string();
        let found = match self.client() {
            Ok(c) => blocking(move || describe(&c, &g)).await,
            Err(e) => Err(e),
        };
        let (state, members, error) = match found {
            Ok(Some((s, m))) => (s, m, None),
            Ok(None) => ("Dead".to_string(), 0, None),
            Err(e) => ("Unknown".to_string(), 0, Some(e)),
        };
        GroupState {
            group: group.to_string(),
            state,
            members,
            error,
        }
    }
}

fn ends(c: &BaseConsumer, topic: &str) -> Result<Vec<(i32, i64)>, String> {
    let md = c
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(|e| format!("reading the metadata of {topic}: {e}"))?;
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    parts
        .into_iter()
        .map(|p| {
            c.fetch_watermarks(topic, p, TIMEOUT)
                .map(|(_, high)| (p, high))
                .map_err(|e| format!("reading the end of {topic}[{p}]: {e}"))
        })
        .collect()
}

/// The group's state and member count; `None` when the cluster has no such group.
fn describe(c: &BaseConsumer, group: &str) -> Result<Option<(String, usize)>, String> {
    let list = c
        .fetch_group_list(Some(group), TIMEOUT)
        .map_err(|e| format!("describing group {group}: {e}"))?;
    Ok(list
        .groups()
        .iter()
        .find(|x| x.name() == group)
        .map(|x| (x.state().to_string(), x.members().len())))
}

/// Reads the message at `topic[partition]@offset`; `None` when it is gone
/// (retention: the partition answers with a later record).
pub async fn message(
    kafka: &KafkaConfig,
    (topic, partition, offset): (&str, i32, i64),
    decoder: crate::codec::Decoder,
) -> Result<Option<RawMessage>, String> {
    let (kafka, topic) = (kafka.clone(), topic.to_string());
    blocking(move || {
        let c = consumer(&kafka)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition, Offset::Offset(offset))
            .map_err(|e| e.to_string())?;
        c.assign(&tpl)
            .map_err(|e| format!("reading {topic}[{partition}]: {e}"))?;
        let deadline = std::time::Instant::now() + TIMEOUT;
        while std::time::Instant::now() < deadline {
            let Some(m) = c.poll(Duration::from_millis(200)) else {
                continue;
            };
            let m = m.map_err(|e| format!("reading {topic}[{partition}]@{offset}: {e}"))?;
            if m.offset() != offset {
                // Compacted or deleted: the first record after it came back.
                return Ok(None);
            }
            let bytes = m.payload().unwrap_or_default();
            let headers = crate::kafka::text_headers(&m).collect();
            let (decoded, decode_error) = match decoder.decode(bytes) {
                Ok((o, f)) => {
                    let mut v = serde_json::to_value(&o).expect("orders serialize");
                    v["format"] = format!("{f:?}").into();
                    (Some(v), None)
                }
                Err(e) => (None, Some(e.to_string())),
            };
            return Ok(Some(RawMessage {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                timestamp_ms: m.timestamp().to_millis(),
                headers,
                size: bytes.len(),
                hex: hex::encode(&bytes[..bytes.len().min(512)]),
                decoded,
                decode_error,
            }));
        }
        Err(format!(
            "{topic}[{partition}]@{offset} could not be read within {} s: is the cluster reachable?",
            TIMEOUT.as_secs()
        ))
    })
    .await
}
