//! Who may call what.
//!
//! - [`Scope`] / [`Scopes`]: the rights (`ingest`, `read`, `operate`,
//!   `mesh`);
//! - [`policy`]: the one table of which method needs which scope;
//! - [`identity`]: identities, their hashed tokens, and the table every
//!   server keeps in memory and reloads;
//! - [`limits`]: per-identity call and reading rates;
//! - [`guard`]: the tower layer that checks every call against all of it.

pub mod guard;
pub mod identity;
pub mod limits;
pub mod policy;
pub mod remote;
mod scope;

pub use guard::{Guard, GuardLayer, caller, caller_name};
pub use identity::{
    Identities, Identity, IdentityRecord, IdentitySource, LoadError, LoadFuture, Loaded, Lookup,
};
pub use limits::{RateLimiter, Rates, over_rate};
pub use scope::{Scope, Scopes, UnknownScope};
