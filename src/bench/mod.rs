//! `orderflow bench`: throughput, latency and memory of orderflow's producer and
//! processor, each against a ceiling measured in the same run on the same broker
//! (a plain librdkafka producer, a no-op librdkafka consumer), in one table.

pub mod broker;
mod ceiling;
mod child;
mod cpu;
mod latency;
mod report;
mod stages;
mod table;

use std::path::PathBuf;

use rdkafka::error::KafkaError;

use crate::{
    codec::avro,
    kafka::{self, KafkaConfig},
    order::{PRICE_CENTS, random_order},
    processor::{self, Summary},
    producer, store,
};
pub use table::Table;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    #[error("{stage}: {source}")]
    Client {
        stage: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("{stage}: {detail}")]
    Incomplete { stage: &'static str, detail: String },
    #[error("`{exe} process`: {detail}")]
    Child { exe: String, detail: String },
    #[error("producing orders: {0}")]
    Producer(#[source] Box<producer::Error>),
    #[error("processing orders: {0}")]
    Processor(#[from] processor::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("cannot create the benchmark directory {dir}: {source}")]
    DataDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[cfg(feature = "embedded-broker")]
    #[error(transparent)]
    Broker(#[from] crate::broker::Error),
    #[error("this build has no embedded broker: pass --bootstrap-servers or --broker kafka")]
    NoBroker,
    #[error("the local Apache Kafka: {0}")]
    LocalKafka(#[from] crate::local_kafka::Error),
}

pub struct Config {
    /// Which broker to start when `bootstrap_servers` names none.
    pub broker: broker::Choice,
    /// A broker of the user's; `None` starts one (see `broker`) in `data_dir`.
    pub bootstrap_servers: Option<String>,
    /// `-C` librdkafka properties for consumers.
    pub consumer_settings: Vec<(String, String)>,
    /// `-X` librdkafka properties for every client.
    pub overrides: Vec<(String, String)>,
    /// Orders for the throughput runs; `None`: [`DEFAULT_ORDERS`] on the embedded
    /// broker, [`DEFAULT_ORDERS_KAFKA`] on Kafka.
    pub orders: Option<u64>,
    /// Orders for the latency run, produced at `latency_rate` per second.
    pub latency_orders: u64,
    pub latency_rate: f64,
    pub partitions: i32,
    /// Runs of 1a and 2, of 1b and 3, and of 4 and 4b, each pair alternately;
    /// the median run of each counts.
    pub runs: u32,
    pub data_dir: PathBuf,
    /// The orderflow binary whose `process` is measured (normally this one).
    pub exe: PathBuf,
}

impl From<producer::Error> for Error {
    fn from(e: producer::Error) -> Self {
        Error::Producer(Box::new(e))
    }
}

/// A count over a time.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub count: u64,
    pub seconds: f64,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.seconds.max(1e-9)
    }
}

/// Orders of each throughput run on the embedded broker, about 4 s of processing.
pub const DEFAULT_ORDERS: u64 = 200_000;
/// On Kafka, which serves them ten times as fast: 200,000 orders are read in under
/// a second there, too short a run for start-up and end detection not to count.
pub const DEFAULT_ORDERS_KAFKA: u64 = 1_000_000;

/// Share of orders the failure runs fail.
const FAILING_SHARE: f64 = 0.10;

/// Runs every measurement in turn, printing progress on stderr, and returns the table.
pub async fn run(cfg: &Config) -> Result<Table, Error> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| Error::DataDir {
        dir: cfg.data_dir.clone(),
        source,
    })?;
    let base = KafkaConfig {
        bootstrap_servers: String::new(),
        consumer_settings: cfg.consumer_settings.clone(),
        overrides: cfg.overrides.clone(),
    };
    // Stops a broker the bench started when it goes out of scope.
    let (running, kafka, broker_name) = broker::start(
        cfg.broker,
        cfg.bootstrap_servers.as_deref(),
        &base,
        &cfg.data_dir,
    )
    .await?;
    // A cluster named with --bootstrap-servers counts as Kafka: it is not ours.
    let embedded = running.is_embedded();
    let orders = cfg.orders.unwrap_or(if embedded {
        DEFAULT_ORDERS
    } else {
        DEFAULT_ORDERS_KAFKA
    });
    let bench = stages::Bench::new(cfg, kafka, orders);
    let topics = bench.topics();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    bench
        .kafka
        .create_topics(&topics, cfg.partitions, 1)
        .await?;
    let results = report::Results {
        producing: stages::producing(&bench).await?,
        processing: stages::processing(&bench).await?,
        latencies: stages::latencies(&bench).await?,
        failures: stages::failures(&bench).await?,
    };
    let setting = report::Setting {
        cfg,
        broker_name: &broker_name,
        embedded,
        orders,
    };
    Ok(report::table(&setting, &results))
}

fn say(what: std::fmt::Arguments<'_>) {
    eprintln!("[bench] {what}");
}

/// Random orders as `orderflow produce` writes them: keyed by id, Avro single-object.
fn encoded_orders(n: u64) -> Vec<(String, Vec<u8>)> {
    let writer = avro::Writer::new();
    (0..n)
        .map(|_| {
            let o = random_order();
            let payload = writer.encode(&o);
            (o.order_id, payload)
        })
        .collect()
}

/// A `--fail-when` rule matching `share` of random orders (prices are uniform).
fn failing_rule(share: f64) -> String {
    let (lo, hi) = (*PRICE_CENTS.start() as f64, *PRICE_CENTS.end() as f64);
    format!("price>{:.2}", (hi - share * (hi - lo)) / 100.0)
}

/// Every order must have an outcome, or the figures mean nothing.
fn expect_finished(stage: &'static str, s: &Summary, n: u64) -> Result<(), Error> {
    if s.processed + s.dead_lettered == n {
        Ok(())
    } else {
        Err(Error::Incomplete {
            stage,
            detail: format!(
                "{} processed and {} dead-lettered, but {n} were produced",
                s.processed, s.dead_lettered
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failing_rule_matches_about_the_share() {
        assert_eq!(failing_rule(0.10), "price>136.00");
        let rule: crate::simulated::FailWhen = failing_rule(0.10).parse().unwrap();
        let n = 20_000;
        let failing = (0..n)
            .filter(|_| rule.check(&random_order()).is_some())
            .count();
        let share = failing as f64 / n as f64;
        assert!((0.08..0.12).contains(&share), "{share}");
    }
}
