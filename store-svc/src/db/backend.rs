//! What differs between SQLite and PostgreSQL for the store: connection
//! set-up, migrations, locking the state row, measuring the database (what
//! differs for every service, placeholders and snapshots among it:
//! [`edge_sql::SqlDatabase`]).

use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use edge_sql::{PostgresSettings, SqlDatabase};
use sqlx::pool::PoolOptions;
use sqlx::sqlite::{SqliteAutoVacuum, SqliteSynchronous};
use sqlx::{Postgres, Sqlite};

use super::store::{
    HELD_COLUMNS, HeldRow, NEW_READING_COLUMNS, NewRow, Store, held_readings_in_lists,
    insert_readings_multi_row,
};
use super::{DbConfig, DbError};
use crate::hlc::WallClock;
use crate::model::SyncState;
use edge_sql::checkpoint::{self, Checkpointer};

/// How hard SQLite works to make a commit durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Durability {
    /// `synchronous=FULL`: a commit is on disk before the reply (P1). Default.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a power cut may lose the last commits. Only for
    /// benchmarks and throwaway sites.
    Normal,
}

/// Per-backend SQL fragments the generic [`Store`] needs beyond what every
/// service's SQL does ([`SqlDatabase`]: placeholders, snapshots, rows
/// changed).
pub trait Backend: SqlDatabase {
    /// Appended to the `site_state` read that starts a write: takes the row
    /// lock on PostgreSQL so two writers can never hand out the same seq.
    /// SQLite needs none: its single writer connection serialises writes.
    const LOCK_STATE: &'static str;
    /// One row, two BIGINT columns: bytes the database occupies, and bytes
    /// free inside it that new rows reuse before it grows (0 when unknown).
    const USAGE_SQL: &'static str;
    /// Whether batches of the sensor index are copied by a task of their
    /// own beside the writer (PostgreSQL), rather than by the writer in
    /// the append that reaches a batch (SQLite, where writes are serial
    /// anyway): see [`super::sensor_index`].
    const SENSOR_INDEX_BESIDE_WRITER: bool;

    /// Inserts one group's new readings of this site (`site_id`), pending:
    /// the rows only (their versions and outbox entries are copied from
    /// them after).
    fn insert_readings<'a>(
        conn: &'a mut Self::Connection,
        site_id: &'a str,
        rows: &'a [NewRow<'a>],
    ) -> impl Future<Output = Result<bool, DbError>> + Send + 'a;

    /// The readings already held under `ids` (in no particular order).
    fn held_readings<'a>(
        conn: &'a mut Self::Connection,
        ids: &'a [&'a str],
    ) -> impl Future<Output = Result<Vec<HeldRow>, DbError>> + Send + 'a;
}

impl Backend for Sqlite {
    // Statements, not rows, cost in sqlx's SQLite driver: rows batched into
    // multi-row statements of a few fixed shapes.
    fn insert_readings<'a>(
        conn: &'a mut Self::Connection,
        site_id: &'a str,
        rows: &'a [NewRow<'a>],
    ) -> impl Future<Output = Result<bool, DbError>> + Send + 'a {
        insert_readings_multi_row::<Sqlite>(conn, site_id, rows)
    }

    fn held_readings<'a>(
        conn: &'a mut Self::Connection,
        ids: &'a [&'a str],
    ) -> impl Future<Output = Result<Vec<HeldRow>, DbError>> + Send + 'a {
        held_readings_in_lists::<Sqlite>(conn, ids)
    }

    const LOCK_STATE: &'static str = "";
    const SENSOR_INDEX_BESIDE_WRITER: bool = false;
    // Pages in use, not the file size: the file does not shrink after a
    // DELETE (its pages join the freelist, reused first).
    const USAGE_SQL: &'static str = "SELECT (p.page_count - f.freelist_count) * s.page_size, \
         f.freelist_count * s.page_size \
         FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s";
}

