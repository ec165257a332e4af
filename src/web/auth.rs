//! Who may use the console: users with argon2 password hashes and bearer
//! tokens (from a users file or the environment), sessions, roles, and the
//! CSRF check of state-changing requests.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use axum::http::{HeaderMap, Method, header};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything
    Viewer,
    /// Also places orders and starts or cancels replays
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// One user as the users file keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserEntry {
    pub name: String,
    pub role: Role,
    /// Argon2 PHC string (`$argon2id$...`).
    pub password_hash: String,
    /// SHA-256 (hex) of each bearer token: tokens are random 256-bit values,
    /// so a fast hash is enough and a request costs no argon2 run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub token_sha256: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct UsersFile {
    #[serde(default, rename = "user")]
    pub users: Vec<UserEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the users file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the users file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the users file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "ORDERFLOW_USERS entry of {0:?} is not NAME:ROLE:ARGON2_HASH with ROLE viewer or operator (make one with `orderflow users add NAME --role viewer --print`)"
    )]
    EnvEntry(String),
    #[error("user {name}: {message}")]
    BadHash { name: String, message: String },
    #[error("hashing the password: {0}")]
    Hash(String),
}

impl UsersFile {
    /// The file's users; none when it does not exist.
    pub fn read(path: &Path) -> Result<UsersFile, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| Error::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UsersFile::default()),
            Err(source) => Err(Error::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the file readable by its owner only: it holds password hashes.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let err = |source| Error::Write {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let text = toml::to_string(self).expect("users serialize");
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(err)?;
            f.write_all(text.as_bytes()).map_err(err)?;
        }
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// Adds a user or replaces the one of that name.
    pub fn upsert(&mut self, user: UserEntry) {
        self.users.retain(|u| u.name != user.name);
        self.users.push(user);
    }
}

pub fn hash_password(password: &str) -> Result<String, Error> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

/// A new bearer token and the hash the users file keeps of it.
pub fn new_token() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = format!(
        "oft_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = token_hash(&token);
    (token, hash)
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// Signed in by the session cookie (and so subject to the CSRF check),
    /// not by a bearer token.
    #[serde(skip)]
    pub by_cookie: bool,
}

impl Principal {
    pub fn can_operate(&self) -> bool {
        self.role >= Role::Operator
    }
}

/// The users the console knows.
#[derive(Debug, Default)]
pub struct Users {
    by_name: HashMap<String, UserEntry>,
    by_token: HashMap<String, String>,
}

/// Password checks that may run at once.
static CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// A hash to check unknown names against, so that a wrong name takes as long
/// as a wrong password.
static DECOY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("decoy").expect("hashing works"));

impl Users {
    /// From the users file and `ORDERFLOW_USERS` (`NAME:ROLE:HASH`, separated by
    /// white space); the environment wins for a name in both.
    pub fn load(file: &Path, env: Option<&str>) -> Result<Users, Error> {
        let mut entries = UsersFile::read(file)?.users;
        for item in env.unwrap_or("").split_whitespace() {
            let mut parts = item.splitn(3, ':');
            // The entry is named by its user only: it holds a hash.
            let named = || Error::EnvEntry(item.split(':').next().unwrap_or("").to_string());
            let (Some(name), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(named());
            };
            let role = match role {
                "viewer" => Role::Viewer,
                "operator" => Role::Operator,
                _ => return Err(named()),
            };
            entries.retain(|u| u.name != name);
            entries.push(UserEntry {
                name: name.to_string(),
                role,
                password_hash: hash.to_string(),
                token_sha256: Vec::new(),
            });
        }
        Users::new(entries)
    }

    pub fn new(entries: Vec<UserEntry>) -> Result<Users, Error> {
        let mut users = Users::default();
        for u in entries {
            PasswordHash::new(&u.password_hash).map_err(|e| Error::BadHash {
                name: u.name.clone(),
                message: format!("password_hash is no argon2 PHC string ({e})"),
            })?;
            for t in &u.token_sha256 {
                users.by_token.insert(t.to_lowercase(), u.name.clone());
            }
            users.by_name.insert(u.name.clone(), u);
        }
        Ok(users)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Makes the decoy hash now, not in the first sign-in with an unknown name.
    pub fn prepare(&self) {
        std::sync::LazyLock::force(&DECOY);
    }

    /// Checks a password (argon2 is slow on purpose: off the async threads,
    /// and a few at a time, each taking about 19 MB, so that a flood of
    /// sign-ins queues instead of exhausting memory).
    pub async fn sign_in(&self, name: &str, password: &str) -> Option<Principal> {
        let _turn = CHECKS
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let user = self.by_name.get(name);
        let hash = user.map_or_else(|| DECOY.clone(), |u| u.password_hash.clone());
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).ok()?;
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .ok()
        })
        .await
        .ok()
        .flatten()
        .is_some();
        let Some(user) = user.filter(|_| ok) else {
            // Escaped: the name is the client's text, and logs are read in terminals.
            tracing::warn!(user = %name.escape_debug(), "sign-in refused: wrong name or password");
            return None;
        };
        Some(Principal {
            name: user.name.clone(),
            role: user.role,
            by_cookie: true,
        })
    }

    pub fn by_token(&self, token: &str) -> Option<Principal> {
        let name = self.by_token.get(&token_hash(token))?;
        let user = &self.by_name[name];
        Some(Principal {
            name: user.name.clone(),
            role: user.role,
            by_cookie: false,
        })
    }
}

