//! The cloud's database, on SQLite (embedded default) or PostgreSQL.
//!
//! All SQL lives in [`store`], written once and generic over the sqlx
//! backend; [`backend`] holds what differs (connection set-up, migrations,
//! placeholders). [`CloudDb`] picks the backend from the configured URL.
//!
//! Invariants every write keeps, inside one transaction on the single write
//! connection (so writes are serialised and an answer means committed):
//! - a version is stored once per (reading id, HLC, version site id):
//!   multi-row `INSERT … ON CONFLICT DO NOTHING`, whose row count says whether
//!   everything was new; when not, the rows this push added are read back by
//!   id (ids only grow, and every push holds the push counter's row lock
//!   until it commits, so no other writer can add rows meanwhile). This is
//!   `RETURNING` without its cost: sqlx's SQLite driver hands every returned
//!   row across threads one by one, which cost about a third of the
//!   throughput;
//! - a push's idempotency record (body digest and answer) commits with its
//!   versions, so a replay can never see half a push;
//! - a seq is `held` as soon as one of its versions is stored, and `held` is
//!   never overwritten by `rejected` or `dropped`;
//! - the push counter only grows, across restarts.

mod backend;
mod store;

use std::path::PathBuf;

use edge_cloud_link::contract::{Coverage, SimpleReading, UnsentReport};
use sqlx::{Postgres, Sqlite};

use crate::admin::{StoredSimpleReading, StoredVersion};
use crate::batch::CheckedBatch;
pub(crate) use store::Store;

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
    /// Schema migrations failed.
    #[error("cloud database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
    /// A stored idempotency answer could not be read back or written.
    #[error("stored push answer is unreadable: {0}")]
    StoredAnswer(#[from] std::io::Error),
    /// An answer could not be serialised.
    #[error("cannot serialise a push answer: {0}")]
    Serialize(#[from] serde_json::Error),
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
}

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
    },
    /// The key was seen with the same body: the first answer, again.
    Replay {
        /// The stored `PushResponse` JSON.
        body: Vec<u8>,
    },
    /// The key was seen with a different body.
    KeyReused,
}

/// One page of a listing, with the cursor of the next page.
#[derive(Debug)]
pub(crate) struct Page<T> {
    /// The rows.
    pub rows: Vec<T>,
    /// Pass as `after` to get the next page; `None` at the end.
    pub next: Option<i64>,
}

/// The cloud database on one of the two backends.
pub(crate) enum CloudDb {
    /// Embedded SQLite (WAL, synchronous FULL).
    Sqlite(Store<Sqlite>),
    /// PostgreSQL.
    Postgres(Store<Postgres>),
}

macro_rules! dispatch {
    ($db:expr, $store:ident => $body:expr) => {
        match $db {
            CloudDb::Sqlite($store) => $body,
            CloudDb::Postgres($store) => $body,
        }
    };
}

impl CloudDb {
    /// Connects and runs migrations.
    pub async fn open(options: &DbOptions) -> Result<CloudDb, DbError> {
        let url = options.database_url.as_deref().unwrap_or("");
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(CloudDb::Postgres(
                Store::<Postgres>::open_postgres(url, options).await?,
            ))
        } else if url.is_empty() || url.starts_with("sqlite:") {
            Ok(CloudDb::Sqlite(
                Store::<Sqlite>::open_sqlite(options).await?,
            ))
        } else {
            // A mistyped PostgreSQL URL must not quietly become a SQLite file.
            let scheme = url.split(':').next().unwrap_or_default();
            Err(DbError::UnsupportedUrl {
                scheme: scheme.chars().take(20).collect(),
            })
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            CloudDb::Sqlite(_) => "sqlite",
            CloudDb::Postgres(_) => "postgres",
        }
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

    /// Simple-API readings, by id.
    pub async fn simple_page(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Page<StoredSimpleReading>, DbError> {
        dispatch!(self, s => s.simple_page(after, limit).await)
    }

    /// Closes both pools.
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }
}
