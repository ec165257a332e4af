//! `orderflow orders list|show|failures|prune`: the order history in the store.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::args::StoreArgs;
use crate::{
    console::{Console, amount, parse_time, time},
    store::{Cursor, Filter, History, Status, retention},
};

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// List stored orders, newest first, a page at a time
    List(ListArgs),
    /// An order with its timeline (every order stored with the id)
    Show {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Dead-lettered orders grouped by error, the most frequent first
    Failures {
        #[arg(long, env = "ORDERFLOW_LIMIT", default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..))]
        limit: i64,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete orders processed longer ago than a duration (the aggregates keep them)
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// processed or dlq
    #[arg(long, env = "ORDERFLOW_STATUS", value_parser = parse_status)]
    pub status: Option<Status>,
    #[arg(long, env = "ORDERFLOW_PRODUCT")]
    pub product: Option<String>,
    #[arg(long, env = "ORDERFLOW_USER")]
    pub user: Option<String>,
    /// Processed at or after: a time (2026-12-01T10:00:00Z) or a duration ago (2h)
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Processed before: a time or a duration ago
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
    /// The next page: orders older than the position a full page ended with
    #[arg(long)]
    pub after: Option<Cursor>,
    #[arg(long, env = "ORDERFLOW_LIMIT", default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Delete orders processed longer ago than this, e.g. 90d
    #[arg(long, env = "ORDERFLOW_RETENTION", value_parser = humantime::parse_duration)]
    pub older_than: Duration,
    #[command(flatten)]
    pub store: StoreArgs,
}

fn parse_status(s: &str) -> Result<Status, String> {
    Status::parse(s).ok_or_else(|| format!("unknown status {s:?}: use processed or dlq"))
}

pub async fn run(command: OrdersCommand) -> anyhow::Result<()> {
    match command {
        OrdersCommand::List(args) => list(args).await,
        OrdersCommand::Show { id, store } => show(&id, &store).await,
        OrdersCommand::Failures { limit, store } => failures(limit, &store).await,
        OrdersCommand::Prune(args) => prune(args).await,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let store = args.store.open_required().await?;
    let out = Console::new();
    let filter = Filter {
        status: args.status,
        product: args.product,
        user: args.user,
        since_ms: args.since,
        until_ms: args.until,
        before: args.after,
        limit: args.limit,
    };
    out.line(format_args!(
        "{:<36}  {:<9}  {:<8}  {:<8}  {:>3}  {:>8}  {:>2}  PROCESSED",
        "ORDER", "STATUS", "USER", "PRODUCT", "QTY", "PRICE", "AT"
    ));
    let orders = store.list(&filter).await?;
    for o in &orders {
        out.line(format_args!(
            "{:<36}  {:<9}  {:<8}  {:<8}  {:>3}  {:>8}  {:>2}  {}",
            o.id,
            o.status,
            o.user,
            o.product,
            o.quantity,
            amount(o.price),
            o.attempts,
            time(o.processed_ms)
        ));
    }
    if let Some(last) = orders.last().filter(|_| orders.len() as i64 == args.limit) {
        // On stderr, so that the list itself stays a table for scripts.
        eprintln!("more: add --after {}", last.cursor());
    }
    Ok(())
}

async fn show(id: &str, store: &StoreArgs) -> anyhow::Result<()> {
    let store = store.open_required().await?;
    let found = store.show(id).await?;
    anyhow::ensure!(!found.is_empty(), "no order {id:?} in the store");
    let out = Console::new();
    if found.len() > 1 {
        out.line(format_args!(
            "{} orders carry this id, each from its own message:",
            found.len()
        ));
    }
    for (n, h) in found.iter().enumerate() {
        if n > 0 {
            out.line(format_args!(""));
        }
        show_one(&out, h);
    }
    Ok(())
}

fn show_one(out: &Console, History { order: o, events }: &History) {
    out.line(format_args!("order     {}", o.id));
    out.line(format_args!(
        "status    {} after {} attempt(s)",
        o.status, o.attempts
    ));
    out.line(format_args!("user      {}", o.user));
    out.line(format_args!("product   {} x {}", o.product, o.quantity));
    out.line(format_args!("price     {}", amount(o.price)));
    if let Some(e) = &o.last_error {
        out.line(format_args!("error     {e}"));
    }
    out.line(format_args!(
        "source    {}[{}]@{}",
        o.topic, o.partition, o.offset
    ));
    out.line(format_args!(
        "produced  {}",
        o.produced_ms.map_or("-".into(), time)
    ));
    out.line(format_args!("processed {}", time(o.processed_ms)));
    out.line(format_args!("timeline:"));
    for e in events {
        out.line(format_args!(
            "  {}  {:<14}  {}",
            time(e.at_ms),
            e.kind,
            e.detail
        ));
    }
}

async fn failures(limit: i64, store: &StoreArgs) -> anyhow::Result<()> {
    let store = store.open_required().await?;
    let out = Console::new();
    out.line(format_args!("{:>8}  {:<24}  ERROR", "ORDERS", "LAST"));
    for f in store.failures(limit).await? {
        out.line(format_args!(
            "{:>8}  {:<24}  {}",
            f.orders,
            time(f.last_ms),
            f.reason
        ));
    }
    Ok(())
}

async fn prune(args: PruneArgs) -> anyhow::Result<()> {
    let store = args.store.open_required().await?;
    let before = retention::cutoff_ms(args.older_than);
    let pruned = store.prune(before).await.context(
        "pruning the order store (what was deleted before the error stays deleted; run it again)",
    )?;
    Console::new().line(format_args!(
        "pruned {pruned} order(s) processed before {}",
        time(before)
    ));
    Ok(())
}
