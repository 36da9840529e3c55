//! Upgrading a site database that already holds readings: the store starts on
//! a database left at an earlier schema version, migrates it, and serves the
//! same readings, on SQLite and PostgreSQL. The real `store-svc` binary is
//! SIGKILLed in the middle of a migration and of the backup before it (at
//! the points `EDGE_MIGRATION_PAUSE` names, so the kill lands there every
//! time), refuses a database a newer binary wrote, and refuses to migrate
//! when the backup cannot be made unless told to.

use edge_runtime::Service as _;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use edge_proto::internal::v1 as ipb;
use edge_proto::v1 as pb;
use edge_runtime::{RuntimeArgs, Shutdown};
use edge_testkit::StoreClients;
use edge_testkit::{TestDatabase, on_both_backends, query_all};
use sqlx::migrate::Migrator;
use store_svc::hlc::SystemClock;
use store_svc::{StoreApp, StoreConfig};

mod common;

use common::{sqlite_file, stats};

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

/// Runs `$fill` with a pool (`$pool`) on `db`'s database migrated to
/// schema version `$version` only, then closes the pool: the way an older
/// store left it, on either backend.
macro_rules! at_version {
    ($db:expr, $version:expr, |$pool:ident| $fill:block) => {{
        let version: usize = $version;
        match &$db.url {
            Some(url) => {
                let $pool = sqlx::PgPool::connect(url).await.expect("postgres");
                let mut migrator: Migrator = sqlx::migrate!("./migrations/postgres");
                migrator.migrations =
                    Cow::Owned(migrator.migrations.iter().take(version).cloned().collect());
                migrator.run(&$pool).await.expect("the old schema");
                $fill
                $pool.close().await;
            }
            None => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename($db.data_dir.join("edge.db"))
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
                let $pool = sqlx::SqlitePool::connect_with(options)
                    .await
                    .expect("sqlite");
                let mut migrator: Migrator = sqlx::migrate!("./migrations/sqlite");
                migrator.migrations =
                    Cow::Owned(migrator.migrations.iter().take(version).cloned().collect());
                migrator.run(&$pool).await.expect("the old schema");
                $fill
                $pool.close().await;
            }
        }
    }};
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

    at_version!(db, 1, |pool| {
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
    });
}

/// The store started on `db` (which it migrates), for site `site_id`, with
/// the sensor index filled every `sensor_index_batch` readings: its clients,
/// the signal that stops it, and the task serving it.
async fn start_upgraded(
    db: &TestDatabase,
    site_id: &str,
    sensor_index_batch: u32,
) -> (
    StoreClients,
    Shutdown,
    tokio::task::JoinHandle<Result<(), edge_runtime::serve::ServeError>>,
) {
    let mut config = StoreConfig::new(db.data_dir.clone());
    config.store_addr = "127.0.0.1:0".parse().expect("address");
    config.database_url = db.url.clone();
    config.storage.storage_reserve =
        store_svc::storage::Reserve::Bytes(edge_testkit::TEST_STORAGE_RESERVE_BYTES);
    config.sensor_index_batch = sensor_index_batch;
    let runtime = RuntimeArgs {
        shutdown_grace: Duration::from_secs(5),
        ..edge_testkit::runtime_args()
    };
    let app = StoreApp::build(&config, &runtime, Arc::new(SystemClock))
        .await
        .expect("the store migrates and starts");
    assert_eq!(app.site_id(), site_id);
    let addr = app.local_addr();
    let stop = Shutdown::new();
    let task = tokio::spawn(app.run(stop.clone()));
    let client = StoreClients::connect(format!("http://{addr}")).await;
    (client, stop, task)
}

