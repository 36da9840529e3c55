//! The runner on real SQLite files: what is refused, what a failing
//! migration leaves, where backups go and which are kept. PostgreSQL and
//! SIGKILL are exercised through the real binaries (store-svc's
//! `tests/migrations.rs`).

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::backup::{self, KEEP_SCHEMAS};
use super::{BackupPolicy, EXIT_BACKUP_FAILED, EXIT_SCHEMA_REFUSED, MigrateError, Upgrade};

/// Migrations 1..=n of a small schema; migration 3 moves data.
fn migrations(n: usize) -> Migrator {
    let all = [
        "CREATE TABLE readings (seq INTEGER PRIMARY KEY, value REAL NOT NULL);",
        "ALTER TABLE readings ADD COLUMN note TEXT;",
        "CREATE TABLE totals (n INTEGER NOT NULL); INSERT INTO totals SELECT COUNT(*) FROM readings;",
        "CREATE INDEX readings_by_value ON readings (value);",
    ];
    Migrator {
        migrations: Cow::Owned(
            all.iter()
                .take(n)
                .enumerate()
                .map(|(i, sql)| {
                    Migration::new(
                        i as i64 + 1,
                        format!("step {}", i + 1).into(),
                        MigrationType::Simple,
                        (*sql).into(),
                        false,
                    )
                })
                .collect(),
        ),
        ..Migrator::DEFAULT
    }
}

fn upgrade(migrator: &Migrator, backup: BackupPolicy) -> Upgrade<'_> {
    Upgrade {
        database: "test database",
        migrator,
        backup,
        backup_flag: "--migration-backup",
        backup_env: "EDGE_MIGRATION_BACKUP",
    }
}

async fn open(file: &Path) -> SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(file)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal),
        )
        .await
        .expect("open the test database")
}

async fn applied(pool: &SqlitePool) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .expect("bookkeeping")
}

async fn has_table(pool: &SqlitePool, name: &str) -> bool {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .expect("catalog");
    n > 0
}

/// A database at schema 2 with 10 readings, the way `sqlx::migrate!` left it.
async fn at_schema_2(file: &Path) -> SqlitePool {
    let pool = open(file).await;
    migrations(2).run(&pool).await.expect("sqlx migrates to 2");
    for seq in 1..=10 {
        sqlx::query("INSERT INTO readings (seq, value) VALUES ($1, 20.5)")
            .bind(seq)
            .execute(&pool)
            .await
            .expect("reading");
    }
    pool
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn a_fresh_database_is_migrated_without_a_backup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edge.db");
    let pool = open(&file).await;
    let migrator = migrations(4);
    let done = super::migrate_sqlite(&pool, &file, &upgrade(&migrator, BackupPolicy::Required))
        .await
        .expect("migrates");
    assert_eq!(done.from, None);
    assert_eq!((done.to, done.applied.clone()), (4, vec![1, 2, 3, 4]));
    assert_eq!(done.backup, None);
    assert!(!dir.path().join("backups").exists());
    assert_eq!(applied(&pool).await, vec![1, 2, 3, 4]);
    // What sqlx itself would check next time: nothing pending, all known.
    migrator
        .run(&pool)
        .await
        .expect("sqlx agrees with the bookkeeping");
}

#[tokio::test]
async fn an_upgrade_is_backed_up_first_and_the_copy_is_the_old_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edge.db");
    let pool = at_schema_2(&file).await;
    let migrator = migrations(4);
    let done = super::migrate_sqlite(&pool, &file, &upgrade(&migrator, BackupPolicy::Required))
        .await
        .expect("migrates");
    assert_eq!((done.from, done.applied.clone()), (Some(2), vec![3, 4]));
    let copy = done.backup.expect("a backup");
    assert_eq!(copy.parent(), Some(dir.path().join("backups").as_path()));
    let names = files(&dir.path().join("backups"));
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(
        backup::parse("edge", &names[0]).is_some_and(|(_, from)| from == 2),
        "{names:?}"
    );
    assert!(names[0].ends_with("-schema-2-to-4.db"), "{names:?}");

    let old = open(&copy).await;
    assert_eq!(applied(&old).await, vec![1, 2]);
    assert!(!has_table(&old, "totals").await);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM readings")
        .fetch_one(&old)
        .await
        .expect("count");
    assert_eq!(n, 10);
    let total: i64 = sqlx::query_scalar("SELECT n FROM totals")
        .fetch_one(&pool)
        .await
        .expect("migrated data");
    assert_eq!(total, 10);
}

