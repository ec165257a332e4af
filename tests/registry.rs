//! The schema registry: Confluent's REST contract and error codes on both
//! stores, compatibility on register, soft and hard deletes, racing
//! registrations; Confluent-framed orders through the processor (schema
//! evolution, unknown ids, unreadable schemas, a registry that is down); and
//! interop with the Python confluent-kafka serializers.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use orderflow::{
    codec::{Format, avro, confluent},
    order::random_order,
    processor::Membership,
    registry::{self, Registry, client::Client},
    simulated::Simulated,
    store::Store,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const ORDER_V3: &str = include_str!("../schemas/order-v3.avsc");
const ORDER_V3_BAD: &str = include_str!("../schemas/order-incompatible.avsc");

/// A registry on a free port over `store`: its base URL.
async fn serve(store: Arc<Store>) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(registry::http::run(
        listener,
        Registry::new(store),
        stop.clone(),
    ));
    (url, stop)
}

async fn sqlite(dir: &std::path::Path) -> Arc<Store> {
    let url = format!("sqlite://{}", dir.join("registry.db").display());
    Arc::new(Store::connect(&url).await.unwrap())
}

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    /// (status, error_code or the body)
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(b) = body {
            // Clients send every kind of content type; none may matter.
            req = req.header("Content-Type", "text/plain").body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        (status, v)
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body).await;
        assert_eq!(status, 200, "{method} {path}: {v}");
        v
    }

    /// Asserts an error: its status and Confluent error code.
    async fn err(&self, method: &str, path: &str, body: Option<Value>, code: u64) -> String {
        let (status, v) = self.call(method, path, body).await;
        assert_eq!(v["error_code"], code, "{method} {path}: {v}");
        assert_eq!(
            u64::from(status),
            code.to_string()[..3].parse::<u64>().unwrap()
        );
        assert!(
            (400..500).contains(&status),
            "a client's mistake is 4xx: {status}"
        );
        v["message"].as_str().unwrap().to_string()
    }
}

