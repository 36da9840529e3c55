//! Why a database was not brought to the binary's schema, said so that an
//! operator at a site knows what to do next, and the exit codes the
//! binaries give the refusals (so a supervisor can tell "restarting will
//! not help" from a crash).

/// Exit code when the database is not one this binary may migrate: newer
/// than it, or written by a different build (`EX_DATAERR`). Restarting the
/// same binary never helps.
pub const EXIT_SCHEMA_REFUSED: u8 = 65;

/// Exit code when the backup before a migration could not be written
/// (`EX_CANTCREAT`): nothing was migrated; free space or opt out.
pub const EXIT_BACKUP_FAILED: u8 = 73;

/// The database was not brought to this binary's schema.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database was migrated by a newer binary.
    #[error(
        "the {database} is at schema {at}, written by a newer edge; this binary knows schemas up \
         to {known} and left the database untouched: run the newer binary, or restore {restore}"
    )]
    SchemaTooNew {
        /// Which database.
        database: &'static str,
        /// Its newest applied migration.
        at: i64,
        /// The newest migration this binary knows.
        known: i64,
        /// Where the way back is.
        restore: String,
    },
    /// A migration is applied that this binary does not have, below its
    /// newest one: a different build wrote it.
    #[error(
        "the {database} has migration {version} applied, which this binary does not have (a \
         different build of edge wrote it); the database was left untouched: run the binary that \
         wrote it, or restore {restore}"
    )]
    UnknownMigration {
        /// Which database.
        database: &'static str,
        /// The unknown version.
        version: i64,
        /// Where the way back is.
        restore: String,
    },
    /// A bookkeeping row says a migration failed half-way (only tools older
    /// than sqlx 0.6 wrote such rows).
    #[error(
        "the {database} records migration {version} as failed half-way; the database was left \
         untouched: restore {restore}"
    )]
    Dirty {
        /// Which database.
        database: &'static str,
        /// The failed version.
        version: i64,
        /// Where the way back is.
        restore: String,
    },
    /// An applied migration differs from this binary's copy of it.
    #[error(
        "migration {version} applied to the {database} differs from this binary's copy (a \
         released migration was edited); the database was left untouched: run the binary that \
         applied it"
    )]
    ChangedMigration {
        /// Which database.
        database: &'static str,
        /// The changed version.
        version: i64,
    },
    /// A pending migration asks to run outside a transaction, where a kill
    /// could leave it half-applied.
    #[error(
        "migration {version} of the {database} runs outside a transaction (`-- no-transaction`), \
         where a kill could leave it half-applied; nothing was migrated"
    )]
    NotTransactional {
        /// Which database.
        database: &'static str,
        /// The migration.
        version: i64,
    },
    /// The backup could not be made, so nothing was migrated.
    #[error(
        "cannot back up the {database} before migrating it from schema {from} to {to}: {cause}; \
         nothing was migrated. Make room or fix the cause and start again, or start with \
         {flag} off ({env}=off) to migrate without a backup"
    )]
    BackupFailed {
        /// Which database.
        database: &'static str,
        /// The schema it is at.
        from: i64,
        /// The schema it would be migrated to.
        to: i64,
        /// Why.
        cause: Box<BackupError>,
        /// The opt-out flag.
        flag: &'static str,
        /// Its environment variable.
        env: &'static str,
    },
    /// A migration failed; its transaction was rolled back.
    #[error(
        "migration {version} ({description}) of the {database} failed and was rolled back; the \
         database stays at schema {at}: {error}"
    )]
    Apply {
        /// Which database.
        database: &'static str,
        /// The migration.
        version: i64,
        /// Its description.
        description: String,
        /// The schema the database stays at.
        at: i64,
        /// What the database said.
        error: sqlx::Error,
    },
    /// Reading or recording the schema version failed.
    #[error("cannot read or record the {database}'s schema version: {error}")]
    Sql {
        /// Which database.
        database: &'static str,
        /// What the database said.
        error: sqlx::Error,
    },
    /// sqlx's bookkeeping (the PostgreSQL lock, the table) failed.
    #[error("cannot lock or prepare the {database}'s migration bookkeeping: {error}")]
    Bookkeeping {
        /// Which database.
        database: &'static str,
        /// What sqlx said.
        error: sqlx::migrate::MigrateError,
    },
}

/// Why a backup could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Not enough free space for the copy; nothing was written.
    #[error(
        "{dir} has {free} bytes free, and the copy needs about {needed} (the database's size) \
         plus room left for the migration itself (a tenth of that, at least 64 MiB)"
    )]
    NoRoom {
        /// The backup directory.
        dir: std::path::PathBuf,
        /// Bytes free there for this process.
        free: u64,
        /// Bytes the copy needs.
        needed: u64,
    },
    /// A file system operation failed.
    #[error("cannot {what} {path}: {error}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: std::path::PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// SQLite could not write the copy.
    #[error("SQLite could not copy the database to {path}: {error}")]
    Copy {
        /// The temporary file.
        path: std::path::PathBuf,
        /// What SQLite said.
        error: sqlx::Error,
    },
}

impl MigrateError {
    /// The exit code a binary gives this refusal, or `None` for a failure
    /// that is not one (a lost connection, a failed statement): those exit
    /// like any other start-up error.
    pub fn exit_code(&self) -> Option<u8> {
        match self {
            MigrateError::SchemaTooNew { .. }
            | MigrateError::UnknownMigration { .. }
            | MigrateError::Dirty { .. }
            | MigrateError::ChangedMigration { .. }
            | MigrateError::NotTransactional { .. } => Some(EXIT_SCHEMA_REFUSED),
            MigrateError::BackupFailed { .. } => Some(EXIT_BACKUP_FAILED),
            MigrateError::Apply { .. }
            | MigrateError::Sql { .. }
            | MigrateError::Bookkeeping { .. } => None,
        }
    }
}

/// The exit code for a start-up error: that of the first [`MigrateError`]
/// in its chain of sources, if it is a refusal. For the binaries' `main`.
pub fn exit_code(error: &(dyn std::error::Error + 'static)) -> Option<u8> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(migrate) = error.downcast_ref::<MigrateError>() {
            return migrate.exit_code();
        }
        next = error.source();
    }
    None
}
