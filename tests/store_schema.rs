//! The store's schema at work: an upgrade from the schema before version 5 keeps
//! every order, timeline, aggregate and offset; each read is served by an index;
//! lists page by key; pruning keeps the aggregates. On SQLite, and on PostgreSQL
//! too when ORDERFLOW_TEST_POSTGRES_URL is set.

mod common;

use std::collections::HashSet;

use common::store_urls;
use orderflow::{
    order::random_order,
    store::{
        Batch, Filter, Finished, MIGRATIONS, Read, Status, Store, TimelineEvent,
        dead_letters::{
            Checkpoint, DeadLetter, JobState, LetterState, NewJob, Outcome, Position, Progress,
            Selection,
        },
    },
};

/// Runs statements on a store's database directly, as an older orderflow did.
enum Raw {
    Sqlite {
        conn: libsql::Connection,
        _db: libsql::Database,
    },
    Postgres(tokio_postgres::Client),
}

impl Raw {
    async fn open(url: &str) -> Raw {
        match url.strip_prefix("sqlite://") {
            Some(path) => {
                let db = libsql::Builder::new_local(path).build().await.unwrap();
                Raw::Sqlite {
                    conn: db.connect().unwrap(),
                    _db: db,
                }
            }
            None => {
                let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                Raw::Postgres(client)
            }
        }
    }

    async fn run(&self, sql: &str) {
        match self {
            Raw::Sqlite { conn, .. } => conn.execute_batch(sql).await.map(drop).unwrap(),
            Raw::Postgres(c) => c.batch_execute(sql).await.unwrap(),
        }
    }
}

/// A store as orderflow wrote it before version 5 (ids as the key, orders that
/// reused an id kept apart, one aggregate row per product): three orders, one
/// kept apart, timelines of both kinds (receipt as a column and, older, as rows).
async fn write_schema_4_store(url: &str) {
    let raw = Raw::open(url).await;
    raw.run("CREATE TABLE orderflow_migrations (version BIGINT PRIMARY KEY)")
        .await;
    for (v, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= 4) {
        raw.run(&format!(
            "{sql}; INSERT INTO orderflow_migrations (version) VALUES ({v})"
        ))
        .await;
    }
    raw.run(
        "INSERT INTO orders (order_id, user_name, product, quantity, price, status, attempts,
            last_error, source_topic, source_partition, source_offset, produced_ms,
            processed_ms, received_ms) VALUES
        ('a', 'ann', 'pizza', 2, 10.0, 'processed', 2, NULL, 'orders', 0, 0, 1000, 1300, 1100),
        ('b', 'bob', 'salad', 1, 150.0, 'dlq', 3, 'price above limit', 'orders', 0, 1, 1000, 2300, 2100),
        ('c', 'cid', 'pizza', 3, 20.0, 'processed', 1, NULL, 'orders', 1, 0, 900, 950, NULL);
        INSERT INTO order_events (order_id, seq, at_ms, kind, detail) VALUES
        ('a', 0, 1200, 'attempt_failed', 'attempt 1: timeout'),
        ('c', 0, 920, 'received', 'partition 1 offset 0'),
        ('c', 1, 950, 'processed', '');
        INSERT INTO order_conflicts (source_topic, source_partition, source_offset, order_id,
            user_name, product, quantity, price, status, attempts, last_error, produced_ms,
            processed_ms, received_ms) VALUES
        ('orders', 1, 1, 'a', 'dan', 'reused', 1, 5.0, 'processed', 1, NULL, 3000, 3100, 3050);
        INSERT INTO aggregates (scope, name, orders, units, priced, price_sum, price_min,
            price_max) VALUES
        ('total', '', 2, 5, 2, 30.0, 10.0, 20.0),
        ('product', 'pizza', 2, 5, 2, 30.0, 10.0, 20.0);
        INSERT INTO consumer_offsets (group_id, topic, partition_id, next_offset) VALUES
        ('g', 'orders', 0, 2), ('g', 'orders', 1, 2)",
    )
    .await;
}

