//! Helpers for tests that run the real `orderflow` binary as child processes, and
//! the store's invariants that those tests check.

use std::{
    collections::HashMap,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use orderflow::{
    aggregate::Aggregates,
    order::Order,
    store::{Filter, Store},
};

use super::TestEnv;

/// A child process killed with SIGKILL when dropped, so that a test that fails
/// leaves no process behind.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// SIGKILL, as a crash would.
    pub fn kill(mut self) {
        self.stop();
    }

    /// SIGTERM, and a wait for the process to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: the pid is our own child's, not yet reaped.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        self.0.wait().expect("child waited for")
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `orderflow process` with its log appended to `log`, which a failing
/// test prints.
pub fn spawn_processor(env: &TestEnv, store: &str, log: &Path, extra: &[&str]) -> KillOnDrop {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("processor log file opens");
    Command::new(env!("CARGO_BIN_EXE_orderflow"))
        .args([
            "process",
            "--bootstrap-servers",
            &env.kafka.bootstrap_servers,
            "--store",
            store,
            "--topic",
            &env.topic,
            "--dlq-topic",
            &env.dlq,
            "--group",
            &env.group,
        ])
        .args([
            "--fail-when",
            "price>140",
            "--backoff",
            "30ms",
            "--backoff-max",
            "100ms",
        ])
        // Killed members must leave the group quickly. A rebalance waits for the
        // members it knows to rejoin for up to max.poll.interval.ms (5 minutes by
        // default), longer than these tests allow a run. Tansu holds a joining
        // static member for about 6 s, which a shorter session would expire.
        .args([
            "-C",
            "session.timeout.ms=10000",
            "-C",
            "heartbeat.interval.ms=500",
            "-C",
            "max.poll.interval.ms=15000",
        ])
        .args(extra)
        .env("ORDERFLOW_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(KillOnDrop)
        .expect("orderflow process starts")
}

pub fn run_to_end(env: &TestEnv, store: &str, log: &Path) {
    let mut child = spawn_processor(env, store, log, &["--exit-at-end"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "orderflow process --exit-at-end did not finish within 180 s; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
}

/// Waits until the store holds at least `n` orders; after `secs`, fails, with the
/// log of the processor that was to store them when it has one.
pub async fn wait_for_rows(store: &Store, n: usize, secs: u64, log: Option<&Path>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let have = all_rows(store).await.len();
        if have >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{have} of {n} orders stored after {secs} s{}",
            log.map_or(String::new(), |l| format!(
                "; {} says:\n{}",
                l.display(),
                std::fs::read_to_string(l).unwrap_or_default()
            ))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks the invariants: exactly the produced orders, each finished once, and
/// stored aggregates equal to a recomputation from the rows.
pub async fn check_store(store: &Store, orders: &[Order]) {
    let rows = all_rows(store).await;
    assert_eq!(rows.len(), orders.len(), "one row per produced order");
    let by_id: HashMap<&str, &Order> = orders.iter().map(|o| (o.order_id.as_str(), o)).collect();
    let mut recomputed = Aggregates::default();
    for r in &rows {
        let o = by_id[r.id.as_str()];
        let expect = if o.price.unwrap() > 140.0 {
            "dlq"
        } else {
            "processed"
        };
        assert_eq!(r.status, expect, "{}", r.id);
        if r.status == "processed" {
            recomputed.add(o);
        }
    }
    for r in rows.iter().step_by(7) {
        let found = store.show(&r.id).await.unwrap();
        assert_eq!(found.len(), 1, "one order with id {}", r.id);
        let events = &found[0].events;
        let finals = events
            .iter()
            .filter(|e| e.kind == "processed" || e.kind == "dlq")
            .count();
        assert_eq!(finals, 1, "one final event for {}: {events:?}", r.id);
    }
    let stored = store.aggregates().await.unwrap();
    assert_eq!(stored.total.orders, recomputed.total.orders);
    assert_eq!(stored.total.units, recomputed.total.units);
    assert!((stored.total.price_sum - recomputed.total.price_sum).abs() < 1e-6);
    assert_eq!(stored.total.price_min, recomputed.total.price_min);
    assert_eq!(stored.total.price_max, recomputed.total.price_max);
    assert_eq!(stored.by_product.len(), recomputed.by_product.len());
    for (p, s) in &recomputed.by_product {
        assert_eq!(stored.by_product[p].orders, s.orders, "{p}");
        assert!(
            (stored.by_product[p].price_sum - s.price_sum).abs() < 1e-6,
            "{p}"
        );
    }
}

/// Waits until `needle` appears in a processor's log.
pub async fn wait_for_log(log: &Path, needle: &str) {
    wait_for_log_after(log, "", needle).await
}

/// Waits until `needle` appears in a processor's log after the first line that
/// holds `after`.
pub async fn wait_for_log_after(log: &Path, after: &str, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let from = text.find(after).map(|i| i + after.len());
        if from.is_some_and(|i| text[i..].contains(needle)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{needle:?} not seen in 60 s; {} says:\n{text}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn all_rows(store: &Store) -> Vec<orderflow::store::StoredOrder> {
    store
        .list(&Filter {
            limit: 1_000_000,
            ..Filter::default()
        })
        .await
        .unwrap()
}
