//! Schema migrations for databases nobody watches.
//!
//! A site upgrades by starting a newer binary on the database the older one
//! left; the binary migrates the schema at start-up. Three things can go
//! wrong there, and each has one answer:
//!
//! - **The upgrade goes wrong** (a migration with a bug, a binary that must
//!   be rolled back). Before the first pending migration touches a database
//!   that already holds a schema (so possibly data), SQLite is copied
//!   consistently to `backups/` beside the database file ([`backup`]). If the
//!   copy cannot be made (a full disk is an ordinary day at a site), nothing
//!   is migrated and start-up fails naming the cause, unless the operator
//!   opted out ([`BackupPolicy::Off`]): migrating unprotected is a decision,
//!   never a fallback. PostgreSQL is backed up by the operator (`pg_dump`,
//!   see `docs/deploy.md`); a warning says so before migrating. A fresh
//!   database (no migration applied yet) has nothing to protect.
//! - **The process dies mid-way** (SIGKILL, power cut, an OOM kill). Each
//!   migration runs in one transaction together with its bookkeeping row in
//!   `_sqlx_migrations`, so it is either fully applied and recorded or not at
//!   all; the next start sees the schema the last commit left and applies
//!   what is still pending. Migrations that ask to run outside a transaction
//!   (`-- no-transaction`) are refused before anything runs.
//! - **An older binary starts on a newer database** (a rollback without a
//!   restore). Refused before anything is written, with a message saying
//!   which schema the database is at, which this binary knows, and where the
//!   backup is; the binaries exit with [`EXIT_SCHEMA_REFUSED`].
//!
//! # Invariants
//!
//! - Nothing is written (not even the bookkeeping table) until every check
//!   passed and, where required, the backup is complete.
//! - A backup file whose name looks complete is complete: it is written
//!   under a hidden temporary name, synced, then renamed ([`backup`]).
//! - The bookkeeping stays sqlx's own: the same `_sqlx_migrations` table,
//!   columns and checksums, so databases migrated by `sqlx::migrate!` before
//!   this runner existed are read as they are, and the other way round.
//!   Migrations are applied here rather than by `Migrator::run` only so
//!   that the checks above come first, and so that a test can stop a
//!   migration between its statements and its commit.
//!
//! # What sqlx 0.8.6 does, and why it is kept
//!
//! `Migrator::run` locks (PostgreSQL: a session advisory lock keyed on the
//! database name; SQLite: nothing), creates `_sqlx_migrations`, refuses a
//! row with `success = false` (`Dirty`; sqlx 0.8 never writes one, only
//! tools older than 0.6 did), refuses applied versions it does not know
//! (`VersionMissing`, with no hint of what to do) and changed checksums,
//! then applies each pending migration: SQLite always inside
//! `BEGIN … COMMIT` with the `INSERT` of its row (it ignores
//! `-- no-transaction`); PostgreSQL the same unless the file starts with
//! `-- no-transaction`. `execution_time` is written `-1` inside the
//! transaction and updated after the commit, outside it. This runner does
//! the same steps in the same transactions, with the same advisory lock on
//! PostgreSQL, so a sqlx-migrated database and this runner never disagree.
//!
//! # Fault injection
//!
//! `EDGE_MIGRATION_PAUSE` makes the runner stop, for a test to kill it, at a
//! named point: `backup` (the SQLite copy is written under its temporary
//! name, not yet synced or renamed) or a migration version such as `2`
//! (that migration's statements and bookkeeping row are executed, its
//! transaction not committed). It prints one line on stderr starting with
//! [`PAUSE_ANNOUNCEMENT`] and waits forever. Unset in production; nothing
//! else reads it.

mod backup;
mod error;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::ValueEnum;
use sqlx::migrate::{Migrate, Migration, Migrator};
use sqlx::{Connection, Pool, Postgres, Sqlite};

pub use error::{BackupError, EXIT_BACKUP_FAILED, EXIT_SCHEMA_REFUSED, MigrateError, exit_code};

/// The environment variable naming the point where a test stops the runner.
pub const PAUSE_VAR: &str = "EDGE_MIGRATION_PAUSE";

/// The start of the stderr line announcing that the runner stopped at the
/// point [`PAUSE_VAR`] named.
pub const PAUSE_ANNOUNCEMENT: &str = "edge-sql: paused at";

/// Whether a database that already holds a schema is backed up before
/// migrations change it. SQLite only: PostgreSQL is backed up with
/// `pg_dump` by the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum BackupPolicy {
    /// Copy the database first; if the copy cannot be made, refuse to
    /// migrate and say why. Default.
    #[default]
    Required,
    /// Migrate without a copy (a site that knows it has no room, and has
    /// its own backup).
    Off,
}