fn finished(id: &str, partition: i32, offset: i64, processed_ms: i64) -> Finished {
    let mut order = random_order();
    order.order_id = id.to_string();
    Finished {
        id: id.to_string(),
        status: Status::Processed,
        attempts: 1,
        last_error: None,
        partition,
        offset,
        produced_ms: Some(processed_ms),
        received_ms: processed_ms,
        processed_ms,
        timeline: Vec::new(),
        dead_letter: None,
        order: Some(order),
    }
}

fn batch(finished: Vec<Finished>) -> Batch {
    Batch {
        group: "g".into(),
        topic: "orders".into(),
        offsets: Vec::new(),
        finished,
    }
}

#[tokio::test]
async fn a_store_written_before_version_5_is_upgraded_with_all_its_data() {
    let dir = tempfile::tempdir().unwrap();
    for url in store_urls(dir.path()).await {
        write_schema_4_store(&url).await;
        let store = Store::connect(&url).await.unwrap();

        let all = store
            .list(&Filter {
                limit: 10,
                ..Filter::default()
            })
            .await
            .unwrap();
        let ids: Vec<&str> = all.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "a", "c"], "{url}: newest first");

        let a = store.show("a").await.unwrap();
        assert_eq!(a.len(), 2, "{url}: the order kept apart is an order now");
        let kinds: Vec<&str> = a[0].events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["received", "attempt_failed", "processed"], "{url}");
        assert_eq!(
            (a[1].order.product.as_str(), a[1].order.offset),
            ("reused", 1),
            "{url}"
        );
        let c = store.show("c").await.unwrap();
        let kinds: Vec<&str> = c[0].events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["received", "processed"],
            "{url}: older timeline rows"
        );

        let stats = store.aggregates().await.unwrap();
        assert_eq!(stats.total.orders, 3, "{url}: the reused id counts now");
        assert_eq!(stats.total.units, 6, "{url}");
        assert_eq!(stats.total.price_min, Some(5.0), "{url}");
        assert_eq!(stats.by_product["pizza"].orders, 2, "{url}");
        assert_eq!(stats.by_product["reused"].orders, 1, "{url}");

        let offsets = store.offsets("g", "orders").await.unwrap();
        assert_eq!((offsets[&0], offsets[&1]), (2, 2), "{url}");
        let failures = store.failures(10).await.unwrap();
        assert_eq!(failures.len(), 1, "{url}");
        assert_eq!(
            (failures[0].reason.as_str(), failures[0].orders),
            ("price above limit", 1)
        );

        // The upgraded store goes on: a redelivery of a stored message changes
        // nothing, a new one is stored after the old ones.
        let applied = store
            .apply(&batch(vec![
                finished("a", 0, 0, 5000),
                finished("d", 0, 2, 5000),
            ]))
            .await
            .unwrap();
        assert_eq!((applied.inserted, applied.duplicates), (1, 1), "{url}");
        let d = &store.show("d").await.unwrap()[0].order;
        assert!(all.iter().all(|o| o.seq < d.seq), "{url}");
        drop(store);
        Store::connect(&url).await.unwrap(); // opening again migrates nothing
    }
}

/// `count` orders over two hours, 2% dead-lettered with a timeline, 0.2% of a
/// rare product and user, in three partitions.
async fn filled(url: &str, count: i64) -> (Store, i64) {
    let store = Store::connect(url).await.unwrap();
    let start = orderflow::order::now_ms() - 7_200_000;
    let step = 7_200_000 / count;
    let orders: Vec<Finished> = (0..count)
        .map(|n| {
            let mut f = finished(
                &uuid::Uuid::new_v4().to_string(),
                (n % 3) as i32,
                n / 3,
                start + n * step,
            );
            if n % 500 == 7 {
                // A rare product and user: the lists of common ones can walk the
                // time index and filter, rare ones need their own index.
                let o = f.order.as_mut().unwrap();
                o.product = "truffle".into();
                o.user = "zoe".into();
            }
            if n % 50 == 0 {
                f.status = Status::Dlq;
                f.last_error = Some(format!("error {}", n % 150));
                f.timeline = vec![TimelineEvent {
                    at_ms: f.processed_ms - 10,
                    kind: "attempt_failed",
                    detail: "attempt 1".into(),
                }];
            }
            f
        })
        .collect();
    for chunk in orders.chunks(5_000) {
        store.apply(&batch(chunk.to_vec())).await.unwrap();
    }
    (store, start)
}