async fn an_old_database_is_upgraded_and_keeps_serving_its_readings(db: &TestDatabase) {
    database_at_version_1(db).await;
    let (mut client, stop, task) = start_upgraded(db, "site-old", 10).await;

    // Before any new write: the migrated readings, all from the index.
    for sensor in ["old-0", "old-1", "old-2"] {
        assert_eq!(
            by_sensor(&mut client, sensor).await,
            expected(sensor, &[], &[])
        );
    }

    // New readings after the upgrade continue the old sequence.
    let new: Vec<ipb::NewReading> = (41..=55u32).map(|n| new_reading(n, "gateway-9")).collect();
    let results = client
        .ingest
        .append(ipb::AppendRequest {
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
    // Readings written before writers were recorded name none; new ones do.
    for r in query_all(&mut client, pb::QueryReadingsRequest::default()).await {
        let expected = if r.seq > 40 { "gateway-9" } else { "" };
        assert_eq!(r.written_by, expected, "{r:?}");
    }

    let stats = stats(&mut client).await;
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

    // Each new reading's first version continues the old version ids, held
    // in the reading's row and numbered by its run (the stats above counted
    // them all unsynced, in the outbox without a row of their own).
    let check = "SELECT r.seq, r.seq - fr.seq_from + fr.version_from FROM readings r \
         JOIN first_version_runs fr ON r.seq BETWEEN fr.seq_from AND fr.seq_to \
         WHERE r.seq > 40 AND r.first_implicit AND r.sync_state = 1 ORDER BY 1";
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

/// Reading `n` as a store after the upgrade receives it: sensor `old-{n % 3}`,
/// measured `n` seconds after T0, written by `written_by`.
fn new_reading(n: u32, written_by: &str) -> ipb::NewReading {
    let at = prost_types::Timestamp {
        seconds: T0_US / 1_000_000 + i64::from(n),
        nanos: 0,
    };
    ipb::NewReading {
        id: format!("01900000-0000-7000-8000-{n:012}"),
        sensor_id: format!("old-{}", n % 3),
        temperature_celsius: 21.0,
        humidity_percent: 40.0,
        measured_at: Some(at),
        received_at: Some(at),
        priority: pb::Priority::Normal as i32,
        written_by: written_by.into(),
    }
}

/// Every seq stored for `sensor`, paging 4 at a time.
async fn by_sensor(client: &mut StoreClients, sensor: &str) -> Vec<u64> {
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
fn expected(sensor: &str, new: &[ipb::NewReading], seqs: &[u64]) -> Vec<u64> {
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

/// Fills a database at schema version 8, the last with an outbox row for
/// every unsynced version: 30 readings, 1-10 synced, 11-30 in the outbox,
/// 15 of them dead-lettered.
/// 30 readings written at schema `version` (8 or later): 1–10 synced, 15
/// dead-lettered, the rest waiting. At schema 8 every waiting version has an
/// outbox row; from schema 9 on (`outbox_floor`) they wait without one.
async fn database_at_version(db: &TestDatabase, version: usize) {
    let insert_reading = "INSERT INTO readings (seq, reading_id, origin_site_id, sensor_id, temperature, \
         humidity, measured_at_us, received_at_us, priority, clock_suspect, content_digest, \
         version_hlc, version_site_id, sync_state) \
         VALUES ($1, $2, 'site-old', 's-1', 20.5, 50.0, $3, $3, 1, FALSE, $4, $5, 'site-old', $6)";
    let insert_version = "INSERT INTO reading_versions (version_id, reading_seq, hlc, site_id, \
         temperature, humidity, created_at_us, synced_at_us) \
         VALUES ($1, $1, $2, 'site-old', 20.5, 50.0, $3, $4)";
    let insert_outbox = "INSERT INTO outbox (version_id, priority, enqueued_at_us, next_attempt_at_us, \
         dead_lettered_at_us) VALUES ($1, 1, $2, 0, $3)";
    let state = "INSERT INTO site_state (singleton, site_id, next_seq, next_version_id, hlc) \
         VALUES (1, 'site-old', 31, 31, $1)";
    let hlc = |seq: i64| ((T0_US / 1_000) << 16) + seq;

    let rows_for_all = version < 9;
    at_version!(db, version, |pool| {
        sqlx::query(state)
            .bind(hlc(30))
            .execute(&pool)
            .await
            .expect("state");
        if !rows_for_all {
            sqlx::query("UPDATE site_state SET outbox_floor = 10")
                .execute(&pool)
                .await
                .expect("floor");
        }
        for seq in 1..=30i64 {
            let at = T0_US + seq;
            let (state, synced_at, dead_at) = match seq {
                1..=10 => (2i64, Some(at), None),
                15 => (3, None, Some(at)),
                _ => (1, None, None),
            };
            sqlx::query(insert_reading)
                .bind(seq)
                .bind(format!("01900000-0000-7000-8000-{seq:012}"))
                .bind(at)
                .bind(vec![0u8; 16])
                .bind(hlc(seq))
                .bind(state)
                .execute(&pool)
                .await
                .expect("reading");
            sqlx::query(insert_version)
                .bind(seq)
                .bind(hlc(seq))
                .bind(at)
                .bind(synced_at)
                .execute(&pool)
                .await
                .expect("version");
            if synced_at.is_none() && (rows_for_all || dead_at.is_some()) {
                sqlx::query(insert_outbox)
                    .bind(seq)
                    .bind(at)
                    .bind(dead_at)
                    .execute(&pool)
                    .await
                    .expect("outbox");
            }
        }
    });
}

/// The outbox of a database written before most versions stopped having an
/// outbox row: what waited still waits (the dead letter stays one), new
/// readings join it without rows, and one drain settles both.
async fn an_outbox_with_a_row_per_version_is_upgraded_in_place(db: &TestDatabase) {
    upgraded_outbox_drains(db, 8).await;
}
on_both_backends!(an_outbox_with_a_row_per_version_is_upgraded_in_place);

/// The outbox of a database of the schema before implicit first versions,
/// whose first versions still have rows of their own (waiting without
/// outbox rows): they keep waiting beside the new readings, whose first
/// versions have none.
async fn first_versions_with_rows_are_upgraded_in_place(db: &TestDatabase) {
    upgraded_outbox_drains(db, version_before(db, "implicit first versions")).await;
}
on_both_backends!(first_versions_with_rows_are_upgraded_in_place);

/// Appends readings 31–35 (new ones, after an upgrade).
async fn append_31_to_35(client: &mut StoreClients) {
    let new: Vec<ipb::NewReading> = (31..=35u32).map(|n| new_reading(n, "")).collect();
    client
        .ingest
        .append(ipb::AppendRequest { readings: new })
        .await
        .expect("append");
}

/// Leases up to 100 versions, a fifth of them the newest.
async fn lease_all(client: &mut StoreClients) -> ipb::LeaseBatchResponse {
    client
        .sync
        .lease_batch(ipb::LeaseBatchRequest {
            max_versions: 100,
            newest_share_percent: 20,
            lease_duration: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
        })
        .await
        .expect("lease")
        .into_inner()
}

/// Acknowledges every version of `batch`; returns how many the store
/// counted synced.
async fn acknowledge_all(client: &mut StoreClients, batch: &ipb::LeaseBatchResponse) -> u64 {
    client
        .sync
        .complete_batch(ipb::CompleteBatchRequest {
            lease_id: batch.lease_id.clone(),
            synced_version_ids: batch.versions.iter().map(|v| v.version_id).collect(),
            ..Default::default()
        })
        .await
        .expect("complete")
        .into_inner()
        .synced
}

/// A database of the schema before acknowledged runs, whose readings keep
/// their first versions in their rows, ten of them acknowledged the way
/// that schema recorded it (the row's sync state): after the upgrade, which
/// records acknowledgements as runs instead, those ten still read synced and
/// are never handed out again, and the other twenty drain with new readings.
async fn implicit_first_versions_acknowledged_in_their_rows_are_upgraded_in_place(
    db: &TestDatabase,
) {
    let version = version_before(db, "acknowledged first runs");
    let hlc = |seq: i64| ((T0_US / 1_000) << 16) + seq;
    at_version!(db, version, |pool| {
        sqlx::query(
            "INSERT INTO site_state (singleton, site_id, next_seq, next_version_id, hlc) \
             VALUES (1, 'site-old', 31, 31, $1)",
        )
        .bind(hlc(30))
        .execute(&pool)
        .await
        .expect("state");
        sqlx::query(
            "INSERT INTO first_version_runs (seq_from, seq_to, version_from) VALUES (1, 30, 1)",
        )
        .execute(&pool)
        .await
        .expect("run");
        for seq in 1..=30i64 {
            let at = T0_US + seq;
            sqlx::query(
                "INSERT INTO readings (seq, reading_id, origin_site_id, sensor_id, temperature, \
                 humidity, measured_at_us, received_at_us, priority, clock_suspect, \
                 content_digest, version_hlc, version_site_id, sync_state, first_implicit) \
                 VALUES ($1, $2, 'site-old', 's-1', 20.5, 50.0, $3, $3, 1, FALSE, $4, $5, \
                 'site-old', $6, TRUE)",
            )
            .bind(seq)
            .bind(format!("01900000-0000-7000-8000-{seq:012}"))
            .bind(at)
            .bind(vec![0u8; 16])
            .bind(hlc(seq))
            .bind(if seq <= 10 { 2i64 } else { 1 })
            .execute(&pool)
            .await
            .expect("reading");
        }
    });
    let (mut client, stop, task) = start_upgraded(db, "site-old", 1_000).await;
    append_31_to_35(&mut client).await;
    let before = stats(&mut client).await;
    assert_eq!((before.unsynced_versions, before.synced_versions), (25, 10));
    let synced: Vec<u64> = query_all(
        &mut client,
        pb::QueryReadingsRequest {
            sync_state: pb::SyncState::Synced as i32,
            ..Default::default()
        },
    )
    .await
    .into_iter()
    .map(|r| r.seq)
    .collect();
    assert_eq!(synced, (1..=10).collect::<Vec<u64>>());

    let batch = lease_all(&mut client).await;
    let mut seqs: Vec<u64> = batch.versions.iter().map(|v| v.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (11..=35).collect::<Vec<u64>>());
    assert_eq!(acknowledge_all(&mut client, &batch).await, 25);
    let after = stats(&mut client).await;
    assert_eq!((after.unsynced_versions, after.synced_versions), (0, 35));
    stop.cancel();
    task.await.expect("store task").expect("store served");
}
on_both_backends!(implicit_first_versions_acknowledged_in_their_rows_are_upgraded_in_place);

/// Upgrades [`database_at_version`]`(version)`, appends readings 31–35 and
/// drains everything that waits.
async fn upgraded_outbox_drains(db: &TestDatabase, version: usize) {
    database_at_version(db, version).await;
    let (mut client, stop, task) = start_upgraded(db, "site-old", 1_000).await;
    append_31_to_35(&mut client).await;
    let before = stats(&mut client).await;
    assert_eq!(
        (
            before.unsynced_versions,
            before.dead_letters,
            before.synced_versions
        ),
        (24, 1, 10)
    );

    let batch = lease_all(&mut client).await;
    let mut seqs: Vec<u64> = batch.versions.iter().map(|v| v.seq).collect();
    seqs.sort_unstable();
    let want: Vec<u64> = (11..=35).filter(|seq| *seq != 15).collect();
    assert_eq!(seqs, want, "the old outbox and the new readings");
    assert_eq!(acknowledge_all(&mut client, &batch).await, 24);
    assert!(lease_all(&mut client).await.versions.is_empty());
    let after = stats(&mut client).await;
    assert_eq!(
        (
            after.unsynced_versions,
            after.dead_letters,
            after.synced_versions
        ),
        (0, 1, 34)
    );
    stop.cancel();
    task.await.expect("store task").expect("store served");
}

/// The site's migrations on `db`'s backend.
fn migrator(db: &TestDatabase) -> sqlx::migrate::Migrator {
    match db.url {
        Some(_) => sqlx::migrate!("./migrations/postgres"),
        None => sqlx::migrate!("./migrations/sqlite"),
    }
}

/// The newest schema version this store knows.
fn latest(db: &TestDatabase) -> i64 {
    migrator(db)
        .iter()
        .map(|m| m.version)
        .max()
        .expect("migrations")
}

/// The schema version just before the migration named `description` (its
/// file name's words): a test of that upgrade keeps starting there however
/// many migrations follow.
fn version_before(db: &TestDatabase, description: &str) -> usize {
    let migration = migrator(db)
        .iter()
        .find(|m| m.description == description)
        .map(|m| m.version)
        .unwrap_or_else(|| panic!("no migration named {description:?}"));
    usize::try_from(migration - 1).expect("a version")
}

/// How the store upgrades the site database, for a binary knowing `migrator`.
fn site_upgrade(migrator: &sqlx::migrate::Migrator) -> edge_sql::Upgrade<'_> {
    edge_sql::Upgrade {
        database: "site database",
        migrator,
        backup: edge_sql::BackupPolicy::Required,
        backup_flag: "--migration-backup",
        backup_env: "EDGE_MIGRATION_BACKUP",
    }
}

/// The applied migrations, as sqlx records them.
async fn applied(db: &TestDatabase) -> Vec<i64> {
    with_pool!(db, |pool| sqlx::query_scalar(
        "SELECT version FROM _sqlx_migrations ORDER BY version"
    )
    .fetch_all(&pool)
    .await
    .expect("bookkeeping"))
}

/// Whether the table `name` exists.
async fn has_table(db: &TestDatabase, name: &str) -> bool {
    let sql = match db.url {
        Some(_) => "SELECT COUNT(*) FROM pg_tables WHERE tablename = $1",
        None => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
    };
    let n: i64 = with_pool!(db, |pool| sqlx::query_scalar(sql)
        .bind(name)
        .fetch_one(&pool)
        .await
        .expect("catalog"));
    n > 0
}

/// Everything a start could change: the bookkeeping rows, the tables and
/// their columns, and the readings.
async fn snapshot(db: &TestDatabase) -> (Vec<(i64, String, Vec<u8>, bool)>, String, i64) {
    let columns = match db.url {
        Some(_) => {
            "SELECT string_agg(table_name || '.' || column_name, ',' ORDER BY table_name, column_name) \
             FROM information_schema.columns WHERE table_schema = current_schema()"
        }
        None => "SELECT group_concat(sql, ';') FROM (SELECT sql FROM sqlite_master ORDER BY name)",
    };
    with_pool!(db, |pool| {
        let rows = sqlx::query_as(
            "SELECT version, description, checksum, success FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&pool)
        .await
        .expect("bookkeeping");
        let schema: String = sqlx::query_scalar(columns)
            .fetch_one(&pool)
            .await
            .expect("schema");
        let readings: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM readings")
            .fetch_one(&pool)
            .await
            .expect("readings");
        (rows, schema, readings)
    })
}

/// Files in the SQLite backup directory, sorted.
fn backups(db: &TestDatabase) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(db.data_dir.join("backups"))
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A `store-svc` process on a test database, its stderr read line by line.
struct StoreProcess {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every stderr line so far, for failure messages.
    seen: Vec<String>,
}

/// How long a start-up step may take before the test fails.
const START_DEADLINE: Duration = Duration::from_secs(60);

impl StoreProcess {
    /// Starts the real binary on `db` with JSON logs and extra `env`.
    fn spawn(db: &TestDatabase, env: &[(&str, &str)]) -> StoreProcess {
        use tokio::io::AsyncBufReadExt as _;
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_store-svc"));
        cmd.args([
            "--store-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .arg("--data-dir")
        .arg(&db.data_dir)
        // The test process's certificate, as a Secret would give it.
        .arg("--tls-cert")
        .arg(&edge_testkit::security().cert)
        .arg("--tls-key")
        .arg(&edge_testkit::security().key)
        .arg("--mesh-token-file")
        .arg(&edge_testkit::security().mesh_token_file)
        .env("EDGE_LOG", "info,sqlx=warn")
        .env("EDGE_STORAGE_RESERVE", edge_testkit::TEST_STORAGE_RESERVE)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
        if let Some(url) = &db.url {
            cmd.arg("--database-url").arg(url);
        }
        let mut child = cmd.spawn().expect("store-svc starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        StoreProcess {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (with a deadline) for a stderr line `matches` accepts.
    async fn wait_for(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let found = tokio::time::timeout(START_DEADLINE, async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push(line.clone());
                if matches(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!("store-svc ended before {what}:\n{}", self.seen.join("\n")),
            Err(_) => panic!(
                "no {what} within {START_DEADLINE:?}:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Waits for the runner to stop at `point` of `EDGE_MIGRATION_PAUSE`.
    async fn paused_at(&mut self, point: &str) {
        let announcement = format!("{} {point} ", edge_sql::migrate::PAUSE_ANNOUNCEMENT);
        self.wait_for(&announcement.clone(), |line| {
            line.starts_with(&announcement)
        })
        .await;
    }

    /// Waits until the gRPC server listens; returns its address.
    async fn listening(&mut self) -> String {
        let line = self
            .wait_for("the gRPC server listening", |line| {
                line.contains("gRPC server listening")
            })
            .await;
        let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
        event["addr"].as_str().expect("addr").to_owned()
    }

    /// Sends `signal` and waits (with a deadline) for the exit.
    async fn signal(self, signal: nix::sys::signal::Signal) -> (std::process::ExitStatus, String) {
        let pid = nix::unistd::Pid::from_raw(self.child.id().expect("pid") as i32);
        nix::sys::signal::kill(pid, signal).expect("signal");
        self.exit().await
    }

    /// Waits (with a deadline) for the process to exit; its status and
    /// everything it wrote on stderr.
    async fn exit(mut self) -> (std::process::ExitStatus, String) {
        let status = tokio::time::timeout(START_DEADLINE, self.child.wait())
            .await
            .expect("store-svc exits")
            .expect("reaped");
        while let Some(line) = self.lines.recv().await {
            self.seen.push(line);
        }
        (status, self.seen.join("\n"))
    }
}

/// A start killed in the middle of a migration leaves the database at the
/// schema before it, whole; the next start finishes the upgrade and the
/// site carries on where it was. An older binary then refuses the migrated
/// database and changes nothing.
async fn a_migration_killed_midway_is_finished_by_the_next_start(db: &TestDatabase) {
    database_at_version_1(db).await;
    let before = snapshot(db).await;

    // Migration 2 moves every reading into the sensor index: killed after
    // its statements ran, before its commit.
    let mut store = StoreProcess::spawn(db, &[("EDGE_MIGRATION_PAUSE", "2")]);
    store.paused_at("2").await;
    let (status, _) = store.signal(nix::sys::signal::Signal::SIGKILL).await;
    assert_eq!(status.code(), None, "killed by a signal");

    assert_eq!(
        applied(db).await,
        vec![1],
        "nothing of migration 2 committed"
    );
    assert!(!has_table(db, "readings_by_sensor").await);
    assert_eq!(snapshot(db).await, before, "the database is as it was");
    if db.url.is_none() {
        let copies = backups(db);
        assert_eq!(copies.len(), 1, "{copies:?}");
        let want = format!("-schema-1-to-{}.db", latest(db));
        assert!(
            copies[0].starts_with("edge-") && copies[0].ends_with(&want),
            "{copies:?}"
        );
    }

    let mut store = StoreProcess::spawn(db, &[]);
    let addr = store.listening().await;
    let mut client = StoreClients::connect(format!("http://{addr}")).await;
    for sensor in ["old-0", "old-1", "old-2"] {
        assert_eq!(
            by_sensor(&mut client, sensor).await,
            expected(sensor, &[], &[])
        );
    }
    let new: Vec<ipb::NewReading> = (41..=45u32).map(|n| new_reading(n, "")).collect();
    let results = client
        .ingest
        .append(ipb::AppendRequest { readings: new })
        .await
        .expect("append")
        .into_inner()
        .results;
    let seqs: Vec<u64> = results.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (41..=45).collect::<Vec<u64>>(), "seqs continue");
    let stats = stats(&mut client).await;
    assert_eq!((stats.total_readings, stats.unsynced_versions), (45, 45));
    let (status, log) = store.signal(nix::sys::signal::Signal::SIGTERM).await;
    assert!(status.success(), "{log}");
    let all: Vec<i64> = (1..=latest(db)).collect();
    assert_eq!(applied(db).await, all);

    // An older binary, knowing schemas up to 3 only.
    let migrated = snapshot(db).await;
    let older = |migrator: sqlx::migrate::Migrator| sqlx::migrate::Migrator {
        migrations: Cow::Owned(migrator.iter().take(3).cloned().collect()),
        ..migrator
    };
    let (older_sqlite, older_postgres) = (
        older(sqlx::migrate!("./migrations/sqlite")),
        older(sqlx::migrate!("./migrations/postgres")),
    );
    let refused = match &db.url {
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.expect("postgres");
            let result = edge_sql::migrate_postgres(&pool, &site_upgrade(&older_postgres)).await;
            pool.close().await;
            result
        }
        None => {
            let pool = sqlx::SqlitePool::connect_with(
                sqlx::sqlite::SqliteConnectOptions::new().filename(sqlite_file(db)),
            )
            .await
            .expect("sqlite");
            let result =
                edge_sql::migrate_sqlite(&pool, &sqlite_file(db), &site_upgrade(&older_sqlite))
                    .await;
            pool.close().await;
            result
        }
    };
    match refused {
        Err(edge_sql::MigrateError::SchemaTooNew { at, known: 3, .. }) if at == latest(db) => {}
        other => panic!("an older binary must refuse the migrated database: {other:?}"),
    }
    assert_eq!(snapshot(db).await, migrated);
}
on_both_backends!(a_migration_killed_midway_is_finished_by_the_next_start);

/// A start killed while it copies the database leaves no file that looks
/// like a complete backup; the next start makes one, and restoring it gives
/// back the database as it was before the upgrade.
#[tokio::test]
async fn a_backup_killed_midway_never_looks_complete() {
    let db = TestDatabase::new(edge_testkit::Backend::Sqlite)
        .await
        .expect("SQLite fixture");
    database_at_version_1(&db).await;
    let before = snapshot(&db).await;

    let mut store = StoreProcess::spawn(&db, &[("EDGE_MIGRATION_PAUSE", "backup")]);
    store.paused_at("backup").await;
    store.signal(nix::sys::signal::Signal::SIGKILL).await;
    let copies = backups(&db);
    assert!(
        copies.len() == 1 && copies[0].starts_with('.') && copies[0].ends_with(".partial"),
        "only a hidden partial copy: {copies:?}"
    );
    assert_eq!(applied(&db).await, vec![1]);

    let mut store = StoreProcess::spawn(&db, &[]);
    store.listening().await;
    let (status, log) = store.signal(nix::sys::signal::Signal::SIGTERM).await;
    assert!(status.success(), "{log}");
    let copies = backups(&db);
    let want = format!("-schema-1-to-{}.db", latest(&db));
    assert!(
        copies.len() == 1 && copies[0].starts_with("edge-") && copies[0].ends_with(&want),
        "one complete copy, the partial one gone: {copies:?}"
    );
    let copy = db.data_dir.join("backups").join(&copies[0]);
    assert!(
        log.contains(&copy.display().to_string()),
        "the log says where the backup is:\n{log}"
    );

    // Restore as docs/deploy.md says: the copy over the database, its WAL
    // and shared-memory files deleted.
    for stale in ["edge.db-wal", "edge.db-shm"] {
        let _ = std::fs::remove_file(db.data_dir.join(stale));
    }
    std::fs::copy(&copy, sqlite_file(&db)).expect("restore");
    assert_eq!(snapshot(&db).await, before, "the copy is the old database");
    db.cleanup().await;
}

/// A store that meets a database a newer binary migrated refuses to start,
/// says what to do, exits with its own code, and writes nothing.
async fn a_database_from_a_newer_edge_is_refused_untouched(db: &TestDatabase) {
    database_at_version_1(db).await;
    let newer = latest(db) + 1;
    let record_newer = "INSERT INTO _sqlx_migrations \
         (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from a newer edge', TRUE, $2, 1)";
    match &db.url {
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.expect("postgres");
            sqlx::migrate!("./migrations/postgres")
                .run(&pool)
                .await
                .expect("migrated by this binary's migrations");
            sqlx::query(record_newer)
                .bind(newer)
                .bind(vec![7u8; 48])
                .execute(&pool)
                .await
                .expect("a newer binary's migration");
            pool.close().await;
        }
        None => {
            let pool = sqlx::SqlitePool::connect_with(
                sqlx::sqlite::SqliteConnectOptions::new().filename(sqlite_file(db)),
            )
            .await
            .expect("sqlite");
            sqlx::migrate!("./migrations/sqlite")
                .run(&pool)
                .await
                .expect("migrated by this binary's migrations");
            sqlx::query(record_newer)
                .bind(newer)
                .bind(vec![7u8; 48])
                .execute(&pool)
                .await
                .expect("a newer binary's migration");
            pool.close().await;
        }
    }
    let before = snapshot(db).await;

    let (status, log) = StoreProcess::spawn(db, &[]).exit().await;
    assert_eq!(
        status.code(),
        Some(i32::from(edge_sql::EXIT_SCHEMA_REFUSED)),
        "{log}"
    );
    let message = format!(
        "the site database is at schema {newer}, written by a newer edge; this binary knows \
         schemas up to {}",
        latest(db)
    );
    assert!(log.contains(&message), "{log}");
    assert!(log.contains("run the newer binary, or restore"), "{log}");
    assert_eq!(snapshot(db).await, before, "nothing was written");
    assert_eq!(backups(db), Vec::<String>::new());
}
on_both_backends!(a_database_from_a_newer_edge_is_refused_untouched);

/// When the backup cannot be made, the store does not migrate: it says why
/// and how to opt out, and exits with its own code. Opted out, it migrates.
#[tokio::test]
async fn no_backup_means_no_migration_unless_opted_out() {
    let db = TestDatabase::new(edge_testkit::Backend::Sqlite)
        .await
        .expect("SQLite fixture");
    database_at_version_1(&db).await;
    // A file where the backup directory goes: no copy can be made.
    std::fs::write(db.data_dir.join("backups"), b"in the way").expect("blocker");

    let (status, log) = StoreProcess::spawn(&db, &[]).exit().await;
    assert_eq!(
        status.code(),
        Some(i32::from(edge_sql::EXIT_BACKUP_FAILED)),
        "{log}"
    );
    let message = format!(
        "cannot back up the site database before migrating it from schema 1 to {}",
        latest(&db)
    );
    assert!(log.contains(&message), "{log}");
    assert!(log.contains("cannot create the backup directory"), "{log}");
    assert!(
        log.contains("--migration-backup off (EDGE_MIGRATION_BACKUP=off)"),
        "{log}"
    );
    assert_eq!(applied(&db).await, vec![1], "nothing was migrated");

    let mut store = StoreProcess::spawn(&db, &[("EDGE_MIGRATION_BACKUP", "off")]);
    store.listening().await;
    let (status, log) = store.signal(nix::sys::signal::Signal::SIGTERM).await;
    assert!(status.success(), "{log}");
    assert!(log.contains("WITHOUT a backup"), "{log}");
    assert_eq!(applied(&db).await, (1..=latest(&db)).collect::<Vec<i64>>());
    db.cleanup().await;
}
