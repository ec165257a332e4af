//! Dead letters and their replays, written once for both databases: each record
//! of the dead-letter topic (the processor's, recorded with its batch, and any
//! other producer's, read from the topic), and the replay jobs that move them
//! back. Design: docs/redrive.md.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;

use super::{
    Error,
    sql::{Conn, P, V},
};

/// Where a dead letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LetterState {
    /// In the DLQ, waiting for someone.
    Dead,
    /// Sent back to an order topic by a replay.
    Replayed,
    /// Failed after as many replays as allowed: moved to the parking topic.
    Parked,
}

impl LetterState {
    pub fn as_str(self) -> &'static str {
        match self {
            LetterState::Dead => "dead",
            LetterState::Replayed => "replayed",
            LetterState::Parked => "parked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dead" => Some(LetterState::Dead),
            "replayed" => Some(LetterState::Replayed),
            "parked" => Some(LetterState::Parked),
            _ => None,
        }
    }
}

/// A message's position in a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]@{}", self.topic, self.partition, self.offset)
    }
}

/// What the store keeps of one record of the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// The DLQ record itself.
    pub record: Position,
    /// `None` when the record names no order.
    pub order_id: Option<String>,
    pub user: Option<String>,
    pub product: Option<String>,
    pub reason: String,
    pub kind: Option<String>,
    pub attempts: Option<i64>,
    /// Where the failed message was read, when the record says.
    pub source: Option<Position>,
    pub source_ms: Option<i64>,
    pub first_failure_ms: Option<i64>,
    pub last_failure_ms: Option<i64>,
    /// When it was dead-lettered.
    pub dead_ms: i64,
    /// How many replays the failed message had been through.
    pub replays: i64,
    /// What a replay sends: the failed message's key and value; no value when
    /// the record keeps too little of it to send.
    #[serde(skip)]
    pub key: Option<Vec<u8>>,
    #[serde(skip)]
    pub value: Option<Vec<u8>>,
}

/// A dead letter as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredLetter {
    pub id: i64,
    #[serde(flatten)]
    pub letter: DeadLetter,
    /// Whether a replay has a value to send.
    pub replayable: bool,
    pub reason_key: String,
    pub state: LetterState,
    /// The replay that holds it (while pending) or moved it.
    pub job_id: Option<i64>,
    pub moved_ms: Option<i64>,
    /// Where a replay or the parking lot put it.
    pub moved_to: Option<String>,
}

/// Which dead letters a list, a count or a replay takes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Selection {
    /// Text the reason (or its normalised form) contains.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// One group of `reasons`: the normalised reason, exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Dead-lettered at or after (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<LetterState>,
    /// Order ids; empty for any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
}

/// Dead letters that failed alike.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    /// The reason with its numbers, ids and quoted values replaced.
    pub reason: String,
    pub count: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    /// One of its order ids (none when no record of the group names one).
    pub sample_id: Option<String>,
}

/// A replay job as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    pub id: i64,
    /// Who started it: an OS user or an API principal.
    pub principal: String,
    /// The process running it (`host:pid`).
    pub owner: String,
    pub created_ms: i64,
    /// When its runner last said it was alive.
    pub updated_ms: i64,
    /// The selection, as JSON.
    pub selection: String,
    /// `--to`: the topic every order goes to, instead of its own.
    pub target: Option<String>,
    pub rate: Option<f64>,
    pub max_replays: i64,
    pub state: JobState,
    pub selected: i64,
    pub sent: i64,
    pub skipped: i64,
    pub failed: i64,
    pub parked: i64,
    pub cancel_requested: bool,
    /// Per topic and partition, the offset from which records of this job not
    /// yet recorded as sent may lie (docs/redrive.md).
    #[serde(skip)]
    pub checkpoint: Checkpoint,
    pub error: Option<String>,
}

pub type Checkpoint = BTreeMap<String, BTreeMap<i32, i64>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Completed,
    Cancelled,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "running" => JobState::Running,
            "completed" => JobState::Completed,
            "cancelled" => JobState::Cancelled,
            "failed" => JobState::Failed,
            _ => return Err(Error::Corrupt(format!("unknown job state {s:?}"))),
        })
    }
}

