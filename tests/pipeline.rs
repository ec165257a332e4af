//! End-to-end tests of the pipeline over the Kafka protocol, each against its own
//! embedded broker.

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use orderflow::{
    codec::{Format, avro, json},
    dlq::record,
    order::{Order, random_order},
    processor::{Failure, Handler, Processor},
    simulated::Simulated,
};
use tokio_util::sync::CancellationToken;

fn fail_over_100() -> Box<Simulated> {
    Box::new(Simulated {
        fail_when: Some("price>100".parse().unwrap()),
        fail_attempts: None,
    })
}

async fn every_order_is_processed_once_and_failures_reach_the_dlq_after_max_attempts(
    broker: Broker,
) {
    let env = TestEnv::start(broker, 1).await;
    let orders: Vec<Order> = (0..150).map(|_| random_order()).collect();
    env.produce_orders(&orders).await;

    let log = Log::default();
    let report = process_to_end(env.processor_config(20), fail_over_100(), &log).await;

    let good: Vec<&Order> = orders
        .iter()
        .filter(|o| o.price.unwrap() <= 100.0)
        .collect();
    let bad: HashSet<&str> = orders
        .iter()
        .filter(|o| o.price.unwrap() > 100.0)
        .map(|o| o.order_id.as_str())
        .collect();
    assert!(
        !good.is_empty() && !bad.is_empty(),
        "random prices span both sides of 100"
    );

    let seen = log.lock().unwrap().clone();
    let mut processed: HashMap<&str, usize> = HashMap::new();
    for s in &seen {
        if let Seen::Processed { id, .. } = s {
            *processed.entry(id).or_default() += 1;
        }
    }
    assert_eq!(processed.len(), good.len());
    assert!(
        processed.values().all(|&n| n == 1),
        "each order processed exactly once"
    );
    assert!(
        good.iter()
            .all(|o| processed.contains_key(o.order_id.as_str()))
    );

    let mean = good.iter().map(|o| o.price.unwrap()).sum::<f64>() / good.len() as f64;
    let avg = report.aggregates.total.avg().unwrap();
    assert!((avg - mean).abs() < 1e-9, "avg {avg} vs mean {mean}");
    assert_eq!(report.processed as usize, good.len());
    assert_eq!(report.dead_lettered as usize, bad.len());

    // Each failing order: attempts 1..=3 failed, then the DLQ.
    for id in &bad {
        let attempts: Vec<u32> = seen
            .iter()
            .filter_map(|s| match s {
                Seen::Failed { id: i, attempt } if i == id => Some(*attempt),
                _ => None,
            })
            .collect();
        assert_eq!(attempts, [1, 2, 3], "{id}");
    }

    let dlq = env.read_dlq().await;
    assert_eq!(dlq.len(), bad.len());
    for e in &dlq {
        let v = e.value.as_ref().expect("a DLQ record");
        let id = v.failed_order.as_ref().unwrap()["orderId"]
            .as_str()
            .unwrap();
        assert!(bad.contains(id));
        assert_eq!(
            e.key.as_deref(),
            Some(id.as_bytes()),
            "key is the original key"
        );
        assert_eq!(v.reason, "Simulated error: high price");
        let h = &e.headers;
        assert_eq!(h[record::H_ATTEMPTS], "3");
        assert_eq!(h[record::H_KIND], "transient");
        assert_eq!(h[record::H_TOPIC], env.topic);
        assert_eq!(h[record::H_PARTITION], "0");
        assert_eq!(h[record::H_GROUP], env.group);
        let offset: i64 = h[record::H_OFFSET].parse().unwrap();
        let pos = orders.iter().position(|o| o.order_id == id).unwrap();
        assert_eq!(offset, pos as i64, "original offset");
        assert!(h[record::H_TIMESTAMP].parse::<i64>().unwrap() > 0);
        let first = humantime::parse_rfc3339(&h[record::H_FIRST_FAILURE]).unwrap();
        let last = humantime::parse_rfc3339(&h[record::H_LAST_FAILURE]).unwrap();
        assert!(last > first, "three attempts with backoff between them");
    }
}

