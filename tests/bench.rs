//! `orderflow bench` end to end at a tiny size, on each broker, so that the harness
//! keeps working. Its figures depend on the machine and are not asserted; the
//! harness itself fails when a stage loses or misses an order.

mod common;

use std::process::Command;

use common::*;

async fn a_small_bench_run_prints_every_row(broker: Broker) {
    let (choice, heading) = match broker {
        Broker::Embedded => ("embedded", "broker embedded Tansu"),
        Broker::Kafka => ("kafka", "broker Apache Kafka"),
    };
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orderflow"))
        .args(["bench", "--broker", choice])
        .args(["--orders", "3000", "--latency-orders", "300", "--data-dir"])
        .arg(dir.path())
        .env("ORDERFLOW_FAIL_WHEN", "price>10")
        .output()
        .expect("orderflow runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stderr}\n{stdout}");
    assert!(stdout.contains(heading), "{stdout}");
    for id in ["1a", "1b", "2", "3", "3n", "3c", "4", "4b", "5", "5b", "6"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("| {id} "))),
            "row {id} missing:\n{stdout}"
        );
    }
    // ORDERFLOW_FAIL_WHEN above must not reach the measured processor: run 3
    // processes every order.
    assert!(
        stdout.contains("3: 3000 orders in"),
        "run 3 did not process every order:\n{stdout}"
    );
    assert!(stdout.contains("p99"), "{stdout}");
}

on_both_brokers!(a_small_bench_run_prints_every_row);
