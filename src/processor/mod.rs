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

use rdkafka::{error::KafkaError, types::RDKafkaErrorCode};
use tokio_util::sync::CancellationToken;

pub use config::{Config, DEFAULT_MAX_IN_FLIGHT};
pub use event::{Event, Observer, Times, print_event};
pub use handler::{Failure, Handler};
pub use membership::Membership;
/// The most orders the processor hands the store in one transaction.
pub use persist::MAX_BATCH;
pub use summary::{Report, Summary};

use crate::{
    codec::{Decoder, avro},
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
            attempts: Attempts::new(
                Decoder::new(avro::Registry::new(), config.schemas.clone()),
                handler,
                config.max_attempts,
                config.backoff,
            ),
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
        let mut report = Report::default();
        let mut rejoins = Rejoins::default();
        loop {
            let (result, r) = self.session(report, &shutdown, &drain).await?;
            report = r;
            match result {
                Err(Error::Consume(e)) if self.fenced_itself(&e) && rejoins.allow() => {
                    tracing::warn!(error = %e, group = %self.config.group, "this static member was fenced by its own rejoin (its session expired while the group coordinator was away); joining again with a new consumer, unfinished work is read again");
                }
                result => {
                    report.ended = Some(tokio::time::Instant::now());
                    return result.map(|()| report);
                }
            }
        }
    }

    /// One consumer's life: claims the member id, subscribes, runs the event
    /// loop and finishes. Fails before it starts reading with the outer error;
    /// the inner one is how the event loop ended.
    async fn session(
        &mut self,
        report: Report,
        shutdown: &CancellationToken,
        drain: &CancellationToken,
    ) -> Result<(Result<(), Error>, Report), Error> {
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
            report,
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
        let result = self.event_loop(&mut run, shutdown, drain).await;
        self.finish(&mut run).await;
        Ok((result, run.report))
    }

    /// librdkafka makes a static member fatally fenced when it rejoins after its
    /// session expired (the coordinator was away, e.g. a broker restart) while a
    /// commit of its old membership is still out: the member that fenced it is
    /// itself. A new consumer under the same id takes the place back. An id given
    /// by hand may be a real twin's, so only rejoins in quick succession are
    /// refused (see [`Rejoins`]).
    fn fenced_itself(&self, e: &KafkaError) -> bool {
        !matches!(self.config.membership, Membership::Dynamic)
            && matches!(
                e,
                KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::FencedInstanceId)
            )
    }
}

/// Rejoins after being fenced: a few in a row are a recovering cluster, more
/// within a minute of each other are two processors under one instance id.
#[derive(Default)]
struct Rejoins {
    last: Option<tokio::time::Instant>,
    in_a_row: u32,
}

impl Rejoins {
    const MAX_IN_A_ROW: u32 = 3;

    fn allow(&mut self) -> bool {
        let quick = self
            .last
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(60));
        self.in_a_row = if quick { self.in_a_row + 1 } else { 1 };
        self.last = Some(tokio::time::Instant::now());
        self.in_a_row <= Self::MAX_IN_A_ROW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rejoins_in_quick_succession_stop_after_three() {
        let mut r = Rejoins::default();
        assert!((0..3).all(|_| r.allow()), "a recovering cluster");
        assert!(
            !r.allow(),
            "a fourth within a minute: a twin under the same id"
        );
        tokio::time::advance(std::time::Duration::from_secs(61)).await;
        assert!(r.allow(), "a minute later it counts afresh");
    }
}
