//! The schema's versions, applied in order, once each, when a store is opened.
//! Why version 5 looks as it does: docs/store.md.

use super::{
    Error,
    sql::{Conn, P},
};

/// Schema versions, applied in order, each once.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE orders (
        order_id TEXT PRIMARY KEY,
        user_name TEXT NOT NULL,
        product TEXT NOT NULL,
        quantity BIGINT NOT NULL,
        price DOUBLE PRECISION,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        last_error TEXT,
        source_topic TEXT NOT NULL,
        source_partition BIGINT NOT NULL,
        source_offset BIGINT NOT NULL,
        produced_ms BIGINT,
        processed_ms BIGINT NOT NULL
    );
    CREATE INDEX orders_status ON orders (status);
    CREATE INDEX orders_product ON orders (product);
    CREATE TABLE order_events (
        order_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL,
        PRIMARY KEY (order_id, seq)
    );
    CREATE TABLE aggregates (
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        orders BIGINT NOT NULL,
        units BIGINT NOT NULL,
        priced BIGINT NOT NULL,
        price_sum DOUBLE PRECISION NOT NULL,
        price_min DOUBLE PRECISION,
        price_max DOUBLE PRECISION,
        PRIMARY KEY (scope, name)
    );
    CREATE TABLE consumer_offsets (
        group_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition_id BIGINT NOT NULL,
        next_offset BIGINT NOT NULL,
        PRIMARY KEY (group_id, topic, partition_id)
    )",
    ),
    // Receipt becomes a column: one row per order instead of three in the
    // common case. Older orders keep their stored receipt and outcome events.
    (2, "ALTER TABLE orders ADD COLUMN received_ms BIGINT"),
    // `orders list` filters with `$1 = '' OR status = $1`, which no index on
    // status or product serves, yet each cost every insert a random B-tree write.
    // Lists are newest first: an index on processed_ms (appended in time order,
    // so cheap to keep) serves them.
    (
        3,
        "DROP INDEX orders_status;
        DROP INDEX orders_product;
        CREATE INDEX orders_processed ON orders (processed_ms)",
    ),
    // An order is applied once per id. Another message (another position in a
    // topic) with an id stored before is a different order reusing the id: it
    // is kept here, once per message, and `orders show` lists it.
    (
        4,
        "CREATE TABLE order_conflicts (
        source_topic TEXT NOT NULL,
        source_partition BIGINT NOT NULL,
        source_offset BIGINT NOT NULL,
        order_id TEXT NOT NULL,
        user_name TEXT NOT NULL,
        product TEXT NOT NULL,
        quantity BIGINT NOT NULL,
        price DOUBLE PRECISION,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        last_error TEXT,
        produced_ms BIGINT,
        processed_ms BIGINT NOT NULL,
        received_ms BIGINT,
        PRIMARY KEY (source_topic, source_partition, source_offset)
    );
    CREATE INDEX order_conflicts_id ON order_conflicts (order_id)",
    ),
    // A flat cost per order however large the history (docs/store.md):
    // - rows keyed by an append-only sequence, and a message is applied once per
    //   position in its topic: redeliveries find their position taken, and an
    //   order reusing an id from another message is one more order (the orders
    //   kept apart by version 4 become orders);
    // - lookups by id through an index on (sequence bucket, id): random ids land
    //   only in the newest bucket's pages, which stay in the cache, and a lookup
    //   probes each bucket;
    // - timelines keyed by the order's sequence;
    // - aggregates in one row per partition (`shard`), summed on read, so that
    //   processors sharing a database do not all update one row;
    // - lists newest first by time, product, user and failure, each an index
    //   that grows at its end (partial indexes for failures).
    (
        5,
        "CREATE TABLE orders_v5 (
        seq {SEQ_PK},
        order_id TEXT NOT NULL,
        user_name TEXT NOT NULL,
        product TEXT NOT NULL,
        quantity BIGINT NOT NULL,
        price DOUBLE PRECISION,
        status TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        last_error TEXT,
        source_topic TEXT NOT NULL,
        source_partition BIGINT NOT NULL,
        source_offset BIGINT NOT NULL,
        produced_ms BIGINT,
        received_ms BIGINT,
        processed_ms BIGINT NOT NULL
    );
    INSERT INTO orders_v5 (order_id, user_name, product, quantity, price, status, attempts,
        last_error, source_topic, source_partition, source_offset, produced_ms, received_ms,
        processed_ms)
    SELECT * FROM (
        SELECT order_id, user_name, product, quantity, price, status, attempts, last_error,
            source_topic, source_partition, source_offset, produced_ms, received_ms, processed_ms
        FROM orders
        UNION ALL
        SELECT order_id, user_name, product, quantity, price, status, attempts, last_error,
            source_topic, source_partition, source_offset, produced_ms, received_ms, processed_ms
        FROM order_conflicts
    ) AS o ORDER BY processed_ms, source_topic, source_partition, source_offset;
    CREATE UNIQUE INDEX orders_by_source
        ON orders_v5 (source_topic, source_partition, source_offset, order_id);
    CREATE INDEX orders_by_id ON orders_v5 ((seq >> {ID_BUCKET_BITS}), order_id);
    CREATE INDEX orders_by_time ON orders_v5 (processed_ms, seq);
    CREATE INDEX orders_by_product ON orders_v5 (product, processed_ms, seq);
    CREATE INDEX orders_by_user ON orders_v5 (user_name, processed_ms, seq);
    CREATE INDEX orders_dlq_by_time ON orders_v5 (processed_ms, seq) WHERE status = 'dlq';
    CREATE INDEX orders_dlq_by_reason ON orders_v5 (last_error, processed_ms)
        WHERE status = 'dlq';
    CREATE TABLE order_events_v5 (
        order_seq BIGINT NOT NULL,
        n BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL,
        PRIMARY KEY (order_seq, n)
    );
    INSERT INTO order_events_v5 (order_seq, n, at_ms, kind, detail)
    SELECT v.seq, e.seq, e.at_ms, e.kind, e.detail
    FROM order_events e
    JOIN orders o ON o.order_id = e.order_id
    JOIN orders_v5 v ON v.source_topic = o.source_topic
        AND v.source_partition = o.source_partition
        AND v.source_offset = o.source_offset
        AND v.order_id = o.order_id;
    CREATE TABLE aggregates_v5 (
        scope TEXT NOT NULL,
        name TEXT NOT NULL,
        shard BIGINT NOT NULL,
        orders BIGINT NOT NULL,
        units BIGINT NOT NULL,
        priced BIGINT NOT NULL,
        price_sum DOUBLE PRECISION NOT NULL,
        price_min DOUBLE PRECISION,
        price_max DOUBLE PRECISION,
        PRIMARY KEY (scope, name, shard)
    );
    INSERT INTO aggregates_v5
    SELECT scope, name, -1, orders, units, priced, price_sum, price_min, price_max
    FROM aggregates;
    INSERT INTO aggregates_v5
    SELECT 'total', '', -2, count(*), sum(quantity), count(price), coalesce(sum(price), 0),
        min(price), max(price)
    FROM order_conflicts WHERE status = 'processed' GROUP BY status;
    INSERT INTO aggregates_v5
    SELECT 'product', product, -2, count(*), sum(quantity), count(price),
        coalesce(sum(price), 0), min(price), max(price)
    FROM order_conflicts WHERE status = 'processed' GROUP BY product;
    DROP TABLE order_conflicts;
    DROP TABLE order_events;
    DROP TABLE orders;
    DROP TABLE aggregates;
    ALTER TABLE orders_v5 RENAME TO orders;
    ALTER TABLE order_events_v5 RENAME TO order_events;
    ALTER TABLE aggregates_v5 RENAME TO aggregates",
    ),
    // Dead letters, for triage and replay (docs/redrive.md). Records of the DLQ
    // topic that came before this version are read from the topic (`dlq list`).
    (
        6,
        "CREATE TABLE dead_letters (
        id {SEQ_PK},
        dlq_topic TEXT NOT NULL,
        dlq_partition BIGINT NOT NULL,
        dlq_offset BIGINT NOT NULL,
        order_id TEXT,
        user_name TEXT,
        product TEXT,
        reason TEXT NOT NULL,
        reason_key TEXT NOT NULL,
        kind TEXT,
        attempts BIGINT,
        source_topic TEXT,
        source_partition BIGINT,
        source_offset BIGINT,
        source_ms BIGINT,
        first_failure_ms BIGINT,
        last_failure_ms BIGINT,
        dead_ms BIGINT NOT NULL,
        replays BIGINT NOT NULL,
        msg_key TEXT,
        msg_value TEXT,
        state TEXT NOT NULL,
        job_id BIGINT,
        moved_ms BIGINT,
        moved_to TEXT
    );
    CREATE UNIQUE INDEX dead_letters_by_record ON dead_letters (dlq_topic, dlq_partition, dlq_offset);
    CREATE UNIQUE INDEX dead_letters_by_source
        ON dead_letters (source_topic, source_partition, source_offset)
        WHERE source_topic IS NOT NULL;
    CREATE INDEX dead_letters_by_state ON dead_letters (state, id);
    CREATE INDEX dead_letters_by_reason ON dead_letters (reason_key, dead_ms);
    CREATE INDEX dead_letters_by_order ON dead_letters (order_id);
    CREATE INDEX dead_letters_by_job ON dead_letters (job_id);
    CREATE TABLE replay_jobs (
        id {SEQ_PK},
        principal TEXT NOT NULL,
        owner TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        selection TEXT NOT NULL,
        target TEXT,
        rate DOUBLE PRECISION,
        max_replays BIGINT NOT NULL,
        state TEXT NOT NULL,
        selected BIGINT NOT NULL DEFAULT 0,
        sent BIGINT NOT NULL DEFAULT 0,
        skipped BIGINT NOT NULL DEFAULT 0,
        failed BIGINT NOT NULL DEFAULT 0,
        parked BIGINT NOT NULL DEFAULT 0,
        cancel_requested BIGINT NOT NULL DEFAULT 0,
        checkpoint TEXT NOT NULL,
        error TEXT
    );
    CREATE TABLE replay_items (
        job_id BIGINT NOT NULL,
        dead_letter_id BIGINT NOT NULL,
        state TEXT NOT NULL,
        detail TEXT,
        PRIMARY KEY (job_id, dead_letter_id)
    )",
    ),
    // The web console's audit log.
    (
        7,
        "CREATE TABLE audit_log (
        id {SEQ_PK},
        at_ms BIGINT NOT NULL,
        principal TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_log_by_target ON audit_log (target, id)",
    ),
    // The schema registry: one global id per distinct schema (by the SHA-256 of
    // its canonical form), subjects' versions, and compatibility and mode
    // settings (subject '' is the registry's own).
    (
        8,
        "CREATE TABLE registry_schemas (
        id {SEQ_PK},
        fingerprint TEXT NOT NULL,
        schema_type TEXT NOT NULL,
        schema TEXT NOT NULL
    );
    CREATE UNIQUE INDEX registry_schemas_by_fingerprint ON registry_schemas (fingerprint);
    CREATE TABLE registry_versions (
        subject TEXT NOT NULL,
        version BIGINT NOT NULL,
        schema_id BIGINT NOT NULL,
        deleted BIGINT NOT NULL,
        PRIMARY KEY (subject, version)
    );
    CREATE UNIQUE INDEX registry_versions_live ON registry_versions (subject, schema_id)
        WHERE deleted = 0;
    CREATE INDEX registry_versions_by_schema ON registry_versions (schema_id);
    CREATE TABLE registry_config (
        subject TEXT PRIMARY KEY,
        compatibility TEXT,
        mode TEXT
    )",
    ),
];

