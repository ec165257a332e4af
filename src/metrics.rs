//! Prometheus metrics: the processor's counts, latencies and backlog, and the
//! build, served on `GET /metrics` as OpenMetrics text or, to a client that
//! does not ask for that, the classic text format.
//!
//! Names follow Prometheus' conventions: one `orderflow_` prefix, base units
//! (seconds), counters ending in `_total` (prometheus-client appends it), and
//! only bounded labels (format, error kind, outcome, topic, partition), never an
//! order id. Every labelled series the processor feeds is made up front, so the
//! hot path is an atomic add per counter and an uncontended lock per histogram
//! observation (prometheus-client's), with no allocation.

use std::{collections::BTreeSet, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram, info::Info},
    registry::{Registry, Unit},
};
use tokio_util::sync::CancellationToken;

use crate::{
    codec::Format,
    dlq::record::ErrorKind,
    order::now_ms,
    processor::{Event, Observer, Times},
};

/// What `GET /metrics` answers a client that asks for it (Prometheus does):
/// the OpenMetrics text format, which prometheus-client writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// What it answers anyone else (curl, promtool, most parsers): the classic text format.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The answer to `GET /metrics`: OpenMetrics when the `Accept` header names
/// it, else the classic text format.
pub fn respond(headers: &header::HeaderMap, openmetrics: String) -> axum::response::Response {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        ([(header::CONTENT_TYPE, CONTENT_TYPE)], openmetrics).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, CLASSIC_CONTENT_TYPE)],
            to_classic(&openmetrics),
        )
            .into_response()
    }
}

/// OpenMetrics text as the classic format (0.0.4) has it: a counter's family
/// is named with its `_total`, an info metric is a gauge named `_info`, and
/// there are no `# UNIT` or `# EOF` lines. Samples are the same in both.
pub fn to_classic(openmetrics: &str) -> String {
    let mut types = std::collections::HashMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            types.insert(name, kind);
        }
    }
    let classic_name = |name: &str| match types.get(name) {
        Some(&"counter") => format!("{name}_total"),
        Some(&"info") => format!("{name}_info"),
        _ => name.to_string(),
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# EOF") || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            let kind = match kind {
                "info" => "gauge",
                "unknown" => "untyped",
                k => k,
            };
            out.push_str(&format!("# TYPE {} {kind}\n", classic_name(name)));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ")
            && let Some((name, help)) = rest.split_once(' ')
        {
            out.push_str(&format!("# HELP {} {help}\n", classic_name(name)));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FormatLabel {
    format: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

const FORMATS: [Format; 4] = [
    Format::Avro,
    Format::Json,
    Format::SeedAvro,
    Format::Confluent,
];
const KINDS: [ErrorKind; 2] = [ErrorKind::Transient, ErrorKind::Permanent];

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Avro => "avro",
        Format::Json => "json",
        Format::SeedAvro => "seed-avro",
        Format::Confluent => "confluent",
    }
}

fn format_index(f: Format) -> usize {
    match f {
        Format::Avro => 0,
        Format::Json => 1,
        Format::SeedAvro => 2,
        Format::Confluent => 3,
    }
}

fn kind_index(k: ErrorKind) -> usize {
    match k {
        ErrorKind::Transient => 0,
        ErrorKind::Permanent => 1,
    }
}

/// Latencies from a message's production or arrival: from a millisecond to
/// beyond the default backoff's cap (30 s) and a backlog of minutes.
const LATENCY_BUCKETS: [f64; 18] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

/// A store transaction: a few ms for a small SQLite batch, up to seconds for
/// 5,000 orders on a remote PostgreSQL under load.
const STORE_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One histogram per outcome, made up front.
struct ByOutcome {
    processed: Histogram,
    dead_lettered: Histogram,
}

impl ByOutcome {
    fn register(registry: &mut Registry, name: &str, help: &str) -> Self {
        let family = Family::<OutcomeLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS)
        });
        let get = |outcome| family.get_or_create_owned(&OutcomeLabel { outcome });
        let by = ByOutcome {
            processed: get("processed"),
            dead_lettered: get("dead_lettered"),
        };
        registry.register_with_unit(name, help, Unit::Seconds, family);
        by
    }
}

/// The registry and the handles the processor's events update.
pub struct Metrics {
    registry: Registry,
    processed: [Counter; 4],
    attempts_failed: [Counter; 2],
    dead_lettered: [Counter; 2],
    end_to_end: ByOutcome,
    processing: ByOutcome,
    store_batch: Histogram,
    consumer_lag: Family<PartitionLabels, Gauge>,
    retries_waiting: Gauge,
}

/// A registry under the `orderflow_` prefix with the build's info, for the
/// processor's metrics or another process's.
pub fn registry() -> Registry {
    let mut registry = Registry::with_prefix("orderflow");
    registry.register(
        "build",
        "The build: its version",
        Info::new(VersionLabel {
            version: env!("CARGO_PKG_VERSION"),
        }),
    );
    registry
}

/// What a metrics endpoint serves: OpenMetrics text.
pub trait Exposition: Send + Sync + 'static {
    fn encode(&self) -> String;
}

