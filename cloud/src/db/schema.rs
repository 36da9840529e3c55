//! The cloud database's schema: the migrations in `migrations/` (one set
//! per backend) and the one call that brings a database to them at
//! start-up, through [`edge_sql::migrate`], exactly as the site's store
//! does: a SQLite database that already holds a schema is backed up to
//! `backups/` beside its file first, each migration commits whole or not at
//! all, and a database written by a newer binary is refused untouched.

use std::path::Path;

use edge_sql::migrate::Upgrade;
use sqlx::migrate::Migrator;
use sqlx::{Pool, Postgres, Sqlite};

use super::{DbError, DbOptions};

/// The SQLite schema's migrations.
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The PostgreSQL schema's migrations.
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// How the cloud database is upgraded, named in messages after the flag
/// that turns the backup off.
fn upgrade<'a>(migrator: &'a Migrator, options: &DbOptions) -> Upgrade<'a> {
    Upgrade {
        database: "cloud database",
        migrator,
        backup: options.migration_backup,
        backup_flag: "--cloud-migration-backup",
        backup_env: "EDGE_CLOUD_MIGRATION_BACKUP",
    }
}

/// Brings the SQLite database `file`, open on `write`, to [`SQLITE`].
pub(super) async fn migrate_sqlite(
    write: &Pool<Sqlite>,
    file: &Path,
    options: &DbOptions,
) -> Result<(), DbError> {
    edge_sql::migrate_sqlite(write, file, &upgrade(&SQLITE, options)).await?;
    Ok(())
}

/// Brings the PostgreSQL database behind `write` to [`POSTGRES`].
pub(super) async fn migrate_postgres(
    write: &Pool<Postgres>,
    options: &DbOptions,
) -> Result<(), DbError> {
    edge_sql::migrate_postgres(write, &upgrade(&POSTGRES, options)).await?;
    Ok(())
}
