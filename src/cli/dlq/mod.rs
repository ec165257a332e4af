//! `orderflow dlq`: the dead-lettered orders. Without a subcommand it prints the
//! DLQ's records as they come (seed-003's consumer); `list`, `reasons`,
//! `replay`, `jobs` and `cancel` triage and redrive them through the store.

mod replay;
mod triage;

use std::sync::Arc;

use anyhow::Context as _;

use clap::{Args, Subcommand};

use super::args::{Connection, StoreArgs, drain_token};
use crate::{
    console::Console,
    dlq::{
        self,
        redrive::{Redrive, Topics},
    },
    shutdown,
};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: Option<DlqCommand>,
    #[command(flatten)]
    pub tail: TailArgs,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters in the store (the DLQ topic is read into it first), newest first
    List(triage::ListArgs),
    /// Dead letters grouped by reason (numbers, ids and quoted values set aside)
    Reasons(triage::ReasonsArgs),
    /// Send dead letters back to their order topic as a replay job
    Replay(replay::ReplayArgs),
    /// Replay jobs, the newest first
    Jobs(replay::JobsArgs),
    /// Stop a replay job: what it sent stays sent, the rest stays dead
    Cancel(replay::CancelArgs),
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[arg(long, env = "ORDERFLOW_GROUP", default_value = "dlq-group")]
    pub group: String,
    /// Exit once every assigned partition is read to its end
    #[arg(long, env = "ORDERFLOW_EXIT_AT_END")]
    pub exit_at_end: bool,
}

pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    match args.command {
        None => tail(args.tail).await,
        Some(DlqCommand::List(a)) => triage::list(a).await,
        Some(DlqCommand::Reasons(a)) => triage::reasons(a).await,
        Some(DlqCommand::Replay(a)) => replay::replay(a).await,
        Some(DlqCommand::Jobs(a)) => replay::jobs(a).await,
        Some(DlqCommand::Cancel(a)) => replay::cancel(a).await,
    }
}

async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let cfg = dlq::consumer::Config {
        kafka: args.conn.kafka(),
        topic: args.conn.dlq_topic,
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

/// `--json`: one object per line.
fn json_lines<T: serde::Serialize>(out: &Console, items: &[T]) {
    for item in items {
        out.line(format_args!(
            "{}",
            serde_json::to_string(item).expect("dead letters and jobs serialize")
        ));
    }
}

/// Whether a command can go on without reading the DLQ topic into the store
/// first (with a warning): listing can, from what the store holds; replaying
/// and cancelling cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CatchUp {
    Required,
    BestEffort,
}

/// The redrive engine over the store and the cluster the flags name, with the
/// DLQ topic read into the store.
async fn engine(
    conn: &Connection,
    store: &StoreArgs,
    catch_up: CatchUp,
) -> anyhow::Result<Redrive> {
    let store: Arc<_> = store.open_required().await?;
    let engine = Redrive::new(
        store,
        conn.kafka(),
        Topics {
            dlq: conn.dlq_topic.clone(),
            orders: conn.topic.clone(),
            parking: conn.parking_topic.clone(),
        },
    );
    let what = || format!("reading the DLQ topic {} into the store", conn.dlq_topic);
    match engine.catch_up().await {
        Ok(caught) => {
            if caught.new > 0 {
                tracing::info!(
                    read = caught.read,
                    new = caught.new,
                    "DLQ records the store lacked"
                );
            }
        }
        Err(e) if catch_up == CatchUp::BestEffort => eprintln!(
            "warning: {}: {e}; showing what the store holds, which may lack the newest DLQ records",
            what()
        ),
        Err(e) => return Err(anyhow::Error::new(e).context(what())),
    }
    Ok(engine)
}
