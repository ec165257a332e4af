//! `orderflow process`: the processor, with retries, the DLQ and the store.

use std::{sync::Arc, time::Duration};

use clap::Args;

use super::args::{Connection, SchemaRegistryArgs, StoreArgs, drain_token};
use crate::{
    codec::confluent::Schemas,
    console::Console,
    metrics::{self, Metrics},
    processor::{self, Processor, backoff::Backoff},
    shutdown,
    simulated::{FailWhen, Simulated},
    store,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct ProcessArgs {
    #[command(flatten)]
    pub conn: Connection,
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
    #[command(flatten)]
    pub registry: SchemaRegistryArgs,
    /// Keep the store's history to this window, e.g. 90d: older orders are pruned
    /// at start and every 10 minutes (the aggregates keep them)
    #[arg(long, env = "ORDERFLOW_RETENTION", value_parser = humantime::parse_duration)]
    pub retention: Option<Duration>,
    /// Serve Prometheus metrics on http://ADDR/metrics, e.g. 127.0.0.1:9464
    /// (port 0: any free port, printed at start) [default: off]
    #[arg(long, env = "ORDERFLOW_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SummaryFormat {
    Text,
    Json,
}

pub async fn run(args: ProcessArgs) -> anyhow::Result<()> {
    let mut cfg = processor::Config::new(args.conn.kafka());
    cfg.topic = args.conn.topic;
    cfg.dlq_topic = args.conn.dlq_topic;
    cfg.group = args.group;
    cfg.max_attempts = args.retry.max_retries;
    cfg.backoff = args.retry.backoff()?;
    cfg.max_in_flight = args.max_in_flight;
    cfg.membership = args.instance_id;
    cfg.schemas = Arc::new(Schemas::new(args.registry.client()?));
    // Bound before anything connects: a taken port fails the start, not later.
    let metrics_listener = match &args.metrics_listen {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };
    let store = args.store.open().await?;
    let mut observer: Box<dyn processor::Observer> = if args.quiet {
        Box::new(|_: &processor::Event<'_>| {})
    } else {
        let out = Console::new();
        out.line(format_args!("Consumer started…"));
        Box::new(move |e: &processor::Event<'_>| processor::print_event(&out, e))
    };
    let serving = CancellationToken::new();
    let mut server = None;
    if let Some(listener) = metrics_listener {
        let m = Arc::new(Metrics::new());
        observer = m.observer(observer);
        eprintln!("metrics on http://{}/metrics", listener.local_addr()?);
        server = Some(tokio::spawn(metrics::serve(listener, m, serving.clone())));
    }
    let mut p = Processor::new(
        cfg,
        Box::new(Simulated {
            fail_when: args.retry.fail_when,
            fail_attempts: args.retry.fail_attempts,
        }),
        observer,
    );
    let pruning = CancellationToken::new();
    if let Some(store) = store {
        if let Some(retention) = args.retention {
            tokio::spawn(store::retention::keep(
                store.clone(),
                retention,
                pruning.clone(),
            ));
        }
        p = p.with_store(store);
    } else if args.retention.is_some() {
        anyhow::bail!("--retention prunes the order store, which --store none turns off");
    }
    let report = p
        .run(shutdown::on_signals(), drain_token(args.exit_at_end))
        .await;
    pruning.cancel();
    serving.cancel();
    if let Some(server) = server
        && let Ok(Err(e)) = server.await
    {
        tracing::warn!(error = %e, "the metrics endpoint failed");
    }
    let report = report?;
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