async fn bad_messages_go_to_the_dlq_at_once_and_processing_continues(broker: Broker) {
    let env = TestEnv::start(broker, 1).await;
    let valid = random_order();
    let truncated = avro::Writer::new().encode(&valid);
    let invalid = Order {
        quantity: 0,
        ..random_order()
    };
    let garbage = vec![0xff, 0x00, 0x13, 0x37];
    let messages = vec![
        (None, Vec::new()),
        (Some(b"g".to_vec()), garbage.clone()),
        (
            Some(b"t".to_vec()),
            truncated[..truncated.len() - 3].to_vec(),
        ),
        (Some(b"j".to_vec()), b"{\"order_id\": 1".to_vec()),
        (
            Some(invalid.order_id.clone().into_bytes()),
            avro::Writer::new().encode(&invalid),
        ),
        (
            Some(valid.order_id.clone().into_bytes()),
            avro::Writer::new().encode(&valid),
        ),
    ];
    env.produce_raw(messages).await;

    let log = Log::default();
    let report = process_to_end(env.processor_config(1_000), fail_over_100(), &log).await;
    let valid_fails = valid.price.unwrap() > 100.0;
    assert_eq!(report.dead_lettered, if valid_fails { 6 } else { 5 });

    let dlq = env.read_dlq().await;
    let permanent: Vec<_> = dlq
        .iter()
        .filter(|e| e.headers[record::H_KIND] == "permanent")
        .collect();
    assert_eq!(permanent.len(), 5);
    for e in &permanent {
        assert_eq!(
            e.headers[record::H_ATTEMPTS],
            "1",
            "permanent errors are not retried"
        );
    }
    let garbage_event = permanent
        .iter()
        .find(|e| e.key.as_deref() == Some(b"g"))
        .unwrap();
    let v = garbage_event.value.as_ref().unwrap();
    assert!(v.failed_order.is_none());
    assert_eq!(
        v.original_bytes().unwrap(),
        garbage,
        "undecodable bytes are kept"
    );
    assert!(v.reason.starts_with("undecodable message"), "{}", v.reason);
    let invalid_event = permanent
        .iter()
        .find(|e| e.key.as_deref() == Some(invalid.order_id.as_bytes()))
        .unwrap();
    assert!(
        invalid_event
            .value
            .as_ref()
            .unwrap()
            .reason
            .contains("quantity 0")
    );
    assert!(invalid_event.value.as_ref().unwrap().failed_order.is_some());
    let empty = permanent.iter().find(|e| e.key.is_none()).unwrap();
    assert_eq!(
        empty.value.as_ref().unwrap().reason,
        "undecodable message: empty message"
    );

    if !valid_fails {
        assert!(
            log.lock()
                .unwrap()
                .iter()
                .any(|s| matches!(s, Seen::Processed { id, .. } if *id == valid.order_id))
        );
    }
}

async fn a_retrying_order_does_not_block_other_keys(broker: Broker) {
    let env = TestEnv::start(broker, 1).await;
    let failing = order_with_price(120.0);
    let mut orders = vec![failing.clone()];
    orders.extend((0..99).map(|i| order_with_price(10.0 + f64::from(i) * 0.5)));
    env.produce_orders(&orders).await;

    let log = Log::default();
    let mut cfg = env.processor_config(2_000);
    cfg.backoff.max = Duration::from_secs(4);
    process_to_end(cfg, fail_over_100(), &log).await;

    let seen = log.lock().unwrap().clone();
    let dead_at = seen
        .iter()
        .position(|s| matches!(s, Seen::Dead { id, .. } if *id == failing.order_id))
        .expect("the failing order reached the DLQ");
    let processed_before = seen[..dead_at]
        .iter()
        .filter(|s| matches!(s, Seen::Processed { .. }))
        .count();
    assert_eq!(
        processed_before, 99,
        "all other orders went past the waiting one"
    );
    let Seen::Dead {
        at: dead_time,
        attempts,
        ..
    } = &seen[dead_at]
    else {
        unreachable!()
    };
    assert_eq!(*attempts, 3);
    let last_processed = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Processed { at, .. } => Some(*at),
            _ => None,
        })
        .max()
        .unwrap();
    assert!(
        *dead_time - last_processed >= Duration::from_secs(1),
        "the others finished while the failing order was still backing off"
    );
}

/// Fails the first attempt of the given orders.
struct FailFirstAttempt(HashSet<String>);

impl Handler for FailFirstAttempt {
    fn handle(&mut self, order: &Order, attempt: u32) -> Result<(), Failure> {
        if attempt == 1 && self.0.contains(&order.order_id) {
            Err(Failure::Transient("first attempt fails".into()))
        } else {
            Ok(())
        }
    }
}

