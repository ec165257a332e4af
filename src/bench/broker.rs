//! Which broker the bench measures against: a local Apache Kafka node when Java and
//! Maven can run one (the reference), else the embedded broker, or a cluster the
//! user names with `--bootstrap-servers`.

use std::path::Path;

use super::{Error, say};
use crate::{
    kafka::KafkaConfig,
    local_kafka::{Cluster, Spec},
};

/// What `--broker` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// A local Apache Kafka node when Java and Maven are there, else the embedded broker
    Auto,
    /// A one-node Apache Kafka started for the bench (Java 17 and Maven)
    Kafka,
    /// The embedded Tansu broker
    Embedded,
}

/// The broker of a run; dropping it stops a broker the bench started.
pub enum Running {
    External,
    Kafka(Cluster),
    #[cfg(feature = "embedded-broker")]
    Embedded(crate::broker::EmbeddedBroker),
}

impl Running {
    pub fn is_embedded(&self) -> bool {
        !matches!(self, Running::External | Running::Kafka(_))
    }
}

/// Starts (or names) the broker; returns its client settings and what to call it.
pub async fn start(
    choice: Choice,
    bootstrap_servers: Option<&str>,
    base: &KafkaConfig,
    dir: &Path,
) -> Result<(Running, KafkaConfig, String), Error> {
    if let Some(b) = bootstrap_servers {
        let kafka = KafkaConfig {
            bootstrap_servers: b.to_string(),
            ..base.clone()
        };
        return Ok((Running::External, kafka, b.to_string()));
    }
    match choice {
        Choice::Kafka => local_kafka(base, dir).await,
        Choice::Embedded => embedded(base, dir).await,
        Choice::Auto => match local_kafka(base, dir).await {
            Ok(started) => Ok(started),
            Err(e) => {
                say(format_args!(
                    "no local Apache Kafka ({e}); measuring against the embedded broker"
                ));
                embedded(base, dir).await
            }
        },
    }
}

async fn local_kafka(
    base: &KafkaConfig,
    dir: &Path,
) -> Result<(Running, KafkaConfig, String), Error> {
    let spec = Spec {
        heap_mb: 1024,
        ..Spec::new(1, dir.join("kafka"))
    };
    say(format_args!("starting a one-node Apache Kafka"));
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&spec))
        .await
        .expect("starting Kafka does not panic")?;
    let kafka = KafkaConfig {
        bootstrap_servers: cluster.bootstrap_servers(),
        ..base.clone()
    };
    let name = format!(
        "Apache Kafka {} (one local node, KRaft)",
        crate::local_kafka::runtime::KAFKA_VERSION
    );
    Ok((Running::Kafka(cluster), kafka, name))
}

#[cfg(feature = "embedded-broker")]
async fn embedded(base: &KafkaConfig, dir: &Path) -> Result<(Running, KafkaConfig, String), Error> {
    let b = crate::broker::EmbeddedBroker::start(
        "127.0.0.1:0".parse().expect("a valid address"),
        &dir.join("broker"),
    )
    .await?;
    let kafka = b.kafka_config(&base.consumer_settings, &base.overrides);
    Ok((
        Running::Embedded(b),
        kafka,
        "embedded Tansu 0.6 (SQLite storage)".into(),
    ))
}

#[cfg(not(feature = "embedded-broker"))]
async fn embedded(
    _base: &KafkaConfig,
    _dir: &Path,
) -> Result<(Running, KafkaConfig, String), Error> {
    Err(Error::NoBroker)
}
