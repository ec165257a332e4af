//! Command-line interface. Every flag can also be set through the environment as
//! `ORDERFLOW_<FLAG>` (flags win over the environment, which wins over defaults).

mod kafka;

use std::{io::IsTerminal, net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::{
    console::Console,
    dlq,
    kafka::{KafkaConfig, parse_override},
    processor::{self, Processor, Simulated, backoff::Backoff, rule::FailWhen},
    producer::{self, WireFormat},
    shutdown,
    store::{Filter, Status, Store},
};

#[derive(Debug, Parser)]
#[command(
    name = "orderflow",
    version,
    about = "Order processing on Apache Kafka: producer, processor with retries and a dead-letter topic, DLQ consumer"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Common {
    /// Kafka bootstrap servers (host:port,...) [default: 127.0.0.1:9092; bench: a
    /// broker of its own, see --broker]
    #[arg(long, global = true, env = "ORDERFLOW_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// librdkafka property key=value, repeatable (e.g. -X security.protocol=SASL_SSL);
    /// in the environment, separate several with ';'
    #[arg(short = 'X', global = true, env = "ORDERFLOW_X", value_delimiter = ';', value_parser = parse_x)]
    pub x: Vec<(String, String)>,
    /// librdkafka property for consumers only, repeatable (e.g. -C fetch.wait.max.ms=10)
    #[arg(short = 'C', global = true, env = "ORDERFLOW_C", value_delimiter = ';', value_parser = parse_x)]
    pub c: Vec<(String, String)>,
    /// Topic the orders are written to and read from
    #[arg(long, global = true, env = "ORDERFLOW_TOPIC", default_value = "orders")]
    pub topic: String,
    /// Dead-letter topic
    #[arg(
        long,
        global = true,
        env = "ORDERFLOW_DLQ_TOPIC",
        default_value = "orders_dlq"
    )]
    pub dlq_topic: String,
}

const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

fn parse_x(s: &str) -> Result<(String, String), String> {
    parse_override(s).map_err(|e| e.to_string())
}