pub const CREATE_MIGRATIONS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS orderflow_migrations (version BIGINT PRIMARY KEY)";

/// Versions already applied.
pub async fn applied_versions(c: &mut impl Conn) -> Result<Vec<i64>, Error> {
    c.exec(CREATE_MIGRATIONS_TABLE, &[]).await?;
    c.rows("SELECT version FROM orderflow_migrations", &[])
        .await?
        .iter()
        .map(|r| r[0].i())
        .collect()
}

/// Runs one migration's statements and records it (inside the caller's transaction).
pub async fn migrate<C: Conn>(c: &mut C, version: i64, sql: &str) -> Result<(), Error> {
    let sql = sql
        .replace("{SEQ_PK}", C::SEQ_PK)
        .replace("{ID_BUCKET_BITS}", &C::ID_BUCKET_BITS.to_string());
    for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        c.exec(stmt, &[]).await?;
    }
    c.exec(
        "INSERT INTO orderflow_migrations (version) VALUES ($1)",
        &[P::I(version)],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_index_buckets_as_lookups_probe_it() {
        let (_, v5) = MIGRATIONS.iter().find(|(v, _)| *v == 5).unwrap();
        assert!(v5.contains("((seq >> {ID_BUCKET_BITS}), order_id)"));
        assert!(crate::store::read::by_id_sql(14).contains("(orders.seq >> 14) = buckets.b"));
    }
}
