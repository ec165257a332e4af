//! A Confluent-compatible schema registry: subjects, versions, global ids,
//! compatibility levels and modes, kept in the order store (SQLite or
//! PostgreSQL), served over Confluent's REST API ([`http`]); and the client the
//! producer and processor use with any such registry ([`client`]).

pub mod client;
pub mod compat;
pub mod http;
mod service;

#[cfg(test)]
mod compat_tests;

pub use service::{Registered, Registry, SchemaRequest};

use axum::http::StatusCode;

/// A registry error, as Confluent numbers them: clients branch on `error_code`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {1} not found in subject '{0}'.")]
    VersionNotFound(String, String),
    #[error("Schema {0} not found")]
    SchemaNotFound(String),
    #[error("Subject '{0}' was soft deleted. Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error(
        "Subject '{0}' was not deleted first before being permanently deleted: delete it without permanent=true first"
    )]
    SubjectNotSoftDeleted(String),
    #[error("Subject '{0}' Version {1} was soft deleted. Set permanent=true to delete permanently")]
    VersionSoftDeleted(String, i64),
    #[error(
        "Subject '{0}' Version {1} was not deleted first before being permanently deleted: delete it without permanent=true first"
    )]
    VersionNotSoftDeleted(String, i64),
    #[error(
        "Subject '{0}' does not have subject-level compatibility configured: ask with defaultToGlobal=true for the registry's"
    )]
    SubjectLevelNotFound(String),
    #[error(
        "Subject '{0}' does not have subject-level mode configured: ask with defaultToGlobal=true for the registry's"
    )]
    SubjectModeNotFound(String),
    #[error(
        "Schema being registered is incompatible with an earlier schema for subject '{subject}', details: [{}]",
        .problems.join("; ")
    )]
    Incompatible {
        subject: String,
        problems: Vec<String>,
    },
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    #[error(
        "Invalid compatibility level {0:?}. Valid values are NONE, BACKWARD, FORWARD, FULL, BACKWARD_TRANSITIVE, FORWARD_TRANSITIVE, and FULL_TRANSITIVE"
    )]
    InvalidLevel(String),
    #[error(
        "Invalid mode {0:?}. Valid values are READWRITE, READONLY, READONLY_OVERRIDE and IMPORT"
    )]
    InvalidMode(String),
    #[error("Subject '{0}' is in read-only mode: change it with PUT /mode/{0}")]
    ReadOnly(String),
    #[error("Invalid request: {0}")]
    BadRequest(String),
    #[error("the registry's store failed: {0}; try again, and check the store if it persists")]
    Store(#[from] crate::store::Error),
}

impl Error {
    /// The HTTP status and Confluent's `error_code`.
    pub fn codes(&self) -> (StatusCode, u32) {
        use Error as E;
        match self {
            E::SubjectNotFound(_) => (StatusCode::NOT_FOUND, 40401),
            E::VersionNotFound(..) => (StatusCode::NOT_FOUND, 40402),
            E::SchemaNotFound(_) => (StatusCode::NOT_FOUND, 40403),
            E::SubjectSoftDeleted(_) => (StatusCode::NOT_FOUND, 40404),
            E::SubjectNotSoftDeleted(_) => (StatusCode::NOT_FOUND, 40405),
            E::VersionSoftDeleted(..) => (StatusCode::NOT_FOUND, 40406),
            E::VersionNotSoftDeleted(..) => (StatusCode::NOT_FOUND, 40407),
            E::SubjectLevelNotFound(_) => (StatusCode::NOT_FOUND, 40408),
            E::SubjectModeNotFound(_) => (StatusCode::NOT_FOUND, 40409),
            E::Incompatible { .. } => (StatusCode::CONFLICT, 409),
            E::InvalidSchema(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42201),
            E::InvalidVersion(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42202),
            E::InvalidLevel(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42203),
            E::InvalidMode(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42204),
            E::ReadOnly(_) => (StatusCode::UNPROCESSABLE_ENTITY, 42205),
            E::BadRequest(_) => (StatusCode::BAD_REQUEST, 400),
            E::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, 50001),
        }
    }
}

/// The subject of a topic's values under Confluent's default TopicNameStrategy.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}
