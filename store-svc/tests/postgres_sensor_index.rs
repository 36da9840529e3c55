//! On PostgreSQL the by-sensor index's batches are copied by a task beside
//! the writer. Ingest never waits for it: while copying fails, appends go on
//! and queries by sensor stay complete (they scan what is not copied yet);
//! once copying works again, or its connections were cut, the task catches
//! up by itself.

use edge_proto::v1 as pb;
use edge_testkit::{Backend, StoreClients, TestDatabase, query_all};
use sqlx::Connection as _;

mod common;

use common::*;

const BATCH: u32 = 50;

/// A store on PostgreSQL with batches of [`BATCH`], the readings it stored
/// as (second measured, sensor, id), and a connection of the test's own.
struct Site {
    db: TestDatabase,
    store: RunningStore,
    client: StoreClients,
    conn: sqlx::PgConnection,
    stored: Vec<(i64, String, String)>,
    next: u32,
}

impl Site {
    /// Starts the store and stores 120 readings, all copied but the last
    /// batch's worth: copying works, the mark follows within a batch.
    async fn with_readings_copied() -> Option<Site> {
        let db = TestDatabase::new(Backend::Postgres).await?;
        let url = db.url.clone().expect("a PostgreSQL database");
        let store = RunningStore::start_with(&db, TestClock::at(T0_US), |config| {
            config.sensor_index_batch = BATCH;
        })
        .await
        .expect("start");
        let mut site = Site {
            client: store.client.clone(),
            conn: sqlx::PgConnection::connect(&url).await.expect("connect"),
            db,
            store,
            stored: Vec::new(),
            next: 0,
        };
        for _ in 0..3 {
            site.append(40).await;
        }
        site.caught_up().await;
        Some(site)
    }

    /// Appends `n` new readings (three sensors): every one must be stored,
    /// whatever the index's copying does.
    async fn append(&mut self, n: u32) {
        let readings: Vec<_> = (self.next..self.next + n)
            .map(|i| {
                let at = T0_US + i64::from((i * 7919) % 500) * 1_000_000;
                reading(i, &format!("s-{}", i % 3), at)
            })
            .collect();
        self.next += n;
        let results = append(&mut self.client, readings.clone()).await;
        assert!(
            results
                .iter()
                .all(|r| r.outcome == pb::ReadingOutcome::Stored as i32),
            "ingest does not wait for the index: {results:?}"
        );
        self.stored.extend(readings.iter().map(|r| {
            (
                r.measured_at.expect("time").seconds,
                r.sensor_id.clone(),
                r.id.clone(),
            )
        }));
    }

    /// Waits until less than a batch is left to copy.
    async fn caught_up(&self) {
        sensor_index_caught_up(&self.db, i64::from(BATCH)).await;
    }

    /// Readings above the index's high mark, from the database itself.
    async fn lag(&mut self) -> i64 {
        sqlx::query_scalar(
            "SELECT next_seq - 1 - sensor_indexed_seq FROM site_state WHERE singleton = 1",
        )
        .fetch_one(&mut self.conn)
        .await
        .expect("lag")
    }

    /// Queries by each sensor return every stored reading of it, in
    /// (time, seq) order.
    async fn check_queries(&mut self) {
        for sensor in ["s-0", "s-1", "s-2"] {
            let got: Vec<(i64, String)> = query_all(
                &mut self.client,
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
            let mut want: Vec<(i64, String)> = self
                .stored
                .iter()
                .filter(|(_, s, _)| s == sensor)
                .map(|(secs, _, id)| (*secs, id.clone()))
                .collect();
            // Ids are numbered in insertion (so seq) order.
            want.sort();
            assert_eq!(got, want, "{sensor}: every reading, in order");
        }
    }

    async fn stop(self) {
        self.store.stop().await;
        self.db.cleanup().await;
    }
}

#[tokio::test]
async fn ingest_goes_on_while_the_sensor_index_cannot_be_copied_and_it_catches_up_after() {
    let Some(mut site) = Site::with_readings_copied().await else {
        return;
    };

    // Every copy now fails: rows already copied stay valid, new ones break
    // the constraint.
    sqlx::raw_sql(
        "ALTER TABLE readings_by_sensor ADD CONSTRAINT test_no_copy CHECK (seq < 0) NOT VALID",
    )
    .execute(&mut site.conn)
    .await
    .expect("break copying");
    for _ in 0..8 {
        site.append(40).await;
    }
    assert!(
        site.lag().await >= 8 * 40,
        "nothing was copied while copying fails"
    );
    // Queries by sensor scan what is not copied: complete all the same.
    site.check_queries().await;

    // Copying works again: the task, retrying, catches up without another
    // append.
    sqlx::raw_sql("ALTER TABLE readings_by_sensor DROP CONSTRAINT test_no_copy")
        .execute(&mut site.conn)
        .await
        .expect("mend copying");
    site.caught_up().await;
    site.check_queries().await;
    site.stop().await;
}

/// Every connection the store holds is cut (a database failover, a
/// restarted pooler): the copying task takes fresh connections for its
/// next transaction and catches up; nothing it copied before is lost.
#[tokio::test]
async fn the_sensor_index_is_copied_again_after_its_connections_are_cut() {
    let Some(mut site) = Site::with_readings_copied().await else {
        return;
    };

    let cut: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t",
    )
    .fetch_one(&mut site.conn)
    .await
    .expect("cut the store's connections");
    assert!(cut >= 1, "the store held connections");

    for _ in 0..3 {
        site.append(40).await;
    }
    site.caught_up().await;
    site.check_queries().await;
    site.stop().await;
}