impl Common {
    fn kafka(&self) -> KafkaConfig {
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the embedded Kafka-compatible broker in the foreground
    #[cfg(feature = "embedded-broker")]
    Broker(BrokerArgs),
    /// Run a local Apache Kafka cluster in the foreground (needs Java 17 and Maven,
    /// which fetches the broker from Maven Central once)
    Kafka(kafka::KafkaArgs),
    /// Manage topics
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Produce random orders
    Produce(ProduceArgs),
    /// Process orders: aggregate, retry with backoff, dead-letter failures
    Process(ProcessArgs),
    /// Print dead-lettered orders
    Dlq(DlqArgs),
    /// Broker, topics, producer, processor and DLQ consumer in one process
    #[cfg(feature = "embedded-broker")]
    Demo(DemoArgs),
    /// Read the order history in the store
    #[command(subcommand)]
    Orders(OrdersCommand),
    /// Aggregates from the store: count, units, average/min/max price, per product
    Stats(StoreArgs),
    /// Measure produce/process throughput, latency and memory against plain
    /// librdkafka on the same broker; prints one table
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Orders for the throughput runs [default: 200000 on the embedded broker,
    /// 1000000 on Kafka]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub orders: Option<u64>,
    /// Orders for the latency run
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub latency_orders: u64,
    /// Orders per second in the latency run
    #[arg(long, default_value_t = 1000.0)]
    pub latency_rate: f64,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    /// Times to run each measured pair (1a and 2, 1b and 3, 4 and 4b),
    /// alternately; the table shows the median run of each
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Directory for the broker and the stores [default: a temporary directory,
    /// removed afterwards]
    #[arg(long)]
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
    pub fn url(&self) -> Option<String> {
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

    async fn open_required(&self) -> anyhow::Result<Arc<Store>> {
        self.open()
            .await?
            .context("--store none: there is no store to read")
    }
}

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// List stored orders, newest first
    List(ListArgs),
    /// One order with its timeline
    Show {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// processed or dlq
    #[arg(long, value_parser = parse_status)]
    pub status: Option<Status>,
    #[arg(long)]
    pub product: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn parse_status(s: &str) -> Result<Status, String> {
    Status::parse(s).ok_or_else(|| format!("unknown status {s:?}: use processed or dlq"))
}

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Address to listen on (clients bootstrap from it)
    #[arg(long, env = "ORDERFLOW_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// Directory for the broker's data (kept across restarts)
    #[arg(long, env = "ORDERFLOW_DATA_DIR", default_value = ".orderflow")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the order and dead-letter topics (existing topics are left as they are)
    Create(TopicArgs),
}

#[derive(Debug, Args, Clone)]
pub struct TopicArgs {
    #[arg(long, env = "ORDERFLOW_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    #[arg(long, env = "ORDERFLOW_REPLICATION_FACTOR", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub replication_factor: i32,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Orders per second (0: as fast as possible)
    #[arg(long, env = "ORDERFLOW_RATE", default_value_t = 1.0)]
    pub rate: f64,
    /// Stop after this many orders (default: until Ctrl-C)
    #[arg(long, env = "ORDERFLOW_COUNT")]
    pub count: Option<u64>,
    #[arg(long, env = "ORDERFLOW_FORMAT", value_enum, default_value = "avro")]
    pub format: WireFormat,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Simulate a transient failure for matching orders, e.g. 'price>100'
    #[arg(long, env = "ORDERFLOW_FAIL_WHEN")]
    pub fail_when: Option<FailWhen>,
    /// With --fail-when: matching orders fail only their first N attempts, then
    /// succeed, like a fault that clears [default: every attempt, so they end in
    /// the DLQ]
    #[arg(long, env = "ORDERFLOW_FAIL_ATTEMPTS", requires = "fail_when", value_parser = clap::value_parser!(u32).range(1..))]
    pub fail_attempts: Option<u32>,
    /// Attempts before an order goes to the DLQ
    #[arg(long, env = "ORDERFLOW_MAX_RETRIES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_retries: u32,
    /// First backoff delay; doubles with each attempt (with jitter)
    #[arg(long, env = "ORDERFLOW_BACKOFF", default_value = "1s", value_parser = humantime::parse_duration)]
    pub backoff: Duration,
    /// Largest backoff delay
    #[arg(long, env = "ORDERFLOW_BACKOFF_MAX", default_value = "30s", value_parser = humantime::parse_duration)]
    pub backoff_max: Duration,
}

#[derive(Debug, Args)]
pub struct ProcessArgs {
    #[arg(long, env = "ORDERFLOW_GROUP", default_value = "order-group")]
    pub group: String,
    /// The group.instance.id to join as a static member, so that a restart after
    /// a crash takes its place at once: auto picks a free per-host slot (the one a
    /// crashed processor left), none joins as a new member every time
    #[arg(long, env = "ORDERFLOW_INSTANCE_ID", default_value = "auto")]
    pub instance_id: processor::Membership,
    #[command(flatten)]
    pub retry: RetryArgs,
    /// Exit once every assigned partition is read to its end and no retry is pending
    #[arg(long, env = "ORDERFLOW_EXIT_AT_END")]
    pub exit_at_end: bool,
    /// Stop reading while this many messages are unfinished (waiting to retry)
    #[arg(long, env = "ORDERFLOW_MAX_IN_FLIGHT", default_value_t = processor::DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Print no line per order (the DLQ topic and the store still record failures)
    #[arg(long, short, env = "ORDERFLOW_QUIET")]
    pub quiet: bool,
    /// End-of-run summary: text on stderr, or json on stdout (for scripts)
    #[arg(long, env = "ORDERFLOW_SUMMARY", value_enum, default_value = "text")]
    pub summary: SummaryFormat,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SummaryFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[arg(long, env = "ORDERFLOW_GROUP", default_value = "dlq-group")]
    pub group: String,
    /// Exit once every assigned partition is read to its end
    #[arg(long, env = "ORDERFLOW_EXIT_AT_END")]
    pub exit_at_end: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address of the embedded broker (other orderflow commands can use it meanwhile)
    #[arg(long, env = "ORDERFLOW_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Orders per second
    #[arg(long, env = "ORDERFLOW_RATE", default_value_t = 3.0)]
    pub rate: f64,
    /// Produce this many orders, then finish processing them and exit
    #[arg(long, env = "ORDERFLOW_COUNT")]
    pub count: Option<u64>,
    /// Produce for this long (e.g. 30s), then finish processing and exit
    #[arg(long, env = "ORDERFLOW_DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    #[arg(long, env = "ORDERFLOW_FAIL_WHEN", default_value = "price>100")]
    pub fail_when: FailWhen,
    #[arg(long, env = "ORDERFLOW_PARTITIONS", default_value_t = 1)]
    pub partitions: i32,
}

impl RetryArgs {
    fn backoff(&self) -> anyhow::Result<Backoff> {
        anyhow::ensure!(
            self.backoff <= self.backoff_max,
            "--backoff ({:?}) must not exceed --backoff-max ({:?})",
            self.backoff,
            self.backoff_max
        );
        Ok(Backoff {
            base: self.backoff,
            max: self.backoff_max,
        })
    }
}

/// A token that is already cancelled when `now`, else one that never is.
fn drain_token(now: bool) -> CancellationToken {
    let t = CancellationToken::new();
    if now {
        t.cancel();
    }
    t
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let common = &cli.common;
    match cli.command {
        #[cfg(feature = "embedded-broker")]
        Command::Broker(args) => {
            let mut broker =
                crate::broker::EmbeddedBroker::start(args.listen, &args.data_dir).await?;
            println!(
                "orderflow broker listening on {} (data: {}); Ctrl-C to stop",
                broker.addr(),
                args.data_dir.display()
            );
            let settings: Vec<String> = crate::broker::CONSUMER_SETTINGS
                .iter()
                .map(|(k, v)| format!("-C {k}={v}"))
                .collect();
            println!(
                "consumers: --bootstrap-servers {} {} (this broker answers a fetch only after fetch.wait.max.ms)",
                broker.bootstrap_servers(),
                settings.join(" ")
            );
            let stop = shutdown::on_signals();
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = broker.stopped() => anyhow::bail!("the embedded broker stopped unexpectedly; see the log above"),
            }
            Ok(())
        }
        Command::Topics(TopicsCommand::Create(args)) => {
            let kafka = common.kafka();
            let created = kafka
                .create_topics(
                    &[&common.topic, &common.dlq_topic],
                    args.partitions,
                    args.replication_factor,
                )
                .await?;
            for t in [&common.topic, &common.dlq_topic] {
                let state = if created.contains(t) {
                    "created"
                } else {
                    "exists"
                };
                println!("{t}: {state}");
            }
            Ok(())
        }
        Command::Produce(args) => {
            anyhow::ensure!(
                args.rate >= 0.0 && args.rate.is_finite(),
                "--rate must be a number >= 0"
            );
            let cfg = producer::Config {
                kafka: common.kafka(),
                topic: common.topic.clone(),
                rate: (args.rate > 0.0).then_some(args.rate),
                count: args.count,
                format: args.format,
            };
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
        Command::Process(args) => {
            let mut cfg = processor::Config::new(common.kafka());
            cfg.topic = common.topic.clone();
            cfg.dlq_topic = common.dlq_topic.clone();
            cfg.group = args.group;
            cfg.max_attempts = args.retry.max_retries;
            cfg.backoff = args.retry.backoff()?;
            cfg.max_in_flight = args.max_in_flight;
            cfg.membership = args.instance_id;
            let store = args.store.open().await?;
            let observer: Box<dyn processor::Observer> = if args.quiet {
                Box::new(|_: &processor::Event<'_>| {})
            } else {
                let out = Console::new();
                out.line(format_args!("Consumer started…"));
                Box::new(move |e: &processor::Event<'_>| processor::print_event(&out, e))
            };
            let mut p = Processor::new(
                cfg,
                Box::new(Simulated {
                    fail_when: args.retry.fail_when,
                    fail_attempts: args.retry.fail_attempts,
                }),
                observer,
            );
            if let Some(store) = store {
                p = p.with_store(store);
            }
            let report = p
                .run(shutdown::on_signals(), drain_token(args.exit_at_end))
                .await?;
            let summary = processor::Summary::new(&report);
            match args.summary {
                SummaryFormat::Text => eprintln!("{summary}"),
                SummaryFormat::Json => println!(
                    "{}",
                    serde_json::to_string(&summary).expect("summaries serialize")
                ),
            }
            Ok(())
        }
        Command::Dlq(args) => {
            let cfg = dlq::consumer::Config {
                kafka: common.kafka(),
                topic: common.dlq_topic.clone(),
                group: args.group,
            };
            let out = Console::new();
            out.line(format_args!("DLQ consumer started…"));
            dlq::consumer::run(
                &cfg,
                |e| dlq::consumer::print(&out, e),
                shutdown::on_signals(),
                drain_token(args.exit_at_end),
            )
            .await
            .context("DLQ consumer")?;
            Ok(())
        }
        #[cfg(feature = "embedded-broker")]
        Command::Demo(args) => crate::demo::run(common, args).await,
        Command::Bench(args) => bench(common, args).await,
        Command::Kafka(args) => kafka::run(args).await,
        Command::Orders(OrdersCommand::List(args)) => {
            let store = args.store.open_required().await?;
            let filter = Filter {
                status: args.status,
                product: args.product,
                limit: args.limit,
            };
            println!(
                "{:<36}  {:<9}  {:<8}  {:>3}  {:>8}  {:>2}  PROCESSED",
                "ORDER", "STATUS", "PRODUCT", "QTY", "PRICE", "AT"
            );
            for o in store.list(&filter).await? {
                println!(
                    "{:<36}  {:<9}  {:<8}  {:>3}  {:>8}  {:>2}  {}",
                    o.id,
                    o.status,
                    o.product,
                    o.quantity,
                    crate::console::amount(o.price),
                    o.attempts,
                    time(o.processed_ms)
                );
            }
            Ok(())
        }
        Command::Orders(OrdersCommand::Show { id, store }) => {
            let store = store.open_required().await?;
            let (o, events) = store
                .show(&id)
                .await?
                .with_context(|| format!("no order {id:?} in the store"))?;
            println!("order     {}", o.id);
            println!("status    {} after {} attempt(s)", o.status, o.attempts);
            println!("user      {}", o.user);
            println!("product   {} x {}", o.product, o.quantity);
            println!("price     {}", crate::console::amount(o.price));
            if let Some(e) = &o.last_error {
                println!("error     {e}");
            }
            println!("source    {}[{}]@{}", o.topic, o.partition, o.offset);
            println!("produced  {}", o.produced_ms.map_or("-".into(), time));
            println!("processed {}", time(o.processed_ms));
            println!("timeline:");
            for e in events {
                println!("  {}  {:<14}  {}", time(e.at_ms), e.kind, e.detail);
            }
            Ok(())
        }
        Command::Stats(args) => {
            let a = args.open_required().await?.aggregates().await?;
            println!(
                "{:<10}  {:>7}  {:>7}  {:>9}  {:>8}  {:>8}",
                "PRODUCT", "ORDERS", "UNITS", "AVG", "MIN", "MAX"
            );
            let row = |name: &str, s: &crate::aggregate::Stat| {
                println!(
                    "{name:<10}  {:>7}  {:>7}  {:>9}  {:>8}  {:>8}",
                    s.orders,
                    s.units,
                    crate::console::amount(s.avg()),
                    crate::console::amount(s.price_min),
                    crate::console::amount(s.price_max)
                );
            };
            for (p, s) in &a.by_product {
                row(p, s);
            }
            row("(all)", &a.total);
            Ok(())
        }
    }
}

async fn bench(common: &Common, args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.latency_rate > 0.0 && args.latency_rate.is_finite(),
        "--latency-rate must be a number > 0"
    );
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
        bootstrap_servers: common.bootstrap_servers.clone(),
        consumer_settings: common.c.clone(),
        overrides: common.x.clone(),
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

fn time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}
