//! How the order store keeps up as it grows, without Kafka: fills a new store in
//! batches of the processor's size and, each time it reaches one of `--sizes`,
//! times the last `--window` orders before it (writes), then the reads the
//! console and the CLI make (each the median of 21 runs).
//!
//!     cargo run --release --example store_bench -- [--ids v4|v7] [--sizes N,N,..] [--window N] [STORE_URL]
//!
//! `--ids v7` gives our producer's time-ordered ids, `v4` random ones as most
//! producers send (the seeds' among them). Like a real stream, 3 partitions, 2%
//! of the orders dead-lettered after 3 attempts with one of four errors, and 3%
//! processed on a second attempt (a timeline row). Without a URL it writes to a
//! new SQLite file in a temporary directory. Give a PostgreSQL URL of a database
//! made for the run: the orders stay in it.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use orderflow::{
    order::Ids,
    processor::MAX_BATCH,
    resources::{cpu_seconds, machine_cpu_seconds, peak_rss_bytes},
    store::{Batch, Filter, Finished, Status, Store, TimelineEvent},
};
use rand::RngExt;

struct Args {
    ids: Ids,
    sizes: Vec<u64>,
    window: u64,
    url: Option<String>,
}

const PARTITIONS: i64 = 3;
const ERRORS: [&str; 4] = [
    "payment service: connection refused",
    "inventory: product out of stock",
    "validation: price above limit",
    "timeout after 5s",
];

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        ids: Ids::V7,
        sizes: vec![200_000],
        window: 100_000,
        url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--ids" => {
                a.ids = match value("--ids")?.as_str() {
                    "v4" => Ids::V4,
                    "v7" => Ids::V7,
                    other => bail!("--ids {other}: use v4 or v7"),
                }
            }
            "--sizes" => {
                a.sizes = value("--sizes")?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse()
                            .with_context(|| format!("--sizes: {s:?} is no count"))
                    })
                    .collect::<anyhow::Result<_>>()?;
                a.sizes.sort_unstable();
            }
            "--window" => a.window = value("--window")?.parse().context("--window: a count")?,
            url if !url.starts_with("--") && a.url.is_none() => a.url = Some(url.to_string()),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if a.window == 0 || a.sizes.first().is_none_or(|s| *s < a.window) {
        bail!("every size must be at least --window ({}) orders", a.window);
    }
    Ok(a)
}

/// One size's figures.
struct Row {
    size: u64,
    orders_per_s: f64,
    cpu_us: Option<f64>,
    machine_us: Option<f64>,
    reads: Vec<(&'static str, Duration)>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let url = a
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("orders.db").display()));
    let store = Store::connect(&url).await?;
    let scheme = url.split("://").next().unwrap_or_default();
    let ids = match a.ids {
        Ids::V4 => "UUID v4",
        Ids::V7 => "UUID v7",
    };
    let mut sample = Vec::new();
    let mut rows = Vec::new();
    let mut next = 0u64;
    for &size in &a.sizes {
        // Filled untimed up to the window, whose batches are made before the clock
        // starts: only the store's work is timed.
        while next < size - a.window {
            let end = (next + MAX_BATCH as u64).min(size - a.window);
            store.apply(&batch(next, end, a.ids, &mut sample)).await?;
            next = end;
        }
        let timed: Vec<Batch> = (next..size)
            .step_by(MAX_BATCH)
            .map(|start| {
                let end = (start + MAX_BATCH as u64).min(size);
                batch(start, end, a.ids, &mut sample)
            })
            .collect();
        let (started, cpu, machine) = (Instant::now(), cpu_seconds(), machine_cpu_seconds());
        for b in &timed {
            store.apply(b).await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        let orders = (size - next) as f64;
        let per_order = |after: Option<f64>, before: Option<f64>| {
            after.zip(before).map(|(a, b)| (a - b) * 1e6 / orders)
        };
        next = size;
        rows.push(Row {
            size,
            orders_per_s: orders / seconds,
            cpu_us: per_order(cpu_seconds(), cpu),
            machine_us: per_order(machine_cpu_seconds().map(|m| m.0), machine.map(|m| m.0)),
            reads: reads(&store, &sample).await?,
        });
    }
    println!(
        "| store | ids | orders in the store | orders/s | CPU per order (this process) | machine CPU per order |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let us = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2} us"));
    for r in &rows {
        println!(
            "| {scheme} | {ids} | {} | {:.0} | {} | {} |",
            r.size,
            r.orders_per_s,
            us(r.cpu_us),
            us(r.machine_us)
        );
    }
    println!();
    let names: Vec<&str> = rows[0].reads.iter().map(|(n, _)| *n).collect();
    println!(
        "| store | ids | orders in the store | {} |",
        names.join(" | ")
    );
    println!("| --- | --- | --- |{}", " --- |".repeat(names.len()));
    for r in &rows {
        let cells: Vec<String> = r
            .reads
            .iter()
            .map(|(_, d)| format!("{:.2} ms", d.as_secs_f64() * 1e3))
            .collect();
        println!("| {scheme} | {ids} | {} | {} |", r.size, cells.join(" | "));
    }
    println!();
    println!(
        "peak RSS of this process: {} MB",
        peak_rss_bytes().map_or("-".into(), |b| (b / 1_000_000).to_string())
    );
    Ok(())
}

