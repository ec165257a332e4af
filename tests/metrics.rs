//! `orderflow process --metrics-listen`: `/metrics` is strict Prometheus text
//! (OpenMetrics when asked for, else the classic format), and its counters,
//! histograms and gauges match what the run did, on each broker.

mod common;

use std::{collections::HashMap, time::Duration};

use common::*;
use orderflow::{
    codec::avro,
    order::{Order, random_order},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A sample: its name, labels in order, and value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What a scrape held: the families' types and the samples.
#[derive(Debug)]
struct Scrape {
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Scrape {
    /// The one sample of `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one sample {name}{labels:?}, found {found:?}"
        );
        found[0].value
    }

    fn all(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

/// The two text formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    /// What Prometheus asks for (`Accept: application/openmetrics-text`).
    OpenMetrics,
    /// The classic 0.0.4 format, for everyone else.
    Classic,
}

/// Suffixes a family's samples may add to its name, by type.
fn suffixes(format: Format, kind: &str) -> &'static [&'static str] {
    match (format, kind) {
        (Format::OpenMetrics, "counter") => &["_total", "_created"],
        (_, "histogram") => &["_bucket", "_count", "_sum", "_created"],
        (Format::OpenMetrics, "info") => &["_info"],
        (Format::OpenMetrics, "gauge" | "unknown") => &[""],
        (Format::Classic, "counter" | "gauge" | "untyped") => &[""],
        other => panic!("unexpected metric type {other:?}"),
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `{k="v",...}` at the start of `s`; returns the labels and the rest.
fn parse_labels(s: &str) -> (Vec<(String, String)>, &str) {
    let mut labels = Vec::new();
    let mut rest = s.strip_prefix('{').expect("labels open with {");
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return (labels, r);
        }
        let eq = rest.find('=').expect("label has =");
        let key = &rest[..eq];
        assert!(is_name(key), "label name {key:?}");
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .expect("label value quoted");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("label value closed") {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect("escape completed").1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => panic!("bad escape \\{c}"),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        rest = &rest[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// A strict parser of the text exposition: every line a comment (`# TYPE`,
/// `# HELP`; in OpenMetrics also `# UNIT` and the final `# EOF`) or
/// `name{labels} value`, and every sample of a family announced by `# TYPE`
/// before it.
fn parse(text: &str, format: Format) -> Scrape {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let mut lines: Vec<&str> = text.lines().collect();
    if format == Format::OpenMetrics {
        assert_eq!(lines.pop(), Some("# EOF"), "ends with # EOF");
    }
    for line in &lines {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let (what, name, rest) = (parts.next(), parts.next(), parts.next());
            let name = name.unwrap_or_else(|| panic!("comment names a family: {line:?}"));
            assert!(is_name(name), "{line:?}");
            match what {
                Some("TYPE") => {
                    let kind = rest.expect("a type");
                    suffixes(format, kind);
                    assert!(
                        types.insert(name.to_string(), kind.to_string()).is_none(),
                        "one TYPE per family: {line:?}"
                    );
                }
                Some("HELP") => {}
                Some("UNIT") if format == Format::OpenMetrics => {}
                _ => panic!("unexpected comment {line:?}"),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{line:?}"));
        let name = &line[..name_end];
        assert!(is_name(name), "sample name in {line:?}");
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..])
        } else {
            (Vec::new(), &line[name_end..])
        };
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("a space before the value: {line:?}"));
        assert!(
            !value.contains(' '),
            "only a value after the labels: {line:?}"
        );
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("a number: {line:?}")),
        };
        let family = types.iter().find(|(f, kind)| {
            suffixes(format, kind)
                .iter()
                .any(|suffix| name.strip_suffix(suffix) == Some(f.as_str()))
        });
        assert!(family.is_some(), "{name} has no # TYPE before it");
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Scrape { types, samples }
}

/// A GET over plain HTTP/1.1: the status, the content type and the body.
/// OpenMetrics asks for that format as Prometheus does.
async fn get(addr: &str, path: &str, format: Format) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("metrics endpoint reachable");
    let accept = match format {
        Format::OpenMetrics => {
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n"
        }
        Format::Classic => "",
    };
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header and a body");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

