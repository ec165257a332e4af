//! What the processor tells its observer: for the console, metrics and tests.

use std::time::Duration;

use tokio::time::Instant;

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
        times: Times,
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
        times: Times,
    },
    /// A batch of finished orders is committed to the store (only with a store),
    /// in a transaction that took `took`.
    Stored {
        orders: &'a [Finished],
        took: Duration,
    },
    /// What waits, on every commit tick: messages waiting for a timed retry (of
    /// their handling or of their DLQ write) and, per assigned partition that has
    /// a position, the messages not finished yet (unread or unfinished).
    Backlog {
        topic: &'a str,
        retries_waiting: usize,
        lag: &'a [(i32, i64)],
    },
}

/// When a message was produced and received, for latencies.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    /// The record's Kafka timestamp (the producer's clock, or the broker's with
    /// LogAppendTime), in ms since the epoch.
    pub produced_ms: Option<i64>,
    /// When this processor took it in (before any retry).
    pub received: Instant,
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
        Event::Stored { .. } | Event::Backlog { .. } => {}
    }
}
