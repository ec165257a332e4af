//! The embedded Kafka-compatible broker (Tansu) for demos, local runs and tests.
//!
//! It speaks the Kafka wire protocol, so everything else in orderflow talks to it
//! exactly as it would to an Apache Kafka cluster.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Component, Path, PathBuf},
    time::Duration,
};

use tansu_broker::{NODE_ID, broker::Broker, coordinator::group::administrator::Controller};
use tansu_storage::StorageContainer;
use tokio::task::JoinHandle;
use url::Url;

use crate::kafka::KafkaConfig;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create the broker data directory {dir}: {source}")]
    DataDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot bind {addr}: {source}; is another broker already listening there?")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("embedded broker failed to start: {0}")]
    Start(String),
    #[error("embedded broker did not accept connections on {0} within 30 s")]
    NotReady(SocketAddr),
}

/// librdkafka settings for consumers of this broker. Tansu 0.6 holds every fetch
/// for the whole `fetch.wait.max.ms`, even when data is waiting (its fetch loop
/// sleeps before it checks whether it has enough), so librdkafka's default of
/// 500 ms would add 250-500 ms to every message's way through.
pub const CONSUMER_SETTINGS: &[(&str, &str)] = &[("fetch.wait.max.ms", "10")];

/// A running embedded broker. Dropping it stops the broker.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    task: JoinHandle<()>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl EmbeddedBroker {
    /// Starts a broker listening on `addr` (port 0 picks a free port) and storing its
    /// log in SQLite under `data_dir`, which survives restarts.
    pub async fn start(addr: SocketAddr, data_dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::DataDir {
            dir: data_dir.to_path_buf(),
            source,
        })?;
        let addr = resolve_port(addr)?;
        let storage = storage_url(&data_dir.join("broker.db")).map_err(|e| Error::DataDir {
            dir: data_dir.to_path_buf(),
            source: e,
        })?;
        let endpoint =
            Url::parse(&format!("tcp://{addr}")).expect("a socket address makes a valid URL");

        // The broker gets a runtime of its own: clients make blocking librdkafka
        // calls (sync commits, closing a consumer) that must never starve it, as
        // they could if it shared worker threads with them.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("embedded-broker")
            .enable_all()
            .build()
            .map_err(|e| Error::Start(format!("cannot start the broker runtime: {e}")))?;
        let (ready, built) = tokio::sync::oneshot::channel();
        let task = runtime.spawn(async move {
            let broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
                .node_id(NODE_ID)
                .cluster_id("orderflow")
                .incarnation_id(uuid::Uuid::new_v4())
                .advertised_listener(endpoint.clone())
                .storage(storage)
                .listener(endpoint)
                .silent(true)
                .build()
                .await;
            match broker {
                Ok(mut broker) => {
                    let _ = ready.send(Ok(()));
                    if let Err(e) = broker.serve(tokio::time::Instant::now()).await {
                        tracing::error!(error = ?e, "embedded broker stopped");
                    }
                }
                Err(e) => {
                    let _ = ready.send(Err(format!("{e:?}")));
                }
            }
        });
        let broker = EmbeddedBroker {
            addr,
            task,
            runtime: Some(runtime),
        };
        built
            .await
            .map_err(|_| Error::Start("the broker task ended while starting".into()))?
            .map_err(Error::Start)?;

        let started = tokio::time::Instant::now();
        loop {
            if broker.task.is_finished() {
                return Err(Error::Start(format!(
                    "the broker stopped at once; see the log above ({addr})"
                )));
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(Error::NotReady(addr));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        index_headers(&data_dir.join("broker.db")).await?;
        Ok(broker)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bootstrap list clients should use.
    pub fn bootstrap_servers(&self) -> String {
        self.addr.to_string()
    }

    /// A client configuration for this broker: [`CONSUMER_SETTINGS`], then
    /// `consumer` settings, for consumers; `overrides` (which win) for all.
    pub fn kafka_config(
        &self,
        consumer: &[(String, String)],
        overrides: &[(String, String)],
    ) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: self.bootstrap_servers(),
            consumer_settings: CONSUMER_SETTINGS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .chain(consumer.iter().cloned())
                .collect(),
            overrides: overrides.to_vec(),
        }
    }

    /// Resolves when the broker task ends (it only does on failure).
    pub async fn stopped(&mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        // Tansu 0.6 has no stop handle; aborting the task closes its listener and storage.
        self.task.abort();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Tansu 0.6 reads a fetched record's headers with no index on them, so every
/// fetch scans every header ever written. DLQ records carry provenance headers:
/// as the DLQ grew, each fetch grew slower until the broker starved its group
/// coordinator. We own this storage file, so we add the index it lacks.
async fn index_headers(db: &Path) -> Result<(), Error> {
    let failed = |e: libsql::Error| {
        Error::Start(format!("indexing record headers in {}: {e}", db.display()))
    };
    let database = libsql::Builder::new_local(db)
        .build()
        .await
        .map_err(failed)?;
    let conn = database.connect().map_err(failed)?;
    conn.query("PRAGMA busy_timeout = 10000", ())
        .await
        .map_err(failed)?;
    conn.execute(
        "CREATE INDEX IF NOT EXISTS orderflow_header_record ON header (topition, offset_id)",
        (),
    )
    .await
    .map_err(failed)?;
    Ok(())
}

/// Tansu binds the exact port it is given, so port 0 is resolved here first; a
/// taken port is reported now, before anything connects to whoever holds it.
fn resolve_port(addr: SocketAddr) -> Result<SocketAddr, Error> {
    let l = TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
    l.local_addr()
        .map_err(|source| Error::Bind { addr, source })
}

/// Tansu's SQLite engine joins the URL's host and path onto the working directory,
/// even for `sqlite:///abs`. An opaque `sqlite:REL` URL keeps a relative path
/// verbatim, so an absolute data file is reached from the working directory by
/// climbing to the root first.
fn storage_url(db: &Path) -> std::io::Result<Url> {
    let db = std::path::absolute(db)?;
    let cwd = std::env::current_dir()?;
    let mut rel = PathBuf::new();
    for _ in cwd
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
    {
        rel.push("..");
    }
    rel.push(db.strip_prefix("/").unwrap_or(&db));
    Url::parse(&format!("sqlite:{}", rel.display()))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_url_reaches_an_absolute_path_from_the_working_directory() {
        let url = storage_url(Path::new("/tmp/x/broker.db")).unwrap();
        assert_eq!(url.scheme(), "sqlite");
        assert_eq!(url.domain(), None);
        let joined = std::env::current_dir().unwrap().join(url.path());
        let resolved: PathBuf = joined.components().fold(PathBuf::new(), |mut p, c| {
            match c {
                Component::ParentDir => {
                    p.pop();
                }
                c => p.push(c),
            }
            p
        });
        assert_eq!(resolved, Path::new("/tmp/x/broker.db"));
    }
}