/// What to migrate and how: one per database a binary owns.
#[derive(Debug, Clone, Copy)]
pub struct Upgrade<'a> {
    /// The database in messages, e.g. `site database`.
    pub database: &'static str,
    /// The migrations this binary knows (`sqlx::migrate!`).
    pub migrator: &'a Migrator,
    /// Whether to back up first.
    pub backup: BackupPolicy,
    /// The flag that turns the backup off, named in messages
    /// (e.g. `--migration-backup`).
    pub backup_flag: &'static str,
    /// Its environment variable (e.g. `EDGE_MIGRATION_BACKUP`).
    pub backup_env: &'static str,
}

/// A service's schema: its migrations for each backend and how its
/// upgrade is named in messages. Each service declares one (a `static`) and
/// brings its database to it at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The database in messages, e.g. `site database`.
    pub database: &'static str,
    /// The SQLite schema's migrations (`sqlx::migrate!`).
    pub sqlite: &'static Migrator,
    /// The PostgreSQL schema's migrations.
    pub postgres: &'static Migrator,
    /// The flag that turns the backup off, named in messages
    /// (e.g. `--migration-backup`).
    pub backup_flag: &'static str,
    /// Its environment variable (e.g. `EDGE_MIGRATION_BACKUP`).
    pub backup_env: &'static str,
}

impl Schema {
    /// The upgrade to `migrator` of this schema, backed up as `backup` says.
    fn upgrade(&self, migrator: &'static Migrator, backup: BackupPolicy) -> Upgrade<'static> {
        Upgrade {
            database: self.database,
            migrator,
            backup,
            backup_flag: self.backup_flag,
            backup_env: self.backup_env,
        }
    }

    /// Brings the SQLite database `file`, open on `pool`, to
    /// [`Schema::sqlite`] (see [`migrate_sqlite`]).
    pub async fn migrate_sqlite(
        &self,
        pool: &Pool<Sqlite>,
        file: &Path,
        backup: BackupPolicy,
    ) -> Result<Migrated, MigrateError> {
        migrate_sqlite(pool, file, &self.upgrade(self.sqlite, backup)).await
    }

    /// Brings the PostgreSQL database behind `pool` to
    /// [`Schema::postgres`] (see [`migrate_postgres`]).
    pub async fn migrate_postgres(
        &self,
        pool: &Pool<Postgres>,
        backup: BackupPolicy,
    ) -> Result<Migrated, MigrateError> {
        migrate_postgres(pool, &self.upgrade(self.postgres, backup)).await
    }
}

/// What a start-up migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The schema version found (`None`: a fresh database).
    pub from: Option<i64>,
    /// The schema version now (the newest this binary knows).
    pub to: i64,
    /// The versions applied now, in order.
    pub applied: Vec<i64>,
    /// The backup written first, if any.
    pub backup: Option<PathBuf>,
}

/// Brings the SQLite database `file` (as opened by `pool`) to the newest
/// schema `upgrade.migrator` knows: checks, backs up to `backups/` beside
/// `file` when it already holds a schema, then applies each pending
/// migration in its own transaction.
pub async fn migrate_sqlite(
    pool: &Pool<Sqlite>,
    file: &Path,
    upgrade: &Upgrade<'_>,
) -> Result<Migrated, MigrateError> {
    let sql = sql_error(upgrade);
    let mut conn = pool.acquire().await.map_err(sql)?;
    let backups = backup::directory(file);
    let restore = format!(
        "the newest backup in {} (see docs/deploy.md)",
        backups.display()
    );
    let plan = inspect::<Sqlite>(&mut conn, upgrade, &restore).await?;
    let mut migrated = plan.outcome();
    if plan.pending.is_empty() {
        return Ok(migrated);
    }
    if let Some(from) = plan.current {
        migrated.backup = match upgrade.backup {
            // `:memory:` and friends have no file to copy, and nothing that
            // outlives the process to protect.
            BackupPolicy::Required if file.is_file() => {
                let path =
                    backup::sqlite(&mut conn, file, &backups, from, plan.target, upgrade).await?;
                tracing::info!(
                    backup = %path.display(),
                    from,
                    to = plan.target,
                    "backed up the {} before migrating it; to undo the upgrade, stop, and copy \
                     this file over the database (deleting its -wal and -shm files)",
                    upgrade.database
                );
                Some(path)
            }
            BackupPolicy::Required => None,
            BackupPolicy::Off => {
                tracing::warn!(
                    from,
                    to = plan.target,
                    "migrating the {} WITHOUT a backup ({} off)",
                    upgrade.database,
                    upgrade.backup_flag
                );
                None
            }
        };
    }
    apply::<Sqlite>(&mut conn, upgrade, &plan).await?;
    Ok(migrated)
}

