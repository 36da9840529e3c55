//! edge-sql: the SQL plumbing the site's store (store-svc) and the reference
//! cloud (`edge cloud`) share.
//!
//! Both own a database on SQLite or PostgreSQL through `sqlx`, and both must
//! treat it the same way where a mistake would cost data. What is written
//! once here, rather than copied into each and left to drift:
//!
//! - [`migrate`]: bringing a database to the schema a binary knows, safely
//!   for a site nobody watches: a consistent backup before an upgrade touches
//!   data, every migration all or nothing (a kill mid-way leaves the previous
//!   schema, and the next start finishes the job), and a clear refusal,
//!   before anything is written, when the database is newer than the binary;
//! - [`write`]: the connection every write runs on, closed rather than
//!   reused after any failure, so nothing is acknowledged that a commit did
//!   not prove;
//! - [`failure`]: what a database error means for the caller (storage full,
//!   unavailable, refused data, other), from either driver's codes;
//! - [`faults`]: the seam through which tests make writes fail at every
//!   point of their transaction;
//! - [`durability`]: refusing a PostgreSQL that can lose a committed
//!   transaction;
//! - [`backend`]: what generic SQL needs of a backend ([`SqlDatabase`]: the
//!   placeholder syntax, snapshots, rows changed), the one set of sqlx
//!   bounds such code takes ([`sql_bounds`]), a service's read and write
//!   pools ([`Pools`]), and choosing the backend from a URL
//!   ([`BackendKind`], [`OnBackend`], [`on_backend!`]);
//! - [`open`]: opening a service's database the same way everywhere (where
//!   SQLite lives and its shared settings; PostgreSQL's pools, checked for
//!   durability and migrated first), with a service's error built through
//!   [`db_error_by_variants!`];
//! - [`statement`]: multi-row statements in a few fixed shapes, and
//!   placeholders numbered in the order their values bind;
//! - [`checkpoint`] and [`task`]: work beside the writer (SQLite's WAL
//!   checkpoints; any task a writer's commits wake), stopped with the
//!   store, reporting a failure once.
//!
//! It holds no service logic and no schema of its own: each service keeps
//! its migrations and its queries, and a trait of its own on top of
//! [`SqlDatabase`] for what differs per backend in its SQL.

// The paths `#[sql_bounds]` writes (`::edge_sql::…`) resolve here too.
extern crate self as edge_sql;

pub mod backend;
pub mod checkpoint;
pub mod durability;
pub mod failure;
pub mod faults;
pub mod migrate;
pub mod open;
pub mod runs;
pub mod statement;
pub mod task;
pub mod write;

pub use backend::{BackendKind, OnBackend, Pools, SqlDatabase};
pub use durability::{DurabilityError, check_postgres_durability};
pub use failure::{Classify, Failure, classify};
pub use faults::{Fault, FaultPoint, WriteFaults};
pub use migrate::{
    BackupError, BackupPolicy, EXIT_BACKUP_FAILED, EXIT_SCHEMA_REFUSED, MigrateError, Migrated,
    Schema, Upgrade, exit_code, migrate_postgres, migrate_sqlite,
};
pub use open::{OpenFailure, PostgresSettings};
pub use write::{FaultableBackend, WriteConn};

/// Adds the sqlx bounds of [`SqlDatabase`] (listed there) for the type
/// parameter `DB` (or the one named: `#[sql_bounds(D)]`) to the `where`
/// clause of an `impl` block, a function or a trait, so generic SQL states
/// them in one line instead of repeating a dozen. Also requires
/// `DB: SqlDatabase`.
///
/// An attribute rather than a trait alone: Rust does not carry a trait's
/// `where` clauses over to the trait's users when they bound other types
/// (`i64: Encode<'q, DB>`), so every generic item would repeat them.
///
/// As a service's database layer uses it:
///
/// ```text
/// #[edge_sql::sql_bounds]
/// impl<DB: Backend> Store<DB> {
///     async fn count(&self) -> Result<i64, sqlx::Error> {
///         let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t")
///             .fetch_one(self.pools.read())
///             .await?;
///         Ok(n)
///     }
/// }
/// ```
pub use edge_sql_macros::sql_bounds;

/// What the macros of this crate refer to; not part of its interface.
#[doc(hidden)]
pub mod __private {
    pub use sqlx;
}
