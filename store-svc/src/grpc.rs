//! The `edge.v1.StoreService` handlers: proto in, validated domain types to the
//! writer and the database, proto out. [`StoreError`] is the one place where
//! failures become gRPC statuses.

use std::sync::Arc;
use std::time::Duration;

use edge_proto::v1 as pb;
use edge_proto::v1::store_service_server::StoreService;
use tonic::{Request, Response, Status};

use crate::db::{Classify as _, Database, DbError, Failure};
use crate::hlc::{Hlc, WallClock};
use crate::lease::{LeaseRequest, Leases};
use crate::model::{
    FieldViolation, MAX_APPEND_READINGS, NewReading, Outcome, ReadingQuery, Stats, VersionStamp,
    timestamp_to_us, us_to_timestamp,
};
use crate::outbox::{Completion, FailedGroup};
use crate::revision::{amendment_from_proto, remote_page_from_proto};
use crate::storage::Budget;
use crate::writer::{WriteError, Writer};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request is malformed.
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Reading failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// How a database error looks to callers; the one place that decides it.
fn db_status(err: &DbError) -> Status {
    match err.failure() {
        Failure::StorageFull => Status::resource_exhausted(format!(
            "the site's storage is full ({}); nothing of this call was stored: keep the readings \
             and retry once there is room",
            err.database_message().unwrap_or("no space left")
        )),
        Failure::Unavailable => Status::unavailable(
            "the site database is unavailable; this call was not acknowledged: retry it with the \
             same reading ids (readings already stored are answered DUPLICATE)",
        ),
        Failure::Refused => {
            tracing::error!(error = %err, "the database refused data that passed validation");
            Status::invalid_argument(format!(
                "the site database cannot store this request's data: {}",
                err.database_message().unwrap_or("refused")
            ))
        }
        Failure::Other => Status::internal("the site database failed; see store-svc logs"),
    }
}

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Status {
        match err {
            StoreError::Invalid(violations) => {
                edge_runtime::status::invalid_argument("invalid store request", violations)
            }
            StoreError::Write(WriteError::Closed) => {
                Status::unavailable("store-svc is shutting down")
            }
            StoreError::Write(WriteError::Db(err)) => db_status(&err),
            StoreError::Write(WriteError::Full(full)) => Status::resource_exhausted(full.0),
            StoreError::Db(err) => {
                tracing::error!(error = %err, "store query failed");
                db_status(&err)
            }
        }
    }
}

/// The StoreService implementation.
pub struct StoreGrpc {
    writer: Writer,
    db: Arc<Database>,
    leases: Arc<Leases>,
    budget: Arc<Budget>,
    clock: Arc<dyn WallClock>,
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

impl StoreGrpc {
    /// Handlers over `db`, appending through `writer`, leasing from
    /// `leases`, reporting `budget`; `clock` decides which outbox entries are
    /// due.
    pub fn new(
        writer: Writer,
        db: Arc<Database>,
        leases: Arc<Leases>,
        budget: Arc<Budget>,
        clock: Arc<dyn WallClock>,
    ) -> Self {
        Self {
            writer,
            db,
            leases,
            budget,
            clock,
            revisions: RevisionMetrics::new(),
        }
    }

    /// Refuses a write that would grow a site over its budget. (A full disk
    /// is not checked here: the write itself finds out, and a write that
    /// commits is what ends such a refusal.)
    fn check_room(&self) -> Result<(), Status> {
        if self.budget.over_budget() {
            return Err(Status::resource_exhausted(
                "the site's storage is full; nothing of this call was stored",
            ));
        }
        Ok(())
    }