/// Every read the console and the CLI make, walked page by page: each order once,
/// newest first, and only those the filter names.
#[tokio::test]
async fn lists_page_by_key_through_every_filter() {
    let dir = tempfile::tempdir().unwrap();
    for url in store_urls(dir.path()).await {
        let (store, start) = filled(&url, 6_000).await;
        let product = store
            .list(&Filter {
                limit: 1,
                ..Filter::default()
            })
            .await
            .unwrap()[0]
            .product
            .clone();
        let filters = [
            Filter::default(),
            Filter {
                status: Some(Status::Dlq),
                ..Filter::default()
            },
            Filter {
                product: Some(product.clone()),
                ..Filter::default()
            },
            Filter {
                since_ms: Some(start + 3_600_000),
                until_ms: Some(start + 5_400_000),
                ..Filter::default()
            },
        ];
        let all = store
            .list(&Filter {
                limit: 100_000,
                ..Filter::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 6_000, "{url}");
        for filter in filters {
            let mut walked = Vec::new();
            let mut page = Filter {
                limit: 97,
                ..filter.clone()
            };
            loop {
                let got = store.list(&page).await.unwrap();
                walked.extend(got.iter().cloned());
                match got.last() {
                    Some(last) if got.len() == 97 => page.before = Some(last.cursor()),
                    _ => break,
                }
            }
            let expected: Vec<_> = all
                .iter()
                .filter(|o| filter.status.is_none_or(|s| o.status == s.as_str()))
                .filter(|o| filter.product.as_ref().is_none_or(|p| &o.product == p))
                .filter(|o| filter.since_ms.is_none_or(|t| o.processed_ms >= t))
                .filter(|o| filter.until_ms.is_none_or(|t| o.processed_ms < t))
                .cloned()
                .collect();
            assert!(!expected.is_empty(), "{url}: {filter:?}");
            assert_eq!(walked, expected, "{url}: {filter:?}");
        }
        let failures = store.failures(100).await.unwrap();
        assert_eq!(failures.len(), 3, "{url}: {failures:?}");
        assert_eq!(failures.iter().map(|f| f.orders).sum::<i64>(), 120, "{url}");
    }
}

/// The plan of each read names an index, and no read scans the orders or sorts
/// them (a lookup by id sorts what it found). The plans are printed
/// (`--nocapture`) and quoted in docs/store.md.
#[tokio::test]
async fn each_read_is_served_by_an_index() {
    let dir = tempfile::tempdir().unwrap();
    for url in store_urls(dir.path()).await {
        // Enough orders that PostgreSQL's planner weighs a scan against an index
        // as it would for a real history.
        let (store, start) = filled(&url, 60_000).await;
        if !url.starts_with("sqlite") {
            Raw::open(&url).await.run("ANALYZE").await; // as autovacuum would
        }
        let cursor = store
            .list(&Filter {
                limit: 60,
                ..Filter::default()
            })
            .await
            .unwrap()[59]
            .cursor();
        let by = |f: Filter| Filter {
            limit: 50,
            before: Some(cursor),
            ..f
        };
        let lists = [
            ("newest", by(Filter::default()), "orders_by_time"),
            (
                "by product",
                by(Filter {
                    product: Some("truffle".into()),
                    ..Filter::default()
                }),
                "orders_by_product",
            ),
            (
                "by user",
                by(Filter {
                    user: Some("zoe".into()),
                    ..Filter::default()
                }),
                "orders_by_user",
            ),
            (
                "dead-lettered",
                by(Filter {
                    status: Some(Status::Dlq),
                    ..Filter::default()
                }),
                "orders_dlq_by_time",
            ),
            (
                "time range",
                by(Filter {
                    since_ms: Some(start),
                    until_ms: Some(start + 3_600_000),
                    ..Filter::default()
                }),
                "orders_by_time",
            ),
        ];
        let id = uuid::Uuid::new_v4().to_string();
        let mut reads: Vec<(&str, Read<'_>, &str)> = vec![
            ("by id", Read::ById(&id), "orders_by_id"),
            ("failures", Read::Failures, "orders_dlq_by"), // either partial index lists exactly the failures
        ];
        reads.extend(lists.iter().map(|(n, f, i)| (*n, Read::List(f), *i)));
        for (name, read, index) in reads {
            let plan = store.plan(&read).await.unwrap().join("\n");
            eprintln!("{url} {name}:\n{plan}\n");
            assert!(plan.contains(index), "{url} {name}: not {index}:\n{plan}");
            // A scan of a (partial) index is fine; of the table, not.
            let scans_table = plan.lines().any(|l| {
                (l.contains("SCAN orders") && !l.contains("INDEX")) || l.contains("Seq Scan")
            });
            assert!(!scans_table, "{url} {name} scans the orders:\n{plan}");
            if name != "failures" && name != "by id" {
                assert!(
                    !plan.contains("TEMP B-TREE") && !plan.contains("Sort"),
                    "{url} {name} sorts:\n{plan}"
                );
            }
        }
    }
}

/// Pruning deletes what is older than the cutoff, with its timelines, in batches
/// smaller than the work; the aggregates and the rest stay.
#[tokio::test]
async fn pruning_deletes_old_orders_and_keeps_the_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    for url in store_urls(dir.path()).await {
        let (store, start) = filled(&url, 6_000).await;
        let aggregates = store.aggregates().await.unwrap();
        let cutoff = start + 4_800_000; // orders 0..4000 are older
        let old = store
            .list(&Filter {
                until_ms: Some(cutoff),
                status: Some(Status::Dlq),
                limit: 1,
                ..Filter::default()
            })
            .await
            .unwrap()
            .remove(0);
        assert_eq!(store.prune(cutoff).await.unwrap(), 4_000, "{url}");
        assert_eq!(store.prune(cutoff).await.unwrap(), 0, "{url}: nothing left");
        let left = store
            .list(&Filter {
                limit: 100_000,
                ..Filter::default()
            })
            .await
            .unwrap();
        assert_eq!(left.len(), 2_000, "{url}");
        assert!(left.iter().all(|o| o.processed_ms >= cutoff), "{url}");
        let ids: HashSet<&str> = left.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids.len(), 2_000, "{url}");
        assert!(store.show(&old.id).await.unwrap().is_empty(), "{url}");
        assert_eq!(store.aggregates().await.unwrap(), aggregates, "{url}");
        // A new order after pruning gets a key above every key before it.
        let max = left.iter().map(|o| o.seq).max().unwrap();
        store
            .apply(&batch(vec![finished("new", 0, 9_999, cutoff + 1)]))
            .await
            .unwrap();
        assert!(store.show("new").await.unwrap()[0].order.seq > max, "{url}");
    }
}