impl Exposition for Metrics {
    fn encode(&self) -> String {
        Metrics::encode(self)
    }
}

/// The OpenMetrics text of a registry.
pub fn encode_registry(registry: &Registry) -> String {
    let mut out = String::with_capacity(8 * 1024);
    encode(&mut out, registry).expect("writing to a String does not fail");
    out
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = registry();

        let processed = Family::<FormatLabel, Counter>::default();
        let processed_by = FORMATS.map(|f| {
            processed.get_or_create_owned(&FormatLabel {
                format: format_name(f),
            })
        });
        registry.register(
            "orders_processed",
            "Orders processed successfully, by wire format",
            processed,
        );

        let by_kind = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<KindLabel, Counter>::default();
            let counters =
                KINDS.map(|k| family.get_or_create_owned(&KindLabel { kind: k.as_str() }));
            registry.register(name, help, family);
            counters
        };
        let attempts_failed = by_kind(
            &mut registry,
            "attempts_failed",
            "Attempts that failed, by error kind: transient ones (the summary's failed attempts) may be retried, a permanent one (undecodable, invalid or refused) sends its message to the DLQ at once",
        );
        let dead_lettered = by_kind(
            &mut registry,
            "orders_dead_lettered",
            "Messages written to the dead-letter topic, by error kind",
        );

        let end_to_end = ByOutcome::register(
            &mut registry,
            "order_end_to_end",
            "From a message's Kafka timestamp (its production) to its outcome, processed or dead-lettered (DLQ write landed)",
        );
        let processing = ByOutcome::register(
            &mut registry,
            "order_processing",
            "From a message's arrival at this processor to its outcome, retries and DLQ write included",
        );

        let store_batch = Histogram::new(STORE_BUCKETS);
        registry.register_with_unit(
            "store_batch_duration",
            "The store transaction of one batch of finished orders (successful ones)",
            Unit::Seconds,
            store_batch.clone(),
        );

        let consumer_lag = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "consumer_lag",
            "Messages of an assigned partition not finished yet: its high watermark less the offset the next commit reaches",
            consumer_lag.clone(),
        );
        let retries_waiting = Gauge::default();
        registry.register(
            "retries_waiting",
            "Messages waiting for a timed retry, of their handling or of their DLQ write",
            retries_waiting.clone(),
        );

        Metrics {
            registry,
            processed: processed_by,
            attempts_failed,
            dead_lettered,
            end_to_end,
            processing,
            store_batch,
            consumer_lag,
            retries_waiting,
        }
    }

    /// For more families (under the same `orderflow_` prefix), before the
    /// metrics are shared.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The OpenMetrics text of everything registered.
    pub fn encode(&self) -> String {
        encode_registry(&self.registry)
    }

    /// An observer that updates these metrics and hands every event on to `inner`.
    pub fn observer(self: &Arc<Self>, inner: Box<dyn Observer>) -> Box<dyn Observer> {
        Box::new(MetricsObserver {
            metrics: self.clone(),
            inner,
            lag_partitions: BTreeSet::new(),
        })
    }

    fn latency(&self, times: &Times, processed: bool) {
        let (e2e, processing) = if processed {
            (&self.end_to_end.processed, &self.processing.processed)
        } else {
            (
                &self.end_to_end.dead_lettered,
                &self.processing.dead_lettered,
            )
        };
        processing.observe(times.received.elapsed().as_secs_f64());
        // Clocks of producer and processor differ: a message from the future
        // took no time rather than a negative one.
        if let Some(produced) = times.produced_ms.filter(|t| *t > 0) {
            e2e.observe((now_ms() - produced).max(0) as f64 / 1000.0);
        }
    }
}

struct MetricsObserver {
    metrics: Arc<Metrics>,
    inner: Box<dyn Observer>,
    /// The partitions with a lag series, to drop those no longer assigned.
    lag_partitions: BTreeSet<i32>,
}

impl MetricsObserver {
    fn backlog(&mut self, topic: &str, retries_waiting: usize, lag: &[(i32, i64)]) {
        let m = &self.metrics;
        m.retries_waiting.set(retries_waiting as i64);
        let labels = |partition| PartitionLabels {
            topic: topic.to_string(),
            partition,
        };
        let now: BTreeSet<i32> = lag.iter().map(|(p, _)| *p).collect();
        for gone in self.lag_partitions.difference(&now) {
            m.consumer_lag.remove(&labels(*gone));
        }
        for (p, messages) in lag {
            m.consumer_lag.get_or_create(&labels(*p)).set(*messages);
        }
        self.lag_partitions = now;
    }
}

