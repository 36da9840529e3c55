//! Upgrading the cloud's database goes through the same safety as the
//! site's (edge-sql): a SQLite database that already holds a schema is
//! backed up before it is migrated, and a database a newer binary wrote is
//! refused untouched, with the exit code the binaries give it.

mod common;

use std::borrow::Cow;

use common::{TestCloud, batch};
use edge_cloud::{CloudApp, CloudArgs};
use edge_cloud_link::contract::{Coverage, SeqRange};
use edge_testkit::{Backend, TestDatabase, on_both_backends};

const SITE: &str = "camp-3";

/// The newest schema version this cloud knows.
fn latest(db: &TestDatabase) -> i64 {
    let migrator = match db.url {
        Some(_) => sqlx::migrate!("./migrations/postgres"),
        None => sqlx::migrate!("./migrations/sqlite"),
    };
    migrator
        .iter()
        .map(|m| m.version)
        .max()
        .expect("migrations")
}

/// The bookkeeping rows of the cloud database `args` names.
async fn applied(args: &CloudArgs) -> Vec<(i64, Vec<u8>)> {
    let sql = "SELECT version, checksum FROM _sqlx_migrations ORDER BY version";
    match &args.database_url {
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.expect("postgres");
            let rows = sqlx::query_as(sql).fetch_all(&pool).await.expect("rows");
            pool.close().await;
            rows
        }
        None => {
            let pool = sqlite(&args.data_dir.join("cloud.db")).await;
            let rows = sqlx::query_as(sql).fetch_all(&pool).await.expect("rows");
            pool.close().await;
            rows
        }
    }
}

async fn sqlite(file: &std::path::Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(file)
            .create_if_missing(true),
    )
    .await
    .expect("sqlite")
}

async fn a_cloud_database_from_a_newer_edge_is_refused_untouched(db: &TestDatabase) {
    let args = TestCloud::args(db);
    let cloud = TestCloud::start_with(args.clone()).await;
    cloud.push_ok(SITE, "one", &batch(SITE, 1..=5)).await;
    cloud.stop().await;
    let newer = latest(db) + 1;
    let record = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from a newer edge', TRUE, $2, 1)";
    match &args.database_url {
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.expect("postgres");
            sqlx::query(record)
                .bind(newer)
                .bind(vec![7u8; 48])
                .execute(&pool)
                .await
                .expect("a newer binary's migration");
            pool.close().await;
        }
        None => {
            let pool = sqlite(&args.data_dir.join("cloud.db")).await;
            sqlx::query(record)
                .bind(newer)
                .bind(vec![7u8; 48])
                .execute(&pool)
                .await
                .expect("a newer binary's migration");
            pool.close().await;
        }
    }
    let before = applied(&args).await;

    let Err(err) = CloudApp::build(&args).await else {
        panic!("a cloud database from a newer edge must be refused");
    };
    let chain = anyhow_like(&err);
    assert!(
        chain.contains(&format!(
            "the cloud database is at schema {newer}, written by a newer edge; this binary \
             knows schemas up to {}",
            latest(db)
        )),
        "{chain}"
    );
    assert_eq!(
        edge_sql::exit_code(&err),
        Some(edge_sql::EXIT_SCHEMA_REFUSED)
    );
    assert_eq!(applied(&args).await, before, "nothing was written");
    assert!(!args.data_dir.join("backups").exists());
}
on_both_backends!(a_cloud_database_from_a_newer_edge_is_refused_untouched);

/// Books the schema before runs wrote (a row per held seq), to upgrade:
/// held 1–100 and 103–150, 101 rejected, 200 dropped, the watermark at 101.
const ROW_PER_SEQ_BOOKS: &str = "\
    INSERT INTO site_books (site_id, contiguous_upto, versions_written) VALUES ('camp-3', 101, 148); \
    INSERT INTO seq_coverage (site_id, seq, status, reason) VALUES \
    ('camp-3', 101, 'rejected', 'a bad humidity'), ('camp-3', 200, 'dropped', 'storage full')";

/// Held, rejected and dropped seqs, the highest seq and the highest
/// contiguous one.
fn counts(books: &Coverage) -> (u64, u64, u64, u64, u64) {
    (
        books.held_seqs,
        books.rejected_seqs,
        books.dropped_seqs,
        books.max_seq,
        books.highest_contiguous_seq,
    )
}

