//! The console's pages: askama templates (in `templates/`, escaped by default)
//! over the operations in `ops`. Forms post to these routes and redirect, so
//! the pages work without JavaScript; `console.js` only keeps live parts live.

use std::sync::Arc;

use askama::Template;
use axum::{
    Extension, Form, Router,
    extract::{FromRequestParts, Path, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;

use super::{
    App, api,
    auth::{self, Principal},
    error::ApiError,
    kafka_view::RawMessage,
    ops::{self, Dashboard, LettersQuery, NewOrder, OrderDetail, OrdersQuery, ReplayRequest},
};
use crate::{
    console::amount,
    console::time,
    store::{
        StoredOrder,
        audit::AuditEntry,
        dead_letters::{JobRow, LetterState},
    },
};

pub fn public_routes() -> Router<Arc<App>> {
    Router::new().route("/login", get(login_page).post(login))
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(dashboard))
        .route("/logout", post(logout))
        .route("/orders", get(orders))
        .route("/orders/{id}", get(order))
        .route("/place", get(place_page).post(place))
        .route("/dlq", get(dlq))
        .route("/dlq/preview", post(dlq_preview))
        .route("/dlq/replays", post(dlq_start))
        .route("/dlq/replays/{id}", get(job))
        .route("/dlq/replays/{id}/cancel", post(job_cancel))
}

/// A query string whose rejection is a page, as a browser wants it.
struct Query<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let who = parts.extensions.get::<Principal>().cloned();
        api::Query::from_request_parts(parts, state)
            .await
            .map(|api::Query(v)| Query(v))
            .map_err(|e| error_page(&e, who.as_ref()))
    }
}

/// The signed-in user, as the layout shows them.
pub struct UserView {
    name: String,
    role: &'static str,
    operator: bool,
}

fn user(who: &Principal) -> Option<UserView> {
    Some(UserView {
        name: who.name.clone(),
        role: who.role.as_str(),
        operator: who.can_operate(),
    })
}

fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

fn fragment(t: &impl Template) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "rendering a fragment failed");
        String::from("<p class=\"error\">this part could not be rendered</p>")
    })
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    nav: &'a str,
    user: Option<UserView>,
    heading: &'a str,
    message: String,
}

pub fn error_page(e: &ApiError, who: Option<&Principal>) -> Response {
    let heading = match e {
        ApiError::NotFound(_) => "Not found",
        ApiError::Forbidden(_) => "Not allowed",
        ApiError::BadRequest(_) => "That did not work",
        _ => "Something failed",
    };
    let mut r = render(&ErrorPage {
        title: heading,
        nav: "",
        user: who.and_then(user),
        heading,
        message: e.to_string(),
    });
    *r.status_mut() = e.status();
    r
}

pub fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---- sign in

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    title: &'a str,
    nav: &'a str,
    user: Option<UserView>,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Only a path of ours: `next` must not send a signed-in user elsewhere. It is
/// resolved as a browser would (which drops tabs and newlines, and reads `\`
/// as `/`), and kept only if it stays on this host.
fn local_path(next: Option<&str>) -> String {
    let base = url::Url::parse("http://console.invalid/").expect("a valid base");
    match next.map(|p| (p, base.join(p))) {
        Some((p, Ok(u)))
            if p.starts_with('/')
                && !p.chars().any(|c| c.is_control() || c.is_whitespace())
                && u.host_str() == Some("console.invalid") =>
        {
            // Dot segments can normalise `/.//host` into `//host`, which a
            // browser reads as another host.
            let mut out = u.path().to_string();
            if out.starts_with("//") || out.starts_with("/\\") {
                return "/".into();
            }
            if let Some(q) = u.query() {
                out.push('?');
                out.push_str(q);
            }
            out
        }
        _ => "/".into(),
    }
}

async fn login_page(Query(q): Query<NextQuery>) -> Response {
    render(&LoginPage {
        title: "Sign in",
        nav: "",
        user: None,
        next: local_path(q.next.as_deref()),
        error: None,
    })
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
    next: Option<String>,
}

