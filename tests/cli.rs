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
    };
    store
        .apply(&Batch {
            group: "g".into(),
            topic: "orders".into(),
            finished: vec![finished],
            offsets: vec![(0, 1)],
        })
        .await
        .unwrap();
    drop(store);
    let orderflow = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orderflow"));
        cmd.args(args).args(["--store", &url]);
        cmd
    };
    let commands: [&[&str]; 3] = [
        &["orders", "list"],
        &["orders", "show", &order.order_id],
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
