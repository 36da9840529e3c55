//! The drain: lease a batch from store-svc, push it, record the answer.
//!
//! Read as one chain (like a log shipper's sink): [`Drain::worker`] waits for
//! the link and for any global backoff, leases, hands the batch to
//! [`Drain::push_batch`] (or the compatibility pusher), and completes the
//! lease with what the cloud said. *What* a failure means is decided by
//! [`edge_cloud_link::CloudError`]; *when* to retry by [`Backoff`].
//!
//! - A well-formed answer acknowledges accepted and duplicate versions and
//!   dead-letters rejected ones.
//! - A refusal of the whole batch that names no version (400/413/422) is split
//!   in halves and retried until the version to blame is alone; only that one
//!   is dead-lettered.
//! - Anything else (connection errors, timeouts, 5xx, 429, credentials, a
//!   malformed answer) only delays: the versions' attempts are counted, their
//!   next attempt is pushed out by a jittered backoff (at least any
//!   `Retry-After`), and the whole drain backs off too while the cloud fails.
//!
//! Concurrency is bounded (`--sync-concurrency` workers), and completions
//! reach store-svc one at a time, so the drain never takes more than a small,
//! fixed share of the store's single writer: ingest keeps the rest.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use edge_cloud_link::contract::{PushBatch, VersionRecord, VersionStatus};
use edge_cloud_link::{CloudClient, CloudError, Prober};
use edge_proto::internal::v1 as ipb;
use edge_proto::internal::v1::store_sync_service_client::StoreSyncServiceClient;
use edge_proto::v1 as pb;
use edge_proto::v1::readings_service_client::ReadingsServiceClient;
use edge_runtime::client::AuthedChannel;
use tokio::sync::{Mutex, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::backoff::Backoff;
use crate::batch_size::BatchSize;
use crate::config::{CloudApi, SyncConfig};
use crate::convert::record;
use crate::metrics::SyncMetrics;
use crate::outcome::{Outcome, postponed};
use crate::status::StatusBoard;

/// Longest pause a drain worker makes to leave the store to ingest.
const MAX_YIELD: Duration = Duration::from_secs(2);

/// How long to wait before asking an unreachable store-svc again.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Global backoff shared by the workers.
#[derive(Debug, Default)]
struct Global {
    failures: u32,
    until: Option<Instant>,
}

/// sync-svc's clients of store-svc, over one channel: the mesh's internal
/// outbox and change-feed calls, and the public books (read only), so it
/// holds no operator's right.
#[derive(Clone)]
pub struct StoreClients {
    /// Leases, completions, dead letters and drops to report, the feed.
    pub sync: StoreSyncServiceClient<AuthedChannel>,
    /// `GetStats`: the site id and the backlog figures.
    pub readings: ReadingsServiceClient<AuthedChannel>,
}

impl StoreClients {
    /// Both clients over `channel`, taking and sending messages up to
    /// `max_message_bytes`.
    pub fn new(channel: AuthedChannel, max_message_bytes: usize) -> Self {
        StoreClients {
            sync: StoreSyncServiceClient::new(channel.clone())
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
            readings: ReadingsServiceClient::new(channel)
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes),
        }
    }
}

/// Everything the workers share.
pub struct Drain {
    pub(crate) store: StoreClients,
    pub(crate) cloud: CloudClient,
    pub(crate) prober: Prober,
    pub(crate) site_id: String,
    pub(crate) config: SyncConfig,
    pub(crate) status: StatusBoard,
    pub(crate) metrics: SyncMetrics,
    pub(crate) backoff: Backoff,
    /// Versions per lease in batch mode.
    batch_size: BatchSize,
    global: Mutex<Global>,
    /// Completions reach the store one at a time.
    completions: Semaphore,
    /// SyncNow.
    pub(crate) wake: Notify,
    /// A dead letter was recorded: report it to the cloud soon.
    pub(crate) dead_lettered: Notify,
    /// SyncNow, for the pull loop (a stored permit: a pull in progress
    /// runs again after it ends).
    pub(crate) pull_wake: Notify,
}

