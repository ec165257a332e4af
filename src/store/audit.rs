//! The audit log: who changed what through the web console or its API, and when.

use serde::Serialize;

use super::{
    Error,
    sql::{Conn, P},
};

/// One change, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    pub principal: String,
    /// `order.place`, `replay.start`, `replay.cancel`, ...
    pub action: String,
    /// What it acted on: `order:ID`, `replay:JOB`.
    pub target: String,
    /// The request as JSON, without secrets.
    pub detail: String,
}

pub(super) async fn record(
    c: &mut impl Conn,
    at_ms: i64,
    principal: &str,
    (action, target): (&str, &str),
    detail: &str,
) -> Result<(), Error> {
    c.exec(
        "INSERT INTO audit_log (at_ms, principal, action, target, detail)
        VALUES ($1, $2, $3, $4, $5)",
        &[
            P::I(at_ms),
            P::T(principal),
            P::T(action),
            P::T(target),
            P::T(detail),
        ],
    )
    .await?;
    Ok(())
}

/// The newest entries first: all, those of one target (`replay:7`), or those of
/// a kind of target (a prefix that ends in `:`, as `replay:`).
pub(super) async fn list(
    c: &mut impl Conn,
    target: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditEntry>, Error> {
    const COLUMNS: &str = "SELECT id, at_ms, principal, action, target, detail FROM audit_log";
    let rows = match target {
        // Neither LIKE (`_` and `%` in a target would be patterns) nor a range
        // (PostgreSQL's collations may ignore `:`): the newest rows are read by
        // id until `limit` match, which is cheap for a log written by people.
        Some(p) if p.ends_with(':') => {
            c.rows(
                &format!(
                    "{COLUMNS} WHERE substr(target, 1, length($1)) = $1 ORDER BY id DESC LIMIT $2"
                ),
                &[P::T(p), P::I(limit)],
            )
            .await?
        }
        Some(t) => {
            c.rows(
                &format!("{COLUMNS} WHERE target = $1 ORDER BY id DESC LIMIT $2"),
                &[P::T(t), P::I(limit)],
            )
            .await?
        }
        None => {
            c.rows(
                &format!("{COLUMNS} ORDER BY id DESC LIMIT $1"),
                &[P::I(limit)],
            )
            .await?
        }
    };
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                id: r[0].i()?,
                at_ms: r[1].i()?,
                principal: r[2].t()?,
                action: r[3].t()?,
                target: r[4].t()?,
                detail: r[5].t()?,
            })
        })
        .collect()
}