fn schema(fields: &str) -> Value {
    json!({"schema": format!(r#"{{"type":"record","name":"Order","namespace":"com.assignment","fields":[{fields}]}}"#)})
}

const V1: &str = r#"{"name":"orderId","type":"string"},{"name":"product","type":"string"},{"name":"price","type":"float"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_rest_contract_on_every_store() {
    let dir = tempfile::tempdir().unwrap();
    for url in store_urls(dir.path()).await {
        let store = Arc::new(Store::connect(&url).await.unwrap());
        let (base, stop) = serve(store).await;
        contract(&Http {
            base,
            client: reqwest::Client::new(),
        })
        .await;
        stop.cancel();
    }
}

async fn contract(h: &Http) {
    // Register; the same schema again (other whitespace and key order) is the
    // same id and version; under another subject, the same id.
    let r = h
        .ok("POST", "/subjects/orders-value/versions", Some(schema(V1)))
        .await;
    let id = r["id"].as_i64().unwrap();
    assert_eq!(r["version"], 1);
    let respelled = json!({"schema": format!(
        r#"{{ "namespace": "com.assignment", "fields": [ {V1} ],
            "name": "Order", "type": "record" }}"#
    ), "schemaType": "AVRO", "references": [], "metadata": {"properties": {}}, "ruleSet": null});
    let again = h
        .ok(
            "POST",
            "/subjects/orders-value/versions?normalize=False",
            Some(respelled),
        )
        .await;
    assert_eq!(
        (again["id"].as_i64(), again["version"].as_i64()),
        (Some(id), Some(1))
    );
    let other = h
        .ok("POST", "/subjects/other%2Fvalue/versions", Some(schema(V1)))
        .await;
    assert_eq!(other["id"].as_i64(), Some(id));
    assert_eq!(
        h.ok("GET", "/subjects/orders-value/versions", None).await,
        json!([1])
    );
    assert_eq!(
        h.ok("GET", "/subjects", None).await,
        json!(["orders-value", "other/value"])
    );
    assert_eq!(
        h.ok("GET", "/subjects?subjectPrefix=oth", None).await,
        json!(["other/value"])
    );

    // Reads.
    let by_id = h
        .ok(
            "GET",
            &format!("/schemas/ids/{id}?subject=orders-value&format=x"),
            None,
        )
        .await;
    let text = by_id["schema"].as_str().unwrap().to_string();
    assert!(text.contains("orderId"), "{by_id}");
    let latest = h
        .ok("GET", "/subjects/orders-value/versions/latest", None)
        .await;
    assert_eq!(
        latest,
        json!({"subject": "orders-value", "version": 1, "id": id, "schema": text})
    );
    assert_eq!(
        h.ok("GET", "/subjects/orders-value/versions/-1", None)
            .await,
        latest
    );
    let raw = h
        .ok("GET", "/subjects/orders-value/versions/1/schema", None)
        .await;
    assert_eq!(raw["type"], "record");
    assert_eq!(
        h.ok("GET", &format!("/schemas/ids/{id}/versions"), None)
            .await,
        json!([{"subject": "orders-value", "version": 1}, {"subject": "other/value", "version": 1}])
    );
    assert_eq!(
        h.ok("GET", &format!("/schemas/ids/{id}/subjects"), None)
            .await,
        json!(["orders-value", "other/value"])
    );
    assert_eq!(h.ok("GET", "/schemas/types", None).await, json!(["AVRO"]));
    let found = h
        .ok(
            "POST",
            "/subjects/orders-value?deleted=False",
            Some(schema(V1)),
        )
        .await;
    assert_eq!(
        (found["id"].as_i64(), found["version"].as_i64()),
        (Some(id), Some(1))
    );

    // Errors, with Confluent's codes.
    h.err("GET", "/subjects/nope/versions", None, 40401).await;
    h.err("GET", "/subjects/orders-value/versions/7", None, 40402)
        .await;
    h.err("GET", "/schemas/ids/999999", None, 40403).await;
    h.err(
        "POST",
        "/subjects/orders-value",
        Some(schema(r#"{"name":"x","type":"int"}"#)),
        40403,
    )
    .await;
    h.err("POST", "/subjects/nope", Some(schema(V1)), 40401)
        .await;
    h.err(
        "POST",
        "/subjects/s/versions",
        Some(json!({"schema": "{not avro"})),
        42201,
    )
    .await;
    h.err(
        "POST",
        "/subjects/s/versions",
        Some(json!({"schema": V1, "schemaType": "PROTOBUF"})),
        42201,
    )
    .await;
    h.err(
        "POST",
        "/subjects/s/versions",
        Some(json!({"nothing": 1})),
        42201,
    )
    .await;
    for bad in ["0", "abc", "2147483648"] {
        h.err(
            "GET",
            &format!("/subjects/orders-value/versions/{bad}"),
            None,
            42202,
        )
        .await;
    }
    h.err(
        "PUT",
        "/config",
        Some(json!({"compatibility": "SIDEWAYS"})),
        42203,
    )
    .await;
    h.err("GET", "/config/orders-value", None, 40408).await;
    let (status, v) = h
        .call(
            "GET",
            "/associations/resources/-/orders?resourceType=topic",
            None,
        )
        .await;
    assert_eq!((status, v["error_code"].as_u64()), (404, Some(404)));

    // Compatibility: BACKWARD by default. A field without a default cannot be
    // read from the orders written before: 409, and the check says so.
    assert_eq!(
        h.ok("GET", "/config", None).await,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    let bad = schema(&format!(r#"{V1},{{"name":"currency","type":"string"}}"#));
    let msg = h
        .err(
            "POST",
            "/subjects/orders-value/versions",
            Some(bad.clone()),
            409,
        )
        .await;
    assert!(msg.contains("currency"), "{msg}");
    let verdict = h
        .ok(
            "POST",
            "/compatibility/subjects/orders-value/versions/latest?verbose=TRUE",
            Some(bad.clone()),
        )
        .await;
    assert_eq!(verdict["is_compatible"], false);
    assert!(!verdict["messages"].as_array().unwrap().is_empty());
    // v2 also gives price a default, which lets v3 below drop it for v2's readers.
    let good = schema(
        r#"{"name":"orderId","type":"string"},{"name":"product","type":"string"},{"name":"price","type":"float","default":0},{"name":"currency","type":"string","default":"EUR"}"#,
    );
    assert_eq!(
        h.ok(
            "POST",
            "/compatibility/subjects/orders-value/versions/1",
            Some(good.clone())
        )
        .await,
        json!({"is_compatible": true})
    );
    let v2 = h
        .ok("POST", "/subjects/orders-value/versions", Some(good))
        .await;
    assert_eq!(v2["version"], 2);
    assert_ne!(v2["id"].as_i64(), Some(id));

    // Transitive levels check every version, not just the latest: v3 drops
    // price, which v2's readers default but v1's need.
    let v3 = schema(
        r#"{"name":"orderId","type":"string"},{"name":"product","type":"string"},{"name":"currency","type":"string","default":"EUR"}"#,
    );
    assert_eq!(
        h.ok(
            "PUT",
            "/config/orders-value",
            Some(json!({"compatibility": "forward_transitive"}))
        )
        .await,
        json!({"compatibility": "FORWARD_TRANSITIVE"})
    );
    h.err(
        "POST",
        "/subjects/orders-value/versions",
        Some(v3.clone()),
        409,
    )
    .await;
    h.ok(
        "PUT",
        "/config/orders-value",
        Some(json!({"compatibility": "FORWARD"})),
    )
    .await;
    assert_eq!(
        h.ok("GET", "/config/orders-value", None).await["compatibilityLevel"],
        "FORWARD"
    );
    assert_eq!(
        h.ok("GET", "/config/other%2Fvalue?defaultToGlobal=True", None)
            .await["compatibilityLevel"],
        "BACKWARD"
    );
    assert_eq!(
        h.ok("POST", "/subjects/orders-value/versions", Some(v3))
            .await["version"],
        3
    );
    assert_eq!(
        h.ok("DELETE", "/config/orders-value", None).await["compatibilityLevel"],
        "FORWARD"
    );

    // Modes: a read-only subject refuses registrations.
    h.ok(
        "PUT",
        "/mode/other%2Fvalue",
        Some(json!({"mode": "READONLY"})),
    )
    .await;
    h.err(
        "POST",
        "/subjects/other%2Fvalue/versions",
        Some(schema(&format!(
            r#"{V1},{{"name":"n","type":"int","default":0}}"#
        ))),
        42205,
    )
    .await;
    h.err("PUT", "/mode", Some(json!({"mode": "SIDEWAYS"})), 42204)
        .await;
    h.ok("DELETE", "/mode/other%2Fvalue", None).await;
    assert_eq!(
        h.ok("GET", "/mode", None).await,
        json!({"mode": "READWRITE"})
    );

    // Deletes: soft first (hidden, still readable with deleted=true), then permanent.
    h.err(
        "DELETE",
        "/subjects/orders-value/versions/2?permanent=true",
        None,
        40407,
    )
    .await;
    assert_eq!(
        h.ok("DELETE", "/subjects/orders-value/versions/2", None)
            .await,
        json!(2)
    );
    h.err("DELETE", "/subjects/orders-value/versions/2", None, 40406)
        .await;
    assert_eq!(
        h.ok("GET", "/subjects/orders-value/versions", None).await,
        json!([1, 3])
    );
    assert_eq!(
        h.ok("GET", "/subjects/orders-value/versions?deleted=true", None)
            .await,
        json!([1, 2, 3])
    );
    h.err("GET", "/subjects/orders-value/versions/2", None, 40402)
        .await;
    assert_eq!(
        h.ok(
            "GET",
            "/subjects/orders-value/versions/2?deleted=true",
            None
        )
        .await["version"],
        2
    );
    assert_eq!(
        h.ok(
            "DELETE",
            "/subjects/orders-value/versions/2?permanent=true",
            None
        )
        .await,
        json!(2)
    );
    h.err(
        "GET",
        "/subjects/orders-value/versions/2?deleted=true",
        None,
        40402,
    )
    .await;
    h.err("GET", &format!("/schemas/ids/{}", v2["id"]), None, 40403)
        .await;

    h.err(
        "DELETE",
        "/subjects/other%2Fvalue?permanent=true",
        None,
        40405,
    )
    .await;
    assert_eq!(
        h.ok("DELETE", "/subjects/other%2Fvalue", None).await,
        json!([1])
    );
    h.err("DELETE", "/subjects/other%2Fvalue", None, 40404)
        .await;
    assert_eq!(
        h.ok("GET", "/subjects", None).await,
        json!(["orders-value"])
    );
    assert_eq!(
        h.ok("GET", "/subjects?deleted=true", None).await,
        json!(["orders-value", "other/value"])
    );
    assert_eq!(
        h.ok("DELETE", "/subjects/other%2Fvalue?permanent=true", None)
            .await,
        json!([1])
    );
    h.err(
        "GET",
        "/subjects/other%2Fvalue/versions?deleted=true",
        None,
        40401,
    )
    .await;
    // Schema 1 is still held by orders-value.
    h.ok("GET", &format!("/schemas/ids/{id}"), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_registrations_of_one_schema_get_one_id() {
    let dir = tempfile::tempdir().unwrap();
    for url in store_urls(dir.path()).await {
        // Two registries over one store, as two processes would be.
        let a = Arc::new(Store::connect(&url).await.unwrap());
        let b = Arc::new(Store::connect(&url).await.unwrap());
        let (ua, sa) = serve(a).await;
        let (ub, sb) = serve(b).await;
        let mut tasks = Vec::new();
        for i in 0..16 {
            let base = if i % 2 == 0 { ua.clone() } else { ub.clone() };
            tasks.push(tokio::spawn(async move {
                let c = Client::new(&base).unwrap();
                let s = schema(V1)["schema"].as_str().unwrap().to_string();
                c.register(&format!("race-{}", i % 3), &s).await.unwrap()
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "one id for one schema on {url}: {ids:?}");
        let h = Http {
            base: ua,
            client: reqwest::Client::new(),
        };
        for s in 0..3 {
            assert_eq!(
                h.ok("GET", &format!("/subjects/race-{s}/versions"), None)
                    .await,
                json!([1])
            );
        }
        sa.cancel();
        sb.cancel();
    }
}

/// Writer `schema`, registered under the topic's subject, as a Confluent writer.
async fn writer(client: &Client, subject: &str, schema: &str) -> confluent::Writer {
    let id = client.register(subject, schema).await.unwrap();
    confluent::Writer::new(id, apache_avro::Schema::parse_str(schema).unwrap()).unwrap()
}

/// v2 orders and v3 orders (a currency with a default) in one topic, both read;
/// the incompatible v3 is refused with 409; an id the registry does not know is
/// retried, then dead-lettered as transient; a schema that is no order, and a
/// datum cut short, are dead-lettered at once.
async fn schema_evolution(broker: Broker) {
    let env = TestEnv::start(broker, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path()).await;
    let (url, _stop) = serve(store).await;
    let client = Client::new(&url).unwrap();
    let subject = registry::value_subject(&env.topic);
    let v2 = writer(&client, &subject, avro::ORDER_SCHEMA).await;
    let v3 = writer(&client, &subject, ORDER_V3).await;
    assert_ne!(v2.id(), v3.id());
    let refused = client.register(&subject, ORDER_V3_BAD).await.unwrap_err();
    assert_eq!(refused.code(), Some(409), "{refused}");
    let not_an_order = client
        .register(
            "elsewhere",
            r#"{"type":"record","name":"Ping","fields":[{"name":"at","type":"long"}]}"#,
        )
        .await
        .unwrap();

    let orders: Vec<_> = (0..6).map(|_| random_order()).collect();
    let mut messages: Vec<(Option<Vec<u8>>, Vec<u8>)> = orders
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let w = if i % 2 == 0 { &v2 } else { &v3 };
            (Some(o.order_id.clone().into_bytes()), w.encode(o).unwrap())
        })
        .collect();
    let mut unknown = vec![confluent::MAGIC];
    unknown.extend_from_slice(&999_999u32.to_be_bytes());
    unknown.extend_from_slice(&avro::encode_seed_datum(&random_order()));
    let mut ping = vec![confluent::MAGIC];
    ping.extend_from_slice(&not_an_order.to_be_bytes());
    ping.push(4);
    // Another producer's bytes under a good id, cut short: no order in them.
    let mut truncated = v2.encode(&random_order()).unwrap();
    truncated.truncate(9);
    messages.push((None, unknown));
    messages.push((Some(b"cut".to_vec()), truncated));
    messages.push((Some(b"ping".to_vec()), ping));
    env.produce_raw(messages).await;

    let mut cfg = env.processor_config(20);
    cfg.schemas = Arc::new(confluent::Schemas::new(Some(client)));
    cfg.membership = Membership::Dynamic;
    let log = Log::default();
    let report = process_to_end(cfg, Box::new(Simulated::default()), &log).await;
    assert_eq!(report.processed, 6, "{report:?}");
    assert_eq!(report.dead_lettered, 3, "{report:?}");
    let seen = log.lock().unwrap().clone();
    for o in &orders {
        assert!(
            seen.iter().any(
                |s| matches!(s, Seen::Processed { id, format: Format::Confluent, price, .. }
                if id == &o.order_id && *price == o.price)
            ),
            "{} processed from Confluent framing",
            o.order_id
        );
    }
    let dlq = env.read_dlq().await;
    let reasons: Vec<String> = dlq.iter().map(|e| format!("{e:?}")).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("999999") && r.contains("not in the registry")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not readable as an order")),
        "{reasons:?}"
    );
    let cut = format!("Confluent-framed Avro with schema id {}", v2.id());
    assert!(reasons.iter().any(|r| r.contains(&cut)), "{reasons:?}");
}

/// A registry that cannot be reached holds Confluent-framed orders back (no
/// attempt counted, nothing dead-lettered) until it answers.
async fn registry_down_waits(broker: Broker) {
    let env = TestEnv::start(broker, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path()).await;
    let (url, stop) = serve(store.clone()).await;
    let client = Client::new(&url).unwrap();
    let v2 = writer(
        &client,
        &registry::value_subject(&env.topic),
        avro::ORDER_SCHEMA,
    )
    .await;
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let orders: Vec<_> = (0..3).map(|_| random_order()).collect();
    env.produce_raw(
        orders
            .iter()
            .map(|o| (Some(o.order_id.clone().into_bytes()), v2.encode(o).unwrap()))
            .collect(),
    )
    .await;
    let mut cfg = env.processor_config(100);
    cfg.max_attempts = 2;
    cfg.schemas = Arc::new(confluent::Schemas::new(Some(client)));
    let log = Log::default();
    let run = {
        let log = log.clone();
        tokio::spawn(async move { process_to_end(cfg, Box::new(Simulated::default()), &log).await })
    };
    // Down for several backoffs: nothing may be dead-lettered meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
    let addr = url.trim_start_matches("http://");
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let again = CancellationToken::new();
    tokio::spawn(registry::http::run(
        listener,
        Registry::new(store),
        again.clone(),
    ));
    let report = within(60, run).await.unwrap();
    assert_eq!(
        (report.processed, report.dead_lettered),
        (3, 0),
        "{report:?}"
    );
    again.cancel();
}

on_both_brokers!(schema_evolution, registry_down_waits);

/// The Python interpreter of a venv with confluent-kafka's serializers:
/// ORDERFLOW_TEST_PYTHON (which .ci/run sets), else a venv made once under the
/// target directory from PyPI.
fn python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("ORDERFLOW_TEST_PYTHON") {
        return p.into();
    }
    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyvenv");
    let py = venv.join("bin/python");
    let ready = venv.join(".ready");
    if !ready.exists() {
        let ok = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && std::process::Command::new(&py)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "confluent-kafka[avro,schemaregistry]==2.16.1",
                ])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot make a Python venv with confluent-kafka (python3 -m venv, PyPI): set ORDERFLOW_TEST_PYTHON to a python that has it"
        );
        std::fs::write(&ready, "").unwrap();
    }
    py
}

fn interop(args: &[&str]) -> Vec<Value> {
    let out = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/registry_interop.py"
        ))
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "registry_interop.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Python's AvroSerializer registers the seed schema in our registry and
/// produces; orderflow processes those orders. orderflow produces Confluent
/// framing; Python's AvroDeserializer reads it.
async fn python_clients_interoperate(broker: Broker) {
    let env = TestEnv::start(broker, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite(dir.path()).await;
    let (url, _stop) = serve(store).await;
    let bootstrap = env.kafka.bootstrap_servers.clone();
    let (topic, url2, boot2) = (env.topic.clone(), url.clone(), bootstrap.clone());
    let sent = tokio::task::spawn_blocking(move || {
        interop(&[
            "produce",
            "--bootstrap",
            &boot2,
            "--registry",
            &url2,
            "--topic",
            &topic,
            "--count",
            "5",
        ])
    })
    .await
    .unwrap();
    assert_eq!(sent.len(), 5);

    let mut cfg = env.processor_config(20);
    cfg.schemas = Arc::new(confluent::Schemas::new(Some(Client::new(&url).unwrap())));
    let log = Log::default();
    let report = process_to_end(cfg, Box::new(Simulated::default()), &log).await;
    assert_eq!(
        (report.processed, report.dead_lettered),
        (5, 0),
        "{report:?}"
    );
    let seen = log.lock().unwrap().clone();
    for o in &sent {
        let id = o["orderId"].as_str().unwrap();
        let price = o["price"].as_f64().unwrap();
        assert!(
            seen.iter().any(|s| matches!(s, Seen::Processed { id: i, format: Format::Confluent, price: Some(p), .. }
                if i == id && (p - price).abs() < 0.001)),
            "{id} processed: {seen:?}"
        );
    }

    // The other way: orderflow writes, Python reads, on a topic of its own.
    let theirs = TestEnv::start(broker, 1).await;
    let client = Client::new(&url).unwrap();
    let w = writer(&client, &registry::value_subject(&theirs.topic), ORDER_V3).await;
    let orders: Vec<_> = (0..4).map(|_| random_order()).collect();
    theirs
        .produce_raw(
            orders
                .iter()
                .map(|o| (Some(o.order_id.clone().into_bytes()), w.encode(o).unwrap()))
                .collect(),
        )
        .await;
    let bootstrap = theirs.kafka.bootstrap_servers.clone();
    let topic = theirs.topic.clone();
    let read = tokio::task::spawn_blocking(move || {
        interop(&[
            "consume",
            "--bootstrap",
            &bootstrap,
            "--registry",
            &url,
            "--topic",
            &topic,
            "--count",
            "4",
            "--timeout",
            "60",
        ])
    })
    .await
    .unwrap();
    for o in &orders {
        let r = read
            .iter()
            .find(|r| r["orderId"] == o.order_id.as_str())
            .unwrap_or_else(|| panic!("{} read by Python: {read:?}", o.order_id));
        assert_eq!(r["product"], o.product.as_str());
        assert_eq!(r["user"], o.user.as_str());
        assert_eq!(r["quantity"], o.quantity);
        assert_eq!(r["currency"], "EUR");
    }
}

on_both_brokers!(python_clients_interoperate);
