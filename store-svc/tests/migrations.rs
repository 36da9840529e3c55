//! Upgrading a site database that already holds readings: the store starts on
//! a database left at an earlier schema version, migrates it, and serves the
//! same readings, on SQLite and PostgreSQL.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use edge_proto::v1 as pb;
use edge_proto::v1::store_service_client::StoreServiceClient;
use edge_runtime::{RuntimeArgs, Shutdown};
use edge_testkit::{TestDatabase, on_both_backends, query_all};
use sqlx::migrate::Migrator;
use store_svc::hlc::SystemClock;
use store_svc::{StoreApp, StoreConfig};
use tonic::transport::Channel;

/// 2026-11-23T00:00:00Z.
const T0_US: i64 = 1_795_392_000_000_000;

/// The old store had handed out more version ids than seqs (as amendments
/// will), so new versions must not assume version id = seq.
const NEXT_VERSION_ID: i64 = 50;

/// Readings written at schema 1: (seq, id, sensor, measured_at_us).
fn old_readings() -> Vec<(i64, String, String, i64)> {
    (1..=40i64)
        .map(|seq| {
            (
                seq,
                format!("01900000-0000-7000-8000-{seq:012}"),
                format!("old-{}", seq % 3),
                T0_US + ((seq * 7) % 40) * 1_000_000,
            )
        })
        .collect()
}

/// Creates the database at schema version 1 only and fills it the way the
/// version-1 store did.
async fn database_at_version_1(db: &TestDatabase) {
    let insert_reading = "INSERT INTO readings (seq, reading_id, origin_site_id, sensor_id, temperature, \
         humidity, measured_at_us, received_at_us, priority, clock_suspect, content_digest, \
         version_hlc, version_site_id, sync_state) \
         VALUES ($1, $2, 'site-old', $3, 20.5, 50.0, $4, $4, 1, FALSE, $5, $6, 'site-old', 1)";
    let insert_version = "INSERT INTO reading_versions (version_id, reading_seq, hlc, site_id, \
         temperature, humidity, created_at_us) VALUES ($1, $1, $2, 'site-old', 20.5, 50.0, $3)";
    let insert_outbox = "INSERT INTO outbox (version_id, priority, enqueued_at_us, next_attempt_at_us) \
         VALUES ($1, 1, $2, $2)";
    let state = "INSERT INTO site_state (singleton, site_id, next_seq, next_version_id, hlc) \
         VALUES (1, 'site-old', 41, $2, $1)";
    let hlc = |seq: i64| ((T0_US / 1_000) << 16) + seq;

    macro_rules! fill {
        ($pool:expr, $migrator:expr) => {{
            let pool = $pool;
            let mut migrator: Migrator = $migrator;
            migrator.migrations = Cow::Owned(migrator.migrations.iter().take(1).cloned().collect());
            migrator.run(&pool).await.expect("schema version 1");
            sqlx::query(state)
                .bind(hlc(40))
                .bind(NEXT_VERSION_ID)
                .execute(&pool)
                .await
                .expect("state");
            for (seq, id, sensor, at) in old_readings() {
                sqlx::query(insert_reading)
                    .bind(seq)
                    .bind(id)
                    .bind(sensor)
                    .bind(at)
                    .bind(vec![0u8; 16])
                    .bind(hlc(seq))
                    .execute(&pool)
                    .await
                    .expect("reading");
                sqlx::query(insert_version)
                    .bind(seq)
                    .bind(hlc(seq))
                    .bind(at)
                    .execute(&pool)
                    .await
                    .expect("version");
                sqlx::query(insert_outbox)
                    .bind(seq)
                    .bind(at)
                    .execute(&pool)
                    .await
                    .expect("outbox");
            }
            pool.close().await;
        }};
    }

    match &db.url {
        Some(url) => fill!(
            sqlx::PgPool::connect(url).await.expect("postgres"),
            sqlx::migrate!("./migrations/postgres")
        ),
        None => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(db.data_dir.join("edge.db"))
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
            fill!(
                sqlx::SqlitePool::connect_with(options)
                    .await
                    .expect("sqlite"),
                sqlx::migrate!("./migrations/sqlite")
            )
        }
    }
}

