//! What pushing some versions came to, in the form the store records it:
//! shared by the drain's batch pushes and compatibility mode's single ones.

use std::time::{Duration, SystemTime};

use edge_cloud_link::CloudError;
use edge_proto::internal::v1 as ipb;
use edge_proto::v1 as pb;

use crate::backoff::Backoff;

/// Prefix of a recorded failure after which the cloud may have stored the
/// reading anyway (compatibility mode counts the next attempt as a possible
/// duplicate).
pub const AMBIGUOUS_PREFIX: &str = "ambiguous: ";

/// The outcome of pushing some versions, to be recorded in the store.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Accepted or duplicate.
    pub synced: Vec<u64>,
    /// Rejected, with the reason.
    pub rejected: Vec<ipb::RejectedVersion>,
    /// Failed transiently, with when to retry.
    pub failed: Vec<ipb::FailedVersions>,
    /// A push got a well-formed answer.
    pub any_success: bool,
    /// The failure that should slow the whole drain, with any wait the
    /// cloud asked for.
    pub failure: Option<(String, Option<Duration>)>,
}

/// The failure record for `versions` after `err`: retried after a
/// jittered backoff on their attempts, at least any `Retry-After`.
pub fn failed(
    backoff: &Backoff,
    versions: &[&pb::OutboxVersion],
    err: &CloudError,
) -> ipb::FailedVersions {
    let attempts = versions.iter().map(|v| v.attempts).max().unwrap_or(0) + 1;
    let delay = backoff.delay(attempts, err.retry_after());
    let error = if err.is_ambiguous() {
        format!("{AMBIGUOUS_PREFIX}{err}")
    } else {
        err.to_string()
    };
    ipb::FailedVersions {
        version_ids: versions.iter().map(|v| v.version_id).collect(),
        error,
        retry_at: Some(prost_types::Timestamp::from(SystemTime::now() + delay)),
        not_attempted: false,
    }
}

/// Versions a failed lease never got to send: they wait until `retry_at`
/// like the failed ones, but no attempt is counted against them.
pub(crate) fn postponed(
    version_ids: Vec<u64>,
    retry_at: Option<prost_types::Timestamp>,
) -> ipb::FailedVersions {
    ipb::FailedVersions {
        version_ids,
        error: String::new(),
        retry_at,
        not_attempted: true,
    }
}