async fn login(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = local_path(f.next.as_deref());
    let refused = |error: String, status| {
        let mut r = render(&LoginPage {
            title: "Sign in",
            nav: "",
            user: None,
            next: next.clone(),
            error: Some(error),
        });
        *r.status_mut() = status;
        r
    };
    if let Err(e) = auth::csrf_check(&axum::http::Method::POST, &headers) {
        return refused(e, StatusCode::FORBIDDEN);
    }
    match app.users.sign_in(&f.name, &f.password).await {
        Some(who) => {
            tracing::info!(user = %who.name, "signed in");
            let cookie = app.sessions.open(who, &headers);
            ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
        }
        None => refused("Wrong name or password.".into(), StatusCode::UNAUTHORIZED),
    }
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(id) = auth::session_id(&headers) {
        app.sessions.close(id);
    }
    (
        [(header::SET_COOKIE, auth::clear_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

// ---- dashboard

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage<'a> {
    title: &'a str,
    nav: &'a str,
    user: Option<UserView>,
    body: String,
}

struct Bar {
    x: f64,
    y_ok: f64,
    h_ok: f64,
    y_bad: f64,
    h_bad: f64,
    title: String,
}

struct Chart {
    width: u32,
    height: u32,
    bar_width: f64,
    max: i64,
    bars: Vec<Bar>,
    from: String,
    to: String,
}

fn clock(ms: i64) -> String {
    let t = time(ms);
    t.get(11..19).map_or(t.clone(), str::to_string)
}

fn chart(d: &Dashboard) -> Chart {
    let (width, height) = (600u32, 140u32);
    let n = d.series.len().max(1) as f64;
    let slot = f64::from(width) / n;
    let max = d
        .series
        .iter()
        .map(|p| p.processed + p.dead_lettered)
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = f64::from(height) / max as f64;
    let bars = d
        .series
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let h_ok = p.processed as f64 * scale;
            let h_bad = p.dead_lettered as f64 * scale;
            Bar {
                x: i as f64 * slot,
                y_ok: f64::from(height) - h_ok,
                h_ok,
                y_bad: f64::from(height) - h_ok - h_bad,
                h_bad,
                title: format!(
                    "{}: {} processed, {} dead-lettered",
                    clock(p.at_ms),
                    p.processed,
                    p.dead_lettered
                ),
            }
        })
        .collect();
    Chart {
        width,
        height,
        bar_width: (slot - 1.0).max(1.0),
        max,
        bars,
        from: d
            .series
            .first()
            .map_or_else(String::new, |p| clock(p.at_ms)),
        to: d.series.last().map_or_else(String::new, |p| clock(p.at_ms)),
    }
}

#[derive(Template)]
#[template(path = "dashboard_body.html")]
struct DashboardBody<'a> {
    d: &'a Dashboard,
    chart: Chart,
    processed_rate: String,
    dead_rate: String,
    avg_price: String,
    state_class: &'static str,
    last_processed: String,
    products: Vec<(String, u64, String)>,
    updated: String,
}

pub fn dashboard_body(d: &Dashboard) -> String {
    fragment(&DashboardBody {
        d,
        chart: chart(d),
        processed_rate: format!("{:.1}", d.processed_per_s),
        dead_rate: format!("{:.1}", d.dead_lettered_per_s),
        avg_price: amount(d.avg_price),
        state_class: match d.processor.state.as_str() {
            "Stable" => "good",
            "Unknown" => "",
            _ => "warn",
        },
        last_processed: d.last_processed_ms.map_or("never".into(), time),
        products: d
            .by_product
            .iter()
            .map(|p| (p.product.clone(), p.orders, amount(p.avg_price)))
            .collect(),
        updated: time(d.at_ms),
    })
}

async fn dashboard(State(app): State<Arc<App>>, Extension(who): Extension<Principal>) -> Response {
    match app.dashboard().await {
        Ok(d) => render(&DashboardPage {
            title: "Dashboard",
            nav: "dashboard",
            user: user(&who),
            body: dashboard_body(&d),
        }),
        Err(e) => error_page(&e, Some(&who)),
    }
}

// ---- orders

struct OrderRow {
    id: String,
    user: String,
    product: String,
    quantity: i64,
    price: String,
    status: String,
    status_text: &'static str,
    attempts: i64,
    finished: String,
}

fn status_text(s: &str) -> &'static str {
    match s {
        "processed" => "processed",
        "dlq" => "dead-lettered",
        _ => "unknown",
    }
}

fn order_row(o: &StoredOrder) -> OrderRow {
    OrderRow {
        id: o.id.clone(),
        user: o.user.clone(),
        product: o.product.clone(),
        quantity: o.quantity,
        price: amount(o.price),
        status: o.status.clone(),
        status_text: status_text(&o.status),
        attempts: o.attempts,
        finished: time(o.processed_ms),
    }
}

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage<'a> {
    title: &'a str,
    nav: &'a str,
    user: Option<UserView>,
    q: OrdersQuery,
    rows: Vec<OrderRow>,
    next: Option<String>,
    error: Option<String>,
}

