//! PostgreSQL, for several processors and for scale. Reconnects after the server
//! goes away.

use tokio::sync::Mutex;
use tokio_postgres::{Client, GenericClient, NoTls, types::ToSql, types::Type};

use super::{
    Applied, Batch, Error, schema,
    sql::{self, Conn, P, V},
};

pub struct PgStore {
    url: String,
    client: Mutex<Option<Client>>,
}

pub(super) struct Pg<'a, C: GenericClient>(&'a C);

fn params<'a>(ps: &'a [P<'a>]) -> Vec<Box<dyn ToSql + Sync + Send + 'a>> {
    ps.iter()
        .map(|p| -> Box<dyn ToSql + Sync + Send> {
            match *p {
                P::I(i) => Box::new(i),
                P::OI(i) => Box::new(i),
                P::F(f) => Box::new(f),
                P::T(s) => Box::new(s),
                P::OT(s) => Box::new(s),
            }
        })
        .collect()
}

impl<C: GenericClient + Sync> Conn for Pg<'_, C> {
    const SEQ_PK: &'static str = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY";
    const EXPLAIN: &'static str = "EXPLAIN";
    // 131,072 ids take about 6.5 MB of index pages, well inside the server's
    // shared buffers (128 MB by default), and ten million orders take 77 probes:
    // with SQLite's 16,384 a lookup took 23 ms there.
    const ID_BUCKET_BITS: u32 = 17;
    const INSTR: &'static str = "strpos";

    async fn exec(&mut self, sql: &str, ps: &[P<'_>]) -> Result<u64, Error> {
        let boxed = params(ps);
        let refs: Vec<&(dyn ToSql + Sync)> = boxed
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        Ok(self.0.execute(sql, &refs).await?)
    }

    async fn rows(&mut self, sql: &str, ps: &[P<'_>]) -> Result<Vec<Vec<V>>, Error> {
        let boxed = params(ps);
        let refs: Vec<&(dyn ToSql + Sync)> = boxed
            .iter()
            .map(|b| b.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = self.0.query(sql, &refs).await?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        let t = row.columns()[i].type_();
                        Ok(if *t == Type::INT8 {
                            row.try_get::<_, Option<i64>>(i)?.map_or(V::Null, V::I)
                        } else if *t == Type::FLOAT8 {
                            row.try_get::<_, Option<f64>>(i)?.map_or(V::Null, V::F)
                        } else {
                            row.try_get::<_, Option<String>>(i)?.map_or(V::Null, V::T)
                        })
                    })
                    .collect()
            })
            .collect()
    }
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let store = PgStore {
            url: url.to_string(),
            client: Mutex::new(None),
        };
        let mut guard = store.client().await?;
        let client = guard.as_mut().expect("connected");
        let tx = client.transaction().await?;
        // Processors starting together must not both run a migration.
        tx.execute("SELECT pg_advisory_xact_lock(7243001)", &[])
            .await?;
        let mut t = Pg(&tx);
        let done = schema::applied_versions(&mut t).await?;
        for (v, m) in schema::MIGRATIONS {
            if !done.contains(v) {
                schema::migrate(&mut t, *v, m).await?;
            }
        }
        tx.commit().await?;
        drop(guard);
        Ok(store)
    }

    /// The client, connecting (again) if there is none or the last one broke.
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, Error> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "PostgreSQL connection ended");
                }
            });
            *guard = Some(client);
        }
        Ok(guard)
    }

    pub async fn apply(&self, batch: &Batch) -> Result<Applied, Error> {
        let mut guard = self.client().await?;
        let client = guard.as_mut().expect("connected");
        let tx = client.transaction().await?;
        if let Some(applied) = sql::apply(&mut Pg(&tx), batch).await? {
            tx.commit().await?;
            return Ok(applied);
        }
        tx.rollback().await?;
        let tx = client.transaction().await?;
        let applied = sql::apply_one_by_one(&mut Pg(&tx), batch).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Runs statements in one transaction (connecting again if the connection broke).
    pub(super) async fn write<T>(
        &self,
        f: impl AsyncFnOnce(&mut Pg<'_, tokio_postgres::Transaction<'_>>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut guard = self.client().await?;
        let tx = guard.as_mut().expect("connected").transaction().await?;
        let out = f(&mut Pg(&tx)).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Runs a read on the connection (connecting again if it broke).
    pub(super) async fn read<T>(
        &self,
        f: impl AsyncFnOnce(&mut Pg<'_, Client>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let guard = self.client().await?;
        f(&mut Pg(guard.as_ref().expect("connected"))).await
    }
}
