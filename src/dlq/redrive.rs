//! Redrive: dead letters back to their order topics as replay jobs, the one
//! engine the CLI and the web console share (selection, then a job, then
//! progress). Each job is recorded in the store with what it holds, so that a
//! crashed replay resumes without sending an order twice or skipping one: a
//! chunk is sent, its deliveries awaited, and only then recorded; a resume
//! first reads what the job may have sent since its last record (from its
//! checkpoint) and records that. Design: docs/redrive.md.

use std::{sync::Arc, time::Duration};

use rdkafka::{
    Message as _,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{
    index,
    range::{self, Range},
    record,
};
use crate::{
    kafka::{self, KafkaConfig, WriteFailure},
    order::now_ms,
    store::{
        self, Store,
        dead_letters::{
            Checkpoint, JobRow, JobState, NewJob, Outcome, Position, Progress, Selection,
            StoredLetter, parse_replay_id, replay_id,
        },
    },
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Kafka(#[from] kafka::Error),
    #[error(transparent)]
    Index(#[from] index::Error),
    #[error(transparent)]
    Read(#[from] range::Error),
    #[error(
        "topic {0} does not exist: create it (`orderflow topics create` makes the order, DLQ and parking topics), then resume the job"
    )]
    NoTopic(String),
    #[error("no replay job {0}: `orderflow dlq jobs` lists them")]
    UnknownJob(i64),
    #[error("replay job {job} is {state}: there is nothing left to do")]
    Ended { job: i64, state: &'static str },
    #[error(
        "replay job {job} is running in {owner} (or was taken over just now): wait for it, or stop it with `orderflow dlq cancel {job}`"
    )]
    Busy { job: i64, owner: String },
    #[error(
        "replay job {job} stopped: writing to {topic} failed: {source} ({hint}); resume it with `orderflow dlq replay --resume {job}`"
    )]
    Send {
        job: i64,
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
        hint: String,
    },
}

/// Where replays go, unless a job says otherwise.
#[derive(Debug, Clone)]
pub struct Topics {
    /// The DLQ topic the dead letters were read from.
    pub dlq: String,
    /// Where a dead letter that does not say where it came from goes back.
    pub orders: String,
    /// Where a dead letter replayed `max_replays` times already goes instead.
    pub parking: String,
}

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct Request {
    pub selection: Selection,
    pub limit: Option<i64>,
    /// Every order to this topic instead of its own.
    pub to: Option<String>,
    /// Orders per second at most.
    pub rate: Option<f64>,
    pub max_replays: u32,
    /// Who asks: an OS user or an API principal.
    pub principal: String,
}

/// The engine: a store, a cluster, and its topics.
pub struct Redrive {
    store: Arc<Store>,
    kafka: KafkaConfig,
    topics: Topics,
}

/// How long a job's runner may be silent before another process takes it for
/// dead (when it runs on another host, where its process cannot be looked up):
/// longer than a chunk can take, its deliveries waiting up to librdkafka's
/// `message.timeout.ms` (5 minutes by default).
const SILENT: Duration = Duration::from_secs(600);
/// Dead letters sent per chunk, at most...
const CHUNK: i64 = 2_000;
/// ...and about this many bytes of them; the first chunk is small, to learn
/// how large the job's records are.
const CHUNK_BYTES: usize = 16 << 20;
const FIRST_CHUNK: i64 = 50;
/// How long a resume waits before it reads its destinations a second time.
const SETTLE: Duration = Duration::from_secs(1);

/// The rates a job may have, in orders per second: at the slowest, a job still
/// looks at a cancel every 10 s (it does between sends at such rates).
pub const RATES: std::ops::RangeInclusive<f64> = 0.1..=1_000_000.0;

/// A rate in [`RATES`], or what to give instead.
pub fn check_rate(r: f64) -> Result<f64, String> {
    if RATES.contains(&r) {
        Ok(r)
    } else {
        Err(format!(
            "{r} is no rate: give orders per second from {} to {}",
            RATES.start(),
            RATES.end()
        ))
    }
}

/// Spaces sends at a rate. After a stall (the broker, the store) it makes up at
/// most a second's worth at once, so the cap holds over any second but the
/// first after the stall.
struct Pacer {
    every: Option<Duration>,
    next: Instant,
}

