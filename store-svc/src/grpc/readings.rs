//! `edge.v1.ReadingsService`: the readings and the site's books, read only,
//! for dashboards, operators and sync-svc's status.

use std::sync::Arc;

use edge_proto::v1 as pb;
use edge_proto::v1::readings_service_server::ReadingsService;
use tonic::{Request, Response, Status};

use super::{Store, StoreError, to_u64};
use crate::model::{ReadingQuery, Stats, us_to_timestamp};

/// The ReadingsService implementation.
pub struct ReadingsGrpc {
    store: Arc<Store>,
}

impl ReadingsGrpc {
    pub(super) fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// The storage part of the stats.
    fn storage_status(&self, stats: &Stats) -> pb::StorageStatus {
        let budget = &self.store.budget;
        let snapshot = budget.snapshot();
        let refusing = budget.refusals().current();
        let args = budget.args();
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
            refused_seconds: budget.refusals().refused_seconds(),
        }
    }
}

#[tonic::async_trait]
impl ReadingsService for ReadingsGrpc {
    async fn query_readings(
        &self,
        request: Request<pb::QueryReadingsRequest>,
    ) -> Result<Response<pb::QueryReadingsResponse>, Status> {
        let query = ReadingQuery::from_proto(request.into_inner()).map_err(StoreError::Invalid)?;
        let (rows, next) = self
            .store
            .db
            .query(&query)
            .await
            .map_err(StoreError::from)?;
        Ok(Response::new(pb::QueryReadingsResponse {
            readings: rows.into_iter().map(|r| r.into_proto()).collect(),
            next_page_token: next.map(|c| query.encode_token(c)).unwrap_or_default(),
        }))
    }

    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        let stats = self.store.db.stats().await.map_err(StoreError::from)?;
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
}
