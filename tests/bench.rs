//! `orderflow bench` end to end at a tiny size, so that the harness keeps working.
//! Its figures depend on the machine and are not asserted; the harness itself
//! fails when a stage loses or misses an order.

use std::process::Command;

#[test]
fn a_small_bench_run_prints_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_orderflow"))
        .args([
            "bench",
            "--orders",
            "3000",
            "--latency-orders",
            "300",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("ORDERFLOW_FAIL_WHEN", "price>10")
        .output()
        .expect("orderflow runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stderr}\n{stdout}");
    for id in ["1a", "1b", "2", "3", "4", "4b", "5", "6"] {
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
