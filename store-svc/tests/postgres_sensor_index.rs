//! On PostgreSQL the by-sensor index's batches are copied by a task beside
//! the writer. Ingest never waits for it: while copying fails, appends go on
//! and queries by sensor stay complete (they scan what is not copied yet);
//! once copying works again, the task catches up by itself.

use edge_proto::v1 as pb;
use edge_testkit::{Backend, TestDatabase, query_all};
use sqlx::Connection as _;

mod common;

use common::*;

const BATCH: u32 = 50;

/// Readings above the index's high mark, from the database itself.
async fn lag(conn: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT next_seq - 1 - sensor_indexed_seq FROM site_state WHERE singleton = 1",
    )
    .fetch_one(conn)
    .await
    .expect("lag")
}

/// Every stored reading of each sensor, in (time, id) order, as queries by
/// sensor must return them.
async fn check_queries(client: &mut edge_testkit::StoreClients, stored: &[(i64, String, String)]) {
    for sensor in ["s-0", "s-1", "s-2"] {
        let got: Vec<(i64, String)> = query_all(
            client,
            pb::QueryReadingsRequest {
                sensor_id: sensor.into(),
                page_size: 40,
                ..Default::default()
            },
        )
        .await
        .iter()
        .map(|r| (r.measured_at.expect("time").seconds, r.id.clone()))
        .collect();
        let mut want: Vec<(i64, String)> = stored
            .iter()
            .filter(|(_, s, _)| s == sensor)
            .map(|(secs, _, id)| (*secs, id.clone()))
            .collect();
        // Ids are numbered in insertion (so seq) order.
        want.sort();
        assert_eq!(got, want, "{sensor}: every reading, in order");
    }
}

/// Appends `n` new readings (ids from `next`, three sensors) and records
/// them in `stored`: every one must be stored, whatever the index's copying
/// does.
async fn append_new(
    client: &mut edge_testkit::StoreClients,
    stored: &mut Vec<(i64, String, String)>,
    next: &mut u32,
    n: u32,
) {
    let readings: Vec<_> = (*next..*next + n)
        .map(|i| {
            let at = T0_US + i64::from((i * 7919) % 500) * 1_000_000;
            reading(i, &format!("s-{}", i % 3), at)
        })
        .collect();
    *next += n;
    let results = append(client, readings.clone()).await;
    assert!(
        results
            .iter()
            .all(|r| r.outcome == pb::ReadingOutcome::Stored as i32),
        "ingest does not wait for the index: {results:?}"
    );
    stored.extend(readings.iter().map(|r| {
        (
            r.measured_at.expect("time").seconds,
            r.sensor_id.clone(),
            r.id.clone(),
        )
    }));
}

#[tokio::test]
async fn ingest_goes_on_while_the_sensor_index_cannot_be_copied_and_it_catches_up_after() {
    let Some(db) = TestDatabase::new(Backend::Postgres).await else {
        return;
    };
    let url = db.url.clone().expect("a PostgreSQL database");
    let store = RunningStore::start_with(&db, TestClock::at(T0_US), |config| {
        config.sensor_index_batch = BATCH;
    })
    .await
    .expect("start");
    let mut client = store.client.clone();
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    let mut stored: Vec<(i64, String, String)> = Vec::new();
    let mut next = 0u32;

    // Copying works: the mark follows within a batch.
    for _ in 0..3 {
        append_new(&mut client, &mut stored, &mut next, 40).await;
    }
    sensor_index_caught_up(&db, i64::from(BATCH)).await;

    // Every copy now fails: rows already copied stay valid, new ones break
    // the constraint.
    sqlx::raw_sql(
        "ALTER TABLE readings_by_sensor ADD CONSTRAINT test_no_copy CHECK (seq < 0) NOT VALID",
    )
    .execute(&mut conn)
    .await
    .expect("break copying");
    for _ in 0..8 {
        append_new(&mut client, &mut stored, &mut next, 40).await;
    }
    assert!(
        lag(&mut conn).await >= 8 * 40,
        "nothing was copied while copying fails"
    );
    // Queries by sensor scan what is not copied: complete all the same.
    check_queries(&mut client, &stored).await;

    // Copying works again: the task, retrying, catches up without another
    // append.
    sqlx::raw_sql("ALTER TABLE readings_by_sensor DROP CONSTRAINT test_no_copy")
        .execute(&mut conn)
        .await
        .expect("mend copying");
    sensor_index_caught_up(&db, i64::from(BATCH)).await;
    check_queries(&mut client, &stored).await;
    store.stop().await;
    db.cleanup().await;
}
