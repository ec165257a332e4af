//! A local Apache Kafka cluster without Docker: KRaft nodes run as child processes
//! from the broker runtime that Maven fetches (see [`runtime`]). The reference broker
//! of the tests and the bench, and `orderflow kafka` for users with Java and Maven.
//!
//! Every node is a broker and a controller; the controllers form a static quorum of
//! all nodes. One node, or three with replication factor 3 and
//! `min.insync.replicas=2`. Optional SASL_PLAINTEXT (SCRAM-SHA-512) and SSL listeners.

mod properties;
pub mod runtime;
mod spawn;
pub mod tls;

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::Engine;
use rdkafka::{
    ClientContext,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
};

pub use properties::Ports;
use properties::{ClusterShape, LOG4J2};
pub use runtime::Runtime;
pub use tls::Tls;

use crate::kafka::KafkaConfig;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{tool}` is not available: {hint}")]
    MissingTool {
        tool: &'static str,
        hint: &'static str,
    },
    #[error(
        "Apache Kafka 4.1 needs Java 17 or newer, found: {0}; install openjdk-17-jre-headless or set JAVA_HOME"
    )]
    OldJava(String),
    #[error("fetching the Kafka runtime from Maven Central failed:\n{0}")]
    Fetch(String),
    #[error("making the SSL listener's certificates failed: {0}")]
    Tls(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("formatting the storage of Kafka node {node} failed:\n{output}")]
    Format { node: usize, output: String },
    #[error("Kafka node {node} exited while starting ({status}); the end of {log}:\n{tail}")]
    Exited {
        node: usize,
        status: std::process::ExitStatus,
        log: PathBuf,
        tail: String,
    },
    #[error("Kafka node {node} was not ready within {secs} s; the end of {log}:\n{tail}")]
    NotReady {
        node: usize,
        secs: u64,
        log: PathBuf,
        tail: String,
    },
    #[error("cannot find a free port on 127.0.0.1: {0}")]
    Port(std::io::Error),
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Spec {
    /// 1 or 3 (any number works; replication follows it, up to three).
    pub nodes: usize,
    /// The cluster's directory: data, configuration and one log per node. Started
    /// afresh unless it holds a formatted cluster of the same shape.
    pub dir: PathBuf,
    /// The first node's PLAINTEXT port (the others follow by twos, with each node's
    /// controller port after its own); `None` picks free ports.
    pub port: Option<u16>,
    /// `-Xmx` of each node, in MiB.
    pub heap_mb: u32,
    /// SCRAM-SHA-512 users (name, password); a SASL_PLAINTEXT listener when any.
    pub scram_users: Vec<(String, String)>,
    /// An SSL listener with a certificate for 127.0.0.1 signed by a fresh CA.
    pub ssl: bool,
}

impl Spec {
    pub fn new(nodes: usize, dir: impl Into<PathBuf>) -> Spec {
        Spec {
            nodes,
            dir: dir.into(),
            port: None,
            heap_mb: 512,
            scram_users: Vec::new(),
            ssl: false,
        }
    }
}

struct Node {
    id: usize,
    ports: Ports,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running cluster. Dropping it kills its nodes; the nodes die with this process
/// in any case.
pub struct Cluster {
    runtime: Runtime,
    nodes: Vec<Node>,
    log4j: PathBuf,
    heap_mb: u32,
    tls: Option<Tls>,
}

impl Cluster {
    /// Fetches the runtime if needed, formats the nodes' storage and starts them;
    /// returns once every node serves metadata listing all of them.
    pub fn start(spec: &Spec) -> Result<Cluster, Error> {
        let runtime = Runtime::ensure()?;
        let ports = node_ports(spec)?;
        std::fs::create_dir_all(&spec.dir).map_err(|e| Error::io(&spec.dir, e))?;
        let tls = if spec.ssl {
            Some(tls::make(&spec.dir.join("tls"))?)
        } else {
            None
        };
        let log4j = spec.dir.join("log4j2.properties");
        std::fs::write(&log4j, LOG4J2).map_err(|e| Error::io(&log4j, e))?;
        let shape = ClusterShape {
            ports: &ports,
            keystore: tls.as_ref().map(|t| t.keystore.as_path()),
        };
        let cluster_id = new_cluster_id();
        let nodes: Vec<Node> = (1..=spec.nodes)
            .map(|id| Node {
                id,
                ports: ports[id - 1],
                config: spec.dir.join(format!("node-{id}.properties")),
                log: spec.dir.join(format!("node-{id}.log")),
                child: None,
            })
            .collect();
        let data = |id: usize| spec.dir.join(format!("node-{id}"));
        let texts: Vec<String> = nodes
            .iter()
            .map(|n| properties::render(&shape, n.id, &data(n.id)))
            .collect();
        // A cluster formatted before with the same configuration keeps its data
        // (`orderflow kafka` on fixed ports); anything else starts afresh, all nodes
        // with one new cluster id.
        let formatted = nodes.iter().zip(&texts).all(|(n, text)| {
            data(n.id).join("meta.properties").exists()
                && std::fs::read_to_string(&n.config).is_ok_and(|old| old == *text)
        });
        if !formatted {
            for (n, text) in nodes.iter().zip(&texts) {
                let _ = std::fs::remove_dir_all(data(n.id));
                std::fs::write(&n.config, text).map_err(|e| Error::io(&n.config, e))?;
                format_storage(&runtime, n.id, &n.config, &cluster_id, &spec.scram_users)?;
            }
        }
        let mut cluster = Cluster {
            runtime,
            nodes,
            log4j,
            heap_mb: spec.heap_mb,
            tls,
        };
        for i in 0..cluster.nodes.len() {
            cluster.launch(i)?;
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_ready(i, cluster.nodes.len())?;
        }
        Ok(cluster)
    }

    /// The PLAINTEXT bootstrap list of all nodes.
    pub fn bootstrap_servers(&self) -> String {
        self.list(|p| Some(p.plaintext))
    }

    /// The SASL_PLAINTEXT bootstrap list, when the cluster has SCRAM users.
    pub fn sasl_bootstrap_servers(&self) -> Option<String> {
        self.nodes[0].ports.sasl.map(|_| self.list(|p| p.sasl))
    }

    /// The SSL bootstrap list, when the cluster has an SSL listener.
    pub fn ssl_bootstrap_servers(&self) -> Option<String> {
        self.nodes[0].ports.ssl.map(|_| self.list(|p| p.ssl))
    }

    /// The certificate files of the SSL listener.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// Client settings for the PLAINTEXT listener.
    pub fn kafka_config(&self) -> KafkaConfig {
        KafkaConfig::new(self.bootstrap_servers())
    }

    /// Where node `i` (0-based) logs.
    pub fn log(&self, i: usize) -> &Path {
        &self.nodes[i].log
    }

    fn list(&self, port: impl Fn(&Ports) -> Option<u16>) -> String {
        self.nodes
            .iter()
            .filter_map(|n| port(&n.ports))
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL to node `i`, as a crash would.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM to node `i` and a wait for its controlled shutdown (SIGKILL after 60 s).
    pub fn stop(&mut self, i: usize) {
        let Some(mut child) = self.nodes[i].child.take() else {
            return;
        };
        // SAFETY: the pid is our own child's, not yet reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts node `i` again on its ports and data, once stopped or killed; returns
    /// when it serves metadata that lists itself.
    pub fn restart(&mut self, i: usize) -> Result<(), Error> {
        if self.nodes[i].child.is_none() {
            self.launch(i)?;
        }
        self.wait_ready(i, 1)
    }

    /// Stops every node, controlled, one at a time.
    pub fn shutdown(mut self) {
        for i in (0..self.nodes.len()).rev() {
            self.stop(i);
        }
    }

    /// Whether any node has exited by itself, and how.
    pub fn exited(&mut self) -> Option<(usize, std::process::ExitStatus)> {
        self.nodes.iter_mut().find_map(|n| {
            let status = n.child.as_mut()?.try_wait().ok()??;
            Some((n.id, status))
        })
    }

    fn launch(&mut self, i: usize) -> Result<(), Error> {
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| Error::io(&node.log, e))?;
        let err = log.try_clone().map_err(|e| Error::io(&node.log, e))?;
        let mut cmd = Command::new(&self.runtime.java);
        cmd.arg(format!("-Xmx{}m", self.heap_mb))
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.log4j.display()
            ))
            .arg("-cp")
            .arg(self.runtime.classpath())
            .arg("kafka.Kafka")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        let child = spawn::spawn_tied(cmd).map_err(|e| Error::io(&self.runtime.java, e))?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// Waits until node `i` answers a metadata request, made to it alone, that lists
    /// itself and at least `brokers` brokers.
    fn wait_ready(&mut self, i: usize, brokers: usize) -> Result<(), Error> {
        let secs = 120;
        let deadline = Instant::now() + Duration::from_secs(secs);
        let (id, port, log) = {
            let n = &self.nodes[i];
            (n.id, n.ports.plaintext, n.log.clone())
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut client: Option<BaseConsumer<Quiet>> = None;
        loop {
            if let Some(child) = self.nodes[i].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.nodes[i].child = None;
                return Err(Error::Exited {
                    node: id,
                    status,
                    log: log.clone(),
                    tail: tail(&log),
                });
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    node: id,
                    secs,
                    log: log.clone(),
                    tail: tail(&log),
                });
            }
            // Connect by hand first: librdkafka would log every refused attempt.
            if client.is_none() && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            {
                client = KafkaConfig::new(addr.to_string())
                    .client_config(&[("group.id", "orderflow-local-kafka")])
                    .create_with_context(Quiet)
                    .ok();
            }
            if let Some(c) = &client
                && let Ok(m) = c.fetch_metadata(None, Duration::from_secs(2))
                && m.brokers().len() >= brokers
                && m.brokers().iter().any(|b| b.id() as usize == id)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// A client context that keeps librdkafka's complaints about a starting broker to
/// the debug log.
struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "waiting for a Kafka node");
    }
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

/// A random cluster id as Kafka writes them (URL-safe base64 of 16 bytes), never one
/// that starts with '-': StorageTool's argument parser would read that as an option
/// (Kafka's own `Uuid.randomUuid` skips those too).
fn new_cluster_id() -> String {
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn format_storage(
    runtime: &Runtime,
    id: usize,
    config: &Path,
    cluster_id: &str,
    scram_users: &[(String, String)],
) -> Result<(), Error> {
    let mut cmd = Command::new(&runtime.java);
    cmd.arg("-Xmx256m")
        .arg("-cp")
        .arg(runtime.classpath())
        .args(["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c"])
        .arg(config);
    for (name, password) in scram_users {
        cmd.arg("--add-scram")
            .arg(format!("SCRAM-SHA-512=[name={name},password={password}]"));
    }
    let out = cmd.output().map_err(|e| Error::io(&runtime.java, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Format {
            node: id,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

fn node_ports(spec: &Spec) -> Result<Vec<Ports>, Error> {
    let mut taken = Vec::new();
    let mut port = |fixed: Option<u16>| -> Result<u16, Error> {
        match fixed {
            Some(p) => Ok(p),
            None => {
                // Held until every port is chosen, so that no two are the same.
                let l = TcpListener::bind("127.0.0.1:0").map_err(Error::Port)?;
                let p = l.local_addr().map_err(Error::Port)?.port();
                taken.push(l);
                Ok(p)
            }
        }
    };
    let sasl = !spec.scram_users.is_empty();
    // Fixed ports: node i (0-based) gets base+2i and base+2i+1; the optional
    // listeners follow all nodes' pairs.
    let n = spec.nodes as u16;
    let fixed = |k: u16| spec.port.map(|b| b + k);
    (0..n)
        .map(|i| {
            Ok(Ports {
                plaintext: port(fixed(2 * i))?,
                controller: port(fixed(2 * i + 1))?,
                sasl: if sasl {
                    Some(port(fixed(2 * n + i))?)
                } else {
                    None
                },
                ssl: if spec.ssl {
                    Some(port(fixed(3 * n + i))?)
                } else {
                    None
                },
            })
        })
        .collect()
}

/// The last lines of a node's log, for an error message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_ids_are_never_read_as_options() {
        // One id in 64 would start with '-' if nothing prevented it.
        for _ in 0..2_000 {
            let id = super::new_cluster_id();
            assert_eq!(id.len(), 22, "{id}");
            assert!(!id.starts_with('-'), "{id}");
        }
    }
}
