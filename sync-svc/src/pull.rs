//! The pull direction: read the cloud's change feed from the cursor the
//! store keeps, and hand each page to store-svc, which applies it by the
//! conflict rule the cloud announced (DESIGN §3).
//!
//! The feed holds versions written elsewhere (in the cloud, or at another
//! site for a shared sensor) of the readings this site originated and of
//! the sensors it shares; never one this site wrote. store-svc stores the
//! page and its cursor in one transaction, so a page applied twice (sync-svc
//! died between apply and the next read) changes nothing the second time,
//! and nothing pulled ever enters the outbox: no version goes back and forth.
//!
//! The loop runs while the link is up: every `--pull-interval`, at once
//! when the link returns, and on SyncNow. A failure (cloud or store) is
//! logged, shown in the status and retried after a jittered backoff; the
//! cursor only moves when a page was applied.

use std::sync::Arc;
use std::time::Instant;

use edge_cloud_link::CloudError;
use edge_cloud_link::contract::{self, ChangesPage, VersionRecord};
use edge_proto::rules::us_to_timestamp;
use edge_proto::v1 as pb;
use edge_versioning::Policy;
use tokio_util::sync::CancellationToken;

use crate::drain::Drain;

/// Why a pull stopped before the feed's end.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The cloud did not answer with a page.
    #[error("change feed: {0}")]
    Cloud(#[from] CloudError),
    /// The cloud announced a rule this build does not know; nothing is
    /// applied under a rule the site cannot follow.
    #[error("the cloud announced an unknown conflict policy {0:?}")]
    UnknownPolicy(String),
    /// store-svc did not apply the page.
    #[error("store-svc: {}", .0.message())]
    Store(#[from] tonic::Status),
}

/// What one pass over the feed did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pulled {
    /// Pages applied.
    pub pages: u64,
    /// Versions stored.
    pub applied: u64,
    /// Versions already held.
    pub already_held: u64,
    /// Versions of readings this site no longer stores.
    pub skipped: u64,
    /// Conflicts resolved.
    pub conflicts: u64,
}