async fn orders_with_one_key_stay_in_order_behind_a_retry(broker: Broker) {
    let env = TestEnv::start(broker, 1).await;
    let first = random_order();
    let second = random_order();
    let other = random_order();
    let w = avro::Writer::new();
    env.produce_raw(vec![
        (Some(b"customer-7".to_vec()), w.encode(&first)),
        (Some(b"customer-7".to_vec()), w.encode(&second)),
        (Some(b"customer-9".to_vec()), w.encode(&other)),
    ])
    .await;

    let log = Log::default();
    process_to_end(
        env.processor_config(500),
        Box::new(FailFirstAttempt(HashSet::from([first.order_id.clone()]))),
        &log,
    )
    .await;
    let order: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|s| matches!(s, Seen::Processed { .. }))
        .map(|s| s.id().to_string())
        .collect();
    assert_eq!(order, [other.order_id, first.order_id, second.order_id]);
}

async fn a_crashed_processor_loses_nothing_on_restart(broker: Broker) {
    let env = TestEnv::start(broker, 1).await;
    let orders: Vec<Order> = (0..400).map(|_| random_order()).collect();
    env.produce_orders(&orders).await;

    // First run: killed (task aborted, no shutdown, no final commit) after 150 orders,
    // while failing orders are still waiting for their retries.
    let log = Log::default();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let counter = Arc::new(Mutex::new(0usize));
    let observer = {
        let (log, counter) = (log.clone(), counter.clone());
        let mut inner = recorder(&log);
        Box::new(move |e: &orderflow::processor::Event<'_>| {
            inner.on_event(e);
            let mut n = counter.lock().unwrap();
            *n += 1;
            if *n == 150 {
                let _ = tx.send(());
            }
        })
    };
    let first_run = tokio::spawn(
        Processor::new(env.processor_config(1_000), fail_over_100(), observer)
            .run(CancellationToken::new(), CancellationToken::new()),
    );
    within(60, rx.recv()).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // let a periodic commit happen
    first_run.abort();
    let _ = first_run.await;
    let after_crash = log.lock().unwrap().len();

    // Second run, same group, to the end.
    process_to_end(env.processor_config(20), fail_over_100(), &log).await;

    let seen = log.lock().unwrap().clone();
    assert!(seen.len() > after_crash, "the restart did more work");
    let finished: HashSet<&str> = seen
        .iter()
        .filter(|s| matches!(s, Seen::Processed { .. } | Seen::Dead { .. }))
        .map(Seen::id)
        .collect();
    let missing: Vec<&str> = orders
        .iter()
        .map(|o| o.order_id.as_str())
        .filter(|id| !finished.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "orders lost across the crash: {missing:?}"
    );
}

async fn seed_formats_flow_through_the_processor(broker: Broker) {
    let env = TestEnv::start(broker, 1).await;
    let a = order_with_price(45.67);
    let b = random_order();
    env.produce_raw(vec![
        (
            Some(a.order_id.clone().into_bytes()),
            avro::encode_seed_datum(&a),
        ),
        (Some(b.order_id.clone().into_bytes()), json::encode(&b)),
    ])
    .await;
    let log = Log::default();
    let report = process_to_end(
        env.processor_config(100),
        Box::new(Simulated::default()),
        &log,
    )
    .await;
    let seen = log.lock().unwrap().clone();
    assert!(
        matches!(&seen[0], Seen::Processed { id, format: Format::SeedAvro, price: Some(p), .. } if *id == a.order_id && *p == 45.67)
    );
    assert!(
        matches!(&seen[1], Seen::Processed { id, format: Format::Json, price: None, .. } if *id == b.order_id)
    );
    assert_eq!(report.aggregates.total.orders, 2);
    assert_eq!(report.aggregates.total.avg(), Some(45.67));
}

