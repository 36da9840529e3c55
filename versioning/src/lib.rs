//! How versions of a reading are stamped and ordered, in one place for every
//! replica: the sites' store-svc and the cloud apply exactly this code, so
//! they cannot disagree about which version of a reading wins (DESIGN §1 P4,
//! §3).
//!
//! - [`hlc`]: the hybrid logical clock that stamps every version, never going
//!   backwards whatever the wall clock does.
//! - [`policy`]: the deployment's conflict rule (`lww`, `cloud-wins`,
//!   `edge-wins`), which the cloud announces.
//! - [`resolve`]: a reading's versions and the winner among them, the same
//!   for any order in which the versions arrived.

pub mod hlc;
pub mod policy;
pub mod resolve;

pub use hlc::{Hlc, OffsetClock, SystemClock, WallClock};
pub use policy::{CLOUD_SITE_ID, Policy, PolicyParseError};
pub use resolve::{Applied, Conflict, History, Side, Stamp, Version};