/// Brings the PostgreSQL database behind `pool` to the newest schema
/// `upgrade.migrator` knows, under sqlx's advisory lock (so two processes
/// never migrate at once): checks, warns that no automatic backup is made,
/// then applies each pending migration in its own transaction.
pub async fn migrate_postgres(
    pool: &Pool<Postgres>,
    upgrade: &Upgrade<'_>,
) -> Result<Migrated, MigrateError> {
    let sql = sql_error(upgrade);
    let mut conn = pool.acquire().await.map_err(sql)?;
    conn.lock().await.map_err(|e| migrate_error(upgrade, e))?;
    let result = async {
        let restore = "the pg_dump taken before the upgrade (see docs/deploy.md)";
        let plan = inspect::<Postgres>(&mut conn, upgrade, restore).await?;
        if let (Some(from), false) = (plan.current, plan.pending.is_empty()) {
            tracing::warn!(
                from,
                to = plan.target,
                "migrating the {} on PostgreSQL; PostgreSQL is not backed up automatically: \
                 the pg_dump taken before the upgrade is the way back (docs/deploy.md)",
                upgrade.database
            );
        }
        apply::<Postgres>(&mut conn, upgrade, &plan).await?;
        Ok(plan.outcome())
    }
    .await;
    // A failed migration's transaction is rolled back first (sqlx does that
    // on the connection's next use), then the lock is released; if the
    // connection is gone, so are both.
    let unlocked = conn.unlock().await;
    let migrated = result?;
    unlocked.map_err(|e| migrate_error(upgrade, e))?;
    Ok(migrated)
}

/// What differs between the backends here.
pub(crate) trait Backend: crate::SqlDatabase {
    /// One row, one BIGINT: 1 when `_sqlx_migrations` exists, else 0.
    const HAS_BOOKKEEPING: &'static str;
}

impl Backend for Sqlite {
    const HAS_BOOKKEEPING: &'static str = "SELECT COUNT(*) FROM sqlite_master \
         WHERE type = 'table' AND name = '_sqlx_migrations'";
}

impl Backend for Postgres {
    // Resolved through the search path, as sqlx's unqualified name is.
    const HAS_BOOKKEEPING: &'static str =
        "SELECT CASE WHEN to_regclass('_sqlx_migrations') IS NULL THEN 0 ELSE 1 END::BIGINT";
}

/// What `inspect` found to do.
#[derive(Debug)]
struct Plan<'m> {
    /// The newest applied version (`None`: fresh).
    current: Option<i64>,
    /// The newest version the binary knows.
    target: i64,
    /// Known migrations not applied yet, in version order.
    pending: Vec<&'m Migration>,
}

impl Plan<'_> {
    fn outcome(&self) -> Migrated {
        Migrated {
            from: self.current,
            to: self.target,
            applied: self.pending.iter().map(|m| m.version).collect(),
            backup: None,
        }
    }
}

/// One row of `_sqlx_migrations`.
#[derive(Debug, Clone)]
struct Applied {
    version: i64,
    checksum: Vec<u8>,
    success: bool,
}

/// Reads what is applied (writing nothing) and decides what to do.
#[crate::sql_bounds]
async fn inspect<'m, DB: Backend>(
    conn: &mut DB::Connection,
    upgrade: &Upgrade<'m>,
    restore: &str,
) -> Result<Plan<'m>, MigrateError> {
    let sql = sql_error(upgrade);
    let (exists,): (i64,) = sqlx::query_as(DB::HAS_BOOKKEEPING)
        .fetch_one(&mut *conn)
        .await
        .map_err(sql)?;
    let applied: Vec<Applied> = if exists > 0 {
        let rows: Vec<(i64, Vec<u8>, bool)> = sqlx::query_as(
            "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(sql)?;
        rows.into_iter()
            .map(|(version, checksum, success)| Applied {
                version,
                checksum,
                success,
            })
            .collect()
    } else {
        Vec::new()
    };
    plan(upgrade, &applied, restore)
}