async fn orders(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<OrdersQuery>,
) -> Response {
    let (rows, next, error) = match app.orders(&q).await {
        Ok(page) => {
            let next = page.next.map(|n| {
                let mut nq = q.clone();
                nq.after = Some(n);
                format!("/orders?{}", orders_query_string(&nq))
            });
            (page.orders.iter().map(order_row).collect(), next, None)
        }
        Err(e @ ApiError::BadRequest(_)) => (Vec::new(), None, Some(e.to_string())),
        Err(e) => return error_page(&e, Some(&who)),
    };
    render(&OrdersPage {
        title: "Orders",
        nav: "orders",
        user: user(&who),
        q,
        rows,
        next,
        error,
    })
}

fn orders_query_string(q: &OrdersQuery) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    let fields = [
        ("id", &q.id),
        ("user", &q.user),
        ("product", &q.product),
        ("status", &q.status),
        ("since", &q.since),
        ("until", &q.until),
        ("after", &q.after),
    ];
    for (k, v) in fields {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            s.append_pair(k, v);
        }
    }
    if let Some(l) = q.limit {
        s.append_pair("limit", &l.to_string());
    }
    s.finish()
}

struct EventView {
    at: String,
    kind: String,
    kind_text: String,
    detail: String,
}

struct HistoryView {
    o: StoredOrder,
    status: String,
    status_text: &'static str,
    price: String,
    produced: String,
    received: String,
    finished: String,
    events: Vec<EventView>,
}

#[derive(Template)]
#[template(path = "order_body.html")]
struct OrderBody {
    orders: Vec<HistoryView>,
    raw: Option<RawMessage>,
    decoded: String,
    raw_error: String,
}

pub fn order_body(d: &OrderDetail) -> String {
    let orders = d
        .history
        .iter()
        .map(|h| HistoryView {
            o: h.order.clone(),
            status: h.order.status.clone(),
            status_text: status_text(&h.order.status),
            price: amount(h.order.price),
            produced: h.order.produced_ms.map_or("unknown".into(), time),
            received: h.order.received_ms.map_or("unknown".into(), time),
            finished: time(h.order.processed_ms),
            events: h
                .events
                .iter()
                .map(|e| EventView {
                    at: time(e.at_ms),
                    kind: e.kind.clone(),
                    kind_text: match e.kind.as_str() {
                        "dlq" => "dead-lettered".into(),
                        k => k.replace('_', " "),
                    },
                    detail: e.detail.clone(),
                })
                .collect(),
        })
        .collect();
    let decoded = match d.raw.as_ref() {
        Some(RawMessage {
            decoded: Some(v), ..
        }) => serde_json::to_string_pretty(v).expect("JSON values print"),
        Some(RawMessage {
            decode_error: Some(e),
            ..
        }) => format!("does not decode: {e}"),
        _ => String::new(),
    };
    fragment(&OrderBody {
        orders,
        raw: d.raw.clone(),
        decoded,
        raw_error: d.raw_error.clone().unwrap_or_default(),
    })
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage<'a> {
    title: &'a str,
    nav: &'a str,
    user: Option<UserView>,
    id: String,
    /// `None` while the order is not stored: the page follows it live.
    body: Option<String>,
    /// Just placed from the console, so it is on its way.
    placed: bool,
}

#[derive(Deserialize)]
struct OrderQuery {
    placed: Option<String>,
}

/// An order not (yet) in the store is followed live all the same, as one
/// produced elsewhere may still be on its way; unless it was just placed here,
/// the answer is a 404 that says so.
async fn order(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<OrderQuery>,
) -> Response {
    match app.order(&id).await {
        Ok(d) => {
            let placed = q.placed.is_some();
            let found = d.is_some();
            let mut r = render(&OrderPage {
                title: "Order",
                nav: "orders",
                user: user(&who),
                body: d.as_ref().map(order_body),
                id,
                placed,
            });
            if !found && !placed {
                *r.status_mut() = StatusCode::NOT_FOUND;
            }
            r
        }
        Err(e) => error_page(&e, Some(&who)),
    }
}

// ---- place an order

#[derive(Template)]
#[template(path = "place.html")]
struct PlacePage<'a> {
    title: &'a str,
    nav: &'a str,
    user: Option<UserView>,
    topic: String,
    error: Option<String>,
    user_value: String,
    product_value: String,
    quantity_value: String,
    price_value: String,
}

#[derive(Deserialize, Default)]
struct PlaceForm {
    user: String,
    product: String,
    quantity: String,
    price: String,
}

fn place_form(app: &App, who: &Principal, f: PlaceForm, error: Option<String>) -> Response {
    render(&PlacePage {
        title: "Place an order",
        nav: "place",
        user: user(who),
        topic: app.topics.orders.clone(),
        error,
        user_value: f.user,
        product_value: f.product,
        quantity_value: f.quantity,
        price_value: f.price,
    })
}