/// A job about to be made.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    pub principal: &'a str,
    pub owner: &'a str,
    pub now_ms: i64,
    pub selection: &'a Selection,
    pub limit: Option<i64>,
    pub target: Option<&'a str>,
    pub rate: Option<f64>,
    pub max_replays: i64,
}

/// What became of one dead letter of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Sent(Position),
    Parked(Position),
    /// Not sent, for a reason of its own (it names no order, keeps no value);
    /// it stays dead.
    Skipped(String),
    /// Its topic refused it; it stays dead.
    Failed(String),
}

/// A job's outcomes to record, with its checkpoint after them, by the process
/// that runs it (`owner`): a runner that another process took the job from
/// records nothing.
pub struct Progress<'a> {
    pub job: i64,
    pub owner: &'a str,
    pub now_ms: i64,
    pub outcomes: &'a [(i64, Outcome)],
    pub checkpoint: &'a Checkpoint,
}

/// The reason with what differs between failures of one cause replaced: numbers
/// by `<n>`, words with digits (ids, hashes) by `<id>`, quoted text by `"…"`. So
/// "high price 912.33" and "high price 48.10" are one reason.
pub fn reason_key(reason: &str) -> String {
    let chars: Vec<char> = reason.chars().collect();
    let mut out = String::with_capacity(reason.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            i += chars[i + 1..]
                .iter()
                .position(|&q| q == c)
                .map_or(chars.len() - i, |n| n + 2);
            out.push_str("\"…\"");
            continue;
        }
        if !(c.is_alphanumeric() || c == '_') {
            out.push(c);
            i += 1;
            continue;
        }
        // A word: letters, digits, and `.` or `-` between two of them.
        let start = i;
        let word_char = |c: char| c.is_alphanumeric() || c == '_';
        while i < chars.len()
            && (word_char(chars[i])
                || (matches!(chars[i], '.' | '-')
                    && chars.get(i + 1).is_some_and(|&n| word_char(n))))
        {
            i += 1;
        }
        let word = &chars[start..i];
        if !word.iter().any(char::is_ascii_digit) {
            out.extend(word);
        } else if word
            .iter()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-'))
        {
            out.push_str("<n>");
        } else {
            out.push_str("<id>");
        }
    }
    out
}

/// Inserts a dead letter unless its record, or another record of the same
/// failed message (a DLQ write repeated after a crash), is stored already: both
/// are unique indexes, which also settle two writers racing. Casts tell
/// PostgreSQL each value's type.
const INSERT: &str = "INSERT INTO dead_letters (dlq_topic, dlq_partition, dlq_offset, order_id,
        user_name, product, reason, reason_key, kind, attempts, source_topic, source_partition,
        source_offset, source_ms, first_failure_ms, last_failure_ms, dead_ms, replays, msg_key,
        msg_value, state)
    SELECT CAST($1 AS TEXT), CAST($2 AS BIGINT), CAST($3 AS BIGINT), CAST($4 AS TEXT),
        CAST($5 AS TEXT), CAST($6 AS TEXT), CAST($7 AS TEXT), CAST($8 AS TEXT), CAST($9 AS TEXT),
        CAST($10 AS BIGINT), CAST($11 AS TEXT), CAST($12 AS BIGINT), CAST($13 AS BIGINT),
        CAST($14 AS BIGINT), CAST($15 AS BIGINT), CAST($16 AS BIGINT), CAST($17 AS BIGINT),
        CAST($18 AS BIGINT), CAST($19 AS TEXT), CAST($20 AS TEXT), 'dead'
    WHERE true
    ON CONFLICT DO NOTHING";

fn b64(bytes: &Option<Vec<u8>>) -> Option<String> {
    bytes
        .as_ref()
        .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
}