    /// The storage part of the stats.
    fn storage_status(&self, stats: &Stats) -> pb::StorageStatus {
        let snapshot = self.budget.snapshot();
        let refusing = self.budget.refusals().current();
        let args = self.budget.args();
        let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        pb::StorageStatus {
            used_bytes: to_u64(stats.database_bytes),
            budget_bytes: args.storage_budget.unwrap_or(0),
            disk_free_bytes: snapshot.disk_free_bytes,
            reserve_bytes: snapshot.reserve_bytes,
            room_bytes: to_u64(snapshot.room_bytes),
            full: snapshot.full,
            policy: args.storage_policy.label().to_owned(),
            retention: prost_types::Duration::try_from(args.retention).ok(),
            pruned_versions: to_u64(stats.pruned_versions),
            dropped_versions: to_u64(stats.dropped_versions),
            unreported_drops: to_u64(stats.unreported_drops),
            full_reason: refusing
                .as_ref()
                .map(|r| r.reason.clone())
                .unwrap_or_default(),
            full_since: refusing.map(|r| us_to_timestamp(r.since_us)),
            refused_seconds: self.budget.refusals().refused_seconds(),
        }
    }
}

/// Longest lease a caller may ask for.
const MAX_LEASE: Duration = Duration::from_secs(3_600);
/// Lease length when the caller names none.
const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Attempts after which a version is flagged stuck when the caller names none.
const DEFAULT_STUCK_AFTER_ATTEMPTS: u32 = 10;
/// Largest page of dead letters (and of unreported drops).
const MAX_DEAD_LETTER_PAGE: u32 = 1_000;

/// A page size from the wire: 0 means 100; at most [`MAX_DEAD_LETTER_PAGE`].
fn page_size(requested: u32) -> Result<u32, StoreError> {
    match requested {
        0 => Ok(100),
        n if n <= MAX_DEAD_LETTER_PAGE => Ok(n),
        _ => Err(violation(
            "page_size",
            format!("must be at most {MAX_DEAD_LETTER_PAGE}"),
        )),
    }
}

fn violation(field: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Invalid(vec![(field.to_owned(), reason.into())])
}

/// Version ids from the wire: 1 to [`MAX_APPEND_READINGS`] of them, each a
/// valid id.
fn version_ids(field: &str, ids: &[u64]) -> Result<Vec<i64>, StoreError> {
    if ids.len() > MAX_APPEND_READINGS {
        return Err(violation(
            field,
            format!(
                "at most {MAX_APPEND_READINGS} version ids, got {}",
                ids.len()
            ),
        ));
    }
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            i64::try_from(*id)
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| violation(&format!("{field}[{i}]"), "is not a version id"))
        })
        .collect()
}