/// A processor with `--retention` prunes at start, and its pruning ends with it.
#[tokio::test]
async fn a_running_retention_prunes_at_once_and_stops_with_the_processor() {
    let dir = tempfile::tempdir().unwrap();
    for url in store_urls(dir.path()).await {
        let (store, start) = filled(&url, 6_000).await;
        let store = std::sync::Arc::new(store);
        let stop = tokio_util::sync::CancellationToken::new();
        // Everything older than an hour ago: the first half.
        let pruning = tokio::spawn(orderflow::store::retention::keep(
            store.clone(),
            std::time::Duration::from_secs(3_600),
            stop.clone(),
        ));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let oldest = store
                .list(&Filter {
                    until_ms: Some(start + 3_500_000),
                    limit: 1,
                    ..Filter::default()
                })
                .await
                .unwrap();
            if oldest.is_empty() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{url}: not pruned");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let left = store
            .list(&Filter {
                limit: 10_000,
                ..Filter::default()
            })
            .await
            .unwrap();
        assert!(
            (2_900..=3_100).contains(&left.len()),
            "{url}: {}",
            left.len()
        );
        stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), pruning)
            .await
            .expect("pruning stops with its token")
            .unwrap();
    }
}

fn letter(n: i64, order: Option<&str>, reason: &str, source_offset: Option<i64>) -> DeadLetter {
    DeadLetter {
        record: Position {
            topic: "orders_dlq".into(),
            partition: 0,
            offset: n,
        },
        order_id: order.map(str::to_string),
        user: None,
        product: Some(if n % 2 == 0 { "pizza" } else { "taco" }.into()),
        reason: reason.into(),
        kind: Some("transient".into()),
        attempts: Some(3),
        source: source_offset.map(|offset| Position {
            topic: "orders".into(),
            partition: 0,
            offset,
        }),
        source_ms: None,
        first_failure_ms: Some(1_000 + n),
        last_failure_ms: Some(2_000 + n),
        dead_ms: 2_000 + n,
        replays: 0,
        key: Some(b"k".to_vec()),
        value: Some(vec![n as u8; 3]),
    }
}