async fn place_page(State(app): State<Arc<App>>, Extension(who): Extension<Principal>) -> Response {
    if !who.can_operate() {
        return error_page(&ApiError::operators_only("place orders"), Some(&who));
    }
    place_form(
        &app,
        &who,
        PlaceForm {
            quantity: "1".into(),
            ..PlaceForm::default()
        },
        None,
    )
}

async fn place(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Form(f): Form<PlaceForm>,
) -> Response {
    let quantity = f.quantity.trim().parse::<i32>();
    let price = f.price.trim().parse::<f64>();
    let (Ok(quantity), Ok(price)) = (quantity, price) else {
        let e = "Quantity must be a whole number and price a number.".to_string();
        return place_form(&app, &who, f, Some(e));
    };
    let new = NewOrder {
        user: f.user.clone(),
        product: f.product.clone(),
        quantity,
        price,
    };
    match app.place(&who, new).await {
        Ok(p) => Redirect::to(&format!("/orders/{}?placed=1", url_encode(&p.id))).into_response(),
        Err(e @ ApiError::BadRequest(_)) => place_form(&app, &who, f, Some(e.to_string())),
        Err(e) => error_page(&e, Some(&who)),
    }
}

// ---- dead letters

struct ReasonView {
    reason: String,
    count: i64,
    first: String,
    last: String,
    selected: bool,
}

struct LetterView {
    id: i64,
    order_id: Option<String>,
    product: String,
    reason: String,
    state: &'static str,
    dead: String,
    record: String,
}

pub struct JobView {
    id: i64,
    state: &'static str,
    by: String,
    started: String,
    selected: i64,
    sent: i64,
    parked: i64,
    skipped: i64,
    failed: i64,
    selection: String,
}

fn job_view(j: &JobRow) -> JobView {
    JobView {
        id: j.id,
        state: j.state.as_str(),
        by: j.principal.clone(),
        started: time(j.created_ms),
        selected: j.selected,
        sent: j.sent,
        parked: j.parked,
        skipped: j.skipped,
        failed: j.failed,
        selection: j.selection.clone(),
    }
}

struct AuditView {
    at: String,
    who: String,
    action: String,
    target: String,
    detail: String,
}

fn audit_view(a: AuditEntry) -> AuditView {
    AuditView {
        at: time(a.at_ms),
        who: a.principal,
        action: a.action,
        target: a.target,
        detail: a.detail,
    }
}

#[derive(Template)]
#[template(path = "dlq.html")]
struct DlqPage<'a> {
    title: &'a str,
    nav: &'a str,
    user: Option<UserView>,
    operator: bool,
    error: Option<String>,
    reason: Option<String>,
    form: ReplayForm,
    limit_value: String,
    rate_value: String,
    reasons: Vec<ReasonView>,
    letters: Vec<LetterView>,
    preview: Option<ops::Preview>,
    jobs: Vec<JobView>,
    audit: Vec<AuditView>,
}

/// The replay form: what the DLQ page selects and how it sends.
#[derive(Debug, Clone, Default, Deserialize)]
struct ReplayForm {
    /// A group of the reasons table: its normalised reason.
    group: Option<String>,
    product: Option<String>,
    limit: Option<String>,
    rate: Option<String>,
}

impl ReplayForm {
    fn request(&self) -> Result<ReplayRequest, ApiError> {
        let num = |name: &str, v: &Option<String>| -> Result<Option<f64>, ApiError> {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<f64>()
                        .map_err(|_| ApiError::BadRequest(format!("{name} {s:?} is not a number")))
                })
                .transpose()
        };
        Ok(ReplayRequest {
            group: self.group.clone(),
            product: self.product.clone(),
            limit: num("limit", &self.limit)?.map(|l| l as i64),
            rate: num("rate", &self.rate)?,
            ..ReplayRequest::default()
        })
    }
}

