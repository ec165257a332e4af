//! What the pages and the API both do: each operation once, over the store,
//! the cluster and the replay engine. Mutations check the role and are audited.

use std::{sync::Arc, time::Instant};

use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};

use super::{
    App,
    auth::Principal,
    error::ApiError,
    kafka_view::{self, GroupState, Lag, RawMessage},
};
use crate::{
    console::parse_time,
    dlq::redrive::{Request, check_rate},
    order::{Order, now_ms},
    store::{
        Cursor, Filter, History, Status, StoredOrder,
        audit::AuditEntry,
        dead_letters::{JobRow, JobState, LetterState, Reason, Selection, StoredLetter},
    },
};

/// Order ids a replay request may name.
const MAX_IDS: usize = 1_000;

/// The dashboard's window and its buckets.
pub const WINDOW_MS: i64 = 10 * 60_000;
pub const BUCKET_MS: i64 = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct ProductStat {
    pub product: String,
    pub orders: u64,
    pub avg_price: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub at_ms: i64,
    pub processed: i64,
    pub dead_lettered: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub at_ms: i64,
    pub processed: u64,
    pub dead_lettered: i64,
    pub avg_price: Option<f64>,
    pub by_product: Vec<ProductStat>,
    /// The last ten minutes in ten-second buckets, oldest first, none missing.
    pub series: Vec<Point>,
    /// Orders per second over the last full minute.
    pub processed_per_s: f64,
    pub dead_lettered_per_s: f64,
    pub lag: Vec<Lag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_error: Option<String>,
    pub processor: GroupState,
    /// When the processor last stored an order.
    pub last_processed_ms: Option<i64>,
}

