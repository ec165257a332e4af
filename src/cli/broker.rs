//! `orderflow broker`: the embedded Kafka-compatible broker in the foreground.

use std::{net::SocketAddr, path::PathBuf};

use clap::Args;

use crate::{broker::EmbeddedBroker, shutdown};

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Address to listen on (clients bootstrap from it)
    #[arg(long, env = "ORDERFLOW_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// Directory for the broker's data (kept across restarts)
    #[arg(long, env = "ORDERFLOW_DATA_DIR", default_value = ".orderflow")]
    pub data_dir: PathBuf,
}

pub async fn run(args: BrokerArgs) -> anyhow::Result<()> {
    let mut broker = EmbeddedBroker::start(args.listen, &args.data_dir).await?;
    println!(
        "orderflow broker listening on {} (data: {}); Ctrl-C to stop",
        broker.addr(),
        args.data_dir.display()
    );
    let settings: Vec<String> = crate::broker::CONSUMER_SETTINGS
        .iter()
        .map(|(k, v)| format!("-C {k}={v}"))
        .collect();
    println!(
        "consumers: --bootstrap-servers {} {} (this broker answers a fetch only after fetch.wait.max.ms)",
        broker.bootstrap_servers(),
        settings.join(" ")
    );
    let stop = shutdown::on_signals();
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = broker.stopped() => anyhow::bail!("the embedded broker stopped unexpectedly; see the log above"),
    }
    Ok(())
}
