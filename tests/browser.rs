//! The console in a real browser (Debian's headless Chromium through
//! chromedriver), on both brokers: sign in, place an order and watch it get
//! processed without a reload; a failing order shows under its reason on the
//! DLQ page, and a dry run and a replay from the page get it processed; a
//! viewer sees no replay button and the API refuses them. Screenshots of each
//! page go to target/browser-screenshots/ (look at them; not committed).

mod common;

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use orderflow::{
    dlq::redrive::Topics,
    order::Order,
    processor::{Event, Failure, Handler, Processor},
    store::Store,
    web::{
        self, App, Role, Settings, Users,
        auth::{UserEntry, UsersFile, hash_password},
    },
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Fails orders for the product "broken" while `broken` is set: a fault that an
/// operator fixes, then replays. Orders for "pizza" fail as transient (retried)
/// while `busy` is set, so the test sees an order's page waiting before it is
/// processed.
struct Flaky {
    broken: Arc<AtomicBool>,
    busy: Arc<AtomicBool>,
}

impl Handler for Flaky {
    fn handle(&mut self, order: &Order, _attempt: u32) -> Result<(), Failure> {
        if order.product == "broken" && self.broken.load(Ordering::SeqCst) {
            return Err(Failure::Permanent("the kitchen is out of broken".into()));
        }
        if order.product == "pizza" && self.busy.load(Ordering::SeqCst) {
            return Err(Failure::Transient("the oven is busy".into()));
        }
        Ok(())
    }
}

struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn chromedriver() -> Driver {
    assert!(
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists(),
        "the browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    );
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

fn shots_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn shot(c: &Client, broker: Broker, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(shots_dir().join(format!("{broker:?}-{name}.png")), png).unwrap();
}

/// Waits until the element's text contains `want`; the text it had last, on failure.
async fn wait_text(c: &Client, css: &str, want: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(el) = c.find(Locator::Css(css)).await
            && let Ok(t) = el.text().await
        {
            if t.contains(want) {
                return t;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{css} did not show {want:?} within {secs} s; it showed {last:?}");
}

/// Waits until the element's whole text is `want`.
async fn wait_exact(c: &Client, css: &str, want: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(el) = c.find(Locator::Css(css)).await
            && let Ok(t) = el.text().await
        {
            if t.trim() == want {
                return;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{css} did not show exactly {want:?} within {secs} s; it showed {last:?}");
}

async fn fill(c: &Client, css: &str, value: &str) {
    let el = c.find(Locator::Css(css)).await.expect(css);
    el.clear().await.unwrap();
    el.send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .expect(css)
        .click()
        .await
        .unwrap();
}

async fn sign_in(c: &Client, base: &str, name: &str, password: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    assert!(
        c.current_url().await.unwrap().path().starts_with("/login"),
        "a signed-out visit goes to the sign-in page"
    );
    fill(c, "#name", name).await;
    fill(c, "#password", password).await;
    click(c, "#sign-in").await;
    wait_text(c, "h1", "Dashboard", 10).await;
}

/// Places an order through the form and returns its id, from the page it lands on.
async fn place(c: &Client, base: &str, product: &str) -> String {
    c.goto(&format!("{base}/place")).await.unwrap();
    fill(c, "#user", "browser").await;
    fill(c, "#product", product).await;
    fill(c, "#quantity", "2").await;
    fill(c, "#price", "12.5").await;
    click(c, "#place").await;
    wait_text(c, "h1", "Order", 10).await;
    let url = c.current_url().await.unwrap();
    url.path()
        .strip_prefix("/orders/")
        .expect("on an order's page")
        .to_string()
}

/// Marks the page; the mark survives only as long as the page is not reloaded.
async fn mark(c: &Client) {
    c.execute("window.__notReloaded = true;", vec![])
        .await
        .unwrap();
}

async fn still_marked(c: &Client) -> bool {
    c.execute("return window.__notReloaded === true;", vec![])
        .await
        .unwrap()
        .as_bool()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_browser() {
    run_on(Broker::Embedded, browser_scenario).await;
    run_on(Broker::Kafka, browser_scenario).await;
}

async fn browser_scenario(broker: Broker) {
    let env = TestEnv::start(broker, 1).await;
    let parking = format!("{}_parked", env.topic);
    env.kafka.create_topics(&[&parking], 1, 1).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::connect(&format!(
            "sqlite://{}",
            dir.path().join("orders.db").display()
        ))
        .await
        .unwrap(),
    );

    // The processor, failing "broken" orders until the fault is fixed.
    let broken = Arc::new(AtomicBool::new(true));
    let busy = Arc::new(AtomicBool::new(true));
    let stop = CancellationToken::new();
    let mut config = env.processor_config(50);
    config.max_attempts = 1_000;
    let processor = Processor::new(
        config,
        Box::new(Flaky {
            broken: broken.clone(),
            busy: busy.clone(),
        }),
        Box::new(|_: &Event<'_>| {}),
    )
    .with_store(store.clone());
    let processing = {
        let stop = stop.clone();
        tokio::spawn(async move { processor.run(stop, CancellationToken::new()).await })
    };

    // The console, with an operator and a viewer.
    let users_path = dir.path().join("users.toml");
    let mut users = UsersFile::default();
    for (name, role, pw) in [
        ("olga", Role::Operator, "operator-pass"),
        ("vera", Role::Viewer, "viewer-pass"),
    ] {
        users.upsert(UserEntry {
            name: name.into(),
            role,
            password_hash: hash_password(pw).unwrap(),
            token_sha256: Vec::new(),
        });
    }
    users.write(&users_path).unwrap();
    let app = App::new(
        store.clone(),
        Settings {
            kafka: env.kafka.clone(),
            topics: Topics {
                dlq: env.dlq.clone(),
                orders: env.topic.clone(),
                parking,
            },
            group: env.group.clone(),
            users: Users::load(&users_path, None).unwrap(),
            session_ttl: Duration::from_secs(3600),
        },
        stop.clone(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let serving = tokio::spawn(web::run(listener, app));

    let driver = chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;

    c.goto(&format!("{base}/login")).await.unwrap();
    shot(&c, broker, "login").await;
    sign_in(&c, &base, "olga", "operator-pass").await;
    shot(&c, broker, "dashboard-empty").await;
    c.goto(&format!("{base}/place")).await.unwrap();
    wait_text(&c, "h1", "Place an order", 10).await;
    shot(&c, broker, "place").await;

    // An order placed on the page is followed live until it is processed: the
    // page waits while the oven is busy, then shows the order without a reload.
    let good = place(&c, &base, "pizza").await;
    mark(&c).await;
    wait_text(&c, "#order-waiting", "Waiting for the processor", 10).await;
    shot(&c, broker, "order-waiting").await;
    busy.store(false, Ordering::SeqCst);
    wait_text(&c, "#order-status", "processed", 60).await;
    assert!(
        still_marked(&c).await,
        "the order page updated without a reload"
    );
    let page = c.source().await.unwrap();
    assert!(page.contains("pizza") && page.contains(&good));
    assert!(
        page.contains("the oven is busy"),
        "the timeline shows the failed attempts"
    );
    shot(&c, broker, "order-processed").await;

    // A failing order is dead-lettered, live too.
    let bad = place(&c, &base, "broken").await;
    mark(&c).await;
    wait_text(&c, "#order-status", "dead-lettered", 60).await;
    assert!(still_marked(&c).await);
    wait_text(&c, "#order", "the kitchen is out of broken", 5).await;
    shot(&c, broker, "order-dead-lettered").await;

    // The orders page lists both; a search by product finds one.
    c.goto(&format!("{base}/orders")).await.unwrap();
    wait_text(&c, "table.orders", &bad, 10).await;
    shot(&c, broker, "orders").await;
    c.goto(&format!("{base}/orders?product=pizza"))
        .await
        .unwrap();
    let found = wait_text(&c, "table.orders", &good, 10).await;
    assert!(!found.contains(&bad), "the search is by product: {found}");

    // The dashboard counts both.
    c.goto(&format!("{base}/")).await.unwrap();
    wait_exact(&c, "#processed-total", "1", 10).await;
    wait_exact(&c, "#dead-total", "1", 10).await;
    // An order placed elsewhere (the API, from this page's origin) shows up
    // on the open dashboard without a reload.
    mark(&c).await;
    let placed = c
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
            fetch("/api/v1/orders", {method: "POST", headers: {"content-type": "application/json"},
              body: JSON.stringify({user: "api", product: "pizza", quantity: 1, price: 9.5})})
              .then(async r => done([r.status, await r.text()]));"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(placed[0], 201, "{placed}");
    wait_exact(&c, "#processed-total", "2", 30).await;
    assert!(
        still_marked(&c).await,
        "the dashboard updated without a reload"
    );
    shot(&c, broker, "dashboard").await;

    // The DLQ page groups it under its reason; a dry run counts it.
    c.goto(&format!("{base}/dlq")).await.unwrap();
    wait_text(&c, "#reasons", "the kitchen is out of broken", 10).await;
    wait_exact(&c, "#reasons tbody tr td.num", "1", 10).await;
    c.find(Locator::LinkText("the kitchen is out of broken"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "#letters", &bad, 10).await;
    click(&c, "#dry-run").await;
    wait_text(&c, "#preview", "would send 1 dead letter", 10).await;
    shot(&c, broker, "dlq-dry-run").await;
    assert!(
        store.show(&bad).await.unwrap().len() == 1,
        "a dry run sends nothing"
    );

    // The fault is fixed; the replay from the page gets the order processed.
    broken.store(false, Ordering::SeqCst);
    click(&c, "#replay").await;
    wait_text(&c, "#job-state", "completed", 60).await;
    wait_text(&c, "#job-sent", "1", 5).await;
    assert!(
        c.find(Locator::Css("#cancel")).await.is_err(),
        "a finished job has no cancel button"
    );
    wait_text(&c, "#audit", "replay.start", 5).await;
    shot(&c, broker, "replay-job").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !store
        .show(&bad)
        .await
        .unwrap()
        .iter()
        .any(|h| h.order.status == "processed")
    {
        assert!(
            Instant::now() < deadline,
            "the replayed order was not processed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.goto(&format!("{base}/orders/{bad}")).await.unwrap();
    let detail = wait_text(&c, "#order", "processed", 10).await;
    assert!(
        detail.contains("dead-lettered"),
        "both outcomes show: {detail}"
    );
    shot(&c, broker, "order-replayed").await;
    c.goto(&format!("{base}/dlq")).await.unwrap();
    wait_text(&c, "#jobs", "completed", 10).await;
    wait_text(&c, "#audit", "replay.start", 10).await;
    shot(&c, broker, "dlq-after-replay").await;

    // A viewer sees no replay button, and the API refuses them the replay.
    click(&c, "header form button").await;
    sign_in(&c, &base, "vera", "viewer-pass").await;
    c.goto(&format!("{base}/dlq")).await.unwrap();
    wait_text(&c, "h1", "Dead letters", 10).await;
    assert!(
        c.find(Locator::Css("#replay")).await.is_err(),
        "no replay button for a viewer"
    );
    assert!(c.find(Locator::Css("#dry-run")).await.is_ok());
    shot(&c, broker, "dlq-viewer").await;
    let refused = c
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
            fetch("/api/v1/dlq/replays", {method: "POST", headers: {"content-type": "application/json"}, body: "{}"})
              .then(async r => done([r.status, await r.text()]));"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(refused[0], 403, "{refused}");
    assert!(refused[1].as_str().unwrap().contains("only operators"));
    c.goto(&format!("{base}/place")).await.unwrap();
    wait_text(&c, "main", "only operators may place orders", 10).await;

    c.close().await.unwrap();
    stop.cancel();
    within(30, serving).await.unwrap().unwrap();
    within(30, processing).await.unwrap().unwrap();
}
