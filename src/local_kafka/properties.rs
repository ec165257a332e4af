//! `server.properties` for one node of a local KRaft cluster: every node is both a
//! broker and a controller, the controllers a static quorum of all nodes.

use std::{fmt::Write, path::Path};

/// The ports one node listens on, all on 127.0.0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub plaintext: u16,
    pub controller: u16,
    pub sasl: Option<u16>,
    pub ssl: Option<u16>,
}

/// What every node of a cluster shares.
pub struct ClusterShape<'a> {
    /// Node ids are 1..=n, in this order.
    pub ports: &'a [Ports],
    /// A PEM file holding the node's private key and certificate, for the SSL listener.
    pub keystore: Option<&'a Path>,
}

pub fn render(shape: &ClusterShape<'_>, id: usize, data_dir: &Path) -> String {
    let n = shape.ports.len();
    let me = shape.ports[id - 1];
    // Replicate everything to every node; with three, a write needs two of them, so
    // one node may be down without losing an acknowledged write or stopping writes.
    let min_isr = n.min(2);
    let mut listeners = vec![
        format!("PLAINTEXT://127.0.0.1:{}", me.plaintext),
        format!("CONTROLLER://127.0.0.1:{}", me.controller),
    ];
    let mut advertised = vec![format!("PLAINTEXT://127.0.0.1:{}", me.plaintext)];
    for (name, port) in [("SASL_PLAINTEXT", me.sasl), ("SSL", me.ssl)] {
        if let Some(p) = port {
            listeners.push(format!("{name}://127.0.0.1:{p}"));
            advertised.push(format!("{name}://127.0.0.1:{p}"));
        }
    }
    let voters: Vec<String> = shape
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@127.0.0.1:{}", i + 1, p.controller))
        .collect();
    let mut s = String::new();
    let mut set = |k: &str, v: &dyn std::fmt::Display| {
        let _ = writeln!(s, "{k}={v}");
    };
    set("process.roles", &"broker,controller");
    set("node.id", &id);
    set("controller.quorum.voters", &voters.join(","));
    set("listeners", &listeners.join(","));
    set("advertised.listeners", &advertised.join(","));
    set("controller.listener.names", &"CONTROLLER");
    set("inter.broker.listener.name", &"PLAINTEXT");
    set(
        "listener.security.protocol.map",
        &"PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL",
    );
    set("log.dirs", &data_dir.display());
    set("auto.create.topics.enable", &false);
    set("default.replication.factor", &n);
    set("min.insync.replicas", &min_isr);
    set("offsets.topic.replication.factor", &n);
    // Fewer than the default 50: every test creates groups, and each new
    // coordinator partition costs a 3-node cluster a round of elections.
    set("offsets.topic.num.partitions", &10);
    set("transaction.state.log.replication.factor", &n);
    set("transaction.state.log.min.isr", &min_isr);
    set("transaction.state.log.num.partitions", &10);
    set("share.coordinator.state.topic.replication.factor", &n);
    set("share.coordinator.state.topic.min.isr", &min_isr);
    set("group.initial.rebalance.delay.ms", &0);
    if me.sasl.is_some() {
        set("sasl.enabled.mechanisms", &"SCRAM-SHA-512");
        set(
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config",
            &"org.apache.kafka.common.security.scram.ScramLoginModule required;",
        );
    }
    if let (Some(_), Some(keystore)) = (me.ssl, shape.keystore) {
        set("ssl.keystore.type", &"PEM");
        set("ssl.keystore.location", &keystore.display());
        set("ssl.client.auth", &"none");
    }
    s
}

/// log4j2 for the brokers: INFO to stdout, which the node's log file receives.
pub const LOG4J2: &str = "\
status = error
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
";

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(base: u16) -> Ports {
        Ports {
            plaintext: base,
            controller: base + 1,
            sasl: None,
            ssl: None,
        }
    }

    #[test]
    fn three_nodes_replicate_to_all_and_need_two_in_sync() {
        let all = [ports(10), ports(20), ports(30)];
        let shape = ClusterShape {
            ports: &all,
            keystore: None,
        };
        let p = render(&shape, 2, Path::new("/d"));
        assert!(p.contains("node.id=2\n"));
        assert!(
            p.contains("controller.quorum.voters=1@127.0.0.1:11,2@127.0.0.1:21,3@127.0.0.1:31\n")
        );
        assert!(p.contains("listeners=PLAINTEXT://127.0.0.1:20,CONTROLLER://127.0.0.1:21\n"));
        assert!(p.contains("offsets.topic.replication.factor=3\n"));
        assert!(p.contains("min.insync.replicas=2\n"));
        assert!(p.contains("transaction.state.log.min.isr=2\n"));
        assert!(!p.contains("sasl.enabled"));
    }

    #[test]
    fn one_node_with_sasl_and_ssl_listeners() {
        let all = [Ports {
            sasl: Some(12),
            ssl: Some(13),
            ..ports(10)
        }];
        let shape = ClusterShape {
            ports: &all,
            keystore: Some(Path::new("/k.pem")),
        };
        let p = render(&shape, 1, Path::new("/d"));
        assert!(p.contains("min.insync.replicas=1\n"));
        assert!(p.contains(
            "advertised.listeners=PLAINTEXT://127.0.0.1:10,SASL_PLAINTEXT://127.0.0.1:12,SSL://127.0.0.1:13\n"
        ));
        assert!(p.contains("sasl.enabled.mechanisms=SCRAM-SHA-512\n"));
        assert!(p.contains("ssl.keystore.location=/k.pem\n"));
    }
}
