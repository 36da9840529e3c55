//! What differs between SQLite and PostgreSQL for the cloud: connection
//! set-up (migrations run through [`super::schema`]) and how the versions
//! of many readings are read (placeholders, snapshots and the rest every
//! service shares: [`edge_sql::SqlDatabase`]).

use std::time::Duration;

use edge_sql::checkpoint::{self, Checkpointer};
use edge_sql::statement::push_list;
use edge_sql::{PostgresSettings, SqlDatabase};
use sqlx::pool::PoolOptions;
use sqlx::sqlite::SqliteSynchronous;
use sqlx::{Postgres, Sqlite};

use super::store::{Store, Versioning};
use super::{DbError, DbOptions};

/// Per-backend SQL the generic [`Store`] needs beyond what every service's
/// SQL does ([`SqlDatabase`]: placeholders, snapshots, rows changed).
pub(crate) trait Backend: SqlDatabase {
    /// A query of `columns` (naming the versions table `v`) over every
    /// version of `count` reading ids, bound in order from parameter 1.
    fn versions_of_readings(columns: &str, count: usize) -> String;
}

impl Backend for Sqlite {
    // SQLite probes the index once per listed id.
    fn versions_of_readings(columns: &str, count: usize) -> String {
        let mut sql = format!("SELECT {columns} FROM versions v WHERE v.reading_id IN (");
        push_list::<Self>(&mut sql, count, &mut 1);
        sql.push(')');
        sql
    }
}

impl Backend for Postgres {
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
        push_list::<Self>(&mut sql, count, &mut 1);
        sql.push_str(
            "]::text[]) AS ids (reading_id) CROSS JOIN LATERAL \
             (SELECT * FROM versions WHERE versions.reading_id = ids.reading_id OFFSET 0) AS v",
        );
        sql
    }
}

/// SQLite page cache per connection, KiB: keeps the version key index hot.
const SQLITE_CACHE_KIB: i64 = 32 * 1024;

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
        // An answer means committed: every commit reaches the disk first.
        let connect_options = edge_sql::open::sqlite_options::<DbError>(
            options.database_url.as_deref(),
            &options.data_dir,
            "cloud.db",
            SqliteSynchronous::Full,
            SQLITE_CACHE_KIB,
        )?;
        // Checkpoints run on a connection of their own after pushes
        // (edge-sql's checkpoint module says why and how): one
        // 5,000-version push writes about 4 MB of WAL, and SQLite's default
        // would checkpoint (write and fsync the main file) inside nearly
        // every push. The writer's own checkpoint stays as a ceiling.
        let write_options = checkpoint::writer_options(connect_options.clone());
        // One write connection: SQLite has one writer at a time anyway, and a
        // pool of one serialises the cloud's transactions in arrival order.
        let file = connect_options.get_filename().to_owned();
        let write = PoolOptions::<Sqlite>::new()
            .max_connections(1)
            .connect_with(write_options)
            .await
            .map_err(connect)?;
        super::schema::SCHEMA
            .migrate_sqlite(&write, &file, options.migration_backup)
            .await?;
        let checkpointer = Checkpointer::start(&connect_options)
            .await
            .map_err(connect)?;
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
            Some(checkpointer),
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
        // One write connection, as on SQLite: the same serialised writes on
        // both backends keep push numbering and idempotency checks simple.
        let (write, read) = edge_sql::open::open_postgres::<DbError>(
            url,
            &super::schema::SCHEMA,
            &PostgresSettings {
                acquire_timeout: Duration::from_secs(30),
                read_connections: options.read_connections,
                accept_durability_risk: options.accept_postgres_durability_risk,
                durability_risk_flag: "--cloud-accept-postgres-durability-risk / EDGE_CLOUD_ACCEPT_POSTGRES_DURABILITY_RISK=true",
                backup: options.migration_backup,
            },
        )
        .await?;
        Ok(Store::new(
            write,
            read,
            versioning,
            options.write_faults.clone(),
            None,
        ))
    }
}
