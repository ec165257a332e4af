//! `orderflow demo`: its arguments; the pipeline it runs is in [`crate::demo`].

use std::{net::SocketAddr, time::Duration};

use clap::Args;

use super::args::{Connection, StoreArgs};
use crate::simulated::FailWhen;

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Address of the embedded broker (other orderflow commands can use it meanwhile)
    #[arg(long, env = "ORDERFLOW_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Orders per second
    #[arg(long, env = "ORDERFLOW_RATE", default_value_t = 3.0)]
    pub rate: f64,
    /// Produce this many orders, then finish processing them and exit
    #[arg(long, env = "ORDERFLOW_COUNT")]
    pub count: Option<u64>,
    /// Produce for this long (e.g. 30s), then finish processing and exit
    #[arg(long, env = "ORDERFLOW_DURATION", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    #[arg(long, env = "ORDERFLOW_FAIL_WHEN", default_value = "price>100")]
    pub fail_when: FailWhen,
    #[arg(long, env = "ORDERFLOW_PARTITIONS", default_value_t = 1)]
    pub partitions: i32,
    /// Address of the web console (`off`: none)
    #[arg(
        long,
        env = "ORDERFLOW_CONSOLE_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub console_listen: String,
    /// Address of the schema registry, for producers of Confluent-framed orders
    /// (`off`: none)
    #[arg(
        long,
        env = "ORDERFLOW_REGISTRY_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    pub registry_listen: String,
    /// The console's users; with none, the demo makes an operator `demo` with a
    /// password it prints
    #[command(flatten)]
    pub users: super::serve::UsersFileArgs,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    crate::demo::run(args).await
}