impl Drain {
    /// The shared drain state.
    pub fn new(
        store: StoreClients,
        cloud: CloudClient,
        prober: Prober,
        site_id: String,
        config: SyncConfig,
        status: StatusBoard,
        metrics: SyncMetrics,
    ) -> Arc<Drain> {
        Arc::new(Drain {
            backoff: Backoff {
                initial: config.backoff_initial,
                max: config.backoff_max,
            },
            batch_size: BatchSize::new(config.sync_batch_size, config.push_timeout),
            store,
            cloud,
            prober,
            site_id,
            config,
            status,
            metrics,
            global: Mutex::new(Global::default()),
            completions: Semaphore::new(1),
            wake: Notify::new(),
            dead_lettered: Notify::new(),
            pull_wake: Notify::new(),
        })
    }

    /// Ends any global backoff and wakes every worker (SyncNow).
    pub async fn sync_now(&self) {
        self.global.lock().await.until = None;
        self.prober.probe_now();
        self.wake.notify_waiters();
        self.pull_wake.notify_one();
    }

    /// Versions per lease. In compatibility mode every version is its own
    /// call, so a lease holds no more than fit in its duration at one push
    /// timeout each: a lease must not lapse while its versions are being
    /// posted, or another worker would post them again.
    fn lease_size(&self) -> u32 {
        match self.config.cloud_api {
            CloudApi::Batch => self.batch_size.current(),
            CloudApi::Simple => {
                let fit = self.config.lease_duration.as_millis()
                    / self.config.push_timeout.as_millis().max(1);
                u32::try_from(fit)
                    .unwrap_or(u32::MAX)
                    .clamp(1, self.config.sync_batch_size)
            }
        }
    }

    /// Waits for `pause`, a SyncNow, or `stop`; `false` when stopping.
    async fn pause(&self, pause: Duration, stop: &CancellationToken) -> bool {
        tokio::select! {
            () = stop.cancelled() => false,
            () = tokio::time::sleep(pause) => true,
            () = self.wake.notified() => true,
        }
    }

    /// One worker: runs until `stop`.
    pub async fn worker(self: Arc<Self>, stop: CancellationToken) {
        let mut link = self.prober.watch();
        while !stop.is_cancelled() {
            let status = link.borrow_and_update().clone();
            // A degraded link is still reachable: pushes go on (slowly or
            // with retries), since waiting for a perfect link could wait forever.
            if !status.is_reachable() {
                self.status.set_state(pb::SyncLinkState::Offline, None);
                // No pushes while offline: wait for the probe to say otherwise.
                tokio::select! {
                    () = stop.cancelled() => return,
                    changed = link.changed() => if changed.is_err() { return },
                    () = self.wake.notified() => {}
                }
                continue;
            }
            let until = self.global.lock().await.until;
            if let Some(until) = until.filter(|u| *u > Instant::now()) {
                let wait = until - Instant::now();
                self.status.set_state(
                    pb::SyncLinkState::BackingOff,
                    Some(SystemTime::now() + wait),
                );
                if !self.pause(wait, &stop).await {
                    return;
                }
                continue;
            }
            let cycle = Instant::now();
            let lease = match self
                .store
                .sync
                .clone()
                .lease_batch(ipb::LeaseBatchRequest {
                    max_versions: self.lease_size(),
                    newest_share_percent: self.config.sync_newest_share,
                    lease_duration: prost_types::Duration::try_from(self.config.lease_duration)
                        .ok(),
                })
                .await
            {
                Ok(lease) => lease.into_inner(),
                Err(status) => {
                    tracing::warn!(error = %status.message(), code = ?status.code(), "cannot lease from store-svc");
                    self.status
                        .error(&format!("store-svc: {}", status.message()));
                    if !self.pause(STORE_RETRY, &stop).await {
                        return;
                    }
                    continue;
                }
            };
            self.batch_size.ingest_busy(lease.ingest_busy_percent);
            if lease.versions.is_empty() {
                // Nothing due: idle, unless what is left waits out the
                // retry delay of a failed push.
                let failing = self.global.lock().await.failures > 0;
                let state = if failing {
                    pb::SyncLinkState::BackingOff
                } else {
                    pb::SyncLinkState::Idle
                };
                self.status.set_state(state, None);
                if !self.pause(self.config.idle_poll, &stop).await {
                    return;
                }
                continue;
            }
            self.status.set_state(pb::SyncLinkState::Draining, None);
            // One trace per batch: the push to the cloud and the completion
            // in store-svc (both carry its context).
            let versions = lease.versions.len();
            let span = if edge_runtime::telemetry::tracing_enabled() {
                tracing::info_span!("sync batch", versions)
            } else {
                tracing::debug_span!("sync batch", versions)
            };
            let outcome = match self.config.cloud_api {
                // A batch push in flight at shutdown is abandoned, not waited
                // for: its lease lapses and the batch goes again (the cloud
                // answers duplicate for what it already stored).
                CloudApi::Batch => tokio::select! {
                    outcome = self.push_batch(&lease.versions).instrument(span.clone()) => outcome,
                    () = stop.cancelled() => return,
                },
                // The simple API has no idempotency: what was posted must be
                // recorded, so the pusher stops between readings instead
                // (each bounded by the push timeout).
                CloudApi::Simple => {
                    crate::compat::push(
                        &self.cloud,
                        &self.metrics,
                        &self.backoff,
                        &lease.versions,
                        &stop,
                    )
                    .instrument(span.clone())
                    .await
                }
            };
            self.record(lease.lease_id, outcome).instrument(span).await;
            let pause = if self.config.sync_yield {
                yield_pause(cycle.elapsed(), lease.ingest_busy_percent)
            } else {
                Duration::ZERO
            };
            if !pause.is_zero() && !self.pause(pause, &stop).await {
                return;
            }
        }
    }

