//! The cloud database's schema: the migrations in `migrations/` (one set
//! per backend) and the one call that brings a database to them at
//! start-up, through [`edge_sql::migrate`], exactly as the site's store
//! does: a SQLite database that already holds a schema is backed up to
//! `backups/` beside its file first, each migration commits whole or not at
//! all, and a database written by a newer binary is refused untouched.

use edge_sql::Schema;
use sqlx::migrate::Migrator;

/// The SQLite schema's migrations.
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The PostgreSQL schema's migrations.
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// The cloud database's schema, its upgrade named in messages after the
/// flag that turns the backup off.
pub(super) static SCHEMA: Schema = Schema {
    database: "cloud database",
    sqlite: &SQLITE,
    postgres: &POSTGRES,
    backup_flag: "--cloud-migration-backup",
    backup_env: "EDGE_CLOUD_MIGRATION_BACKUP",
};