async fn an_old_database_is_upgraded_and_keeps_serving_its_readings(db: &TestDatabase) {
    database_at_version_1(db).await;

    let mut config = StoreConfig::new(db.data_dir.clone());
    config.store_addr = "127.0.0.1:0".parse().expect("address");
    config.database_url = db.url.clone();
    config.storage.storage_reserve =
        store_svc::storage::Reserve::Bytes(edge_testkit::TEST_STORAGE_RESERVE_BYTES);
    config.sensor_index_batch = 10;
    let runtime = RuntimeArgs {
        shutdown_grace: Duration::from_secs(5),
        ..RuntimeArgs::default()
    };
    let app = StoreApp::build(&config, &runtime, Arc::new(SystemClock))
        .await
        .expect("the store migrates and starts");
    assert_eq!(app.site_id(), "site-old");
    let addr = app.local_addr();
    let stop = Shutdown::new();
    let task = tokio::spawn(app.run(stop.clone()));
    let mut client = StoreServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");

    // Before any new write: the migrated readings, all from the index.
    for sensor in ["old-0", "old-1", "old-2"] {
        assert_eq!(
            by_sensor(&mut client, sensor).await,
            expected(sensor, &[], &[])
        );
    }

    // New readings after the upgrade continue the old sequence.
    let new: Vec<pb::NewReading> = (41..=55u32)
        .map(|n| pb::NewReading {
            id: format!("01900000-0000-7000-8000-{n:012}"),
            sensor_id: format!("old-{}", n % 3),
            temperature_celsius: 21.0,
            humidity_percent: 40.0,
            measured_at: Some(prost_types::Timestamp {
                seconds: T0_US / 1_000_000 + i64::from(n),
                nanos: 0,
            }),
            received_at: Some(prost_types::Timestamp {
                seconds: T0_US / 1_000_000 + i64::from(n),
                nanos: 0,
            }),
            priority: pb::Priority::Normal as i32,
        })
        .collect();
    let results = client
        .append(pb::AppendRequest {
            readings: new.clone(),
        })
        .await
        .expect("append")
        .into_inner()
        .results;
    let seqs: Vec<u64> = results.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (41..=55).collect::<Vec<u64>>());

    for sensor in ["old-0", "old-1", "old-2"] {
        let want: Vec<u64> = expected(sensor, &new, &seqs);
        assert_eq!(
            by_sensor(&mut client, sensor).await,
            want,
            "{sensor}: old and new readings, in time order"
        );
    }

    let stats = client
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    assert_eq!(
        (
            stats.total_readings,
            stats.total_versions,
            stats.unsynced_versions
        ),
        (55, 55, 55)
    );
    stop.cancel();
    task.await.expect("store task").expect("store served");

    // Each new reading's first version continues the old version ids, and has
    // its own outbox entry.
    let check = "SELECT v.reading_seq, v.version_id FROM reading_versions v \
         JOIN outbox o ON o.version_id = v.version_id WHERE v.reading_seq > 40 ORDER BY 1";
    let versions: Vec<(i64, i64)> = match &db.url {
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.expect("postgres");
            sqlx::query_as(check)
                .fetch_all(&pool)
                .await
                .expect("versions")
        }
        None => {
            let pool = sqlx::SqlitePool::connect_with(
                sqlx::sqlite::SqliteConnectOptions::new().filename(db.data_dir.join("edge.db")),
            )
            .await
            .expect("sqlite");
            // Converted to incremental vacuum, so pruned space can go back to
            // the file system.
            let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum")
                .fetch_one(&pool)
                .await
                .expect("auto_vacuum");
            assert_eq!(mode, 2, "incremental auto-vacuum after the upgrade");
            sqlx::query_as(check)
                .fetch_all(&pool)
                .await
                .expect("versions")
        }
    };
    let want: Vec<(i64, i64)> = (41..=55)
        .map(|seq| (seq, seq - 41 + NEXT_VERSION_ID))
        .collect();
    assert_eq!(versions, want);
}

/// Every seq stored for `sensor`, paging 4 at a time.
async fn by_sensor(client: &mut StoreServiceClient<Channel>, sensor: &str) -> Vec<u64> {
    let request = pb::QueryReadingsRequest {
        sensor_id: sensor.into(),
        page_size: 4,
        ..Default::default()
    };
    query_all(client, request)
        .await
        .into_iter()
        .map(|r| r.seq)
        .collect()
}

/// The seqs of `sensor`'s old readings and of `new` (stored as `seqs`), in
/// (measured_at, seq) order.
fn expected(sensor: &str, new: &[pb::NewReading], seqs: &[u64]) -> Vec<u64> {
    let mut want: Vec<(i64, u64)> = old_readings()
        .into_iter()
        .filter(|(_, _, s, _)| s == sensor)
        .map(|(seq, _, _, at)| (at, seq as u64))
        .chain(
            new.iter()
                .zip(seqs)
                .filter(|(r, _)| r.sensor_id == sensor)
                .map(|(r, seq)| (r.measured_at.expect("time").seconds * 1_000_000, *seq)),
        )
        .collect();
    want.sort_unstable();
    want.into_iter().map(|(_, seq)| seq).collect()
}
on_both_backends!(an_old_database_is_upgraded_and_keeps_serving_its_readings);