#[tokio::test]
async fn a_failing_migration_is_rolled_back_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edge.db");
    let pool = at_schema_2(&file).await;
    let mut migrator = migrations(2);
    let mut all = migrator.migrations.to_vec();
    // Its first statement succeeds, its second fails.
    all.push(Migration::new(
        3,
        "broken".into(),
        MigrationType::Simple,
        "CREATE TABLE totals (n INTEGER); INSERT INTO no_such_table VALUES (1);".into(),
        false,
    ));
    migrator.migrations = Cow::Owned(all);
    let err = super::migrate_sqlite(&pool, &file, &upgrade(&migrator, BackupPolicy::Off))
        .await
        .expect_err("migration 3 fails");
    assert!(
        matches!(
            err,
            MigrateError::Apply {
                version: 3,
                at: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("stays at schema 2"), "{err}");
    assert_eq!(err.exit_code(), None);
    assert_eq!(applied(&pool).await, vec![1, 2]);
    assert!(
        !has_table(&pool, "totals").await,
        "half a migration was kept"
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edge.db");
    let pool = at_schema_2(&file).await;
    migrations(4)
        .run(&pool)
        .await
        .expect("a newer binary migrated");
    let older = migrations(3);
    let err = super::migrate_sqlite(&pool, &file, &upgrade(&older, BackupPolicy::Required))
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("the test database is at schema 4, written by a newer edge")
            && text.contains("knows schemas up to 3")
            && text.contains(&dir.path().join("backups").display().to_string()),
        "{text}"
    );
    assert_eq!(err.exit_code(), Some(EXIT_SCHEMA_REFUSED));
    assert_eq!(super::exit_code(&err), Some(EXIT_SCHEMA_REFUSED));
    assert_eq!(applied(&pool).await, vec![1, 2, 3, 4]);
    assert!(!dir.path().join("backups").exists());
}

#[tokio::test]
async fn other_builds_and_edited_migrations_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edge.db");
    let pool = at_schema_2(&file).await;

    // A build that numbered its migrations differently: 2 is unknown here.
    let mut other = migrations(4);
    let mut all = other.migrations.to_vec();
    all.remove(1);
    other.migrations = Cow::Owned(all);
    let err = super::migrate_sqlite(&pool, &file, &upgrade(&other, BackupPolicy::Required))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, MigrateError::UnknownMigration { version: 2, .. }),
        "{err}"
    );

    // Migration 2 edited after it was released.
    let mut edited = migrations(3);
    let mut all = edited.migrations.to_vec();
    all[1] = Migration::new(
        2,
        "step 2".into(),
        MigrationType::Simple,
        "ALTER TABLE readings ADD COLUMN remark TEXT;".into(),
        false,
    );
    edited.migrations = Cow::Owned(all);
    let err = super::migrate_sqlite(&pool, &file, &upgrade(&edited, BackupPolicy::Required))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, MigrateError::ChangedMigration { version: 2, .. }),
        "{err}"
    );

    // A row an old tool left behind as failed.
    sqlx::query("UPDATE _sqlx_migrations SET success = FALSE WHERE version = 2")
        .execute(&pool)
        .await
        .expect("mark dirty");
    let err = super::migrate_sqlite(
        &pool,
        &file,
        &upgrade(&migrations(3), BackupPolicy::Required),
    )
    .await
    .expect_err("refused");
    assert!(
        matches!(err, MigrateError::Dirty { version: 2, .. }),
        "{err}"
    );
    assert_eq!(err.exit_code(), Some(EXIT_SCHEMA_REFUSED));
    assert!(!has_table(&pool, "totals").await);
    assert!(!dir.path().join("backups").exists());
}

