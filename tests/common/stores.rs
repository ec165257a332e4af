//! Stores for tests: a fresh SQLite file, and a fresh PostgreSQL database when
//! ORDERFLOW_TEST_POSTGRES_URL is set.

use std::path::Path;

/// Store URLs to run a test against: a fresh SQLite file, and a fresh PostgreSQL
/// database when configured.
pub async fn store_urls(dir: &Path) -> Vec<String> {
    let mut urls = vec![format!("sqlite://{}", dir.join("orders.db").display())];
    if let Ok(base) = std::env::var("ORDERFLOW_TEST_POSTGRES_URL") {
        let name = format!("orderflow_test_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .expect("ORDERFLOW_TEST_POSTGRES_URL reachable");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("test database created");
        let mut url = url::Url::parse(&base).unwrap();
        url.set_path(&name);
        urls.push(url.to_string());
    }
    urls
}
