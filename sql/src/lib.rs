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
//!   transaction.
//!
//! This crate is the home for further SQL the two share (statement building,
//! what differs between the backends); it holds no service logic and no
//! schema of its own: each service keeps its migrations and its queries.

pub mod durability;
pub mod failure;
pub mod faults;
pub mod migrate;
pub mod write;

pub use durability::{DurabilityError, check_postgres_durability};
pub use failure::{Classify, Failure, classify};
pub use faults::{Fault, FaultPoint, WriteFaults};
pub use migrate::{
    BackupError, BackupPolicy, EXIT_BACKUP_FAILED, EXIT_SCHEMA_REFUSED, MigrateError, Migrated,
    Upgrade, exit_code, migrate_postgres, migrate_sqlite,
};
pub use write::{FaultableBackend, WriteConn};
