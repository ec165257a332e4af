//! The schema registry mounted at `/registry` in the console, for clients that
//! reach only the console's address. Registry clients send no cookies: they
//! authenticate with a bearer token, or with basic auth whose secret is the
//! user's token or password. Viewers read; registering, deleting and changing
//! settings take an operator.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::{App, Principal, auth};
use crate::registry::{self, Registry};

pub fn routes(app: Arc<App>) -> Router {
    registry::http::router(Registry::new(app.store.clone()))
        .layer(middleware::from_fn_with_state(app, require))
}

async fn who(app: &App, headers: &HeaderMap) -> Option<Principal> {
    if let Some(token) = auth::bearer(headers) {
        return app.users.by_token(token);
    }
    let (name, secret) = auth::basic(headers)?;
    match app.users.by_token(&secret) {
        Some(p) if p.name == name => Some(p),
        _ => app.users.sign_in(&name, &secret).await,
    }
}

/// Whether a request changes the registry. Looking a schema up and testing
/// compatibility are POSTs that change nothing.
fn changes(method: &Method, path: &str) -> bool {
    match *method {
        Method::GET | Method::HEAD => false,
        Method::POST => path.starts_with("/subjects/") && path.ends_with("/versions"),
        _ => true,
    }
}

async fn require(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let refuse = |status: StatusCode, message: &str| {
        let mut r = (
            status,
            [(
                header::CONTENT_TYPE,
                "application/vnd.schemaregistry.v1+json",
            )],
            json!({"error_code": status.as_u16(), "message": message}).to_string(),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"orderflow schema registry\""),
            );
        }
        r
    };
    let headers = req.headers().clone();
    let Some(who) = who(&app, &headers).await else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "authenticate with basic auth (NAME:PASSWORD or NAME:TOKEN) or a bearer token: `orderflow users add NAME --token`",
        );
    };
    if changes(req.method(), req.uri().path()) && !who.can_operate() {
        return refuse(
            StatusCode::FORBIDDEN,
            "only operators may change the schema registry: ask an operator, or for the operator role",
        );
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_open_to_viewers_and_changes_are_not() {
        assert!(!changes(&Method::GET, "/subjects/a/versions"));
        assert!(!changes(&Method::POST, "/subjects/a"));
        assert!(!changes(
            &Method::POST,
            "/compatibility/subjects/a/versions/latest"
        ));
        assert!(!changes(
            &Method::POST,
            "/compatibility/subjects/a/versions"
        ));
        assert!(changes(&Method::POST, "/subjects/a/versions"));
        assert!(changes(&Method::DELETE, "/subjects/a"));
        assert!(changes(&Method::PUT, "/config"));
    }
}
