//! `orderflow topics create`: the order and dead-letter topics.

use clap::{Args, Subcommand};

use super::args::Connection;

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the order, dead-letter and parking topics (existing topics are left as they are)
    Create(TopicArgs),
}

#[derive(Debug, Args)]
pub struct TopicArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[arg(long, env = "ORDERFLOW_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,
    #[arg(long, env = "ORDERFLOW_REPLICATION_FACTOR", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub replication_factor: i32,
}

pub async fn run(command: TopicsCommand) -> anyhow::Result<()> {
    let TopicsCommand::Create(args) = command;
    let conn = &args.conn;
    let created = conn
        .kafka()
        .create_topics(&conn.topics(), args.partitions, args.replication_factor)
        .await?;
    for t in conn.topics() {
        let state = if created.iter().any(|c| c == t) {
            "created"
        } else {
            "exists"
        };
        println!("{t}: {state}");
    }
    Ok(())
}
