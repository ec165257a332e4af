//! Latency from an order's creation in the producer to its commit in the store,
//! at a fixed rate, with the processor running in this process so that it can
//! see the moment each batch is committed.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio_util::sync::CancellationToken;

use super::Error;
use crate::{
    kafka::KafkaConfig,
    processor::{self, Event, Processor},
    producer::{self, WireFormat},
    simulated::Simulated,
    store::Store,
};

#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub samples: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    /// Nearest-rank percentiles.
    fn of(mut micros: Vec<u64>) -> Option<Self> {
        micros.sort_unstable();
        let n = micros.len();
        let at = |p: f64| {
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            Duration::from_micros(micros[rank.clamp(1, n) - 1])
        };
        (n > 0).then(|| Latency {
            samples: n,
            p50: at(50.0),
            p95: at(95.0),
            p99: at(99.0),
            max: at(100.0),
        })
    }
}

pub struct Setup<'a> {
    pub kafka: &'a KafkaConfig,
    pub topic: &'a str,
    pub dlq_topic: &'a str,
    pub group: &'a str,
    pub store: Arc<Store>,
    pub rate: f64,
    pub orders: u64,
}

/// Orders produced before the measured ones, in seconds at the measured rate.
pub const WARM_UP_SECONDS: f64 = 3.0;

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Produces `orders` at `rate` after a warm-up of a few seconds at the same rate
/// (joining the group, the producer's start, the first fetches), and returns the
/// latencies of those orders.
pub async fn measure(s: Setup<'_>) -> Result<Latency, Error> {
    let warm_up = (s.rate * WARM_UP_SECONDS).ceil() as u64;
    let samples: Arc<Mutex<Vec<(i64, u64)>>> = Arc::default();
    let observer = {
        let samples = samples.clone();
        move |e: &Event<'_>| {
            if let Event::Stored { orders, .. } = e {
                let now = now_micros();
                samples.lock().expect("latency samples").extend(
                    orders
                        .iter()
                        .filter_map(|f| f.produced_ms)
                        .map(|p| (p, u64::try_from(now - p * 1000).unwrap_or(0))),
                );
            }
        }
    };
    let mut cfg = processor::Config::new(s.kafka.clone());
    cfg.topic = s.topic.to_string();
    cfg.dlq_topic = s.dlq_topic.to_string();
    cfg.group = s.group.to_string();
    let (shutdown, drain) = (CancellationToken::new(), CancellationToken::new());
    let task = tokio::spawn(
        Processor::new(cfg, Box::new(Simulated::default()), Box::new(observer))
            .with_store(s.store)
            .run(shutdown.clone(), drain.clone()),
    );
    let _stop = shutdown.drop_guard();
    let produce = producer::Config {
        kafka: s.kafka.clone(),
        topic: s.topic.to_string(),
        rate: Some(s.rate),
        count: Some(warm_up + s.orders),
        format: WireFormat::Avro,
        confluent: None,
        ids: crate::order::Ids::default(),
    };
    producer::run(&produce, producer::Output::Quiet, CancellationToken::new()).await?;
    drain.cancel();
    task.await.map_err(|e| Error::Incomplete {
        stage: "latency",
        detail: format!("the processor task failed: {e}"),
    })??;
    let mut samples = std::mem::take(&mut *samples.lock().expect("latency samples"));
    if samples.len() as u64 != warm_up + s.orders {
        return Err(Error::Incomplete {
            stage: "latency",
            detail: format!(
                "{} of {} orders were stored",
                samples.len(),
                warm_up + s.orders
            ),
        });
    }
    samples.sort_unstable();
    let measured = samples.split_off(warm_up as usize);
    Latency::of(measured.into_iter().map(|(_, micros)| micros).collect()).ok_or(Error::Incomplete {
        stage: "latency",
        detail: "no orders were measured".into(),
    })
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let l = Latency::of((1..=200).collect()).unwrap();
        assert_eq!(l.samples, 200);
        assert_eq!(l.p50, Duration::from_micros(100));
        assert_eq!(l.p95, Duration::from_micros(190));
        assert_eq!(l.p99, Duration::from_micros(198));
        assert_eq!(l.max, Duration::from_micros(200));
        assert_eq!(Latency::of(vec![7]).unwrap().p99, Duration::from_micros(7));
        assert!(Latency::of(Vec::new()).is_none());
    }
}
