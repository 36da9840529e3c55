//! The site database's schema: the migrations in `migrations/` (one set
//! per backend) and the one call that brings a database to them at
//! start-up, through [`edge_sql::migrate`]: a SQLite database that already
//! holds a schema is backed up to `backups/` beside its file first, each
//! migration commits whole or not at all, and a database written by a newer
//! binary is refused before anything touches it.

use std::path::Path;

use edge_sql::migrate::{Migrated, Upgrade};
use sqlx::migrate::Migrator;
use sqlx::{Pool, Postgres, Sqlite};

use super::{DbConfig, DbError};

/// The SQLite schema's migrations.
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The PostgreSQL schema's migrations.
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// How the site database is upgraded, named in messages after the flag
/// that turns the backup off.
fn upgrade<'a>(migrator: &'a Migrator, config: &DbConfig) -> Upgrade<'a> {
    Upgrade {
        database: "site database",
        migrator,
        backup: config.migration_backup,
        backup_flag: "--migration-backup",
        backup_env: "EDGE_MIGRATION_BACKUP",
    }
}

/// Brings the SQLite database `file`, open on `write`, to [`SQLITE`].
pub(super) async fn migrate_sqlite(
    write: &Pool<Sqlite>,
    file: &Path,
    config: &DbConfig,
) -> Result<Migrated, DbError> {
    Ok(edge_sql::migrate_sqlite(write, file, &upgrade(&SQLITE, config)).await?)
}

/// Brings the PostgreSQL database behind `write` to [`POSTGRES`].
pub(super) async fn migrate_postgres(
    write: &Pool<Postgres>,
    config: &DbConfig,
) -> Result<Migrated, DbError> {
    Ok(edge_sql::migrate_postgres(write, &upgrade(&POSTGRES, config)).await?)
}
