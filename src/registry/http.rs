//! Confluent Schema Registry's REST API, as its clients (Java, Python, Go,
//! Kafka UIs) use it. Any content type is read as JSON, booleans are
//! case-insensitive, unknown query parameters and body fields are ignored, and
//! every error is `{"error_code", "message"}` with Confluent's codes; a client's
//! mistake never answers 5xx or 429, which clients retry.

use std::collections::HashMap;

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{
    Error, Registry, SchemaRequest,
    service::{Registered, VersionRef},
};
use crate::store::registry::GLOBAL;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

type Params = Query<HashMap<String, String>>;
type Answer = Result<Response, Error>;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.codes();
        if status.is_server_error() {
            tracing::warn!(error = %self, "schema registry request failed");
        }
        reply(
            status,
            &json!({"error_code": code, "message": self.to_string()}),
        )
    }
}

fn reply(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Answer {
    Ok(reply(StatusCode::OK, &body))
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &Bytes) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        let what = if e.is_data() {
            Error::InvalidSchema
        } else {
            Error::BadRequest
        };
        what(format!("the body is not the JSON expected: {e}"))
    })
}

fn version_json(v: impl Into<Registered>) -> Value {
    let v = v.into();
    json!({"subject": v.subject, "version": v.version, "id": v.id, "schema": v.schema})
}

/// The routes, at the root: mount them under a path with `Router::nest`.
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/", get(|| async { ok(json!({})) }))
        .route("/schemas/types", get(|| async { ok(json!(["AVRO"])) }))
        .route("/schemas", get(schemas))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_of_id))
        .route("/schemas/ids/{id}/subjects", get(subjects_of_id))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route(
            "/subjects/{subject}/versions/{version}",
            get(version).delete(delete_version),
        )
        .route("/subjects/{subject}/versions/{version}/schema", get(raw_version))
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compatible_with_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatible_with),
        )
        .route("/config", get(global_level).put(put_global_level).delete(delete_global_level))
        .route("/config/{subject}", get(level).put(put_level).delete(delete_level))
        .route("/mode", get(global_mode).put(put_global_mode))
        .route("/mode/{subject}", get(mode).put(put_mode).delete(delete_mode))
        .route("/contexts", get(|| async { ok(json!(["."])) }))
        .fallback(|| async {
            reply(
                StatusCode::NOT_FOUND,
                &json!({"error_code": 404, "message": "HTTP 404 Not Found: this registry serves Confluent's subjects, schemas, compatibility, config and mode resources"}),
            )
        })
        .method_not_allowed_fallback(|| async {
            reply(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error_code": 405, "message": "HTTP 405 Method Not Allowed"}),
            )
        })
        .with_state(registry)
}

/// Serves the registry until `shutdown` fires.
pub async fn run(
    listener: tokio::net::TcpListener,
    registry: Registry,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

fn id_of(s: &str) -> Result<i64, Error> {
    s.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Error::SchemaNotFound(s.to_string()))
}

async fn schemas(State(r): State<Registry>, Query(q): Params) -> Answer {
    let prefix = q.get("subjectPrefix").map_or("", String::as_str);
    let (deleted, latest_only) = (flag(&q, "deleted"), flag(&q, "latestOnly"));
    let mut out = Vec::new();
    for subject in r.subjects(deleted, prefix).await? {
        let versions = r.versions_of_subject(&subject, deleted).await?;
        let skip = if latest_only { versions.len() - 1 } else { 0 };
        out.extend(versions.into_iter().skip(skip).map(version_json));
    }
    ok(Value::Array(out))
}

async fn schema_by_id(State(r): State<Registry>, Path(id): Path<String>) -> Answer {
    let s = r.schema(id_of(&id)?).await?;
    ok(json!({"schema": s.schema}))
}

async fn raw_schema_by_id(State(r): State<Registry>, Path(id): Path<String>) -> Answer {
    let s = r.schema(id_of(&id)?).await?;
    raw(s.schema)
}

fn raw(schema: String) -> Answer {
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], schema).into_response())
}

