//! The schema registry's tables: schemas by global id (one id per distinct
//! schema, whatever the subject), subjects' versions, and configuration.

use super::{
    Error,
    sql::{Conn, P},
};

/// A subject's version, with its schema.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: i64,
    pub id: i64,
    pub schema_type: String,
    pub schema: String,
    pub deleted: bool,
}

/// A schema by global id.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSchema {
    pub id: i64,
    pub schema_type: String,
    pub schema: String,
}

/// Registry-wide settings are kept under this subject name, which no client can
/// send (a subject is never empty).
pub const GLOBAL: &str = "";

/// Adds `schema` (known by its fingerprint) as the subject's next version, or
/// finds the live version that has it. `None` when another registration took the
/// next version number meanwhile: the caller checks again and retries.
pub(super) async fn insert_version(
    c: &mut impl Conn,
    subject: &str,
    fingerprint: &str,
    schema_type: &str,
    schema: &str,
) -> Result<Option<(i64, i64)>, Error> {
    c.exec(
        "INSERT INTO registry_schemas (fingerprint, schema_type, schema) VALUES ($1, $2, $3)
        ON CONFLICT DO NOTHING",
        &[P::T(fingerprint), P::T(schema_type), P::T(schema)],
    )
    .await?;
    let id = c
        .rows(
            "SELECT id FROM registry_schemas WHERE fingerprint = $1",
            &[P::T(fingerprint)],
        )
        .await?
        .first()
        .ok_or_else(|| Error::Corrupt(format!("schema {fingerprint} vanished")))?[0]
        .i()?;
    let live = "SELECT version FROM registry_versions
        WHERE subject = $1 AND schema_id = $2 AND deleted = 0";
    if let Some(row) = c.rows(live, &[P::T(subject), P::I(id)]).await?.first() {
        return Ok(Some((id, row[0].i()?)));
    }
    let inserted = c
        .exec(
            "INSERT INTO registry_versions (subject, version, schema_id, deleted)
            SELECT $1, COALESCE(MAX(version), 0) + 1, $2, 0 FROM registry_versions
            WHERE subject = $1
            ON CONFLICT DO NOTHING",
            &[P::T(subject), P::I(id)],
        )
        .await?;
    if inserted == 0 {
        return Ok(None);
    }
    let row = c.rows(live, &[P::T(subject), P::I(id)]).await?;
    Ok(Some((id, row[0][0].i()?)))
}

const VERSION_COLUMNS: &str = "SELECT v.subject, v.version, v.schema_id, s.schema_type, s.schema,
    v.deleted FROM registry_versions v JOIN registry_schemas s ON s.id = v.schema_id";

fn version_rows(rows: Vec<Vec<super::sql::V>>) -> Result<Vec<SubjectVersion>, Error> {
    rows.iter()
        .map(|r| {
            Ok(SubjectVersion {
                subject: r[0].t()?,
                version: r[1].i()?,
                id: r[2].i()?,
                schema_type: r[3].t()?,
                schema: r[4].t()?,
                deleted: r[5].i()? != 0,
            })
        })
        .collect()
}

/// A subject's versions, oldest first.
pub(super) async fn versions(
    c: &mut impl Conn,
    subject: &str,
) -> Result<Vec<SubjectVersion>, Error> {
    let rows = c
        .rows(
            &format!("{VERSION_COLUMNS} WHERE v.subject = $1 ORDER BY v.version"),
            &[P::T(subject)],
        )
        .await?;
    version_rows(rows)
}

/// The versions that hold schema `id`, by subject and version.
pub(super) async fn versions_of(c: &mut impl Conn, id: i64) -> Result<Vec<SubjectVersion>, Error> {
    let rows = c
        .rows(
            &format!("{VERSION_COLUMNS} WHERE v.schema_id = $1 ORDER BY v.subject, v.version"),
            &[P::I(id)],
        )
        .await?;
    version_rows(rows)
}

/// Every subject, with whether all its versions are deleted.
pub(super) async fn subjects(c: &mut impl Conn) -> Result<Vec<(String, bool)>, Error> {
    c.rows(
        "SELECT subject, MIN(deleted) FROM registry_versions GROUP BY subject ORDER BY subject",
        &[],
    )
    .await?
    .iter()
    .map(|r| Ok((r[0].t()?, r[1].i()? != 0)))
    .collect()
}

pub(super) async fn schema(c: &mut impl Conn, id: i64) -> Result<Option<StoredSchema>, Error> {
    let rows = c
        .rows(
            "SELECT id, schema_type, schema FROM registry_schemas WHERE id = $1",
            &[P::I(id)],
        )
        .await?;
    rows.first()
        .map(|r| {
            Ok(StoredSchema {
                id: r[0].i()?,
                schema_type: r[1].t()?,
                schema: r[2].t()?,
            })
        })
        .transpose()
}

/// Soft-deletes (`permanent` false) or removes soft-deleted (`permanent` true)
/// versions of a subject: one, or all. Returns the versions it changed.
pub(super) async fn delete(
    c: &mut impl Conn,
    subject: &str,
    version: Option<i64>,
    permanent: bool,
) -> Result<Vec<i64>, Error> {
    let (which, params) = match version {
        Some(v) => ("AND version = $2", vec![P::T(subject), P::I(v)]),
        None => ("", vec![P::T(subject)]),
    };
    let was = i64::from(permanent);
    let changed: Vec<i64> = c
        .rows(
            &format!(
                "SELECT version FROM registry_versions WHERE subject = $1 {which}
                AND deleted = {was} ORDER BY version"
            ),
            &params,
        )
        .await?
        .iter()
        .map(|r| r[0].i())
        .collect::<Result<_, _>>()?;
    let statement = if permanent {
        format!("DELETE FROM registry_versions WHERE subject = $1 {which} AND deleted = 1")
    } else {
        format!(
            "UPDATE registry_versions SET deleted = 1 WHERE subject = $1 {which} AND deleted = 0"
        )
    };
    c.exec(&statement, &params).await?;
    Ok(changed)
}

/// (compatibility level, mode) set for a subject or, under [`GLOBAL`], the registry.
pub(super) async fn config(
    c: &mut impl Conn,
    subject: &str,
) -> Result<(Option<String>, Option<String>), Error> {
    let rows = c
        .rows(
            "SELECT compatibility, mode FROM registry_config WHERE subject = $1",
            &[P::T(subject)],
        )
        .await?;
    match rows.first() {
        Some(r) => Ok((r[0].ot()?, r[1].ot()?)),
        None => Ok((None, None)),
    }
}

/// Sets (or with `None` clears) one setting, `compatibility` or `mode`.
pub(super) async fn set_config(
    c: &mut impl Conn,
    subject: &str,
    setting: &'static str,
    value: Option<&str>,
) -> Result<(), Error> {
    debug_assert!(matches!(setting, "compatibility" | "mode"));
    c.exec(
        &format!(
            "INSERT INTO registry_config (subject, {setting}) VALUES ($1, $2)
            ON CONFLICT (subject) DO UPDATE SET {setting} = excluded.{setting}"
        ),
        &[P::T(subject), P::OT(value)],
    )
    .await?;
    Ok(())
}
