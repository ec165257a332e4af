//! A deadline kept across turns of the event loop. A fresh `sleep_until` per turn
//! registered a timer for every message; this one is re-armed only when its
//! deadline changes.

use std::pin::Pin;

use tokio::time::{Instant, Sleep};

pub struct Timer {
    sleep: Pin<Box<Sleep>>,
    at: Option<Instant>,
}

impl Timer {
    pub fn new() -> Self {
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            at: None,
        }
    }

    /// Sets the deadline; `None` disarms it.
    pub fn set(&mut self, at: Option<Instant>) {
        if at != self.at {
            if let Some(t) = at {
                self.sleep.as_mut().reset(t);
            }
            self.at = at;
        }
    }

    pub fn is_armed(&self) -> bool {
        self.at.is_some()
    }

    /// Resolves at the deadline (at once if it has passed) and disarms the timer.
    pub async fn fired(&mut self) {
        self.sleep.as_mut().await;
        self.at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_latest_deadline_and_can_fire_again() {
        let mut t = Timer::new();
        assert!(!t.is_armed());
        let start = Instant::now();
        t.set(Some(start + Duration::from_secs(5)));
        t.set(Some(start + Duration::from_secs(2)));
        t.fired().await;
        assert_eq!(Instant::now(), start + Duration::from_secs(2));
        assert!(!t.is_armed());
        // The same deadline again, now past: it fires at once.
        t.set(Some(start + Duration::from_secs(2)));
        t.fired().await;
        assert_eq!(Instant::now(), start + Duration::from_secs(2));
    }
}
