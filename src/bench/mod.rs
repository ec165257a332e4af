//! `orderflow bench`: throughput, latency and memory of orderflow's producer and
//! processor, each against a ceiling measured in the same run on the same broker
//! (a plain librdkafka producer, a no-op librdkafka consumer), in one table.

pub mod broker;
mod ceiling;
mod child;
mod cpu;
mod latency;
mod table;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rdkafka::error::KafkaError;
use tokio_util::sync::CancellationToken;

use crate::{
    codec::avro,
    kafka::{self, KafkaConfig},
    order::{PRICE_CENTS, random_order},
    processor::{self, Summary},
    producer::{self, WireFormat},
    store::{self, Store},
};
use cpu::{CpuUse, with_cpu};
pub use table::Table;
use table::{Row, thousands};

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
    let (running, kafka, broker_name) = broker::start(
        cfg.broker,
        cfg.bootstrap_servers.as_deref(),
        &base,
        &cfg.data_dir,
    )
    .await?;
    // A cluster named with --bootstrap-servers counts as Kafka: it is not ours.
    let on_kafka = !running.is_embedded();
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let topic = |what: &str| format!("bench-{run_id}-{what}");
    let (raw_topic, orders_topic, latency_topic, dlq_topic) = (
        topic("raw"),
        topic("orders"),
        topic("latency"),
        topic("dlq"),
    );
    // Like 1b and 3 below, 1a and 2 run alternately and the median run of each
    // counts. Each run of 2 writes a topic of its own; the first is the one the
    // processing runs read.
    let produce_topics: Vec<String> = (1..=cfg.runs)
        .map(|run| match run {
            1 => orders_topic.clone(),
            _ => topic(&format!("orders-{run}")),
        })
        .collect();
    // Each round of 4 and 4b dead-letters into a topic of its own, so that a
    // later round's broker does not hold the DLQ records of the earlier ones.
    let failure_dlq_topics: Vec<String> = (1..=cfg.runs)
        .map(|round| topic(&format!("dlq-{round}")))
        .collect();
    let fast_latency_topic = topic("latency-fast");
    let all_topics: Vec<&str> = [&raw_topic, &latency_topic, &fast_latency_topic, &dlq_topic]
        .into_iter()
        .chain(&produce_topics)
        .chain(&failure_dlq_topics)
        .map(String::as_str)
        .collect();
    kafka.create_topics(&all_topics, cfg.partitions, 1).await?;
    let n = cfg.orders.unwrap_or(if on_kafka {
        DEFAULT_ORDERS_KAFKA
    } else {
        DEFAULT_ORDERS
    });
    let messages = std::sync::Arc::new(encoded_orders(n));
    let (mut raws, mut produces) = (Vec::new(), Vec::new());
    for (run, produce_topic) in (1..).zip(&produce_topics) {
        let of = format!("({run}/{})", cfg.runs);
        say(format_args!(
            "1a {of}: raw librdkafka producer, {n} pre-encoded orders"
        ));
        let raw = {
            let (kafka, topic, messages) = (kafka.clone(), raw_topic.clone(), messages.clone());
            tokio::task::spawn_blocking(move || ceiling::raw_producer(&kafka, &topic, &messages))
                .await
                .expect("the raw producer does not panic")?
        };
        raws.push(raw);

        say(format_args!("2 {of}: orderflow produce, {n} orders"));
        let started = tokio::time::Instant::now();
        let produced = producer::run(
            &producer::Config {
                kafka: kafka.clone(),
                topic: produce_topic.clone(),
                rate: None,
                count: Some(n),
                format: WireFormat::Avro,
            },
            producer::Output::Quiet,
            CancellationToken::new(),
        )
        .await?;
        produces.push(Rate {
            count: produced.delivered,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let raw_rates: Vec<f64> = raws.iter().map(Rate::per_second).collect();
    let produce_rates: Vec<f64> = produces.iter().map(Rate::per_second).collect();
    let raw = median_by(raws, Rate::per_second);
    let produce = median_by(produces, Rate::per_second);

    let store_url = |name: &str| format!("sqlite://{}", cfg.data_dir.join(name).display());
    // `process` in its own group, with a store of its own.
    let processor_run = |name: &str, fail_when, fail_attempts| child::ProcessRun {
        topic: orders_topic.clone(),
        dlq_topic: dlq_topic.clone(),
        group: topic(name),
        store: store_url(&format!("{name}.db")),
        fail_when,
        fail_attempts,
    };
    // One run of either can be off by a third on a shared VM. Alternating them
    // exposes both to the same drift; the median run of each counts.
    let (mut noops, mut processes, mut storeless) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=cfg.runs {
        let of = format!("({run}/{})", cfg.runs);
        say(format_args!(
            "1b {of}: no-op librdkafka consumer reading those orders"
        ));
        let (noop, cpu) = with_cpu(async {
            let (kafka, topic, group) = (
                kafka.clone(),
                orders_topic.clone(),
                topic(&format!("noop-{run}")),
            );
            tokio::task::spawn_blocking(move || ceiling::noop_consumer(&kafka, &topic, &group, n))
                .await
                .expect("the no-op consumer does not panic")
        })
        .await;
        noops.push((noop?, cpu));
        say(format_args!(
            "3 {of}: orderflow process with the SQLite store"
        ));
        let (process, cpu) = with_cpu(child::process(
            &cfg.exe,
            &kafka,
            &processor_run(&format!("process-{run}"), None, None),
        ))
        .await;
        let process = process?;
        expect_finished("3", &process, n)?;
        processes.push((process, cpu));
        say(format_args!("3n {of}: orderflow process --store none"));
        let bare = child::process(
            &cfg.exe,
            &kafka,
            &child::ProcessRun {
                store: "none".into(),
                ..processor_run(&format!("storeless-{run}"), None, None)
            },
        )
        .await?;
        expect_finished("3n", &bare, n)?;
        storeless.push(bare);
    }
    let noop_rate_of = |(r, _): &(Rate, Option<CpuUse>)| r.per_second();
    let process_rate_of = |(s, _): &(Summary, Option<CpuUse>)| s.per_second.unwrap_or(0.0);
    let noop_rates: Vec<f64> = noops.iter().map(noop_rate_of).collect();
    let process_rates: Vec<f64> = processes.iter().map(process_rate_of).collect();
    let peak_rss = processes.iter().filter_map(|(s, _)| s.peak_rss_bytes).max();
    let (noop, noop_cpu) = median_by(noops, noop_rate_of);
    let (process, process_cpu) = median_by(processes, process_rate_of);
    let storeless_rates: Vec<f64> = storeless
        .iter()
        .map(|s| s.per_second.unwrap_or(0.0))
        .collect();
    let bare = median_by(storeless, |s| s.per_second.unwrap_or(0.0));

    // Before the failure run, which writes many headed DLQ records: a Tansu 0.6
    // without our header index (one we did not start) scans them all on every
    // fetch, and this run fetches every 10 ms.
    let latency_at = |stage: &'static str, topic_name: &str, rate: f64, orders: u64| {
        let (kafka, dlq_topic) = (&kafka, &dlq_topic);
        let (topic_name, group) = (topic_name.to_string(), topic(stage));
        let store = store_url(&format!("latency-{stage}.db"));
        async move {
            say(format_args!(
                "{stage}: latency at {rate} orders/s, {orders} orders"
            ));
            latency::measure(latency::Setup {
                kafka,
                topic: &topic_name,
                dlq_topic,
                group: &group,
                store: Arc::new(Store::connect(&store).await?),
                rate,
                orders,
            })
            .await
        }
    };
    let latency = latency_at("5", &latency_topic, cfg.latency_rate, cfg.latency_orders).await?;
    // Ten times the rate for as long: where the processor's batching, not the
    // broker's round trip, sets the latency.
    let fast_rate = cfg.latency_rate * 10.0;
    let fast_latency = latency_at(
        "5b",
        &fast_latency_topic,
        fast_rate,
        cfg.latency_orders * 10,
    )
    .await?;

    // 4: failing orders fail every attempt and end in the DLQ, as in the seed.
    // 4b: they fail twice and succeed on the last attempt, like a fault that clears.
    let rule = failing_rule(FAILING_SHARE);
    let failure_run = |stage: &'static str, round: u32, fail_attempts: Option<u32>, what: &str| {
        say(format_args!(
            "{stage} ({round}/{}): orderflow process with --fail-when '{rule}' (about 10% of orders {what})",
            cfg.runs
        ));
        let spec = child::ProcessRun {
            dlq_topic: failure_dlq_topics[round as usize - 1].clone(),
            ..processor_run(
                &format!("failing-{stage}-{round}"),
                Some(rule.clone()),
                fail_attempts,
            )
        };
        let exe = &cfg.exe;
        let kafka = &kafka;
        async move {
            let (summary, cpu) = with_cpu(child::process(exe, kafka, &spec)).await;
            let summary = summary?;
            expect_finished(stage, &summary, n)?;
            Ok::<_, Error>((summary, cpu))
        }
    };
    // A single run of either was 74-93% of 3 in one afternoon; as with 3, the
    // median run of each counts.
    let (mut failings, mut clearings) = (Vec::new(), Vec::new());
    for round in 1..=cfg.runs {
        failings.push(failure_run("4", round, None, "fail every attempt").await?);
        let clearing = failure_run("4b", round, Some(2), "fail twice, then succeed").await?;
        if clearing.0.dead_lettered > 0 {
            return Err(Error::Incomplete {
                stage: "4b",
                detail: format!(
                    "{} orders were dead-lettered, but every order succeeds on its third attempt",
                    clearing.0.dead_lettered
                ),
            });
        }
        clearings.push(clearing);
    }

    let mut t = Table {
        heading: vec![
            format!(
                "orderflow bench: {n} orders, {} partition(s), broker {broker_name}",
                cfg.partitions
            ),
            format!("machine: {}", machine()),
        ],
        ..Table::default()
    };
    let per_s = |r: f64, unit: &str| format!("{} {unit}/s", thousands(r));
    let rate_row = |id,
                    what: String,
                    r: f64,
                    unit: &str,
                    versus: Option<(&'static str, f64)>,
                    target: Option<f64>| Row {
        id,
        what,
        result: per_s(r, unit),
        versus: versus.map(|(v, base)| (v, r / base)),
        target: target
            .zip(versus)
            .map(|(t, (_, base))| (format!(">= {:.0}%", t * 100.0), r / base >= t)),
    };
    let process_rate = process.per_second.unwrap_or(0.0);
    // The failure runs are compared while reading: at the end of a finite topic
    // the last failures still wait out their backoff (up to 1 s + 2 s) whatever
    // the processor does, and at 200,000 orders that wait alone is a third of the
    // run. Run 3's median run is measured the same way for the ratio.
    let while_reading = |s: &Summary| s.sustained_per_second.unwrap_or(0.0);
    let process_reading = while_reading(&process);
    let reading_rate_of = |(s, _): &(Summary, Option<CpuUse>)| while_reading(s);
    let failing_rates: Vec<f64> = failings.iter().map(reading_rate_of).collect();
    let clearing_rates: Vec<f64> = clearings.iter().map(reading_rate_of).collect();
    let (failing, failing_cpu) = median_by(failings, reading_rate_of);
    let (clearing, clearing_cpu) = median_by(clearings, reading_rate_of);
    t.rows = vec![
        rate_row(
            "1a",
            "raw librdkafka producer (ceiling)".into(),
            raw.per_second(),
            "msgs",
            None,
            None,
        ),
        rate_row(
            "1b",
            "no-op librdkafka consumer (ceiling)".into(),
            noop.per_second(),
            "msgs",
            None,
            None,
        ),
        rate_row(
            "2",
            "orderflow produce (Avro)".into(),
            produce.per_second(),
            "orders",
            Some(("1a", raw.per_second())),
            Some(0.9),
        ),
        rate_row(
            "3",
            "orderflow process, SQLite store".into(),
            process_rate,
            "orders",
            Some(("1b", noop.per_second())),
            // On the embedded broker the broker is the bound, on Kafka the store.
            Some(if on_kafka { 0.6 } else { 0.9 }),
        ),
        rate_row(
            "3n",
            "orderflow process --store none".into(),
            bare.per_second.unwrap_or(0.0),
            "orders",
            Some(("1b", noop.per_second())),
            Some(0.9),
        ),
        Row {
            id: "3c",
            what: "processor CPU per order in 3 (user+sys)".into(),
            result: cpu_per_order(&process).map_or("unknown".into(), |us| format!("{us:.2} us")),
            versus: None,
            target: cpu_per_order(&process).map(|us| ("<= 2.5 us".into(), us <= 2.5)),
        },
        rate_row(
            "4",
            format!(
                "process, {:.0}% failing (3 attempts, 1 s backoff), while reading",
                FAILING_SHARE * 100.0
            ),
            while_reading(&failing),
            "orders",
            Some(("3", process_reading)),
            Some(0.8),
        ),
        rate_row(
            "4b",
            "as 4, failing twice then succeeding, while reading".into(),
            while_reading(&clearing),
            "orders",
            Some(("3", process_reading)),
            None,
        ),
        Row {
            id: "5",
            what: format!(
                "latency produce -> stored at {}/s",
                thousands(cfg.latency_rate)
            ),
            result: format!(
                "p50 {} / p95 {} / p99 {} ms",
                ms(latency.p50),
                ms(latency.p95),
                ms(latency.p99)
            ),
            versus: None,
            target: Some((
                "p99 <= 50 ms".into(),
                latency.p99 <= std::time::Duration::from_millis(50),
            )),
        },
        Row {
            id: "5b",
            what: format!("latency produce -> stored at {}/s", thousands(fast_rate)),
            result: format!(
                "p50 {} / p95 {} / p99 {} ms",
                ms(fast_latency.p50),
                ms(fast_latency.p95),
                ms(fast_latency.p99)
            ),
            versus: None,
            target: None,
        },
        Row {
            id: "6",
            what: "peak RSS of the processor in 3 (highest run)".into(),
            result: peak_rss.map_or("unknown".into(), mb),
            versus: None,
            target: peak_rss.map(|b| ("<= 64 MB".into(), b <= 64_000_000)),
        },
    ];
    let list = |rates: &[f64]| {
        rates
            .iter()
            .map(|r| thousands(*r))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let embedded = running.is_embedded();
    t.notes = vec![
        format!(
            "1a and 2, then 1b and 3, ran {} times, alternately; the table shows the median run of each. 1a: {} msgs/s; 2: {} orders/s; 1b: {} msgs/s; 3: {} orders/s.",
            cfg.runs,
            list(&raw_rates),
            list(&produce_rates),
            list(&noop_rates),
            list(&process_rates)
        ),
        format!(
            "3: {} orders in {:.1} s from the first message to the last commit (processor start-up and group join not counted; the same holds for 1b).",
            process.processed,
            process.seconds.unwrap_or(0.0)
        ),
        cpu::note("1b", embedded, noop_cpu, None),
        cpu::note("3", embedded, process_cpu, process.cpu_seconds),
        format!(
            "3n: the processor alone, no store; {} orders/s in its runs; CPU {} per order. 3c: the processor's CPU time (its start-up and group join included) over the orders it processed.",
            list(&storeless_rates),
            cpu_per_order(&bare).map_or("unknown".into(), |us| format!("{us:.2} us"))
        ),
        format!(
            "4, 4b \"while reading\": orders finished (stored; dead-lettered ones included) from the first message until the last one was read, per second of that time. 3 measured the same way: {} orders/s. The orders still waiting for a retry then finish within their backoff (up to 1 s + 2 s) and the DLQ write.",
            thousands(process_reading)
        ),
        format!(
            "4 and 4b ran {} times, alternately, after the runs of 3 and the latency run; the table shows the median run of each. 4: {} orders/s; 4b: {} orders/s.",
            cfg.runs,
            list(&failing_rates),
            list(&clearing_rates)
        ),
        failure_note("4", &failing, process_rate),
        cpu::note("4", embedded, failing_cpu, failing.cpu_seconds),
        failure_note("4b", &clearing, process_rate),
        cpu::note("4b", embedded, clearing_cpu, clearing.cpu_seconds),
        format!(
            "5: {} orders after {:.0} s of warm-up at the same rate; from the order's creation in the producer to the commit of its batch in the store; max {} ms.",
            latency.samples,
            latency::WARM_UP_SECONDS,
            ms(latency.max)
        ),
    ];
    Ok(t)
}

/// A failure run's counts, and its rate from the first message to the end.
fn failure_note(stage: &str, s: &Summary, process_rate: f64) -> String {
    let end_to_end = s.per_second.unwrap_or(0.0);
    format!(
        "{stage}: {} processed, {} dead-lettered after {} failed attempts; reading took {:.1} s, the run {:.1} s: {} orders/s end to end, {:.0}% of 3. Peak RSS {}.",
        s.processed,
        s.dead_lettered,
        s.failed_attempts,
        s.reading_seconds.unwrap_or(0.0),
        s.seconds.unwrap_or(0.0),
        thousands(end_to_end),
        100.0 * end_to_end / process_rate,
        s.peak_rss_bytes.map_or("unknown".into(), mb)
    )
}

/// The processor's CPU time per order, in microseconds.
fn cpu_per_order(s: &Summary) -> Option<f64> {
    let orders = s.processed + s.dead_lettered;
    s.cpu_seconds
        .filter(|_| orders > 0)
        .map(|c| c * 1e6 / orders as f64)
}

/// The middle element by `key` (the upper one of an even count).
fn median_by<T>(mut items: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    items.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let middle = items.len() / 2;
    items.swap_remove(middle)
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
            let payload = producer::encode(WireFormat::Avro, &writer, &o);
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

fn ms(d: std::time::Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Megabytes as the targets count them (10^6 bytes).
fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// CPU count and model, and memory, from /proc where there is one.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let read = |p: &str| std::fs::read_to_string(Path::new(p)).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    let meminfo = read("/proc/meminfo");
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<f64>().ok())
        .map_or(String::new(), |kb| {
            format!(", {:.0} GiB RAM", kb / (1024.0 * 1024.0))
        });
    format!("{cpus} CPUs ({model}){mem_gib}, {}", std::env::consts::OS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_run_is_the_middle_one() {
        assert_eq!(median_by(vec![3.0, 1.0, 2.0], |x| *x), 2.0);
        assert_eq!(median_by(vec![4.0, 1.0, 3.0, 2.0], |x| *x), 3.0);
        assert_eq!(median_by(vec![7.0], |x| *x), 7.0);
    }

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