/// Records dead letters inside the caller's transaction; returns how many were new.
pub(super) async fn insert(c: &mut impl Conn, letters: &[&DeadLetter]) -> Result<u64, Error> {
    let mut inserted = 0;
    for l in letters {
        let (key, value) = (b64(&l.key), b64(&l.value));
        let reason_key = reason_key(&l.reason);
        let source = l.source.as_ref();
        inserted += c
            .exec(
                INSERT,
                &[
                    P::T(&l.record.topic),
                    P::I(i64::from(l.record.partition)),
                    P::I(l.record.offset),
                    P::OT(l.order_id.as_deref()),
                    P::OT(l.user.as_deref()),
                    P::OT(l.product.as_deref()),
                    P::T(&l.reason),
                    P::T(&reason_key),
                    P::OT(l.kind.as_deref()),
                    P::OI(l.attempts),
                    P::OT(source.map(|s| s.topic.as_str())),
                    P::OI(source.map(|s| i64::from(s.partition))),
                    P::OI(source.map(|s| s.offset)),
                    P::OI(l.source_ms),
                    P::OI(l.first_failure_ms),
                    P::OI(l.last_failure_ms),
                    P::I(l.dead_ms),
                    P::I(l.replays),
                    P::OT(key.as_deref()),
                    P::OT(value.as_deref()),
                ],
            )
            .await?;
    }
    Ok(inserted)
}

/// Records dead letters read from the DLQ topic and the positions they reach
/// there, inside the caller's transaction.
pub(super) async fn insert_read(
    c: &mut impl Conn,
    letters: &[&DeadLetter],
    (group, topic): (&str, &str),
    positions: &[(i32, i64)],
) -> Result<u64, Error> {
    let n = insert(c, letters).await?;
    super::sql::upsert_offsets(c, group, topic, positions).await?;
    Ok(n)
}

/// The end of the run of DLQ records the store holds from `from` on in a
/// partition: `from` itself when it holds a gap (a record it lacks lies there).
pub(super) async fn known_from(
    c: &mut impl Conn,
    topic: &str,
    partition: i32,
    from: i64,
) -> Result<i64, Error> {
    let r = &c
        .rows(
            "SELECT count(*), max(dlq_offset) FROM dead_letters
            WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset >= $3",
            &[P::T(topic), P::I(i64::from(partition)), P::I(from)],
        )
        .await?[0];
    Ok(match (r[0].i()?, r[1].oi()?) {
        (n, Some(max)) if n == max - from + 1 => max + 1,
        _ => from,
    })
}

fn param<'a>(values: &mut Vec<P<'a>>, p: P<'a>) -> String {
    values.push(p);
    format!("${}", values.len())
}

/// The conditions of a selection, its values appended to `values`.
fn conditions<'a, C: Conn>(s: &'a Selection, values: &mut Vec<P<'a>>) -> Vec<String> {
    let mut conds = Vec::new();
    if let Some(r) = &s.reason {
        let p = param(values, P::T(r));
        conds.push(format!(
            "({f}(reason, {p}) > 0 OR {f}(reason_key, {p}) > 0)",
            f = C::INSTR
        ));
    }
    if let Some(g) = &s.group {
        conds.push(format!("reason_key = {}", param(values, P::T(g))));
    }
    if let Some(p) = &s.product {
        conds.push(format!("product = {}", param(values, P::T(p))));
    }
    if let Some(ms) = s.since_ms {
        conds.push(format!("dead_ms >= {}", param(values, P::I(ms))));
    }
    if let Some(ms) = s.until_ms {
        conds.push(format!("dead_ms < {}", param(values, P::I(ms))));
    }
    if let Some(st) = s.state {
        conds.push(format!("state = '{}'", st.as_str()));
    }
    if !s.ids.is_empty() {
        let ps: Vec<String> = s.ids.iter().map(|i| param(values, P::T(i))).collect();
        conds.push(format!("order_id IN ({})", ps.join(", ")));
    }
    conds
}

fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    }
}

const STORED_COLUMNS: &str = "id, dlq_topic, dlq_partition, dlq_offset, order_id, user_name,
    product, reason, reason_key, kind, attempts, source_topic, source_partition, source_offset,
    source_ms, first_failure_ms, last_failure_ms, dead_ms, replays, msg_key, msg_value, state,
    job_id, moved_ms, moved_to";

fn unb64(v: &V) -> Result<Option<Vec<u8>>, Error> {
    v.ot()?
        .map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| Error::Corrupt(format!("a dead letter's bytes: {e}")))
        })
        .transpose()
}