async fn dlq_page(
    app: &App,
    who: &Principal,
    form: ReplayForm,
    preview: Option<ops::Preview>,
    error: Option<String>,
) -> Response {
    let reason = form.group.clone().filter(|r| !r.trim().is_empty());
    let loaded = async {
        let reasons = app.reasons(None).await?;
        let letters = app
            .letters(&LettersQuery {
                group: reason.clone(),
                status: Some(LetterState::Dead.as_str().into()),
                limit: Some(50),
                ..LettersQuery::default()
            })
            .await?;
        let jobs = app.jobs().await?;
        let audit = app.audit_log(None).await?;
        Ok::<_, ApiError>((reasons, letters, jobs, audit))
    }
    .await;
    let (reasons, letters, jobs, audit) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(&e, Some(who)),
    };
    let shown: Vec<LetterView> = match &preview {
        Some(p) => &p.sample,
        None => &letters.letters,
    }
    .iter()
    .map(|l| LetterView {
        id: l.id,
        order_id: l.letter.order_id.clone(),
        product: l.letter.product.clone().unwrap_or_default(),
        reason: l.letter.reason.clone(),
        state: l.state.as_str(),
        dead: time(l.letter.dead_ms),
        record: l.letter.record.to_string(),
    })
    .collect();
    render(&DlqPage {
        title: "Dead letters",
        nav: "dlq",
        user: user(who),
        operator: who.can_operate(),
        error,
        reasons: reasons
            .iter()
            .map(|r| ReasonView {
                selected: reason.as_deref() == Some(r.reason.as_str()),
                reason: r.reason.clone(),
                count: r.count,
                first: time(r.first_ms),
                last: time(r.last_ms),
            })
            .collect(),
        reason,
        limit_value: form.limit.clone().unwrap_or_default(),
        rate_value: form.rate.clone().unwrap_or_default(),
        form,
        letters: shown,
        preview,
        jobs: jobs.iter().map(job_view).collect(),
        audit: audit.into_iter().map(audit_view).collect(),
    })
}

#[derive(Deserialize)]
struct ReasonQuery {
    group: Option<String>,
}

async fn dlq(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Query(q): Query<ReasonQuery>,
) -> Response {
    let form = ReplayForm {
        group: q.group,
        ..ReplayForm::default()
    };
    dlq_page(&app, &who, form, None, None).await
}

async fn dlq_preview(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Form(form): Form<ReplayForm>,
) -> Response {
    let result = match form.request() {
        Ok(r) => app.preview(&who, &r).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(p) => dlq_page(&app, &who, form, Some(p), None).await,
        Err(e @ ApiError::BadRequest(_)) => {
            dlq_page(&app, &who, form, None, Some(e.to_string())).await
        }
        Err(e) => error_page(&e, Some(&who)),
    }
}

async fn dlq_start(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Form(form): Form<ReplayForm>,
) -> Response {
    let result = match form.request() {
        Ok(r) => app.start_replay(&who, &r).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(job) => Redirect::to(&format!("/dlq/replays/{}", job.id)).into_response(),
        Err(e @ ApiError::BadRequest(_)) => {
            dlq_page(&app, &who, form, None, Some(e.to_string())).await
        }
        Err(e) => error_page(&e, Some(&who)),
    }
}

#[derive(Template)]
#[template(path = "job_body.html")]
struct JobBody {
    j: JobView,
    done: i64,
    error: Option<String>,
    operator: bool,
}

pub fn job_body(j: &JobRow, who: &Principal) -> String {
    fragment(&JobBody {
        j: job_view(j),
        done: j.sent + j.parked + j.skipped + j.failed,
        error: j.error.clone(),
        operator: who.can_operate(),
    })
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage<'a> {
    title: &'a str,
    nav: &'a str,
    user: Option<UserView>,
    id: i64,
    live: bool,
    body: String,
    audit: Vec<AuditView>,
}

pub fn job_id(s: &str) -> Result<i64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::BadRequest(format!("{s:?} is no replay job number")))
}

async fn job(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let loaded = async {
        let j = app.job(job_id(&id)?).await?;
        let audit = app.audit_log(Some(&format!("replay:{}", j.id))).await?;
        Ok::<_, ApiError>((j, audit))
    };
    match loaded.await {
        Ok((j, audit)) => render(&JobPage {
            title: "Replay job",
            nav: "dlq",
            user: user(&who),
            id: j.id,
            live: !ops::ended(&j),
            body: job_body(&j, &who),
            audit: audit.into_iter().map(audit_view).collect(),
        }),
        Err(e) => error_page(&e, Some(&who)),
    }
}

async fn job_cancel(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    match async { app.cancel_replay(&who, job_id(&id)?).await }.await {
        Ok(j) => Redirect::to(&format!("/dlq/replays/{}", j.id)).into_response(),
        Err(e) => error_page(&e, Some(&who)),
    }
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path(Some("/orders?status=dlq")), "/orders?status=dlq");
        for evil in [
            "//evil.example",
            "/\t/evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "evil.example",
            "/\n/evil.example",
            "/.//evil.example",
            "/..//evil.example",
            "/%2e//evil.example",
            "/./\\evil.example",
        ] {
            assert_eq!(local_path(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(local_path(None), "/");
    }
}
