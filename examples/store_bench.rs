//! How fast the order store takes finished orders, without Kafka: applies N new
//! random orders in batches of the processor's size and prints one table row.
//!
//!     cargo run --release --example store_bench -- [ORDERS] [STORE_URL]
//!
//! Without a URL it writes to a new SQLite file in a temporary directory. Give a
//! PostgreSQL URL of a database made for the run: the orders stay in it.

use std::time::Instant;

use anyhow::Context as _;
use orderflow::{
    order::random_order,
    processor::MAX_BATCH,
    resources::cpu_seconds,
    store::{Batch, Finished, Status, Store},
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let orders: usize = match args.next() {
        Some(n) => n.parse().context("ORDERS must be a whole number")?,
        None => 200_000,
    };
    let dir = tempfile::tempdir()?;
    let url = args
        .next()
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("orders.db").display()));
    let store = Store::connect(&url).await?;
    let batches: Vec<Batch> = (0..orders as i64)
        .step_by(MAX_BATCH)
        .map(|start| start..(start + MAX_BATCH as i64).min(orders as i64))
        .map(|offsets| Batch {
            group: "store-bench".into(),
            topic: "orders".into(),
            offsets: vec![(0, offsets.end)],
            finished: offsets.map(finished).collect(),
        })
        .collect();

    let (started, cpu) = (Instant::now(), cpu_seconds());
    for batch in &batches {
        store.apply(batch).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu).map(|(after, before)| after - before);

    let scheme = url.split("://").next().unwrap_or_default();
    println!("| store | orders | batches | seconds | orders/s | µs per order | CPU s |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {scheme} | {orders} | {} | {seconds:.3} | {:.0} | {:.2} | {} |",
        batches.len(),
        orders as f64 / seconds,
        seconds * 1e6 / orders as f64,
        cpu.map_or("-".into(), |c| format!("{c:.2}")),
    );
    Ok(())
}

fn finished(offset: i64) -> Finished {
    let order = random_order();
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
