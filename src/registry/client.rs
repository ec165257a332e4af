//! A client of any Confluent-compatible registry (ours, Confluent's, Karapace,
//! Apicurio, Redpanda): registering a schema under a subject, and reading a
//! schema by its global id. Basic auth comes from the URL's user info.

use std::time::Duration;

use serde_json::{Value, json};

/// Why a registry request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("invalid schema registry URL {0:?}: {1}")]
    Url(String, String),
    /// Worth retrying: the registry did not answer, or answered that it failed.
    #[error("schema registry {url} is unavailable: {detail}")]
    Unavailable { url: String, detail: String },
    /// The registry answered no; asking again gets the same answer.
    #[error("schema registry {url} refused: {message} (error_code {code})")]
    Refused {
        url: String,
        code: u32,
        message: String,
    },
}

impl ClientError {
    pub fn code(&self) -> Option<u32> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Confluent's code for a schema id the registry does not have.
pub const SCHEMA_NOT_FOUND: u32 = 40403;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: url::Url,
    auth: Option<(String, String)>,
    /// The URL without its password, for messages.
    shown: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.shown).finish()
    }
}

impl Client {
    pub fn new(url: &str) -> Result<Client, ClientError> {
        let bad = |why: String| ClientError::Url(redact(url), why);
        let mut base = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("use http:// or https://".into()));
        }
        let auth = (!base.username().is_empty()).then(|| {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (
                decode(base.username()),
                decode(base.password().unwrap_or("")),
            )
        });
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Client {
            http,
            shown: base.as_str().trim_end_matches('/').to_string(),
            base,
            auth,
        })
    }

    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Registers an Avro schema under `subject` (or finds it there): its global id.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, ClientError> {
        let path = format!("subjects/{}/versions", encode(subject));
        let answer = self
            .call(
                reqwest::Method::POST,
                &path,
                Some(json!({"schema": schema})),
            )
            .await?;
        self.id_in(&answer)
    }

    /// The schema with global id `id`, as JSON text.
    pub async fn schema(&self, id: u32) -> Result<String, ClientError> {
        let answer = self
            .call(reqwest::Method::GET, &format!("schemas/ids/{id}"), None)
            .await?;
        if let Some(t) = answer.get("schemaType").and_then(Value::as_str)
            && !t.eq_ignore_ascii_case("AVRO")
        {
            return Err(self.refused(0, format!("schema {id} is a {t} schema, not Avro")));
        }
        answer
            .get("schema")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| self.unexpected(&answer))
    }

    fn id_in(&self, answer: &Value) -> Result<u32, ClientError> {
        answer
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| self.unexpected(answer))
    }

    fn unexpected(&self, answer: &Value) -> ClientError {
        ClientError::Unavailable {
            url: self.shown.clone(),
            detail: format!("unexpected answer {answer}"),
        }
    }

    fn refused(&self, code: u32, message: String) -> ClientError {
        ClientError::Refused {
            url: self.shown.clone(),
            code,
            message,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let unavailable = |detail: String| ClientError::Unavailable {
            url: self.shown.clone(),
            detail,
        };
        let url = self
            .base
            .join(path)
            .map_err(|e| unavailable(e.to_string()))?;
        let mut req = self.http.request(method, url).header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        if let Some((user, password)) = &self.auth {
            req = req.basic_auth(user, Some(password));
        }
        if let Some(body) = body {
            req = req
                .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                .body(body.to_string());
        }
        let resp = req.send().await.map_err(|e| unavailable(chain(&e)))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| unavailable(chain(&e)))?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return json.ok_or_else(|| unavailable(format!("answered {status} with {text:?}")));
        }
        let message = json
            .as_ref()
            .and_then(|j| j.get("message"))
            .and_then(Value::as_str)
            .map_or_else(|| format!("{status} {text}"), str::to_owned);
        let code = json
            .as_ref()
            .and_then(|j| j.get("error_code"))
            .and_then(Value::as_u64)
            .map_or(u32::from(status.as_u16()), |c| c as u32);
        // The registry's own trouble (and rate limits) pass; anything else is an
        // answer about the request.
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            return Err(unavailable(format!("{status}: {message}")));
        }
        Err(self.refused(code, message))
    }
}

fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A URL as it may be shown: without its password.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// An error and its causes ("error sending request: connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_becomes_basic_auth_and_never_shows() {
        let c = Client::new("http://alice:s%3Acret@127.0.0.1:8081").unwrap();
        assert_eq!(c.auth, Some(("alice".into(), "s:cret".into())));
        assert_eq!(c.url(), "http://127.0.0.1:8081");
        assert!(!format!("{c:?}").contains("cret"));
        assert!(redact("http://a:b@h:1/").contains("***"));
        assert!(Client::new("ftp://h").is_err());
        let sub = Client::new("http://h:1/registry").unwrap();
        assert_eq!(
            sub.base.join("subjects").unwrap().path(),
            "/registry/subjects"
        );
    }
}