impl Backend for Postgres {
    // One statement for the whole group, each column bound as one array:
    // one parse, one round trip and 12 parameters, where multi-row VALUES
    // bind 15 per row over several statements. A taken id or seq fails the
    // statement (and so the transaction) with a unique violation: answered
    // false, for the caller to roll back. Not `ON CONFLICT DO NOTHING`,
    // which would check each unique index once more before inserting.
    async fn insert_readings<'a>(
        conn: &'a mut Self::Connection,
        site_id: &'a str,
        rows: &'a [NewRow<'a>],
    ) -> Result<bool, DbError> {
        let mut columns = ReadingColumns::with_capacity(rows.len());
        for row in rows {
            columns.push(row)?;
        }
        let inserted = sqlx::query(&format!(
            "INSERT INTO readings ({NEW_READING_COLUMNS}) \
             SELECT u.seq, u.reading_id, $1, u.sensor_id, u.temperature, u.humidity, \
             u.measured_at_us, u.received_at_us, u.priority, u.clock_suspect, u.digest, \
             u.hlc, $1, $2, u.written_by, TRUE \
             FROM unnest($3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::FLOAT8[], $7::FLOAT8[], \
             $8::BIGINT[], $9::BIGINT[], $10::BIGINT[], $11::BOOLEAN[], $12::BYTEA[], \
             $13::BIGINT[], $14::TEXT[]) \
             AS u(seq, reading_id, sensor_id, temperature, humidity, measured_at_us, \
             received_at_us, priority, clock_suspect, digest, hlc, written_by)"
        ))
        .bind(site_id)
        .bind(SyncState::Pending as i64)
        .bind(columns.seq)
        .bind(columns.reading_id)
        .bind(columns.sensor_id)
        .bind(columns.temperature)
        .bind(columns.humidity)
        .bind(columns.measured_at_us)
        .bind(columns.received_at_us)
        .bind(columns.priority)
        .bind(columns.clock_suspect)
        .bind(columns.digest)
        .bind(columns.hlc)
        .bind(columns.written_by)
        .execute(&mut *conn)
        .await;
        match inserted {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    // One statement for the whole group: the ids bound as one array.
    async fn held_readings<'a>(
        conn: &'a mut Self::Connection,
        ids: &'a [&'a str],
    ) -> Result<Vec<HeldRow>, DbError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {HELD_COLUMNS} FROM readings WHERE reading_id = ANY($1::TEXT[])"
        ))
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?)
    }

    const LOCK_STATE: &'static str = " FOR UPDATE";
    const SENSOR_INDEX_BESIDE_WRITER: bool = true;
    // The site's tables with their indexes and TOAST, not the whole
    // database (its catalogs are not the site's data). Free space inside
    // them is not visible without extensions: see `crate::storage`.
    const USAGE_SQL: &'static str = "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::BIGINT, 0::BIGINT \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r'";
}

/// A group's new readings column by column, as PostgreSQL takes arrays.
struct ReadingColumns<'a> {
    seq: Vec<i64>,
    reading_id: Vec<&'a str>,
    sensor_id: Vec<&'a str>,
    temperature: Vec<f64>,
    humidity: Vec<f64>,
    measured_at_us: Vec<i64>,
    received_at_us: Vec<i64>,
    priority: Vec<i64>,
    clock_suspect: Vec<bool>,
    digest: Vec<&'a [u8]>,
    hlc: Vec<i64>,
    written_by: Vec<&'a str>,
}

