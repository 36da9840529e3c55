//! Opening a service's database the same way on every service: where its
//! SQLite file lives and the settings every SQLite connection gets, and
//! PostgreSQL's two pools, checked for durability and migrated before
//! anything else runs on them. What a service adds (its own pragmas, a
//! checkpointer, one-off conversions) stays in the service.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Pool, Postgres, Sqlite};

use crate::backend::SqlDatabase;
use crate::durability::{DurabilityError, check_postgres_durability};
use crate::migrate::{BackupPolicy, MigrateError, Schema};

/// A service's error for a database that cannot be opened: how it says so
/// in its own words. Implemented with [`crate::db_error_by_variants!`].
pub trait OpenFailure: From<DurabilityError> + From<MigrateError> {
    /// The `backend` database could not be reached or opened.
    fn connect(backend: &'static str, source: sqlx::Error) -> Self;
    /// The data directory `path` could not be created.
    fn data_dir(path: PathBuf, source: std::io::Error) -> Self;
}

/// Rows a SQLite connection's worker thread hands over before it waits for
/// the caller to take them. sqlx's default (50) makes the worker and the
/// caller wake each other every 50 rows, which for a lease or a page of
/// thousands of rows costs more than reading them.
const ROW_BUFFER: usize = 4_096;

/// The SQLite database named by `url`, else `file_name` in `data_dir`
/// (created if needed), with the settings every service's connections
/// share: created if missing, WAL, `synchronous` as given, a 10 s busy
/// timeout, a page cache of `cache_kib` KiB per connection, and temporary
/// data in memory (multi-row INSERTs keep a statement journal for rollback
/// on a constraint error; in memory it costs no file writes per statement).
pub fn sqlite_options<E: OpenFailure>(
    url: Option<&str>,
    data_dir: &Path,
    file_name: &str,
    synchronous: SqliteSynchronous,
    cache_kib: i64,
) -> Result<SqliteConnectOptions, E> {
    let options = match url {
        Some(url) if !url.is_empty() => SqliteConnectOptions::from_str(url)
            .map_err(|source| E::connect(Sqlite::LABEL, source))?,
        _ => {
            std::fs::create_dir_all(data_dir)
                .map_err(|source| E::data_dir(data_dir.to_path_buf(), source))?;
            SqliteConnectOptions::new().filename(data_dir.join(file_name))
        }
    };
    Ok(options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(Duration::from_secs(10))
        .pragma("cache_size", (-cache_kib).to_string())
        .pragma("temp_store", "MEMORY")
        .row_buffer_size(ROW_BUFFER))
}

/// How a service runs on PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct PostgresSettings {
    /// How long a caller waits for a free connection.
    pub acquire_timeout: Duration,
    /// Connections of the read pool (the writer has its own).
    pub read_connections: u32,
    /// Start even when the server's settings do not make a commit durable.
    pub accept_durability_risk: bool,
    /// How the operator accepts that risk, named in the refusal.
    pub durability_risk_flag: &'static str,
    /// The migration's backup policy (PostgreSQL is backed up by the
    /// operator; the policy only shapes the messages).
    pub backup: BackupPolicy,
}

/// Run on every new connection: every lookup of ours is by key into tables
/// the server holds in memory, yet at PostgreSQL's default cost of a random
/// page (4, a spinning disk's) the planner prefers a sequential scan and a
/// hash join to a few thousand index lookups, ten times slower for a lease
/// of 2,000 versions. A session setting, so nothing is sent at connect time
/// that a pooler could refuse, and only over the default: a cost the
/// operator set (server, database, role, `PGOPTIONS` or the URL) is kept.
const PREFER_INDEX_LOOKUPS: &str = "SELECT set_config('random_page_cost', '1.1', false) \
     WHERE current_setting('random_page_cost') = '4'";

/// Connects to the PostgreSQL database at `url`: a write pool of one
/// connection (every service serialises its writes), refused unless the
/// server makes a commit durable (or the operator accepted the risk), then
/// migrated to `schema`; and only then the read pool. Returns the write
/// pool and the read pool.
pub async fn open_postgres<E: OpenFailure>(
    url: &str,
    schema: &Schema,
    settings: &PostgresSettings,
) -> Result<(Pool<Postgres>, Pool<Postgres>), E> {
    let connect = |source| E::connect(Postgres::LABEL, source);
    let options = PgConnectOptions::from_str(url).map_err(connect)?;
    let write = PoolOptions::<Postgres>::new()
        .after_connect(|conn, _| Box::pin(prefer_index_lookups(conn)))
        .max_connections(1)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options.clone())
        .await
        .map_err(connect)?;
    check_postgres_durability(
        &write,
        settings.accept_durability_risk,
        settings.durability_risk_flag,
    )
    .await?;
    schema.migrate_postgres(&write, settings.backup).await?;
    let read = PoolOptions::<Postgres>::new()
        .after_connect(|conn, _| Box::pin(prefer_index_lookups(conn)))
        .max_connections(settings.read_connections.max(1))
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(connect)?;
    Ok((write, read))
}

/// See [`PREFER_INDEX_LOOKUPS`].
async fn prefer_index_lookups(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(PREFER_INDEX_LOOKUPS).execute(conn).await?;
    Ok(())
}

/// Implements [`crate::Classify`] and [`OpenFailure`] for a service's
/// error enum from its variants: the one carrying a failed statement's
/// `sqlx::Error` (a tuple variant), the one for a database that could not
/// be reached or opened (`{ backend, source }`), and the one for a data
/// directory that could not be created (`{ path, source }`).
///
/// As store-svc and the cloud use it:
///
/// ```text
/// edge_sql::db_error_by_variants!(DbError {
///     query: Query,
///     connect: Connect,
///     data_dir: DataDir,
/// });
/// ```
#[macro_export]
macro_rules! db_error_by_variants {
    ($error:ty { query: $query:ident, connect: $connect:ident, data_dir: $data_dir:ident $(,)? }) => {
        impl $crate::Classify for $error {
            fn query_error(&self) -> ::core::option::Option<&$crate::__private::sqlx::Error> {
                match self {
                    Self::$query(err) => ::core::option::Option::Some(err),
                    _ => ::core::option::Option::None,
                }
            }

            fn is_connect(&self) -> bool {
                ::core::matches!(self, Self::$connect { .. })
            }
        }

        impl $crate::open::OpenFailure for $error {
            fn connect(backend: &'static str, source: $crate::__private::sqlx::Error) -> Self {
                Self::$connect { backend, source }
            }

            fn data_dir(path: ::std::path::PathBuf, source: ::std::io::Error) -> Self {
                Self::$data_dir { path, source }
            }
        }
    };
}
