//! `orderflow produce`: random orders to the order topic.

use std::io::IsTerminal as _;

use clap::Args;

use super::args::Connection;
use crate::{
    console::Console,
    order::Ids,
    producer::{self, WireFormat},
    shutdown,
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
    #[arg(long, env = "ORDERFLOW_FORMAT", value_enum, default_value = "avro")]
    pub format: WireFormat,
    /// Order ids: v7 (in creation order) or v4 (random, as most producers send)
    #[arg(long, env = "ORDERFLOW_IDS", value_enum, default_value = "v7")]
    pub ids: Ids,
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate >= 0.0 && args.rate.is_finite(),
        "--rate must be a number >= 0"
    );
    let cfg = producer::Config {
        kafka: args.conn.kafka(),
        topic: args.conn.topic,
        rate: (args.rate > 0.0).then_some(args.rate),
        count: args.count,
        format: args.format,
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