impl<'a> ReadingColumns<'a> {
    fn with_capacity(n: usize) -> Self {
        ReadingColumns {
            seq: Vec::with_capacity(n),
            reading_id: Vec::with_capacity(n),
            sensor_id: Vec::with_capacity(n),
            temperature: Vec::with_capacity(n),
            humidity: Vec::with_capacity(n),
            measured_at_us: Vec::with_capacity(n),
            received_at_us: Vec::with_capacity(n),
            priority: Vec::with_capacity(n),
            clock_suspect: Vec::with_capacity(n),
            digest: Vec::with_capacity(n),
            hlc: Vec::with_capacity(n),
            written_by: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, row: &'a NewRow<'a>) -> Result<(), DbError> {
        let r = row.reading;
        self.seq.push(row.seq);
        self.reading_id.push(&r.id);
        self.sensor_id.push(&r.sensor_id);
        self.temperature.push(r.temperature);
        self.humidity.push(r.humidity);
        self.measured_at_us.push(r.measured_at_us);
        self.received_at_us.push(r.received_at_us);
        self.priority.push(r.priority as i64);
        self.clock_suspect.push(row.clock_suspect);
        self.digest.push(&row.digest);
        self.hlc.push(row.hlc.pack()?);
        self.written_by.push(&r.written_by);
        Ok(())
    }
}

/// SQLite's page cache of the writer, KiB (negative `cache_size`). Enough
/// to keep the id index hot for random gateway ids without growing RSS at
/// idle.
const SQLITE_CACHE_KIB: i64 = 16 * 1024;

/// The page cache of each read connection, KiB. Reads walk the backlog once
/// (a lease, a count) rather than probe the same pages again, and the
/// operating system caches the file for all of them: a cache the writer's
/// size on each of them would only add its size to the RSS of a draining
/// site, connection by connection.
const SQLITE_READ_CACHE_KIB: i64 = 4 * 1024;

impl Store<Sqlite> {
    /// Opens (creating if needed) the SQLite database and migrates it.
    pub(super) async fn open_sqlite(
        config: &DbConfig,
        clock: Arc<dyn WallClock>,
    ) -> Result<Self, DbError> {
        let connect = |source| DbError::Connect {
            backend: Sqlite::LABEL,
            source,
        };
        let options = edge_sql::open::sqlite_options::<DbError>(
            config.database_url.as_deref(),
            &config.data_dir,
            "edge.db",
            match config.durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            },
            SQLITE_CACHE_KIB,
        )?
        .foreign_keys(true);

        // One writer connection: SQLite allows one writer at a time anyway, and
        // a single connection makes group commit the only write path.
        let write = PoolOptions::<Sqlite>::new()
            .max_connections(1)
            // No ping before each write: it is a round trip to the
            // connection's worker thread per group commit, and a SQLite
            // connection does not go stale the way a network one does; a
            // write that fails closes it anyway (see `edge_sql::write`).
            .test_before_acquire(false)
            .connect_with(checkpoint::writer_options(
                options
                    .clone()
                    // Space freed by pruning goes back to the file system
                    // in the background (`PRAGMA incremental_vacuum`), never
                    // in a commit. Set on the writer only, which creates
                    // the tables (a read-only connection cannot set it).
                    .auto_vacuum(SqliteAutoVacuum::Incremental),
            ))
            .await
            .map_err(connect)?;
        super::schema::SCHEMA
            .migrate_sqlite(&write, options.get_filename(), config.migration_backup)
            .await?;
        enable_incremental_vacuum(&write).await.map_err(connect)?;
        let checkpointer = Checkpointer::start(&options).await.map_err(connect)?;
        let read = PoolOptions::<Sqlite>::new()
            .max_connections(config.read_connections.max(1))
            .connect_with(
                options
                    .clone()
                    .read_only(true)
                    .pragma("cache_size", (-SQLITE_READ_CACHE_KIB).to_string()),
            )
            .await
            .map_err(connect)?;
        let mut store = Store::init(write, read, Some(checkpointer), config, clock).await?;
        store.path = Some(options.get_filename().to_owned());
        Ok(store)
    }
}

