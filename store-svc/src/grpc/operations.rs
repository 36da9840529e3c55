//! `edge.v1.OperationsService`: what people operating a site do to its data
//! (amend readings, read the conflict log, look at and re-drive dead
//! letters).

use std::sync::Arc;

use edge_proto::v1 as pb;
use edge_proto::v1::operations_service_server::OperationsService;
use tonic::{Request, Response, Status};

use super::{Store, StoreError, page_size, to_u64, version_ids, violation};
use crate::db::DbError;
use crate::revision::amendment_from_proto;

/// The OperationsService implementation.
pub struct OperationsGrpc {
    store: Arc<Store>,
}

impl OperationsGrpc {
    pub(super) fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

/// The position after which a page starts: 0 for the first page, else the
/// token a previous page returned (a row id).
fn after_token(token: &str) -> Result<i64, StoreError> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| violation("page_token", "is not a token this call returned"))
}

#[tonic::async_trait]
impl OperationsService for OperationsGrpc {
    async fn amend(
        &self,
        request: Request<pb::AmendRequest>,
    ) -> Result<Response<pb::AmendResponse>, Status> {
        let amendment =
            amendment_from_proto(request.get_ref(), edge_runtime::auth::caller_name(&request))
                .map_err(StoreError::Invalid)?;
        self.store.check_room()?;
        let reading = match self.store.db.amend(&amendment).await {
            Ok(reading) => {
                self.store.budget.committed();
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

    async fn list_conflicts(
        &self,
        request: Request<pb::ListConflictsRequest>,
    ) -> Result<Response<pb::ListConflictsResponse>, Status> {
        let request = request.into_inner();
        let limit = page_size(request.page_size)?;
        let after = after_token(&request.page_token)?;
        let (rows, total) = self
            .store
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
            total: to_u64(total),
        }))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        let request = request.into_inner();
        let page = page_size(request.page_size)?;
        let after = after_token(&request.page_token)?;
        let mut rows = self
            .store
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
            dead_letters: rows.into_iter().map(|r| r.into_proto()).collect(),
            next_page_token,
        }))
    }

    async fn redrive_dead_letters(
        &self,
        request: Request<pb::RedriveDeadLettersRequest>,
    ) -> Result<Response<pb::RedriveDeadLettersResponse>, Status> {
        let request = request.into_inner();
        let redriven = if request.all {
            self.store.db.redrive(None).await
        } else {
            if request.version_ids.is_empty() {
                return Err(violation("version_ids", "name at least one, or set all").into());
            }
            let ids = version_ids("version_ids", &request.version_ids)?;
            self.store.db.redrive(Some(&ids)).await
        }
        .map_err(StoreError::from)?;
        if redriven > 0 {
            tracing::info!(redriven, "dead letters re-driven by an operator");
        }
        Ok(Response::new(pb::RedriveDeadLettersResponse { redriven }))
    }
}
