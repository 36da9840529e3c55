//! The site database, on SQLite (embedded default) or PostgreSQL.
//!
//! All SQL lives in [`store`], written once and generic over the sqlx
//! backend; [`backend`] holds the few things that differ for the store
//! (locking, size, connection set-up); [`schema`] migrates the database at
//! start-up (backup first, kill-safe, a newer schema refused). The plumbing
//! the cloud shares (the backend core, the sqlx bounds, pools, statement
//! shapes and placeholders, opening) is [`edge_sql`]'s. [`Database`] picks
//! the backend from the configured URL and dispatches to it.
//!
//! Invariants every write keeps, inside one transaction:
//! - a reading id is stored once; a retry is a duplicate, a reuse with other
//!   content a conflict, and neither changes what is stored;
//! - `seq` is assigned at commit, gap-free and increasing, from `site_state`;
//! - every write is a version stamped (reading, HLC, site) that waits in
//!   the outbox until the cloud acknowledges exactly its version id (a
//!   reading's first version held in its row: [`first_versions`]); a
//!   reading's new version is stamped above every version of it held
//!   ([`edge_versioning::NodeClock`]);
//! - `site_state.hlc` is the site's clock after the write, never further
//!   ahead of the wall clock than the clock-skew bound in force (the one the
//!   cloud announced, kept in `site_state`, else `--max-clock-skew`);
//!   versions received beyond it are stored with how far ahead they were.

mod backend;
pub mod faults;
mod first_versions;
mod identities;
mod outbox;
mod revision;
mod schema;
mod sensor_index;
mod sql;
mod storage;
mod store;

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use edge_sql::{BackendKind, OnBackend};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use sqlx::{Postgres, Sqlite};

pub use backend::Durability;
use faults::WriteOp;
pub use identities::IdentityRow;
pub use outbox::ImplicitDue;
pub use storage::{DroppedRow, Usage};
pub use store::Store;

use crate::hlc::WallClock;
use crate::model::{AppendOutcome, Cursor, NewReading, ReadingQuery, Stats, StoredReading};
use crate::outbox::{Completion, CompletionCounts, DeadLetterEntry, DueOrder, OutboxEntry};
use crate::revision::{Amendment, ApplyOutcome, ConflictRow, RemoteVersion};
use edge_versioning::{Policy, SkewBound};

