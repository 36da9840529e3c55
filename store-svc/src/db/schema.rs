//! The site database's schema: the migrations in `migrations/` (one set
//! per backend) and the one call that brings a database to them at
//! start-up, through [`edge_sql::migrate`]: a SQLite database that already
//! holds a schema is backed up to `backups/` beside its file first, each
//! migration commits whole or not at all, and a database written by a newer
//! binary is refused before anything touches it.

use edge_sql::Schema;
use sqlx::migrate::Migrator;

/// The SQLite schema's migrations.
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The PostgreSQL schema's migrations.
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// The site database's schema, its upgrade named in messages after the
/// flag that turns the backup off.
pub(super) static SCHEMA: Schema = Schema {
    database: "site database",
    sqlite: &SQLITE,
    postgres: &POSTGRES,
    backup_flag: "--migration-backup",
    backup_env: "EDGE_MIGRATION_BACKUP",
};
