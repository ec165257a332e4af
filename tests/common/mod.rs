//! Test harness: each test gets its own embedded broker on a free port with a
//! temporary data directory, and helpers to produce, process and read the DLQ.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use orderflow::{
    broker::EmbeddedBroker,
    codec::{Format, avro},
    dlq::{self, consumer::DlqEvent},
    kafka::KafkaConfig,
    order::{Order, random_order},
    processor::{self, Event, Handler, Processor, backoff::Backoff},
};
use rdkafka::producer::FutureRecord;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A child process killed with SIGKILL when dropped, so that a test that fails
/// leaves no process behind.
pub struct KillOnDrop(pub std::process::Child);

impl KillOnDrop {
    /// SIGKILL, as a crash would.
    pub fn kill(mut self) {
        self.stop();
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

pub const TOPIC: &str = "orders";
pub const DLQ: &str = "orders_dlq";

pub struct TestEnv {
    pub broker: EmbeddedBroker,
    pub kafka: KafkaConfig,
    _dir: tempfile::TempDir,
}

impl TestEnv {
    pub async fn start(partitions: i32) -> TestEnv {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("ORDERFLOW_LOG"))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let broker = EmbeddedBroker::start(SocketAddr::from(([127, 0, 0, 1], 0)), dir.path())
            .await
            .expect("embedded broker starts");
        let mut kafka = broker.kafka_config(&[], &[]);
        // Fast group joins and failure detection keep the tests short.
        kafka
            .overrides
            .push(("session.timeout.ms".into(), "6000".into()));
        kafka
            .overrides
            .push(("heartbeat.interval.ms".into(), "500".into()));
        kafka
            .create_topics(&[TOPIC, DLQ], partitions, 1)
            .await
            .expect("topics created");
        TestEnv {
            broker,
            kafka,
            _dir: dir,
        }
    }

    pub async fn produce_raw(&self, messages: Vec<(Option<Vec<u8>>, Vec<u8>)>) {
        self.producer().produce_raw(messages).await
    }

    pub async fn produce_orders(&self, orders: &[Order]) {
        self.producer().produce_orders(orders).await
    }

    pub fn producer(&self) -> Producer {
        Producer {
            kafka: self.kafka.clone(),
        }
    }

    pub fn processor_config(&self, backoff_ms: u64) -> processor::Config {
        let mut cfg = processor::Config::new(self.kafka.clone());
        cfg.backoff = Backoff {
            base: Duration::from_millis(backoff_ms),
            max: Duration::from_millis(backoff_ms * 8),
        };
        cfg.commit_interval = Duration::from_millis(100);
        cfg
    }

    /// Reads the DLQ to its end.
    pub async fn read_dlq(&self) -> Vec<DlqEvent> {
        let cfg = dlq::consumer::Config {
            kafka: self.kafka.clone(),
            topic: DLQ.into(),
            group: format!("dlq-reader-{}", uuid::Uuid::new_v4()),
        };
        let drain = CancellationToken::new();
        drain.cancel();
        let mut events = Vec::new();
        within(
            60,
            dlq::consumer::run(
                &cfg,
                |e| events.push(e.clone()),
                CancellationToken::new(),
                drain,
            ),
        )
        .await
        .expect("DLQ readable");
        events
    }
}

/// Sends test messages to the orders topic.
pub struct Producer {
    pub kafka: KafkaConfig,
}

impl Producer {
    pub async fn produce_raw(&self, messages: Vec<(Option<Vec<u8>>, Vec<u8>)>) {
        let producer = self.kafka.producer(&[]).expect("producer");
        for (key, payload) in &messages {
            let mut r = FutureRecord::to(TOPIC).payload(payload);
            if let Some(k) = key {
                r = r.key(k);
            }
            producer
                .send(r, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .expect("delivered");
        }
    }

    /// Produces orders as v2 Avro, keyed by order id.
    pub async fn produce_orders(&self, orders: &[Order]) {
        let w = avro::Writer::new();
        self.produce_raw(
            orders
                .iter()
                .map(|o| (Some(o.order_id.clone().into_bytes()), w.encode(o)))
                .collect(),
        )
        .await;
    }
}

/// What a test observer saw, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Processed {
        id: String,
        format: Format,
        price: Option<f64>,
        at: Instant,
    },
    Failed {
        id: String,
        attempt: u32,
    },
    Dead {
        id: String,
        attempts: u32,
        at: Instant,
    },
}

impl Seen {
    pub fn id(&self) -> &str {
        match self {
            Seen::Processed { id, .. } | Seen::Failed { id, .. } | Seen::Dead { id, .. } => id,
        }
    }
}

pub type Log = Arc<Mutex<Vec<Seen>>>;

pub fn recorder(log: &Log) -> Box<dyn processor::Observer> {
    let log = log.clone();
    Box::new(move |e: &Event<'_>| {
        let seen = match e {
            Event::Processed { order, format, .. } => Seen::Processed {
                id: order.order_id.clone(),
                format: *format,
                price: order.price,
                at: Instant::now(),
            },
            Event::AttemptFailed {
                order_id, attempt, ..
            } => Seen::Failed {
                id: order_id.to_string(),
                attempt: *attempt,
            },
            Event::DeadLettered { id, attempts, .. } => Seen::Dead {
                id: id.to_string(),
                attempts: *attempts,
                at: Instant::now(),
            },
            Event::Stored { .. } => return,
        };
        log.lock().unwrap().push(seen);
    })
}

/// Runs a processor until it has read everything and nothing is pending.
pub async fn process_to_end(
    cfg: processor::Config,
    handler: Box<dyn Handler>,
    log: &Log,
) -> processor::Report {
    let drain = CancellationToken::new();
    drain.cancel();
    within(
        120,
        Processor::new(cfg, handler, recorder(log)).run(CancellationToken::new(), drain),
    )
    .await
    .expect("processor runs to the end")
}

pub async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("did not finish within {secs} s"))
}

pub fn order_with_price(price: f64) -> Order {
    Order {
        price: Some(price),
        ..random_order()
    }
}
