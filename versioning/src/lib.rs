//! How versions of a reading are stamped and ordered, in one place for every
//! replica: the sites' store-svc and the cloud apply exactly this code, so
//! they cannot disagree about which version of a reading wins
//! (docs/architecture.md: P4, Data model).
//!
//! - [`hlc`]: the hybrid logical clock stamp every version carries, its
//!   range and its packed form.
//! - [`clock`]: how a node's clock stamps and receives versions: it adopts
//!   a remote stamp only up to a bound ahead of its wall clock, and stamps a
//!   reading's next version above every version of it, so amending always
//!   works whatever the clocks said.
//! - [`policy`]: the deployment's conflict rule (`lww`, `cloud-wins`,
//!   `edge-wins`), which the cloud announces.
//! - [`resolve`]: a reading's versions and the winner among them, the same
//!   for any order in which the versions arrived.

pub mod clock;
pub mod hlc;
pub mod policy;
pub mod resolve;

pub use clock::{DEFAULT_MAX_CLOCK_SKEW, NodeClock, SkewBound};
pub use hlc::{Exhausted, Hlc, OffsetClock, OutOfRange, ReadingExhausted, SystemClock, WallClock};
pub use policy::{CLOUD_SITE_ID, Policy, PolicyParseError};
pub use resolve::{Applied, Conflict, History, Side, Stamp, Version};
