//! The durable store: every order applied exactly once across kill -9, rebalances
//! and replays. Runs on SQLite, and on PostgreSQL too when
//! ORDERFLOW_TEST_POSTGRES_URL is set (each test in a fresh database).

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use orderflow::{
    aggregate::Aggregates,
    order::{Order, random_order},
    processor::{Processor, Report},
    simulated::Simulated,
    store::{Batch, Finished, Status, Store},
};
use rand::RngExt;
use tokio_util::sync::CancellationToken;

/// The bar: the only processor killed (-9) at a random moment ten times,
/// and started again with the same command each time, resumes within seconds
/// (on the embedded broker too, whose group would otherwise be lost with its
/// leader) and every order ends in the store exactly once.
async fn kill_dash_nine_at_random_moments_applies_every_order_exactly_once(broker: Broker) {
    const KILLS: usize = 10;
    const RESUME_SECS: u64 = 15;
    let dir = tempfile::tempdir().unwrap();
    for (n, url) in store_urls(dir.path()).await.into_iter().enumerate() {
        let log = dir.path().join(format!("processors-{n}.log"));
        let env = TestEnv::start(broker, 1).await;
        let store = Store::connect(&url).await.unwrap();
        let mut orders = Vec::new();
        let mut resumed_after = Vec::new();
        for _ in 0..KILLS {
            // Orders arrive while the processor is down and while it runs.
            let batch: Vec<Order> = (0..600).map(|_| random_order()).collect();
            orders.extend(batch.iter().cloned());
            let producing = {
                let producer = env.producer();
                tokio::spawn(async move {
                    for chunk in batch.chunks(100) {
                        producer.produce_orders(chunk).await;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
            };
            let before = all_rows(&store).await.len();
            let started = std::time::Instant::now();
            let child = spawn_processor(&env, &url, &log, &[]);
            wait_for_rows(&store, before + 1, RESUME_SECS, Some(&log)).await;
            resumed_after.push(started.elapsed());
            let wait = rand::rng().random_range(0..1_500);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            child.kill();
            producing.await.unwrap();
        }
        eprintln!("{broker:?} {url}: resumed after {resumed_after:.1?}");
        run_to_end(&env, &url, &log);
        check_store(&store, &orders).await;
    }
}

async fn two_processors_one_killed_on_four_partitions(broker: Broker) {
    let dir = tempfile::tempdir().unwrap();
    for (n, url) in store_urls(dir.path()).await.into_iter().enumerate() {
        let log = |name: &str| dir.path().join(format!("{name}-{n}.log"));
        let env = TestEnv::start(broker, 4).await;
        let orders: Vec<Order> = (0..3_000).map(|_| random_order()).collect();
        // `a` joins first and so leads the group.
        let a = spawn_processor(&env, &url, &log("a"), &[]);
        wait_for_log(&log("a"), "assigned partitions=[0, 1, 2, 3]").await;
        let b = spawn_processor(&env, &url, &log("b"), &[]);
        wait_for_log(&log("b"), "assigned partitions").await;
        env.produce_orders(&orders[..1_500]).await;
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        match broker {
            Broker::Kafka => {
                // Apache Kafka: the leader itself may die, in the middle of its work;
                // once its session times out the survivor takes every partition over
                // from the positions `a` stored, with no new member joining.
                a.kill();
                env.produce_orders(&orders[1_500..]).await;
                wait_for_log_after(&log("b"), "assigned", "assigned partitions=[0, 1, 2, 3]").await;
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                b.kill();
            }
            Broker::Embedded => {
                // Tansu 0.6 loses a group whose leader dies while another member
                // lives, and gives a dead member's partitions to nobody until a new
                // member joins (README, "Limits of the embedded broker"). So here a
                // follower dies, and a new member makes the group rebalance: `b`'s
                // partitions move to `a` and `c`, from the positions `b` stored.
                b.kill();
                env.produce_orders(&orders[1_500..]).await;
                let c = spawn_processor(&env, &url, &log("c"), &[]);
                wait_for_log(&log("c"), "assigned partitions").await;
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                c.kill();
                a.kill();
            }
        }
        run_to_end(&env, &url, &log("final"));
        check_store(&Store::connect(&url).await.unwrap(), &orders).await;
    }
}

/// Runs an in-process processor with the store to the end of the topic.
async fn process_with_store(env: &TestEnv, store: &Arc<Store>, group: &str) -> Report {
    let mut cfg = env.processor_config(10);
    cfg.group = group.to_string();
    let handler = Box::new(Simulated {
        fail_when: Some("price>140".parse().unwrap()),
        fail_attempts: None,
    });
    let drain = CancellationToken::new();
    drain.cancel();
    within(
        120,
        Processor::new(cfg, handler, recorder(&Log::default()))
            .with_store(store.clone())
            .run(CancellationToken::new(), drain),
    )
    .await
    .unwrap()
}

async fn replaying_the_topic_changes_nothing_in_the_store(broker: Broker) {
    let dir = tempfile::tempdir().unwrap();
    for url in store_urls(dir.path()).await {
        let env = TestEnv::start(broker, 2).await;
        let orders: Vec<Order> = (0..400).map(|_| random_order()).collect();
        env.produce_orders(&orders).await;
        let store = Arc::new(Store::connect(&url).await.unwrap());
        let first = process_with_store(&env, &store, &env.group).await;
        let before = all_rows(&store).await;
        let aggregates_before = store.aggregates().await.unwrap();

        // A fresh group reads everything again (as after a group reset).
        let replay = process_with_store(&env, &store, &format!("{}-replay", env.group)).await;
        assert_eq!(
            replay.processed, first.processed,
            "the replay did read everything"
        );
        assert_eq!(before, all_rows(&store).await, "rows unchanged");
        assert_eq!(store.aggregates().await.unwrap(), aggregates_before);
        assert_eq!(
            replay.aggregates, aggregates_before,
            "the processor reports the stored truth"
        );
        check_store(&store, &orders).await;

        // The same group again: the stored offsets say everything is done.
        let again = process_with_store(&env, &store, &env.group).await;
        assert_eq!(again.processed, 0);

        // New orders after a restart: each is handled once, none of the old ones
        // again (a seek to the stored position re-reads what came before it).
        let more: Vec<Order> = (0..50).map(|_| random_order()).collect();
        env.produce_orders(&more).await;
        let next = process_with_store(&env, &store, &env.group).await;
        assert_eq!(
            next.processed + next.dead_lettered,
            50,
            "each new order once: {next:?}"
        );
        check_store(&store, &[orders, more].concat()).await;
    }
}

fn finished(o: &Order, offset: i64) -> Finished {
    Finished {
        id: o.order_id.clone(),
        order: Some(o.clone()),
        status: Status::Processed,
        attempts: 1,
        last_error: None,
        partition: 0,
        offset,
        produced_ms: Some(o.created_at_ms),
        received_ms: o.created_at_ms,
        processed_ms: o.created_at_ms,
        timeline: Vec::new(),
        dead_letter: None,
    }
}

/// What the store promises: a message is applied once. The same message again
/// (a redelivery, a replay) changes nothing; another message reusing an order id
/// is another order: kept, counted, and shown with the first by `orders show`.
/// A message at a position stored before with another id (the topic deleted and
/// made again) is new too.
#[tokio::test]
async fn a_message_is_applied_once_and_a_reused_id_is_another_order() {
    let dir = tempfile::tempdir().unwrap();
    for url in store_urls(dir.path()).await {
        let store = Store::connect(&url).await.unwrap();
        let batch = |finished: Vec<Finished>| Batch {
            group: "g".into(),
            topic: "orders".into(),
            offsets: vec![(0, finished.iter().map(|f| f.offset + 1).max().unwrap())],
            finished,
        };
        let first = random_order();
        let mut reuse = random_order();
        reuse.order_id = first.order_id.clone();
        reuse.product = "reused".into();
        let other = random_order();

        let applied = store
            .apply(&batch(vec![finished(&first, 0)]))
            .await
            .unwrap();
        assert_eq!((applied.inserted, applied.duplicates), (1, 0), "{url}");
        let again = store
            .apply(&batch(vec![finished(&first, 0)]))
            .await
            .unwrap();
        assert_eq!((again.inserted, again.duplicates), (0, 1), "{url}");

        let both = vec![finished(&reuse, 5), finished(&other, 6)];
        let applied = store.apply(&batch(both.clone())).await.unwrap();
        assert_eq!((applied.inserted, applied.duplicates), (2, 0), "{url}");
        let applied = store.apply(&batch(both)).await.unwrap();
        assert_eq!((applied.inserted, applied.duplicates), (0, 2), "{url}");

        // Both in one batch.
        let twin = random_order();
        let mut twin_reuse = random_order();
        twin_reuse.order_id = twin.order_id.clone();
        let applied = store
            .apply(&batch(vec![finished(&twin, 7), finished(&twin_reuse, 8)]))
            .await
            .unwrap();
        assert_eq!((applied.inserted, applied.duplicates), (2, 0), "{url}");

        // The topic made again: offset 0 holds another order.
        let recreated = random_order();
        let applied = store
            .apply(&batch(vec![finished(&recreated, 0)]))
            .await
            .unwrap();
        assert_eq!((applied.inserted, applied.duplicates), (1, 0), "{url}");

        let stats = store.aggregates().await.unwrap();
        assert_eq!(stats.total.orders, 6, "{url}: every message counts once");
        assert_eq!(stats.by_product["reused"].orders, 1, "{url}");
        let found = store.show(&first.order_id).await.unwrap();
        let seen: Vec<(&str, i64)> = found
            .iter()
            .map(|h| (h.order.product.as_str(), h.order.offset))
            .collect();
        assert_eq!(
            seen,
            [(first.product.as_str(), 0), ("reused", 5)],
            "{url}: both orders, oldest first"
        );
        assert_eq!(store.show(&twin.order_id).await.unwrap().len(), 2, "{url}");
        assert!(store.show("no-such-id").await.unwrap().is_empty(), "{url}");
    }
}

/// The store inserts many orders per statement and falls back to one at a time
/// when some were stored before; either way each order counts once.

#[tokio::test]
async fn a_batch_with_orders_stored_before_counts_only_the_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    for url in store_urls(dir.path()).await {
        let store = Store::connect(&url).await.unwrap();
        let orders: Vec<Order> = (0..300).map(|_| random_order()).collect();
        let batch = |finished: Vec<Finished>, next: i64| Batch {
            group: "g".into(),
            topic: "orders".into(),
            finished,
            offsets: vec![(0, next)],
        };
        let early: Vec<Finished> = (0..300)
            .step_by(7)
            .map(|i| finished(&orders[i], i as i64))
            .collect();
        let early_count = early.len();
        let applied = store.apply(&batch(early, 300)).await.unwrap();
        assert_eq!((applied.inserted, applied.duplicates), (early_count, 0));

        // Everything again, with one order twice: only the rest is new.
        let mut all: Vec<Finished> = (0..300).map(|i| finished(&orders[i], i as i64)).collect();
        all.push(finished(&orders[150], 150));
        let applied = store.apply(&batch(all, 301)).await.unwrap();
        assert_eq!(applied.inserted, 300 - early_count, "{url}");
        assert_eq!(applied.duplicates, early_count + 1, "{url}");

        let mut expected = Aggregates::default();
        for o in &orders {
            expected.add(o);
        }
        let stored = store.aggregates().await.unwrap();
        assert_eq!(stored.total.orders, 300);
        assert_eq!(stored.total.units, expected.total.units);
        assert!((stored.total.price_sum - expected.total.price_sum).abs() < 1e-6);
        assert_eq!(all_rows(&store).await.len(), 300);
        assert_eq!(store.offsets("g", "orders").await.unwrap()[&0], 301);

        // 130 new orders: two statements of 64, then two of one.
        let fresh: Vec<Order> = (0..130).map(|_| random_order()).collect();
        let applied = store
            .apply(&batch(
                fresh
                    .iter()
                    .enumerate()
                    .map(|(i, o)| finished(o, 400 + i as i64))
                    .collect(),
                530,
            ))
            .await
            .unwrap();
        assert_eq!((applied.inserted, applied.duplicates), (130, 0));
        assert_eq!(store.aggregates().await.unwrap().total.orders, 430);
    }
}

async fn a_locked_database_pauses_processing_and_nothing_is_lost(broker: Broker) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orders.db");
    let url = format!("sqlite://{}", path.display());
    let env = TestEnv::start(broker, 1).await;
    let store = Arc::new(Store::connect(&url).await.unwrap());
    let first: Vec<Order> = (0..100).map(|_| random_order()).collect();
    env.produce_orders(&first).await;
    let shutdown = CancellationToken::new();
    let processor = tokio::spawn(
        Processor::new(
            env.processor_config(10),
            Box::new(Simulated::default()),
            recorder(&Log::default()),
        )
        .with_store(store.clone())
        .run(shutdown.clone(), CancellationToken::new()),
    );
    wait_for_rows(&store, 100, 90, None).await;

    // Another process holds the write lock for longer than the store waits for it.
    let db = libsql::Builder::new_local(&path).build().await.unwrap();
    let blocker = db.connect().unwrap();
    blocker.execute("BEGIN EXCLUSIVE", ()).await.unwrap();
    let second: Vec<Order> = (0..100).map(|_| random_order()).collect();
    env.produce_orders(&second).await;
    tokio::time::sleep(Duration::from_secs(13)).await;
    assert_eq!(
        all_rows(&store).await.len(),
        100,
        "nothing is written while locked"
    );
    assert!(
        env.committed_offset() <= 100,
        "no offset moves past unstored work"
    );

    blocker.execute("ROLLBACK", ()).await.unwrap();
    wait_for_rows(&store, 200, 90, None).await;
    shutdown.cancel();
    within(60, processor).await.unwrap().unwrap();
    let all: Vec<Order> = first.into_iter().chain(second).collect();
    let aggregates = store.aggregates().await.unwrap();
    assert_eq!(aggregates.total.orders, 200);
    assert_eq!(all_rows(&store).await.len(), all.len());
    assert_eq!(
        env.committed_offset(),
        200,
        "offsets catch up after the outage"
    );
}

/// Backpressure must not take a member out of its group: one whose store is
/// locked keeps polling (its partitions paused), so a member that joins gets its
/// share at once instead of after `max.poll.interval.ms` (5 minutes here).
async fn a_member_whose_store_is_down_still_hands_over_partitions(broker: Broker) {
    let dir = tempfile::tempdir().unwrap();
    let env = TestEnv::start(broker, 2).await;
    let member = |name: &str| {
        let path = dir.path().join(format!("{name}.db"));
        let url = format!("sqlite://{}", path.display());
        (path, url)
    };
    let (a_path, a_url) = member("a");
    let a_store = Arc::new(Store::connect(&a_url).await.unwrap());
    let shutdown = CancellationToken::new();
    let run = |store: Arc<Store>| {
        tokio::spawn(
            Processor::new(
                env.processor_config(10),
                Box::new(Simulated::default()),
                recorder(&Log::default()),
            )
            .with_store(store)
            .run(shutdown.clone(), CancellationToken::new()),
        )
    };
    let a = run(a_store.clone());
    let first: Vec<Order> = (0..200).map(|_| random_order()).collect();
    env.produce_orders(&first).await;
    wait_for_rows(&a_store, 200, 90, None).await;

    let db = libsql::Builder::new_local(&a_path).build().await.unwrap();
    let blocker = db.connect().unwrap();
    blocker.execute("BEGIN EXCLUSIVE", ()).await.unwrap();
    let second: Vec<Order> = (0..2_000).map(|_| random_order()).collect();
    env.produce_orders(&second).await;
    // Long enough for a write to fail on the lock and the member to stop reading.
    tokio::time::sleep(Duration::from_secs(10)).await;

    let (_, b_url) = member("b");
    let b_store = Arc::new(Store::connect(&b_url).await.unwrap());
    let b = run(b_store.clone());
    wait_for_rows(&b_store, 1, 30, None).await;

    blocker.execute("ROLLBACK", ()).await.unwrap();
    shutdown.cancel();
    within(60, a).await.unwrap().unwrap();
    within(60, b).await.unwrap().unwrap();
}

on_both_brokers!(
    kill_dash_nine_at_random_moments_applies_every_order_exactly_once,
    two_processors_one_killed_on_four_partitions,
    replaying_the_topic_changes_nothing_in_the_store,
    a_locked_database_pauses_processing_and_nothing_is_lost,
    a_member_whose_store_is_down_still_hands_over_partitions,
);
