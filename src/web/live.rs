//! Server-Sent Events that keep pages live: each message is an HTML fragment,
//! rendered (and escaped) by the same templates as the page, that replaces
//! the element whose `data-live` names the stream; a `done` event ends it.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Extension, Router,
    extract::{Path, State},
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::get,
};
use futures::{Stream, StreamExt as _, stream};

use super::{
    App,
    auth::{self, Principal},
    error::ApiError,
    ops, pages,
};

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/events/dashboard", get(dashboard))
        .route("/events/orders/{id}", get(order))
        .route("/events/replays/{id}", get(replay))
}

const DASHBOARD_EVERY: Duration = Duration::from_secs(2);
const FOLLOW_EVERY: Duration = Duration::from_millis(500);
/// How long a page waits for an order before it gives up.
const FOLLOW_FOR: Duration = Duration::from_secs(600);

/// The session a cookie-borne stream belongs to (a bearer token has none).
fn session(who: &Principal, headers: &HeaderMap) -> Option<String> {
    who.by_cookie
        .then(|| auth::session_id(headers).map(str::to_string))
        .flatten()
}

/// Every stream ends when the console stops, so that stopping does not wait
/// for open pages, and a cookie-borne one when its session does (sign-out,
/// expiry), looked at before each event: the browser's reconnect then gets a 401.
fn sse(
    app: &Arc<App>,
    session: Option<String>,
    s: impl Stream<Item = Event> + Send + 'static,
) -> Response {
    let stop = app.shutdown.clone().cancelled_owned();
    let app = app.clone();
    let open = move |_: &Event| {
        std::future::ready(session.as_deref().is_none_or(|id| app.sessions.alive(id)))
    };
    Sse::new(s.take_while(open).take_until(stop).map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn failed(e: &ApiError) -> Event {
    Event::default().data(format!(
        "<p class=\"error\">{}</p>",
        askama::filters::escape(e.to_string(), askama::filters::Html)
            .map(|s| s.to_string())
            .unwrap_or_default()
    ))
}

fn failed_done(e: &ApiError) -> Event {
    failed(e).event("done")
}

async fn dashboard(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    sse(
        &app.clone(),
        session(&who, &headers),
        stream::unfold(app, |app| async move {
            tokio::time::sleep(DASHBOARD_EVERY).await;
            let event = match app.dashboard().await {
                Ok(d) => Event::default().data(pages::dashboard_body(&d)),
                Err(e) => failed(&e),
            };
            Some((event, app))
        }),
    )
}

/// Follows an order until the processor has stored it.
async fn order(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let until = tokio::time::Instant::now() + FOLLOW_FOR;
    sse(
        &app.clone(),
        session(&who, &headers),
        stream::unfold(Some(app), move |app| {
            let id = id.clone();
            async move {
                let app = app?;
                loop {
                    if tokio::time::Instant::now() > until {
                        let e = Event::default().event("done").data(
                        "<section class=\"card\"><p class=\"error\">The order has not been processed in 10 minutes: is the processor running? Reload to look again.</p></section>",
                    );
                        return Some((e, None));
                    }
                    match app.order(&id).await {
                        Ok(Some(d)) => {
                            let e = Event::default().event("done").data(pages::order_body(&d));
                            return Some((e, None));
                        }
                        Ok(None) => tokio::time::sleep(FOLLOW_EVERY).await,
                        Err(e @ ApiError::BadRequest(_)) => return Some((failed_done(&e), None)),
                        Err(e) => {
                            tokio::time::sleep(FOLLOW_EVERY).await;
                            return Some((failed(&e), Some(app)));
                        }
                    }
                }
            }
        }),
    )
}

/// A replay's progress, until it ends.
async fn replay(
    State(app): State<Arc<App>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let id = match pages::job_id(&id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    sse(
        &app.clone(),
        session(&who, &headers),
        stream::unfold(Some(app), move |app| {
            let who = who.clone();
            async move {
                let app = app?;
                tokio::time::sleep(FOLLOW_EVERY).await;
                match app.job(id).await {
                    Ok(j) if ops::ended(&j) => Some((
                        Event::default()
                            .event("done")
                            .data(pages::job_body(&j, &who)),
                        None,
                    )),
                    Ok(j) => Some((Event::default().data(pages::job_body(&j, &who)), Some(app))),
                    Err(e @ ApiError::NotFound(_)) => Some((failed_done(&e), None)),
                    Err(e) => Some((failed(&e), Some(app))),
                }
            }
        }),
    )
}