/// Checks what is applied against what the binary knows, in the order that
/// gives the most useful message first, and lists what is pending.
fn plan<'m>(
    upgrade: &Upgrade<'m>,
    applied: &[Applied],
    restore: &str,
) -> Result<Plan<'m>, MigrateError> {
    let database = upgrade.database;
    let known: HashMap<i64, &'m Migration> = upgrade
        .migrator
        .migrations
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| (m.version, m))
        .collect();
    let target = known.keys().copied().max().unwrap_or(0);
    let current = applied.iter().map(|a| a.version).max();
    if let Some(at) = current.filter(|&at| at > target) {
        return Err(MigrateError::SchemaTooNew {
            database,
            at,
            known: target,
            restore: restore.to_owned(),
        });
    }
    for row in applied {
        let Some(migration) = known.get(&row.version) else {
            return Err(MigrateError::UnknownMigration {
                database,
                version: row.version,
                restore: restore.to_owned(),
            });
        };
        if !row.success {
            return Err(MigrateError::Dirty {
                database,
                version: row.version,
                restore: restore.to_owned(),
            });
        }
        if *migration.checksum != *row.checksum {
            return Err(MigrateError::ChangedMigration {
                database,
                version: row.version,
            });
        }
    }
    let mut pending: Vec<&'m Migration> = known
        .values()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .copied()
        .collect();
    pending.sort_by_key(|m| m.version);
    if let Some(m) = pending.iter().find(|m| m.no_tx) {
        return Err(MigrateError::NotTransactional {
            database,
            version: m.version,
        });
    }
    Ok(Plan {
        current,
        target,
        pending,
    })
}

/// Applies every pending migration, each in one transaction with its
/// bookkeeping row, exactly as sqlx records it.
#[crate::sql_bounds]
async fn apply<DB: Backend>(
    conn: &mut DB::Connection,
    upgrade: &Upgrade<'_>,
    plan: &Plan<'_>,
) -> Result<(), MigrateError>
where
    DB::Connection: Migrate,
{
    if plan.pending.is_empty() {
        return Ok(());
    }
    conn.ensure_migrations_table()
        .await
        .map_err(|e| migrate_error(upgrade, e))?;
    let mut at = plan.current;
    for migration in &plan.pending {
        let failed = |error: sqlx::Error| MigrateError::Apply {
            database: upgrade.database,
            version: migration.version,
            description: migration.description.to_string(),
            at: at.unwrap_or(0),
            error,
        };
        tracing::info!(
            version = migration.version,
            "applying migration {} ({}) to the {}",
            migration.version,
            migration.description,
            upgrade.database
        );
        let started = Instant::now();
        let mut tx = Connection::begin(&mut *conn).await.map_err(failed)?;
        sqlx::raw_sql(&migration.sql)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ($1, $2, TRUE, $3, -1)",
        )
        .bind(migration.version)
        .bind(migration.description.to_string())
        .bind(migration.checksum.to_vec())
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
        pause_at(&migration.version.to_string()).await;
        tx.commit().await.map_err(failed)?;
        at = Some(migration.version);
        // Lineage only, outside the transaction as in sqlx: a kill here
        // leaves -1, nothing worse.
        let nanos = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
        if let Err(err) =
            sqlx::query("UPDATE _sqlx_migrations SET execution_time = $1 WHERE version = $2")
                .bind(nanos)
                .bind(migration.version)
                .execute(&mut *conn)
                .await
        {
            tracing::warn!(%err, version = migration.version, "cannot record a migration's duration");
        }
    }
    tracing::info!(
        from = ?plan.current,
        to = plan.target,
        "the {} is at schema {}",
        upgrade.database,
        plan.target
    );
    Ok(())
}

/// Stops here for good, announcing it on stderr, when [`PAUSE_VAR`] names
/// `point`: the fault-injection seam of the tests that kill a migration.
pub(crate) async fn pause_at(point: &str) {
    if std::env::var(PAUSE_VAR).is_ok_and(|wanted| wanted == point) {
        // stderr rather than the log: the announcement must reach the test
        // whatever the log filter says.
        eprintln!("{PAUSE_ANNOUNCEMENT} {point} ({PAUSE_VAR}); waiting to be killed");
        std::future::pending::<()>().await;
    }
}

/// Maps a failed query while reading or recording the schema.
fn sql_error(upgrade: &Upgrade<'_>) -> impl Fn(sqlx::Error) -> MigrateError + Copy + use<> {
    let database = upgrade.database;
    move |error| MigrateError::Sql { database, error }
}

/// Maps an error of sqlx's own bookkeeping calls (lock, table creation).
fn migrate_error(upgrade: &Upgrade<'_>, error: sqlx::migrate::MigrateError) -> MigrateError {
    MigrateError::Bookkeeping {
        database: upgrade.database,
        error,
    }
}

#[cfg(test)]
mod tests;
