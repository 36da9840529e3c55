//! The `edge.v1.IngestService` handlers.
//!
//! Both RPCs go through [`Ingestor::ingest_batch`]: validate every reading,
//! send the valid ones to store-svc in one Append, and merge store-svc's
//! outcomes with the rejections into one result per reading, in order. The
//! reply is sent only after store-svc answered, i.e. after the readings are
//! durable.
//!
//! A batch judged reading by reading is answered OK with its results, even
//! when every reading was refused. Only faults of the request as a whole (no
//! readings, over the batch limit, bytes that do not decode) and failures of
//! the site are errors; see [`crate::error`].

use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use edge_proto::internal::v1::store_ingest_service_client::StoreIngestServiceClient;
use edge_proto::v1 as pb;
use edge_proto::v1::ingest_service_server::IngestService;
use edge_runtime::client::AuthedChannel;
use futures::{Stream, StreamExt};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use prost_types::Timestamp;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::coalesce::StoreAppender;
use crate::error::IngestError;
use crate::validate::{Limits, Rejection};

/// Counters ingest-svc owns (docs/architecture.md, Metrics).
#[derive(Clone)]
struct IngestMetrics {
    ingested: Counter<u64>,
    rejected: Counter<u64>,
}

impl IngestMetrics {
    fn new() -> Self {
        let meter = edge_runtime::telemetry::meter("ingest-svc");
        Self {
            ingested: meter
                .u64_counter("readings_ingested")
                .with_description("Readings newly stored through ingest-svc")
                .build(),
            rejected: meter
                .u64_counter("readings_rejected")
                .with_description("Readings refused, by the first offending field or 'conflict'")
                .build(),
        }
    }
}

/// What ingesting one batch produced.
struct BatchOutcome {
    results: Vec<pb::ReadingResult>,
    summary: pb::IngestSummary,
}

/// The shared core of both RPCs.
#[derive(Clone)]
pub struct Ingestor {
    store: StoreAppender,
    limits: Limits,
    metrics: IngestMetrics,
}

impl Ingestor {
    /// An ingestor sending to store-svc over `channel`, with at most
    /// `store_in_flight` Appends outstanding (calls arriving meanwhile are
    /// merged; see [`crate::coalesce`]).
    pub fn new(
        channel: AuthedChannel,
        limits: Limits,
        max_message_bytes: usize,
        store_in_flight: usize,
    ) -> Self {
        let client = StoreIngestServiceClient::new(channel)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes);
        Self {
            store: StoreAppender::spawn(client, store_in_flight, max_message_bytes),
            limits,
            metrics: IngestMetrics::new(),
        }
    }

    /// Validates, stores and reports one batch, `written_by` the identity
    /// that sent it. Fails as a whole only when store-svc cannot take the
    /// valid readings; refused readings are results, never a failure.
    async fn ingest_batch(
        &self,
        readings: Vec<pb::Reading>,
        written_by: &str,
    ) -> Result<BatchOutcome, IngestError> {
        let received_at = Timestamp::from(SystemTime::now());
        let mut results: Vec<pb::ReadingResult> = Vec::with_capacity(readings.len());
        let mut valid = Vec::with_capacity(readings.len());
        let mut valid_index = Vec::with_capacity(readings.len());
        let mut summary = pb::IngestSummary::default();
        for (index, reading) in readings.into_iter().enumerate() {
            let index = index as u32;
            match self.limits.validate(reading, received_at, written_by) {
                Ok(reading) => {
                    results.push(pb::ReadingResult {
                        index,
                        id: reading.id.clone(),
                        ..Default::default()
                    });
                    valid_index.push(index as usize);
                    valid.push(reading);
                }
                Err(rejection) => {
                    self.count_rejected(&rejection);
                    summary.rejected += 1;
                    results.push(rejected(index, rejection));
                }
            }
        }
        if !valid.is_empty() {
            let stored = self
                .store
                .append(valid)
                .await
                .map_err(IngestError::from_store)?;
            for (index, stored) in valid_index.into_iter().zip(stored) {
                let result = &mut results[index];
                result.seq = stored.seq;
                result.clock_suspect = stored.clock_suspect;
                match pb::ReadingOutcome::try_from(stored.outcome) {
                    Ok(pb::ReadingOutcome::Stored) => {
                        result.outcome = pb::ReadingOutcome::Stored as i32;
                        summary.stored += 1;
                        if stored.clock_suspect {
                            summary.clock_suspect += 1;
                        }
                    }
                    Ok(pb::ReadingOutcome::Duplicate) => {
                        result.outcome = pb::ReadingOutcome::Duplicate as i32;
                        summary.duplicates += 1;
                    }
                    Ok(pb::ReadingOutcome::Conflict) => {
                        result.outcome = pb::ReadingOutcome::Conflict as i32;
                        result.errors.push(pb::FieldError {
                            field: "id".into(),
                            reason: "a different reading is already stored under this id".into(),
                        });
                        summary.conflicts += 1;
                        self.metrics
                            .rejected
                            .add(1, &[KeyValue::new("reason", "conflict")]);
                    }
                    other => {
                        // The readings' fate is unknown: say so rather than
                        // guess, so the gateway retries the batch.
                        return Err(IngestError::Store(Status::internal(format!(
                            "store-svc answered an unknown outcome {other:?}"
                        ))));
                    }
                }
            }
            self.metrics.ingested.add(u64::from(summary.stored), &[]);
        }
        Ok(BatchOutcome { results, summary })
    }

    fn count_rejected(&self, rejection: &Rejection) {
        self.metrics
            .rejected
            .add(1, &[KeyValue::new("reason", rejection.reason_label())]);
    }

    /// Handles one stream batch: refusals of the batch as a whole become the
    /// ack's `batch_error`, so the stream carries on.
    async fn ack(
        &self,
        request: pb::IngestStreamRequest,
        written_by: &str,
    ) -> Result<pb::IngestStreamResponse, IngestError> {
        let batch_id = request.batch_id;
        if let Err(IngestError::Invalid { violations, .. }) =
            self.limits.check_batch_size(request.readings.len())
        {
            let (field, reason) = violations.into_iter().next().unwrap_or_default();
            return Ok(pb::IngestStreamResponse {
                batch_id,
                batch_error: Some(pb::FieldError { field, reason }),
                ..Default::default()
            });
        }
        let outcome = self.ingest_batch(request.readings, written_by).await?;
        Ok(pb::IngestStreamResponse {
            batch_id,
            results: outcome.results,
            summary: Some(outcome.summary),
            batch_error: None,
        })
    }
}