/// Orders priced over 140 fail every attempt (the harness's `--fail-when`): three
/// transient failures, then the DLQ. Undecodable bytes and invalid orders are
/// dead-lettered at once, as permanent.
async fn metrics_match_the_run(broker: Broker) {
    const ORDERS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let env = TestEnv::start(broker, 2).await;
    let orders: Vec<Order> = (0..ORDERS)
        .map(|i| Order {
            price: Some(if i % 10 == 0 { 150.0 } else { 50.0 }),
            ..random_order()
        })
        .collect();
    let failing = orders.iter().filter(|o| o.price > Some(140.0)).count();
    let invalid = Order {
        quantity: 0,
        ..random_order()
    };
    env.produce_orders(&orders).await;
    env.produce_raw(vec![
        (Some(b"g1".to_vec()), vec![0xff, 0x00, 0x13]),
        (Some(b"g2".to_vec()), b"{\"order_id\": 1".to_vec()),
        (
            Some(invalid.order_id.clone().into_bytes()),
            avro::Writer::new().encode(&invalid),
        ),
    ])
    .await;
    let permanent = 3;

    let url = format!("sqlite://{}", dir.path().join("orders.db").display());
    let log = dir.path().join("processor.log");
    let child = spawn_processor(
        &env,
        &url,
        &log,
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--max-retries",
            "3",
            "-q",
        ],
    );
    wait_for_log(&log, "metrics on http://").await;
    let text = std::fs::read_to_string(&log).unwrap();
    let addr = text
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split("/metrics").next())
        .expect("the address in the log")
        .to_string();

    let (status, _, body) = get(&addr, "/healthz", Format::Classic).await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    // Until everything is finished and stored, and the backlog gauges (set on
    // every commit tick) say so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let scrape = loop {
        let (status, content_type, body) = get(&addr, "/metrics", Format::OpenMetrics).await;
        assert_eq!(status, 200);
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        let scrape = parse(&body, Format::OpenMetrics);
        let sum = |name: &str| scrape.all(name).iter().map(|s| s.value).sum::<f64>();
        let finished =
            sum("orderflow_orders_processed_total") + sum("orderflow_orders_dead_lettered_total");
        let lag = scrape.all("orderflow_consumer_lag");
        let settled = finished as usize == ORDERS + permanent
            && lag.len() == 2
            && lag.iter().all(|s| s.value == 0.0)
            && sum("orderflow_retries_waiting") == 0.0;
        if settled {
            break scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not settled after 90 s:\n{body}\nthe processor says:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let processed = (ORDERS - failing) as f64;
    let dead = (failing + permanent) as f64;
    let v = |name: &str, labels: &[(&str, &str)]| scrape.value(name, labels);
    assert_eq!(
        v("orderflow_orders_processed_total", &[("format", "avro")]),
        processed
    );
    assert_eq!(
        v("orderflow_orders_processed_total", &[("format", "json")]),
        0.0
    );
    assert_eq!(
        v(
            "orderflow_orders_dead_lettered_total",
            &[("kind", "transient")]
        ),
        failing as f64
    );
    assert_eq!(
        v(
            "orderflow_orders_dead_lettered_total",
            &[("kind", "permanent")]
        ),
        permanent as f64
    );
    assert_eq!(
        v("orderflow_attempts_failed_total", &[("kind", "transient")]),
        (3 * failing) as f64,
        "three attempts of each failing order"
    );
    assert_eq!(
        v("orderflow_attempts_failed_total", &[("kind", "permanent")]),
        permanent as f64
    );
    for histogram in [
        "orderflow_order_end_to_end_seconds",
        "orderflow_order_processing_seconds",
    ] {
        assert_eq!(scrape.types[histogram], "histogram");
        for (outcome, count) in [("processed", processed), ("dead_lettered", dead)] {
            let labels = [("outcome", outcome)];
            assert_eq!(
                v(&format!("{histogram}_count"), &labels),
                count,
                "{histogram} {outcome}"
            );
            let buckets: Vec<&Sample> = scrape
                .all(&format!("{histogram}_bucket"))
                .into_iter()
                .filter(|s| s.label("outcome") == Some(outcome))
                .collect();
            assert!(
                buckets.windows(2).all(|w| w[0].value <= w[1].value),
                "cumulative buckets"
            );
            assert_eq!(buckets.last().unwrap().label("le"), Some("+Inf"));
            assert_eq!(buckets.last().unwrap().value, count);
        }
    }
    // The failing orders waited out two backoffs (30 ms, then 60 ms, jittered
    // down to half) before their DLQ write: none was done within 25 ms of its
    // arrival, so the processing time counts the retries.
    let quick = v(
        "orderflow_order_processing_seconds_bucket",
        &[("outcome", "dead_lettered"), ("le", "0.025")],
    );
    assert!(
        quick <= permanent as f64,
        "{quick} dead-lettered within 25 ms, more than the {permanent} permanent failures"
    );
    let batches = v("orderflow_store_batch_duration_seconds_count", &[]);
    assert!(batches >= 1.0, "{batches} store batches");
    assert!(v("orderflow_store_batch_duration_seconds_sum", &[]) > 0.0);
    let lag = scrape.all("orderflow_consumer_lag");
    assert_eq!(scrape.types["orderflow_consumer_lag"], "gauge");
    let mut partitions: Vec<&str> = lag.iter().map(|s| s.label("partition").unwrap()).collect();
    partitions.sort();
    assert_eq!(partitions, ["0", "1"]);
    assert!(
        lag.iter()
            .all(|s| s.label("topic") == Some(env.topic.as_str()))
    );
    assert_eq!(v("orderflow_retries_waiting", &[]), 0.0);
    assert_eq!(
        v(
            "orderflow_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    // Conventions: one prefix, counters in _total, no order id in any label.
    for (family, kind) in &scrape.types {
        assert!(family.starts_with("orderflow_"), "{family}");
        if kind == "counter" {
            assert!(
                scrape
                    .samples
                    .iter()
                    .filter(|s| s.name.starts_with(family.as_str()))
                    .all(|s| s.name.ends_with("_total")),
                "{family}"
            );
        }
    }
    let ids: std::collections::HashSet<&str> = orders
        .iter()
        .chain([&invalid])
        .map(|o| o.order_id.as_str())
        .collect();
    for s in &scrape.samples {
        for (k, value) in &s.labels {
            assert!(
                !ids.contains(value.as_str()) && uuid::Uuid::parse_str(value).is_err(),
                "{}: label {k}={value:?} looks like an order id",
                s.name
            );
        }
    }

    // Without asking for OpenMetrics (curl, promtool, most parsers), the
    // classic format: counters typed under their `_total` names, the build as
    // a gauge, and the same counter values.
    let (status, content_type, body) = get(&addr, "/metrics", Format::Classic).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let classic = parse(&body, Format::Classic);
    assert_eq!(classic.types["orderflow_orders_processed_total"], "counter");
    assert_eq!(classic.types["orderflow_build_info"], "gauge");
    assert_eq!(
        classic.types["orderflow_order_end_to_end_seconds"],
        "histogram"
    );
    for s in scrape.samples.iter().filter(|s| s.name.ends_with("_total")) {
        let labels: Vec<(&str, &str)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(classic.value(&s.name, &labels), s.value, "{s:?}");
    }

    let status = child.terminate();
    assert!(
        status.success(),
        "{status}; {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

on_both_brokers!(metrics_match_the_run);

/// A bad address is refused at start, before any broker is asked, saying why.
#[test]
fn a_bad_metrics_address_fails_the_start_clearly() {
    for (addr, expect) in [
        ("localhost", "is not HOST:PORT with an IP address"),
        ("127.0.0.1:99999", "is not HOST:PORT with an IP address"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_orderflow"))
            .args(["process", "--store", "none", "--metrics-listen", addr])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{addr}: {stderr}");
        assert!(stderr.contains(expect), "{addr}: {stderr}");
    }
    // A port in use: the bind error, with the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orderflow"))
        .args(["process", "--store", "none", "--metrics-listen", &addr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("listening for metrics on {addr} failed")),
        "{stderr}"
    );
}