/// An orders search, as the query string gives it (empty fields are absent).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct OrdersQuery {
    pub id: Option<String>,
    pub user: Option<String>,
    pub product: Option<String>,
    pub status: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// The `next` of the page before.
    pub after: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrdersPage {
    pub orders: Vec<StoredOrder>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderDetail {
    pub id: String,
    /// Every stored order with this id (a reused id is another order), newest first.
    pub history: Vec<History>,
    /// The message of the newest, as Kafka still holds it.
    pub raw: Option<RawMessage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NewOrder {
    pub user: String,
    pub product: String,
    pub quantity: i32,
    pub price: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Placed {
    pub id: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Which dead letters: a DLQ list or a replay selection.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LettersQuery {
    pub reason: Option<String>,
    /// A group of `reasons`, exactly.
    pub group: Option<String>,
    pub product: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// dead (the default of a replay), replayed or parked.
    pub status: Option<String>,
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LettersPage {
    pub letters: Vec<StoredLetter>,
    pub next: Option<i64>,
}

/// A replay request: a selection, or ids, and how to send. A misspelt field is
/// refused: ignored, it would widen the selection, up to every dead letter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub reason: Option<String>,
    /// A group of `reasons`, exactly.
    pub group: Option<String>,
    pub product: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    #[serde(default)]
    pub ids: Vec<String>,
    pub limit: Option<i64>,
    pub rate: Option<f64>,
    pub to: Option<String>,
    pub max_replays: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub count: i64,
    pub sample: Vec<StoredLetter>,
}

/// Text a search or an order may hold: PostgreSQL stores no NUL, and control
/// characters in a name are a mistake, so both are refused up front.
fn plain(name: &str, s: &str) -> Result<(), ApiError> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(ApiError::BadRequest(format!(
            "{name} holds the control character {c:?}: give plain text"
        ))),
        None => Ok(()),
    }
}

fn given(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn time_param(name: &str, s: &Option<String>) -> Result<Option<i64>, ApiError> {
    given(s)
        .map(|v| parse_time(v).map_err(|e| ApiError::BadRequest(format!("{name}: {e}"))))
        .transpose()
}

fn limit(l: Option<i64>, default: i64) -> Result<i64, ApiError> {
    match l.unwrap_or(default) {
        l @ 1..=500 => Ok(l),
        l => Err(ApiError::BadRequest(format!(
            "limit {l} is out of range: give 1 to 500"
        ))),
    }
}

fn selection(
    (reason, group, product): (&Option<String>, &Option<String>, &Option<String>),
    (since, until): (&Option<String>, &Option<String>),
    state: Option<LetterState>,
    ids: Vec<String>,
) -> Result<Selection, ApiError> {
    Ok(Selection {
        reason: given(reason).map(str::to_string),
        group: given(group).map(str::to_string),
        product: given(product).map(str::to_string),
        since_ms: time_param("since", since)?,
        until_ms: time_param("until", until)?,
        state,
        ids,
    })
}

impl App {
    /// At most one computation a second, whoever asks.
    pub async fn dashboard(&self) -> Result<Arc<Dashboard>, ApiError> {
        let mut cache = self.dashboard.lock().await;
        if let Some((at, d)) = cache.as_ref()
            && at.elapsed() < std::time::Duration::from_secs(1)
        {
            return Ok(d.clone());
        }
        let d = Arc::new(self.compute_dashboard().await?);
        *cache = Some((Instant::now(), d.clone()));
        Ok(d)
    }

    async fn compute_dashboard(&self) -> Result<Dashboard, ApiError> {
        let now = now_ms();
        let start = (now - WINDOW_MS) / BUCKET_MS * BUCKET_MS + BUCKET_MS;
        let aggregates = self.store.aggregates().await?;
        let counts = self.store.throughput(start, BUCKET_MS).await?;
        let dead_lettered = self.store.dead_lettered().await?;
        let last_processed_ms = self.store.last_processed_ms().await?;
        let series: Vec<Point> = (0..WINDOW_MS / BUCKET_MS)
            .map(|i| {
                let at = start + i * BUCKET_MS;
                let (p, d) = counts
                    .iter()
                    .find(|(b, ..)| *b == at)
                    .map_or((0, 0), |(_, p, d)| (*p, *d));
                Point {
                    at_ms: at,
                    processed: p,
                    dead_lettered: d,
                }
            })
            .collect();
        // The last six full buckets: the current one is still filling.
        let minute = &series[series.len().saturating_sub(7)..series.len().saturating_sub(1)];
        let per_s = |f: fn(&Point) -> i64| {
            minute.iter().map(f).sum::<i64>() as f64 / (minute.len().max(1) as f64 * 10.0)
        };
        let (lag, lag_error) = self.lag_unless_failing().await;
        let mut by_product: Vec<ProductStat> = aggregates
            .by_product
            .iter()
            .map(|(p, s)| ProductStat {
                product: p.clone(),
                orders: s.orders,
                avg_price: s.avg(),
            })
            .collect();
        by_product.sort_by(|a, b| b.orders.cmp(&a.orders).then(a.product.cmp(&b.product)));
        Ok(Dashboard {
            at_ms: now,
            processed: aggregates.total.orders,
            dead_lettered,
            avg_price: aggregates.total.avg(),
            by_product,
            processed_per_s: per_s(|p| p.processed),
            dead_lettered_per_s: per_s(|p| p.dead_lettered),
            series,
            lag,
            lag_error,
            processor: self.group_state().await,
            last_processed_ms,
        })
    }

    /// Some brokers (the embedded one) fail DescribeGroups: then the state is
    /// unknown, and the cluster is asked again only after a few minutes, not
    /// on every refresh of the dashboard.
    async fn group_state(&self) -> GroupState {
        let mut cached = self.group_state.lock().await;
        if let Some((at, s)) = cached.as_ref() {
            let keep = if s.error.is_some() { 300 } else { 5 };
            if at.elapsed() < std::time::Duration::from_secs(keep) {
                return s.clone();
            }
        }
        let s = self.cluster.group_state(&self.group).await;
        *cached = Some((Instant::now(), s.clone()));
        s
    }

    /// The lag, or the error of a try less than 30 s ago: each try against a
    /// cluster that does not answer waits out its timeouts.
    async fn lag_unless_failing(&self) -> (Vec<Lag>, Option<String>) {
        let mut failed = self.lag_failed.lock().await;
        if let Some((at, e)) = failed.as_ref()
            && at.elapsed() < std::time::Duration::from_secs(30)
        {
            return (Vec::new(), Some(e.clone()));
        }
        match self.lag().await {
            Ok(l) => {
                *failed = None;
                (l, None)
            }
            Err(e) => {
                *failed = Some((Instant::now(), e.clone()));
                (Vec::new(), Some(e))
            }
        }
    }

    async fn lag(&self) -> Result<Vec<Lag>, String> {
        let ends = self.cluster.ends(&self.topics.orders).await?;
        let positions = self
            .store
            .offsets(&self.group, &self.topics.orders)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ends
            .into_iter()
            .map(|(partition, end)| {
                let position = positions.get(&partition).copied();
                Lag {
                    partition,
                    end,
                    position,
                    lag: (end - position.unwrap_or(0)).max(0),
                }
            })
            .collect())
    }

    pub async fn orders(&self, q: &OrdersQuery) -> Result<OrdersPage, ApiError> {
        let limit = limit(q.limit, 50)?;
        for (name, v) in [("id", &q.id), ("user", &q.user), ("product", &q.product)] {
            plain(name, v.as_deref().unwrap_or(""))?;
        }
        if let Some(id) = given(&q.id) {
            let orders = self
                .store
                .show(id)
                .await?
                .into_iter()
                .map(|h| h.order)
                .collect();
            return Ok(OrdersPage { orders, next: None });
        }
        let status = given(&q.status)
            .map(|s| {
                Status::parse(s).ok_or_else(|| {
                    ApiError::BadRequest(format!("status {s:?} is unknown: use processed or dlq"))
                })
            })
            .transpose()?;
        let before = given(&q.after)
            .map(|s| s.parse::<Cursor>().map_err(ApiError::BadRequest))
            .transpose()?;
        let filter = Filter {
            status,
            product: given(&q.product).map(str::to_string),
            user: given(&q.user).map(str::to_string),
            since_ms: time_param("since", &q.since)?,
            until_ms: time_param("until", &q.until)?,
            before,
            limit,
        };
        let orders = self.store.list(&filter).await?;
        let next = (orders.len() as i64 == limit)
            .then(|| orders.last().map(|o| o.cursor().to_string()))
            .flatten();
        Ok(OrdersPage { orders, next })
    }

    /// `None` when no order has this id (yet).
    pub async fn order(&self, id: &str) -> Result<Option<OrderDetail>, ApiError> {
        plain("the order id", id)?;
        let mut history = self.store.show(id).await?;
        if history.is_empty() {
            return Ok(None);
        }
        history.sort_by_key(|h| std::cmp::Reverse(h.order.seq));
        let o = &history[0].order;
        let (raw, raw_error) = match kafka_view::message(
            &self.kafka,
            (&o.topic, o.partition as i32, o.offset),
            self.decoder.clone(),
        )
        .await
        {
            Ok(Some(m)) => (Some(m), None),
            Ok(None) => (
                None,
                Some("the message is no longer in Kafka (retention)".to_string()),
            ),
            Err(e) => (None, Some(e)),
        };
        Ok(Some(OrderDetail {
            id: id.to_string(),
            history,
            raw,
            raw_error,
        }))
    }

    /// Produces an order through Kafka, as any producer would.
    pub async fn place(&self, who: &Principal, new: NewOrder) -> Result<Placed, ApiError> {
        if !who.can_operate() {
            return Err(ApiError::operators_only("place orders"));
        }
        let order = Order {
            order_id: uuid::Uuid::now_v7().to_string(),
            user: new.user.trim().to_string(),
            product: new.product.trim().to_string(),
            quantity: new.quantity,
            price: Some(new.price),
            created_at_ms: now_ms(),
        };
        plain("user", &order.user)?;
        plain("product", &order.product)?;
        if order.user.chars().count() > 200 || order.product.chars().count() > 200 {
            return Err(ApiError::BadRequest(
                "user and product take at most 200 characters each".into(),
            ));
        }
        if order.user.is_empty() {
            return Err(ApiError::BadRequest(
                "user is empty: name who orders".into(),
            ));
        }
        order
            .validate()
            .map_err(|e| ApiError::BadRequest(format!("the order is invalid: {e}")))?;
        let payload = self.writer.encode(&order);
        let record = FutureRecord::to(&self.topics.orders)
            .key(&order.order_id)
            .payload(&payload);
        let (partition, offset) = self
            .producer
            .send(record, std::time::Duration::from_secs(10))
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| {
                ApiError::Unavailable(format!(
                    "the order was not written to {}: {e}; check the cluster and try again",
                    self.topics.orders
                ))
            })?;
        self.metrics.orders_placed.inc();
        let placed = Placed {
            id: order.order_id.clone(),
            topic: self.topics.orders.clone(),
            partition,
            offset,
        };
        self.audit(
            who,
            ("order.place", &format!("order:{}", order.order_id)),
            &order,
        )
        .await;
        Ok(placed)
    }

    /// Records a change that has happened. A store that fails here does not
    /// fail the request: the change is done, and a client told to retry would
    /// make it twice. The failure is logged, with what the row would have said.
    async fn audit(
        &self,
        who: &Principal,
        (action, target): (&str, &str),
        detail: &impl Serialize,
    ) {
        let detail = serde_json::to_string(detail).expect("audit details serialize");
        if let Err(e) = self
            .store
            .audit(now_ms(), &who.name, (action, target), &detail)
            .await
        {
            tracing::error!(error = %e, user = %who.name, action, target, detail, "the audit log could not be written");
        }
    }

    pub async fn audit_log(&self, target: Option<&str>) -> Result<Vec<AuditEntry>, ApiError> {
        if let Some(t) = target {
            plain("target", t)?;
        }
        Ok(self.store.audit_log(target, 100).await?)
    }

    /// Reads what the store lacks of the DLQ topic, at most every few seconds;
    /// a read that fails is logged and the store's view served.
    async fn catch_up(&self, required: bool) -> Result<(), ApiError> {
        let mut last = self.caught_up.lock().await;
        if !required && last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(5)) {
            return Ok(());
        }
        match self.redrive.catch_up().await {
            Ok(_) => {
                *last = Some(Instant::now());
                Ok(())
            }
            Err(e) if required => Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "reading the DLQ topic failed; showing what the store holds");
                // Not again for a while: each try waits out the cluster's
                // timeouts, and a page asks more than once.
                *last = Some(Instant::now());
                Ok(())
            }
        }
    }

    pub async fn reasons(&self, status: Option<&str>) -> Result<Vec<Reason>, ApiError> {
        self.catch_up(false).await?;
        let state = letter_state(status)?.or(Some(LetterState::Dead));
        let sel = Selection {
            state,
            ..Selection::default()
        };
        Ok(self.store.dead_letter_reasons(&sel, 200).await?)
    }

    pub async fn letters(&self, q: &LettersQuery) -> Result<LettersPage, ApiError> {
        for (name, v) in [
            ("reason", &q.reason),
            ("group", &q.group),
            ("product", &q.product),
        ] {
            plain(name, v.as_deref().unwrap_or(""))?;
        }
        self.catch_up(false).await?;
        let limit = limit(q.limit, 50)?;
        let sel = selection(
            (&q.reason, &q.group, &q.product),
            (&q.since, &q.until),
            letter_state(q.status.as_deref())?,
            Vec::new(),
        )?;
        let letters = self.store.dead_letters(&sel, q.after, limit).await?;
        let next = (letters.len() as i64 == limit)
            .then(|| letters.last().map(|l| l.id))
            .flatten();
        Ok(LettersPage { letters, next })
    }

    fn replay_request(&self, who: &Principal, r: &ReplayRequest) -> Result<Request, ApiError> {
        for (name, v) in [
            ("reason", &r.reason),
            ("group", &r.group),
            ("product", &r.product),
            ("to", &r.to),
        ] {
            plain(name, v.as_deref().unwrap_or(""))?;
        }
        for id in &r.ids {
            plain("an id", id)?;
        }
        if let Some(rate) = r.rate {
            check_rate(rate).map_err(|e| ApiError::BadRequest(format!("rate: {e}")))?;
        }
        if r.ids.len() > MAX_IDS {
            return Err(ApiError::BadRequest(format!(
                "{} ids: give at most {MAX_IDS}, or select by reason, product or time",
                r.ids.len()
            )));
        }
        if r.limit.is_some_and(|l| l < 1) {
            return Err(ApiError::BadRequest("limit must be 1 or more".into()));
        }
        let ids = r
            .ids
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        Ok(Request {
            selection: selection(
                (&r.reason, &r.group, &r.product),
                (&r.since, &r.until),
                Some(LetterState::Dead),
                ids,
            )?,
            limit: r.limit,
            to: given(&r.to).map(str::to_string),
            rate: r.rate,
            max_replays: r.max_replays.unwrap_or(3),
            principal: who.name.clone(),
        })
    }

    pub async fn preview(&self, who: &Principal, r: &ReplayRequest) -> Result<Preview, ApiError> {
        let req = self.replay_request(who, r)?;
        self.catch_up(false).await?;
        let (count, sample) = self.redrive.preview(&req, 20).await?;
        Ok(Preview { count, sample })
    }

    /// Starts a job and runs it in the background; its progress is in the store.
    pub async fn start_replay(
        self: &Arc<Self>,
        who: &Principal,
        r: &ReplayRequest,
    ) -> Result<JobRow, ApiError> {
        if !who.can_operate() {
            return Err(ApiError::operators_only("start replays"));
        }
        let req = self.replay_request(who, r)?;
        self.catch_up(true).await?;
        // Asked first: a job made for nothing would stay `running`, never run.
        // (One that loses its letters to another job meanwhile runs and
        // completes with nothing sent.)
        if self.redrive.preview(&req, 0).await?.0 == 0 {
            return Err(ApiError::BadRequest(
                "nothing to replay: no dead letter matches the selection".into(),
            ));
        }
        let job = self.redrive.start(&req).await?;
        // Its runner first: nothing that may fail comes between the job and it.
        let cancel = self.shutdown.child_token();
        self.running
            .lock()
            .expect("running lock")
            .insert(job.id, cancel.clone());
        let (app, id) = (self.clone(), job.id);
        self.replays.spawn(async move {
            // Leaves the map however the run ends, a panic included.
            let _gone = Unregister(&app, id);
            if let Err(e) = app.redrive.run(id, &cancel, |_| {}).await {
                tracing::warn!(job = id, error = %e, "replay job stopped");
            }
        });
        let detail = serde_json::json!({
            "selection": req.selection,
            "limit": req.limit,
            "to": req.to,
            "rate": req.rate,
            "max_replays": req.max_replays,
        });
        self.audit(
            who,
            ("replay.start", &format!("replay:{}", job.id)),
            &detail,
        )
        .await;
        Ok(job)
    }

    pub async fn cancel_replay(&self, who: &Principal, id: i64) -> Result<JobRow, ApiError> {
        if !who.can_operate() {
            return Err(ApiError::operators_only("cancel replays"));
        }
        let here = self.running.lock().expect("running lock").get(&id).cloned();
        let job = match here {
            Some(token) => {
                // It may have ended just now, its runner not yet gone.
                let job = self.redrive.job(id).await?;
                if matches!(job.state, JobState::Completed | JobState::Cancelled) {
                    return Err(crate::dlq::redrive::Error::Ended {
                        job: id,
                        state: job.state.as_str(),
                    }
                    .into());
                }
                token.cancel();
                self.redrive.job(id).await?
            }
            None => self.redrive.cancel(id).await?,
        };
        self.audit(who, ("replay.cancel", &format!("replay:{id}")), &id)
            .await;
        Ok(job)
    }

    pub async fn jobs(&self) -> Result<Vec<JobRow>, ApiError> {
        Ok(self.store.replay_jobs(50).await?)
    }

    pub async fn job(&self, id: i64) -> Result<JobRow, ApiError> {
        Ok(self.redrive.job(id).await?)
    }
}

struct Unregister<'a>(&'a App, i64);

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.0.running.lock() {
            running.remove(&self.1);
        }
    }
}

fn letter_state(s: Option<&str>) -> Result<Option<LetterState>, ApiError> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            LetterState::parse(s).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "status {s:?} is unknown: use dead, replayed or parked"
                ))
            })
        })
        .transpose()
}

/// Whether a job will change no more.
pub fn ended(job: &JobRow) -> bool {
    job.state != JobState::Running
}
