//! The seed's stand-in for real order handling: a handler that fails the orders
//! a `--fail-when` rule matches, as the demo, `process` and the benchmark use it.

pub mod rule;

pub use rule::FailWhen;

use crate::{
    order::Order,
    processor::{Failure, Handler},
};

/// Succeeds unless `fail_when` matches, which it reports as a transient failure:
/// on every attempt, as in the seed, or on the first `fail_attempts` only, like a
/// fault that clears.
#[derive(Debug, Clone, Default)]
pub struct Simulated {
    pub fail_when: Option<FailWhen>,
    pub fail_attempts: Option<u32>,
}

impl Handler for Simulated {
    fn handle(&mut self, order: &Order, attempt: u32) -> Result<(), Failure> {
        if self.fail_attempts.is_some_and(|n| attempt > n) {
            return Ok(());
        }
        match self.fail_when.as_ref().and_then(|r| r.check(order)) {
            Some(reason) => Err(Failure::Transient(reason)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_fault_that_clears_fails_only_the_first_attempts() {
        let rule: FailWhen = "price>100".parse().unwrap();
        let mut order = crate::order::random_order();
        order.price = Some(120.0);
        let mut clears = Simulated {
            fail_when: Some(rule),
            fail_attempts: Some(2),
        };
        let ok: Vec<bool> = (1..=4).map(|a| clears.handle(&order, a).is_ok()).collect();
        assert_eq!(ok, [false, false, true, true]);
        let mut stays = Simulated {
            fail_when: Some(rule),
            fail_attempts: None,
        };
        assert!((1..=4).all(|a| stays.handle(&order, a).is_err()));
        order.price = Some(50.0);
        assert!(clears.handle(&order, 1).is_ok());
    }
}
