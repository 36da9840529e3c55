//! On PostgreSQL, store-svc refreshes the planner's statistics when it
//! starts. PostgreSQL forgets its activity counters after an immediate
//! shutdown, so autovacuum may not analyze tables that filled before it for
//! a long while, and a lease planned as if the versions were few scans and
//! sorts all of them. Tables still (nearly) empty are left alone.

use edge_testkit::{Backend, TestDatabase};
use sqlx::Connection as _;

mod common;

use common::*;

/// The planner's row estimate of `table` (-1: never analyzed or vacuumed).
async fn estimated_rows(conn: &mut sqlx::PgConnection, table: &str) -> f32 {
    sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE relname = $1")
        .bind(table)
        .fetch_one(conn)
        .await
        .expect("pg_class")
}

#[tokio::test]
async fn statistics_are_refreshed_at_start_up() {
    let Some(db) = TestDatabase::new(Backend::Postgres).await else {
        return;
    };
    let url = db.url.clone().expect("a PostgreSQL database");
    let store = RunningStore::start(&db, TestClock::at(T0_US), Some("site-a"))
        .await
        .expect("start");
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    // An empty table is not analyzed: its statistics would make the planner
    // scan rather than use the indexes while it fills.
    assert!(
        estimated_rows(&mut conn, "readings").await < 0.0,
        "the empty readings table was analyzed"
    );
    // Only the store may analyze: autovacuum is kept off these tables, as
    // it is in effect after an immediate shutdown reset its counters.
    for table in ["readings", "reading_versions", "outbox"] {
        sqlx::raw_sql(&format!(
            "ALTER TABLE {table} SET (autovacuum_enabled = false)"
        ))
        .execute(&mut conn)
        .await
        .expect("autovacuum off");
    }
    let mut client = store.client.clone();
    for batch in 0..4u32 {
        let readings = (0..500u32)
            .map(|n| reading(batch * 500 + n + 1, "s1", T0_US))
            .collect();
        append(&mut client, readings).await;
    }
    store.stop().await;
    assert!(
        estimated_rows(&mut conn, "readings").await < 1.0,
        "nothing analyzed the readings while they filled"
    );

    let store = RunningStore::start(&db, TestClock::at(T0_US), Some("site-a"))
        .await
        .expect("restart");
    assert_eq!(
        estimated_rows(&mut conn, "readings").await,
        2_000.0,
        "readings analyzed at start-up"
    );
    // The readings' first versions live in their rows, and the outbox
    // holds rows only for critical readings: both tables are empty here,
    // so they are left alone.
    for table in ["reading_versions", "outbox"] {
        assert!(estimated_rows(&mut conn, table).await < 1.0, "{table}");
    }
    store.stop().await;
    conn.close().await.expect("close");
    db.cleanup().await;
}