/// Other producers' worst: each is dead-lettered with a reason, the valid order
/// after them is processed, and the group's commit reaches the partition's end.
async fn poison_pills_of_every_kind_are_dead_lettered_and_commits_reach_the_end(broker: Broker) {
    use rand::RngExt as _;
    let env = TestEnv::start(broker, 1).await;
    let avro = avro::Writer::new();
    let framing = avro.encode(&random_order())[..10].to_vec();
    let mut huge = vec![0u8; 800_000];
    rand::rng().fill(&mut huge[..]);
    // The order id's length as an Avro long (zig-zag varint): 10 MB that never come.
    let mut ten_mb_prefix = framing.clone();
    let mut n = 20_000_000u64;
    while n >= 0x80 {
        ten_mb_prefix.push((n as u8) | 0x80);
        n >>= 7;
    }
    ten_mb_prefix.extend([n as u8, b'a', b'b']);
    let mut unknown_fingerprint = framing[..2].to_vec();
    unknown_fingerprint.extend([9, 9, 9, 9, 9, 9, 9, 9, 2, b'x']);
    let nan = avro::encode_seed_datum(&Order {
        price: Some(f64::NAN),
        ..random_order()
    });
    let valid = random_order();
    let pills: Vec<(&[u8], Vec<u8>)> = vec![
        (b"huge", huge.clone()),
        (b"10mb", ten_mb_prefix),
        (b"fingerprint", unknown_fingerprint),
        (b"nan", nan),
        (
            b"negative",
            br#"{"order_id":"n","user":"u","item":"burger","quantity":1,"price":-5}"#.to_vec(),
        ),
        (
            b"vast",
            br#"{"order_id":"v","user":"u","item":"burger","quantity":1,"price":1e999}"#.to_vec(),
        ),
        (
            b"types",
            br#"{"order_id":"t","user":"u","item":"burger","quantity":"two"}"#.to_vec(),
        ),
        (
            b"utf8",
            b"{\"order_id\":\"\xff\xfe\",\"user\":\"u\",\"item\":\"b\",\"quantity\":1}".to_vec(),
        ),
    ];
    let mut messages: Vec<(Option<Vec<u8>>, Vec<u8>)> = pills
        .iter()
        .map(|(k, v)| (Some(k.to_vec()), v.clone()))
        .collect();
    messages.push((
        Some(valid.order_id.clone().into_bytes()),
        avro.encode(&valid),
    ));
    env.produce_raw(messages).await;

    let log = Log::default();
    let handler = Box::new(Simulated::default());
    let report = within(90, process_to_end(env.processor_config(10), handler, &log)).await;
    assert_eq!(
        (report.processed, report.dead_lettered),
        (1, pills.len() as u64)
    );
    assert_eq!(
        env.committed_offset(),
        pills.len() as i64 + 1,
        "commits reach the end"
    );

    let dlq = env.read_dlq().await;
    assert_eq!(dlq.len(), pills.len());
    for e in &dlq {
        let key = String::from_utf8_lossy(e.key.as_deref().unwrap()).into_owned();
        let v = e
            .value
            .as_ref()
            .unwrap_or_else(|| panic!("{key}: not a DLQ record"));
        assert_eq!(e.headers[record::H_KIND], "permanent", "{key}");
        assert!(
            !v.reason.is_empty() && v.reason.len() < 2_100,
            "{key}: {}",
            v.reason
        );
    }
    let big = dlq
        .iter()
        .find(|e| e.key.as_deref() == Some(b"huge"))
        .unwrap();
    assert!(big.raw.len() < 1_000_000, "{}", big.raw.len());
    assert_eq!(big.headers[record::H_TRUNCATED], "value");
    assert_eq!(big.headers[record::H_ORIGINAL_SIZE], "800000");
    let sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&huge))
    };
    assert_eq!(big.headers[record::H_ORIGINAL_SHA256], sha);
    let kept = big.value.as_ref().unwrap().original_bytes().unwrap();
    assert!(
        kept.len() > 500_000 && huge.starts_with(&kept),
        "{}",
        kept.len()
    );
}

async fn the_producer_delivers_every_order_at_the_requested_rate(broker: Broker) {
    use orderflow::producer::{self, Output, WireFormat};
    let env = TestEnv::start(broker, 2).await;
    let cfg = producer::Config {
        kafka: env.kafka.clone(),
        topic: env.topic.clone(),
        rate: Some(50.0),
        count: Some(25),
        format: WireFormat::Avro,
        confluent: None,
        ids: orderflow::order::Ids::default(),
    };
    let started = std::time::Instant::now();
    let report = within(
        60,
        producer::run(&cfg, Output::Quiet, CancellationToken::new()),
    )
    .await
    .unwrap();
    // 25 orders at 50/s: the last is due 480 ms after the first.
    assert!(started.elapsed() >= Duration::from_millis(480));
    assert_eq!((report.sent, report.delivered), (25, 25));

    let fast = producer::Config {
        rate: None,
        count: Some(500),
        ..cfg
    };
    let report2 = within(
        60,
        producer::run(&fast, Output::Quiet, CancellationToken::new()),
    )
    .await
    .unwrap();
    assert_eq!(report2.delivered, 500);

    let log = Log::default();
    let processed = process_to_end(
        env.processor_config(10),
        Box::new(Simulated::default()),
        &log,
    )
    .await;
    assert_eq!(processed.processed, 525);
    let ids: HashSet<String> = log
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.id().to_string())
        .collect();
    // One order each: the ids are fresh UUID v7s, no two alike.
    assert_eq!(ids.len(), 525);
}

