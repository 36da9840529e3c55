//! The cloud's database, on SQLite (embedded default) or PostgreSQL.
//!
//! All SQL is written once, generic over the sqlx backend: pushes and the
//! books in [`store`], the version rows every write shares in [`versions`],
//! amendments, reading state and the change feed in [`readings`], admin
//! listings in [`listings`], statement shapes and stored names in [`sql`];
//! [`backend`] holds what differs for the cloud (connection set-up, reading
//! many readings' versions); [`schema`] migrates the database at start-up
//! (backup first, kill-safe, a newer schema refused). The plumbing the site's
//! store shares (the backend core, the sqlx bounds, pools, placeholders,
//! opening) is [`edge_sql`]'s. [`CloudDb`] picks the backend from the
//! configured URL.
//!
//! Invariants every write keeps, inside one transaction on the single write
//! connection (so writes are serialised and an answer means committed):
//! - every transaction that writes versions first locks the `cloud_state`
//!   row, so version row ids follow commit order on both backends (the
//!   change feed's cursor is a row id) and the histories a write loaded stay
//!   true until it commits;
//! - a version is stored once per (reading id, HLC, version site id): the
//!   touched readings' histories are loaded first (one query per chunk of
//!   reading ids) and say which versions are held already; only new ones
//!   are inserted, and an `INSERT … ON CONFLICT DO NOTHING` that still finds
//!   one held fails the write rather than answer wrongly;
//! - each reading's current version (`current_versions`), every conflict
//!   (`conflicts`) and the cloud's HLC (`cloud_state.hlc`) commit with the
//!   versions that changed them, so they never disagree with the versions
//!   held;
//! - the cloud's HLC never ends a write further ahead of the wall clock than
//!   `--max-clock-skew` (and falls back to it at start): a version stamped
//!   further ahead is stored with how far ahead it was (`clock_ahead_ms`),
//!   and a reading's new version is stamped above all of its versions;
//! - a push's idempotency record (body digest and answer) commits with its
//!   versions, so a replay can never see half a push;
//! - a seq is `held` as soon as one of its versions is stored, and `held` is
//!   never overwritten by `rejected` or `dropped`;
//! - the push counter only grows, across restarts.

mod backend;
mod books;
mod listings;
mod readings;
mod schema;
mod sites;
mod sql;
mod store;
mod versions;

use std::path::PathBuf;

use edge_cloud_link::contract::{
    AmendmentRequest, Coverage, ReadingState, SimpleReading, UnsentReport, VersionRecord,
};
use edge_sql::{BackendKind, OnBackend};
use edge_versioning::{Policy, SkewBound};
use sqlx::{Postgres, Sqlite};

use crate::batch::CheckedBatch;
use crate::stored::{StoredConflict, StoredSimpleReading, StoredVersion};
pub use readings::FEED_WINDOW;
pub use sites::SiteTokenRow;
pub(crate) use sites::{Issued, Replace};
pub(crate) use store::{Store, Versioning};

