//! orderflow: order processing on Apache Kafka.
//!
//! Data flow: [`producer`] writes orders ([`codec`]) to the `orders` topic;
//! [`processor`] decodes, validates, handles and aggregates them, retrying transient
//! failures and sending what cannot succeed to the dead-letter topic ([`dlq`]).
//! [`registry`] is a Confluent-compatible schema registry for the Confluent wire format.
//! [`broker`] embeds a Kafka-compatible broker for demos and tests.

pub mod aggregate;
pub mod bench;
#[cfg(feature = "embedded-broker")]
pub mod broker;
pub mod cli;
pub mod codec;
pub mod config_file;
pub mod console;
#[cfg(feature = "embedded-broker")]
mod demo;
pub mod dlq;
pub mod kafka;
pub mod local_kafka;
pub mod metrics;
pub mod order;
pub mod processor;
pub mod producer;
pub mod registry;
pub mod resources;
pub mod shutdown;
pub mod simulated;
pub mod store;
pub mod web;