/// Pulls while the link is up, until `stop`.
pub async fn run(drain: Arc<Drain>, stop: CancellationToken) {
    let mut link = drain.prober.watch();
    let mut failures = 0u32;
    loop {
        let mut wait = drain.config.pull_interval;
        if link.borrow_and_update().is_reachable() {
            let pulled = tokio::select! {
                pulled = pull_all(&drain) => pulled,
                () = stop.cancelled() => return,
            };
            match pulled {
                Ok(pulled) => {
                    failures = 0;
                    if pulled.applied + pulled.conflicts > 0 {
                        tracing::info!(
                            pages = pulled.pages,
                            applied = pulled.applied,
                            already_held = pulled.already_held,
                            skipped = pulled.skipped,
                            conflicts = pulled.conflicts,
                            "applied the cloud's changes"
                        );
                    }
                }
                Err(err) => {
                    failures += 1;
                    drain.metrics.pull_failures.add(1, &[]);
                    let error = err.to_string();
                    drain.status.error(&error);
                    let at_least = match &err {
                        PullError::Cloud(cloud) => cloud.retry_after(),
                        _ => None,
                    };
                    wait = wait.min(drain.backoff.delay(failures, at_least));
                    tracing::warn!(%error, retry_in = ?wait, failures, "cannot pull the cloud's changes yet");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            () = drain.pull_wake.notified() => {}
            changed = link.changed() => if changed.is_err() { return },
        }
    }
}

/// Reads the feed from the stored cursor to its end, applying each page.
pub async fn pull_all(drain: &Drain) -> Result<Pulled, PullError> {
    let mut store = drain.store.clone();
    let mut cursor = store
        .get_pull_cursor(pb::GetPullCursorRequest {})
        .await?
        .into_inner()
        .cursor;
    let mut pulled = Pulled::default();
    loop {
        drain.metrics.pull_attempts.add(1, &[]);
        let page = drain
            .cloud
            .changes(
                &drain.site_id,
                cursor,
                drain.config.pull_page_size,
                &drain.config.shared_sensors,
            )
            .await?;
        let policy = follow_policy(drain, &page.policy)?;
        let more = page.more;
        if page.versions.is_empty() && page.next_cursor == cursor {
            break;
        }
        let started = Instant::now();
        let applied = store
            .apply_remote_versions(apply_request(page, policy))
            .await?
            .into_inner();
        drain
            .metrics
            .apply_seconds
            .record(started.elapsed().as_secs_f64(), &[]);
        drain.metrics.pulled("applied", applied.applied);
        drain.metrics.pulled("already_held", applied.already_held);
        drain.metrics.pulled("skipped", applied.skipped);
        pulled.pages += 1;
        pulled.applied += applied.applied;
        pulled.already_held += applied.already_held;
        pulled.skipped += applied.skipped;
        pulled.conflicts += applied.conflicts;
        cursor = applied.cursor;
        drain.status.pulled(
            applied.cursor,
            applied.applied + applied.already_held + applied.skipped,
        );
        if !more {
            break;
        }
    }
    drain.status.pull_done(cursor);
    Ok(pulled)
}

/// The announced rule, which the site follows whatever its own setting;
/// a disagreeing setting is reported (once per change, and in the status
/// and a gauge for as long as it lasts).
fn follow_policy(drain: &Drain, announced: &str) -> Result<Policy, PullError> {
    let policy: Policy = announced
        .parse()
        .map_err(|_| PullError::UnknownPolicy(announced.to_owned()))?;
    let expected = drain.config.conflict_policy;
    let mismatch = expected.is_some_and(|own| own != policy);
    if drain.status.policy(policy.as_str(), mismatch) && mismatch {
        tracing::error!(
            announced = %policy,
            configured = ?expected.map(Policy::as_str),
            "CONFLICT POLICY MISMATCH: the cloud announces {policy} but this site is configured for {}; following the cloud. Fix --conflict-policy / EDGE_CONFLICT_POLICY (or the cloud's) so they agree",
            expected.map_or("", Policy::as_str),
        );
    }
    drain.metrics.set_policy_mismatch(mismatch);
    Ok(policy)
}

/// The store request for one page.
fn apply_request(page: ChangesPage, policy: Policy) -> pb::ApplyRemoteVersionsRequest {
    pb::ApplyRemoteVersionsRequest {
        versions: page.versions.into_iter().map(remote_version).collect(),
        policy: policy.as_str().to_owned(),
        next_cursor: page.next_cursor,
    }
}

/// A feed version in the store's shape (the inverse of
/// [`crate::drain::record`]).
pub fn remote_version(v: VersionRecord) -> pb::RemoteVersion {
    pb::RemoteVersion {
        reading_id: v.reading_id,
        origin_site_id: v.origin_site_id,
        origin_seq: v.seq,
        sensor_id: v.sensor_id,
        temperature_celsius: v.temperature_celsius,
        humidity_percent: v.humidity_percent,
        measured_at: Some(us_to_timestamp(v.measured_at_us)),
        received_at: Some(us_to_timestamp(v.received_at_us)),
        priority: match v.priority {
            contract::Priority::Critical => pb::Priority::Critical,
            contract::Priority::Normal => pb::Priority::Normal,
        } as i32,
        clock_suspect: v.clock_suspect,
        version: Some(stamp(v.version)),
        base: v.base.map(stamp),
        quality: match v.quality {
            contract::Quality::Good => pb::Quality::Good,
            contract::Quality::Suspect => pb::Quality::Suspect,
            contract::Quality::Bad => pb::Quality::Bad,
        } as i32,
        note: v.note.unwrap_or_default(),
    }
}

/// A contract version stamp in the store's shape.
fn stamp(s: contract::VersionStamp) -> pb::VersionStamp {
    pb::VersionStamp {
        hlc: Some(pb::Hlc {
            physical_ms: s.hlc.physical_ms,
            logical: s.hlc.logical,
        }),
        site_id: s.site_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain::record;

    /// A feed version survives the trip into the store's shape and back
    /// (what the site would push of it) unchanged, field by field.
    #[test]
    fn a_feed_version_round_trips_through_the_store_shape() {
        let original = VersionRecord {
            reading_id: "0b3f2a4e-7c1d-4e8a-9f00-1234567890ab".into(),
            seq: 42,
            origin_site_id: "mine-7".into(),
            sensor_id: "pump/3".into(),
            temperature_celsius: -12.5,
            humidity_percent: 88.25,
            measured_at_us: 1_700_000_000_123_456,
            received_at_us: 1_700_000_001_000_001,
            priority: contract::Priority::Critical,
            clock_suspect: true,
            version: contract::VersionStamp {
                hlc: contract::Hlc {
                    physical_ms: 1_700_000_002_000,
                    logical: 3,
                },
                site_id: "cloud".into(),
            },
            quality: contract::Quality::Bad,
            note: Some("sensor drifted".into()),
            base: Some(contract::VersionStamp {
                hlc: contract::Hlc {
                    physical_ms: 1_700_000_001_000,
                    logical: 0,
                },
                site_id: "mine-7".into(),
            }),
        };
        let stored = remote_version(original.clone());
        let back = record(&pb::OutboxVersion {
            reading_id: stored.reading_id.clone(),
            seq: stored.origin_seq,
            origin_site_id: stored.origin_site_id.clone(),
            sensor_id: stored.sensor_id.clone(),
            temperature_celsius: stored.temperature_celsius,
            humidity_percent: stored.humidity_percent,
            measured_at: stored.measured_at,
            received_at: stored.received_at,
            priority: stored.priority,
            clock_suspect: stored.clock_suspect,
            version: stored.version.clone(),
            quality: stored.quality,
            note: stored.note.clone(),
            base: stored.base.clone(),
            ..Default::default()
        });
        assert_eq!(back, original);

        let plain = VersionRecord {
            note: None,
            base: None,
            quality: contract::Quality::Good,
            priority: contract::Priority::Normal,
            ..original
        };
        let stored = remote_version(plain);
        assert_eq!(stored.note, "");
        assert_eq!(stored.base, None);
        assert_eq!(stored.quality, pb::Quality::Good as i32);
        assert_eq!(stored.priority, pb::Priority::Normal as i32);
    }
}
