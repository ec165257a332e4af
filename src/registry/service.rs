//! The registry's rules over its storage: what registering, looking up,
//! deleting and configuring do, and the errors each answers.

use std::sync::Arc;

use apache_avro::Schema;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{
    Error,
    compat::{self, Level},
};
use crate::store::{
    Store,
    registry::{GLOBAL, StoredSchema, SubjectVersion},
};

/// The one schema type this registry holds.
const AVRO: &str = "AVRO";
const MODES: [&str; 4] = ["READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT"];

/// A schema as clients send it. Unknown fields (`metadata`, `ruleSet`, ...) are
/// accepted and ignored, as Confluent's own registry does for fields it does not use.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRequest {
    pub schema: String,
    #[serde(default)]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Vec<serde_json::Value>,
}

/// A schema, parsed and in the canonical text it is stored and compared as.
struct Parsed {
    schema: Schema,
    canonical: String,
}

impl SchemaRequest {
    /// Whitespace, key order and other spellings of one schema give one text:
    /// apache-avro writes a parsed schema back with a fixed key order, keeping
    /// what resolution uses (defaults, aliases, logical types, doc).
    fn parse(&self) -> Result<Parsed, Error> {
        if let Some(t) = &self.schema_type
            && !t.eq_ignore_ascii_case(AVRO)
        {
            return Err(Error::InvalidSchema(format!(
                "schema type {t} is not supported: this registry holds AVRO schemas"
            )));
        }
        if !self.references.is_empty() {
            return Err(Error::InvalidSchema(
                "schema references are not supported: inline the referenced types".into(),
            ));
        }
        let schema = Schema::parse_str(&self.schema)
            .map_err(|e| Error::InvalidSchema(format!("{e} in {}", self.schema)))?;
        let canonical = serde_json::to_string(&schema)
            .map_err(|e| Error::InvalidSchema(format!("cannot write it back: {e}")))?;
        Ok(Parsed { schema, canonical })
    }
}

/// Where a registered schema is.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub subject: String,
    pub id: i64,
    pub version: i64,
    pub schema: String,
}

impl From<SubjectVersion> for Registered {
    fn from(v: SubjectVersion) -> Self {
        Registered {
            subject: v.subject,
            id: v.id,
            version: v.version,
            schema: v.schema,
        }
    }
}

/// A version as a request names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VersionRef {
    Latest,
    Number(i64),
}

impl VersionRef {
    pub fn parse(s: &str) -> Result<VersionRef, Error> {
        if s.eq_ignore_ascii_case("latest") || s == "-1" {
            return Ok(VersionRef::Latest);
        }
        match s.parse::<i64>() {
            Ok(n) if (1..=i64::from(i32::MAX)).contains(&n) => Ok(VersionRef::Number(n)),
            _ => Err(Error::InvalidVersion(s.to_string())),
        }
    }
}

/// The registry over a store. Registrations in one process take turns, so the
/// compatibility check and the insert see the same versions; across processes
/// the store's unique indexes keep one id per schema and one schema per version.
#[derive(Clone)]
pub struct Registry {
    store: Arc<Store>,
    register_lock: Arc<tokio::sync::Mutex<()>>,
}

impl Registry {
    pub fn new(store: Arc<Store>) -> Self {
        Registry {
            store,
            register_lock: Arc::default(),
        }
    }

    /// Registers `req` under `subject`, or returns where it already is.
    pub async fn register(&self, subject: &str, req: &SchemaRequest) -> Result<Registered, Error> {
        let parsed = req.parse()?;
        let fingerprint = hex::encode(Sha256::digest(parsed.canonical.as_bytes()));
        let _turn = self.register_lock.lock().await;
        loop {
            let live = self.versions(subject, false).await?;
            if let Some(v) = live.iter().find(|v| v.schema == parsed.canonical) {
                return Ok(v.clone().into());
            }
            if self.read_only(subject).await? {
                return Err(Error::ReadOnly(subject.to_string()));
            }
            let level = self.level(subject).await?;
            let existing = newest_first(&live)?;
            let problems = compat::check(level, &parsed.schema, &existing);
            if !problems.is_empty() {
                return Err(Error::Incompatible {
                    subject: subject.to_string(),
                    problems,
                });
            }
            if let Some((id, version)) = self
                .store
                .registry_insert(subject, &fingerprint, AVRO, &parsed.canonical)
                .await?
            {
                return Ok(Registered {
                    subject: subject.to_string(),
                    id,
                    version,
                    schema: parsed.canonical,
                });
            }
        }
    }

