//! SQLite through libsql (the engine the embedded broker links too, so one SQLite
//! build serves both).

use libsql::{Connection, TransactionBehavior, Value};
use tokio::sync::Mutex;

use super::{
    Applied, Batch, Error, schema,
    sql::{self, Conn, P, V},
};

pub struct SqliteStore {
    path: String,
    // One writer at a time; SQLite serialises writers anyway.
    conn: Mutex<Cached>,
    _db: libsql::Database,
}

/// The connection and its prepared writes: parsing each statement again for every
/// order was most of a batch's cost. They are a handful, so a scan (which compares
/// lengths first) finds one for less than hashing the SQL text on every call did.
struct Cached {
    conn: Connection,
    statements: Vec<(String, libsql::Statement)>,
}

pub(super) struct Lite<'a> {
    conn: &'a Connection,
    path: &'a str,
    /// Where writes keep their prepared statements, if anywhere.
    statements: Option<&'a mut Vec<(String, libsql::Statement)>>,
}

fn params(ps: &[P<'_>]) -> Vec<Value> {
    ps.iter()
        .map(|p| match *p {
            P::I(i) => Value::Integer(i),
            P::OI(i) => i.map_or(Value::Null, Value::Integer),
            P::F(f) => f.map_or(Value::Null, Value::Real),
            P::T(s) => Value::Text(s.to_string()),
            P::OT(s) => s.map_or(Value::Null, |s| Value::Text(s.to_string())),
        })
        .collect()
}

/// Maps a libsql error to ours, naming the database file.
fn sqlite_err(path: &str) -> impl Fn(libsql::Error) -> Error + Copy + '_ {
    move |source| Error::Sqlite {
        path: path.to_string(),
        source,
    }
}

