//! The `orderflow` binary as a user runs it: the demo stopped by SIGTERM and
//! started again loses no order; the Kafka flags are offered where they act.

mod common;

use std::{
    collections::HashSet,
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::KillOnDrop;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Run {
    /// Killed on drop: a failing test leaves no demo running.
    child: KillOnDrop,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn demo(dir: &std::path::Path, port: u16, extra: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_orderflow"))
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orderflow runs");
    let collect = |r: Box<dyn std::io::Read + Send>| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        lines
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    Run {
        child: KillOnDrop(child),
        stdout,
        stderr,
    }
}

impl Run {
    fn count(&self, needle: &str) -> usize {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    fn wait(mut self, limit: Duration) -> (Vec<String>, Vec<String>) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(200)); // let the readers drain
                let (out, err) = (
                    self.stdout.lock().unwrap().clone(),
                    self.stderr.lock().unwrap().clone(),
                );
                assert!(
                    status.success(),
                    "exit {status}; stderr:\n{}",
                    err.join("\n")
                );
                return (out, err);
            }
            if start.elapsed() > limit {
                panic!(
                    "did not exit within {limit:?}; stderr:\n{}",
                    self.stderr.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn ids_after(lines: &[String], marker: &str, end: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.split_once(marker))
        .map(|(_, rest)| rest.split(end).next().unwrap().trim().to_string())
        .collect()
}

#[test]
fn demo_stops_cleanly_on_sigterm_and_resumes_without_losing_orders() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();

    let first = demo(dir.path(), port, &["--rate", "40"]);
    let start = Instant::now();
    while first.count("[processor] Processed") < 40 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "demo made no progress"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill")
        .args(["-TERM", &first.child.0.id().to_string()])
        .status()
        .unwrap();
    let (out1, err1) = first.wait(Duration::from_secs(60));
    assert!(
        out1.iter().any(|l| l.starts_with("[demo] produced ")),
        "summary printed"
    );

    // Produce nothing more: finish what the first run left.
    let (out2, err2) = demo(dir.path(), port, &["--count", "0"]).wait(Duration::from_secs(90));

    for err in [&err1, &err2] {
        assert!(!err.iter().any(|l| l.contains("panicked")), "{err:?}");
    }
    let produced: Vec<String> = out1
        .iter()
        .filter_map(|l| l.split_once("[producer] Produced: "))
        .map(|(_, json)| {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            v["orderId"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(produced.len() >= 40);
    let mut finished: HashSet<String> = HashSet::new();
    for out in [&out1, &out2] {
        finished.extend(ids_after(out, "[processor] Processed ", " |"));
        finished.extend(ids_after(out, "[processor] DLQ: ", " ->"));
    }
    let lost: Vec<&String> = produced
        .iter()
        .filter(|id| !finished.contains(*id))
        .collect();
    assert!(lost.is_empty(), "orders lost across SIGTERM: {lost:?}");
}

/// A command that never talks to Kafka would take `--bootstrap-servers` and
/// ignore it without a word, so it must refuse it instead.
#[test]
fn kafka_connection_flags_only_on_commands_that_talk_to_kafka() {
    let flags = [
        "--bootstrap-servers <",
        "-X <X>",
        "-C <C>",
        "--topic <",
        "--dlq-topic <",
    ];
    let help = |command: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_orderflow"))
            .args(command)
            .arg("--help")
            .output()
            .expect("orderflow runs");
        assert!(out.status.success(), "{command:?} --help");
        String::from_utf8(out.stdout).unwrap()
    };
    let kafka: [&[&str]; 6] = [
        &["topics", "create"],
        &["produce"],
        &["process"],
        &["dlq"],
        &["demo"],
        &["bench"],
    ];
    for command in kafka {
        let help = help(command);
        for flag in flags {
            assert!(help.contains(flag), "{command:?} lacks {flag}");
        }
    }
    let local: [&[&str]; 5] = [
        &["broker"],
        &["kafka"],
        &["orders", "list"],
        &["orders", "show"],
        &["stats"],
    ];
    for command in local {
        let help = help(command);
        for flag in flags {
            assert!(!help.contains(flag), "{command:?} offers {flag}");
        }
    }
}

/// orderflow.toml in the working directory: its settings apply below the
/// environment and the flags, `config show` says where each comes from with
/// secrets masked, and a key no flag has is refused.
#[test]
fn the_config_file_sits_below_the_environment_and_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orderflow.toml");
    std::fs::write(
        &file,
        "x = [\"sasl.password=hunter2\"]\n[process]\ngroup = \"billing\"\nmax_retries = 5\n\
         [stats]\nstore = \"none\"\n",
    )
    .unwrap();
    let orderflow = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orderflow"));
        cmd.args(args)
            .current_dir(dir.path())
            .env_remove("ORDERFLOW_STORE");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("orderflow runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, shown) = orderflow(
        &["config", "show", "process"],
        &[("ORDERFLOW_GROUP", "from-env")],
    );
    assert!(ok, "{shown}");
    assert!(shown.contains("group = \"from-env\"  # env"), "{shown}");
    assert!(shown.contains("max_retries = \"5\"  # file"), "{shown}");
    assert!(shown.contains("topic = \"orders\"  # default"), "{shown}");
    assert!(
        shown.contains("sasl.password=****") && !shown.contains("hunter2"),
        "{shown}"
    );
    // The file turns the store off for stats; a flag turns it back on.
    let (ok, out) = orderflow(&["stats"], &[]);
    assert!(!ok && out.contains("--store none"), "{out}");
    let db = format!("sqlite://{}", dir.path().join("o.db").display());
    let (ok, out) = orderflow(&["stats", "--store", &db], &[]);
    assert!(ok, "{out}");
    std::fs::write(&file, "[process]\ngruop = \"typo\"\n").unwrap();
    let (ok, out) = orderflow(&["stats"], &[]);
    assert!(
        !ok && out.contains("unknown key \"gruop\" in [process]"),
        "{out}"
    );
    let (ok, out) = orderflow(&["stats", "--config", "/nonexistent/o.toml"], &[]);
    assert!(!ok && out.contains("/nonexistent/o.toml"), "{out}");
}

/// What `orders` and `stats` print comes from anyone's messages: terminal
/// controls in it are shown escaped. A reader that goes away (`| head`) ends
/// the command quietly.
#[tokio::test]
async fn store_commands_escape_terminal_controls_and_take_a_closed_pipe() {
    use orderflow::{
        order::random_order,
        store::{Batch, Finished, Status, Store},
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("orders.db").display());
    let mut order = random_order();
    order.product = "\u{1b}[31mred\u{202e}".into();
    order.user = "eve\r".into();
    let store = Store::connect(&url).await.unwrap();
    let finished = Finished {
        id: order.order_id.clone(),
        order: Some(order.clone()),
        status: Status::Processed,
        attempts: 1,
        last_error: None,
        partition: 0,
        offset: 0,
        produced_ms: None,
        received_ms: order.created_at_ms,
        processed_ms: order.created_at_ms,
        timeline: Vec::new(),
        dead_letter: None,
    };
    let failed = Finished {
        id: "f-1".into(),
        status: Status::Dlq,
        last_error: Some(order.product.clone()),
        offset: 1,
        ..finished.clone()
    };
    store
        .apply(&Batch {
            group: "g".into(),
            topic: "orders".into(),
            finished: vec![finished, failed],
            offsets: vec![(0, 2)],
        })
        .await
        .unwrap();
    drop(store);
    let orderflow = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orderflow"));
        cmd.args(args).args(["--store", &url]);
        cmd
    };
    let commands: [&[&str]; 4] = [
        &["orders", "list"],
        &["orders", "show", &order.order_id],
        &["orders", "failures"],
        &["stats"],
    ];
    for args in commands {
        let out = orderflow(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("\\u{1b}[31mred\\u{202e}"), "{args:?}: {text}");
        assert!(
            !text.contains(['\u{1b}', '\u{202e}', '\r']),
            "{args:?} printed a control: {text:?}"
        );

        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = orderflow(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?} into a closed pipe: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `orders prune` takes its window from the flag or from the config key
/// `retention`, deletes only what is older, and leaves the aggregates; the next
/// page of a list starts where a full page said.
#[tokio::test]
async fn orders_prune_keeps_the_window_and_lists_page_on() {
    use orderflow::{
        order::{now_ms, random_order},
        store::{Batch, Finished, Status, Store},
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("orders.db").display());
    let day = 86_400_000;
    let store = Store::connect(&url).await.unwrap();
    let ages = [120, 100, 95, 80, 10, 0]; // days
    let finished: Vec<Finished> = ages
        .iter()
        .enumerate()
        .map(|(n, age)| {
            let order = random_order();
            let at = now_ms() - age * day;
            Finished {
                id: order.order_id.clone(),
                order: Some(order),
                status: Status::Processed,
                attempts: 1,
                last_error: None,
                partition: 0,
                offset: n as i64,
                produced_ms: Some(at),
                received_ms: at,
                processed_ms: at,
                timeline: Vec::new(),
                dead_letter: None,
            }
        })
        .collect();
    store
        .apply(&Batch {
            group: "g".into(),
            topic: "orders".into(),
            finished,
            offsets: vec![(0, 6)],
        })
        .await
        .unwrap();
    drop(store);
    let orderflow = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_orderflow"))
            .args(args)
            .args(["--store", &url])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
        (stdout, stderr)
    };
    let rows = |stdout: &str| stdout.lines().skip(1).count();

    let (first, more) = orderflow(&["orders", "list", "--limit", "4"]);
    assert_eq!(rows(&first), 4, "{first}");
    let after = more
        .trim()
        .strip_prefix("more: add --after ")
        .unwrap_or_else(|| panic!("no next page in {more:?}"));
    let (next, more) = orderflow(&["orders", "list", "--limit", "4", "--after", after]);
    assert_eq!(rows(&next), 2, "{next}");
    assert!(more.is_empty(), "a short page is the last: {more}");

    let (out, _) = orderflow(&["orders", "prune", "--older-than", "110d"]);
    assert!(out.starts_with("pruned 1 order(s)"), "{out}");
    std::fs::write(
        dir.path().join("orderflow.toml"),
        "[orders]\nretention = \"90d\"\n",
    )
    .unwrap();
    let (out, _) = orderflow(&["orders", "prune"]);
    assert!(out.starts_with("pruned 2 order(s)"), "{out}");
    let (left, _) = orderflow(&["orders", "list"]);
    assert_eq!(rows(&left), 3, "{left}");
    let stats = Store::connect(&url)
        .await
        .unwrap()
        .aggregates()
        .await
        .unwrap();
    assert_eq!(stats.total.orders, 6, "the aggregates keep every order");
}

/// The schema evolution walk-through of the README, command by command:
/// `registry` serves; `produce --format confluent` writes v2, then v3 (a
/// currency with a default) into one topic; an incompatible schema is refused
/// with the registry's 409 and `produce` fails saying so; `process` reads both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_evolve_through_the_registry_command_by_command() {
    let env = common::TestEnv::start(common::Broker::Embedded, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let registry = Command::new(env!("CARGO_BIN_EXE_orderflow"))
        .args([
            "registry",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut registry = KillOnDrop(registry);
    let mut first = String::new();
    BufReader::new(registry.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains(&url), "{first}");

    let orderflow = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_orderflow"))
            .args(args)
            .args(["--bootstrap-servers", &env.kafka.bootstrap_servers])
            .args(["--topic", &env.topic, "--schema-registry-url", &url])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let produce = |schema: Option<&str>| {
        let mut args = vec![
            "produce",
            "--format",
            "confluent",
            "--count",
            "3",
            "--rate",
            "0",
        ];
        if let Some(s) = schema {
            args.extend(["--schema", s]);
        }
        orderflow(&args)
    };
    for schema in [None, Some("schemas/order-v3.avsc")] {
        let out = produce(schema);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let refused = produce(Some("schemas/order-incompatible.avsc"));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("incompatible") && err.contains("error_code 409") && err.contains("discount"),
        "{err}"
    );

    let out = orderflow(&[
        "process",
        "--exit-at-end",
        "--store",
        "none",
        "--quiet",
        "--summary",
        "json",
        "--dlq-topic",
        &env.dlq,
        "--group",
        &env.group,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            summary["processed"].as_u64(),
            summary["dead_lettered"].as_u64()
        ),
        (Some(6), Some(0)),
        "{summary}"
    );
}
