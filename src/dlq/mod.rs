//! The dead-letter topic: the record format, the consumer that shows it, the
//! index of its records in the store, and their replay.

pub mod consumer;
pub mod index;
pub mod range;
pub mod record;
pub mod redrive;