fn stored(r: &[V]) -> Result<StoredLetter, Error> {
    let source = match (r[11].ot()?, r[12].oi()?, r[13].oi()?) {
        (Some(topic), Some(p), Some(offset)) => Some(Position {
            topic,
            partition: p as i32,
            offset,
        }),
        _ => None,
    };
    let value = unb64(&r[20])?;
    Ok(StoredLetter {
        id: r[0].i()?,
        replayable: value.is_some(),
        letter: DeadLetter {
            record: Position {
                topic: r[1].t()?,
                partition: r[2].i()? as i32,
                offset: r[3].i()?,
            },
            order_id: r[4].ot()?,
            user: r[5].ot()?,
            product: r[6].ot()?,
            reason: r[7].t()?,
            kind: r[9].ot()?,
            attempts: r[10].oi()?,
            source,
            source_ms: r[14].oi()?,
            first_failure_ms: r[15].oi()?,
            last_failure_ms: r[16].oi()?,
            dead_ms: r[17].i()?,
            replays: r[18].i()?,
            key: unb64(&r[19])?,
            value,
        },
        reason_key: r[8].t()?,
        state: LetterState::parse(&r[21].t()?)
            .ok_or_else(|| Error::Corrupt(format!("unknown dead letter state {:?}", r[21])))?,
        job_id: r[22].oi()?,
        moved_ms: r[23].oi()?,
        moved_to: r[24].ot()?,
    })
}

fn letters(rows: Vec<Vec<V>>) -> Result<Vec<StoredLetter>, Error> {
    rows.iter().map(|r| stored(r)).collect()
}

/// Dead letters of a selection, newest first, those before `before` (an id) only.
pub(super) async fn list<C: Conn>(
    c: &mut C,
    s: &Selection,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<StoredLetter>, Error> {
    let mut values = Vec::new();
    let mut conds = conditions::<C>(s, &mut values);
    if let Some(id) = before {
        conds.push(format!("id < {}", param(&mut values, P::I(id))));
    }
    let sql = format!(
        "SELECT {STORED_COLUMNS} FROM dead_letters {} ORDER BY id DESC LIMIT {}",
        where_clause(&conds),
        param(&mut values, P::I(limit))
    );
    letters(c.rows(&sql, &values).await?)
}

/// What a replay of a selection would take: dead letters no job holds, oldest
/// first, so that orders with one key go back in their order.
fn free(s: &Selection) -> Selection {
    Selection {
        state: Some(LetterState::Dead),
        ..s.clone()
    }
}

/// How many dead letters a replay of `s` would take, and the first `sample` of them.
pub(super) async fn preview<C: Conn>(
    c: &mut C,
    s: &Selection,
    limit: Option<i64>,
    sample: i64,
) -> Result<(i64, Vec<StoredLetter>), Error> {
    let s = free(s);
    let mut values = Vec::new();
    let mut conds = conditions::<C>(&s, &mut values);
    conds.push("job_id IS NULL".into());
    let filter = where_clause(&conds);
    let count_sql = match limit {
        Some(n) => {
            format!("SELECT count(*) FROM (SELECT id FROM dead_letters {filter} LIMIT {n}) AS s")
        }
        None => format!("SELECT count(*) FROM dead_letters {filter}"),
    };
    let count = c.rows(&count_sql, &values).await?[0][0].i()?;
    let sample_sql = format!(
        "SELECT {STORED_COLUMNS} FROM dead_letters {filter} ORDER BY id LIMIT {}",
        sample.min(limit.unwrap_or(i64::MAX))
    );
    Ok((count, letters(c.rows(&sample_sql, &values).await?)?))
}

/// Dead letters grouped by normalised reason, the most frequent first.
pub(super) async fn reasons<C: Conn>(
    c: &mut C,
    s: &Selection,
    limit: i64,
) -> Result<Vec<Reason>, Error> {
    let mut values = Vec::new();
    let conds = conditions::<C>(s, &mut values);
    let sql = format!(
        "SELECT reason_key, count(*), min(dead_ms), max(dead_ms), min(order_id)
        FROM dead_letters {} GROUP BY reason_key ORDER BY count(*) DESC, reason_key LIMIT {}",
        where_clause(&conds),
        param(&mut values, P::I(limit))
    );
    c.rows(&sql, &values)
        .await?
        .iter()
        .map(|r| {
            Ok(Reason {
                reason: r[0].t()?,
                count: r[1].i()?,
                first_ms: r[2].i()?,
                last_ms: r[3].i()?,
                sample_id: r[4].ot()?,
            })
        })
        .collect()
}

/// Makes a job holding every dead letter of its selection that no other job
/// holds, inside the caller's transaction. The claim re-checks `job_id IS NULL`
/// row by row, so two jobs started at once never hold one letter.
pub(super) async fn create_job<C: Conn>(
    c: &mut C,
    job: &NewJob<'_>,
    checkpoint: &Checkpoint,
) -> Result<i64, Error> {
    let selection = serde_json::to_string(job.selection).expect("selections serialize");
    let checkpoint = serde_json::to_string(checkpoint).expect("checkpoints serialize");
    let id = c
        .rows(
            "INSERT INTO replay_jobs (principal, owner, created_ms, updated_ms, selection, target,
                rate, max_replays, state, checkpoint)
            VALUES ($1, $2, $3, $3, $4, $5, $6, $7, 'running', $8) RETURNING id",
            &[
                P::T(job.principal),
                P::T(job.owner),
                P::I(job.now_ms),
                P::T(&selection),
                P::OT(job.target),
                P::F(job.rate),
                P::I(job.max_replays),
                P::T(&checkpoint),
            ],
        )
        .await?[0][0]
        .i()?;
    let s = free(job.selection);
    let mut values = vec![P::I(id)];
    let mut conds = conditions::<C>(&s, &mut values);
    conds.push("job_id IS NULL".into());
    let limit = job.limit.map(|n| format!("LIMIT {n}")).unwrap_or_default();
    c.exec(
        &format!(
            "UPDATE dead_letters SET job_id = $1
            WHERE job_id IS NULL AND id IN (SELECT id FROM dead_letters {} ORDER BY id {limit})",
            where_clause(&conds)
        ),
        &values,
    )
    .await?;
    let selected = c
        .exec(
            "INSERT INTO replay_items (job_id, dead_letter_id, state)
            SELECT $1, id, 'pending' FROM dead_letters WHERE job_id = $1 AND state = 'dead'",
            &[P::I(id)],
        )
        .await?;
    c.exec(
        "UPDATE replay_jobs SET selected = $2 WHERE id = $1",
        &[P::I(id), P::I(selected as i64)],
    )
    .await?;
    Ok(id)
}