impl Conn for Lite<'_> {
    // AUTOINCREMENT: a key is never used twice, even after pruning the newest.
    const SEQ_PK: &'static str = "INTEGER PRIMARY KEY AUTOINCREMENT";
    const EXPLAIN: &'static str = "EXPLAIN QUERY PLAN";
    // 16,384 ids of 36 characters take about 0.8 MB of index pages, which stay in
    // SQLite's 2 MB page cache beside the other indexes' last pages. 32,768 cost
    // random ids 40% more per order by a million orders; 8,192 saved little more
    // and doubled the probes: 611 at ten million orders.
    const ID_BUCKET_BITS: u32 = 14;
    const INSTR: &'static str = "instr";

    async fn exec(&mut self, sql: &str, ps: &[P<'_>]) -> Result<u64, Error> {
        let err = sqlite_err(self.path);
        let Some(statements) = self.statements.as_deref_mut() else {
            return self
                .conn
                .execute(&sql.replace('$', "?"), params(ps))
                .await
                .map_err(err);
        };
        let i = match statements.iter().position(|(s, _)| s == sql) {
            Some(i) => i,
            None => {
                let stmt = self
                    .conn
                    .prepare(&sql.replace('$', "?"))
                    .await
                    .map_err(err)?;
                statements.push((sql.to_string(), stmt));
                statements.len() - 1
            }
        };
        let stmt = &statements[i].1;
        let result = stmt.execute(params(ps)).await;
        stmt.reset();
        result.map(|n| n as u64).map_err(err)
    }

    async fn rows(&mut self, sql: &str, ps: &[P<'_>]) -> Result<Vec<Vec<V>>, Error> {
        let err = sqlite_err(self.path);
        let mut rows = self
            .conn
            .query(&sql.replace('$', "?"), params(ps))
            .await
            .map_err(err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().await.map_err(err)? {
            let mut r = Vec::with_capacity(row.column_count() as usize);
            for i in 0..row.column_count() {
                r.push(match row.get_value(i).map_err(err)? {
                    Value::Null => V::Null,
                    Value::Integer(i) => V::I(i),
                    Value::Real(f) => V::F(f),
                    Value::Text(s) => V::T(s),
                    Value::Blob(_) => return Err(Error::Corrupt("unexpected blob".into())),
                });
            }
            out.push(r);
        }
        Ok(out)
    }
}

impl SqliteStore {
    pub async fn open(path: &str) -> Result<Self, Error> {
        let err = sqlite_err(path);
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|source| Error::Dir {
                path: path.to_string(),
                source,
            })?;
        }
        // Multi-thread mode for this connection (NOMUTEX): libsql's SQLite is built
        // serialized, so every call, each bound value included, took the
        // connection's mutex. Our own lock (`conn` below) already keeps the
        // connection to one task at a time. Writes: 5% faster.
        let flags = libsql::OpenFlags::default().bits() | libsql::ffi::SQLITE_OPEN_NOMUTEX;
        let db = libsql::Builder::new_local(path)
            .flags(libsql::OpenFlags::from_bits_retain(flags))
            .build()
            .await
            .map_err(err)?;
        let conn = db.connect().map_err(err)?;
        let mut lite = Lite {
            conn: &conn,
            path,
            statements: None,
        };
        // WAL: readers do not block the writer, and a killed process loses no
        // committed transaction. busy_timeout: processes sharing the file wait
        // for each other instead of failing.
        lite.rows("PRAGMA journal_mode = WAL", &[]).await?;
        lite.rows("PRAGMA busy_timeout = 10000", &[]).await?;
        lite.exec("PRAGMA synchronous = NORMAL", &[]).await?;
        // The page cache stays at SQLite's default (2 MB). Ids in creation order
        // (UUID v7, as `orderflow produce` makes them) touch only the last pages
        // of the id index; random ids touch pages all over it, and 8 MiB saved
        // them CPU (1.4-1.8 s instead of 2.0 s per 200,000 orders) but cost every
        // processor 7 MB of memory. Fewer, larger checkpoints write hot pages
        // (aggregates, index roots) once.
        lite.rows("PRAGMA wal_autocheckpoint = 10000", &[]).await?;
        // A statement that inserts many rows under unique indexes keeps a
        // statement journal (to undo itself alone), by default in a temporary
        // file: written page by page, it was nine in ten of the store's writes
        // (1.01 M pwrite calls for 300,000 random ids, 102,000 in memory) and a
        // third of its CPU. In memory it holds one statement's pages.
        lite.exec("PRAGMA temp_store = MEMORY", &[]).await?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .await
            .map_err(err)?;
        let mut t = Lite {
            conn: &tx,
            path,
            statements: None,
        };
        let done = schema::applied_versions(&mut t).await?;
        for (v, m) in schema::MIGRATIONS {
            if !done.contains(v) {
                schema::migrate(&mut t, *v, m).await?;
            }
        }
        tx.commit().await.map_err(err)?;
        Ok(SqliteStore {
            path: path.to_string(),
            conn: Mutex::new(Cached {
                conn,
                statements: Vec::new(),
            }),
            _db: db,
        })
    }

    pub async fn apply(&self, batch: &Batch) -> Result<Applied, Error> {
        let mut cached = self.conn.lock().await;
        let Cached { conn, statements } = &mut *cached;
        let (path, err) = (self.path.as_str(), sqlite_err(&self.path));
        let begin = || conn.transaction_with_behavior(TransactionBehavior::Immediate);
        let tx = begin().await.map_err(err)?;
        let mut lite = Lite {
            conn: &tx,
            path,
            statements: Some(statements),
        };
        if let Some(applied) = sql::apply(&mut lite, batch).await? {
            tx.commit().await.map_err(err)?;
            return Ok(applied);
        }
        tx.rollback().await.map_err(err)?;
        let tx = begin().await.map_err(err)?;
        let applied = sql::apply_one_by_one(
            &mut Lite {
                conn: &tx,
                path,
                statements: Some(statements),
            },
            batch,
        )
        .await?;
        tx.commit().await.map_err(err)?;
        Ok(applied)
    }

    /// Runs statements in one transaction, between the processor's writes.
    pub(super) async fn write<T>(
        &self,
        f: impl AsyncFnOnce(&mut Lite<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let c = self.conn.lock().await;
        let err = sqlite_err(&self.path);
        let tx = c
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .await
            .map_err(err)?;
        let out = f(&mut Lite {
            conn: &tx,
            path: &self.path,
            statements: None,
        })
        .await?;
        tx.commit().await.map_err(err)?;
        Ok(out)
    }

    /// Runs a read on the connection, between the processor's writes.
    pub(super) async fn read<T>(
        &self,
        f: impl AsyncFnOnce(&mut Lite<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let c = self.conn.lock().await;
        f(&mut Lite {
            conn: &c.conn,
            path: &self.path,
            statements: None,
        })
        .await
    }
}
