//! The measurements, one function per group of stages, each returning what the
//! table needs: the median run and every run's rate.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{
    Config, Error, FAILING_SHARE, Rate, ceiling, child,
    cpu::{CpuUse, with_cpu},
    encoded_orders, expect_finished, failing_rule,
    latency::{self, Latency},
    say,
};
use crate::{
    kafka::KafkaConfig,
    processor::Summary,
    producer::{self, WireFormat},
    store::Store,
};

/// The runs of one stage: the median run (by `rate`), and every run's rate.
pub struct Runs<T> {
    pub median: T,
    pub rates: Vec<f64>,
}

impl<T> Runs<T> {
    fn of(mut runs: Vec<T>, rate: impl Fn(&T) -> f64) -> Self {
        let rates = runs.iter().map(&rate).collect();
        runs.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
        // The upper middle one of an even count.
        let middle = runs.len() / 2;
        Runs {
            median: runs.swap_remove(middle),
            rates,
        }
    }
}

/// A processor's run and the CPU the bench's process used meanwhile (the broker's,
/// when it is embedded).
pub type Measured = (Summary, Option<CpuUse>);

/// What every stage shares: the broker's client settings, the bench's topics
/// and the number of orders of a throughput run.
pub struct Bench<'a> {
    pub cfg: &'a Config,
    pub kafka: KafkaConfig,
    pub orders: u64,
    run_id: String,
}

impl<'a> Bench<'a> {
    pub fn new(cfg: &'a Config, kafka: KafkaConfig, orders: u64) -> Self {
        Bench {
            cfg,
            kafka,
            orders,
            run_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        }
    }

    /// A topic (or group) name of this bench run.
    pub fn name(&self, what: &str) -> String {
        format!("bench-{}-{what}", self.run_id)
    }

    /// The orders the processing runs read: the first run of 2 writes them.
    fn orders_topic(&self) -> String {
        self.produce_topic(1)
    }

    /// Each run of 2 writes a topic of its own.
    fn produce_topic(&self, run: u32) -> String {
        match run {
            1 => self.name("orders"),
            _ => self.name(&format!("orders-{run}")),
        }
    }

    /// Each round of 4 and 4b dead-letters into a topic of its own, so that a
    /// later round's broker does not hold the DLQ records of the earlier ones.
    fn failure_dlq_topic(&self, round: u32) -> String {
        self.name(&format!("dlq-{round}"))
    }

    /// Every topic the stages write or read.
    pub fn topics(&self) -> Vec<String> {
        let runs = 1..=self.cfg.runs;
        ["raw", "latency", "latency-fast", "dlq"]
            .into_iter()
            .map(|t| self.name(t))
            .chain(runs.clone().map(|r| self.produce_topic(r)))
            .chain(runs.map(|r| self.failure_dlq_topic(r)))
            .collect()
    }

    fn store_url(&self, name: &str) -> String {
        format!("sqlite://{}", self.cfg.data_dir.join(name).display())
    }

    /// `process` over the orders topic, in its own group, with a store of its own.
    fn processor_run(
        &self,
        name: &str,
        fail_when: Option<String>,
        fail_attempts: Option<u32>,
    ) -> child::ProcessRun {
        child::ProcessRun {
            topic: self.orders_topic(),
            dlq_topic: self.name("dlq"),
            group: self.name(name),
            store: self.store_url(&format!("{name}.db")),
            fail_when,
            fail_attempts,
        }
    }

    fn of(&self, run: u32) -> String {
        format!("({run}/{})", self.cfg.runs)
    }
}

pub struct Producing {
    pub raw: Runs<Rate>,
    pub produce: Runs<Rate>,
}