    /// Completes the lease in the store and updates the global backoff.
    async fn record(&self, lease_id: String, outcome: Outcome) {
        let acknowledged = outcome.synced.len() as u64;
        let rejected = outcome.rejected.len();
        {
            let mut global = self.global.lock().await;
            if let Some((error, retry_after)) = &outcome.failure {
                global.failures += 1;
                let delay = self.backoff.delay(global.failures, *retry_after);
                global.until = Some(Instant::now() + delay);
                self.status.error(error);
                tracing::warn!(%error, retry_in = ?delay, failures = global.failures, "push failed; backing off");
            } else if outcome.any_success {
                global.failures = 0;
                global.until = None;
            }
        }
        let request = ipb::CompleteBatchRequest {
            lease_id,
            synced_version_ids: outcome.synced,
            rejected: outcome.rejected,
            failed: outcome.failed,
            stuck_after_attempts: self.config.stuck_after_attempts,
        };
        let _turn = self.completions.acquire().await;
        match self.store.sync.clone().complete_batch(request).await {
            Ok(done) => {
                let done = done.into_inner();
                if done.newly_stuck > 0 {
                    self.metrics.stuck.add(done.newly_stuck, &[]);
                    tracing::warn!(
                        versions = done.newly_stuck,
                        attempts = self.config.stuck_after_attempts,
                        "versions flagged stuck after repeated failures; still retrying"
                    );
                }
                if outcome.any_success {
                    self.status.success(acknowledged);
                }
                if rejected > 0 {
                    self.dead_lettered.notify_one();
                }
            }
            Err(status) => {
                // store-svc released the lease and reads its outbox again:
                // the versions are pushed again and the cloud answers
                // duplicate for what it already has. The drain backs off as
                // for a failed push, so a store that keeps failing (a full
                // disk) does not have the same batch pushed in a loop.
                let delay = {
                    let mut global = self.global.lock().await;
                    global.failures += 1;
                    let delay = self.backoff.delay(global.failures, None);
                    global.until = Some(Instant::now() + delay);
                    delay
                };
                tracing::error!(error = %status.message(), code = ?status.code(), retry_in = ?delay, "cannot record a push in store-svc; the batch will be pushed again");
                self.status
                    .error(&format!("store-svc: {}", status.message()));
            }
        }
    }

