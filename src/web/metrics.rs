//! The console's own metrics, served by `serve --metrics-listen` beside the
//! build info: requests by area and status class, signed-in sessions, replays
//! running in this process, and orders placed.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::App;
use crate::metrics::{self, Exposition};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `api`, `page`, `events` or `static`.
    pub area: &'static str,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub code: &'static str,
}

pub struct ConsoleMetrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub orders_placed: Counter,
    sessions: Gauge,
    replays_running: Gauge,
}

impl ConsoleMetrics {
    pub fn new() -> Self {
        let mut registry = metrics::registry();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "console_requests",
            "Requests the web console answered, by area and status class",
            requests.clone(),
        );
        let orders_placed = Counter::default();
        registry.register(
            "console_orders_placed",
            "Orders placed through the console and written to Kafka",
            orders_placed.clone(),
        );
        let sessions = Gauge::default();
        registry.register(
            "console_sessions",
            "Signed-in browser sessions",
            sessions.clone(),
        );
        let replays_running = Gauge::default();
        registry.register(
            "console_replays_running",
            "Replay jobs running in this console's process",
            replays_running.clone(),
        );
        ConsoleMetrics {
            registry,
            requests,
            orders_placed,
            sessions,
            replays_running,
        }
    }
}

pub fn area(path: &str) -> &'static str {
    if path.starts_with("/api/") {
        "api"
    } else if path.starts_with("/events/") {
        "events"
    } else if path.starts_with("/static/") {
        "static"
    } else {
        "page"
    }
}

pub fn code(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Exposition for App {
    fn encode(&self) -> String {
        let m = &self.metrics;
        m.sessions.set(self.sessions.active() as i64);
        m.replays_running
            .set(self.running.lock().expect("running lock").len() as i64);
        metrics::encode_registry(&m.registry)
    }
}
