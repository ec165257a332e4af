//! What the processor tells its observer: for the console, metrics and tests.

use std::time::Duration;

use crate::{
    codec::Format, console::Console, dlq::record::ErrorKind, order::Order, store::Finished,
};

#[derive(Debug)]
pub enum Event<'a> {
    Processed {
        order: &'a Order,
        format: Format,
        avg: Option<f64>,
        partition: i32,
        offset: i64,
    },
    AttemptFailed {
        order_id: &'a str,
        attempt: u32,
        max_attempts: u32,
        reason: &'a str,
        retry_in: Duration,
    },
    DeadLettered {
        /// The order id, or `topic[partition]@offset` when the bytes did not decode.
        id: &'a str,
        order: Option<&'a Order>,
        reason: &'a str,
        kind: ErrorKind,
        attempts: u32,
        partition: i32,
        offset: i64,
    },
    /// A batch of finished orders is committed to the store (only with a store).
    Stored { orders: &'a [Finished] },
}

pub trait Observer: Send {
    fn on_event(&mut self, event: &Event<'_>);
}

impl<F: FnMut(&Event<'_>) + Send> Observer for F {
    fn on_event(&mut self, event: &Event<'_>) {
        self(event)
    }
}

/// The seed's console lines.
pub fn print_event(out: &Console, event: &Event<'_>) {
    match event {
        Event::Processed {
            order,
            format: Format::Json,
            ..
        } => out.line(format_args!(
            "Message received: {} {} from {}",
            order.product, order.quantity, order.user
        )),
        Event::Processed { order, avg, .. } => out.line(format_args!(
            "Processed {} | price={} | avg={}",
            order.order_id,
            crate::console::amount(order.price),
            crate::console::amount(*avg),
        )),
        Event::AttemptFailed {
            attempt,
            max_attempts,
            reason,
            ..
        } => out.line(format_args!(
            "Attempt {attempt}/{max_attempts} failed: {reason}"
        )),
        Event::DeadLettered { id, reason, .. } => out.line(format_args!("DLQ: {id} -> {reason}")),
        Event::Stored { .. } => {}
    }
}
