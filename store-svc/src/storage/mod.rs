//! Bounded storage (docs/architecture.md: P2, Storage at the site): retention,
//! a storage budget, a free-disk reserve, and the policy once nothing synced
//! is left.
//!
//! - [`config`]: the flags;
//! - [`disk`]: free space on the data directory's file system;
//! - [`budget`]: measuring, freeing in the order the rules give, and telling
//!   the writer whether a group fits;
//! - [`refusal`]: the periods during which writes are refused for lack of
//!   storage (the budget's, or a full disk's).
//!
//! The SQL that removes rows lives with the rest of the schema's SQL, in
//! `crate::db`.

pub mod budget;
pub mod config;
pub mod disk;
pub mod refusal;

pub use budget::{AdmitError, Budget, StorageFull, StorageSnapshot};
pub use config::{Policy, Reserve, StorageArgs};
pub use disk::{DiskProbe, DiskSpace, FileSystem};
pub use refusal::{Refusals, Refusing};