const JOB_COLUMNS: &str = "id, principal, owner, created_ms, updated_ms, selection, target, rate,
    max_replays, state, selected, sent, skipped, failed, parked, cancel_requested, checkpoint,
    error";

fn job_row(r: &[V]) -> Result<JobRow, Error> {
    let checkpoint = serde_json::from_str(&r[16].t()?)
        .map_err(|e| Error::Corrupt(format!("a replay job's checkpoint: {e}")))?;
    Ok(JobRow {
        id: r[0].i()?,
        principal: r[1].t()?,
        owner: r[2].t()?,
        created_ms: r[3].i()?,
        updated_ms: r[4].i()?,
        selection: r[5].t()?,
        target: r[6].ot()?,
        rate: r[7].f()?,
        max_replays: r[8].i()?,
        state: JobState::parse(&r[9].t()?)?,
        selected: r[10].i()?,
        sent: r[11].i()?,
        skipped: r[12].i()?,
        failed: r[13].i()?,
        parked: r[14].i()?,
        cancel_requested: r[15].i()? != 0,
        checkpoint,
        error: r[17].ot()?,
    })
}

pub(super) async fn job(c: &mut impl Conn, id: i64) -> Result<Option<JobRow>, Error> {
    let rows = c
        .rows(
            &format!("SELECT {JOB_COLUMNS} FROM replay_jobs WHERE id = $1"),
            &[P::I(id)],
        )
        .await?;
    rows.first().map(|r| job_row(r)).transpose()
}

/// The newest jobs first.
pub(super) async fn jobs(c: &mut impl Conn, limit: i64) -> Result<Vec<JobRow>, Error> {
    c.rows(
        &format!("SELECT {JOB_COLUMNS} FROM replay_jobs ORDER BY id DESC LIMIT $1"),
        &[P::I(limit)],
    )
    .await?
    .iter()
    .map(|r| job_row(r))
    .collect()
}

