//! Argument groups that several commands flatten into their own.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context as _;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::{
    kafka::{KafkaConfig, parse_override},
    registry::client::Client,
    store::Store,
};

/// How to reach Kafka and which topics to use. Only commands that talk to Kafka
/// flatten this, so `orders`, `stats` and `kafka` neither accept nor show it.
#[derive(Debug, Args)]
pub struct Connection {
    /// Kafka bootstrap servers (host:port,...) [default: 127.0.0.1:9092; bench: a
    /// broker of its own, see --broker]
    #[arg(long, env = "ORDERFLOW_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// librdkafka property key=value, repeatable (e.g. -X security.protocol=SASL_SSL);
    /// in the environment, separate several with ';'
    #[arg(short = 'X', env = "ORDERFLOW_X", value_delimiter = ';', value_parser = parse_x)]
    pub x: Vec<(String, String)>,
    /// librdkafka property for consumers only, repeatable (e.g. -C fetch.wait.max.ms=10)
    #[arg(short = 'C', env = "ORDERFLOW_C", value_delimiter = ';', value_parser = parse_x)]
    pub c: Vec<(String, String)>,
    /// Topic the orders are written to and read from
    #[arg(long, env = "ORDERFLOW_TOPIC", default_value = "orders")]
    pub topic: String,
    /// Dead-letter topic
    #[arg(long, env = "ORDERFLOW_DLQ_TOPIC", default_value = "orders_dlq")]
    pub dlq_topic: String,
    /// Where a replay puts dead letters replayed --max-replays times already
    #[arg(
        long,
        env = "ORDERFLOW_PARKING_TOPIC",
        default_value = "orders_dlq_parked"
    )]
    pub parking_topic: String,
}

const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

fn parse_x(s: &str) -> Result<(String, String), String> {
    parse_override(s).map_err(|e| e.to_string())
}

impl Connection {
    /// The order, dead-letter and parking topics, as `topics create` makes them.
    pub(crate) fn topics(&self) -> [&str; 3] {
        [&self.topic, &self.dlq_topic, &self.parking_topic]
    }

    pub(super) fn kafka(&self) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: self
                .bootstrap_servers
                .clone()
                .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_string()),
            consumer_settings: self.c.clone(),
            overrides: self.x.clone(),
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// Order store: sqlite://PATH, postgres://USER:PASSWORD@HOST/DB, or none
    /// [default: sqlite://DATA_DIR/orders.db]
    #[arg(long, env = "ORDERFLOW_STORE")]
    pub store: Option<String>,
    /// Directory for local data (the embedded broker's log, the default store)
    #[arg(long, env = "ORDERFLOW_DATA_DIR", default_value = ".orderflow")]
    pub data_dir: PathBuf,
}

impl StoreArgs {
    /// The store URL, or `None` when the store is turned off.
    fn url(&self) -> Option<String> {
        match self.store.as_deref() {
            Some("none") => None,
            Some(url) => Some(url.to_string()),
            None => Some(format!(
                "sqlite://{}",
                self.data_dir.join("orders.db").display()
            )),
        }
    }

    pub async fn open(&self) -> anyhow::Result<Option<Arc<Store>>> {
        match self.url() {
            None => Ok(None),
            Some(url) => {
                Ok(Some(Arc::new(Store::connect(&url).await.with_context(
                    || format!("opening the order store {url}"),
                )?)))
            }
        }
    }

    /// For the commands that only read the store, which are useless without one.
    pub(crate) async fn open_required(&self) -> anyhow::Result<Arc<Store>> {
        self.open()
            .await?
            .context("--store none: there is no store to read")
    }
}

/// The drain token for `--exit-at-end`: already cancelled when `now`, else one
/// that never is, so the consumer runs until a signal.
pub(super) fn drain_token(now: bool) -> CancellationToken {
    let t = CancellationToken::new();
    if now {
        t.cancel();
    }
    t
}

/// Where the schemas of Confluent-framed orders are registered.
#[derive(Debug, Args, Clone)]
pub struct SchemaRegistryArgs {
    /// Confluent-compatible schema registry, http[s]://[USER:PASSWORD@]HOST:PORT[/PATH]
    /// (basic auth from the user info) [default: none]
    #[arg(
        long,
        env = "ORDERFLOW_SCHEMA_REGISTRY_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub schema_registry_url: Option<String>,
}

impl SchemaRegistryArgs {
    pub fn client(&self) -> anyhow::Result<Option<Client>> {
        Ok(self
            .schema_registry_url
            .as_deref()
            .map(Client::new)
            .transpose()?)
    }
}
