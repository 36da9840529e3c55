//! Compatibility mode: a cloud that only offers `POST /api/readings`, one
//! JSON reading per call, answering 201.
//!
//! That API has no idempotency key, so this mode is at-least-once. A failure
//! after the request may have reached the cloud (a timeout, a connection
//! broken mid-answer) is recorded as ambiguous, and the next attempt at that
//! version is counted in `sync_possible_duplicates_total`: the only place a
//! duplicate can come from. A reading the API refuses (400/413/422) is
//! dead-lettered like a rejected version.

use std::time::{Duration, Instant, UNIX_EPOCH};

use edge_cloud_link::CloudClient;
use edge_cloud_link::contract::SimpleReading;
use edge_proto::internal::v1 as ipb;
use edge_proto::v1 as pb;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::metrics::SyncMetrics;
use crate::outcome::{self, AMBIGUOUS_PREFIX, Outcome, postponed};

/// RFC 3339 with microseconds, e.g. `2026-11-24T10:00:00.123456Z`; `None`
/// before 1970 or after 9999, which the formatter cannot write.
fn rfc3339(ts: Option<&prost_types::Timestamp>) -> Option<String> {
    let t = ts?;
    let seconds = u64::try_from(t.seconds).ok()?;
    let nanos = u32::try_from(t.nanos).ok()?;
    // 9999-12-31T23:59:59Z.
    if seconds > 253_402_300_799 {
        return None;
    }
    let at = UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))?;
    Some(humantime::format_rfc3339_micros(at).to_string())
}

/// Pushes the versions one call each, in order, until one fails transiently.
pub async fn push(
    cloud: &CloudClient,
    metrics: &SyncMetrics,
    backoff: &Backoff,
    versions: &[pb::OutboxVersion],
    stop: &CancellationToken,
) -> Outcome {
    let mut outcome = Outcome::default();
    for (i, version) in versions.iter().enumerate() {
        if stop.is_cancelled() {
            // Unmentioned versions are released by the completion.
            break;
        }
        if version.last_error.starts_with(AMBIGUOUS_PREFIX) {
            metrics.possible_duplicates.add(1, &[]);
        }
        let Some(timestamp) = rfc3339(version.measured_at.as_ref()) else {
            metrics.synced("rejected", 1);
            outcome.rejected.push(ipb::RejectedVersion {
                version_id: version.version_id,
                reason: "the simple API cannot carry a measured_at before 1970".into(),
            });
            continue;
        };
        let reading = SimpleReading {
            sensor_id: version.sensor_id.clone(),
            temperature: version.temperature_celsius,
            humidity: version.humidity_percent,
            timestamp,
        };
        metrics.attempts.add(1, &[]);
        let started = Instant::now();
        let answer = cloud.post_simple(&reading).await;
        metrics
            .push_seconds
            .record(started.elapsed().as_secs_f64(), &[]);
        match answer {
            Ok(_) => {
                metrics.successes.add(1, &[]);
                metrics.synced("accepted", 1);
                outcome.any_success = true;
                outcome.synced.push(version.version_id);
            }
            Err(err) if err.is_batch_refusal() => {
                metrics.synced("rejected", 1);
                outcome.rejected.push(ipb::RejectedVersion {
                    version_id: version.version_id,
                    reason: err.to_string(),
                });
            }
            Err(err) => {
                let rest: Vec<&pb::OutboxVersion> = versions[i..].iter().collect();
                // Only the version in flight can have reached the cloud.
                let failed = outcome::failed(backoff, &rest[..1], &err);
                if rest.len() > 1 {
                    let unsent = rest[1..].iter().map(|v| v.version_id).collect();
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

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        let ts = prost_types::Timestamp {
            seconds: 1_795_392_000,
            nanos: 123_456_000,
        };
        assert_eq!(
            rfc3339(Some(&ts)).as_deref(),
            Some("2026-11-23T00:00:00.123456Z")
        );
        let before_1970 = prost_types::Timestamp {
            seconds: -1,
            nanos: 0,
        };
        assert_eq!(rfc3339(Some(&before_1970)), None);
    }
}
