//! Apache Kafka only: faults that a three-node cluster survives and the embedded
//! broker cannot show. A broker killed (-9) and restarted while orders flow, and the
//! processors' group leader killed while another member runs.
//!
//! Both tests share one three-node cluster (replication factor 3,
//! `min.insync.replicas=2`) and take turns on it, so that one test's fault does not
//! land in the middle of the other's.

mod common;

use std::{sync::OnceLock, time::Duration};

use common::*;
use orderflow::{
    local_kafka::{Cluster, Spec},
    order::{Order, random_order},
    store::Store,
};
use tokio::sync::{Mutex, MutexGuard};

/// The cluster, started on first use; the guard gives one test at a time the run
/// of it.
async fn cluster() -> MutexGuard<'static, Cluster> {
    static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();
    let cell = tokio::task::block_in_place(|| {
        CLUSTER.get_or_init(|| {
            let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kafka-cluster");
            let _ = std::fs::remove_dir_all(&dir);
            let cluster = Cluster::start(&Spec::new(3, dir))
                .unwrap_or_else(|e| panic!("the three-node Kafka cluster did not start: {e}"));
            Mutex::new(cluster)
        })
    });
    cell.lock().await
}

/// Sends `orders` at about `rate` per second, in slices of a tenth of a second;
/// every one must be delivered.
async fn produce_at(producer: &Producer, orders: &[Order], rate: usize) {
    let slice = (rate / 10).max(1);
    let mut next = tokio::time::Instant::now();
    for chunk in orders.chunks(slice) {
        producer.produce_orders(chunk).await;
        next += Duration::from_millis(100);
        tokio::time::sleep_until(next).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_while_orders_flow_loses_and_repeats_nothing() {
    let mut cluster = cluster().await;
    let env = TestEnv::on_cluster(&cluster, 3, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("orders.db").display());
    let log = dir.path().join("processor.log");
    let orders: Vec<Order> = (0..20_000).map(|_| random_order()).collect();

    let processor = spawn_processor(&env, &url, &log, &[]);
    wait_for_log(&log, "assigned partitions=[0, 1, 2]").await;
    let producing = {
        let (producer, orders) = (env.producer(), orders.clone());
        tokio::spawn(async move { produce_at(&producer, &orders, 2_000).await })
    };
    // Ten seconds of orders: node 2 dies after three and comes back after six.
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.kill(1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| cluster.restart(1)).expect("node 2 restarts");
    producing.await.expect("every order delivered");

    let store = Store::connect(&url).await.unwrap();
    wait_for_rows(&store, orders.len(), 180, Some(&log)).await;
    assert!(
        processor.terminate().success(),
        "the processor stops cleanly"
    );
    check_store(&store, &orders).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_leader_killed_while_another_member_runs_hands_over_its_partitions() {
    let cluster = cluster().await;
    let env = TestEnv::on_cluster(&cluster, 4, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("orders.db").display());
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let orders: Vec<Order> = (0..6_000).map(|_| random_order()).collect();

    // `a` joins first and so leads the group.
    let a = spawn_processor(&env, &url, &log_a, &[]);
    wait_for_log(&log_a, "assigned partitions=[0, 1, 2, 3]").await;
    let b = spawn_processor(&env, &url, &log_b, &[]);
    wait_for_log(&log_b, "assigned partitions").await;
    produce_at(&env.producer(), &orders[..3_000], 2_000).await;
    a.kill();
    produce_at(&env.producer(), &orders[3_000..], 2_000).await;
    // Once the leader's session times out, the survivor is given every partition
    // and finishes the run from where `a` stored its positions.
    wait_for_log_after(&log_b, "assigned", "assigned partitions=[0, 1, 2, 3]").await;
    let store = Store::connect(&url).await.unwrap();
    wait_for_rows(&store, orders.len(), 180, Some(&log_b)).await;
    assert!(b.terminate().success(), "the survivor stops cleanly");
    check_store(&store, &orders).await;
}
