//! The order processor: decode, validate, handle, aggregate; retry transient failures
//! with backoff without blocking other keys; dead-letter what cannot succeed; commit
//! only offsets whose messages are finished.
//!
//! The pieces: `source` (the group consumer, assignment and offsets), `attempt`
//! (one try at a message, no Kafka), `keys` (per-key queues and retry timers),
//! `dlq_record` and `dlq_writer` (the dead-letter side), `persist` (the store),
//! `flow` (a message from arrival to done) and `event_loop` (what runs when).

mod attempt;
pub mod backoff;
mod config;
mod dlq_record;
mod dlq_writer;
mod event;
mod event_loop;
mod flow;
mod handler;
mod keys;
pub mod membership;
pub mod offsets;
mod persist;
mod source;
mod summary;
mod timer;

use std::sync::Arc;

use rdkafka::error::KafkaError;
use tokio_util::sync::CancellationToken;

pub use config::{Config, DEFAULT_MAX_IN_FLIGHT};
pub use event::{Event, Observer, print_event};
pub use handler::{Failure, Handler};
pub use membership::Membership;
/// The most orders the processor hands the store in one transaction.
pub use persist::MAX_BATCH;
pub use summary::{Report, Summary};

use crate::{
    kafka,
    store::{self, Store},
};
use attempt::Attempts;
use dlq_record::Records;
use dlq_writer::DlqWriter;
use event_loop::Run;
use keys::KeyQueues;
use persist::Persister;
use source::Source;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    #[error("subscribing to {topic} failed: {source}")]
    Subscribe {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("consumer failed: {0}")]
    Consume(#[source] KafkaError),
    #[error("reading the order store: {0}")]
    Store(#[from] store::Error),
    #[error(transparent)]
    Membership(#[from] membership::ClaimError),
    #[error("writing to the dead-letter topic {topic} failed for good: {source}; {hint}")]
    DlqWrite {
        topic: String,
        #[source]
        source: Box<KafkaError>,
        hint: &'static str,
    },
}

pub struct Processor {
    config: Config,
    attempts: Attempts,
    observer: Box<dyn Observer>,
    records: Records,
    store: Option<Arc<Store>>,
}

impl Processor {
    pub fn new(config: Config, handler: Box<dyn Handler>, observer: Box<dyn Observer>) -> Self {
        Processor {
            attempts: Attempts::new(handler, config.max_attempts, config.backoff),
            records: Records::new(&config),
            config,
            observer,
            store: None,
        }
    }

    /// Keeps order history, aggregates and consumed offsets in `store`, which then
    /// decides where each partition is read from: every order is applied to it
    /// exactly once.
    pub fn with_store(mut self, store: Arc<Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Processes until `shutdown` is cancelled, or, once `drain` is cancelled, until
    /// every assigned partition is read to its end and nothing is pending.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        drain: CancellationToken,
    ) -> Result<Report, Error> {
        let cfg = &self.config;
        // Declared before `run`, so dropped after its consumer: the slot stays this
        // processor's until it has left the group.
        let instance = cfg
            .membership
            .claim(&cfg.kafka.bootstrap_servers, &cfg.group)?;
        let source = Source::subscribe(cfg, instance.id.as_deref())?;
        let dlq = DlqWriter::new(cfg.kafka.producer()?, cfg.dlq_topic.clone());
        let mut run = Run {
            source,
            queues: KeyQueues::default(),
            dlq,
            report: Report::default(),
            persist: None,
        };
        if let Some(store) = &self.store {
            run.report.aggregates = store.aggregates().await?;
            run.persist = Some(Persister::new(
                store.clone(),
                &self.config.group,
                &self.config.topic,
            ));
        }
        let result = self.event_loop(&mut run, &shutdown, &drain).await;
        self.finish(&mut run).await;
        run.report.ended = Some(tokio::time::Instant::now());
        result.map(|()| run.report)
    }
}
