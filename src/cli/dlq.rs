//! `orderflow dlq`: prints the dead-lettered orders.

use anyhow::Context as _;
use clap::Args;

use super::args::{Connection, drain_token};
use crate::{console::Console, dlq, shutdown};

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[arg(long, env = "ORDERFLOW_GROUP", default_value = "dlq-group")]
    pub group: String,
    /// Exit once every assigned partition is read to its end
    #[arg(long, env = "ORDERFLOW_EXIT_AT_END")]
    pub exit_at_end: bool,
}

pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
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