pub const SESSION_COOKIE: &str = "orderflow_session";

/// Signed-in browsers, in memory: restarting the console signs everyone out.
pub struct Sessions {
    ttl: Duration,
    map: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Sessions {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// A new session, and the `Set-Cookie` value that carries it. The
    /// request's headers say whether a TLS proxy is in front (then the cookie
    /// is `Secure`: trusting the header can only make the cookie stricter).
    pub fn open(&self, who: Principal, headers: &HeaderMap) -> String {
        let bytes: [u8; 32] = rand::random();
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut map = self.map.lock().expect("sessions lock");
        let now = Instant::now();
        map.retain(|_, (_, at)| now.duration_since(*at) < self.ttl);
        map.insert(id.clone(), (who, now));
        let secure = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
        format!(
            "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
            self.ttl.as_secs(),
            if secure { "; Secure" } else { "" }
        )
    }

    /// The session's user; each use extends it.
    pub fn get(&self, id: &str) -> Option<Principal> {
        let mut map = self.map.lock().expect("sessions lock");
        let (who, at) = map.get_mut(id)?;
        let now = Instant::now();
        if now.duration_since(*at) >= self.ttl {
            map.remove(id);
            return None;
        }
        *at = now;
        Some(who.clone())
    }

    /// Whether the session is still open (without extending it).
    pub fn alive(&self, id: &str) -> bool {
        let map = self.map.lock().expect("sessions lock");
        map.get(id).is_some_and(|(_, at)| at.elapsed() < self.ttl)
    }

    /// Sessions not yet expired.
    pub fn active(&self) -> usize {
        let now = Instant::now();
        let map = self.map.lock().expect("sessions lock");
        map.values()
            .filter(|(_, at)| now.duration_since(*at) < self.ttl)
            .count()
    }

    pub fn close(&self, id: &str) {
        self.map.lock().expect("sessions lock").remove(id);
    }
}

pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// The session id a request's cookies carry.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
        .filter(|id| !id.is_empty())
}

/// The name and secret of `Authorization: Basic`, as schema registry clients
/// send them.
pub fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials(headers, "basic")?)
        .ok()?;
    let (name, secret) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((name.to_string(), secret.to_string()))
}

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    credentials(headers, "bearer")
}

/// What `Authorization` carries under `scheme` (case-insensitive).
fn credentials<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (given, value) = v.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| value.trim())
}

/// A request that changes state with a browser's ambient cookie must come from
/// our own pages: the browser says so in `Sec-Fetch-Site`, or else `Origin`
/// must name the host the request went to. Without either, it is refused.
pub fn csrf_check(method: &Method, headers: &HeaderMap) -> Result<(), String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let get = |h| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(site) = get(header::HeaderName::from_static("sec-fetch-site")) {
        return match site {
            "same-origin" | "none" => Ok(()),
            other => Err(format!(
                "cross-site request refused (Sec-Fetch-Site: {other}): use the console's own pages, or a bearer token"
            )),
        };
    }
    match (get(header::ORIGIN), get(header::HOST)) {
        (Some(origin), Some(host))
            if origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host) =>
        {
            Ok(())
        }
        (Some(origin), _) => Err(format!(
            "cross-site request refused (Origin: {origin}): use the console's own pages, or a bearer token"
        )),
        (None, _) => Err(
            "a request that changes something with a session cookie must carry an Origin header; API clients should use a bearer token"
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_same_origin_posts_pass() {
        let post = Method::POST;
        assert!(csrf_check(&Method::GET, &headers(&[])).is_ok());
        assert!(csrf_check(&post, &headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(csrf_check(&post, &headers(&[("sec-fetch-site", "cross-site")])).is_err());
        let ok = [
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ];
        assert!(csrf_check(&post, &headers(&ok)).is_ok());
        let evil = [
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8080"),
        ];
        assert!(csrf_check(&post, &headers(&evil)).is_err());
        assert!(csrf_check(&post, &headers(&[("host", "127.0.0.1:8080")])).is_err());
    }

    #[test]
    fn cookies_and_tokens_are_read() {
        let h = headers(&[("cookie", "a=b; orderflow_session=xyz; c=d")]);
        assert_eq!(session_id(&h), Some("xyz"));
        let h = headers(&[("authorization", "Bearer oft_abc")]);
        assert_eq!(bearer(&h), Some("oft_abc"));
    }

    #[tokio::test]
    async fn passwords_and_tokens_sign_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let (token, token_hash) = new_token();
        let mut file = UsersFile::default();
        file.upsert(UserEntry {
            name: "ann".into(),
            role: Role::Operator,
            password_hash: hash_password("s3cret").unwrap(),
            token_sha256: vec![token_hash],
        });
        file.write(&path).unwrap();
        let env = format!("vic:viewer:{}", hash_password("pw").unwrap());
        let users = Users::load(&path, Some(&env)).unwrap();
        assert_eq!(
            users.sign_in("ann", "s3cret").await.unwrap().role,
            Role::Operator
        );
        assert!(users.sign_in("ann", "wrong").await.is_none());
        assert!(users.sign_in("nobody", "s3cret").await.is_none());
        assert_eq!(users.sign_in("vic", "pw").await.unwrap().role, Role::Viewer);
        assert_eq!(users.by_token(&token).unwrap().name, "ann");
        assert!(users.by_token("oft_nope").is_none());
        assert!(Users::load(&path, Some("bad-entry")).is_err());
    }
}
