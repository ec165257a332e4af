//! What a processor is told: topics, group, retries, bounds and membership.

use std::{sync::Arc, time::Duration};

use super::{Membership, backoff::Backoff};
use crate::{codec::confluent::Schemas, kafka::KafkaConfig};

#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub topic: String,
    pub dlq_topic: String,
    pub group: String,
    /// Attempts in all, the first included (the seed's MAX_RETRIES).
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Stop reading new messages while this many wait for a retry or a DLQ
    /// write (orders waiting for the store have a bound of their own).
    pub max_in_flight: usize,
    pub commit_interval: Duration,
    pub membership: Membership,
    /// Writer schemas of Confluent-framed messages, from the schema registry.
    pub schemas: Arc<Schemas>,
}

/// Enough for a processor at 60,000 orders/s to keep reading while a tenth of
/// them wait out the default backoff (1 s and 2 s, then the DLQ write): that
/// holds about 20,000 at a time. At 10,000 the failure run of `bench` read at
/// about 60% of the speed of a run without failures.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 30_000;

impl Config {
    pub fn new(kafka: KafkaConfig) -> Self {
        Config {
            kafka,
            topic: "orders".into(),
            dlq_topic: "orders_dlq".into(),
            group: "order-group".into(),
            max_attempts: 3,
            backoff: Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(30),
            },
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            commit_interval: Duration::from_secs(1),
            membership: Membership::Dynamic,
            schemas: Arc::new(Schemas::new(None)),
        }
    }
}
