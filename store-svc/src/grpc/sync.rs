//! `edge.internal.v1.StoreSyncService`: sync-svc's calls on the outbox
//! (leases, completions, dead letters and drops to report) and on the
//! cloud's change feed.

use std::sync::Arc;
use std::time::Duration;

use edge_proto::internal::v1 as ipb;
use edge_proto::internal::v1::store_sync_service_server::StoreSyncService;
use tonic::{Request, Response, Status};

use super::{Store, StoreError, page_size, to_u64, version_ids, violation};
use crate::hlc::Hlc;
use crate::lease::LeaseRequest;
use crate::model::{MAX_APPEND_READINGS, VersionStamp, timestamp_to_us, us_to_timestamp};
use crate::outbox::{Completion, FailedGroup};
use crate::revision::remote_page_from_proto;

/// Longest lease a caller may ask for.
const MAX_LEASE: Duration = Duration::from_secs(3_600);
/// Lease length when the caller names none.
const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Attempts after which a version is flagged stuck when the caller names none.
const DEFAULT_STUCK_AFTER_ATTEMPTS: u32 = 10;

/// The StoreSyncService implementation.
pub struct SyncGrpc {
    store: Arc<Store>,
    revisions: RevisionMetrics,
}

/// `conflicts_resolved_total{winner}` and `clock_skew_versions_total`.
struct RevisionMetrics {
    conflicts: opentelemetry::metrics::Counter<u64>,
    skewed: opentelemetry::metrics::Counter<u64>,
}

impl RevisionMetrics {
    fn new() -> Self {
        let meter = edge_runtime::telemetry::meter("store-svc");
        RevisionMetrics {
            conflicts: meter
                .u64_counter("conflicts_resolved_total")
                .with_description(
                    "Conflicts between concurrent versions resolved here, by the side that won (local: the version held; remote: the one pulled)",
                )
                .build(),
            skewed: meter
                .u64_counter("clock_skew_versions_total")
                .with_description(
                    "Versions pulled from the cloud and stored although stamped further ahead of the site's wall clock than the clock-skew bound (flagged; the site's clock stops at the bound)",
                )
                .build(),
        }
    }
}

impl SyncGrpc {
    pub(super) fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            revisions: RevisionMetrics::new(),
        }
    }
}

/// Validates a CompleteBatch request into a [`Completion`].
fn completion_from_proto(request: &ipb::CompleteBatchRequest) -> Result<Completion, StoreError> {
    let synced = version_ids("synced_version_ids", &request.synced_version_ids)?;
    let rejected_ids: Vec<u64> = request.rejected.iter().map(|r| r.version_id).collect();
    let rejected = version_ids("rejected", &rejected_ids)?
        .into_iter()
        .zip(&request.rejected)
        .map(|(id, r)| (id, r.reason.clone()))
        .collect();
    let mut failed = Vec::with_capacity(request.failed.len());
    for (i, group) in request.failed.iter().enumerate() {
        let retry_at_us = timestamp_to_us(group.retry_at.as_ref())
            .ok_or_else(|| violation(&format!("failed[{i}].retry_at"), "is required"))?;
        failed.push(FailedGroup {
            version_ids: version_ids(&format!("failed[{i}].version_ids"), &group.version_ids)?,
            error: group.error.clone(),
            retry_at_us,
            attempted: !group.not_attempted,
        });
    }
    let stuck_after = match request.stuck_after_attempts {
        0 => DEFAULT_STUCK_AFTER_ATTEMPTS,
        n => n,
    };
    Ok(Completion {
        synced,
        rejected,
        failed,
        stuck_after_attempts: i64::from(stuck_after),
    })
}