on_both_brokers!(
    every_order_is_processed_once_and_failures_reach_the_dlq_after_max_attempts,
    bad_messages_go_to_the_dlq_at_once_and_processing_continues,
    a_retrying_order_does_not_block_other_keys,
    orders_with_one_key_stay_in_order_behind_a_retry,
    a_crashed_processor_loses_nothing_on_restart,
    seed_formats_flow_through_the_processor,
    the_producer_delivers_every_order_at_the_requested_rate,
    poison_pills_of_every_kind_are_dead_lettered_and_commits_reach_the_end,
);

/// A DLQ topic whose record limit is below what we send: the broker refuses the
/// record, which goes again without the original bytes (a hash and the size).
/// Kafka alone: the embedded broker has no per-topic record limit.
async fn a_dlq_record_the_topic_refuses_goes_again_without_the_original(broker: Broker) {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    let env = TestEnv::start(broker, 1).await;
    let admin: AdminClient<_> = env.kafka.client_config(&[]).create().unwrap();
    let limit =
        AlterConfig::new(ResourceSpecifier::Topic(&env.dlq)).set("max.message.bytes", "4000");
    let altered = admin
        .alter_configs(&[limit], &AdminOptions::new())
        .await
        .unwrap();
    assert!(altered[0].is_ok(), "{altered:?}");
    let garbage = vec![0xffu8; 100_000];
    env.produce_raw(vec![(Some(b"big".to_vec()), garbage.clone())])
        .await;
    let log = Log::default();
    let handler = Box::new(Simulated::default());
    let report = within(60, process_to_end(env.processor_config(10), handler, &log)).await;
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(env.committed_offset(), 1);
    let dlq = env.read_dlq().await;
    let v = dlq[0].value.as_ref().unwrap();
    assert!(dlq[0].raw.len() < 4_000, "{}", dlq[0].raw.len());
    assert_eq!(v.original_value, None);
    assert_eq!(dlq[0].headers[record::H_ORIGINAL_SIZE], "100000");
}

/// A write that no retry can fix ends the run with an error that says what to
/// do, instead of retrying forever; the order stays uncommitted.
async fn a_missing_dlq_topic_fails_the_run_with_what_to_do(broker: Broker) {
    use orderflow::processor::Error;
    let env = TestEnv::start(broker, 1).await;
    env.produce_raw(vec![(Some(b"g".to_vec()), vec![0xff, 0, 1])])
        .await;
    let mut cfg = env.processor_config(10);
    cfg.dlq_topic = format!("{}-absent", env.topic);
    cfg.kafka
        .overrides
        .push(("topic.metadata.propagation.max.ms".into(), "1000".into()));
    let drain = CancellationToken::new();
    drain.cancel();
    let run = Processor::new(
        cfg,
        Box::new(Simulated::default()),
        recorder(&Log::default()),
    )
    .run(CancellationToken::new(), drain);
    let err = within(60, run).await.expect_err("the run fails");
    assert!(matches!(err, Error::DlqWrite { .. }), "{err}");
    assert!(err.to_string().contains("create the topic"), "{err}");
    assert_eq!(env.committed_offset(), 0, "the order was not dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlq_record_the_topic_refuses_goes_again_without_the_original_on_kafka() {
    run_on(
        Broker::Kafka,
        a_dlq_record_the_topic_refuses_goes_again_without_the_original,
    )
    .await
}

on_both_brokers!(a_missing_dlq_topic_fails_the_run_with_what_to_do);

/// Spends its time on each order, as a handler that calls out somewhere would.
struct Busy(Duration);

impl Handler for Busy {
    fn handle(&mut self, _: &Order, _: u32) -> Result<(), Failure> {
        let until = std::time::Instant::now() + self.0;
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        Ok(())
    }
}

/// Under a backlog, periodic commits still happen: a crash mid-backlog must not
/// send the group back to where it started.
async fn commits_keep_pace_under_a_backlog(broker: Broker) {
    let env = TestEnv::start(broker, 1).await;
    let orders: Vec<Order> = (0..40_000).map(|_| random_order()).collect();
    env.produce_orders(&orders).await;
    let mut cfg = env.processor_config(10);
    cfg.commit_interval = Duration::from_millis(100);
    let log = Log::default();
    let handler = Box::new(Busy(Duration::from_micros(60)));
    let run = tokio::spawn(async move { process_to_end(cfg, handler, &log).await });
    let mut seen_while_running = 0;
    while !run.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if !run.is_finished() {
            let env = &env;
            seen_while_running = tokio::task::block_in_place(|| env.committed_offset());
        }
    }
    assert_eq!(run.await.unwrap().processed, 40_000);
    assert!(
        seen_while_running > 0,
        "no commit reached Kafka until the backlog was gone"
    );
}

on_both_brokers!(commits_keep_pace_under_a_backlog);