#[tokio::test]
async fn a_migration_outside_a_transaction_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edge.db");
    let pool = at_schema_2(&file).await;
    let mut migrator = migrations(2);
    let mut all = migrator.migrations.to_vec();
    all.push(Migration::new(
        3,
        "concurrently".into(),
        MigrationType::Simple,
        "-- no-transaction\nCREATE TABLE totals (n INTEGER);".into(),
        true,
    ));
    migrator.migrations = Cow::Owned(all);
    let err = super::migrate_sqlite(&pool, &file, &upgrade(&migrator, BackupPolicy::Required))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, MigrateError::NotTransactional { version: 3, .. }),
        "{err}"
    );
    assert_eq!(applied(&pool).await, vec![1, 2]);
    assert!(!dir.path().join("backups").exists());
}

#[tokio::test]
async fn no_backup_no_migration_unless_opted_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edge.db");
    let pool = at_schema_2(&file).await;
    // A file where the backup directory should be: the copy cannot be made.
    std::fs::write(dir.path().join("backups"), b"in the way").expect("blocker");
    let migrator = migrations(4);
    let err = super::migrate_sqlite(&pool, &file, &upgrade(&migrator, BackupPolicy::Required))
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains("cannot back up the test database before migrating it from schema 2 to 4")
            && text.contains("cannot create the backup directory")
            && text.contains("nothing was migrated")
            && text.contains("--migration-backup off (EDGE_MIGRATION_BACKUP=off)"),
        "{text}"
    );
    assert_eq!(err.exit_code(), Some(EXIT_BACKUP_FAILED));
    assert_eq!(applied(&pool).await, vec![1, 2]);

    let done = super::migrate_sqlite(&pool, &file, &upgrade(&migrator, BackupPolicy::Off))
        .await
        .expect("migrates when told to");
    assert_eq!((done.applied, done.backup), (vec![3, 4], None));
    assert_eq!(applied(&pool).await, vec![1, 2, 3, 4]);
}

#[test]
fn a_copy_needs_room_for_the_whole_database_and_the_migration_after_it() {
    // Small databases: the copy plus 64 MiB.
    assert!(backup::fits(10 << 20, 74 << 20));
    assert!(!backup::fits(10 << 20, (74 << 20) - 1));
    // Large ones: the copy plus a tenth.
    assert!(backup::fits(10 << 30, 11 << 30));
    assert!(!backup::fits(10 << 30, (11 << 30) - 1));
}

#[test]
fn backup_names_are_recognised_exactly() {
    assert_eq!(
        backup::parse("edge", "edge-20261123T000000Z-schema-5-to-7.db"),
        Some(("20261123T000000Z".to_owned(), 5))
    );
    for other in [
        ".edge-20261123T000000Z-schema-5-to-7.db.partial",
        "cloud-20261123T000000Z-schema-5-to-7.db",
        "edge-20261123T000000Z-schema-5-to-7.db-wal",
        "edge-2026-schema-5-to-7.db",
        "edge-20261123T000000Z-schema-x-to-7.db",
        "edge.db",
    ] {
        assert_eq!(backup::parse("edge", other), None, "{other}");
    }
}

#[test]
fn the_newest_copy_of_the_three_newest_schemas_is_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let name = |day: u32, from: i64| format!("edge-202611{day:02}T000000Z-schema-{from}-to-9.db");
    // A crash loop at schema 4 (days 1-3), then schemas 5, 6, 7.
    let all = [(1, 4), (2, 4), (3, 4), (4, 5), (5, 6), (6, 6), (7, 7)];
    let others = ["cloud-20261101T000000Z-schema-1-to-2.db", "notes.txt"];
    for file in all
        .iter()
        .map(|&(d, f)| name(d, f))
        .chain(others.map(String::from))
    {
        std::fs::write(dir.path().join(file), b"copy").expect("file");
    }
    backup::prune(dir.path(), "edge").expect("prune");
    let mut want: Vec<String> = [(4, 5), (6, 6), (7, 7)]
        .iter()
        .map(|&(d, f)| name(d, f))
        .chain(others.map(String::from))
        .collect();
    want.sort();
    assert_eq!(files(dir.path()), want);
    assert_eq!(KEEP_SCHEMAS, 3);
}

#[test]
fn backups_go_beside_the_database_file() {
    assert_eq!(
        backup::directory(Path::new("/data/edge.db")),
        PathBuf::from("/data/backups")
    );
    assert_eq!(
        backup::directory(Path::new("edge.db")),
        PathBuf::from("./backups")
    );
}