#[tonic::async_trait]
impl StoreSyncService for SyncGrpc {
    async fn lease_batch(
        &self,
        request: Request<ipb::LeaseBatchRequest>,
    ) -> Result<Response<ipb::LeaseBatchResponse>, Status> {
        let request = request.into_inner();
        let max_versions = request.max_versions as usize;
        if !(1..=MAX_APPEND_READINGS).contains(&max_versions) {
            return Err(violation(
                "max_versions",
                format!("must be between 1 and {MAX_APPEND_READINGS}"),
            )
            .into());
        }
        if request.newest_share_percent > 100 {
            return Err(violation("newest_share_percent", "must be between 0 and 100").into());
        }
        let duration = match request.lease_duration {
            None => DEFAULT_LEASE,
            Some(d) => Duration::try_from(d)
                .ok()
                .filter(|d| (Duration::from_secs(1)..=MAX_LEASE).contains(d))
                .ok_or_else(|| violation("lease_duration", "must be between 1 s and 1 h"))?,
        };
        let now_us = self.store.clock.now_us();
        let batch = self
            .store
            .leases
            .lease(
                &self.store.db,
                LeaseRequest {
                    max_versions,
                    newest_share_percent: request.newest_share_percent,
                    duration,
                },
                now_us,
            )
            .await
            .map_err(StoreError::from)?;
        let expires_us = now_us.saturating_add(i64::try_from(duration.as_micros()).unwrap_or(0));
        Ok(Response::new(ipb::LeaseBatchResponse {
            lease_expires_at: (!batch.lease_id.is_empty()).then(|| us_to_timestamp(expires_us)),
            lease_id: batch.lease_id,
            versions: batch.entries.into_iter().map(|e| e.into_proto()).collect(),
            ingest_busy_percent: self.store.writer.busy().percent(),
        }))
    }

    async fn complete_batch(
        &self,
        request: Request<ipb::CompleteBatchRequest>,
    ) -> Result<Response<ipb::CompleteBatchResponse>, Status> {
        let request = request.into_inner();
        let completion = completion_from_proto(&request)?;
        let counts = self.store.db.complete(&completion).await;
        // Only after the transaction ended, committed or not (see
        // crate::lease). After a failure nothing is assumed: what the
        // commit did or did not do is read again by the next lease, and a
        // version pushed again is a duplicate at the cloud.
        let completed = match &counts {
            Ok(_) => completion.version_ids(),
            Err(_) => Vec::new(),
        };
        self.store
            .leases
            .release(&request.lease_id, &completed)
            .await;
        let counts = counts.map_err(StoreError::from)?;
        Ok(Response::new(ipb::CompleteBatchResponse {
            synced: counts.synced,
            dead_lettered: counts.dead_lettered,
            failed: counts.failed,
            newly_stuck: counts.newly_stuck,
        }))
    }

    async fn list_unreported_dead_letters(
        &self,
        request: Request<ipb::ListUnreportedDeadLettersRequest>,
    ) -> Result<Response<ipb::ListUnreportedDeadLettersResponse>, Status> {
        let page = page_size(request.into_inner().page_size)?;
        // Reported ones leave this list, so every call starts from the first.
        let rows = self
            .store
            .db
            .dead_letters(0, i64::from(page), true)
            .await
            .map_err(StoreError::from)?;
        Ok(Response::new(ipb::ListUnreportedDeadLettersResponse {
            dead_letters: rows.into_iter().map(|r| r.into_proto()).collect(),
        }))
    }

    async fn mark_dead_letters_reported(
        &self,
        request: Request<ipb::MarkDeadLettersReportedRequest>,
    ) -> Result<Response<ipb::MarkDeadLettersReportedResponse>, Status> {
        let ids = version_ids("version_ids", &request.into_inner().version_ids)?;
        self.store
            .db
            .mark_reported(&ids)
            .await
            .map_err(StoreError::from)?;
        Ok(Response::new(ipb::MarkDeadLettersReportedResponse {}))
    }