/// A populated database of the schema that booked each held seq in a row
/// of its own is upgraded in place to runs, on both backends: the books
/// read the same afterwards and go on from there.
async fn held_seqs_booked_a_row_each_are_upgraded_to_runs(db: &TestDatabase) {
    let args = TestCloud::args(db);
    std::fs::create_dir_all(&args.data_dir).expect("data dir");
    let previous = |mut migrator: sqlx::migrate::Migrator| {
        migrator.migrations = Cow::Owned(migrator.iter().take(5).cloned().collect());
        migrator
    };
    let held: Vec<String> = (1..=100)
        .chain(103..=150)
        .map(|seq| format!("('{SITE}', {seq}, 'held')"))
        .collect();
    let books = format!(
        "INSERT INTO seq_coverage (site_id, seq, status) VALUES {}; {ROW_PER_SEQ_BOOKS}",
        held.join(", ")
    );
    match &args.database_url {
        Some(url) => {
            let pool = sqlx::PgPool::connect(url).await.expect("postgres");
            let schema = previous(sqlx::migrate!("./migrations/postgres"));
            schema.run(&pool).await.expect("schema 5");
            sqlx::raw_sql(&books).execute(&pool).await.expect("books");
            pool.close().await;
        }
        None => {
            let pool = sqlite(&args.data_dir.join("cloud.db")).await;
            let schema = previous(sqlx::migrate!("./migrations/sqlite"));
            schema.run(&pool).await.expect("schema 5");
            sqlx::raw_sql(&books).execute(&pool).await.expect("books");
            pool.close().await;
        }
    }

    let cloud = TestCloud::start_with(args.clone()).await;
    let books = cloud.coverage(SITE).await;
    assert_eq!(counts(&books), (148, 1, 1, 200, 101));
    assert_eq!(
        books.gaps,
        vec![
            SeqRange {
                first: 102,
                last: 102
            },
            SeqRange {
                first: 151,
                last: 199
            }
        ]
    );

    // Filling the gaps joins the upgraded runs; seqs held already stay
    // held once, and the rejected and dropped ones, pushed after all,
    // become held.
    cloud
        .push_ok(
            SITE,
            "after-upgrade",
            &batch(SITE, (100..=103).chain(151..=200)),
        )
        .await;
    let books = cloud.coverage(SITE).await;
    assert_eq!(counts(&books), (200, 0, 0, 200, 200));
    assert!(books.gaps.is_empty(), "{:?}", books.gaps);
    cloud.stop().await;
    let all: Vec<i64> = applied(&args).await.into_iter().map(|(v, _)| v).collect();
    assert_eq!(all, (1..=latest(db)).collect::<Vec<i64>>());
}

on_both_backends!(held_seqs_booked_a_row_each_are_upgraded_to_runs);

/// Every message in `err`'s chain of sources, one per line.
fn anyhow_like(err: &(dyn std::error::Error + 'static)) -> String {
    let mut lines = vec![err.to_string()];
    let mut next = err.source();
    while let Some(source) = next {
        lines.push(source.to_string());
        next = source.source();
    }
    lines.join("\n")
}

#[tokio::test]
async fn an_old_cloud_database_is_backed_up_before_it_is_migrated() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let args = TestCloud::args(&db);
    std::fs::create_dir_all(&args.data_dir).expect("data dir");
    let file = args.data_dir.join("cloud.db");
    let pool = sqlite(&file).await;
    let mut first = sqlx::migrate!("./migrations/sqlite");
    first.migrations = Cow::Owned(first.iter().take(1).cloned().collect());
    first.run(&pool).await.expect("schema 1");
    pool.close().await;

    let cloud = TestCloud::start_with(args.clone()).await;
    cloud.push_ok(SITE, "one", &batch(SITE, 1..=3)).await;
    cloud.stop().await;
    let all: Vec<i64> = applied(&args).await.into_iter().map(|(v, _)| v).collect();
    assert_eq!(all, (1..=latest(&db)).collect::<Vec<i64>>());

    let copies: Vec<std::path::PathBuf> = std::fs::read_dir(args.data_dir.join("backups"))
        .expect("a backup directory")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    let name = copies[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("cloud-") && name.ends_with(&format!("-schema-1-to-{}.db", latest(&db))),
        "{name}"
    );
    let old = sqlite(&copies[0]).await;
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(&old)
        .await
        .expect("the copy's bookkeeping");
    old.close().await;
    assert_eq!(
        versions,
        vec![1],
        "the copy is the database before the upgrade"
    );
    db.cleanup().await;
}