    /// The version of `subject` that holds `req`.
    pub async fn lookup(
        &self,
        subject: &str,
        req: &SchemaRequest,
        deleted: bool,
    ) -> Result<Registered, Error> {
        let parsed = req.parse()?;
        let versions = self.versions_of_subject(subject, deleted).await?;
        versions
            .into_iter()
            .rev()
            .find(|v| v.schema == parsed.canonical)
            .map(Registered::from)
            .ok_or_else(|| Error::SchemaNotFound(format!("not registered under '{subject}'")))
    }

    /// Subjects with a live version (with `deleted`, soft-deleted ones too).
    pub async fn subjects(&self, deleted: bool, prefix: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .store
            .registry_subjects()
            .await?
            .into_iter()
            .filter(|(s, all_deleted)| (deleted || !all_deleted) && s.starts_with(prefix))
            .map(|(s, _)| s)
            .collect())
    }

    /// A subject's versions, oldest first; 40401 when it has none to show.
    pub async fn versions_of_subject(
        &self,
        subject: &str,
        deleted: bool,
    ) -> Result<Vec<SubjectVersion>, Error> {
        let versions = self.versions(subject, deleted).await?;
        if versions.is_empty() {
            return Err(Error::SubjectNotFound(subject.to_string()));
        }
        Ok(versions)
    }

    /// A subject's live versions (with `deleted`, all), oldest first.
    async fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<SubjectVersion>, Error> {
        let mut versions = self.store.registry_versions(subject).await?;
        versions.retain(|v| deleted || !v.deleted);
        Ok(versions)
    }

    pub async fn version(
        &self,
        subject: &str,
        version: VersionRef,
        deleted: bool,
    ) -> Result<SubjectVersion, Error> {
        let versions = self.versions_of_subject(subject, deleted).await?;
        pick(subject, versions, version, deleted)
    }

    /// A schema by global id, while some version (even soft-deleted) holds it.
    pub async fn schema(&self, id: i64) -> Result<StoredSchema, Error> {
        let gone = || Error::SchemaNotFound(id.to_string());
        if self.store.registry_versions_of(id).await?.is_empty() {
            return Err(gone());
        }
        self.store.registry_schema(id).await?.ok_or_else(gone)
    }

    /// The (subject, version) pairs that hold schema `id`.
    pub async fn versions_of_schema(
        &self,
        id: i64,
        deleted: bool,
    ) -> Result<Vec<SubjectVersion>, Error> {
        let all = self.store.registry_versions_of(id).await?;
        if all.is_empty() {
            return Err(Error::SchemaNotFound(id.to_string()));
        }
        Ok(all.into_iter().filter(|v| deleted || !v.deleted).collect())
    }

    /// Deletes a subject's versions: soft first, then with `permanent`.
    pub async fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<i64>, Error> {
        let versions = self.store.registry_versions(subject).await?;
        if versions.is_empty() {
            return Err(Error::SubjectNotFound(subject.to_string()));
        }
        if self.read_only(subject).await? {
            return Err(Error::ReadOnly(subject.to_string()));
        }
        let any_live = versions.iter().any(|v| !v.deleted);
        match (permanent, any_live) {
            (false, false) => Err(Error::SubjectSoftDeleted(subject.to_string())),
            (true, true) => Err(Error::SubjectNotSoftDeleted(subject.to_string())),
            _ => Ok(self.store.registry_delete(subject, None, permanent).await?),
        }
    }

    pub async fn delete_version(
        &self,
        subject: &str,
        version: VersionRef,
        permanent: bool,
    ) -> Result<i64, Error> {
        // `latest` is the newest live version for a soft delete, the newest of
        // all for a permanent one; a number may name a soft-deleted version.
        let deleted = permanent || matches!(version, VersionRef::Number(_));
        let v = self.version(subject, version, deleted).await?;
        if self.read_only(subject).await? {
            return Err(Error::ReadOnly(subject.to_string()));
        }
        match (permanent, v.deleted) {
            (false, true) => Err(Error::VersionSoftDeleted(subject.to_string(), v.version)),
            (true, false) => Err(Error::VersionNotSoftDeleted(subject.to_string(), v.version)),
            _ => {
                self.store
                    .registry_delete(subject, Some(v.version), permanent)
                    .await?;
                Ok(v.version)
            }
        }
    }

    /// Whether `req` may follow the subject's versions: all that the level
    /// checks (`None`), or the one named.
    pub async fn compatible(
        &self,
        subject: &str,
        version: Option<VersionRef>,
        req: &SchemaRequest,
    ) -> Result<Vec<String>, Error> {
        let parsed = req.parse()?;
        let level = self.level(subject).await?;
        let live = self.versions(subject, false).await?;
        let against = match version {
            None => live,
            Some(VersionRef::Latest) if live.is_empty() => Vec::new(),
            Some(v) => {
                if live.is_empty() {
                    return Err(Error::SubjectNotFound(subject.to_string()));
                }
                vec![pick(subject, live, v, false)?]
            }
        };
        Ok(compat::check(
            level,
            &parsed.schema,
            &newest_first(&against)?,
        ))
    }

    /// The level registrations under `subject` are checked with.
    pub async fn level(&self, subject: &str) -> Result<Level, Error> {
        if let Some(l) = self.own_level(subject).await? {
            return Ok(l);
        }
        Ok(self.own_level(GLOBAL).await?.unwrap_or(Level::Backward))
    }

    /// A subject's own level (`None`: it follows the registry's), or with
    /// `GLOBAL` the registry's.
    pub async fn own_level(&self, subject: &str) -> Result<Option<Level>, Error> {
        let own = self.store.registry_config(subject).await?.0;
        Ok(own.as_deref().and_then(Level::parse))
    }

    /// Sets (or with `None` clears) a subject's level, or the registry's.
    pub async fn set_level(
        &self,
        subject: &str,
        level: Option<&str>,
    ) -> Result<Option<Level>, Error> {
        let level = level
            .map(|l| Level::parse(l).ok_or_else(|| Error::InvalidLevel(l.to_string())))
            .transpose()?;
        self.store
            .registry_set_config(subject, "compatibility", level.map(Level::as_str))
            .await?;
        Ok(level)
    }

    pub async fn own_mode(&self, subject: &str) -> Result<Option<String>, Error> {
        Ok(self.store.registry_config(subject).await?.1)
    }

    /// The mode a subject is in: its own, else the registry's, else READWRITE.
    pub async fn mode(&self, subject: &str) -> Result<String, Error> {
        if let Some(m) = self.own_mode(subject).await? {
            return Ok(m);
        }
        Ok(self
            .own_mode(GLOBAL)
            .await?
            .unwrap_or_else(|| MODES[0].to_string()))
    }

    pub async fn set_mode(
        &self,
        subject: &str,
        mode: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let mode = mode
            .map(|m| {
                MODES
                    .iter()
                    .find(|known| known.eq_ignore_ascii_case(m.trim()))
                    .map(|m| m.to_string())
                    .ok_or_else(|| Error::InvalidMode(m.to_string()))
            })
            .transpose()?;
        self.store
            .registry_set_config(subject, "mode", mode.as_deref())
            .await?;
        Ok(mode)
    }

    async fn read_only(&self, subject: &str) -> Result<bool, Error> {
        Ok(self.mode(subject).await?.starts_with("READONLY"))
    }
}

fn pick(
    subject: &str,
    versions: Vec<SubjectVersion>,
    version: VersionRef,
    deleted: bool,
) -> Result<SubjectVersion, Error> {
    let found = match version {
        VersionRef::Latest => versions.into_iter().rev().find(|v| deleted || !v.deleted),
        VersionRef::Number(n) => versions
            .into_iter()
            .find(|v| v.version == n && (deleted || !v.deleted)),
    };
    found.ok_or_else(|| {
        let named = match version {
            VersionRef::Latest => "latest".to_string(),
            VersionRef::Number(n) => n.to_string(),
        };
        Error::VersionNotFound(subject.to_string(), named)
    })
}

/// Stored versions, newest first, parsed for a compatibility check.
fn newest_first(versions: &[SubjectVersion]) -> Result<Vec<(i64, Schema)>, Error> {
    versions
        .iter()
        .rev()
        .map(|v| {
            Schema::parse_str(&v.schema)
                .map(|s| (v.version, s))
                .map_err(|e| {
                    Error::Store(crate::store::Error::Corrupt(format!(
                        "stored schema {} does not parse: {e}",
                        v.id
                    )))
                })
        })
        .collect()
}
