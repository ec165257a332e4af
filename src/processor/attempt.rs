//! One attempt at a message: decode, validate, handle, and what follows (done,
//! retry after a backoff, or dead-letter). No Kafka in here: the event loop
//! carries the outcome out.

use std::{sync::Arc, time::Duration};

use super::{Failure, Handler, backoff::Backoff, keys::Job};
use crate::{
    codec::{
        DecodeError, Decoder,
        confluent::{SchemaError, Schemas},
    },
    dlq::record::ErrorKind,
};

#[derive(Debug, PartialEq)]
pub enum Outcome {
    Done,
    Retry(Duration),
    /// Bound for the DLQ; the reason is in the job.
    DeadLetter,
}

/// What one attempt did: its outcome, and the reason when the handler failed
/// in a way a retry may fix.
#[derive(Debug)]
pub struct Attempt {
    pub outcome: Outcome,
    pub transient: Option<String>,
}

impl From<Outcome> for Attempt {
    fn from(outcome: Outcome) -> Self {
        Attempt {
            outcome,
            transient: None,
        }
    }
}

pub struct Attempts {
    decoder: Decoder,
    handler: Box<dyn Handler>,
    max_attempts: u32,
    backoff: Backoff,
}

impl Attempts {
    pub fn new(
        decoder: Decoder,
        handler: Box<dyn Handler>,
        max_attempts: u32,
        backoff: Backoff,
    ) -> Self {
        Attempts {
            decoder,
            handler,
            max_attempts,
            backoff,
        }
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Where the writer schemas of Confluent-framed messages are kept: the
    /// event loop fetches a message's before its first attempt.
    pub fn schemas(&self) -> Arc<Schemas> {
        self.decoder.schemas().clone()
    }

    /// Tries `job` once more. Bytes that do not decode and orders that fail
    /// validation go to the DLQ at once; a job whose DLQ write failed is not
    /// handled again.
    pub fn attempt(&mut self, job: &mut Job) -> Attempt {
        if job.dlq_pending {
            return Outcome::DeadLetter.into();
        }
        if job.decoded.is_none() {
            match self.decoder.decode(&job.payload) {
                Ok(d) => job.decoded = Some(d),
                Err(DecodeError::Schema(e)) => return self.schema_missing(job, e),
                Err(e) => return permanent(job, format!("undecodable message: {e}")).into(),
            }
        }
        let order = &job.decoded.as_ref().expect("decoded above").0;
        if let Err(e) = order.validate() {
            return permanent(job, format!("invalid order: {e}")).into();
        }
        job.attempts += 1;
        match self.handler.handle(order, job.attempts) {
            Ok(()) => Outcome::Done.into(),
            Err(Failure::Permanent(reason)) => {
                job.note_failure(&reason);
                dead_letter(job, reason, ErrorKind::Permanent).into()
            }
            Err(Failure::Transient(reason)) => self.transient(job, reason),
        }
    }
}

impl Attempts {
    /// A failure a retry may fix: after a backoff, or to the DLQ after the
    /// last attempt (counted by the caller).
    fn transient(&self, job: &mut Job, reason: String) -> Attempt {
        job.note_failure(&reason);
        let outcome = if job.attempts < self.max_attempts {
            Outcome::Retry(self.backoff.delay(job.attempts))
        } else {
            dead_letter(job, reason.clone(), ErrorKind::Transient)
        };
        Attempt {
            outcome,
            transient: Some(reason),
        }
    }

