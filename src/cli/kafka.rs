//! `orderflow kafka`: a local Apache Kafka cluster in the foreground, from the broker
//! runtime that Maven fetches (Java 17 and Maven, no Docker).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::local_kafka::{Cluster, Spec};

#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Nodes, each a broker and a controller (3: replication factor 3,
    /// min.insync.replicas=2)
    #[arg(long, env = "ORDERFLOW_KAFKA_NODES", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub nodes: u16,
    /// The first node's PLAINTEXT port on 127.0.0.1; node i listens on PORT+2i and
    /// its controller on PORT+2i+1, SASL and SSL listeners after all nodes' pairs
    #[arg(long, env = "ORDERFLOW_KAFKA_PORT", default_value_t = 9092)]
    pub port: u16,
    /// Data, configuration and logs, kept across restarts with the same flags
    #[arg(long, env = "ORDERFLOW_KAFKA_DIR", default_value = ".orderflow/kafka")]
    pub dir: PathBuf,
    /// Java heap of each node, in MiB
    #[arg(long, env = "ORDERFLOW_KAFKA_HEAP_MB", default_value_t = 1024)]
    pub heap_mb: u32,
    /// A SCRAM-SHA-512 user NAME:PASSWORD for a SASL_PLAINTEXT listener; repeatable
    #[arg(long = "scram-user", env = "ORDERFLOW_KAFKA_SCRAM_USERS", value_delimiter = ';', value_parser = parse_user)]
    pub scram_users: Vec<(String, String)>,
    /// Add an SSL listener, with a certificate for 127.0.0.1 from a fresh CA
    #[arg(long, env = "ORDERFLOW_KAFKA_SSL")]
    pub ssl: bool,
}

fn parse_user(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((name, password)) if !name.is_empty() && !password.is_empty() => {
            Ok((name.to_string(), password.to_string()))
        }
        _ => Err(format!("{s:?}: expected NAME:PASSWORD")),
    }
}

pub async fn run(args: KafkaArgs) -> anyhow::Result<()> {
    let spec = Spec {
        port: Some(args.port),
        heap_mb: args.heap_mb,
        scram_users: args.scram_users,
        ssl: args.ssl,
        ..Spec::new(args.nodes.into(), args.dir.clone())
    };
    eprintln!(
        "starting {} Apache Kafka node(s) in {}",
        spec.nodes,
        spec.dir.display()
    );
    let mut cluster = tokio::task::spawn_blocking(move || Cluster::start(&spec))
        .await?
        .context("starting the local Kafka cluster")?;
    println!(
        "Kafka is up: --bootstrap-servers {}",
        cluster.bootstrap_servers()
    );
    if let Some(sasl) = cluster.sasl_bootstrap_servers() {
        println!(
            "SASL/SCRAM-SHA-512: --bootstrap-servers {sasl} -X security.protocol=SASL_PLAINTEXT -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=NAME -X sasl.password=PASSWORD"
        );
    }
    if let (Some(ssl), Some(tls)) = (cluster.ssl_bootstrap_servers(), cluster.tls()) {
        println!(
            "SSL: --bootstrap-servers {ssl} -X security.protocol=SSL -X ssl.ca.location={}",
            tls.ca.display()
        );
    }
    println!(
        "logs: {}/node-N.log; Ctrl-C stops the nodes",
        args.dir.display()
    );
    let shutdown = crate::shutdown::on_signals();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                if let Some((node, status)) = cluster.exited() {
                    anyhow::bail!(
                        "Kafka node {node} exited ({status}); see {}",
                        cluster.log(node - 1).display()
                    );
                }
            }
        }
    }
    tokio::task::spawn_blocking(move || cluster.shutdown()).await?;
    Ok(())
}