async fn versions_of_id(
    State(r): State<Registry>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Answer {
    let vs = r
        .versions_of_schema(id_of(&id)?, flag(&q, "deleted"))
        .await?;
    ok(json!(
        vs.iter()
            .map(|v| json!({"subject": v.subject, "version": v.version}))
            .collect::<Vec<_>>()
    ))
}

async fn subjects_of_id(
    State(r): State<Registry>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Answer {
    let mut subjects: Vec<String> = r
        .versions_of_schema(id_of(&id)?, flag(&q, "deleted"))
        .await?
        .into_iter()
        .map(|v| v.subject)
        .collect();
    subjects.dedup();
    ok(json!(subjects))
}

async fn subjects(State(r): State<Registry>, Query(q): Params) -> Answer {
    let prefix = q.get("subjectPrefix").map_or("", String::as_str);
    ok(json!(r.subjects(flag(&q, "deleted"), prefix).await?))
}

async fn register(State(r): State<Registry>, Path(subject): Path<String>, bytes: Bytes) -> Answer {
    let req: SchemaRequest = body(&bytes)?;
    let reg = r.register(&subject, &req).await?;
    ok(json!({"id": reg.id, "version": reg.version, "subject": reg.subject, "schema": reg.schema}))
}

async fn lookup(
    State(r): State<Registry>,
    Path(subject): Path<String>,
    Query(q): Params,
    bytes: Bytes,
) -> Answer {
    let req: SchemaRequest = body(&bytes)?;
    ok(version_json(
        r.lookup(&subject, &req, flag(&q, "deleted")).await?,
    ))
}

async fn versions(
    State(r): State<Registry>,
    Path(subject): Path<String>,
    Query(q): Params,
) -> Answer {
    let vs = r.versions_of_subject(&subject, flag(&q, "deleted")).await?;
    ok(json!(vs.iter().map(|v| v.version).collect::<Vec<_>>()))
}

async fn version(
    State(r): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> Answer {
    let v = VersionRef::parse(&version)?;
    ok(version_json(
        r.version(&subject, v, flag(&q, "deleted")).await?,
    ))
}

async fn raw_version(
    State(r): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> Answer {
    let v = VersionRef::parse(&version)?;
    raw(r.version(&subject, v, flag(&q, "deleted")).await?.schema)
}

async fn referenced_by(
    State(r): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
) -> Answer {
    // References are not supported, so nothing refers to a version.
    r.version(&subject, VersionRef::parse(&version)?, false)
        .await?;
    ok(json!([]))
}

async fn delete_subject(
    State(r): State<Registry>,
    Path(subject): Path<String>,
    Query(q): Params,
) -> Answer {
    ok(json!(
        r.delete_subject(&subject, flag(&q, "permanent")).await?
    ))
}

async fn delete_version(
    State(r): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
) -> Answer {
    let v = VersionRef::parse(&version)?;
    ok(json!(
        r.delete_version(&subject, v, flag(&q, "permanent")).await?
    ))
}

async fn compatible_with_all(
    State(r): State<Registry>,
    Path(subject): Path<String>,
    Query(q): Params,
    bytes: Bytes,
) -> Answer {
    compatibility(&r, &subject, None, &q, &bytes).await
}

async fn compatible_with(
    State(r): State<Registry>,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Params,
    bytes: Bytes,
) -> Answer {
    let v = VersionRef::parse(&version)?;
    compatibility(&r, &subject, Some(v), &q, &bytes).await
}

async fn compatibility(
    r: &Registry,
    subject: &str,
    version: Option<VersionRef>,
    q: &HashMap<String, String>,
    bytes: &Bytes,
) -> Answer {
    let req: SchemaRequest = body(bytes)?;
    let problems = r.compatible(subject, version, &req).await?;
    let mut answer = json!({"is_compatible": problems.is_empty()});
    if flag(q, "verbose") {
        answer["messages"] = json!(problems);
    }
    ok(answer)
}

#[derive(Deserialize)]
struct LevelBody {
    compatibility: Option<String>,
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
}

#[derive(Deserialize)]
struct ModeBody {
    mode: String,
}

async fn global_level(State(r): State<Registry>) -> Answer {
    ok(json!({"compatibilityLevel": r.level(GLOBAL).await?.as_str()}))
}

async fn put_global_level(State(r): State<Registry>, bytes: Bytes) -> Answer {
    set_level(&r, GLOBAL, &bytes).await
}

async fn delete_global_level(State(r): State<Registry>) -> Answer {
    let was = r.level(GLOBAL).await?;
    r.set_level(GLOBAL, None).await?;
    ok(json!({"compatibilityLevel": was.as_str()}))
}

async fn level(State(r): State<Registry>, Path(subject): Path<String>, Query(q): Params) -> Answer {
    let level = match r.own_level(&subject).await? {
        Some(l) => l,
        None if flag(&q, "defaultToGlobal") => r.level(GLOBAL).await?,
        None => return Err(Error::SubjectLevelNotFound(subject)),
    };
    ok(json!({"compatibilityLevel": level.as_str()}))
}

async fn put_level(State(r): State<Registry>, Path(subject): Path<String>, bytes: Bytes) -> Answer {
    set_level(&r, &subject, &bytes).await
}

async fn set_level(r: &Registry, subject: &str, bytes: &Bytes) -> Answer {
    let b: LevelBody = body(bytes)?;
    let Some(level) = b.compatibility.or(b.compatibility_level) else {
        return Err(Error::InvalidLevel(String::new()));
    };
    let level = r.set_level(subject, Some(&level)).await?;
    ok(json!({"compatibility": level.map(|l| l.as_str())}))
}

async fn delete_level(State(r): State<Registry>, Path(subject): Path<String>) -> Answer {
    let was = r
        .own_level(&subject)
        .await?
        .ok_or_else(|| Error::SubjectLevelNotFound(subject.clone()))?;
    r.set_level(&subject, None).await?;
    ok(json!({"compatibilityLevel": was.as_str()}))
}

async fn global_mode(State(r): State<Registry>) -> Answer {
    ok(json!({"mode": r.mode(GLOBAL).await?}))
}

async fn put_global_mode(State(r): State<Registry>, bytes: Bytes) -> Answer {
    let b: ModeBody = body(&bytes)?;
    ok(json!({"mode": r.set_mode(GLOBAL, Some(&b.mode)).await?}))
}

async fn mode(State(r): State<Registry>, Path(subject): Path<String>, Query(q): Params) -> Answer {
    let mode = match r.own_mode(&subject).await? {
        Some(m) => m,
        None if flag(&q, "defaultToGlobal") => r.mode(GLOBAL).await?,
        None => return Err(Error::SubjectModeNotFound(subject)),
    };
    ok(json!({"mode": mode}))
}

async fn put_mode(State(r): State<Registry>, Path(subject): Path<String>, bytes: Bytes) -> Answer {
    let b: ModeBody = body(&bytes)?;
    ok(json!({"mode": r.set_mode(&subject, Some(&b.mode)).await?}))
}

async fn delete_mode(State(r): State<Registry>, Path(subject): Path<String>) -> Answer {
    let was = r
        .own_mode(&subject)
        .await?
        .ok_or_else(|| Error::SubjectModeNotFound(subject.clone()))?;
    r.set_mode(&subject, None).await?;
    ok(json!({"mode": was}))
}
