//! The bench's table: one row per stage against its ceiling and target, and
//! notes that give every run's figure and what bounds each.

use std::{path::Path, time::Duration};

use super::{
    Config, FAILING_SHARE, cpu,
    stages::{Failures, Latencies, Measured, Processing, Producing, while_reading},
    table::{Row, Table, thousands},
};
use crate::{bench::latency, processor::Summary};

/// Where the figures were measured.
pub struct Setting<'a> {
    pub cfg: &'a Config,
    pub broker_name: &'a str,
    pub embedded: bool,
    pub orders: u64,
}

pub struct Results {
    pub producing: Producing,
    pub processing: Processing,
    pub latencies: Latencies,
    pub failures: Failures,
}

pub fn table(s: &Setting<'_>, r: &Results) -> Table {
    Table {
        heading: vec![
            format!(
                "orderflow bench: {} orders, {} partition(s), broker {}",
                s.orders, s.cfg.partitions, s.broker_name
            ),
            format!("machine: {}", machine()),
        ],
        rows: rows(s, r),
        notes: notes(s, r),
    }
}

fn rate_row(
    id: &'static str,
    what: String,
    r: f64,
    unit: &str,
    versus: Option<(&'static str, f64)>,
    target: Option<f64>,
) -> Row {
    Row {
        id,
        what,
        result: format!("{} {unit}/s", thousands(r)),
        versus: versus.map(|(v, base)| (v, r / base)),
        target: target
            .zip(versus)
            .map(|(t, (_, base))| (format!(">= {:.0}%", t * 100.0), r / base >= t)),
    }
}

fn latency_row(id: &'static str, rate: f64, l: &latency::Latency, target: Option<Duration>) -> Row {
    Row {
        id,
        what: format!("latency produce -> stored at {}/s", thousands(rate)),
        result: format!(
            "p50 {} / p95 {} / p99 {} ms",
            ms(l.p50),
            ms(l.p95),
            ms(l.p99)
        ),
        versus: None,
        target: target.map(|t| (format!("p99 <= {} ms", t.as_millis()), l.p99 <= t)),
    }
}

fn rows(s: &Setting<'_>, r: &Results) -> Vec<Row> {
    let (raw, produce) = (&r.producing.raw.median, &r.producing.produce.median);
    let noop = r.processing.noop.median.0.per_second();
    let process = &r.processing.process.median.0;
    let bare = &r.processing.storeless.median;
    let process_reading = while_reading(process);
    let cpu = cpu_per_order(process);
    vec![
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
            noop,
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
            process.per_second.unwrap_or(0.0),
            "orders",
            Some(("1b", noop)),
            // On the embedded broker the broker is the bound, on Kafka the store.
            Some(if s.embedded { 0.9 } else { 0.6 }),
        ),
        rate_row(
            "3n",
            "orderflow process --store none".into(),
            bare.per_second.unwrap_or(0.0),
            "orders",
            Some(("1b", noop)),
            Some(0.9),
        ),
        Row {
            id: "3c",
            what: "processor CPU per order in 3 (user+sys)".into(),
            result: cpu.map_or("unknown".into(), |us| format!("{us:.2} us")),
            versus: None,
            target: cpu.map(|us| ("<= 2.5 us".into(), us <= 2.5)),
        },
        rate_row(
            "4",
            format!(
                "process, {:.0}% failing (3 attempts, 1 s backoff), while reading",
                FAILING_SHARE * 100.0
            ),
            while_reading(&r.failures.failing.median.0),
            "orders",
            Some(("3", process_reading)),
            Some(0.8),
        ),
        rate_row(
            "4b",
            "as 4, failing twice then succeeding, while reading".into(),
            while_reading(&r.failures.clearing.median.0),
            "orders",
            Some(("3", process_reading)),
            None,
        ),
        latency_row(
            "5",
            s.cfg.latency_rate,
            &r.latencies.normal,
            Some(Duration::from_millis(50)),
        ),
        latency_row("5b", r.latencies.fast_rate, &r.latencies.fast, None),
        Row {
            id: "6",
            what: "peak RSS of the processor in 3 (highest run)".into(),
            result: r.processing.peak_rss.map_or("unknown".into(), mb),
            versus: None,
            target: r
                .processing
                .peak_rss
                .map(|b| ("<= 64 MB".into(), b <= 64_000_000)),
        },
    ]
}

fn notes(s: &Setting<'_>, r: &Results) -> Vec<String> {
    let list = |rates: &[f64]| {
        rates
            .iter()
            .map(|r| thousands(*r))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (p, f) = (&r.processing, &r.failures);
    let (process, process_cpu) = &p.process.median;
    let process_rate = process.per_second.unwrap_or(0.0);
    let (failing, failing_cpu): &Measured = &f.failing.median;
    let (clearing, clearing_cpu): &Measured = &f.clearing.median;
    let embedded = s.embedded;
    let runs = s.cfg.runs;
    vec![
        format!(
            "1a and 2, then 1b and 3, ran {runs} times, alternately; the table shows the median run of each. 1a: {} msgs/s; 2: {} orders/s; 1b: {} msgs/s; 3: {} orders/s.",
            list(&r.producing.raw.rates),
            list(&r.producing.produce.rates),
            list(&p.noop.rates),
            list(&p.process.rates)
        ),
        format!(
            "3: {} orders in {:.1} s from the first message to the last commit (processor start-up and group join not counted; the same holds for 1b).",
            process.processed,
            process.seconds.unwrap_or(0.0)
        ),
        cpu::note("1b", embedded, p.noop.median.1, None),
        cpu::note("3", embedded, *process_cpu, process.cpu_seconds),
        format!(
            "3n: the processor alone, no store; {} orders/s in its runs; CPU {} per order. 3c: the processor's CPU time (its start-up and group join included) over the orders it processed.",
            list(&p.storeless.rates),
            cpu_per_order(&p.storeless.median).map_or("unknown".into(), |us| format!("{us:.2} us"))
        ),
        format!(
            "4, 4b \"while reading\": orders finished (stored; dead-lettered ones included) from the first message until the last one was read, per second of that time. 3 measured the same way: {} orders/s. The orders still waiting for a retry then finish within their backoff (up to 1 s + 2 s) and the DLQ write.",
            thousands(while_reading(process))
        ),
        format!(
            "4 and 4b ran {runs} times, alternately, after the runs of 3 and the latency run; the table shows the median run of each. 4: {} orders/s; 4b: {} orders/s.",
            list(&f.failing.rates),
            list(&f.clearing.rates)
        ),
        failure_note("4", failing, process_rate),
        cpu::note("4", embedded, *failing_cpu, failing.cpu_seconds),
        failure_note("4b", clearing, process_rate),
        cpu::note("4b", embedded, *clearing_cpu, clearing.cpu_seconds),
        format!(
            "5: {} orders after {:.0} s of warm-up at the same rate; from the order's creation in the producer to the commit of its batch in the store; max {} ms.",
            r.latencies.normal.samples,
            latency::WARM_UP_SECONDS,
            ms(r.latencies.normal.max)
        ),
    ]
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

fn ms(d: Duration) -> String {
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