/// Validates a CompleteBatch request into a [`Completion`].
fn completion_from_proto(request: &pb::CompleteBatchRequest) -> Result<Completion, StoreError> {
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

fn outcome_to_proto(outcome: Outcome) -> pb::ReadingOutcome {
    match outcome {
        Outcome::Stored => pb::ReadingOutcome::Stored,
        Outcome::Duplicate => pb::ReadingOutcome::Duplicate,
        Outcome::Conflict => pb::ReadingOutcome::Conflict,
    }
}

#[tonic::async_trait]
impl StoreService for StoreGrpc {
    async fn append(
        &self,
        request: Request<pb::AppendRequest>,
    ) -> Result<Response<pb::AppendResponse>, Status> {
        let raw = request.into_inner().readings;
        if raw.len() > MAX_APPEND_READINGS {
            return Err(StoreError::Invalid(vec![(
                "readings".into(),
                format!(
                    "at most {MAX_APPEND_READINGS} readings per call, got {}",
                    raw.len()
                ),
            )])
            .into());
        }
        let mut readings = Vec::with_capacity(raw.len());
        let mut violations = Vec::new();
        for (i, reading) in raw.into_iter().enumerate() {
            match NewReading::from_proto(reading, &format!("readings[{i}]")) {
                Ok(reading) => readings.push(reading),
                Err(mut errs) => violations.append(&mut errs),
            }
        }
        if !violations.is_empty() {
            // ingest-svc validates first; a bad append is a caller bug, so the
            // whole call is refused rather than partly applied.
            return Err(StoreError::Invalid(violations).into());
        }
        let outcomes = self
            .writer
            .append(readings)
            .await
            .map_err(StoreError::from)?;
        let results = outcomes
            .into_iter()
            .map(|o| pb::AppendResult {
                outcome: outcome_to_proto(o.outcome) as i32,
                seq: u64::try_from(o.seq).unwrap_or(0),
                clock_suspect: o.clock_suspect,
                version: Some(o.version.to_proto()),
            })
            .collect();
        Ok(Response::new(pb::AppendResponse { results }))
    }

    async fn query_readings(
        &self,
        request: Request<pb::QueryReadingsRequest>,
    ) -> Result<Response<pb::QueryReadingsResponse>, Status> {
        let query = ReadingQuery::from_proto(request.into_inner()).map_err(StoreError::Invalid)?;
        let (rows, next) = self.db.query(&query).await.map_err(StoreError::from)?;
        Ok(Response::new(pb::QueryReadingsResponse {
            readings: rows.into_iter().map(|r| r.into_proto()).collect(),
            next_page_token: next.map(|c| query.encode_token(c)).unwrap_or_default(),
        }))
    }

    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let stats = self.db.stats().await.map_err(StoreError::from)?;
        let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        let storage = Some(self.storage_status(&stats));
        Ok(Response::new(pb::GetStatsResponse {
            storage,
            site_id: stats.site_id,
            backend: stats.backend.to_owned(),
            total_readings: to_u64(stats.total_readings),
            total_versions: to_u64(stats.total_versions),
            unsynced_versions: to_u64(stats.unsynced_versions),
            dead_letters: to_u64(stats.dead_letters),
            oldest_unsynced_at: stats.oldest_unsynced_us.map(us_to_timestamp),
            database_bytes: to_u64(stats.database_bytes),
            last_seq: to_u64(stats.last_seq),
            stuck_versions: to_u64(stats.stuck_versions),
            synced_versions: to_u64(stats.synced_versions),
            remote_versions: to_u64(stats.remote_versions),
            hlc: Some(pb::Hlc {
                physical_ms: stats.hlc.physical_ms,
                logical: u32::from(stats.hlc.logical),
            }),
            clock_ahead_versions: to_u64(stats.clock_ahead_versions),
            max_clock_skew: prost_types::Duration::try_from(stats.max_clock_skew.as_duration())
                .ok(),
            max_clock_skew_announced: stats.max_clock_skew_announced,
        }))
    }

    async fn lease_batch(
        &self,
        request: Request<pb::LeaseBatchRequest>,
    ) -> Result<Response<pb::LeaseBatchResponse>, Status> {
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
        let now_us = self.clock.now_us();
        let batch = self
            .leases
            .lease(
                &self.db,
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
        Ok(Response::new(pb::LeaseBatchResponse {
            lease_expires_at: (!batch.lease_id.is_empty()).then(|| us_to_timestamp(expires_us)),
            lease_id: batch.lease_id,
            versions: batch.entries.into_iter().map(|e| e.into_proto()).collect(),
            ingest_busy_percent: self.writer.busy().percent(),
        }))
    }

    async fn complete_batch(
        &self,
        request: Request<pb::CompleteBatchRequest>,
    ) -> Result<Response<pb::CompleteBatchResponse>, Status> {
        let request = request.into_inner();
        let completion = completion_from_proto(&request)?;
        let counts = self.db.complete(&completion).await;
        // Only after the transaction ended, committed or not (see
        // crate::lease). After a failure nothing is assumed: what the
        // commit did or did not do is read again by the next lease, and a
        // version pushed again is a duplicate at the cloud.
        self.leases.release(&request.lease_id).await;
        let counts = counts.map_err(StoreError::from)?;
        Ok(Response::new(pb::CompleteBatchResponse {
            synced: counts.synced,
            dead_lettered: counts.dead_lettered,
            failed: counts.failed,
            newly_stuck: counts.newly_stuck,
        }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        let request = request.into_inner();
        let page = page_size(request.page_size)?;
        let after = if request.page_token.is_empty() {
            0
        } else {
            request
                .page_token
                .parse::<i64>()
                .ok()
                .filter(|v| *v >= 0)
                .ok_or_else(|| violation("page_token", "is not a token this call returned"))?
        };
        let mut rows = self
            .db
            .dead_letters(after, i64::from(page) + 1, request.unreported_only)
            .await
            .map_err(StoreError::from)?;
        let next_page_token = if rows.len() > page as usize {
            rows.truncate(page as usize);
            rows.last()
                .map(|r| r.entry.version_id.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListDeadLettersResponse {
            dead_letters: rows
                .into_iter()
                .map(|r| pb::DeadLetter {
                    dead_lettered_at: Some(us_to_timestamp(r.dead_lettered_at_us)),
                    reported: r.dead_letter_reported,
                    version: Some(r.entry.into_proto()),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn redrive_dead_letters(
        &self,
        request: Request<pb::RedriveDeadLettersRequest>,
    ) -> Result<Response<pb::RedriveDeadLettersResponse>, Status> {
        let request = request.into_inner();
        let redriven = if request.all {
            self.db.redrive(None).await
        } else {
            if request.version_ids.is_empty() {
                return Err(violation("version_ids", "name at least one, or set all").into());
            }
            let ids = version_ids("version_ids", &request.version_ids)?;
            self.db.redrive(Some(&ids)).await
        }
        .map_err(StoreError::from)?;
        if redriven > 0 {
            tracing::info!(redriven, "dead letters re-driven by an operator");
        }
        Ok(Response::new(pb::RedriveDeadLettersResponse { redriven }))
    }

    async fn mark_dead_letters_reported(
        &self,
        request: Request<pb::MarkDeadLettersReportedRequest>,
    ) -> Result<Response<pb::MarkDeadLettersReportedResponse>, Status> {
        let ids = version_ids("version_ids", &request.into_inner().version_ids)?;
        self.db
            .mark_reported(&ids)
            .await
            .map_err(StoreError::from)?;
        Ok(Response::new(pb::MarkDeadLettersReportedResponse {}))
    }

    async fn list_unreported_drops(
        &self,
        request: Request<pb::ListUnreportedDropsRequest>,
    ) -> Result<Response<pb::ListUnreportedDropsResponse>, Status> {
        let page = page_size(request.into_inner().page_size)?;
        let rows = self
            .db
            .unreported_drops(i64::from(page))
            .await
            .map_err(StoreError::from)?;
        let to_u64 = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(Response::new(pb::ListUnreportedDropsResponse {
            drops: rows
                .into_iter()
                .map(|r| pb::DroppedVersion {
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
        request: Request<pb::ForgetReportedDropsRequest>,
    ) -> Result<Response<pb::ForgetReportedDropsResponse>, Status> {
        let ids = version_ids("version_ids", &request.into_inner().version_ids)?;
        let forgotten = self.db.forget_drops(&ids).await.map_err(StoreError::from)?;
        Ok(Response::new(pb::ForgetReportedDropsResponse { forgotten }))
    }

    async fn amend(
        &self,
        request: Request<pb::AmendRequest>,
    ) -> Result<Response<pb::AmendResponse>, Status> {
        let amendment = amendment_from_proto(request.get_ref()).map_err(StoreError::Invalid)?;
        self.check_room()?;
        let reading = match self.db.amend(&amendment).await {
            Ok(reading) => {
                self.budget.committed();
                reading
            }
            Err(DbError::UnknownReading(id)) => {
                return Err(Status::not_found(format!(
                    "no reading with id {id} is stored at this site"
                )));
            }
            Err(err @ DbError::ClockExhausted { .. }) => {
                return Err(Status::failed_precondition(err.to_string()));
            }
            Err(err) => return Err(StoreError::from(err).into()),
        };
        tracing::info!(reading_id = %amendment.reading_id, version = %reading.version_hlc, "reading amended");
        Ok(Response::new(pb::AmendResponse {
            reading: Some(reading.into_proto()),
        }))
    }

    async fn apply_remote_versions(
        &self,
        request: Request<pb::ApplyRemoteVersionsRequest>,
    ) -> Result<Response<pb::ApplyRemoteVersionsResponse>, Status> {
        let page = remote_page_from_proto(request.get_ref()).map_err(StoreError::Invalid)?;
        if !page.versions.is_empty() {
            self.check_room()?;
        }
        let outcome = self
            .db
            .apply_remote(
                &page.versions,
                page.policy,
                page.next_cursor,
                page.max_clock_skew,
            )
            .await
            .map_err(StoreError::from)?;
        self.budget.committed();
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
        Ok(Response::new(pb::ApplyRemoteVersionsResponse {
            applied: outcome.applied,
            already_held: outcome.already_held,
            skipped: outcome.skipped,
            conflicts: outcome.conflicts.len() as u64,
            readings_changed: outcome.readings_changed,
            cursor: u64::try_from(outcome.cursor).unwrap_or(0),
            clock_ahead: outcome.skewed.len() as u64,
        }))
    }

    async fn get_pull_cursor(
        &self,
        _request: Request<pb::GetPullCursorRequest>,
    ) -> Result<Response<pb::GetPullCursorResponse>, Status> {
        let cursor = self.db.pull_cursor().await.map_err(StoreError::from)?;
        Ok(Response::new(pb::GetPullCursorResponse {
            cursor: u64::try_from(cursor).unwrap_or(0),
        }))
    }

    async fn list_conflicts(
        &self,
        request: Request<pb::ListConflictsRequest>,
    ) -> Result<Response<pb::ListConflictsResponse>, Status> {
        let request = request.into_inner();
        let limit = page_size(request.page_size)?;
        let after = match request.page_token.as_str() {
            "" => 0,
            token => token
                .parse::<i64>()
                .map_err(|_| violation("page_token", "is not a token this service issued"))?,
        };
        let (rows, total) = self
            .db
            .conflicts(after, i64::from(limit) + 1)
            .await
            .map_err(StoreError::from)?;
        let more = rows.len() > limit as usize;
        let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => last.id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListConflictsResponse {
            conflicts: rows.into_iter().map(|r| r.into_proto()).collect(),
            next_page_token,
            total: u64::try_from(total).unwrap_or(0),
        }))
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn code_for(code: &'static str) -> Code {
        db_status(&DbError::Query(edge_sql::faults::database_error(code))).code()
    }

    #[test]
    fn full_storage_is_resource_exhausted() {
        assert_eq!(code_for("53100"), Code::ResourceExhausted); // PostgreSQL disk_full
        assert_eq!(code_for("13"), Code::ResourceExhausted); // SQLITE_FULL
    }

    #[test]
    fn transient_failures_are_unavailable() {
        assert_eq!(code_for("08006"), Code::Unavailable); // PostgreSQL connection failure
        assert_eq!(code_for("57P01"), Code::Unavailable); // admin shutdown
        assert_eq!(code_for("40001"), Code::Unavailable); // serialization failure
        assert_eq!(code_for("5"), Code::Unavailable); // SQLITE_BUSY
        assert_eq!(code_for("517"), Code::Unavailable); // SQLITE_BUSY_SNAPSHOT
        assert_eq!(
            db_status(&DbError::Query(sqlx::Error::PoolTimedOut)).code(),
            Code::Unavailable
        );
    }

    #[test]
    fn other_failures_are_internal_without_details() {
        let status = db_status(&DbError::Query(edge_sql::faults::database_error("XX000")));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("XX000"));
        assert_eq!(code_for("11"), Code::Internal); // SQLITE_CORRUPT
    }

    #[test]
    fn data_the_database_refuses_is_invalid_argument_not_a_retry() {
        assert_eq!(code_for("22021"), Code::InvalidArgument); // invalid byte sequence
        assert_eq!(code_for("23505"), Code::InvalidArgument); // unique violation
        assert_eq!(code_for("2067"), Code::InvalidArgument); // SQLITE_CONSTRAINT_UNIQUE
        assert_eq!(code_for("18"), Code::InvalidArgument); // SQLITE_TOOBIG
    }
}