    /// Pushes versions through the batch API, splitting refused batches
    /// until the version to blame is alone.
    pub async fn push_batch(&self, versions: &[pb::OutboxVersion]) -> Outcome {
        let mut outcome = Outcome::default();
        let mut pending: Vec<&[pb::OutboxVersion]> = vec![versions];
        while let Some(part) = pending.pop() {
            let records: Vec<VersionRecord> = part.iter().map(record).collect();
            let batch = PushBatch { versions: records };
            // A fresh key per push: exactly-once rests on the cloud's
            // (reading id, version) dedup; a key derived from the versions
            // would make a re-driven dead letter replay its old rejection.
            let key = uuid::Uuid::new_v4().to_string();
            self.metrics.attempts.add(1, &[]);
            let started = Instant::now();
            let answer = self.cloud.push(&self.site_id, &key, &batch).await;
            let took = started.elapsed();
            self.metrics.push_seconds.record(took.as_secs_f64(), &[]);
            let answered = answer
                .as_ref()
                .map_or_else(|err| err.status().is_some(), |_| true);
            let size = self.batch_size.observe(took, answered);
            self.metrics.batch_size.record(u64::from(size), &[]);
            match answer {
                Ok(answer) => {
                    self.metrics.successes.add(1, &[]);
                    outcome.any_success = true;
                    let (mut accepted, mut duplicate, mut rejected) = (0, 0, 0);
                    for (version, result) in part.iter().zip(answer.results) {
                        match result.status {
                            VersionStatus::Accepted => {
                                accepted += 1;
                                outcome.synced.push(version.version_id);
                            }
                            VersionStatus::Duplicate => {
                                duplicate += 1;
                                outcome.synced.push(version.version_id);
                            }
                            VersionStatus::Rejected => {
                                let reason = result
                                    .reason
                                    .unwrap_or_else(|| "rejected by the cloud".into());
                                tracing::warn!(reading_id = %version.reading_id, seq = version.seq, %reason, "cloud rejected a version; dead-lettered");
                                rejected += 1;
                                outcome.rejected.push(ipb::RejectedVersion {
                                    version_id: version.version_id,
                                    reason,
                                });
                            }
                        }
                    }
                    self.metrics.synced("accepted", accepted);
                    self.metrics.synced("duplicate", duplicate);
                    self.metrics.synced("rejected", rejected);
                }
                Err(err) if err.is_batch_refusal() => {
                    if let [only] = part {
                        let reason = format!("the cloud refused it alone: {err}");
                        tracing::warn!(reading_id = %only.reading_id, seq = only.seq, %reason, "version isolated by splitting; dead-lettered");
                        self.metrics.synced("rejected", 1);
                        outcome.rejected.push(ipb::RejectedVersion {
                            version_id: only.version_id,
                            reason,
                        });
                    } else {
                        tracing::info!(versions = part.len(), error = %err, "cloud refused a batch naming no version; splitting it");
                        let (left, right) = part.split_at(part.len() / 2);
                        pending.push(right);
                        pending.push(left);
                    }
                }
                Err(err) => {
                    // Nothing more goes out of this lease; the parts not
                    // sent yet wait out the same backoff, without an attempt
                    // counted against them.
                    let sent: Vec<&pb::OutboxVersion> = part.iter().collect();
                    let failed = self.failed(&sent, &err);
                    let unsent: Vec<u64> =
                        pending.drain(..).flatten().map(|v| v.version_id).collect();
                    if !unsent.is_empty() {
                        outcome.failed.push(postponed(unsent, failed.retry_at));
                    }
                    outcome.failed.push(failed);
                    outcome.failure = Some((err.to_string(), err.retry_after()));
                    break;
                }
            }
        }
        outcome
    }

    /// The failure record for `versions` after `err` (see
    /// [`crate::outcome::failed`]).
    pub(crate) fn failed(
        &self,
        versions: &[&pb::OutboxVersion],
        err: &CloudError,
    ) -> ipb::FailedVersions {
        crate::outcome::failed(&self.backoff, versions, err)
    }
}

/// How long to leave the store to ingest after a drain cycle that took
/// `cycle`, when ingest kept the store's writer `busy_percent` busy: the
/// drain's duty cycle becomes the capacity ingest leaves, never less than
/// 5 % (the backlog and the live share still move under a saturating load),
/// and never a pause over [`MAX_YIELD`].
pub fn yield_pause(cycle: Duration, busy_percent: u32) -> Duration {
    let busy = f64::from(busy_percent.min(95)) / 100.0;
    cycle.mul_f64(busy / (1.0 - busy)).min(MAX_YIELD)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{MAX_YIELD, yield_pause};

    #[test]
    fn the_drain_takes_the_share_ingest_leaves() {
        let cycle = Duration::from_millis(100);
        assert_eq!(
            yield_pause(cycle, 0),
            Duration::ZERO,
            "idle store: no pause"
        );
        assert_eq!(yield_pause(cycle, 50), cycle, "half busy: half the time");
        assert_eq!(yield_pause(cycle, 75), cycle * 3);
        // Saturated: at least a 5 % duty cycle, and a bounded pause.
        assert_eq!(yield_pause(cycle, 100), yield_pause(cycle, 95));
        assert!(yield_pause(cycle, 100) <= MAX_YIELD);
        assert_eq!(yield_pause(Duration::from_secs(1), 95), MAX_YIELD);
    }
}
