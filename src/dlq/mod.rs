//! The dead-letter topic: the record format and the consumer that shows it.

pub mod consumer;
pub mod record;