/// The next dead letters a job has still to move, oldest first, after the
/// letter `after` (a range of the job's items, not a scan of them all).
pub(super) async fn pending(
    c: &mut impl Conn,
    job: i64,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredLetter>, Error> {
    let columns = STORED_COLUMNS
        .split(',')
        .map(|c| format!("d.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    letters(
        c.rows(
            &format!(
                "SELECT {columns} FROM replay_items i JOIN dead_letters d ON d.id = i.dead_letter_id
                WHERE i.job_id = $1 AND i.dead_letter_id > $2 AND i.state = 'pending'
                ORDER BY i.dead_letter_id LIMIT $3"
            ),
            &[P::I(job), P::I(after), P::I(limit)],
        )
        .await?,
    )
}

/// Records outcomes of a job inside the caller's transaction. An outcome of a
/// letter no longer pending (recorded before) changes nothing.
pub(super) async fn record(c: &mut impl Conn, p: &Progress<'_>) -> Result<(), Error> {
    owned(c, p.job, p.owner, p.now_ms).await?;
    let mut counts = [0i64; 4]; // sent, parked, skipped, failed
    for (id, outcome) in p.outcomes {
        let (state, detail, i) = match outcome {
            Outcome::Sent(to) => ("sent", to.to_string(), 0),
            Outcome::Parked(to) => ("parked", to.to_string(), 1),
            Outcome::Skipped(why) => ("skipped", why.clone(), 2),
            Outcome::Failed(why) => ("failed", why.clone(), 3),
        };
        let changed = c
            .exec(
                "UPDATE replay_items SET state = $3, detail = $4
                WHERE job_id = $1 AND dead_letter_id = $2 AND state = 'pending'",
                &[P::I(p.job), P::I(*id), P::T(state), P::T(&detail)],
            )
            .await?;
        if changed == 0 {
            continue;
        }
        counts[i] += 1;
        match outcome {
            Outcome::Sent(_) | Outcome::Parked(_) => {
                let letter_state = if i == 0 { "replayed" } else { "parked" };
                c.exec(
                    "UPDATE dead_letters SET state = $2, moved_ms = $3, moved_to = $4 WHERE id = $1",
                    &[P::I(*id), P::T(letter_state), P::I(p.now_ms), P::T(&detail)],
                )
                .await?;
                let event = format!("job {} to {detail}", p.job);
                c.exec(
                    "INSERT INTO order_events (order_seq, n, at_ms, kind, detail)
                    SELECT o.seq,
                        (SELECT coalesce(max(e.n), -1) + 1 FROM order_events e WHERE e.order_seq = o.seq),
                        $2, $3, $4
                    FROM dead_letters d CROSS JOIN orders o
                    WHERE d.id = $1 AND o.source_topic = d.source_topic
                        AND o.source_partition = d.source_partition
                        AND o.source_offset = d.source_offset",
                    &[P::I(*id), P::I(p.now_ms), P::T(letter_state), P::T(&event)],
                )
                .await?;
            }
            Outcome::Skipped(_) | Outcome::Failed(_) => {
                c.exec(
                    "UPDATE dead_letters SET job_id = NULL WHERE id = $1",
                    &[P::I(*id)],
                )
                .await?;
            }
        }
    }
    let checkpoint = serde_json::to_string(p.checkpoint).expect("checkpoints serialize");
    c.exec(
        "UPDATE replay_jobs SET sent = sent + $2, parked = parked + $3, skipped = skipped + $4,
            failed = failed + $5, checkpoint = $6, updated_ms = $7 WHERE id = $1",
        &[
            P::I(p.job),
            P::I(counts[0]),
            P::I(counts[1]),
            P::I(counts[2]),
            P::I(counts[3]),
            P::T(&checkpoint),
            P::I(p.now_ms),
        ],
    )
    .await?;
    Ok(())
}

/// Says that `owner` still runs the job, inside the caller's transaction;
/// fails when another process has taken it over.
async fn owned(c: &mut impl Conn, job: i64, owner: &str, now_ms: i64) -> Result<(), Error> {
    let n = c
        .exec(
            "UPDATE replay_jobs SET updated_ms = $3
            WHERE id = $1 AND owner = $2 AND state = 'running'",
            &[P::I(job), P::T(owner), P::I(now_ms)],
        )
        .await?;
    if n == 0 {
        return Err(Error::JobTaken(job));
    }
    Ok(())
}

/// Makes `owner` the runner of a job that `seen` ran (its owner and last word
/// then), unless someone changed the job since: one process wins a race to
/// resume or settle it.
pub(super) async fn claim(
    c: &mut impl Conn,
    job: i64,
    owner: &str,
    seen: (&str, i64),
    now_ms: i64,
) -> Result<bool, Error> {
    let n = c
        .exec(
            "UPDATE replay_jobs SET owner = $2, updated_ms = $5, state = 'running'
            WHERE id = $1 AND owner = $3 AND updated_ms = $4 AND state IN ('running', 'failed')",
            &[
                P::I(job),
                P::T(owner),
                P::T(seen.0),
                P::I(seen.1),
                P::I(now_ms),
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Says a job's runner is alive; returns whether someone asked it to stop.
pub(super) async fn heartbeat(
    c: &mut impl Conn,
    job: i64,
    owner: &str,
    now_ms: i64,
) -> Result<bool, Error> {
    owned(c, job, owner, now_ms).await?;
    let rows = c
        .rows(
            "SELECT cancel_requested FROM replay_jobs WHERE id = $1",
            &[P::I(job)],
        )
        .await?;
    Ok(rows.first().map(|r| r[0].i()).transpose()?.unwrap_or(0) != 0)
}

/// Asks a running job to stop.
pub(super) async fn request_cancel(c: &mut impl Conn, job: i64) -> Result<(), Error> {
    c.exec(
        "UPDATE replay_jobs SET cancel_requested = 1 WHERE id = $1",
        &[P::I(job)],
    )
    .await?;
    Ok(())
}

/// Ends a job inside the caller's transaction. A cancelled job lets its letters
/// not sent go: they stay dead, free for another replay. A failed one keeps
/// them, to be resumed.
pub(super) async fn finish(
    c: &mut impl Conn,
    job: i64,
    owner: &str,
    state: JobState,
    error: Option<&str>,
    now_ms: i64,
) -> Result<(), Error> {
    owned(c, job, owner, now_ms).await?;
    if state == JobState::Cancelled {
        c.exec(
            "UPDATE dead_letters SET job_id = NULL WHERE id IN (SELECT dead_letter_id
                FROM replay_items WHERE job_id = $1 AND state = 'pending')",
            &[P::I(job)],
        )
        .await?;
        c.exec(
            "UPDATE replay_items SET state = 'cancelled' WHERE job_id = $1 AND state = 'pending'",
            &[P::I(job)],
        )
        .await?;
    }
    c.exec(
        "UPDATE replay_jobs SET state = $2, error = $3, updated_ms = $4 WHERE id = $1",
        &[P::I(job), P::T(state.as_str()), P::OT(error), P::I(now_ms)],
    )
    .await?;
    Ok(())
}

/// Which dead letter a replay id names, if it is one of `job`'s: ids are
/// `JOB-LETTER`.
pub fn replay_id(job: i64, letter: i64) -> String {
    format!("{job}-{letter}")
}

pub fn parse_replay_id(s: &str) -> Option<(i64, i64)> {
    let (j, l) = s.split_once('-')?;
    Some((j.parse().ok()?, l.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_differing_in_numbers_ids_and_quotes_are_one() {
        assert_eq!(
            reason_key("Simulated error: high price 912.33"),
            "Simulated error: high price <n>"
        );
        assert_eq!(
            reason_key("Simulated error: high price 48.1."),
            "Simulated error: high price <n>."
        );
        assert_eq!(
            reason_key("order 1f0c2e9a-7b3d-4c1e-9f00-123456789abc: product \"<b>\" unknown"),
            "order <id>: product \"…\" unknown"
        );
        assert_eq!(
            reason_key("undecodable message: orders[2]@1234"),
            "undecodable message: orders[<n>]@<n>"
        );
        assert_eq!(
            reason_key("price -3 is not a finite number >= 0"),
            "price -<n> is not a finite number >= <n>"
        );
    }

    #[test]
    fn replay_ids_name_their_job_and_letter() {
        assert_eq!(parse_replay_id(&replay_id(12, 345)), Some((12, 345)));
        assert_eq!(parse_replay_id("x-1"), None);
    }
}
