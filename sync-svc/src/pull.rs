//! The pull direction: read the cloud's change feed from the cursor the
//! store keeps, and hand each page to store-svc, which applies it by the
//! conflict rule and under the clock-skew bound the cloud announced
//! (docs/architecture.md, Data model).
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
use edge_cloud_link::contract::ChangesPage;
use edge_proto::internal::v1 as ipb;
use edge_versioning::Policy;
use tokio_util::sync::CancellationToken;

use crate::convert::remote_version;
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
    /// Versions stored flagged: stamped beyond the clock-skew bound.
    pub clock_ahead: u64,
}

/// Pulls while the link is up, until `stop`.
pub async fn run(drain: Arc<Drain>, stop: CancellationToken) {
    let mut link = drain.prober.watch();
    let mut failures = 0u32;
    // The clock-skew bound last handed to store-svc by this process; `None`
    // after a start, so the cloud's is handed over once even when its feed
    // has nothing new.
    let mut bound_handed: Option<u64> = None;
    loop {
        let mut wait = drain.config.pull_interval;
        if link.borrow_and_update().is_reachable() {
            let pulled = tokio::select! {
                pulled = pull_all(&drain, &mut bound_handed) => pulled,
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
                            clock_ahead = pulled.clock_ahead,
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
/// A page with nothing new is applied all the same when it announces a
/// clock-skew bound other than `bound_handed` (the last one store-svc got
/// from here), so a site whose feed is quiet still follows the cloud's.
pub async fn pull_all(drain: &Drain, bound_handed: &mut Option<u64>) -> Result<Pulled, PullError> {
    let mut store = drain.store.sync.clone();
    let mut cursor = store
        .get_pull_cursor(ipb::GetPullCursorRequest {})
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
        let announced = page.max_clock_skew_ms;
        let new_bound = announced.is_some() && announced != *bound_handed;
        if page.versions.is_empty() && page.next_cursor == cursor && !new_bound {
            break;
        }
        let started = Instant::now();
        let applied = store
            .apply_remote_versions(apply_request(page, policy))
            .await?
            .into_inner();
        if announced.is_some() {
            *bound_handed = announced;
        }
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
        pulled.clock_ahead += applied.clock_ahead;
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

/// The store request for one page, with the rule and the clock-skew bound
/// the cloud announced (store-svc keeps the bound and uses it from then on).
fn apply_request(page: ChangesPage, policy: Policy) -> ipb::ApplyRemoteVersionsRequest {
    ipb::ApplyRemoteVersionsRequest {
        versions: page.versions.into_iter().map(remote_version).collect(),
        policy: policy.as_str().to_owned(),
        next_cursor: page.next_cursor,
        max_clock_skew: page.max_clock_skew_ms.and_then(|ms| {
            prost_types::Duration::try_from(std::time::Duration::from_millis(ms)).ok()
        }),
    }
}