/// Makes a database created before incremental vacuum was configured use
/// it: the mode of an existing file only changes with a full `VACUUM`, run
/// once here (it rewrites the file, so it takes a while on a large one).
/// A `VACUUM` is one transaction: killed half-way, it leaves the file as it
/// was, and the next start converts it again.
async fn enable_incremental_vacuum(write: &sqlx::Pool<Sqlite>) -> Result<(), sqlx::Error> {
    const INCREMENTAL: i64 = 2;
    let (mode,): (i64,) = sqlx::query_as("PRAGMA auto_vacuum")
        .fetch_one(write)
        .await?;
    if mode != INCREMENTAL {
        tracing::warn!(
            "converting the site database to incremental vacuum (once; rewrites the file)"
        );
        sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
            .execute(write)
            .await?;
        // The copy VACUUM builds goes to a temporary file, not memory (the
        // writer's `temp_store=MEMORY`): in memory it needs about the size
        // of the database, which could get a large site killed at every
        // start. One connection, so the pragmas bracket the VACUUM.
        sqlx::query("PRAGMA temp_store = FILE")
            .execute(write)
            .await?;
        let vacuumed = sqlx::query("VACUUM").execute(write).await;
        sqlx::query("PRAGMA temp_store = MEMORY")
            .execute(write)
            .await?;
        vacuumed?;
    }
    Ok(())
}

impl Store<Postgres> {
    /// Connects to PostgreSQL and migrates it.
    pub(super) async fn open_postgres(
        url: &str,
        config: &DbConfig,
        clock: Arc<dyn WallClock>,
    ) -> Result<Self, DbError> {
        let (write, read) = edge_sql::open::open_postgres::<DbError>(
            url,
            &super::schema::SCHEMA,
            &PostgresSettings {
                acquire_timeout: Duration::from_secs(10),
                read_connections: config.read_connections,
                accept_durability_risk: config.accept_postgres_durability_risk,
                durability_risk_flag: "--accept-postgres-durability-risk / EDGE_ACCEPT_POSTGRES_DURABILITY_RISK=true",
                backup: config.migration_backup,
            },
        )
        .await?;
        let store = Store::init(write, read, None, config, clock).await?;
        store.refresh_statistics().await;
        Ok(store)
    }

    /// Refreshes the planner's statistics of the site's tables, once at
    /// start-up. PostgreSQL forgets its activity counters after an
    /// immediate shutdown or a crash, so autovacuum may not analyze a table
    /// that filled up before it until as many changes again have been made;
    /// meanwhile a lease planned on the statistics of an empty outbox scans
    /// and sorts all of it (seconds per lease on a large backlog). ANALYZE
    /// samples a fixed number of rows, so this costs about the same on any
    /// site.
    ///
    /// Only tables holding more than [`ANALYZE_MIN_ROWS`] are analyzed: the
    /// statistics of an empty table make the planner scan rather than use
    /// an index, and the store's prepared statements would keep those plans
    /// while the table fills (a lookup of 512 ids by seq scan, each group).
    /// A table never analyzed is planned with defaults that favour its
    /// indexes. Statistics only speed queries up: a failure is logged, and
    /// the site starts all the same.
    async fn refresh_statistics(&self) {
        let started = std::time::Instant::now();
        let mut analyzed = Vec::new();
        for table in DATA_TABLES {
            let refreshed = async {
                let held: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM {table} LIMIT {}) AS t",
                    ANALYZE_MIN_ROWS + 1
                ))
                .fetch_one(self.pools.read())
                .await?;
                if held > ANALYZE_MIN_ROWS {
                    sqlx::raw_sql(&format!("ANALYZE {table}"))
                        .execute(self.pools.read())
                        .await?;
                    analyzed.push(table);
                }
                Ok::<_, sqlx::Error>(())
            };
            if let Err(err) = refreshed.await {
                tracing::warn!(
                    table,
                    error = %err,
                    "could not refresh the planner's statistics; queries may be slow until \
                     autovacuum analyzes the table"
                );
            }
        }
        tracing::debug!(took = ?started.elapsed(), ?analyzed, "planner statistics refreshed");
    }
}

/// The site's tables of data (not its state and settings): whose
/// statistics its queries' plans depend on, and which pruning shrinks.
/// PostgreSQL's: only its statistics and vacuuming are the store's to run.
pub(super) const DATA_TABLES: [&str; 5] = [
    "readings",
    "reading_versions",
    "outbox",
    "unreported_drops",
    "readings_by_sensor",
];

/// Tables with at most this many rows are left to autovacuum at start-up
/// (see [`Store::refresh_statistics`]).
const ANALYZE_MIN_ROWS: i64 = 1_000;
