//! The business step the processor applies to each valid order.

use crate::order::Order;

/// Why handling an order failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Might succeed later: retried with backoff, dead-lettered after the last attempt.
    Transient(String),
    /// Will never succeed: dead-lettered at once.
    Permanent(String),
}

/// The processor owns retries, ordering, dead-lettering and offsets; a handler
/// only says whether it worked.
pub trait Handler: Send {
    /// `attempt` starts at 1.
    fn handle(&mut self, order: &Order, attempt: u32) -> Result<(), Failure>;
}