/// The median time of each read a console or the CLI makes, run 21 times.
async fn reads(store: &Store, sample: &[String]) -> anyhow::Result<Vec<(&'static str, Duration)>> {
    let first = store
        .list(&Filter {
            limit: 50,
            ..Filter::default()
        })
        .await?;
    let page_two = |f: Filter| Filter {
        before: first.last().map(|o| o.cursor()),
        ..f
    };
    let product = first[0].product.clone();
    let user = first[0].user.clone();
    let filters: [(&'static str, Filter); 6] = [
        ("newest 50", Filter::default()),
        ("page 2", page_two(Filter::default())),
        (
            "by product, page 2",
            page_two(Filter {
                product: Some(product),
                ..Filter::default()
            }),
        ),
        (
            "by user, page 2",
            page_two(Filter {
                user: Some(user),
                ..Filter::default()
            }),
        ),
        (
            "dead-lettered, newest 50",
            Filter {
                status: Some(Status::Dlq),
                ..Filter::default()
            },
        ),
        (
            "last hour, newest 50",
            Filter {
                since_ms: Some(orderflow::order::now_ms() - 3_600_000),
                ..Filter::default()
            },
        ),
    ];
    let mut out = Vec::new();
    let mut rng = rand::rng();
    out.push((
        "by id",
        median(async || {
            let id = &sample[rng.random_range(0..sample.len())];
            anyhow::ensure!(!store.show(id).await?.is_empty(), "{id} not found");
            Ok(())
        })
        .await?,
    ));
    for (name, f) in filters {
        let f = Filter { limit: 50, ..f };
        out.push((
            name,
            median(async || {
                anyhow::ensure!(store.list(&f).await?.len() == 50, "{name}: a short page");
                Ok(())
            })
            .await?,
        ));
    }
    out.push((
        "failures by error",
        median(async || {
            anyhow::ensure!(store.failures(20).await?.len() == ERRORS.len());
            Ok(())
        })
        .await?,
    ));
    Ok(out)
}

async fn median(mut read: impl AsyncFnMut() -> anyhow::Result<()>) -> anyhow::Result<Duration> {
    let mut times = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        read().await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Orders `start..end` of the stream, spread over the partitions, with the
/// offsets they reach; every 10,000th id goes into `sample` for lookups.
fn batch(start: u64, end: u64, ids: Ids, sample: &mut Vec<String>) -> Batch {
    let finished: Vec<Finished> = (start..end).map(|n| finished(n as i64, ids)).collect();
    sample.extend(
        finished
            .iter()
            .zip(start..)
            .filter(|(_, n)| n % 10_000 == 0)
            .map(|(f, _)| f.id.clone()),
    );
    Batch {
        group: "store-bench".into(),
        topic: "orders".into(),
        offsets: (0..PARTITIONS)
            .map(|p| (p as i32, (end as i64 + PARTITIONS - 1 - p) / PARTITIONS))
            .collect(),
        finished,
    }
}

fn finished(n: i64, ids: Ids) -> Finished {
    let order = ids.random_order();
    let at = order.created_at_ms;
    let failed = |attempt: u32, error: &str| TimelineEvent {
        at_ms: at + i64::from(attempt) * 1000,
        kind: "attempt_failed",
        detail: format!("attempt {attempt}: {error}"),
    };
    let (status, attempts, last_error, timeline) = match n % 100 {
        0 | 1 => {
            let error = ERRORS[(n / 100) as usize % ERRORS.len()];
            let timeline = (1..=2).map(|a| failed(a, error)).collect();
            (Status::Dlq, 3, Some(error.to_string()), timeline)
        }
        2..=4 => (Status::Processed, 2, None, vec![failed(1, ERRORS[3])]),
        _ => (Status::Processed, 1, None, Vec::new()),
    };
    Finished {
        id: order.order_id.clone(),
        status,
        attempts,
        last_error,
        partition: (n % PARTITIONS) as i32,
        offset: n / PARTITIONS,
        produced_ms: Some(at),
        received_ms: at,
        processed_ms: at,
        timeline,
        dead_letter: None,
        order: Some(order),
    }
}
