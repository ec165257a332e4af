//! Command-line interface: one module per command, each with its arguments and
//! its `run`, as in mini-redis's `cmd/`. Every flag can also be set through the
//! environment as `ORDERFLOW_<FLAG>` (flags win over the environment, which wins
//! over defaults).

mod args;
mod bench;
#[cfg(feature = "embedded-broker")]
mod broker;
pub mod config;
#[cfg(feature = "embedded-broker")]
pub(crate) mod demo;
mod dlq;
mod kafka;
mod orders;
mod process;
mod produce;
mod registry;
pub(crate) mod serve;
mod stats;
mod topics;
mod users;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "orderflow",
    version,
    about = "Order processing on Apache Kafka: producer, processor with retries and a dead-letter topic, DLQ consumer"
)]
pub struct Cli {
    /// Settings file [default: ./orderflow.toml, else
    /// ~/.config/orderflow/orderflow.toml]; below the environment and flags
    #[arg(long, global = true, env = "ORDERFLOW_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the embedded Kafka-compatible broker in the foreground
    #[cfg(feature = "embedded-broker")]
    Broker(broker::BrokerArgs),
    /// Run a local Apache Kafka cluster in the foreground (needs Java 17 and Maven,
    /// which fetches the broker from Maven Central once)
    Kafka(kafka::KafkaArgs),
    /// Manage topics
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Produce random orders
    Produce(produce::ProduceArgs),
    /// Process orders: aggregate, retry with backoff, dead-letter failures
    Process(process::ProcessArgs),
    /// Dead-lettered orders: print them as they come, or list, group and replay them
    Dlq(Box<dlq::DlqArgs>),
    /// Broker, topics, producer, processor and DLQ consumer in one process
    #[cfg(feature = "embedded-broker")]
    Demo(demo::DemoArgs),
    /// The Confluent-compatible schema registry, kept in the order store
    Registry(registry::RegistryArgs),
    /// The web console and its JSON API (sign-in required; see `users`)
    Serve(Box<serve::ServeArgs>),
    /// The console's users and roles
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Read the order history in the store
    #[command(subcommand)]
    Orders(orders::OrdersCommand),
    /// Aggregates from the store: count, units, average/min/max price, per product
    Stats(args::StoreArgs),
    /// Measure produce/process throughput, latency and memory against plain
    /// librdkafka on the same broker; prints one table
    Bench(bench::BenchArgs),
    /// The settings file (orderflow.toml): show what each command runs with
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        #[cfg(feature = "embedded-broker")]
        Command::Broker(args) => broker::run(args).await,
        Command::Kafka(args) => kafka::run(args).await,
        Command::Topics(command) => topics::run(command).await,
        Command::Produce(args) => produce::run(args).await,
        Command::Process(args) => process::run(args).await,
        Command::Dlq(args) => dlq::run(*args).await,
        #[cfg(feature = "embedded-broker")]
        Command::Demo(args) => demo::run(args).await,
        Command::Registry(args) => registry::run(args).await,
        Command::Serve(args) => serve::run(*args).await,
        Command::Users(command) => users::run(command),
        Command::Orders(command) => orders::run(command).await,
        Command::Stats(store) => stats::run(store).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Config(command) => config::run(command, cli.config),
    }
}
