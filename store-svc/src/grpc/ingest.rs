//! `edge.internal.v1.StoreIngestService`: ingest-svc's appends, the site's
//! write path.

use std::sync::Arc;

use edge_proto::internal::v1 as ipb;
use edge_proto::internal::v1::store_ingest_service_server::StoreIngestService;
use edge_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::{Store, StoreError, to_u64, violation};
use crate::model::{MAX_APPEND_READINGS, NewReading, Outcome};

/// The StoreIngestService implementation.
pub struct IngestGrpc {
    store: Arc<Store>,
}

impl IngestGrpc {
    pub(super) fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

fn outcome_to_proto(outcome: Outcome) -> pb::ReadingOutcome {
    match outcome {
        Outcome::Stored => pb::ReadingOutcome::Stored,
        Outcome::Duplicate => pb::ReadingOutcome::Duplicate,
        Outcome::Conflict => pb::ReadingOutcome::Conflict,
    }
}

#[tonic::async_trait]
impl StoreIngestService for IngestGrpc {
    async fn append(
        &self,
        request: Request<ipb::AppendRequest>,
    ) -> Result<Response<ipb::AppendResponse>, Status> {
        // Readings that name no writer were written by whoever hands them
        // over (ingest-svc names the gateway behind each).
        let caller = edge_runtime::auth::caller_name(&request);
        let raw = request.into_inner().readings;
        if raw.len() > MAX_APPEND_READINGS {
            return Err(violation(
                "readings",
                format!(
                    "at most {MAX_APPEND_READINGS} readings per call, got {}",
                    raw.len()
                ),
            )
            .into());
        }
        let mut readings = Vec::with_capacity(raw.len());
        let mut violations = Vec::new();
        for (i, reading) in raw.into_iter().enumerate() {
            match NewReading::from_proto(reading, &format!("readings[{i}]"), &caller) {
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
            .store
            .writer
            .append(readings)
            .await
            .map_err(StoreError::from)?;
        let results = outcomes
            .into_iter()
            .map(|o| ipb::AppendResult {
                outcome: outcome_to_proto(o.outcome) as i32,
                seq: to_u64(o.seq),
                clock_suspect: o.clock_suspect,
                version: Some(o.version.to_proto()),
            })
            .collect();
        Ok(Response::new(ipb::AppendResponse { results }))
    }
}
