//! The web console and its JSON API over HTTP, the app served in the test
//! process: signing in (API and form), roles, the CSRF check, that everything
//! an order or a dead letter carries is escaped in pages and intact in JSON,
//! that searches are plain values, and every `/api/v1` route as `openapi.json`
//! documents it, on both brokers with a processor running in-process.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::http::{Method, StatusCode, header};
use common::*;
use orderflow::{
    dlq::redrive::Topics,
    kafka::KafkaConfig,
    order::{Order, now_ms},
    processor::{Failure, Handler, Processor},
    store::{
        Batch, Filter, Finished, Status, Store,
        dead_letters::{DeadLetter, Position},
    },
    web::{
        self, App, Role, Settings, Users,
        auth::{UserEntry, UsersFile, hash_password, new_token},
    },
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

const OPERATOR: (&str, &str) = ("olga", "olga-password-1");
const VIEWER: (&str, &str) = ("vera", "vera-password-1");

/// Every route of the API, as the router serves it and `openapi.json`
/// documents it: the one list the tests compare both with.
const API_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/session"),
    ("GET", "/api/v1/session"),
    ("DELETE", "/api/v1/session"),
    ("GET", "/api/v1/dashboard"),
    ("GET", "/api/v1/orders"),
    ("POST", "/api/v1/orders"),
    ("GET", "/api/v1/orders/{id}"),
    ("GET", "/api/v1/dlq/reasons"),
    ("GET", "/api/v1/dlq/letters"),
    ("POST", "/api/v1/dlq/replays/preview"),
    ("GET", "/api/v1/dlq/replays"),
    ("POST", "/api/v1/dlq/replays"),
    ("GET", "/api/v1/dlq/replays/{id}"),
    ("POST", "/api/v1/dlq/replays/{id}/cancel"),
    ("GET", "/api/v1/audit"),
];

const XSS_SCRIPT: &str = "<script>alert(1)</script>";
const XSS_ATTR: &str = "\"><img src=x onerror=alert(1)>";
const SQL: &str = "'; DROP TABLE orders; --";

// ---- the console under test

/// How a request signs in.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Token(&'a str),
    Cookie(&'a str),
}

enum Body {
    None,
    Json(Value),
    Form(Vec<(&'static str, String)>),
    /// A body as is, with its content type.
    Raw(&'static str, &'static str),
}

/// A response, read whole.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: header::HeaderMap,
    text: String,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        assert!(
            self.header("content-type").starts_with("application/json"),
            "a JSON answer: {self:?}"
        );
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// Asserts a JSON error of this status, and returns its message.
    fn error(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "{self:?}");
        let v = self.json();
        assert_eq!(v["error"]["status"], status.as_u16(), "{v}");
        let m = v["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("error.message: {v}"))
            .to_string();
        assert!(m.len() > 15, "a message that says what to do: {m:?}");
        m
    }

    /// The session cookie it sets (`name=value`).
    fn cookie(&self) -> String {
        let set = self.header("set-cookie");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
            "{set}"
        );
        set.split(';').next().unwrap().to_string()
    }

    fn html(&self) -> &str {
        assert!(
            self.header("content-type").starts_with("text/html"),
            "an HTML page: {self:?}"
        );
        &self.text
    }
}

