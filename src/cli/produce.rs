//! `orderflow produce`: random orders to the order topic.

use std::{io::IsTerminal as _, path::PathBuf};

use anyhow::Context as _;
use clap::Args;

use super::args::{Connection, SchemaRegistryArgs};
use crate::{
    codec::{avro, confluent},
    console::Console,
    order::Ids,
    producer::{self, WireFormat},
    registry, shutdown,
};

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Orders per second (0: as fast as possible)
    #[arg(long, env = "ORDERFLOW_RATE", default_value_t = 1.0)]
    pub rate: f64,
    /// Stop after this many orders (default: until Ctrl-C)
    #[arg(long, env = "ORDERFLOW_COUNT")]
    pub count: Option<u64>,
    /// Wire format; confluent registers --schema under TOPIC-value in the
    /// schema registry first
    #[arg(long, env = "ORDERFLOW_FORMAT", value_enum, default_value = "avro")]
    pub format: WireFormat,
    #[command(flatten)]
    pub registry: SchemaRegistryArgs,
    /// With --format confluent: the Avro schema (.avsc) to write orders with;
    /// fields that are no order field take their defaults [default: the order
    /// schema, v2]
    #[arg(long, env = "ORDERFLOW_SCHEMA", value_name = "FILE")]
    pub schema: Option<PathBuf>,
    /// Order ids: v7 (in creation order) or v4 (random, as most producers send)
    #[arg(long, env = "ORDERFLOW_IDS", value_enum, default_value = "v7")]
    pub ids: Ids,
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate >= 0.0 && args.rate.is_finite(),
        "--rate must be a number >= 0"
    );
    let confluent = match args.format {
        WireFormat::Confluent => Some(register(&args).await?),
        _ => {
            anyhow::ensure!(args.schema.is_none(), "--schema is for --format confluent");
            None
        }
    };
    let cfg = producer::Config {
        kafka: args.conn.kafka(),
        topic: args.conn.topic,
        rate: (args.rate > 0.0).then_some(args.rate),
        count: args.count,
        format: args.format,
        confluent,
        ids: args.ids,
    };
    // A progress bar only where someone watches a run with an end.
    let output = if args.count.is_some() && std::io::stdout().is_terminal() {
        producer::Output::Progress
    } else {
        println!("Producer started (Ctrl+C to stop)…");
        producer::Output::Lines(Console::new())
    };
    let report = producer::run(&cfg, output, shutdown::on_signals()).await?;
    eprintln!(
        "{} orders produced, {} delivered",
        report.sent, report.delivered
    );
    Ok(())
}

/// Registers the schema under the topic's value subject: its id frames every order.
async fn register(args: &ProduceArgs) -> anyhow::Result<confluent::Writer> {
    let client = args
        .registry
        .client()?
        .context("--format confluent needs --schema-registry-url")?;
    let text = match &args.schema {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the schema {}", path.display()))?,
        None => avro::ORDER_SCHEMA.to_string(),
    };
    let shown = args
        .schema
        .as_ref()
        .map_or("the order schema".to_string(), |p| p.display().to_string());
    let schema = apache_avro::Schema::parse_str(&text)
        .with_context(|| format!("{shown} is no valid Avro schema"))?;
    let subject = registry::value_subject(&args.conn.topic);
    let id = client.register(&subject, &text).await.with_context(|| {
        format!(
            "registering {shown} under subject {subject} at {}",
            client.url()
        )
    })?;
    eprintln!("schema {shown} is id {id} under subject {subject}");
    confluent::Writer::new(id, schema).with_context(|| format!("{shown} cannot carry orders"))
}