fn rejected(index: u32, rejection: Rejection) -> pb::ReadingResult {
    pb::ReadingResult {
        index,
        id: rejection.id,
        outcome: pb::ReadingOutcome::Rejected as i32,
        errors: rejection
            .errors
            .into_iter()
            .map(|(field, reason)| pb::FieldError {
                field: field.into(),
                reason,
            })
            .collect(),
        ..Default::default()
    }
}

/// The IngestService implementation.
pub struct IngestGrpc {
    ingestor: Arc<Ingestor>,
    stream_in_flight: usize,
    /// Cancelled at shutdown: streams stop taking new batches, finish the ones
    /// in flight and end with UNAVAILABLE so gateways reconnect elsewhere.
    stopping: CancellationToken,
}

impl IngestGrpc {
    /// Handlers over `ingestor`.
    pub fn new(ingestor: Ingestor, stream_in_flight: usize, stopping: CancellationToken) -> Self {
        Self {
            ingestor: Arc::new(ingestor),
            stream_in_flight: stream_in_flight.max(1),
            stopping,
        }
    }
}

/// This server's name in the metrics.
const SERVER: &str = "ingest-svc";

type AckStream = Pin<Box<dyn Stream<Item = Result<pb::IngestStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl IngestService for IngestGrpc {
    async fn ingest(
        &self,
        request: Request<pb::IngestRequest>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        let caller = edge_runtime::auth::caller(&request);
        let readings = request.into_inner().readings;
        self.ingestor.limits.check_request_size(readings.len())?;
        if let Some(identity) = &caller {
            identity.take_readings(readings.len(), SERVER)?;
        }
        // Judged reading by reading, the batch is answered OK even when
        // every reading was refused: each refusal is a result in the body,
        // not in status details, which standard clients cap at 16 KiB.
        let written_by = caller.as_ref().map_or("", |identity| &*identity.name);
        let outcome = self.ingestor.ingest_batch(readings, written_by).await?;
        Ok(Response::new(pb::IngestResponse {
            results: outcome.results,
            summary: Some(outcome.summary),
        }))
    }

    type IngestStreamStream = AckStream;

    async fn ingest_stream(
        &self,
        request: Request<Streaming<pb::IngestStreamRequest>>,
    ) -> Result<Response<Self::IngestStreamStream>, Status> {
        let ingestor = self.ingestor.clone();
        let stopping = self.stopping.clone();
        let caller = edge_runtime::auth::caller(&request);
        let acks = request
            .into_inner()
            .take_until(self.stopping.clone().cancelled_owned())
            .map(move |batch| {
                let ingestor = ingestor.clone();
                // Each batch spends from its identity's reading rate before
                // it is stored; a batch over it ends the stream with the
                // delay after which the gateway may resume.
                let over_rate = match (&batch, &caller) {
                    (Ok(batch), Some(identity)) => {
                        identity.take_readings(batch.readings.len(), SERVER).err()
                    }
                    _ => None,
                };
                let written_by = caller.as_ref().map(|identity| identity.name.clone());
                async move {
                    if let Some(status) = over_rate {
                        return Err(status);
                    }
                    let written_by = written_by.as_deref().unwrap_or_default();
                    match batch {
                        Ok(batch) => ingestor.ack(batch, written_by).await.map_err(Status::from),
                        Err(status) => Err(status),
                    }
                }
            })
            .buffered(self.stream_in_flight)
            .chain(
                futures::stream::once(async move {
                    if stopping.is_cancelled() {
                        Some(Err(Status::from(IngestError::ShuttingDown)))
                    } else {
                        None
                    }
                })
                .filter_map(std::future::ready),
            )
            // The first error ends the stream; later acks would be out of order.
            .scan(false, |failed, item| {
                let next = if *failed { None } else { Some(item) };
                if let Some(Err(_)) = &next {
                    *failed = true;
                }
                std::future::ready(next)
            });
        Ok(Response::new(Box::pin(acks)))
    }
}