/// A database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached or opened.
    #[error("cannot open the {backend} database: {source}")]
    Connect {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The database URL names a backend this store does not have. The URL
    /// itself is not repeated: it may hold a password.
    #[error(
        "--database-url / EDGE_DATABASE_URL must start with postgres://, postgresql:// or sqlite: \
         (got a URL starting with {scheme:?})"
    )]
    UnsupportedUrl {
        /// What the URL started with, up to its first ':'.
        scheme: String,
    },
    /// The schema was not brought up to date: refused (a newer or foreign
    /// schema, no backup possible) or a migration failed. The cause says
    /// which, and what to do.
    #[error("the site database's schema was not brought up to date")]
    Migrate(#[from] edge_sql::MigrateError),
    /// An amendment named a reading the site does not hold.
    #[error("no reading with id {0:?} is stored at this site")]
    UnknownReading(String),
    /// An amendment named a reading whose versions are stamped at the very
    /// top of the clock's range: nothing can be stamped above them.
    #[error(transparent)]
    ClockExhausted(edge_versioning::ReadingExhausted),
    /// A stamp outside the clock's range reached the database (inputs are
    /// checked before, so this is a bug, never a silent clamp).
    #[error("a version stamp is outside the clock's range: {0}")]
    StampRange(#[from] edge_versioning::OutOfRange),
    /// The database belongs to another site.
    #[error(
        "this database belongs to site {stored:?}, but the configured site id is {configured:?}; \
         a database keeps one site's sequence numbers, so use the matching --site-id or another database"
    )]
    SiteMismatch {
        /// From `--site-id`.
        configured: String,
        /// From the database.
        stored: String,
    },
    /// PostgreSQL is set up so that a commit may not survive a crash.
    #[error(transparent)]
    NotDurable(#[from] edge_sql::DurabilityError),
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// What the database holds contradicts a rule every write keeps (a
    /// bug, or a database changed by hand): the operation is refused.
    #[error("the site database contradicts itself: {0}")]
    Inconsistent(&'static str),
}

pub use edge_sql::{Classify, Failure};

edge_sql::db_error_by_variants!(DbError {
    query: Query,
    connect: Connect,
    data_dir: DataDir,
});

/// `store_write_failures_total{op, cause}`: writes that failed, by what
/// they were and what the failure means.
static WRITE_FAILURES: LazyLock<Counter<u64>> = LazyLock::new(|| {
    edge_runtime::telemetry::meter("store-svc")
        .u64_counter("store_write_failures")
        .with_description(
            "Writes to the site database that failed (nothing acknowledged), by write and cause \
             (storage_full, unavailable, refused, other)",
        )
        .build()
});

/// Counts a failed write; an amendment of an unknown reading (or of one
/// that cannot be stamped above) is an answer, not a failure.
fn counted<T>(op: WriteOp, result: Result<T, DbError>) -> Result<T, DbError> {
    if let Err(err) = &result
        && !matches!(
            err,
            DbError::UnknownReading(_) | DbError::ClockExhausted { .. }
        )
    {
        WRITE_FAILURES.add(
            1,
            &[
                KeyValue::new("op", op.label()),
                KeyValue::new("cause", err.failure().label()),
            ],
        );
    }
    result
}

/// How to reach the database and what to stamp on writes.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// `sqlite:…` or `postgres://…`; `None` means SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Where the embedded SQLite database lives.
    pub data_dir: PathBuf,
    /// This site's id; `None` keeps the stored one, or generates one on first start.
    pub site_id: Option<String>,
    /// SQLite sync level; durable (`full`) by default.
    pub durability: Durability,
    /// Connections for queries and stats (the writer has its own).
    pub read_connections: u32,
    /// A measured_at this far after the site's now is flagged clock_suspect.
    pub suspect_ahead: Duration,
    /// A measured_at this far before the site's now is flagged clock_suspect.
    pub suspect_behind: Duration,
    /// Readings the sensor index may trail the newest by before they are
    /// copied in one sorted batch (see `sensor_index`).
    pub sensor_index_batch: u32,
    /// Whether SQLite is backed up before pending migrations change it.
    pub migration_backup: edge_sql::BackupPolicy,
    /// The clock-skew bound until a cloud announced one.
    pub max_clock_skew: edge_versioning::SkewBound,
    /// Start even when PostgreSQL's settings do not make a commit durable.
    pub accept_postgres_durability_risk: bool,
    /// Faults a test injects into writes; `None` outside tests.
    pub write_faults: Option<Arc<faults::WriteFaults>>,
}

/// The site database on one of the two backends: embedded SQLite (WAL), or
/// PostgreSQL.
pub struct Database {
    store: OnBackend<Store<Sqlite>, Store<Postgres>>,
}

macro_rules! dispatch {
    ($db:expr, $store:ident => $body:expr) => {
        edge_sql::on_backend!(&$db.store, $store => $body)
    };
}

impl Database {
    /// Connects, runs migrations and settles the site id.
    pub async fn open(config: &DbConfig, clock: Arc<dyn WallClock>) -> Result<Database, DbError> {
        let url = config.database_url.as_deref().unwrap_or("");
        // A mistyped PostgreSQL URL must not quietly become a SQLite file
        // inside a container, where acknowledged readings would not
        // survive it.
        let store =
            match BackendKind::of_url(url).map_err(|scheme| DbError::UnsupportedUrl { scheme })? {
                BackendKind::Postgres => {
                    OnBackend::Postgres(Store::<Postgres>::open_postgres(url, config, clock).await?)
                }
                BackendKind::Sqlite => {
                    OnBackend::Sqlite(Store::<Sqlite>::open_sqlite(config, clock).await?)
                }
            };
        Ok(Database { store })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.store.label()
    }

