//! The JSON API under `/api/v1`, described by `openapi.json`. Every error is
//! JSON (`error.message` says what to do), including malformed requests.

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{FromRequest, FromRequestParts, Request, State},
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;

use super::{
    App,
    auth::{self, Principal},
    error::ApiError,
    ops::{LettersQuery, NewOrder, OrdersQuery, ReplayRequest},
};

/// A JSON body whose rejection is one of our errors.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| Body(v))
            .map_err(|e| ApiError::BadRequest(format!("the request body: {}", e.body_text())))
    }
}

/// A query string whose rejection is one of our errors.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| ApiError::BadRequest(format!("the query string: {}", e.body_text())))
    }
}

/// A path parameter whose rejection is one of our errors.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e| {
                ApiError::BadRequest(format!(
                    "{}: replay jobs are numbers (GET /api/v1/dlq/replays lists them)",
                    e.body_text()
                ))
            })
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(v: impl serde::Serialize) -> ApiResult {
    Ok(Json(v).into_response())
}

pub fn public_routes() -> Router<Arc<App>> {
    // Merged with `routes`' /api/v1/session, whose fallback it shares.
    Router::new().route("/api/v1/session", post(sign_in))
}

/// A method a route does not serve: JSON too (axum's own answer is empty).
async fn method_not_allowed(req: Request) -> Response {
    let body = json!({ "error": { "status": 405, "message": format!(
        "{} is not served at {}: /api/v1/openapi.json lists the methods of each route",
        req.method(),
        req.uri().path()
    ) } });
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/session", get(me).delete(sign_out))
        .route("/api/v1/dashboard", get(dashboard))
        .route("/api/v1/orders", get(orders).post(place))
        .route("/api/v1/orders/{id}", get(order))
        .route("/api/v1/dlq/reasons", get(reasons))
        .route("/api/v1/dlq/letters", get(letters))
        .route("/api/v1/dlq/replays/preview", post(preview))
        .route("/api/v1/dlq/replays", get(jobs).post(start))
        .route("/api/v1/dlq/replays/{id}", get(job))
        .route("/api/v1/dlq/replays/{id}/cancel", post(cancel))
        .route("/api/v1/audit", get(audit))
        .method_not_allowed_fallback(method_not_allowed)
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct SignIn {
    name: String,
    password: String,
}

/// Signs in with a password and sets the session cookie. Like every change
/// made by a browser, it must come from our own origin.
async fn sign_in(State(app): State<Arc<App>>, headers: HeaderMap, body: Body<SignIn>) -> ApiResult {
    auth::csrf_check(&axum::http::Method::POST, &headers).map_err(ApiError::Forbidden)?;
    let Body(s) = body;
    let who = app
        .users
        .sign_in(&s.name, &s.password)
        .await
        .ok_or(ApiError::WrongPassword)?;
    let cookie = app.sessions.open(who.clone(), &headers);
    let mut r = Json(json!({ "name": who.name, "role": who.role })).into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        cookie.parse().expect("cookies are ASCII"),
    );
    Ok(r)
}

async fn me(Extension(who): Extension<Principal>) -> ApiResult {
    ok(json!({ "name": who.name, "role": who.role }))
}

async fn sign_out(State(app): State<Arc<App>>, headers: HeaderMap) -> ApiResult {
    if let Some(id) = auth::session_id(&headers) {
        app.sessions.close(id);
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        auth::clear_cookie().parse().expect("cookies are ASCII"),
    );
    Ok(r)
}

async fn dashboard(State(app): State<Arc<App>>) -> ApiResult {
    ok(&*app.dashboard().await?)
}

async fn orders(State(app): State<Arc<App>>, Query(q): Query<OrdersQuery>) -> ApiResult {
    ok(app.orders(&q).await?)
}

async fn order(State(app): State<Arc<App>>, Path(id): Path<String>) -> ApiResult {
    match app.order(&id).await? {
        Some(d) => ok(d),
        None => Err(ApiError::NotFound(format!(
            "no order {id:?} is stored (yet): an order shows here once the processor has finished it"
        ))),
    }
}

async fn place(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Body(new): Body<NewOrder>,
) -> ApiResult {
    let placed = app.place(&who, new).await?;
    Ok((StatusCode::CREATED, Json(placed)).into_response())
}

#[derive(Deserialize)]
struct StatusQuery {
    status: Option<String>,
}

async fn reasons(State(app): State<Arc<App>>, Query(q): Query<StatusQuery>) -> ApiResult {
    ok(app.reasons(q.status.as_deref()).await?)
}

async fn letters(State(app): State<Arc<App>>, Query(q): Query<LettersQuery>) -> ApiResult {
    ok(app.letters(&q).await?)
}

async fn preview(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Body(r): Body<ReplayRequest>,
) -> ApiResult {
    ok(app.preview(&who, &r).await?)
}

async fn jobs(State(app): State<Arc<App>>) -> ApiResult {
    ok(app.jobs().await?)
}

async fn start(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Body(r): Body<ReplayRequest>,
) -> ApiResult {
    let job = app.start_replay(&who, &r).await?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

async fn job(State(app): State<Arc<App>>, Path(id): Path<i64>) -> ApiResult {
    ok(app.job(id).await?)
}

async fn cancel(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<i64>,
) -> ApiResult {
    ok(app.cancel_replay(&who, id).await?)
}

#[derive(Deserialize)]
struct AuditQuery {
    target: Option<String>,
}

async fn audit(State(app): State<Arc<App>>, Query(q): Query<AuditQuery>) -> ApiResult {
    ok(app.audit_log(q.target.as_deref()).await?)
}
