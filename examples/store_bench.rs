//! How fast the order store takes finished orders, without Kafka, as the store
//! grows: fills a new store in batches of the processor's size and, each time
//! it reaches one of `--sizes`, times the last `--window` orders before it.
//!
//!     cargo run --release --example store_bench -- [--ids v4|v7] [--sizes N,N,..] [--window N] [STORE_URL]
//!
//! `--ids v7` gives our producer's time-ordered ids, `v4` random ones as most
//! producers send (the seeds' among them). Without a URL it writes to a new
//! SQLite file in a temporary directory. Give a PostgreSQL URL of a database
//! made for the run: the orders stay in it.

use std::time::Instant;

use anyhow::{Context as _, bail};
use orderflow::{
    order::random_order,
    processor::MAX_BATCH,
    resources::cpu_seconds,
    store::{Batch, Finished, Status, Store},
};

#[derive(Clone, Copy, PartialEq)]
enum Ids {
    V4,
    V7,
}

struct Args {
    ids: Ids,
    sizes: Vec<u64>,
    window: u64,
    url: Option<String>,
}

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
    println!(
        "| store | ids | orders in the store | orders timed | orders/s | CPU per order (this process) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut next = 0u64;
    for &size in &a.sizes {
        // Filled untimed up to the window, whose batches are made before the clock
        // starts: only the store's work is timed.
        while next < size - a.window {
            let end = (next + MAX_BATCH as u64).min(size - a.window);
            store.apply(&batch(next, end, a.ids)).await?;
            next = end;
        }
        let timed: Vec<Batch> = (next..size)
            .step_by(MAX_BATCH)
            .map(|start| batch(start, (start + MAX_BATCH as u64).min(size), a.ids))
            .collect();
        let (started, cpu) = (Instant::now(), cpu_seconds());
        for b in &timed {
            store.apply(b).await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds().zip(cpu).map(|(after, before)| after - before);
        let orders = size - next;
        next = size;
        println!(
            "| {scheme} | {ids} | {size} | {orders} | {:.0} | {} |",
            orders as f64 / seconds,
            cpu.map_or("-".into(), |c| format!("{:.2} us", c * 1e6 / orders as f64)),
        );
    }
    Ok(())
}

/// Orders at offsets `start..end` of partition 0, with the offsets they reach.
fn batch(start: u64, end: u64, ids: Ids) -> Batch {
    let (start, end) = (start as i64, end as i64);
    Batch {
        group: "store-bench".into(),
        topic: "orders".into(),
        offsets: vec![(0, end)],
        finished: (start..end).map(|offset| finished(offset, ids)).collect(),
    }
}

fn finished(offset: i64, ids: Ids) -> Finished {
    let mut order = random_order();
    if ids == Ids::V4 {
        order.order_id = uuid::Uuid::new_v4().to_string();
    }
    Finished {
        id: order.order_id.clone(),
        status: Status::Processed,
        attempts: 1,
        last_error: None,
        partition: 0,
        offset,
        produced_ms: Some(order.created_at_ms),
        received_ms: order.created_at_ms,
        processed_ms: order.created_at_ms,
        timeline: Vec::new(),
        order: Some(order),
    }
}
