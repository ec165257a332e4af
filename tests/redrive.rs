//! DLQ triage and redrive through the real binary on both brokers: replay by
//! reason after the cause is fixed, a replay killed midway and resumed, the
//! parking lot, selection edge cases, the rate cap, and DLQ records written by
//! other producers.

mod common;

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    process::{Command, Output, Stdio},
    time::Duration,
};

use common::*;
use orderflow::{
    codec::Decoder,
    dlq::{
        range::{self, Range},
        record,
    },
    order::{Ids, Order},
    store::{
        Store,
        dead_letters::{JobRow, JobState, LetterState, Selection, StoredLetter},
    },
};
use rdkafka::Message as _;

/// A test's orderflow commands: its topics, its group and a store of its own.
struct Flow {
    env: TestEnv,
    store_url: String,
    parking: String,
    dir: tempfile::TempDir,
}

impl Flow {
    async fn start(broker: Broker) -> Flow {
        let env = TestEnv::start(broker, 1).await;
        let parking = format!("{}_parked", env.topic);
        env.kafka
            .create_topics(&[&parking], 1, 1)
            .await
            .expect("parking topic created");
        let dir = tempfile::tempdir().unwrap();
        let store_url = format!("sqlite://{}", dir.path().join("orders.db").display());
        Flow {
            env,
            store_url,
            parking,
            dir,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("orderflow.log")
    }

    /// `orderflow ARGS` with this test's cluster, topics and store.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_orderflow"));
        c.args(args).args([
            "--bootstrap-servers",
            &self.env.kafka.bootstrap_servers,
            "--topic",
            &self.env.topic,
            "--dlq-topic",
            &self.env.dlq,
            "--parking-topic",
            &self.parking,
            "--store",
            &self.store_url,
        ]);
        c.env_remove("ORDERFLOW_CONFIG")
            .env("ORDERFLOW_LOG", "warn");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().expect("orderflow runs");
        std::fs::write(
            self.log(),
            [
                std::fs::read(self.log()).unwrap_or_default(),
                out.stderr.clone(),
            ]
            .concat(),
        )
        .unwrap();
        out
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "orderflow {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Processes to the end of the topic, failing orders that match `rule`.
    fn process(&self, rule: Option<&str>) {
        let mut args = vec![
            "process",
            "--group",
            &self.env.group,
            "--exit-at-end",
            "--quiet",
            "--backoff",
            "10ms",
            "--backoff-max",
            "20ms",
            "--max-retries",
            "2",
        ];
        if let Some(r) = rule {
            args.extend(["--fail-when", r]);
        }
        self.ok(&args);
    }

    /// `dlq replay ARGS --summary json`: the job at its end.
    fn replay(&self, args: &[&str]) -> JobSummary {
        let out = self.ok(&[&["dlq", "replay", "--summary", "json"], args].concat());
        let job: JobSummary =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        assert_eq!(job.failed, 0, "no topic refused a replayed order: {job:?}");
        job
    }

    async fn store(&self) -> Store {
        Store::connect(&self.store_url).await.unwrap()
    }

    async fn letters(&self, state: Option<LetterState>) -> Vec<StoredLetter> {
        let selection = Selection {
            state,
            ..Selection::default()
        };
        self.store()
            .await
            .dead_letters(&selection, None, 100_000)
            .await
            .unwrap()
    }

    /// Every record of the order topic from `from` on, with its headers.
    async fn records(&self, topic: &str, from: i64) -> Vec<(Order, HashMap<String, String>, i64)> {
        let ends = range::ends(&self.env.kafka, topic).unwrap();
        let ranges: Vec<Range> = ends
            .iter()
            .map(|(p, _, high)| Range {
                topic: topic.to_string(),
                partition: *p,
                from,
                to: *high,
            })
            .collect();
        let decoder = Decoder::default();
        let mut out = Vec::new();
        range::read(&self.env.kafka, "the test's topic", &ranges, |m| {
            let headers = [
                record::H_REPLAY_JOB,
                record::H_REPLAY_ID,
                record::H_REPLAY_COUNT,
            ]
            .iter()
            .filter_map(|k| {
                record::header(rdkafka::Message::headers(m), k)
                    .map(|v| (k.to_string(), v.to_string()))
            })
            .collect();
            let (order, _) = decoder
                .decode(m.payload().unwrap_or_default())
                .expect("replays send orders");
            let ts = m.timestamp().to_millis().unwrap_or(0);
            out.push((order, headers, ts));
        })
        .await
        .unwrap();
        out
    }
}

#[derive(Debug, serde::Deserialize)]
struct JobSummary {
    state: String,
    selected: i64,
    sent: i64,
    parked: i64,
    skipped: i64,
    failed: i64,
}

fn orders(n: usize) -> Vec<Order> {
    (0..n).map(|_| Ids::V4.random_order()).collect()
}

/// Ids of the orders a rule `price>LIMIT` fails.
fn failing(orders: &[Order], limit: f64) -> HashSet<String> {
    orders
        .iter()
        .filter(|o| o.price.unwrap() > limit)
        .map(|o| o.order_id.clone())
        .collect()
}

async fn replay_by_reason_processes_every_dead_order_once(broker: Broker) {
    let f = Flow::start(broker).await;
    let all = orders(1000);
    f.env.produce_orders(&all).await;
    let dead = failing(&all, 136.0);
    f.process(Some("price>136"));
    let listed = f.ok(&[
        "dlq", "list", "--status", "dead", "--json", "--limit", "5000",
    ]);
    assert_eq!(listed.lines().count(), dead.len(), "{listed}");
    let reasons = f.ok(&["dlq", "reasons"]);
    assert!(
        reasons.contains(&format!("{:>7}", dead.len())) && reasons.contains("high price"),
        "{reasons}"
    );

    let dry = f.ok(&["dlq", "replay", "--reason", "high price", "--dry-run"]);
    assert!(
        dry.contains(&format!("{} dead letter(s) would be replayed", dead.len())),
        "{dry}"
    );
    assert_eq!(
        f.letters(Some(LetterState::Dead)).await.len(),
        dead.len(),
        "a dry run changes nothing"
    );

    // The cause is fixed: the processor runs without the rule.
    let job = f.replay(&["--reason", "high price"]);
    assert_eq!(
        (job.state.as_str(), job.selected, job.sent),
        ("completed", dead.len() as i64, dead.len() as i64)
    );
    f.process(None);

    let store = f.store().await;
    for o in &all {
        let histories = store.show(&o.order_id).await.unwrap();
        let processed = histories
            .iter()
            .filter(|h| h.order.status == "processed")
            .count();
        assert_eq!(processed, 1, "{} processed once: {histories:?}", o.order_id);
        if dead.contains(&o.order_id) {
            let first = histories
                .iter()
                .find(|h| h.order.status == "dlq")
                .expect("its dead letter stays in the history");
            assert!(
                first.events.iter().any(|e| e.kind == "replayed"),
                "{:?}",
                first.events
            );
        }
    }
    assert!(f.letters(Some(LetterState::Dead)).await.is_empty());
    assert_eq!(
        f.letters(Some(LetterState::Replayed)).await.len(),
        dead.len()
    );
    assert_eq!(
        f.ok(&["dlq", "list", "--status", "dead", "--json"]).trim(),
        ""
    );
    let agg = store.aggregates().await.unwrap();
    assert_eq!(agg.total.orders, 1000, "each order counted once");
}

async fn a_killed_replay_resumes_without_sending_twice_or_missing(broker: Broker) {
    let f = Flow::start(broker).await;
    let all = orders(300);
    f.env.produce_orders(&all).await;
    let dead = failing(&all, 80.0);
    f.process(Some("price>80"));
    let end = all.len() as i64;

    let child = KillOnDrop(
        f.command(&["dlq", "replay", "--rate", "40"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let store = f.store().await;
    let job = loop {
        if let Some(j) = store.replay_jobs(1).await.unwrap().pop()
            && j.sent >= 50
        {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill();
    let before: JobRow = store.replay_job(job.id).await.unwrap().unwrap();
    assert_eq!(before.state, JobState::Running, "killed, not finished");
    assert!(before.sent < dead.len() as i64, "killed midway: {before:?}");

    let resumed = f.replay(&["--resume", &job.id.to_string()]);
    assert_eq!(
        (resumed.state.as_str(), resumed.sent),
        ("completed", dead.len() as i64)
    );
    let again = f.run(&["dlq", "replay", "--resume", &job.id.to_string()]);
    assert!(
        !again.status.success() && String::from_utf8_lossy(&again.stderr).contains("is completed")
    );

    let mut sent: HashMap<String, usize> = HashMap::new();
    for (order, headers, _) in f.records(&f.env.topic, end).await {
        assert_eq!(headers.get(record::H_REPLAY_JOB), Some(&job.id.to_string()));
        assert_eq!(
            headers.get(record::H_REPLAY_COUNT).map(String::as_str),
            Some("1")
        );
        *sent.entry(order.order_id).or_default() += 1;
    }
    let twice: Vec<_> = sent.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    assert_eq!(
        sent.keys().cloned().collect::<HashSet<_>>(),
        dead,
        "every dead order sent"
    );
}

async fn an_order_that_keeps_failing_is_parked(broker: Broker) {
    let f = Flow::start(broker).await;
    let all = orders(20);
    f.env.produce_orders(&all).await;
    f.process(Some("price>0"));
    let first = f.replay(&["--max-replays", "1"]);
    assert_eq!(first.sent, 20);
    f.process(Some("price>0"));
    let dead = f.letters(Some(LetterState::Dead)).await;
    assert_eq!(dead.len(), 20);
    assert!(
        dead.iter().all(|l| l.letter.replays == 1),
        "the replay count comes back with it"
    );
    let second = f.replay(&["--max-replays", "1"]);
    assert_eq!((second.sent, second.parked), (0, 20));
    assert_eq!(f.records(&f.parking, 0).await.len(), 20);
    assert_eq!(f.letters(Some(LetterState::Parked)).await.len(), 20);
    let out = f.ok(&["dlq", "replay", "--max-replays", "1"]);
    assert!(
        out.contains("nothing to replay"),
        "parked orders are not replayed again: {out}"
    );
}

async fn selections_and_the_rate_cap(broker: Broker) {
    let f = Flow::start(broker).await;
    let empty = f.ok(&["dlq", "replay", "--reason", "no such reason"]);
    assert!(empty.contains("nothing to replay"), "{empty}");
    for args in [
        &["dlq", "replay", "--resume", "999"][..],
        &["dlq", "cancel", "999"],
    ] {
        let out = f.run(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no replay job 999"),
            "{args:?}"
        );
    }

    let all = orders(1000);
    f.env.produce_orders(&all).await;
    f.process(Some("price>0"));
    let job = f.replay(&["--rate", "100", "--limit", "1000"]);
    assert_eq!(job.sent, 1000);
    let mut stamps: Vec<i64> = f
        .records(&f.env.topic, 1000)
        .await
        .iter()
        .map(|r| r.2)
        .collect();
    stamps.sort();
    let span_s = (stamps[999] - stamps[0]) as f64 / 1000.0;
    let rate = 999.0 / span_s;
    assert!(
        (90.0..=110.0).contains(&rate),
        "{rate:.1} orders/s over {span_s:.2} s"
    );
}

async fn records_of_other_producers_are_listed_and_replayed(broker: Broker) {
    let f = Flow::start(broker).await;
    let seed = br#"{"failed_order": {"orderId": "seed-7", "product": "item1", "price": 125.5}, "reason": "Simulated error: high price"}"#;
    let dlq = Producer {
        kafka: f.env.kafka.clone(),
        topic: f.env.dlq.clone(),
    };
    dlq.produce_raw(vec![
        (None, seed.to_vec()),
        (None, vec![0xff, 0x00, 0x13]),
        (Some(b"k".to_vec()), Vec::new()),
    ])
    .await;
    let listed = f.ok(&["dlq", "list"]);
    assert!(
        listed.contains("seed-7") && listed.matches("(names no order)").count() == 2,
        "{listed}"
    );
    let job = f.replay(&[]);
    assert_eq!((job.selected, job.sent, job.skipped), (3, 1, 2));
    f.process(None);
    let store = f.store().await;
    let h = store.show("seed-7").await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0].order.status.as_str(), h[0].order.product.as_str()),
        ("processed", "item1")
    );
    let dead = f.letters(Some(LetterState::Dead)).await;
    assert_eq!(dead.len(), 2, "records that name no order are kept");
    assert!(dead.iter().all(|l| l.letter.order_id.is_none()));
    // A second look reads nothing twice.
    f.ok(&["dlq", "list"]);
    assert_eq!(f.letters(None).await.len(), 3);
}

/// Ctrl-C stops a replay cleanly, and so does `dlq cancel` from another
/// process: what was sent stays sent, the rest stays dead, free for the next.
async fn a_cancelled_replay_sends_no_more_and_leaves_the_rest_dead(broker: Broker) {
    let f = Flow::start(broker).await;
    let all = orders(200);
    f.env.produce_orders(&all).await;
    f.process(Some("price>0"));
    let store = f.store().await;
    let mut sent = 0;
    for (n, how) in ["Ctrl-C", "dlq cancel"].into_iter().enumerate() {
        let mut child = f
            .command(&["dlq", "replay", "--rate", "20", "--limit", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let job = loop {
            if let Some(j) = store.replay_jobs(1).await.unwrap().pop()
                && j.id == n as i64 + 1
                && j.sent >= 10
            {
                break j;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if how == "Ctrl-C" {
            // SAFETY: signals the child this test started.
            assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
        } else {
            let out = f.ok(&["dlq", "cancel", &job.id.to_string()]);
            assert!(out.contains("cancelled"), "{out}");
        }
        assert!(
            child.wait().unwrap().success(),
            "{how}: a cancelled replay exits cleanly"
        );
        let row = store.replay_job(job.id).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Cancelled, "{how}");
        assert!(row.sent < 60, "{how}: stopped early, {} sent", row.sent);
        let moved = f.letters(Some(LetterState::Replayed)).await;
        assert_eq!(
            moved.iter().filter(|l| l.job_id == Some(job.id)).count() as i64,
            row.sent,
            "{how}"
        );
        let on_topic = f.records(&f.env.topic, all.len() as i64).await;
        sent += row.sent;
        assert_eq!(
            on_topic.len() as i64,
            sent,
            "{how}: nothing sent after the stop"
        );
        let again = f.run(&["dlq", "replay", "--resume", &job.id.to_string()]);
        assert!(
            String::from_utf8_lossy(&again.stderr).contains("is cancelled"),
            "{how}"
        );
    }
    assert_eq!(
        f.letters(Some(LetterState::Dead)).await.len() as i64,
        200 - sent
    );
    assert_eq!(
        f.replay(&[]).sent,
        200 - sent,
        "the rest is free for the next replay"
    );
}

on_both_brokers!(
    a_cancelled_replay_sends_no_more_and_leaves_the_rest_dead,
    replay_by_reason_processes_every_dead_order_once,
    a_killed_replay_resumes_without_sending_twice_or_missing,
    an_order_that_keeps_failing_is_parked,
    selections_and_the_rate_cap,
    records_of_other_producers_are_listed_and_replayed,
);
