//! Test harness: each test runs on the brokers that `ORDERFLOW_TEST_BROKER` selects
//! (`embedded`, `kafka` or `both`, the default), with topics and a group of its own:
//! on an embedded broker of its own (free port, temporary data directory), or on the
//! one-node Apache Kafka cluster that every test of the binary shares. Helpers
//! produce, process and read the DLQ.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use orderflow::{
    broker::EmbeddedBroker,
    codec::{Format, avro},
    dlq::{self, consumer::DlqEvent},
    kafka::KafkaConfig,
    local_kafka::{self, Cluster},
    order::{Order, random_order},
    processor::{self, Event, Handler, Processor, backoff::Backoff},
};
use rdkafka::producer::FutureRecord;
use tokio::time::Instant;

pub mod processes;
#[allow(unused_imports)] // not every test binary runs child processes
pub use processes::*;
pub mod stores;
#[allow(unused_imports)]
pub use stores::*;
use tokio_util::sync::CancellationToken;

/// The brokers a test can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    /// The embedded Tansu broker, one per test.
    Embedded,
    /// Apache Kafka: one node per test binary (see [`shared_kafka`]).
    Kafka,
}

impl Broker {
    /// Whether `ORDERFLOW_TEST_BROKER` (embedded, kafka or both; both by default)
    /// selects this broker. Any other value is a mistake, not a reason to run less.
    pub fn selected(self) -> bool {
        let choice = std::env::var("ORDERFLOW_TEST_BROKER").unwrap_or_else(|_| "both".into());
        match (choice.as_str(), self) {
            ("both", _) | ("embedded", Broker::Embedded) | ("kafka", Broker::Kafka) => true,
            ("embedded" | "kafka", _) => false,
            (other, _) => panic!("ORDERFLOW_TEST_BROKER={other}: expected embedded, kafka or both"),
        }
    }
}

/// Defines, for each named `async fn NAME(broker: Broker)`, the tests `NAME::embedded`
/// and `NAME::kafka`, each run only when its broker is selected.
#[macro_export]
macro_rules! on_both_brokers {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                $crate::common::run_on($crate::common::Broker::Embedded, super::$name).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kafka() {
                $crate::common::run_on($crate::common::Broker::Kafka, super::$name).await
            }
        }
    )*};
}

pub async fn run_on<F: Future<Output = ()>>(broker: Broker, test: impl FnOnce(Broker) -> F) {
    if broker.selected() {
        test(broker).await
    } else {
        eprintln!("not run on {broker:?}: ORDERFLOW_TEST_BROKER deselects it");
    }
}

/// The one-node Apache Kafka cluster of this test binary, started on first use in
/// a directory of its own under the target directory (emptied at start), and killed
/// when the binary exits. Fetching the runtime or starting the node fails the test.
pub fn shared_kafka() -> &'static Cluster {
    static KAFKA: OnceLock<Cluster> = OnceLock::new();
    KAFKA.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("kafka-{}", env!("CARGO_CRATE_NAME")));
        let _ = std::fs::remove_dir_all(&dir);
        Cluster::start(&local_kafka::Spec::new(1, dir)).unwrap_or_else(|e| {
            panic!(
                "Apache Kafka for the tests did not start: {e}\n(ORDERFLOW_TEST_BROKER=embedded runs the tests on the embedded broker alone)"
            )
        })
    })
}

pub struct TestEnv {
    /// Held so that the embedded broker lives as long as the test.
    pub broker: Option<EmbeddedBroker>,
    pub kafka: KafkaConfig,
    /// This test's topics and consumer group.
    pub topic: String,
    pub dlq: String,
    pub group: String,
    _dir: tempfile::TempDir,
}