    /// This site's id.
    pub fn site_id(&self) -> &str {
        dispatch!(self, s => s.site_id())
    }

    /// Appends a group of readings in one durable transaction.
    pub async fn append(&self, readings: &[&NewReading]) -> Result<Vec<AppendOutcome>, DbError> {
        counted(
            WriteOp::Append,
            dispatch!(self, s => s.append(readings).await),
        )
    }

    /// One page of readings matching `query`, and the cursor after it.
    pub async fn query(
        &self,
        query: &ReadingQuery,
    ) -> Result<(Vec<StoredReading>, Option<Cursor>), DbError> {
        dispatch!(self, s => s.query(query).await)
    }

    /// The site's books.
    pub async fn stats(&self) -> Result<Stats, DbError> {
        dispatch!(self, s => s.stats().await)
    }

    /// Outbox entries due at `now_us`, from the end `order` names, except
    /// the ids in the `exclude` runs.
    pub async fn due(
        &self,
        order: DueOrder,
        now_us: i64,
        limit: i64,
        exclude: &[(i64, i64)],
    ) -> Result<Vec<OutboxEntry>, DbError> {
        dispatch!(self, s => s.due(order, now_us, limit, exclude).await)
    }

    /// Versions of the implicit outbox, from the end `order` names, except
    /// the ids in the `skip` runs.
    pub async fn due_implicit(
        &self,
        order: DueOrder,
        limit: usize,
        skip: &[(i64, i64)],
    ) -> Result<ImplicitDue, DbError> {
        dispatch!(self, s => s.due_implicit(order, limit, skip).await)
    }

    /// Applies the cloud's answer for a batch.
    pub async fn complete(&self, completion: &Completion) -> Result<CompletionCounts, DbError> {
        counted(
            WriteOp::Complete,
            dispatch!(self, s => s.complete(completion).await),
        )
    }

    /// A page of dead letters after version id `after`.
    pub async fn dead_letters(
        &self,
        after: i64,
        limit: i64,
        unreported_only: bool,
    ) -> Result<Vec<DeadLetterEntry>, DbError> {
        dispatch!(self, s => s.dead_letters(after, limit, unreported_only).await)
    }

    /// Re-drives the given dead letters, or all of them.
    pub async fn redrive(&self, ids: Option<&[i64]>) -> Result<u64, DbError> {
        counted(
            WriteOp::DeadLetters,
            dispatch!(self, s => s.redrive(ids).await),
        )
    }

    /// Marks dead letters as reported to the cloud.
    pub async fn mark_reported(&self, ids: &[i64]) -> Result<u64, DbError> {
        counted(
            WriteOp::DeadLetters,
            dispatch!(self, s => s.mark_reported(ids).await),
        )
    }

    /// Measures what the database occupies.
    pub async fn usage(&self) -> Result<Usage, DbError> {
        dispatch!(self, s => s.usage().await)
    }

    /// Whether deleting rows lowers [`Usage::used_bytes`] at once (SQLite:
    /// freed pages leave the count). PostgreSQL's relations keep their size
    /// and reuse the space inside.
    pub fn reclaims_on_delete(&self) -> bool {
        self.store.sqlite().is_some()
    }

    /// Removes up to `limit` of the oldest synced readings (received before
    /// `received_before_us`, when given); returns the versions removed.
    pub async fn prune_synced(
        &self,
        received_before_us: Option<i64>,
        limit: i64,
    ) -> Result<u64, DbError> {
        counted(
            WriteOp::Storage,
            dispatch!(self, s => s.prune_synced(received_before_us, limit).await),
        )
    }