/// Dead letters are kept once per DLQ record and per failed message, a job holds
/// what it selected so that no other job takes it, outcomes are recorded once,
/// and a cancelled job lets go of what it did not send.
#[tokio::test]
async fn dead_letters_are_kept_once_and_held_by_one_job_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    for url in store_urls(dir.path()).await {
        let store = Store::connect(&url).await.unwrap();
        let letters: Vec<DeadLetter> = (0..6)
            .map(|n| {
                letter(
                    n,
                    Some(&format!("o{n}")),
                    &format!("high price {n}.5"),
                    Some(100 + n),
                )
            })
            .chain([letter(6, None, "(not a DLQ record: 3 bytes)", None)])
            .collect();
        let group = ("orderflow.dlq-index", "orders_dlq");
        assert_eq!(
            store
                .record_dead_letters(&letters, group, &[(0, 7)])
                .await
                .unwrap(),
            7,
            "{url}"
        );
        // The same records again, and a second record of a message kept already
        // (its DLQ write repeated after a crash): nothing new.
        let mut again = letters.clone();
        again.push(letter(9, Some("o0"), "high price 0.5", Some(100)));
        assert_eq!(
            store
                .record_dead_letters(&again, group, &[(0, 10)])
                .await
                .unwrap(),
            0,
            "{url}"
        );
        assert_eq!(store.offsets(group.0, group.1).await.unwrap()[&0], 10);

        let reasons = store
            .dead_letter_reasons(&Selection::default(), 10)
            .await
            .unwrap();
        assert_eq!(
            reasons
                .iter()
                .map(|r| (r.reason.as_str(), r.count))
                .collect::<Vec<_>>(),
            [("high price <n>", 6), ("(not a DLQ record: <n> bytes)", 1)],
            "{url}"
        );
        let pizza = Selection {
            reason: Some("high price <n>".into()),
            product: Some("pizza".into()),
            ..Selection::default()
        };
        let listed = store.dead_letters(&pizza, None, 10).await.unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|l| l.letter.order_id.clone().unwrap())
                .collect::<Vec<_>>(),
            ["o4", "o2", "o0"],
            "{url}"
        );
        let page = store
            .dead_letters(&pizza, Some(listed[1].id), 10)
            .await
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(listed[0].letter.value.as_deref(), Some(&[4u8; 3][..]));

        let job = |limit| NewJob {
            principal: "ops",
            owner: "test:1",
            now_ms: 5_000,
            selection: &pizza,
            limit,
            target: None,
            rate: None,
            max_replays: 3,
        };
        let first = store
            .create_replay_job(&job(Some(2)), &Checkpoint::new())
            .await
            .unwrap();
        assert_eq!(store.replay_job(first).await.unwrap().unwrap().selected, 2);
        let second = store
            .create_replay_job(&job(None), &Checkpoint::new())
            .await
            .unwrap();
        let held: Vec<i64> = store
            .replay_pending(second, 0, 10)
            .await
            .unwrap()
            .iter()
            .map(|l| l.id)
            .collect();
        assert_eq!(
            held.len(),
            1,
            "what the first holds is not taken again: {url}"
        );
        assert_eq!(store.replay_preview(&pizza, None, 5).await.unwrap().0, 0);

        let pending = store.replay_pending(first, 0, 10).await.unwrap();
        let sent = Position {
            topic: "orders".into(),
            partition: 0,
            offset: 500,
        };
        let outcomes = [(pending[0].id, Outcome::Sent(sent.clone()))];
        let mut checkpoint = Checkpoint::new();
        checkpoint
            .entry("orders".into())
            .or_default()
            .insert(0, 501);
        for _ in 0..2 {
            store
                .record_replay(&Progress {
                    job: first,
                    owner: "test:1",
                    now_ms: 6_000,
                    outcomes: &outcomes,
                    checkpoint: &checkpoint,
                })
                .await
                .unwrap();
        }
        let row = store.replay_job(first).await.unwrap().unwrap();
        assert_eq!(
            (row.sent, row.checkpoint.clone()),
            (1, checkpoint.clone()),
            "recorded once: {url}"
        );
        store
            .finish_replay((first, "test:1"), JobState::Cancelled, None, 7_000)
            .await
            .unwrap();
        let freed = store.replay_preview(&pizza, None, 5).await.unwrap();
        assert_eq!(
            freed.0, 1,
            "the cancelled job lets go of the letter it did not send: {url}"
        );
        let replayed = Selection {
            state: Some(LetterState::Replayed),
            ..Selection::default()
        };
        let moved = store.dead_letters(&replayed, None, 10).await.unwrap();
        assert_eq!(moved.len(), 1);
        assert_eq!(
            (moved[0].job_id, moved[0].moved_to.as_deref()),
            (Some(first), Some("orders[0]@500"))
        );
        // Two processes resuming the second job at once: one wins, and the
        // runner it was taken from records nothing more.
        let row = store.replay_job(second).await.unwrap().unwrap();
        let seen = (row.owner.as_str(), row.updated_ms);
        assert!(
            store
                .claim_replay((second, "a:1"), seen, 8_000)
                .await
                .unwrap()
        );
        assert!(
            !store
                .claim_replay((second, "b:2"), seen, 8_000)
                .await
                .unwrap(),
            "{url}"
        );
        let late = store
            .record_replay(&Progress {
                job: second,
                owner: "test:1",
                now_ms: 8_000,
                outcomes: &[],
                checkpoint: &checkpoint,
            })
            .await;
        assert!(
            matches!(late, Err(orderflow::store::Error::JobTaken(_))),
            "{late:?}"
        );
        let jobs = store.replay_jobs(10).await.unwrap();
        assert_eq!(
            jobs.iter().map(|j| (j.id, j.state)).collect::<Vec<_>>(),
            [(second, JobState::Running), (first, JobState::Cancelled)]
        );
    }
}