impl Pacer {
    fn new(rate: Option<f64>) -> Self {
        Pacer {
            every: rate.map(|r| Duration::from_secs_f64(1.0 / r)),
            next: Instant::now(),
        }
    }

    async fn wait(&mut self) {
        let Some(every) = self.every else {
            return;
        };
        tokio::time::sleep_until(self.next).await;
        let floor = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(self.next);
        self.next = self.next.max(floor) + every;
    }
}

impl Redrive {
    pub fn new(store: Arc<Store>, kafka: KafkaConfig, topics: Topics) -> Self {
        Redrive {
            store,
            kafka,
            topics,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads what the store lacks of the DLQ topic into it.
    pub async fn catch_up(&self) -> Result<index::CaughtUp, Error> {
        Ok(index::catch_up(&self.kafka, &self.store, &self.topics.dlq).await?)
    }

    /// How many dead letters a replay would take, and the first `sample`.
    pub async fn preview(
        &self,
        req: &Request,
        sample: i64,
    ) -> Result<(i64, Vec<StoredLetter>), Error> {
        Ok(self
            .store
            .replay_preview(&req.selection, req.limit, sample)
            .await?)
    }

    /// Makes a job holding the selection (which may be empty: see `preview`).
    pub async fn start(&self, req: &Request) -> Result<JobRow, Error> {
        let owner = owner();
        let id = self
            .store
            .create_replay_job(
                &NewJob {
                    principal: &req.principal,
                    owner: &owner,
                    now_ms: now_ms(),
                    selection: &req.selection,
                    limit: req.limit,
                    target: req.to.as_deref(),
                    rate: req.rate,
                    max_replays: i64::from(req.max_replays),
                },
                &Checkpoint::new(),
            )
            .await?;
        self.job(id).await
    }

    pub async fn job(&self, id: i64) -> Result<JobRow, Error> {
        self.store
            .replay_job(id)
            .await?
            .ok_or(Error::UnknownJob(id))
    }

    /// Runs a job to its end: a new one, or one resumed after its runner
    /// crashed or failed. Stops early, as cancelled, when `cancel` fires or
    /// someone asks through the store (`dlq cancel`). `progress` sees the job
    /// after each recorded chunk. A job that fails is left `failed`, to be
    /// resumed.
    pub async fn run(
        &self,
        id: i64,
        cancel: &CancellationToken,
        mut progress: impl FnMut(&JobRow),
    ) -> Result<JobRow, Error> {
        let me = owner();
        self.take(id, &me).await?;
        match self.drive(id, &me, cancel, &mut progress).await {
            Err(e) if !matches!(e, Error::Store(store::Error::JobTaken(_))) => {
                let failed = self
                    .store
                    .finish_replay((id, &me), JobState::Failed, Some(&e.to_string()), now_ms())
                    .await;
                if let Err(f) = failed {
                    tracing::warn!(job = id, error = %f, "could not mark the replay job failed");
                }
                Err(e)
            }
            done => done,
        }
    }

    async fn drive(
        &self,
        id: i64,
        me: &str,
        cancel: &CancellationToken,
        progress: &mut impl FnMut(&JobRow),
    ) -> Result<JobRow, Error> {
        let job = self.job(id).await?;
        let mut checkpoint = self.reconcile(&job, me).await?;
        let producer = self.kafka.producer()?;
        let most = match job.rate {
            Some(r) => ((r / 2.0).ceil() as i64).clamp(1, CHUNK),
            None => CHUNK,
        };
        // Until the first chunk shows how large its records are.
        let mut chunk = most.min(FIRST_CHUNK);
        let mut pacer = Pacer::new(job.rate);
        let mut after = 0;
        progress(&self.job(id).await?);
        loop {
            let asked = self.store.replay_heartbeat(id, me, now_ms()).await?;
            if asked || cancel.is_cancelled() {
                return self.end((id, me), JobState::Cancelled).await;
            }
            // Every letter of a chunk is recorded before the next chunk, so the
            // next starts after the last.
            let letters = self.store.replay_pending(id, after, chunk).await?;
            let Some(last) = letters.last() else {
                return self.end((id, me), JobState::Completed).await;
            };
            after = last.id;
            let bytes: usize = letters
                .iter()
                .map(|l| l.letter.value.as_ref().map_or(0, Vec::len))
                .sum();
            let mean = (bytes / letters.len()).max(1);
            chunk = ((CHUNK_BYTES / mean) as i64).clamp(1, most);
            let dests: Vec<_> = letters.iter().map(|l| self.destination(&job, l)).collect();
            let topics = dests.iter().flatten().map(|d| d.topic.as_str());
            self.add_destinations(id, me, topics, &mut checkpoint)
                .await?;
            let before = checkpoint.clone();
            let mut sends = Vec::new();
            let mut outcomes = Vec::new();
            for (l, dest) in letters.iter().zip(dests) {
                match dest {
                    Err(why) => outcomes.push((l.id, Outcome::Skipped(why))),
                    Ok(dest) => {
                        pacer.wait().await;
                        let delivery = send(&producer, id, l, &dest);
                        sends.push((l.id, dest, delivery));
                    }
                }
            }
            let mut failure = None;
            for (letter, dest, delivery) in sends {
                match delivery.await {
                    Ok((partition, offset)) => {
                        let at = Position {
                            topic: dest.topic.clone(),
                            partition,
                            offset,
                        };
                        let reached = checkpoint.entry(dest.topic.clone()).or_default();
                        let next = reached.entry(partition).or_insert(offset + 1);
                        *next = (*next).max(offset + 1);
                        outcomes.push((
                            letter,
                            if dest.parked {
                                Outcome::Parked(at)
                            } else {
                                Outcome::Sent(at)
                            },
                        ));
                    }
                    Err(e) => match kafka::classify_write_error(&e) {
                        WriteFailure::TooLarge => {
                            outcomes.push((letter, Outcome::Failed(format!("{}: {e}", dest.topic))))
                        }
                        WriteFailure::Fatal(hint) => {
                            failure.get_or_insert((dest.topic, e, hint.to_string()));
                        }
                        WriteFailure::Retry => {
                            failure.get_or_insert((
                                dest.topic,
                                e,
                                "librdkafka retried until its timeout".to_string(),
                            ));
                        }
                    },
                }
            }
            if let Some((topic, ..)) = &failure {
                // A send that timed out may still have landed, anywhere in the
                // topic: a resume reads it from where it stood before the chunk.
                checkpoint.insert(topic.clone(), before[topic].clone());
            }
            self.store
                .record_replay(&Progress {
                    job: id,
                    owner: me,
                    now_ms: now_ms(),
                    outcomes: &outcomes,
                    checkpoint: &checkpoint,
                })
                .await?;
            if let Some((topic, source, hint)) = failure {
                return Err(Error::Send {
                    job: id,
                    topic,
                    source,
                    hint,
                });
            }
            progress(&self.job(id).await?);
        }
    }

    /// Stops a job. One running elsewhere is asked to (and stops after its
    /// chunk); one whose runner is gone is settled here: what it sent is
    /// recorded, the rest let go.
    pub async fn cancel(&self, id: i64) -> Result<JobRow, Error> {
        let job = self.job(id).await?;
        match job.state {
            JobState::Completed | JobState::Cancelled => Err(Error::Ended {
                job: id,
                state: job.state.as_str(),
            }),
            JobState::Running if alive(&job) => {
                self.store.request_replay_cancel(id).await?;
                Ok(self.job(id).await?)
            }
            _ => {
                let me = owner();
                self.take(id, &me).await?;
                let job = self.job(id).await?;
                self.reconcile(&job, &me).await?;
                self.end((id, &me), JobState::Cancelled).await
            }
        }
    }

    /// Makes this process the job's runner, if it may: the job is not over, and
    /// its runner is gone (or this is a new job's first run). One process wins.
    async fn take(&self, id: i64, me: &str) -> Result<(), Error> {
        let job = self.job(id).await?;
        let busy = || Error::Busy {
            job: id,
            owner: job.owner.clone(),
        };
        match job.state {
            JobState::Completed | JobState::Cancelled => {
                return Err(Error::Ended {
                    job: id,
                    state: job.state.as_str(),
                });
            }
            JobState::Running if job.owner != me && alive(&job) => return Err(busy()),
            _ => {}
        }
        let seen = (job.owner.as_str(), job.updated_ms);
        if !self.store.claim_replay((id, me), seen, now_ms()).await? {
            return Err(busy());
        }
        Ok(())
    }

    async fn end(&self, (id, me): (i64, &str), state: JobState) -> Result<JobRow, Error> {
        self.store
            .finish_replay((id, me), state, None, now_ms())
            .await?;
        self.job(id).await
    }

    /// Records what the job sent after its last record: it reads its
    /// destinations from its checkpoint to their ends for records it sent, then
    /// once more after a pause, for writes of a crashed runner that were still
    /// on their way. Returns the checkpoint to go on from.
    async fn reconcile(&self, job: &JobRow, me: &str) -> Result<Checkpoint, Error> {
        let mut checkpoint = job.checkpoint.clone();
        let mut found = Vec::new();
        for pass in 0..2 {
            if checkpoint.is_empty() {
                break; // nothing was ever sent
            }
            if pass > 0 {
                tokio::time::sleep(SETTLE).await;
            }
            let mut ranges = Vec::new();
            for (topic, partitions) in &checkpoint {
                let ends = range::ends(&self.kafka, topic)?;
                if ends.is_empty() {
                    return Err(Error::NoTopic(topic.clone()));
                }
                for (partition, _, high) in ends {
                    let from = partitions.get(&partition).copied().unwrap_or(0);
                    ranges.push(Range {
                        topic: topic.clone(),
                        partition,
                        from,
                        to: high,
                    });
                }
            }
            let what = format!("what replay job {} sent", job.id);
            range::read(&self.kafka, &what, &ranges, |m| {
                let header = |k| record::header(m.headers(), k);
                let Some((j, letter)) = header(record::H_REPLAY_ID).and_then(parse_replay_id)
                else {
                    return;
                };
                if j != job.id {
                    return;
                }
                let at = Position {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    offset: m.offset(),
                };
                found.push((
                    letter,
                    if at.topic == self.topics.parking {
                        Outcome::Parked(at)
                    } else {
                        Outcome::Sent(at)
                    },
                ));
            })
            .await?;
            for r in &ranges {
                checkpoint
                    .entry(r.topic.clone())
                    .or_default()
                    .insert(r.partition, r.to.max(r.from));
            }
        }
        if !found.is_empty() {
            tracing::info!(
                job = job.id,
                found = found.len(),
                "recorded orders a crashed replay had sent"
            );
        }
        self.store
            .record_replay(&Progress {
                job: job.id,
                owner: me,
                now_ms: now_ms(),
                outcomes: &found,
                checkpoint: &checkpoint,
            })
            .await?;
        Ok(checkpoint)
    }

    /// Puts the ends of topics the chunk will write to and the job has not yet
    /// written to into its checkpoint, and records it before anything is sent:
    /// a resume then knows where to look.
    async fn add_destinations(
        &self,
        id: i64,
        me: &str,
        topics: impl Iterator<Item = &str>,
        checkpoint: &mut Checkpoint,
    ) -> Result<(), Error> {
        let mut added = false;
        for topic in topics {
            if checkpoint.contains_key(topic) {
                continue;
            }
            let ends = range::ends(&self.kafka, topic)?;
            if ends.is_empty() {
                return Err(Error::NoTopic(topic.to_string()));
            }
            checkpoint.insert(
                topic.to_string(),
                ends.into_iter().map(|(p, _, high)| (p, high)).collect(),
            );
            added = true;
        }
        if added {
            self.store
                .record_replay(&Progress {
                    job: id,
                    owner: me,
                    now_ms: now_ms(),
                    outcomes: &[],
                    checkpoint,
                })
                .await?;
        }
        Ok(())
    }

    /// Where a dead letter goes, or why it cannot go anywhere.
    fn destination(&self, job: &JobRow, l: &StoredLetter) -> Result<Destination, String> {
        let letter = &l.letter;
        if letter.order_id.is_none() && letter.source.is_none() {
            return Err("the record names no order and no source".into());
        }
        if letter.value.is_none() {
            return Err("the DLQ kept only part of the message: it cannot be sent whole".into());
        }
        if letter.replays >= job.max_replays {
            return Ok(Destination {
                topic: self.topics.parking.clone(),
                partition: None,
                parked: true,
            });
        }
        let topic = job
            .target
            .clone()
            .or_else(|| letter.source.as_ref().map(|s| s.topic.clone()))
            .unwrap_or_else(|| self.topics.orders.clone());
        // Back to the partition it was read from, so that it keeps its place
        // among its key's orders whatever partitioner its producer used.
        let partition = letter
            .source
            .as_ref()
            .filter(|s| s.topic == topic)
            .map(|s| s.partition);
        Ok(Destination {
            topic,
            partition,
            parked: false,
        })
    }
}

#[derive(Debug, Clone)]
struct Destination {
    topic: String,
    partition: Option<i32>,
    parked: bool,
}

type Delivery =
    std::pin::Pin<Box<dyn Future<Output = Result<(i32, i64), rdkafka::error::KafkaError>> + Send>>;

/// Hands one dead letter to the producer at once, with the headers that say it
/// is a replay; the delivery is awaited later.
fn send(producer: &FutureProducer, job: i64, l: &StoredLetter, dest: &Destination) -> Delivery {
    let letter = &l.letter;
    let count = (letter.replays + 1).to_string();
    let id = replay_id(job, l.id);
    let (job_s, partition, offset) = (
        job.to_string(),
        letter.record.partition.to_string(),
        letter.record.offset.to_string(),
    );
    let mut headers = OwnedHeaders::new();
    for (k, v) in [
        (record::H_REPLAY_COUNT, count.as_str()),
        (record::H_REPLAY_ID, &id),
        (record::H_REPLAY_JOB, &job_s),
        (record::H_DLQ_TOPIC, &letter.record.topic),
        (record::H_DLQ_PARTITION, &partition),
        (record::H_DLQ_OFFSET, &offset),
    ] {
        headers = headers.insert(Header {
            key: k,
            value: Some(v),
        });
    }
    if dest.parked {
        headers = headers.insert(Header {
            key: record::H_PARKED_REASON,
            value: Some(&letter.reason),
        });
    }
    let value = letter.value.as_deref().unwrap_or_default();
    let mut r = FutureRecord::to(&dest.topic)
        .payload(value)
        .headers(headers);
    if let Some(k) = letter.key.as_deref() {
        r = r.key(k);
    }
    if let Some(p) = dest.partition {
        r = r.partition(p);
    }
    let queued = producer.send_result(r).map_err(|(e, _)| e);
    Box::pin(async move {
        match queued?.await {
            Ok(Ok(d)) => Ok((d.partition, d.offset)),
            Ok(Err((e, _))) => Err(e),
            Err(_) => Err(rdkafka::error::KafkaError::Canceled),
        }
    })
}

/// This process, as jobs record their runner: `host:pid`.
pub fn owner() -> String {
    format!("{}:{}", host(), std::process::id())
}

fn host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it or fails.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether a job's runner still lives: on this host, whether its process does;
/// elsewhere, whether it spoke lately.
fn alive(job: &JobRow) -> bool {
    if let Some((h, pid)) = job.owner.rsplit_once(':')
        && h == host()
        && let Ok(pid) = pid.parse::<i32>()
    {
        // SAFETY: signal 0 only checks that the process exists.
        let rc = unsafe { libc::kill(pid, 0) };
        return rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    }
    now_ms() - job.updated_ms < SILENT.as_millis() as i64
}

/// The OS user running this process: `$USER`, else the name of its uid.
pub fn os_user() -> String {
    if let Some(u) = ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    {
        return u;
    }
    // SAFETY: getpwuid's result is read at once, before any other call could
    // reuse its static buffer; a null result or name is handled.
    unsafe {
        let uid = libc::getuid();
        let pw = libc::getpwuid(uid);
        if pw.is_null() || (*pw).pw_name.is_null() {
            return format!("uid {uid}");
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned()
    }
}
