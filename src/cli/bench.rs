//! `orderflow bench`: the benchmark; the harness is in [`crate::bench`].

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::args::Connection;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Orders for the throughput runs [default: 200000 on the embedded broker,
    /// 1000000 on Kafka]
    #[arg(long, env = "ORDERFLOW_BENCH_ORDERS", value_parser = clap::value_parser!(u64).range(1..))]
    pub orders: Option<u64>,
    /// Orders for the latency run
    #[arg(long, env = "ORDERFLOW_BENCH_LATENCY_ORDERS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub latency_orders: u64,
    /// Orders per second in the latency run
    #[arg(long, env = "ORDERFLOW_BENCH_LATENCY_RATE", default_value_t = 1000.0)]
    pub latency_rate: f64,
    #[arg(long, env = "ORDERFLOW_BENCH_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    /// Times to run each measured pair (1a and 2, 1b and 3, 4 and 4b),
    /// alternately; the table shows the median run of each
    #[arg(long, env = "ORDERFLOW_BENCH_RUNS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Directory for the broker and the stores [default: a temporary directory,
    /// removed afterwards]
    #[arg(long, env = "ORDERFLOW_BENCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The broker to start and measure against (unless --bootstrap-servers names one)
    #[arg(
        long,
        env = "ORDERFLOW_BENCH_BROKER",
        value_enum,
        default_value = "auto"
    )]
    pub broker: crate::bench::broker::Choice,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.latency_rate > 0.0 && args.latency_rate.is_finite(),
        "--latency-rate must be a number > 0"
    );
    // Declared out here so that the temporary directory outlives the run; dropping
    // it at the end removes it.
    let temp;
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => {
            temp = tempfile::Builder::new()
                .prefix("orderflow-bench-")
                .tempdir()
                .context("creating a temporary directory for the benchmark")?;
            temp.path().to_path_buf()
        }
    };
    let cfg = crate::bench::Config {
        broker: args.broker,
        bootstrap_servers: args.conn.bootstrap_servers,
        consumer_settings: args.conn.c,
        overrides: args.conn.x,
        orders: args.orders,
        latency_orders: args.latency_orders,
        latency_rate: args.latency_rate,
        partitions: args.partitions,
        runs: args.runs,
        data_dir,
        exe: std::env::current_exe().context("finding the orderflow binary")?,
    };
    let table = crate::bench::run(&cfg).await?;
    print!("{table}");
    Ok(())
}
