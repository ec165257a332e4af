//! Apache Kafka only: orders flow over a SASL_PLAINTEXT listener with SCRAM-SHA-512
//! and over an SSL listener (certificate for 127.0.0.1 from a CA made at test time),
//! and a client with the wrong password or without the CA gets a clear error.

mod common;

use std::{process::Command, sync::OnceLock};

use common::*;
use orderflow::{
    kafka::KafkaConfig,
    local_kafka::{Cluster, Spec},
    order::{Order, random_order},
    simulated::Simulated,
};

const USER: &str = "orders-app";
const PASSWORD: &str = "s3cret-for-tests";

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kafka-security");
        let _ = std::fs::remove_dir_all(&dir);
        let spec = Spec {
            scram_users: vec![(USER.into(), PASSWORD.into())],
            ssl: true,
            ..Spec::new(1, dir)
        };
        Cluster::start(&spec).unwrap_or_else(|e| panic!("Kafka with SASL and SSL: {e}"))
    })
}

fn sasl(password: &str) -> Vec<(String, String)> {
    [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanisms", "SCRAM-SHA-512"),
        ("sasl.username", USER),
        ("sasl.password", password),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn ssl(with_ca: bool) -> Vec<(String, String)> {
    let mut settings = vec![("security.protocol".to_string(), "SSL".to_string())];
    if with_ca {
        let ca = &cluster().tls().expect("an SSL listener").ca;
        settings.push(("ssl.ca.location".into(), ca.display().to_string()));
    }
    settings
}

/// Orders produced and processed through one listener, every one of them.
async fn orders_flow(bootstrap: String, settings: Vec<(String, String)>) {
    let kafka = KafkaConfig {
        overrides: settings,
        ..KafkaConfig::new(bootstrap)
    };
    let env = TestEnv::on_kafka(kafka, 2, 1).await;
    let orders: Vec<Order> = (0..50).map(|_| random_order()).collect();
    env.produce_orders(&orders).await;
    let log = Log::default();
    let report = process_to_end(
        env.processor_config(10),
        Box::new(Simulated::default()),
        &log,
    )
    .await;
    assert_eq!(report.processed, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_flow_over_sasl_scram() {
    let bootstrap = tokio::task::spawn_blocking(|| cluster().sasl_bootstrap_servers())
        .await
        .unwrap()
        .expect("a SASL listener");
    orders_flow(bootstrap, sasl(PASSWORD)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_flow_over_ssl() {
    let bootstrap = tokio::task::spawn_blocking(|| cluster().ssl_bootstrap_servers())
        .await
        .unwrap()
        .expect("an SSL listener");
    orders_flow(bootstrap, ssl(true)).await;
}

/// `orderflow topics create` through a listener, as a user runs it: its exit
/// status and what it says on stderr.
fn topics_create(bootstrap: &str, settings: &[(String, String)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orderflow"));
    cmd.args(["topics", "create", "--bootstrap-servers", bootstrap])
        .args([
            "--topic",
            "security-check",
            "--dlq-topic",
            "security-check_dlq",
        ]);
    for (k, v) in settings {
        cmd.arg("-X").arg(format!("{k}={v}"));
    }
    let out = cmd.output().expect("orderflow runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_wrong_password_or_an_untrusted_certificate_is_refused_with_a_clear_error() {
    let c = cluster();
    let sasl_servers = c.sasl_bootstrap_servers().unwrap();
    let ssl_servers = c.ssl_bootstrap_servers().unwrap();

    let (ok, stderr) = topics_create(&sasl_servers, &sasl("not-the-password"));
    assert!(!ok, "a wrong password must fail");
    assert!(stderr.contains("uthentication"), "{stderr}");
    assert!(
        !stderr.contains("not-the-password"),
        "the password is never printed: {stderr}"
    );

    let (ok, stderr) = topics_create(&ssl_servers, &ssl(false));
    assert!(!ok, "a certificate from an unknown CA must fail");
    assert!(stderr.contains("certificate verify failed"), "{stderr}");

    let (ok, stderr) = topics_create(&sasl_servers, &sasl(PASSWORD));
    assert!(ok, "{stderr}");
}
