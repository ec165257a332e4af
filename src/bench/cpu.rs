//! CPU use during a stage. Besides the total, a sampler reads this process's and
//! the machine's CPU time every 0.1 s. With the embedded broker in this process,
//! that shows whether the broker is bound by one core while the machine has CPU
//! to spare: Tansu 0.6 serves every storage request on one task, one at a time.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::resources::{cpu_seconds, machine_cpu_seconds};

const INTERVAL: Duration = Duration::from_millis(100);
/// A sample in which this process used at least this many cores counts as busy:
/// the broker working, not waiting for the next request.
const BUSY_CORES: f64 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    /// CPU time this process used, in seconds.
    pub seconds: f64,
    pub busy: Option<Busy>,
}

/// The samples in which this process was busy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Busy {
    pub samples: usize,
    pub of: usize,
    /// Cores this process used, on average over those samples.
    pub cores: f64,
    /// Cores the whole machine used over the same samples.
    pub machine: f64,
}

/// This process's cores and the machine's busy cores over one interval.
type Sample = (f64, f64);

/// Runs `f` and says how much CPU this process used meanwhile, and how.
pub async fn with_cpu<T>(f: impl Future<Output = T>) -> (T, Option<CpuUse>) {
    let before = cpu_seconds();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || sample(&stop))
    };
    let out = f.await;
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().unwrap_or_default();
    let used = before.zip(cpu_seconds()).map(|(b, a)| CpuUse {
        seconds: a - b,
        busy: busy(&samples),
    });
    (out, used)
}

fn sample(stop: &AtomicBool) -> Vec<Sample> {
    let read = || Some((Instant::now(), cpu_seconds()?, machine_cpu_seconds()?.0));
    let mut samples = Vec::new();
    let Some(mut last) = read() else {
        return samples;
    };
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(INTERVAL);
        let Some(now) = read() else { break };
        let wall = now.0.duration_since(last.0).as_secs_f64();
        samples.push(((now.1 - last.1) / wall, (now.2 - last.2) / wall));
        last = now;
    }
    samples
}

fn busy(samples: &[Sample]) -> Option<Busy> {
    let busy: Vec<&Sample> = samples.iter().filter(|s| s.0 >= BUSY_CORES).collect();
    let n = busy.len() as f64;
    (!busy.is_empty()).then(|| Busy {
        samples: busy.len(),
        of: samples.len(),
        cores: busy.iter().map(|s| s.0).sum::<f64>() / n,
        machine: busy.iter().map(|s| s.1).sum::<f64>() / n,
    })
}

/// Where a stage's CPU went. With the embedded broker this process is the broker
/// (plus the no-op consumer in 1b), and `process` runs in a process of its own.
pub fn note(stage: &str, embedded: bool, here: Option<CpuUse>, child: Option<f64>) -> String {
    let secs = |c: Option<f64>| c.map_or("unknown".into(), |c| format!("{c:.1} s"));
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let total = secs(here.map(|c| c.seconds));
    let how = |what: &str| match here.and_then(|c| c.busy) {
        Some(b) => format!(
            " {what} used at least half a core in {} of {} tenths of a second; in those, {:.2} cores on average, and the whole machine {:.2} of {cpus}.",
            b.samples, b.of, b.cores, b.machine
        ),
        None => String::new(),
    };
    match (embedded, child.is_some()) {
        (true, true) => format!(
            "{stage}: CPU meanwhile on {cpus} CPUs: embedded broker {total}, processor {} (its start-up included).{}",
            secs(child),
            how("The broker")
        ),
        (true, false) => format!(
            "{stage}: CPU meanwhile on {cpus} CPUs: embedded broker and no-op consumer {total}.{}",
            how("Broker and consumer")
        ),
        (false, _) => format!(
            "{stage}: CPU meanwhile on {cpus} CPUs: this process {total}, processor {}.",
            secs(child)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_busy_samples_are_averaged() {
        let samples = [(0.0, 0.1), (1.0, 1.2), (0.9, 1.0), (0.4, 2.0), (1.1, 1.4)];
        let b = busy(&samples).unwrap();
        assert_eq!((b.samples, b.of), (3, 5));
        assert!((b.cores - 1.0).abs() < 1e-9, "{b:?}");
        assert!((b.machine - 1.2).abs() < 1e-9, "{b:?}");
        assert_eq!(busy(&[(0.2, 1.0)]), None);
    }

    #[tokio::test]
    #[cfg(target_os = "linux")]
    async fn a_stage_that_spins_is_sampled_as_busy() {
        let (_, used) = with_cpu(async { crate::resources::spin(Duration::from_secs(1)) }).await;
        let used = used.expect("Linux has /proc");
        assert!(used.seconds >= 0.3, "{used:?}");
        let b = used.busy.expect("a spinning stage has busy samples");
        assert!(b.of >= 8 && b.samples >= 1, "{b:?}");
        // The machine's busy time includes this process's (both counted in 10 ms ticks).
        assert!(b.machine >= b.cores - 0.2, "{b:?}");
    }
}