impl Observer for MetricsObserver {
    fn on_event(&mut self, event: &Event<'_>) {
        let m = &self.metrics;
        match event {
            Event::Processed { format, times, .. } => {
                m.processed[format_index(*format)].inc();
                m.latency(times, true);
            }
            // Only transient failures are told as such: a permanent one is the
            // message's last attempt, told as its dead-lettering.
            Event::AttemptFailed { .. } => {
                m.attempts_failed[kind_index(ErrorKind::Transient)].inc();
            }
            Event::DeadLettered { kind, times, .. } => {
                if *kind == ErrorKind::Permanent {
                    m.attempts_failed[kind_index(ErrorKind::Permanent)].inc();
                }
                m.dead_lettered[kind_index(*kind)].inc();
                m.latency(times, false);
            }
            Event::Stored { took, .. } => m.store_batch.observe(took.as_secs_f64()),
            Event::Backlog {
                topic,
                retries_waiting,
                lag,
            } => self.backlog(topic, *retries_waiting, lag),
        }
        self.inner.on_event(event);
    }
}

async fn metrics_handler<M: Exposition>(
    State(metrics): State<Arc<M>>,
    headers: header::HeaderMap,
) -> impl IntoResponse {
    respond(&headers, metrics.encode())
}

/// The metrics endpoint: `GET /metrics` and `GET /healthz` (200 "ok"), until
/// `shutdown` is cancelled. Connections still open then get a moment to finish.
pub async fn serve<M: Exposition>(
    listener: tokio::net::TcpListener,
    metrics: Arc<M>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler::<M>))
        .route("/healthz", get(|| async { (StatusCode::OK, "ok") }))
        .with_state(metrics);
    let stopping = shutdown.clone();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopping.cancelled().await })
        .into_future();
    // A scraper holding a keep-alive connection must not keep the process up.
    tokio::select! {
        result = server => result,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        } => Ok(()),
    }
}

/// Binds `addr` for [`serve`], with an error that names the flag's value.
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener, Error> {
    let parsed: SocketAddr = addr.parse().map_err(|_| Error::Address(addr.to_string()))?;
    tokio::net::TcpListener::bind(parsed)
        .await
        .map_err(|source| Error::Bind {
            addr: parsed,
            source,
        })
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "metrics address {0:?} is not HOST:PORT with an IP address, e.g. 127.0.0.1:9464 or [::]:9464"
    )]
    Address(String),
    #[error("listening for metrics on {addr} failed: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::random_order;

    #[test]
    fn the_classic_format_names_counters_by_their_samples() {
        let metrics = Metrics::new();
        let classic = to_classic(&metrics.encode());
        for line in [
            "# TYPE orderflow_orders_processed_total counter",
            "orderflow_orders_processed_total{format=\"avro\"} 0",
            "# TYPE orderflow_build_info gauge",
            "# TYPE orderflow_order_end_to_end_seconds histogram",
            "# TYPE orderflow_retries_waiting gauge",
        ] {
            assert!(
                classic.lines().any(|l| l == line),
                "{line:?} in:\n{classic}"
            );
        }
        assert!(
            classic
                .lines()
                .filter(|l| l.starts_with("# HELP orderflow_orders_processed"))
                .all(|l| l.starts_with("# HELP orderflow_orders_processed_total ")),
            "{classic}"
        );
        assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"));
    }

    fn times() -> Times {
        Times {
            produced_ms: Some(now_ms() - 1500),
            received: tokio::time::Instant::now(),
        }
    }

    #[test]
    fn events_become_series_and_a_revoked_partition_loses_its_lag() {
        let metrics = Arc::new(Metrics::new());
        let mut o = metrics.observer(Box::new(|_: &Event<'_>| {}));
        let order = random_order();
        o.on_event(&Event::Processed {
            order: &order,
            format: Format::Json,
            avg: None,
            partition: 0,
            offset: 0,
            times: times(),
        });
        o.on_event(&Event::DeadLettered {
            id: "orders[0]@1",
            order: None,
            reason: "undecodable message",
            kind: ErrorKind::Permanent,
            attempts: 1,
            partition: 0,
            offset: 1,
            times: times(),
        });
        fn backlog(lag: &[(i32, i64)]) -> Event<'_> {
            Event::Backlog {
                topic: "orders",
                retries_waiting: 2,
                lag,
            }
        }
        o.on_event(&backlog(&[(0, 5), (1, 7)]));
        o.on_event(&backlog(&[(1, 3)]));
        let text = metrics.encode();
        for line in [
            "orderflow_orders_processed_total{format=\"json\"} 1",
            "orderflow_orders_processed_total{format=\"avro\"} 0",
            "orderflow_attempts_failed_total{kind=\"permanent\"} 1",
            "orderflow_orders_dead_lettered_total{kind=\"permanent\"} 1",
            "orderflow_order_end_to_end_seconds_count{outcome=\"processed\"} 1",
            "orderflow_order_end_to_end_seconds_bucket{le=\"1.0\",outcome=\"processed\"} 0",
            "orderflow_order_end_to_end_seconds_bucket{le=\"2.5\",outcome=\"processed\"} 1",
            "orderflow_consumer_lag{topic=\"orders\",partition=\"1\"} 3",
            "orderflow_retries_waiting 2",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in:\n{text}");
        }
        let info = format!(
            "orderflow_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.lines().any(|l| l == info), "{info:?} in:\n{text}");
        assert!(!text.contains("partition=\"0\""), "{text}");
    }
}