/// A database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached or opened.
    #[error("cannot open the {backend} cloud database: {source}")]
    Connect {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// The data directory could not be created.
    #[error("cannot create the cloud data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The database URL names a backend the cloud does not have. The URL is
    /// not repeated: it may hold a password.
    #[error(
        "--cloud-database-url / EDGE_CLOUD_DATABASE_URL must start with postgres://, postgresql:// \
         or sqlite: (got a URL starting with {scheme:?})"
    )]
    UnsupportedUrl {
        /// What the URL started with, up to its first ':'.
        scheme: String,
    },
    /// The schema was not brought up to date: refused (a newer or foreign
    /// schema, no backup possible) or a migration failed. The cause says
    /// which, and what to do.
    #[error("the cloud database's schema was not brought up to date")]
    Migrate(#[from] edge_sql::MigrateError),
    /// PostgreSQL is set up so that a commit may not survive a crash.
    #[error(transparent)]
    NotDurable(#[from] edge_sql::DurabilityError),
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// A stored idempotency answer could not be read back or written.
    #[error("stored push answer is unreadable: {0}")]
    StoredAnswer(#[from] std::io::Error),
    /// An answer could not be serialised.
    #[error("cannot serialise a push answer: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The database disagreed with what the write had just read under its
    /// lock (another writer without the lock?). Nothing was committed.
    #[error("the cloud database changed under a write: {0}")]
    Inconsistent(String),
    /// An amendment named a reading whose versions are stamped at the very
    /// top of the clock's range: nothing can be stamped above them.
    #[error(transparent)]
    ClockExhausted(edge_versioning::ReadingExhausted),
    /// A stamp outside the clock's range reached the database (pushes are
    /// checked before, so this is a bug, never a silent clamp).
    #[error("a version stamp is outside the clock's range: {0}")]
    StampRange(#[from] edge_versioning::OutOfRange),
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub(crate) struct DbOptions {
    /// `sqlite:…` or `postgres://…`; `None` means SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Where the embedded SQLite database lives.
    pub data_dir: PathBuf,
    /// Connections for reads (the writer has its own).
    pub read_connections: u32,
    /// Whether SQLite is backed up before pending migrations change it.
    pub migration_backup: edge_sql::BackupPolicy,
    /// Start even when PostgreSQL's settings do not make a commit durable.
    pub accept_postgres_durability_risk: bool,
    /// Faults a test injects into writes; `None` outside tests.
    pub write_faults: Option<std::sync::Arc<edge_sql::WriteFaults>>,
}

pub use edge_sql::{Classify, Failure};

edge_sql::db_error_by_variants!(DbError {
    query: Query,
    connect: Connect,
    data_dir: DataDir,
});

/// What a batch push did.
#[derive(Debug)]
pub(crate) enum PushOutcome {
    /// Newly committed: the JSON answer and what it counted.
    Stored {
        /// The `PushResponse` JSON, as stored for replays.
        body: Vec<u8>,
        /// Versions newly stored.
        accepted: u64,
        /// Versions already held.
        duplicate: u64,
        /// Versions rejected.
        rejected: u64,
        /// Conflicts resolved (each is in the audit log).
        conflicts: u64,
        /// Versions received too far ahead of the cloud's wall clock.
        skew: Option<Skew>,
    },
    /// The key was seen with the same body: the first answer, again.
    Replay {
        /// The stored `PushResponse` JSON.
        body: Vec<u8>,
    },
    /// The key was seen with a different body.
    KeyReused,
}

/// Versions a write received further ahead of the cloud's wall clock than
/// `--max-clock-skew`: still stored, but counted and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skew {
    /// How many.
    pub versions: u64,
    /// How far ahead the furthest one was, in milliseconds.
    pub furthest_ahead_ms: u64,
    /// Its reading.
    pub reading_id: String,
}

/// What an amendment did.
#[derive(Debug)]
pub(crate) struct Amendment {
    /// The reading as the cloud holds it now.
    pub state: ReadingState,
    /// Conflicts it caused (none: it is written on top of the current one).
    pub conflicts: u64,
}

/// One page of the change feed.
#[derive(Debug)]
pub(crate) struct FeedPage {
    /// The versions with their row ids, by row id.
    pub versions: Vec<(i64, VersionRecord)>,
    /// More versions may match beyond this page.
    pub more: bool,
    /// When the page holds every match up to a row id beyond its last
    /// version (a feed that follows shared sensors and was not cut by its
    /// limit): that id, the next page's cursor.
    pub covered_to: Option<i64>,
}

/// One page of a listing, with the cursor of the next page.
#[derive(Debug)]
pub(crate) struct Page<T, C = i64> {
    /// The rows.
    pub rows: Vec<T>,
    /// Pass as `after` to get the next page; `None` at the end.
    pub next: Option<C>,
}

impl<T, C> Page<T, C> {
    /// A page from rows fetched with `LIMIT limit + 1`: the extra row only
    /// says another page follows, whose cursor is `key` of the last row kept.
    pub(crate) fn from_overfetched(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> C) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = if more { rows.last().map(key) } else { None };
        Page { rows, next }
    }
}

/// The cloud database on one of the two backends: embedded SQLite (WAL,
/// synchronous FULL), or PostgreSQL.
pub(crate) struct CloudDb {
    store: OnBackend<Store<Sqlite>, Store<Postgres>>,
}

macro_rules! dispatch {
    ($db:expr, $store:ident => $body:expr) => {
        edge_sql::on_backend!(&$db.store, $store => $body)
    };
}

impl CloudDb {
    /// Connects and runs migrations; versions are resolved and stamped as
    /// `versioning` says.
    pub async fn open(options: &DbOptions, versioning: Versioning) -> Result<CloudDb, DbError> {
        let url = options.database_url.as_deref().unwrap_or("");
        // A mistyped PostgreSQL URL must not quietly become a SQLite file.
        let store =
            match BackendKind::of_url(url).map_err(|scheme| DbError::UnsupportedUrl { scheme })? {
                BackendKind::Postgres => OnBackend::Postgres(
                    Store::<Postgres>::open_postgres(url, options, versioning).await?,
                ),
                BackendKind::Sqlite => {
                    OnBackend::Sqlite(Store::<Sqlite>::open_sqlite(options, versioning).await?)
                }
            };
        let db = CloudDb { store };
        dispatch!(db, s => s.recover_clock().await)?;
        Ok(db)
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.store.label()
    }

    /// The deployment's conflict rule.
    pub fn policy(&self) -> Policy {
        dispatch!(self, s => s.policy())
    }

    /// The deployment's clock-skew bound, announced with the change feed.
    pub fn max_clock_skew(&self) -> SkewBound {
        dispatch!(self, s => s.max_clock_skew())
    }

    /// Stores a checked batch under its idempotency key (see [`Store::push`]).
    pub async fn push(
        &self,
        batch: &CheckedBatch,
        key: &str,
        digest: &[u8],
    ) -> Result<PushOutcome, DbError> {
        dispatch!(self, s => s.push(batch, key, digest).await)
    }

    /// The site's books.
    pub async fn coverage(&self, site_id: &str) -> Result<Coverage, DbError> {
        dispatch!(self, s => s.coverage(site_id).await)
    }

    /// Records seqs the site will not deliver; returns how many entries.
    pub async fn record_unsent(
        &self,
        site_id: &str,
        report: &UnsentReport,
    ) -> Result<u64, DbError> {
        dispatch!(self, s => s.record_unsent(site_id, report).await)
    }

    /// Stores a simple-API reading; returns its id.
    pub async fn insert_simple(&self, reading: &SimpleReading) -> Result<i64, DbError> {
        dispatch!(self, s => s.insert_simple(reading).await)
    }

    /// Versions stored for a site, by storage order.
    pub async fn versions_page(
        &self,
        site_id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Page<StoredVersion>, DbError> {
        dispatch!(self, s => s.versions_page(site_id, after, limit).await)
    }

    /// Versions of any site stored flagged (stamped beyond the clock-skew
    /// bound), by storage order.
    pub async fn clock_ahead_page(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Page<StoredVersion>, DbError> {
        dispatch!(self, s => s.clock_ahead_page(after, limit).await)
    }

    /// The cloud's amendment of a reading; `None` when it holds no such reading.
    pub async fn amend(
        &self,
        reading_id: &str,
        request: &AmendmentRequest,
        written_by: &str,
    ) -> Result<Option<Amendment>, DbError> {
        dispatch!(self, s => s.amend(reading_id, request, written_by).await)
    }

    /// A reading's current version; `None` when the cloud holds no such reading.
    pub async fn reading_state(&self, reading_id: &str) -> Result<Option<ReadingState>, DbError> {
        dispatch!(self, s => s.reading_state(reading_id).await)
    }

    /// One page of a site's change feed.
    pub async fn changes(
        &self,
        site_id: &str,
        after: i64,
        limit: usize,
        sensors: &[String],
    ) -> Result<FeedPage, DbError> {
        dispatch!(self, s => s.changes(site_id, after, limit, sensors).await)
    }

    /// Current versions by reading id, optionally of one origin site.
    pub async fn current_page(
        &self,
        origin: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<VersionRecord, String>, DbError> {
        dispatch!(self, s => s.current_page(origin, after, limit).await)
    }

    /// The conflict audit log, by id, optionally of one reading.
    pub async fn conflicts_page(
        &self,
        reading_id: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Page<StoredConflict>, DbError> {
        dispatch!(self, s => s.conflicts_page(reading_id, after, limit).await)
    }

    /// Simple-API readings, by id.
    pub async fn simple_page(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Page<StoredSimpleReading>, DbError> {
        dispatch!(self, s => s.simple_page(after, limit).await)
    }

    /// Every active site token: (hash hex, site id).
    pub async fn active_site_tokens(&self) -> Result<Vec<(String, String)>, DbError> {
        dispatch!(self, s => s.active_site_tokens().await)
    }

    /// The site whose active token hashes to `hash` (hex).
    pub async fn site_of_token_hash(&self, hash: &str) -> Result<Option<String>, DbError> {
        dispatch!(self, s => s.site_of_token_hash(hash).await)
    }

    /// Makes `hash` `site`'s active token (see [`Replace`]).
    pub async fn issue_site_token(
        &self,
        site: &str,
        hash: &str,
        now_us: i64,
        replace: Replace,
    ) -> Result<Issued, DbError> {
        dispatch!(self, s => s.issue_site_token(site, hash, now_us, replace).await)
    }

    /// Revokes `site`'s active token; how many were revoked.
    pub async fn revoke_site_tokens(&self, site: &str, now_us: i64) -> Result<u64, DbError> {
        dispatch!(self, s => s.revoke_site_tokens(site, now_us).await)
    }

    /// Every site token row (never a token or a hash).
    pub async fn site_tokens(&self) -> Result<Vec<SiteTokenRow>, DbError> {
        dispatch!(self, s => s.site_tokens().await)
    }

    /// Closes both pools.
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }
}