impl TestEnv {
    pub async fn start(kind: Broker, partitions: i32) -> TestEnv {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("ORDERFLOW_LOG"))
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let (broker, kafka) = match kind {
            Broker::Embedded => {
                let broker =
                    EmbeddedBroker::start(SocketAddr::from(([127, 0, 0, 1], 0)), dir.path())
                        .await
                        .expect("embedded broker starts");
                let kafka = broker.kafka_config(&[], &[]);
                (Some(broker), kafka)
            }
            Broker::Kafka => {
                let cluster = tokio::task::spawn_blocking(shared_kafka).await.unwrap();
                (None, cluster.kafka_config())
            }
        };
        TestEnv::on(broker, kafka, partitions, 1, dir).await
    }

    /// A test on a cluster of its own (e.g. three Kafka nodes): its topics get
    /// `replication` replicas.
    pub async fn on_cluster(cluster: &Cluster, partitions: i32, replication: i32) -> TestEnv {
        TestEnv::on_kafka(cluster.kafka_config(), partitions, replication).await
    }

    /// A test on the Kafka cluster that `kafka` reaches (a listener of its choice).
    pub async fn on_kafka(kafka: KafkaConfig, partitions: i32, replication: i32) -> TestEnv {
        let dir = tempfile::tempdir().expect("temp dir");
        TestEnv::on(None, kafka, partitions, replication, dir).await
    }

    async fn on(
        broker: Option<EmbeddedBroker>,
        mut kafka: KafkaConfig,
        partitions: i32,
        replication: i32,
        dir: tempfile::TempDir,
    ) -> TestEnv {
        // Fast group joins and failure detection keep the tests short.
        kafka
            .overrides
            .push(("session.timeout.ms".into(), "6000".into()));
        kafka
            .overrides
            .push(("heartbeat.interval.ms".into(), "500".into()));
        let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let topic = format!("orders-{tag}");
        let dlq = format!("{topic}_dlq");
        kafka
            .create_topics(&[&topic, &dlq], partitions, replication)
            .await
            .expect("topics created");
        TestEnv {
            broker,
            kafka,
            topic,
            dlq,
            group: format!("order-group-{tag}"),
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
            topic: self.topic.clone(),
        }
    }

    pub fn processor_config(&self, backoff_ms: u64) -> processor::Config {
        let mut cfg = processor::Config::new(self.kafka.clone());
        cfg.topic = self.topic.clone();
        cfg.dlq_topic = self.dlq.clone();
        cfg.group = self.group.clone();
        cfg.backoff = Backoff {
            base: Duration::from_millis(backoff_ms),
            max: Duration::from_millis(backoff_ms * 8),
        };
        cfg.commit_interval = Duration::from_millis(100);
        cfg
    }

    /// Reads the DLQ to its end.
    /// Kafka's committed offset of the test's group on partition 0 (0 if none).
    pub fn committed_offset(&self) -> i64 {
        use rdkafka::{
            Offset, TopicPartitionList,
            consumer::{BaseConsumer, Consumer},
        };
        let consumer: BaseConsumer = self
            .kafka
            .client_config(&[("group.id", &self.group)])
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, 0);
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap();
        match committed.elements()[0].offset() {
            Offset::Offset(o) => o,
            _ => 0,
        }
    }

    pub async fn read_dlq(&self) -> Vec<DlqEvent> {
        let cfg = dlq::consumer::Config {
            kafka: self.kafka.clone(),
            topic: self.dlq.clone(),
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

/// Sends test messages to a test's orders topic.
pub struct Producer {
    pub kafka: KafkaConfig,
    pub topic: String,
}

impl Producer {
    /// Sends the messages in order, all queued at once, and waits for every
    /// delivery; a message that is not delivered fails the test.
    pub async fn produce_raw(&self, messages: Vec<(Option<Vec<u8>>, Vec<u8>)>) {
        let producer = self.kafka.producer().expect("producer");
        let mut deliveries = Vec::with_capacity(messages.len());
        for (key, payload) in &messages {
            let mut r = FutureRecord::to(&self.topic).payload(payload);
            if let Some(k) = key {
                r = r.key(k);
            }
            deliveries.push(
                producer
                    .send_result(r)
                    .map_err(|(e, _)| e)
                    .expect("message queued"),
            );
        }
        for d in deliveries {
            d.await
                .expect("producer alive")
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
            Event::Stored { .. } | Event::Backlog { .. } => return,
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
