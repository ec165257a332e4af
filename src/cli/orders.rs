//! `orderflow orders list|show`: the order history in the store.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::args::StoreArgs;
use crate::{
    console::{Console, amount},
    store::{Filter, Status},
};

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
    #[arg(long, env = "ORDERFLOW_STATUS", value_parser = parse_status)]
    pub status: Option<Status>,
    #[arg(long, env = "ORDERFLOW_PRODUCT")]
    pub product: Option<String>,
    #[arg(long, env = "ORDERFLOW_LIMIT", default_value_t = 20)]
    pub limit: i64,
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
    }
}

async fn list(args: ListArgs) -> anyhow::Result<()> {
    let store = args.store.open_required().await?;
    let out = Console::new();
    let filter = Filter {
        status: args.status,
        product: args.product,
        limit: args.limit,
    };
    out.line(format_args!(
        "{:<36}  {:<9}  {:<8}  {:>3}  {:>8}  {:>2}  PROCESSED",
        "ORDER", "STATUS", "PRODUCT", "QTY", "PRICE", "AT"
    ));
    for o in store.list(&filter).await? {
        out.line(format_args!(
            "{:<36}  {:<9}  {:<8}  {:>3}  {:>8}  {:>2}  {}",
            o.id,
            o.status,
            o.product,
            o.quantity,
            amount(o.price),
            o.attempts,
            time(o.processed_ms)
        ));
    }
    Ok(())
}

async fn show(id: &str, store: &StoreArgs) -> anyhow::Result<()> {
    let store = store.open_required().await?;
    let (o, events) = store
        .show(id)
        .await?
        .with_context(|| format!("no order {id:?} in the store"))?;
    let out = Console::new();
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
    Ok(())
}

fn time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}