/// The audit log lists the newest first: all of it, one target, or a kind of
/// target by its prefix, where `_` and `%` are plain text.
#[tokio::test]
async fn the_audit_log_filters_by_target_and_kind() {
    let dir = tempfile::tempdir().unwrap();
    for url in store_urls(dir.path()).await {
        let store = Store::connect(&url).await.unwrap();
        let rows = [
            ("order.place", "order:a_1"),
            ("replay.start", "replay:1"),
            ("order.place", "order:%"),
            ("replay.cancel", "replay:1"),
            ("replay.start", "replay:12"),
            ("odd", "replay"),
            ("odd", "replayx:1"),
        ];
        for (n, (action, target)) in rows.iter().enumerate() {
            store
                .audit(n as i64, "ann", (action, target), "{}")
                .await
                .unwrap();
        }
        let targets = |entries: Vec<orderflow::store::audit::AuditEntry>| {
            entries
                .into_iter()
                .map(|e| (e.action, e.target))
                .collect::<Vec<_>>()
        };
        let pair = |a: &str, t: &str| (a.to_string(), t.to_string());
        assert_eq!(
            targets(store.audit_log(Some("replay:"), 10).await.unwrap()),
            [
                pair("replay.start", "replay:12"),
                pair("replay.cancel", "replay:1"),
                pair("replay.start", "replay:1"),
            ],
            "{url}"
        );
        assert_eq!(
            targets(store.audit_log(Some("replay:1"), 10).await.unwrap()),
            [
                pair("replay.cancel", "replay:1"),
                pair("replay.start", "replay:1")
            ],
            "{url}"
        );
        assert_eq!(
            targets(store.audit_log(Some("order:%"), 10).await.unwrap()),
            [pair("order.place", "order:%")],
            "{url}"
        );
        assert_eq!(
            targets(store.audit_log(Some("order:"), 1).await.unwrap()),
            [pair("order.place", "order:%")],
            "{url}"
        );
        assert_eq!(store.audit_log(None, 100).await.unwrap().len(), 7);
    }
}