    /// A message whose writer schema is not at hand. While the registry cannot
    /// be reached the message waits, its attempts uncounted, and the messages
    /// after it on its key wait too: nothing is dead-lettered for an outage. An
    /// id the registry does not know is a transient failure (a registry may
    /// catch up), dead-lettered after the last attempt; a schema that is no
    /// order, or no registry to ask, is permanent.
    fn schema_missing(&mut self, job: &mut Job, e: SchemaError) -> Attempt {
        let reason = format!("undecodable message: {e}");
        match e {
            SchemaError::Waiting(id, _) => {
                let schemas = self.schemas();
                tokio::spawn(async move { schemas.load(id).await });
                Outcome::Retry(self.backoff.delay(1)).into()
            }
            SchemaError::Unknown(..) => {
                job.attempts += 1;
                self.transient(job, reason)
            }
            SchemaError::NoRegistry(_) | SchemaError::Unreadable(..) => {
                permanent(job, reason).into()
            }
        }
    }
}

fn permanent(job: &mut Job, reason: String) -> Outcome {
    job.attempts += 1;
    job.note_failure(&reason);
    dead_letter(job, reason, ErrorKind::Permanent)
}

fn dead_letter(job: &mut Job, reason: String, kind: ErrorKind) -> Outcome {
    job.dlq_reason = Some((reason, kind));
    Outcome::DeadLetter
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{codec::json, order::random_order, processor::keys, simulated::Simulated};

    fn attempts(fail_when: &str) -> Attempts {
        let handler = Simulated {
            fail_when: Some(fail_when.parse().unwrap()),
            fail_attempts: None,
        };
        let backoff = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        Attempts::new(Decoder::default(), Box::new(handler), 3, backoff)
    }

    fn job(payload: Vec<u8>) -> Job {
        Job {
            payload,
            ..keys::tests::job(0, 7)
        }
    }

    fn reason(job: &Job) -> (&str, ErrorKind) {
        let (r, k) = job.dlq_reason.as_ref().expect("bound for the DLQ");
        (r, *k)
    }

    #[test]
    fn a_transient_failure_backs_off_then_dead_letters_after_the_last_attempt() {
        let mut a = attempts("quantity>5");
        let mut order = random_order();
        order.quantity = 9;
        let mut j = job(json::encode(&order));
        for nominal in [1.0, 2.0] {
            let Outcome::Retry(delay) = a.attempt(&mut j).outcome else {
                panic!("a transient failure before the last attempt is retried");
            };
            let secs = delay.as_secs_f64();
            assert!(
                secs >= nominal / 2.0 && secs <= nominal,
                "{secs} s after a nominal {nominal} s"
            );
        }
        assert_eq!(a.attempt(&mut j).outcome, Outcome::DeadLetter);
        assert_eq!(j.attempts, 3);
        assert_eq!(j.timeline.len(), 3, "each failed attempt is noted");
        assert_eq!(reason(&j).1, ErrorKind::Transient);
        assert!(reason(&j).0.contains("quantity"), "{:?}", j.dlq_reason);
    }

    #[test]
    fn bytes_that_do_not_decode_and_invalid_orders_dead_letter_at_once() {
        let mut a = attempts("quantity>5");
        let mut garbage = job(vec![0xff, 0x00, 0x13]);
        assert_eq!(a.attempt(&mut garbage).outcome, Outcome::DeadLetter);
        assert_eq!(garbage.attempts, 1);
        assert!(reason(&garbage).0.starts_with("undecodable message"));
        assert_eq!(reason(&garbage).1, ErrorKind::Permanent);

        let mut order = random_order();
        order.quantity = -3;
        let mut invalid = job(json::encode(&order));
        assert_eq!(a.attempt(&mut invalid).outcome, Outcome::DeadLetter);
        assert!(
            reason(&invalid).0.starts_with("invalid order"),
            "{:?}",
            invalid.dlq_reason
        );
    }

    #[test]
    fn a_job_whose_dlq_write_failed_is_not_handled_again() {
        let mut a = attempts("quantity>0");
        let mut j = job(json::encode(&random_order()));
        j.dlq_pending = true;
        assert_eq!(a.attempt(&mut j).outcome, Outcome::DeadLetter);
        assert_eq!(j.attempts, 0);
    }

    #[test]
    fn a_valid_order_that_the_handler_takes_is_done() {
        let mut a = attempts("quantity>5");
        let mut order = random_order();
        order.quantity = 2;
        let mut j = job(json::encode(&order));
        let attempt = a.attempt(&mut j);
        assert_eq!(attempt.outcome, Outcome::Done);
        assert!(attempt.transient.is_none() && j.dlq_reason.is_none());
    }
}