    /// Drops up to `limit` of the oldest unsynced versions outside `exclude`.
    pub async fn drop_unsynced(
        &self,
        limit: i64,
        exclude: &[(i64, i64)],
    ) -> Result<Vec<DroppedRow>, DbError> {
        counted(
            WriteOp::Storage,
            dispatch!(self, s => s.drop_unsynced(limit, exclude).await),
        )
    }

    /// Dropped versions not yet reported to the cloud, oldest first.
    pub async fn unreported_drops(&self, limit: i64) -> Result<Vec<DroppedRow>, DbError> {
        dispatch!(self, s => s.unreported_drops(limit).await)
    }

    /// Forgets drops the cloud now records.
    pub async fn forget_drops(&self, version_ids: &[i64]) -> Result<u64, DbError> {
        counted(
            WriteOp::Storage,
            dispatch!(self, s => s.forget_drops(version_ids).await),
        )
    }

    /// Gives freed space back (SQLite: free pages beyond `keep_bytes` to the
    /// file system; PostgreSQL: reusable by new rows). Returns bytes given
    /// back to the file system.
    pub async fn give_back_space(&self, keep_bytes: i64) -> Result<i64, DbError> {
        counted(
            WriteOp::Storage,
            dispatch!(self, s => s.give_back_space(keep_bytes).await),
        )
    }

    /// Rows of the sensor index that committing `rows` more readings writes
    /// (its sorted catch-up), for the storage budget.
    pub fn index_rows_due(&self, rows: usize) -> i64 {
        dispatch!(self, s => s.index_rows_due(rows))
    }

    /// The SQLite database file, for measuring its file system; `None` on
    /// PostgreSQL, whose disk is the server's.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.store.sqlite().and_then(|s| s.path())
    }

    /// Writes an amendment as a new current version, queued for the cloud.
    pub async fn amend(&self, amendment: &Amendment) -> Result<StoredReading, DbError> {
        counted(
            WriteOp::Amend,
            dispatch!(self, s => s.amend(amendment).await),
        )
    }

    /// Applies one page of the cloud's change feed and stores its cursor.
    pub async fn apply_remote(
        &self,
        versions: &[RemoteVersion],
        policy: Policy,
        next_cursor: i64,
        announced: Option<SkewBound>,
    ) -> Result<ApplyOutcome, DbError> {
        counted(
            WriteOp::ApplyRemote,
            dispatch!(self, s => s.apply_remote(versions, policy, next_cursor, announced).await),
        )
    }

    /// Where the change feed was applied up to.
    pub async fn pull_cursor(&self) -> Result<i64, DbError> {
        dispatch!(self, s => s.pull_cursor().await)
    }

    /// A page of the conflict audit log after `after_id`, and its size.
    pub async fn conflicts(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<(Vec<ConflictRow>, i64), DbError> {
        dispatch!(self, s => s.conflicts(after_id, limit).await)
    }

    /// The identities, valid ones only unless `include_revoked`.
    pub async fn identities(&self, include_revoked: bool) -> Result<Vec<IdentityRow>, DbError> {
        dispatch!(self, s => s.identities(include_revoked).await)
    }

    /// Adds an identity; `Ok(false)` when the name is taken.
    pub async fn add_identity(&self, row: &IdentityRow) -> Result<bool, DbError> {
        dispatch!(self, s => s.add_identity(row).await)
    }

    /// Revokes the valid identity `name`.
    pub async fn revoke_identity(
        &self,
        name: &str,
        now_us: i64,
    ) -> Result<Option<IdentityRow>, DbError> {
        dispatch!(self, s => s.revoke_identity(name, now_us).await)
    }

    /// Makes `row` the valid identity of its name; `Ok(false)` when its
    /// token was revoked.
    pub async fn ensure_identity(&self, row: &IdentityRow) -> Result<bool, DbError> {
        dispatch!(self, s => s.ensure_identity(row).await)
    }

    /// Closes every connection (SQLite checkpoints its WAL on the last close).
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }
}
