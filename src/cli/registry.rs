//! `orderflow registry`: the Confluent-compatible schema registry, over the store.

use anyhow::Context as _;
use clap::Args;

use super::args::StoreArgs;
use crate::{console::Console, registry, shutdown};

#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Address of the registry (port 0: any free port, printed at start)
    #[arg(
        long,
        env = "ORDERFLOW_REGISTRY_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    pub listen: String,
    #[command(flatten)]
    pub store: StoreArgs,
}

pub async fn run(args: RegistryArgs) -> anyhow::Result<()> {
    let store = args.store.open_required().await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    Console::new().line(format_args!(
        "schema registry on http://{}/",
        listener.local_addr()?
    ));
    registry::http::run(
        listener,
        registry::Registry::new(store),
        shutdown::on_signals(),
    )
    .await
    .context("serving the schema registry")
}
