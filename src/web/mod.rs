//! `orderflow serve`: the web console and its JSON API (`/api/v1`), over the
//! same store and cluster as the other commands. Pages are rendered on the
//! server (askama, escaped by default) and kept live by Server-Sent Events.
//!
//! - `auth`: users, sessions, tokens, roles and the CSRF check;
//! - `ops`: what pages and API do, once;
//! - `api` and `pages`: the two faces; `live`: the event streams;
//! - `kafka_view`: what the console reads from the cluster itself;
//! - `registry`: the schema registry at `/registry`, for registry clients.

mod api;
pub mod auth;
mod error;
mod kafka_view;
mod live;
mod metrics;
mod ops;
mod pages;
mod registry;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::get,
};
use rdkafka::producer::FutureProducer;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use auth::{Principal, Role, Users};
use error::ApiError;

use crate::{
    codec::{Decoder, avro},
    dlq::redrive::{Redrive, Topics},
    kafka::KafkaConfig,
    store::Store,
};

/// What `serve` is given.
pub struct Settings {
    pub kafka: KafkaConfig,
    pub topics: Topics,
    /// The processor's consumer group, whose lag and state the dashboard shows.
    pub group: String,
    pub users: Users,
    pub session_ttl: Duration,
}

/// The console's state, shared by every request.
pub struct App {
    store: Arc<Store>,
    kafka: KafkaConfig,
    cluster: kafka_view::Cluster,
    topics: Topics,
    group: String,
    users: Users,
    sessions: auth::Sessions,
    redrive: Redrive,
    producer: FutureProducer,
    writer: avro::Writer,
    decoder: Decoder,
    /// Replay jobs this process runs, to stop them at once when asked.
    running: Mutex<HashMap<i64, CancellationToken>>,
    /// Their tasks, awaited when the console stops.
    replays: TaskTracker,
    dashboard: tokio::sync::Mutex<Option<(Instant, Arc<ops::Dashboard>)>>,
    caught_up: tokio::sync::Mutex<Option<Instant>>,
    group_state: tokio::sync::Mutex<Option<(Instant, kafka_view::GroupState)>>,
    lag_failed: tokio::sync::Mutex<Option<(Instant, String)>>,
    metrics: metrics::ConsoleMetrics,
    shutdown: CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the console needs users: add one with `orderflow users add NAME --role operator`")]
    NoUsers,
    #[error(transparent)]
    Kafka(#[from] crate::kafka::Error),
}

impl App {
    pub fn new(
        store: Arc<Store>,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> Result<Arc<App>, Error> {
        if settings.users.is_empty() {
            return Err(Error::NoUsers);
        }
        let producer = settings.kafka.producer()?;
        settings.users.prepare();
        Ok(Arc::new(App {
            redrive: Redrive::new(
                store.clone(),
                settings.kafka.clone(),
                settings.topics.clone(),
            ),
            store,
            cluster: kafka_view::Cluster::new(settings.kafka.clone()),
            kafka: settings.kafka,
            topics: settings.topics,
            group: settings.group,
            users: settings.users,
            sessions: auth::Sessions::new(settings.session_ttl),
            producer,
            writer: avro::Writer::new(),
            decoder: Decoder::default(),
            running: Mutex::new(HashMap::new()),
            replays: TaskTracker::new(),
            dashboard: tokio::sync::Mutex::new(None),
            caught_up: tokio::sync::Mutex::new(None),
            group_state: tokio::sync::Mutex::new(None),
            lag_failed: tokio::sync::Mutex::new(None),
            metrics: metrics::ConsoleMetrics::new(),
            shutdown,
        }))
    }
}

/// Serves until `shutdown` fires. Then the live streams end, and the replays
/// this process runs stop as cancelled after the chunk they are sending, whose
/// deliveries are recorded; `run` returns once they have.
pub async fn run(listener: tokio::net::TcpListener, app: Arc<App>) -> std::io::Result<()> {
    let shutdown = app.shutdown.clone();
    let served = axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    app.replays.close();
    app.replays.wait().await;
    served
}

pub fn router(app: Arc<App>) -> Router {
    let signed_in = Router::new()
        .merge(pages::routes())
        .merge(api::routes())
        .merge(live::routes())
        .route_layer(middleware::from_fn_with_state(app.clone(), require_user));
    Router::new()
        .merge(signed_in)
        .merge(pages::public_routes())
        .merge(api::public_routes())
        .nest_service("/registry", registry::routes(app.clone()))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_text))
        .route("/static/console.css", get(css))
        .route("/static/console.js", get(js))
        .fallback(not_found)
        .layer(middleware::map_response(security_headers))
        .layer(middleware::from_fn_with_state(app.clone(), count))
        .with_state(app)
}

async fn count(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let area = metrics::area(req.uri().path());
    let r = next.run(req).await;
    app.metrics
        .requests
        .get_or_create(&metrics::RequestLabels {
            area,
            code: metrics::code(r.status().as_u16()),
        })
        .inc();
    r
}

/// Scripts and styles only from the console itself, no framing, no sniffing:
/// a value that escaped escaping still could not run.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    r
}

/// The console's metrics, on its own port too (like `/healthz`, without sign-in).
async fn metrics_text(State(app): State<Arc<App>>, headers: header::HeaderMap) -> Response {
    crate::metrics::respond(&headers, crate::metrics::Exposition::encode(&*app))
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/console.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/console.js"),
    )
}

async fn not_found(req: Request) -> Response {
    let path = req.uri().path();
    if path.starts_with("/api/") {
        ApiError::NotFound(format!(
            "no route {path}: /api/v1/openapi.json lists the API"
        ))
        .into_response()
    } else {
        pages::error_page(
            &ApiError::NotFound(format!("there is no page {path}")),
            None,
        )
    }
}

/// Signs the request in (session cookie or bearer token), checks CSRF for
/// cookie-borne changes, and hands the principal to the handler.
async fn require_user(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let headers = req.headers();
    let who = match auth::bearer(headers) {
        Some(token) => app.users.by_token(token),
        None => auth::session_id(headers).and_then(|id| app.sessions.get(id)),
    };
    let Some(who) = who else {
        if api || req.uri().path().starts_with("/events/") {
            return ApiError::Unauthorized.into_response();
        }
        let next = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        return Redirect::to(&format!("/login?next={}", pages::url_encode(&next))).into_response();
    };
    if who.by_cookie
        && let Err(msg) = auth::csrf_check(req.method(), headers)
    {
        tracing::warn!(user = %who.name, path = %req.uri().path(), "{msg}");
        let e = ApiError::Forbidden(msg);
        return if api {
            e.into_response()
        } else {
            pages::error_page(&e, Some(&who))
        };
    }
    req.extensions_mut().insert(who);
    let mut r = next.run(req).await;
    if r.status() != StatusCode::NOT_MODIFIED {
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    r
}