    async fn list_unreported_drops(
        &self,
        request: Request<ipb::ListUnreportedDropsRequest>,
    ) -> Result<Response<ipb::ListUnreportedDropsResponse>, Status> {
        let page = page_size(request.into_inner().page_size)?;
        let rows = self
            .store
            .db
            .unreported_drops(i64::from(page))
            .await
            .map_err(StoreError::from)?;
        Ok(Response::new(ipb::ListUnreportedDropsResponse {
            drops: rows
                .into_iter()
                .map(|r| ipb::DroppedVersion {
                    version_id: to_u64(r.version_id),
                    seq: to_u64(r.seq),
                    reading_id: r.reading_id,
                    version: Some(
                        VersionStamp {
                            hlc: Hlc::unpack(r.hlc),
                            site_id: r.site_id,
                        }
                        .to_proto(),
                    ),
                    dropped_at: Some(us_to_timestamp(r.dropped_at_us)),
                })
                .collect(),
        }))
    }

    async fn forget_reported_drops(
        &self,
        request: Request<ipb::ForgetReportedDropsRequest>,
    ) -> Result<Response<ipb::ForgetReportedDropsResponse>, Status> {
        let ids = version_ids("version_ids", &request.into_inner().version_ids)?;
        let forgotten = self
            .store
            .db
            .forget_drops(&ids)
            .await
            .map_err(StoreError::from)?;
        Ok(Response::new(ipb::ForgetReportedDropsResponse {
            forgotten,
        }))
    }

    async fn apply_remote_versions(
        &self,
        request: Request<ipb::ApplyRemoteVersionsRequest>,
    ) -> Result<Response<ipb::ApplyRemoteVersionsResponse>, Status> {
        let page = remote_page_from_proto(request.get_ref()).map_err(StoreError::Invalid)?;
        if !page.versions.is_empty() {
            self.store.check_room()?;
        }
        let outcome = self
            .store
            .db
            .apply_remote(
                &page.versions,
                page.policy,
                page.next_cursor,
                page.max_clock_skew,
            )
            .await
            .map_err(StoreError::from)?;
        self.store.budget.committed();
        if outcome.bound_changed {
            tracing::info!(
                bound = %humantime::format_duration(outcome.bound.as_duration()),
                "the cloud announced the deployment's clock-skew bound; this site uses it from now on"
            );
        }
        // One line per page, not per version: a cloud whose clock is a day
        // ahead sends whole pages of them. Each is flagged where it is stored.
        if let Some(furthest) = outcome.skewed.iter().max_by_key(|s| s.ahead_ms) {
            tracing::warn!(
                versions = outcome.skewed.len(),
                furthest_ahead = %humantime::format_duration(Duration::from_millis(furthest.ahead_ms)),
                reading_id = %furthest.reading_id,
                version = %furthest.stamp,
                bound = %humantime::format_duration(outcome.bound.as_duration()),
                "stored pulled versions stamped further ahead of this site's clock than the clock-skew bound \
                 (flagged; the site's clock stopped at the bound): one of the clocks is wrong"
            );
        }
        self.revisions.skewed.add(outcome.skewed.len() as u64, &[]);
        for conflict in &outcome.conflicts {
            self.revisions.conflicts.add(
                1,
                &[opentelemetry::KeyValue::new(
                    "winner",
                    conflict.winner.as_str(),
                )],
            );
        }
        Ok(Response::new(ipb::ApplyRemoteVersionsResponse {
            applied: outcome.applied,
            already_held: outcome.already_held,
            skipped: outcome.skipped,
            conflicts: outcome.conflicts.len() as u64,
            readings_changed: outcome.readings_changed,
            cursor: to_u64(outcome.cursor),
            clock_ahead: outcome.skewed.len() as u64,
        }))
    }

    async fn get_pull_cursor(
        &self,
        _request: Request<ipb::GetPullCursorRequest>,
    ) -> Result<Response<ipb::GetPullCursorResponse>, Status> {
        let cursor = self
            .store
            .db
            .pull_cursor()
            .await
            .map_err(StoreError::from)?;
        Ok(Response::new(ipb::GetPullCursorResponse {
            cursor: to_u64(cursor),
        }))
    }
}
