//! What differs between SQLite and PostgreSQL: connection set-up (migrations
//! run through [`super::schema`]), placeholders and how a read transaction
//! gets one snapshot.

use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Postgres, Sqlite};

use super::store::{Store, Versioning};
use super::{DbError, DbOptions};

/// Per-backend SQL fragments used by the generic [`Store`].
pub(crate) trait Backend: edge_sql::FaultableBackend {
    /// Name shown in logs and errors.
    const LABEL: &'static str;
    /// First statement of a read transaction that must see one snapshot
    /// (PostgreSQL's default isolation takes a snapshot per statement;
    /// SQLite's WAL read transaction already is one).
    const SNAPSHOT: Option<&'static str>;
    /// Writes the placeholder for the `n`th bind parameter (from 1).
    fn placeholder(sql: &mut String, n: usize);
    /// Rows a statement inserted or changed (an inherent method of each
    /// driver's result, so it is reached through here).
    fn rows_affected(result: &Self::QueryResult) -> u64;
    /// A query of `columns` (naming the versions table `v`) over every
    /// version of `count` reading ids, bound in order from parameter 1.
    fn versions_of_readings(columns: &str, count: usize) -> String;
}

impl Backend for Sqlite {
    const LABEL: &'static str = "sqlite";
    const SNAPSHOT: Option<&'static str> = None;
    // Plain `?`: SQLite resolves numbered parameters by a linear scan each,
    // which makes a multi-thousand-parameter INSERT quadratic.
    fn placeholder(sql: &mut String, _n: usize) {
        sql.push('?');
    }
    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
    // SQLite probes the index once per listed id.
    fn versions_of_readings(columns: &str, count: usize) -> String {
        let mut sql = format!("SELECT {columns} FROM versions v WHERE v.reading_id IN (");
        super::sql::push_list::<Self>(&mut sql, count, &mut 1);
        sql.push(')');
        sql
    }
}

impl Backend for Postgres {
    const LABEL: &'static str = "postgres";
    const SNAPSHOT: Option<&'static str> =
        Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    fn placeholder(sql: &mut String, n: usize) {
        use std::fmt::Write as _;
        let _ = write!(sql, "${n}");
    }
    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
    // One index probe per id, whatever the statistics say. `reading_id IN
    // (…)` is planned from them, and until ANALYZE has seen a grown table
    // (a fresh cloud taking a backlog) PostgreSQL assumes each id matches
    // 0.5 % of the rows: 512 ids then look like the whole table, and every
    // push scanned all of it. A lateral subquery kept apart by `OFFSET 0`
    // is planned per id, where the index always wins.
    fn versions_of_readings(columns: &str, count: usize) -> String {
        let mut sql = String::from("SELECT ");
        sql.push_str(columns);
        sql.push_str(" FROM unnest(ARRAY[");
        super::sql::push_list::<Self>(&mut sql, count, &mut 1);
        sql.push_str(
            "]::text[]) AS ids (reading_id) CROSS JOIN LATERAL \
             (SELECT * FROM versions WHERE versions.reading_id = ids.reading_id OFFSET 0) AS v",
        );
        sql
    }
}

/// SQLite page cache per connection, KiB: keeps the version key index hot.
const SQLITE_CACHE_KIB: i64 = 32 * 1024;

/// WAL pages (4 KiB each) between automatic checkpoints: 64 MiB.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// The WAL file is truncated to this size after a checkpoint.
const WAL_SIZE_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

impl Store<Sqlite> {
    /// Opens (creating if needed) the SQLite database and migrates it.
    pub(super) async fn open_sqlite(
        options: &DbOptions,
        versioning: Versioning,
    ) -> Result<Self, DbError> {
        let connect = |source| DbError::Connect {
            backend: Sqlite::LABEL,
            source,
        };
        let connect_options = match options.database_url.as_deref() {
            Some(url) if !url.is_empty() => SqliteConnectOptions::from_str(url).map_err(connect)?,
            _ => {
                std::fs::create_dir_all(&options.data_dir).map_err(|source| DbError::DataDir {
                    path: options.data_dir.clone(),
                    source,
                })?;
                SqliteConnectOptions::new().filename(options.data_dir.join("cloud.db"))
            }
        };
        let connect_options = connect_options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // An answer means committed: every commit reaches the disk first.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .pragma("cache_size", (-SQLITE_CACHE_KIB).to_string())
            .pragma("temp_store", "MEMORY");
        // Checkpoint less often than SQLite's default of every 1,000 pages
        // (4 MB): one 5,000-version push writes about that much, so the
        // default would checkpoint (write and fsync the main file) inside
        // nearly every push. The WAL file is truncated back after a checkpoint.
        let write_options = connect_options
            .clone()
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
            .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES.to_string());
        // One write connection: SQLite has one writer at a time anyway, and a
        // pool of one serialises the cloud's transactions in arrival order.
        let file = connect_options.get_filename().to_owned();
        let write = PoolOptions::<Sqlite>::new()
            .max_connections(1)
            .connect_with(write_options)
            .await
            .map_err(connect)?;
        super::schema::migrate_sqlite(&write, &file, options).await?;
        let read = PoolOptions::<Sqlite>::new()
            .max_connections(options.read_connections.max(1))
            .connect_with(connect_options.read_only(true))
            .await
            .map_err(connect)?;
        Ok(Store::new(
            write,
            read,
            versioning,
            options.write_faults.clone(),
        ))
    }
}

impl Store<Postgres> {
    /// Connects to PostgreSQL and migrates it.
    pub(super) async fn open_postgres(
        url: &str,
        options: &DbOptions,
        versioning: Versioning,
    ) -> Result<Self, DbError> {
        let connect = |source| DbError::Connect {
            backend: Postgres::LABEL,
            source,
        };
        let connect_options = PgConnectOptions::from_str(url).map_err(connect)?;
        // One write connection, as on SQLite: the same serialised writes on
        // both backends keep push numbering and idempotency checks simple.
        let write = PoolOptions::<Postgres>::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect_options.clone())
            .await
            .map_err(connect)?;
        edge_sql::check_postgres_durability(
            &write,
            options.accept_postgres_durability_risk,
            "--cloud-accept-postgres-durability-risk / EDGE_CLOUD_ACCEPT_POSTGRES_DURABILITY_RISK=true",
        )
        .await?;
        super::schema::migrate_postgres(&write, options).await?;
        let read = PoolOptions::<Postgres>::new()
            .max_connections(options.read_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect_options)
            .await
            .map_err(connect)?;
        Ok(Store::new(
            write,
            read,
            versioning,
            options.write_faults.clone(),
        ))
    }
}