/// 1a and 2, alternately: one run of either can be off by a third on a shared
/// VM, and alternating exposes both to the same drift.
pub async fn producing(b: &Bench<'_>) -> Result<Producing, Error> {
    let n = b.orders;
    let messages = Arc::new(encoded_orders(n));
    let (mut raws, mut produces) = (Vec::new(), Vec::new());
    for run in 1..=b.cfg.runs {
        let of = b.of(run);
        say(format_args!(
            "1a {of}: raw librdkafka producer, {n} pre-encoded orders"
        ));
        let raw = {
            let (kafka, topic, messages) = (b.kafka.clone(), b.name("raw"), messages.clone());
            tokio::task::spawn_blocking(move || ceiling::raw_producer(&kafka, &topic, &messages))
                .await
                .expect("the raw producer does not panic")?
        };
        raws.push(raw);

        say(format_args!("2 {of}: orderflow produce, {n} orders"));
        let started = tokio::time::Instant::now();
        let produced = producer::run(
            &producer::Config {
                kafka: b.kafka.clone(),
                topic: b.produce_topic(run),
                rate: None,
                count: Some(n),
                format: WireFormat::Avro,
                confluent: None,
                ids: crate::order::Ids::default(),
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
    Ok(Producing {
        raw: Runs::of(raws, Rate::per_second),
        produce: Runs::of(produces, Rate::per_second),
    })
}

pub struct Processing {
    pub noop: Runs<(Rate, Option<CpuUse>)>,
    pub process: Runs<Measured>,
    pub storeless: Runs<Summary>,
    /// The highest of the runs of 3.
    pub peak_rss: Option<u64>,
}

fn rate_of(s: &Summary) -> f64 {
    s.per_second.unwrap_or(0.0)
}

/// 1b, 3 and 3n, alternately, over the orders the first run of 2 wrote.
pub async fn processing(b: &Bench<'_>) -> Result<Processing, Error> {
    let n = b.orders;
    let (mut noops, mut processes, mut storeless) = (Vec::new(), Vec::new(), Vec::new());
    for run in 1..=b.cfg.runs {
        let of = b.of(run);
        say(format_args!(
            "1b {of}: no-op librdkafka consumer reading those orders"
        ));
        let (noop, cpu) = with_cpu(async {
            let (kafka, topic, group) = (
                b.kafka.clone(),
                b.orders_topic(),
                b.name(&format!("noop-{run}")),
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
        let spec = b.processor_run(&format!("process-{run}"), None, None);
        let (process, cpu) = with_cpu(child::process(&b.cfg.exe, &b.kafka, &spec)).await;
        let process = process?;
        expect_finished("3", &process, n)?;
        processes.push((process, cpu));
        say(format_args!("3n {of}: orderflow process --store none"));
        let spec = child::ProcessRun {
            store: "none".into(),
            ..b.processor_run(&format!("storeless-{run}"), None, None)
        };
        let bare = child::process(&b.cfg.exe, &b.kafka, &spec).await?;
        expect_finished("3n", &bare, n)?;
        storeless.push(bare);
    }
    let peak_rss = processes.iter().filter_map(|(s, _)| s.peak_rss_bytes).max();
    Ok(Processing {
        noop: Runs::of(noops, |(r, _)| r.per_second()),
        process: Runs::of(processes, |(s, _)| rate_of(s)),
        storeless: Runs::of(storeless, rate_of),
        peak_rss,
    })
}

pub struct Latencies {
    pub normal: Latency,
    /// At ten times the rate for as long: where the processor's batching, not
    /// the broker's round trip, sets the latency.
    pub fast: Latency,
    pub fast_rate: f64,
}

/// 5 and 5b. Before the failure runs, which write many headed DLQ records: a
/// Tansu 0.6 without our header index (one we did not start) scans them all on
/// every fetch, and these runs fetch every 10 ms.
pub async fn latencies(b: &Bench<'_>) -> Result<Latencies, Error> {
    let at = |stage: &'static str, topic: &'static str, rate: f64, orders: u64| async move {
        say(format_args!(
            "{stage}: latency at {rate} orders/s, {orders} orders"
        ));
        let store = b.store_url(&format!("latency-{stage}.db"));
        latency::measure(latency::Setup {
            kafka: &b.kafka,
            topic: &b.name(topic),
            dlq_topic: &b.name("dlq"),
            group: &b.name(stage),
            store: Arc::new(Store::connect(&store).await?),
            rate,
            orders,
        })
        .await
    };
    let (rate, orders) = (b.cfg.latency_rate, b.cfg.latency_orders);
    let normal = at("5", "latency", rate, orders).await?;
    let fast_rate = rate * 10.0;
    let fast = at("5b", "latency-fast", fast_rate, orders * 10).await?;
    Ok(Latencies {
        normal,
        fast,
        fast_rate,
    })
}

pub struct Failures {
    /// 4: failing orders fail every attempt and end in the DLQ, as in the seed.
    pub failing: Runs<Measured>,
    /// 4b: they fail twice and succeed on the last attempt, like a fault that clears.
    pub clearing: Runs<Measured>,
}

/// The failure runs are compared while reading: at the end of a finite topic the
/// last failures still wait out their backoff (up to 1 s + 2 s) whatever the
/// processor does, and at 200,000 orders that wait alone is a third of the run.
pub fn while_reading(s: &Summary) -> f64 {
    s.sustained_per_second.unwrap_or(0.0)
}

/// 4 and 4b, alternately: a single run of either was 74-93% of 3 in one
/// afternoon; as with 3, the median run of each counts.
pub async fn failures(b: &Bench<'_>) -> Result<Failures, Error> {
    let rule = failing_rule(FAILING_SHARE);
    let run = |stage: &'static str, round: u32, fail_attempts: Option<u32>, what: &str| {
        say(format_args!(
            "{stage} ({round}/{}): orderflow process with --fail-when '{rule}' (about 10% of orders {what})",
            b.cfg.runs
        ));
        let spec = child::ProcessRun {
            dlq_topic: b.failure_dlq_topic(round),
            ..b.processor_run(
                &format!("failing-{stage}-{round}"),
                Some(rule.clone()),
                fail_attempts,
            )
        };
        async move {
            let (summary, cpu) = with_cpu(child::process(&b.cfg.exe, &b.kafka, &spec)).await;
            let summary = summary?;
            expect_finished(stage, &summary, b.orders)?;
            Ok::<_, Error>((summary, cpu))
        }
    };
    let (mut failings, mut clearings) = (Vec::new(), Vec::new());
    for round in 1..=b.cfg.runs {
        failings.push(run("4", round, None, "fail every attempt").await?);
        let clearing = run("4b", round, Some(2), "fail twice, then succeed").await?;
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
    Ok(Failures {
        failing: Runs::of(failings, |(s, _)| while_reading(s)),
        clearing: Runs::of(clearings, |(s, _)| while_reading(s)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_run_is_the_middle_one() {
        let median = |v: Vec<f64>| Runs::of(v, |x| *x).median;
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(median(vec![7.0]), 7.0);
        assert_eq!(
            Runs::of(vec![3.0, 1.0], |x| *x).rates,
            [3.0, 1.0],
            "in run order"
        );
    }
}
