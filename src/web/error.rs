//! Errors as the API answers them: a status and a JSON message that says what
//! to do. Pages render the same errors as HTML (`pages`).

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("sign in first: POST /api/v1/session, or send Authorization: Bearer TOKEN")]
    Unauthorized,
    #[error("wrong name or password")]
    WrongPassword,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    /// Kafka or the store cannot be reached: worth retrying.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized | ApiError::WrongPassword => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn operators_only(what: &str) -> Self {
        ApiError::Forbidden(format!(
            "only operators may {what}: ask an operator, or for the operator role (`orderflow users add NAME --role operator`)"
        ))
    }
}

impl From<crate::store::Error> for ApiError {
    fn from(e: crate::store::Error) -> Self {
        tracing::warn!(error = %e, "store request failed");
        ApiError::Unavailable(format!(
            "the order store failed: {e}; try again, and check the store if it persists"
        ))
    }
}

impl From<crate::dlq::redrive::Error> for ApiError {
    fn from(e: crate::dlq::redrive::Error) -> Self {
        use crate::dlq::redrive::Error as E;
        match e {
            E::UnknownJob(_) => ApiError::NotFound(e.to_string()),
            E::Ended { .. } | E::Busy { .. } => ApiError::Conflict(e.to_string()),
            E::Store(s) => s.into(),
            other => {
                tracing::warn!(error = %other, "replay request failed");
                ApiError::Unavailable(other.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({ "error": { "status": status.as_u16(), "message": self.to_string() } });
        let mut r = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}