struct Console {
    base: String,
    addr: String,
    operator: String,
    viewer: String,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Console {
    async fn start(store: Arc<Store>, kafka: KafkaConfig, topics: Topics, group: &str) -> Console {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let (operator, operator_hash) = new_token();
        let (viewer, viewer_hash) = new_token();
        let entries = tokio::task::spawn_blocking(move || {
            [
                (OPERATOR, Role::Operator, operator_hash),
                (VIEWER, Role::Viewer, viewer_hash),
            ]
            .map(|((name, password), role, token)| UserEntry {
                name: name.into(),
                role,
                password_hash: hash_password(password).unwrap(),
                token_sha256: vec![token],
            })
        })
        .await
        .unwrap();
        let mut file = UsersFile::default();
        for e in entries {
            file.upsert(e);
        }
        file.write(&path).unwrap();
        let stop = CancellationToken::new();
        let app = App::new(
            store,
            Settings {
                kafka,
                topics,
                group: group.into(),
                users: Users::load(&path, None).unwrap(),
                session_ttl: Duration::from_secs(600),
            },
            stop.clone(),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(web::run(listener, app));
        Console {
            base: format!("http://{addr}"),
            addr,
            operator,
            viewer,
            stop,
            server,
            _dir: dir,
        }
    }

    /// A console over a store alone: its Kafka cannot be reached.
    async fn without_kafka(store: Arc<Store>) -> Console {
        let topics = Topics {
            dlq: "orders_dlq".into(),
            orders: "orders".into(),
            parking: "orders_parked".into(),
        };
        Console::start(
            store,
            KafkaConfig::new("127.0.0.1:1"),
            topics,
            "order-group",
        )
        .await
    }

    fn origin(&self) -> (&'static str, &str) {
        ("origin", &self.base)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        auth: Auth<'_>,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Reply {
        let mut head: Vec<(String, String)> = Vec::new();
        match auth {
            Auth::None => {}
            Auth::Token(t) => head.push(("authorization".into(), format!("Bearer {t}"))),
            Auth::Cookie(c) => head.push(("cookie".into(), c.into())),
        }
        for (k, v) in headers {
            head.push((k.to_string(), v.to_string()));
        }
        let body = match body {
            Body::None => None,
            Body::Json(v) => Some(("application/json", v.to_string())),
            Body::Form(pairs) => {
                let mut s = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in &pairs {
                    s.append_pair(k, v);
                }
                Some(("application/x-www-form-urlencoded", s.finish()))
            }
            Body::Raw(content_type, text) => Some((content_type, text.to_string())),
        };
        if let Some((content_type, _)) = &body {
            head.push(("content-type".into(), content_type.to_string()));
        }
        let body = body.map(|(_, b)| b).unwrap_or_default();
        within(30, http1(&self.addr, method, path, &head, &body)).await
    }

    async fn get(&self, path: &str, auth: Auth<'_>) -> Reply {
        self.call("GET", path, auth, &[], Body::None).await
    }

    /// A GET by the operator's token.
    async fn api(&self, path: &str) -> Reply {
        self.get(path, Auth::Token(&self.operator)).await
    }

    async fn api_ok(&self, path: &str) -> Value {
        let r = self.api(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {r:?}");
        r.json()
    }

    /// A POST by the operator's token.
    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(
            "POST",
            path,
            Auth::Token(&self.operator),
            &[],
            Body::Json(body),
        )
        .await
    }

    /// Polls `path` until `done` holds for its JSON, for at most `secs`.
    async fn until(&self, secs: u64, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.api(path).await;
            if r.status == StatusCode::OK {
                let v = r.json();
                if done(&v) {
                    return v;
                }
                if tokio::time::Instant::now() > deadline {
                    panic!("{path} did not get there in {secs} s: {v:#}");
                }
            } else if tokio::time::Instant::now() > deadline {
                panic!("{path} did not get there in {secs} s: {r:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        within(10, self.server)
            .await
            .unwrap()
            .expect("the console stops cleanly");
    }
}

/// One HTTP/1.1 request on a connection of its own, read to its end: what a
/// client library would do, without one (reqwest cannot build a client in this
/// tree: its TLS is compiled without a crypto provider).
async fn http1(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &str,
) -> Reply {
    Method::from_bytes(method.as_bytes()).expect("a method");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the console listens");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no HTTP answer: {raw:?}"));
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    let mut map = header::HeaderMap::new();
    for l in lines {
        let (k, v) = l.split_once(':').unwrap();
        map.append(
            header::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
            v.trim().parse().unwrap(),
        );
    }
    if map
        .get(header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"))
    {
        let mut body = Vec::new();
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size_hex = String::from_utf8(rest[..eol].to_vec()).unwrap();
            let size =
                usize::from_str_radix(size_hex.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest.drain(..eol + 2 + size + 2);
        }
        rest = body;
    }
    Reply {
        status: StatusCode::from_u16(status).unwrap(),
        headers: map,
        text: String::from_utf8(rest).expect("UTF-8 answers"),
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

async fn sqlite_store(dir: &std::path::Path) -> Arc<Store> {
    let url = format!("sqlite://{}", dir.join("orders.db").display());
    Arc::new(Store::connect(&url).await.unwrap())
}

// ---- 1. signing in, roles and CSRF

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_roles_and_csrf() {
    let dir = tempfile::tempdir().unwrap();
    let c = Console::without_kafka(sqlite_store(dir.path()).await).await;
    let origin = c.origin();
    let (op_name, op_pw) = OPERATOR;

    // Signed out: the API says how to sign in; pages send to the login page.
    let r = c.get("/api/v1/orders", Auth::None).await;
    assert!(r.error(StatusCode::UNAUTHORIZED).contains("sign in"));
    assert_eq!(r.header("www-authenticate"), "Bearer");
    c.get("/events/dashboard", Auth::None)
        .await
        .error(StatusCode::UNAUTHORIZED);
    c.get("/api/v1/session", Auth::Token("oft_not-a-token"))
        .await
        .error(StatusCode::UNAUTHORIZED);
    c.get("/api/v1/session", Auth::Cookie("orderflow_session=forged"))
        .await
        .error(StatusCode::UNAUTHORIZED);
    let r = c.get("/", Auth::None).await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::SEE_OTHER, "/login?next=%2F")
    );
    let r = c.get("/orders?product=a%26b", Auth::None).await;
    assert_eq!(
        r.header("location"),
        "/login?next=%2Forders%3Fproduct%3Da%2526b"
    );
    let r = c.get("/healthz", Auth::None).await;
    assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "ok"));
    let r = c.get("/login?next=%2Forders", Auth::None).await;
    assert!(r.html().contains("value=\"/orders\""), "{}", r.text);

    // POST /api/v1/session.
    let session =
        |name: &str, password: &str| Body::Json(json!({"name": name, "password": password}));
    let r = c
        .call(
            "POST",
            "/api/v1/session",
            Auth::None,
            &[origin],
            session(op_name, "wrong"),
        )
        .await;
    assert!(
        r.error(StatusCode::UNAUTHORIZED)
            .contains("wrong name or password")
    );
    assert!(r.header("set-cookie").is_empty());
    c.call(
        "POST",
        "/api/v1/session",
        Auth::None,
        &[origin],
        session("nobody", op_pw),
    )
    .await
    .error(StatusCode::UNAUTHORIZED);
    let evil = ("origin", "http://evil.example");
    let r = c
        .call(
            "POST",
            "/api/v1/session",
            Auth::None,
            &[evil],
            session(op_name, op_pw),
        )
        .await;
    assert!(r.error(StatusCode::FORBIDDEN).contains("cross-site"));
    assert!(r.header("set-cookie").is_empty());
    let r = c
        .call(
            "POST",
            "/api/v1/session",
            Auth::None,
            &[],
            session(op_name, op_pw),
        )
        .await;
    assert!(r.error(StatusCode::FORBIDDEN).contains("Origin"));
    let r = c
        .call(
            "POST",
            "/api/v1/session",
            Auth::None,
            &[origin],
            Body::Raw("application/json", "{\"name\": "),
        )
        .await;
    r.error(StatusCode::BAD_REQUEST);
    let r = c
        .call(
            "POST",
            "/api/v1/session",
            Auth::None,
            &[origin],
            session(op_name, op_pw),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json(), json!({"name": op_name, "role": "operator"}));
    assert!(!r.header("set-cookie").contains("Secure"), "plain HTTP");
    let cookie = r.cookie();
    // Behind a TLS proxy the cookie is sent over HTTPS only.
    let r = c
        .call(
            "POST",
            "/api/v1/session",
            Auth::None,
            &[origin, ("x-forwarded-proto", "https")],
            session(op_name, op_pw),
        )
        .await;
    assert!(r.header("set-cookie").contains("; Secure"), "{r:?}");
    let r = c.get("/api/v1/session", Auth::Cookie(&cookie)).await;
    assert_eq!(r.json(), json!({"name": op_name, "role": "operator"}));
    assert_eq!(r.header("cache-control"), "no-store");

    // A change by cookie must come from the console's origin.
    let new_order =
        || Body::Json(json!({"user": "", "product": "pizza", "quantity": 1, "price": 1.0}));
    let cookie_auth = Auth::Cookie(&cookie);
    let m = c
        .call("POST", "/api/v1/orders", cookie_auth, &[], new_order())
        .await
        .error(StatusCode::FORBIDDEN);
    assert!(m.contains("Origin") && m.contains("bearer token"), "{m}");
    let cross = ("sec-fetch-site", "cross-site");
    let m = c
        .call(
            "POST",
            "/api/v1/orders",
            cookie_auth,
            &[cross, origin],
            new_order(),
        )
        .await
        .error(StatusCode::FORBIDDEN);
    assert!(m.contains("cross-site"), "{m}");
    c.call("POST", "/api/v1/orders", cookie_auth, &[evil], new_order())
        .await
        .error(StatusCode::FORBIDDEN);
    c.call("DELETE", "/api/v1/session", cookie_auth, &[], Body::None)
        .await
        .error(StatusCode::FORBIDDEN);
    // Past the check, the order itself is refused (and nothing is produced).
    let same = ("sec-fetch-site", "same-origin");
    for h in [same, origin] {
        let m = c
            .call("POST", "/api/v1/orders", cookie_auth, &[h], new_order())
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(m.contains("user is empty"), "{m}");
    }
    // A bearer token needs no Origin: no browser sends it on its own.
    let m = c
        .call(
            "POST",
            "/api/v1/orders",
            Auth::Token(&c.operator),
            &[],
            new_order(),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(m.contains("user is empty"), "{m}");

    // A viewer reads, and is refused every change, with a message.
    let viewer = Auth::Token(&c.viewer);
    let r = c.get("/api/v1/session", viewer).await;
    assert_eq!(r.json(), json!({"name": VIEWER.0, "role": "viewer"}));
    assert_eq!(
        c.get("/api/v1/orders", viewer).await.json()["orders"],
        json!([])
    );
    let valid = json!({"user": "vera", "product": "pizza", "quantity": 1, "price": 2.5});
    for (path, body) in [
        ("/api/v1/orders", valid),
        ("/api/v1/dlq/replays", json!({"reason": "x"})),
        ("/api/v1/dlq/replays/1/cancel", json!({})),
    ] {
        let m = c
            .call("POST", path, viewer, &[], Body::Json(body))
            .await
            .error(StatusCode::FORBIDDEN);
        assert!(
            m.contains("only operators") && m.contains("--role operator"),
            "{path}: {m}"
        );
    }
    let r = c.get("/place", viewer).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.html().contains("only operators"));
    let r = c
        .call(
            "POST",
            "/dlq/replays",
            viewer,
            &[],
            Body::Form(vec![("reason", "x".into())]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");

    // Signing out ends the session, and the live streams it had open.
    let stream = {
        let (addr, cookie) = (c.addr.clone(), cookie.clone());
        tokio::spawn(async move {
            let head = [("cookie".to_string(), cookie)];
            http1(&addr, "GET", "/events/dashboard", &head, "").await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!stream.is_finished(), "the stream is open while signed in");
    let r = c
        .call(
            "DELETE",
            "/api/v1/session",
            cookie_auth,
            &[origin],
            Body::None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    let streamed = within(30, stream)
        .await
        .expect("the stream ends after sign-out");
    assert_eq!(streamed.status, StatusCode::OK);
    assert!(
        !streamed.text.contains("data:"),
        "nothing sent after sign-out: {streamed:?}"
    );
    assert!(r.header("set-cookie").contains("Max-Age=0"));
    c.get("/api/v1/session", cookie_auth)
        .await
        .error(StatusCode::UNAUTHORIZED);
    assert_eq!(
        c.get("/orders", cookie_auth).await.header("location"),
        "/login?next=%2Forders"
    );

    // The login form.
    let form = |password: &str, next: &str| {
        Body::Form(vec![
            ("name", op_name.into()),
            ("password", password.into()),
            ("next", next.into()),
        ])
    };
    let r = c
        .call(
            "POST",
            "/login",
            Auth::None,
            &[origin],
            form("wrong", "/orders"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.html().contains("Wrong name or password."));
    assert!(r.header("set-cookie").is_empty());
    let r = c
        .call("POST", "/login", Auth::None, &[], form(op_pw, "/orders"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.header("set-cookie").is_empty());
    let r = c
        .call(
            "POST",
            "/login",
            Auth::None,
            &[evil],
            form(op_pw, "/orders"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = c
        .call(
            "POST",
            "/login",
            Auth::None,
            &[origin],
            form(op_pw, "/orders?status=dlq"),
        )
        .await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::SEE_OTHER, "/orders?status=dlq")
    );
    let cookie = r.cookie();
    let page = c.get("/orders", Auth::Cookie(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html().contains(op_name));
    for next in [
        "//evil.example",
        "https://evil.example/",
        "/\\evil.example",
        "evil.example",
    ] {
        let r = c
            .call("POST", "/login", Auth::None, &[same], form(op_pw, next))
            .await;
        assert_eq!(
            (r.status, r.header("location")),
            (StatusCode::SEE_OTHER, "/"),
            "next={next:?}"
        );
        let page = c
            .get(&format!("/login?next={}", enc(next)), Auth::None)
            .await;
        assert!(
            !page.html().contains("evil.example"),
            "{next}: {}",
            page.text
        );
    }
    // The page form's sign-out.
    let r = c
        .call("POST", "/logout", Auth::Cookie(&cookie), &[], Body::None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "CSRF-checked too");
    let r = c
        .call(
            "POST",
            "/logout",
            Auth::Cookie(&cookie),
            &[origin],
            Body::None,
        )
        .await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::SEE_OTHER, "/login")
    );
    c.get("/api/v1/session", Auth::Cookie(&cookie))
        .await
        .error(StatusCode::UNAUTHORIZED);
    c.stop().await;
}

// ---- 2. escaping and bound searches

fn stored(id: &str, user: &str, product: &str, offset: i64) -> Finished {
    let at = now_ms() - 60_000 + offset;
    Finished {
        id: id.into(),
        order: Some(Order {
            order_id: id.into(),
            user: user.into(),
            product: product.into(),
            quantity: 2,
            price: Some(9.5),
            created_at_ms: at,
        }),
        status: Status::Processed,
        attempts: 1,
        last_error: None,
        partition: 0,
        offset,
        produced_ms: Some(at),
        received_ms: at,
        processed_ms: at,
        timeline: Vec::new(),
        dead_letter: None,
    }
}

/// An HTML page shows the hostile values as text.
fn assert_escaped(page: &str, what: &str) {
    for raw in ["<script>alert(1)", "<img src=x", "onerror=alert(1)>"] {
        assert!(
            !page.contains(raw),
            "{what} holds {raw:?} unescaped:\n{page}"
        );
    }
    assert!(
        page.contains(&esc(XSS_SCRIPT)),
        "{what} shows the script as text:\n{page}"
    );
}

/// Text as askama escapes it for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_values_are_escaped_and_search_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    for url in store_urls(dir.path()).await {
        let store = Arc::new(Store::connect(&url).await.unwrap());
        let script = stored(XSS_SCRIPT, XSS_ATTR, XSS_SCRIPT, 0);
        let mut dead = stored(SQL, SQL, XSS_ATTR, 1);
        let reason = format!("{XSS_SCRIPT} failed: {XSS_ATTR} {SQL}");
        dead.status = Status::Dlq;
        dead.attempts = 3;
        dead.last_error = Some(reason.clone());
        dead.dead_letter = Some(DeadLetter {
            record: Position {
                topic: "orders_dlq".into(),
                partition: 0,
                offset: 0,
            },
            order_id: Some(SQL.into()),
            user: Some(SQL.into()),
            product: Some(XSS_ATTR.into()),
            reason: reason.clone(),
            kind: Some("permanent".into()),
            attempts: Some(3),
            source: Some(Position {
                topic: "orders".into(),
                partition: 0,
                offset: 1,
            }),
            source_ms: Some(dead.received_ms),
            first_failure_ms: Some(dead.received_ms),
            last_failure_ms: Some(dead.processed_ms),
            dead_ms: dead.processed_ms,
            replays: 0,
            key: Some(SQL.as_bytes().to_vec()),
            value: Some(b"{}".to_vec()),
        });
        let plain = stored("plain-1", "ann", "pizza", 2);
        store
            .apply(&Batch {
                group: "order-group".into(),
                topic: "orders".into(),
                finished: vec![script, dead, plain],
                offsets: vec![(0, 3)],
            })
            .await
            .unwrap();
        let c = Console::without_kafka(store.clone()).await;
        let viewer = Auth::Token(&c.viewer);
        let page = |path: String| {
            let c = &c;
            async move {
                let started = std::time::Instant::now();
                let r = c.get(&path, viewer).await;
                assert_eq!(r.status, StatusCode::OK, "{path}: {r:?}");
                let took = started.elapsed();
                assert!(took < Duration::from_secs(15), "{path} took {took:?}");
                (r.html().to_string(), took)
            }
        };

        let (html, _) = page("/orders".into()).await;
        assert_escaped(&html, "/orders");
        assert!(html.contains("DROP TABLE orders"), "{html}");
        let (html, _) = page(format!("/orders?product={}", enc(XSS_SCRIPT))).await;
        assert_escaped(&html, "/orders?product=");
        assert!(
            html.contains(&format!("value=\"{}\"", esc(XSS_SCRIPT))),
            "the search is echoed as text: {html}"
        );
        assert!(!html.contains("plain-1"), "the search found only its order");
        let (html, _) = page(format!("/orders?user={}", enc(XSS_ATTR))).await;
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains(&esc(XSS_ATTR)), "{html}");
        assert!(html.contains("/orders/%3Cscript%3E"), "{html}");
        // An error echoing the value shows it as text too.
        let (html, _) = page(format!("/orders?since={}", enc(XSS_SCRIPT))).await;
        assert_escaped(&html, "/orders?since=");
        assert!(html.contains("neither a time"), "{html}");

        for id in [XSS_SCRIPT, SQL] {
            let (html, took) = page(format!("/orders/{}", enc(id))).await;
            assert_escaped(&html, &format!("/orders/{id}"));
            assert!(html.contains("The message in Kafka"), "{html}");
            eprintln!("/orders/{id:?} without Kafka took {took:?}");
        }
        let (html, took) = page("/dlq".into()).await;
        assert_escaped(&html, "/dlq");
        assert!(
            html.contains(&esc(&reason)),
            "the whole reason, as text: {html}"
        );
        assert!(html.contains("DROP TABLE orders"), "{html}");
        eprintln!("/dlq without Kafka took {took:?}");
        let (html, _) = page(format!("/dlq?group={}", enc(XSS_SCRIPT))).await;
        assert_escaped(&html, "/dlq?group=");
        assert!(html.contains("failed: "), "the record is listed: {html}");
        let r = c.get(&format!("/nope{}", enc(XSS_SCRIPT)), viewer).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(!r.html().contains("<script>alert(1)"), "{r:?}");

        // The API gives the values intact.
        let all = c.get("/api/v1/orders", viewer).await.json();
        let find = |id: &str| {
            all["orders"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["id"] == id)
                .unwrap_or_else(|| panic!("{id} listed: {all}"))
                .clone()
        };
        let o = find(XSS_SCRIPT);
        assert_eq!(
            (&o["user"], &o["product"]),
            (&json!(XSS_ATTR), &json!(XSS_SCRIPT))
        );
        let o = find(SQL);
        assert_eq!((&o["user"], &o["status"]), (&json!(SQL), &json!("dlq")));
        assert_eq!(o["last_error"], json!(reason));
        let d = c
            .get(&format!("/api/v1/orders/{}", enc(XSS_SCRIPT)), viewer)
            .await
            .json();
        assert_eq!(d["id"], XSS_SCRIPT);
        assert_eq!(d["history"][0]["order"]["user"], XSS_ATTR);
        assert!(d["raw"].is_null() && d["raw_error"].is_string(), "{d}");
        let letters = c.get("/api/v1/dlq/letters", viewer).await.json();
        assert_eq!(letters["letters"][0]["reason"], json!(reason), "{letters}");
        assert_eq!(letters["letters"][0]["order_id"], SQL);
        assert_eq!(letters["letters"][0]["product"], XSS_ATTR);

        // Searches are values, never SQL.
        let count = |path: String| {
            let c = &c;
            async move {
                let r = c.get(&path, viewer).await;
                assert_eq!(r.status, StatusCode::OK, "{path}: {r:?}");
                let v = r.json();
                v["orders"]
                    .as_array()
                    .or(v["letters"].as_array())
                    .or(v.as_array())
                    .unwrap_or_else(|| panic!("{path}: {v}"))
                    .len()
            }
        };
        assert_eq!(count("/api/v1/orders?user=ann".into()).await, 1);
        for q in [
            "user=' OR 1=1 --",
            "user=' OR '1'='1",
            "product=%",
            "product=_",
            "product=%25%25",
            "product=pizza' OR 'a'='a",
            "id=' OR 1=1 --",
            "id=%",
        ] {
            let q = q.replace(' ', "%20").replace('\'', "%27");
            assert_eq!(count(format!("/api/v1/orders?{q}")).await, 0, "{q}");
        }
        // The hostile values are found as the plain text they are.
        assert_eq!(count(format!("/api/v1/orders?id={}", enc(SQL))).await, 1);
        assert_eq!(count(format!("/api/v1/orders?user={}", enc(SQL))).await, 1);
        assert_eq!(
            count(format!("/api/v1/orders?product={}", enc(XSS_SCRIPT))).await,
            1
        );
        for q in [
            "reason=' OR 1=1 --",
            "reason=%",
            "product=%",
            "product=' OR 1=1 --",
        ] {
            let q = q.replace(' ', "%20").replace('\'', "%27");
            assert_eq!(count(format!("/api/v1/dlq/letters?{q}")).await, 0, "{q}");
        }
        // The reason filter looks for text the reason contains.
        assert_eq!(
            count(format!("/api/v1/dlq/letters?reason={}", enc(SQL))).await,
            1
        );
        assert_eq!(
            count("/api/v1/audit?target=%27%20OR%201%3D1%20--".into()).await,
            0
        );

        let left = store
            .list(&Filter {
                limit: 10,
                ..Filter::default()
            })
            .await
            .expect("the orders table is still there");
        assert_eq!(left.len(), 3, "{url}");
        c.stop().await;
    }
}

// ---- 3. every route, on a broker

/// Fails orders of the product "broken" while `broken` is set.
struct Supplier {
    broken: Arc<AtomicBool>,
}

impl Handler for Supplier {
    fn handle(&mut self, order: &Order, _: u32) -> Result<(), Failure> {
        if order.product == "broken" && self.broken.load(Ordering::SeqCst) {
            Err(Failure::Permanent("supplier down for this product".into()))
        } else {
            Ok(())
        }
    }
}

async fn every_route_answers_as_documented(broker: Broker) {
    let env = TestEnv::start(broker, 1).await;
    let parking = format!("{}_parked", env.topic);
    env.kafka
        .create_topics(&[&parking], 1, 1)
        .await
        .expect("parking topic created");
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let broken = Arc::new(AtomicBool::new(true));
    let stop_processor = CancellationToken::new();
    let processor = tokio::spawn(
        Processor::new(
            env.processor_config(10),
            Box::new(Supplier {
                broken: broken.clone(),
            }),
            recorder(&Log::default()),
        )
        .with_store(store.clone())
        .run(stop_processor.clone(), CancellationToken::new()),
    );
    let topics = Topics {
        dlq: env.dlq.clone(),
        orders: env.topic.clone(),
        parking,
    };
    let c = Console::start(store, env.kafka.clone(), topics, &env.group).await;

    // Place an order; it is processed.
    let r = c
        .post(
            "/api/v1/orders",
            json!({"user": "ann", "product": "pizza", "quantity": 2, "price": 12.5}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let placed = r.json();
    let id = placed["id"].as_str().unwrap().to_string();
    assert_eq!(placed["topic"], env.topic.as_str());
    assert_eq!(placed["partition"], 0);
    assert!(placed["offset"].as_i64().unwrap() >= 0, "{placed}");
    let d = c
        .until(60, &format!("/api/v1/orders/{id}"), |d| !d["raw"].is_null())
        .await;
    assert_eq!(d["history"][0]["order"]["status"], "processed", "{d}");
    assert_eq!(d["history"][0]["order"]["product"], "pizza");
    let decoded = &d["raw"]["decoded"];
    assert_eq!(
        (&decoded["orderId"], &decoded["user"], &decoded["quantity"]),
        (&json!(id), &json!("ann"), &json!(2)),
        "{d}"
    );
    assert_eq!(d["raw"]["key"], json!(id));
    let html = c
        .get(&format!("/orders/{id}"), Auth::Token(&c.viewer))
        .await;
    assert!(
        html.html().contains("&#34;user&#34;: &#34;ann&#34;"),
        "{html:?}"
    );

    // A broken one is dead-lettered.
    let r = c
        .post(
            "/api/v1/orders",
            json!({"user": "bob", "product": "broken", "quantity": 1, "price": 3.0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let bad = r.json()["id"].as_str().unwrap().to_string();
    let d = c
        .until(60, &format!("/api/v1/orders/{bad}"), |d| {
            d["history"][0]["order"]["status"] == "dlq"
        })
        .await;
    assert!(
        d["history"][0]["order"]["last_error"]
            .as_str()
            .unwrap()
            .contains("supplier down"),
        "{d}"
    );
    let dash = c
        .until(30, "/api/v1/dashboard", |d| {
            d["processed"] == 1 && d["dead_lettered"] == 1
        })
        .await;
    assert_eq!(dash["series"].as_array().unwrap().len(), 60, "{dash}");
    assert!(
        dash["by_product"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["product"] == "pizza" && p["orders"] == 1),
        "{dash}"
    );
    assert_eq!(dash["processor"]["group"], env.group.as_str());
    assert!(
        dash["lag"].is_array() && dash.get("lag_error").is_none(),
        "{dash}"
    );

    let reasons = c
        .until(30, "/api/v1/dlq/reasons", |r| {
            !r.as_array().unwrap().is_empty()
        })
        .await;
    let reason = &reasons[0];
    assert!(
        reason["reason"].as_str().unwrap().contains("supplier down"),
        "{reasons}"
    );
    assert_eq!(
        (&reason["count"], &reason["sample_id"]),
        (&json!(1), &json!(bad))
    );
    let letters = c.api_ok("/api/v1/dlq/letters").await;
    assert_eq!(letters["letters"].as_array().unwrap().len(), 1, "{letters}");
    assert_eq!(letters["letters"][0]["order_id"], json!(bad));
    assert_eq!(letters["letters"][0]["state"], "dead");
    assert_eq!(
        c.api_ok("/api/v1/dlq/letters?status=replayed").await["letters"],
        json!([])
    );
    let r = c
        .post(
            "/api/v1/dlq/replays/preview",
            json!({"reason": "supplier down"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let preview = r.json();
    assert_eq!(preview["count"], 1, "{preview}");
    assert_eq!(preview["sample"][0]["order_id"], json!(bad));
    let r = c
        .post(
            "/api/v1/dlq/replays/preview",
            json!({"reason": "nothing like it"}),
        )
        .await;
    assert_eq!(r.json()["count"], 0);
    let m = c
        .post("/api/v1/dlq/replays", json!({"reason": "nothing like it"}))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(m.contains("nothing to replay"), "{m}");
    assert_eq!(
        c.api_ok("/api/v1/dlq/replays").await,
        json!([]),
        "a replay of nothing leaves no job behind"
    );

    // The cause is fixed: replay it.
    broken.store(false, Ordering::SeqCst);
    let r = c
        .post(
            "/api/v1/dlq/replays",
            json!({"reason": "supplier down", "rate": 100.0}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let job = r.json();
    let job_id = job["id"].as_i64().unwrap();
    assert_eq!(
        (&job["selected"], &job["principal"]),
        (&json!(1), &json!(OPERATOR.0))
    );
    let done = c
        .until(60, &format!("/api/v1/dlq/replays/{job_id}"), |j| {
            j["state"] != "running"
        })
        .await;
    assert_eq!(
        (&done["state"], &done["sent"]),
        (&json!("completed"), &json!(1)),
        "{done}"
    );
    let d = c
        .until(60, &format!("/api/v1/orders/{bad}"), |d| {
            d["history"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["order"]["status"] == "processed")
        })
        .await;
    assert_eq!(d["history"].as_array().unwrap().len(), 2, "{d}");
    assert_eq!(
        d["history"][0]["order"]["status"], "processed",
        "newest first: {d}"
    );
    let m = c
        .post(&format!("/api/v1/dlq/replays/{job_id}/cancel"), json!({}))
        .await
        .error(StatusCode::CONFLICT);
    assert!(m.contains("completed"), "{m}");
    let jobs = c.api_ok("/api/v1/dlq/replays").await;
    assert_eq!(jobs.as_array().unwrap().len(), 1, "{jobs}");
    assert_eq!(jobs[0]["id"], job_id);
    assert_eq!(
        c.api_ok("/api/v1/dlq/letters?status=replayed").await["letters"][0]["order_id"],
        json!(bad)
    );
    let audit = c.api_ok("/api/v1/audit").await;
    let entries: Vec<(&str, &str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["principal"].as_str().unwrap(),
                a["action"].as_str().unwrap(),
                a["target"].as_str().unwrap(),
            )
        })
        .collect();
    for want in [
        (OPERATOR.0, "order.place", format!("order:{id}")),
        (OPERATOR.0, "order.place", format!("order:{bad}")),
        (OPERATOR.0, "replay.start", format!("replay:{job_id}")),
    ] {
        assert!(
            entries.contains(&(want.0, want.1, want.2.as_str())),
            "{want:?} in {audit:#}"
        );
    }
    let only = c.api_ok("/api/v1/audit?target=replay:").await;
    assert_eq!(only.as_array().unwrap().len(), 1, "{only}");
    let dash = c
        .until(30, "/api/v1/dashboard", |d| d["processed"] == 2)
        .await;
    assert_eq!(
        dash["dead_lettered"], 1,
        "the dead-lettered attempt still counts: {dash}"
    );

    // Bad input: JSON errors that say what to do.
    for (path, says) in [
        ("/api/v1/orders?limit=0", "1 to 500"),
        ("/api/v1/orders?limit=501", "1 to 500"),
        ("/api/v1/orders?limit=many", "limit"),
        ("/api/v1/orders?since=yesterdayish", "neither a time"),
        ("/api/v1/orders?status=lost", "processed or dlq"),
        ("/api/v1/orders?after=nonsense", ""),
        ("/api/v1/dlq/letters?limit=0", "1 to 500"),
        ("/api/v1/dlq/letters?until=soonish", "until"),
        (
            "/api/v1/dlq/letters?status=lost",
            "dead, replayed or parked",
        ),
        (
            "/api/v1/dlq/reasons?status=lost",
            "dead, replayed or parked",
        ),
        ("/api/v1/dlq/replays/abc", "abc"),
    ] {
        let m = c.api(path).await.error(StatusCode::BAD_REQUEST);
        assert!(m.contains(says), "{path}: {m}");
    }
    for (path, body) in [
        (
            "/api/v1/orders",
            Body::Raw("application/json", "{\"user\": "),
        ),
        (
            "/api/v1/orders",
            Body::Raw("application/json", "{\"user\": \"ann\"}"),
        ),
        ("/api/v1/orders", Body::Raw("text/plain", "user=ann")),
        (
            "/api/v1/orders",
            Body::Json(json!({"user": "ann", "product": "pizza", "quantity": 0, "price": 1.0})),
        ),
        ("/api/v1/dlq/replays", Body::Json(json!({"rate": -1.0}))),
        (
            "/api/v1/dlq/replays",
            Body::Json(json!({"since": "whenever"})),
        ),
        (
            "/api/v1/dlq/replays/preview",
            Body::Raw("application/json", "["),
        ),
        ("/api/v1/dlq/replays/abc/cancel", Body::Json(json!({}))),
    ] {
        c.call("POST", path, Auth::Token(&c.operator), &[], body)
            .await
            .error(StatusCode::BAD_REQUEST);
    }
    let m = c.api("/api/v1/nope").await.error(StatusCode::NOT_FOUND);
    assert!(m.contains("openapi.json"), "{m}");
    let m = c
        .api("/api/v1/dlq/replays/424242")
        .await
        .error(StatusCode::NOT_FOUND);
    assert!(m.contains("424242"), "{m}");
    let m = c
        .api("/api/v1/orders/no-such-order")
        .await
        .error(StatusCode::NOT_FOUND);
    assert!(m.contains("no-such-order"), "{m}");
    let m = c
        .api("/api/v1/orders/a%00b")
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(m.contains("control character"), "{m}");
    let page = c.get("/orders/no-such-order", Auth::Token(&c.viewer)).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{page:?}");
    assert!(page.html().contains("No order with this id"), "{page:?}");
    let page = c
        .get("/orders/no-such-order?placed=1", Auth::Token(&c.viewer))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.html().contains("order-waiting"), "{page:?}");
    let page = c.get("/orders?limit=abc", Auth::Token(&c.viewer)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{page:?}");
    assert!(page.html().contains("<html"), "a page, not JSON: {page:?}");
    c.call(
        "PUT",
        "/api/v1/orders",
        Auth::Token(&c.operator),
        &[],
        Body::None,
    )
    .await
    .error(StatusCode::METHOD_NOT_ALLOWED);

    // openapi.json documents exactly the routes, and the router serves each.
    let spec = c.api_ok("/api/v1/openapi.json").await;
    let mut documented: Vec<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "delete", "patch"].contains(&m.as_str()))
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut listed: Vec<(String, String)> = API_ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    listed.sort();
    assert_eq!(
        documented, listed,
        "openapi.json documents every route, and no other"
    );
    let job_str = job_id.to_string();
    for (method, template) in API_ROUTES {
        let path = template.replace(
            "{id}",
            if template.contains("replays") {
                &job_str
            } else {
                &id
            },
        );
        let body = if *method == "POST" {
            Body::Json(json!({}))
        } else {
            Body::None
        };
        let r = c
            .call(
                method,
                &path,
                Auth::Token(&c.operator),
                &[("origin", &c.base)],
                body,
            )
            .await;
        assert!(
            r.status != StatusCode::NOT_FOUND && r.status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is served: {r:?}"
        );
        // No method but the documented ones.
        for other in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let served = API_ROUTES.iter().any(|(m, p)| *m == other && p == template);
            if !served {
                let r = c
                    .call(other, &path, Auth::Token(&c.operator), &[], Body::None)
                    .await;
                assert_eq!(
                    r.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{other} {path}: {r:?}"
                );
            }
        }
    }

    // The console's own metrics, served without signing in: the two orders
    // placed above (the route check's empty order was refused).
    let r = c.get("/metrics", Auth::None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(
        r.header("content-type")
            .starts_with("text/plain; version=0.0.4"),
        "{r:?}"
    );
    for line in [
        "orderflow_console_orders_placed_total 2",
        "# TYPE orderflow_console_requests_total counter",
    ] {
        assert!(r.text.lines().any(|l| l == line), "{line} in {}", r.text);
    }

    c.stop().await;
    stop_processor.cancel();
    within(30, processor)
        .await
        .unwrap()
        .expect("the processor stops");
}

on_both_brokers!(every_route_answers_as_documented);

/// The schema registry at `/registry`: registry clients send a bearer token or
/// basic auth (a token or the password as the secret); viewers read, operators
/// register; no sign-in, no registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_in_the_console_takes_tokens_and_roles() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let c = Console::without_kafka(sqlite_store(dir.path()).await).await;
    let basic = |name: &str, secret: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{name}:{secret}"))
        )
    };
    let call = |method: &'static str, path: &'static str, authorization: String| {
        let c = &c;
        async move {
            let body = r#"{"schema":"{\"type\":\"record\",\"name\":\"Order\",\"fields\":[{\"name\":\"orderId\",\"type\":\"string\"},{\"name\":\"product\",\"type\":\"string\"},{\"name\":\"price\",\"type\":\"float\"}]}"}"#;
            let body = if method == "POST" {
                Body::Raw("application/vnd.schemaregistry.v1+json", body)
            } else {
                Body::None
            };
            let r = c
                .call(
                    method,
                    path,
                    Auth::None,
                    &[("authorization", &authorization)],
                    body,
                )
                .await;
            let v: Value = serde_json::from_str(&r.text).unwrap_or(Value::Null);
            (r.status, v)
        }
    };
    let (op, op_pw) = OPERATOR;
    let (viewer, _) = VIEWER;

    let (status, v) = call("GET", "/registry/subjects", String::new()).await;
    assert_eq!(
        (status, v["error_code"].as_u64()),
        (StatusCode::UNAUTHORIZED, Some(401)),
        "{v}"
    );
    let (status, _) = call("GET", "/registry/subjects", basic(op, "wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, v) = call(
        "POST",
        "/registry/subjects/orders-value/versions",
        format!("Bearer {}", c.viewer),
    )
    .await;
    assert_eq!(
        (status, v["error_code"].as_u64()),
        (StatusCode::FORBIDDEN, Some(403)),
        "{v}"
    );

    let (status, v) = call(
        "POST",
        "/registry/subjects/orders-value/versions",
        basic(op, &c.operator),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let id = v["id"].as_u64().unwrap();
    let (status, v) = call(
        "POST",
        "/registry/subjects/orders-value/versions",
        basic(op, op_pw),
    )
    .await;
    assert_eq!(
        (status, v["id"].as_u64()),
        (StatusCode::OK, Some(id)),
        "{v}"
    );
    // Viewers read, and look up (a POST that changes nothing).
    let (status, v) = call("GET", "/registry/subjects", basic(viewer, &c.viewer)).await;
    assert_eq!(
        (status, v),
        (StatusCode::OK, serde_json::json!(["orders-value"]))
    );
    let (status, v) = call(
        "POST",
        "/registry/subjects/orders-value",
        format!("Bearer {}", c.viewer),
    )
    .await;
    assert_eq!(
        (status, v["version"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{v}"
    );

    // orderflow's own client, as produce and process use it: basic auth from
    // the URL's user info, under the console's path.
    let client = orderflow::registry::client::Client::new(&format!(
        "http://{op}:{}@{}/registry",
        c.operator, c.addr
    ))
    .unwrap();
    let text = client.schema(u32::try_from(id).unwrap()).await.unwrap();
    assert!(text.contains("orderId"), "{text}");
    c.stop().await;
}
