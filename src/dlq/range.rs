//! Reads given offset ranges of topic partitions once, without a consumer group:
//! the DLQ index reads the DLQ from where it stopped, a resumed replay reads
//! what it may have sent before a crash.

use std::{collections::HashMap, time::Duration};

use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
    error::KafkaError,
    message::BorrowedMessage,
    types::RDKafkaErrorCode,
};

use crate::kafka::{self, KafkaConfig};

/// Offsets `from..to` of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: KafkaError,
    },
    #[error(
        "reading {what}: no record for {secs} s while {left} partition(s) were not read to their end; is the broker up?"
    )]
    Stalled {
        what: String,
        secs: u64,
        left: usize,
    },
}

/// How long a read waits for a record before it gives up.
const STALL: Duration = Duration::from_secs(60);

/// The end (high watermark) of each partition of `topic`; empty when the topic
/// does not exist.
pub fn ends(kafka: &KafkaConfig, topic: &str) -> Result<Vec<(i32, i64, i64)>, Error> {
    let consumer = reader_consumer(kafka)?;
    let timeout = Duration::from_secs(10);
    let err = |source| Error::Read {
        what: format!("the partitions of {topic}"),
        source,
    };
    let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(err)?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(Vec::new());
    };
    match t.error().map(RDKafkaErrorCode::from) {
        None => {}
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => return Ok(Vec::new()),
        Some(code) => {
            return Err(Error::Read {
                what: format!("the partitions of {topic}"),
                source: KafkaError::MetadataFetch(code),
            });
        }
    }
    t.partitions()
        .iter()
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), timeout)
                .map_err(err)?;
            Ok((p.id(), low, high))
        })
        .collect()
}

fn reader_consumer(kafka: &KafkaConfig) -> Result<StreamConsumer<kafka::ConsumerLog>, Error> {
    // No group is joined (partitions are assigned), but librdkafka wants an id.
    // A short fetch wait: brokers that hold a fetch for its whole wait would
    // otherwise hold every read of a range that has reached its end.
    Ok(kafka.create(
        "consumer",
        &kafka.consumer_config(
            "orderflow-range-reader",
            &[
                ("enable.auto.commit", "false"),
                ("fetch.wait.max.ms", "50"),
                // A prefetch queue of 100,000 records and 64 MB by default was
                // most of a read's memory while the store took in what it read:
                // 122 MB peak for 100,000 DLQ records on Apache Kafka, 45 MB with
                // these, in 7.3 s instead of 7.1 (5,000 records: 28 MB, 17.7 s).
                ("queued.min.messages", "20000"),
                ("queued.max.messages.kbytes", "8192"),
            ],
        ),
        kafka::ConsumerLog,
    )?)
}

/// Reads every record of `ranges`, in order within each partition, handing
/// each to `each`. `what` names the read in errors.
pub async fn read(
    kafka: &KafkaConfig,
    what: &str,
    ranges: &[Range],
    mut each: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), Error> {
    let mut reader = Reader::start(kafka, what, ranges)?;
    while let Some(m) = reader.next().await? {
        each(&m);
    }
    Ok(())
}

/// A read of ranges, a record at a time.
pub struct Reader {
    consumer: Option<StreamConsumer<kafka::ConsumerLog>>,
    what: String,
    left: HashMap<(String, i32), i64>,
}

impl Reader {
    pub fn start(kafka: &KafkaConfig, what: &str, ranges: &[Range]) -> Result<Reader, Error> {
        let ranges: Vec<&Range> = ranges.iter().filter(|r| r.from < r.to).collect();
        let left = ranges
            .iter()
            .map(|r| ((r.topic.clone(), r.partition), r.to))
            .collect();
        let mut reader = Reader {
            consumer: None,
            what: what.to_string(),
            left,
        };
        if ranges.is_empty() {
            return Ok(reader);
        }
        let consumer = reader_consumer(kafka)?;
        let mut tpl = TopicPartitionList::new();
        for r in ranges {
            tpl.add_partition_offset(&r.topic, r.partition, Offset::Offset(r.from))
                .map_err(|e| reader.err(e))?;
        }
        consumer.assign(&tpl).map_err(|e| reader.err(e))?;
        reader.consumer = Some(consumer);
        Ok(reader)
    }

    fn err(&self, source: KafkaError) -> Error {
        Error::Read {
            what: self.what.clone(),
            source,
        }
    }

    /// The next record of the ranges; `None` once each is read to its end.
    pub async fn next(&mut self) -> Result<Option<BorrowedMessage<'_>>, Error> {
        let tick = Duration::from_millis(500);
        let mut quiet = Duration::ZERO;
        loop {
            if self.left.is_empty() {
                return Ok(None);
            }
            let consumer = self
                .consumer
                .as_ref()
                .expect("a read with ranges has a consumer");
            match tokio::time::timeout(tick, consumer.recv()).await {
                Ok(Ok(m)) => {
                    let key = (m.topic().to_string(), m.partition());
                    let Some(&to) = self.left.get(&key) else {
                        continue;
                    };
                    if m.offset() + 1 >= to {
                        self.left.remove(&key);
                    }
                    if m.offset() < to {
                        return Ok(Some(m));
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "{}: librdkafka retries on its own", self.what)
                }
                Err(_) => {
                    quiet += tick;
                    // Offsets a partition skips (transaction markers, compaction)
                    // end a range without a record at its last offset.
                    let positions = consumer.position().map_err(|e| self.err(e))?;
                    self.left.retain(|(t, p), to| {
                        !matches!(positions.find_partition(t, *p).map(|e| e.offset()),
                            Some(Offset::Offset(o)) if o >= *to)
                    });
                    if quiet >= STALL && !self.left.is_empty() {
                        return Err(Error::Stalled {
                            what: self.what.clone(),
                            secs: STALL.as_secs(),
                            left: self.left.len(),
                        });
                    }
                }
            }
        }
    }
}
