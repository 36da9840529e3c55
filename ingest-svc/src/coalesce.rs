//! Merging concurrent Append calls to store-svc.
//!
//! Every ingest call (a unary batch or one stream batch) needs one Append on
//! store-svc. Sent one by one, a site with many gateways each sending a
//! reading at a time spends most of its CPU on the ingest → store gRPC hop,
//! not on the readings. So calls go through [`StoreAppender`]: at most
//! `max_in_flight` Appends are outstanding, and while they are, newly arriving
//! calls queue and leave together as one Append (up to store-svc's
//! per-request limits). Idle, a call leaves at once, alone; busy, calls share
//! requests, the way store-svc's writer shares transactions.
//!
//! Traces: a merged Append is a child of the first call's span and linked
//! to the others' (a trace viewer shows the link from the Append's side).
//!
//! Each caller still gets exactly its own results, in order. A failed merged
//! request (store-svc unreachable, a database error) fails every call in it:
//! none of their readings was acknowledged, and each gateway retries its own
//! batch. Only validated readings are sent, so store-svc refusing one as
//! invalid is a gap in ingest-svc's rules, reported as such (see
//! [`crate::error`]); so that one gateway's batch that falls into such a gap
//! cannot fail the gateways merged with it on every retry, a merged request
//! refused as invalid is sent again call by call (which keeps a copy of each
//! call's readings while several share a request).

use std::sync::Arc;

use edge_proto::internal::v1 as ipb;
use edge_proto::internal::v1::store_ingest_service_client::StoreIngestServiceClient;
use edge_proto::rules::MAX_APPEND_READINGS;
use edge_runtime::client::AuthedChannel;
use opentelemetry::trace::TraceContextExt as _;
use prost::Message as _;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::{Code, Status};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Calls that may wait for a free Append slot before callers feel
/// back-pressure.
const QUEUE_DEPTH: usize = 4096;

/// Bytes kept free in a merged request for the message's own framing.
const FRAMING_BYTES: usize = 1024;

/// One caller's readings and where its results go.
struct Call {
    readings: Vec<ipb::NewReading>,
    bytes: usize,
    reply: oneshot::Sender<Result<Vec<ipb::AppendResult>, Status>>,
    /// The caller's span, so the Append joins its trace.
    span: tracing::Span,
}

/// A handle for appending through the merging task.
#[derive(Clone)]
pub struct StoreAppender {
    queue: mpsc::Sender<Call>,
}

impl StoreAppender {
    /// Starts the merging task. A merged request holds at most
    /// [`MAX_APPEND_READINGS`] readings and `max_message_bytes` encoded.
    pub fn spawn(
        store: StoreIngestServiceClient<AuthedChannel>,
        max_in_flight: usize,
        max_message_bytes: usize,
    ) -> StoreAppender {
        let (queue, calls) = mpsc::channel(QUEUE_DEPTH);
        let limits = Limits {
            readings: MAX_APPEND_READINGS,
            bytes: max_message_bytes.saturating_sub(FRAMING_BYTES).max(1),
        };
        tokio::spawn(run(store, calls, max_in_flight.max(1), limits));
        StoreAppender { queue }
    }

    /// Appends `readings` on store-svc; one result per reading, in order.
    pub async fn append(
        &self,
        readings: Vec<ipb::NewReading>,
    ) -> Result<Vec<ipb::AppendResult>, Status> {
        let bytes = readings.iter().map(|r| r.encoded_len() + 4).sum();
        let (reply, answer) = oneshot::channel();
        let closed = || Status::unavailable("ingest-svc's store client has stopped");
        self.queue
            .send(Call {
                readings,
                bytes,
                reply,
                span: tracing::Span::current(),
            })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

#[derive(Clone, Copy)]
struct Limits {
    readings: usize,
    bytes: usize,
}

async fn run(
    store: StoreIngestServiceClient<AuthedChannel>,
    mut calls: mpsc::Receiver<Call>,
    max_in_flight: usize,
    limits: Limits,
) {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let mut carried: Option<Call> = None;
    loop {
        let first = match carried.take() {
            Some(call) => call,
            None => match calls.recv().await {
                Some(call) => call,
                None => break,
            },
        };
        // Waiting for a slot is what lets the next calls gather.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (mut readings, mut bytes) = (first.readings.len(), first.bytes);
        let mut group = vec![first];
        while let Ok(call) = calls.try_recv() {
            if readings + call.readings.len() > limits.readings || bytes + call.bytes > limits.bytes
            {
                carried = Some(call);
                break;
            }
            readings += call.readings.len();
            bytes += call.bytes;
            group.push(call);
        }
        let store = store.clone();
        tokio::spawn(async move {
            send(store, group).await;
            drop(slot);
        });
    }
}

/// Sends one merged Append and answers every call in it.
async fn send(mut store: StoreIngestServiceClient<AuthedChannel>, group: Vec<Call>) {
    let total = group.iter().map(|call| call.readings.len()).sum();
    let span = merged_span(&group, total);
    // Kept only while calls share the request: for sending them alone if
    // store-svc refuses the merged one as invalid.
    let alone: Option<Vec<Vec<ipb::NewReading>>> =
        (group.len() > 1).then(|| group.iter().map(|call| call.readings.clone()).collect());
    let mut merged = Vec::with_capacity(total);
    let mut replies = Vec::with_capacity(group.len());
    for call in group {
        replies.push((call.readings.len(), call.reply));
        merged.extend(call.readings);
    }
    match append(&mut store, merged).instrument(span.clone()).await {
        Ok(results) => {
            let mut results = results.into_iter();
            for (size, reply) in replies {
                let _ = reply.send(Ok(results.by_ref().take(size).collect()));
            }
        }
        Err(status) if status.code() == Code::InvalidArgument && alone.is_some() => {
            tracing::warn!(
                calls = replies.len(),
                "store-svc refused a merged append as invalid; sending its calls one by one"
            );
            for ((_, reply), readings) in replies.into_iter().zip(alone.into_iter().flatten()) {
                let result = append(&mut store, readings).instrument(span.clone()).await;
                let _ = reply.send(result);
            }
        }
        Err(status) => {
            for (_, reply) in replies {
                let _ = reply.send(Err(status.clone()));
            }
        }
    }
}

/// The span of a merged Append: a child of the first call's span, linked to
/// the other calls' spans when traces are exported.
fn merged_span(group: &[Call], readings: usize) -> tracing::Span {
    let parent = group.first().and_then(|call| call.span.id());
    if !edge_runtime::telemetry::tracing_enabled() {
        return tracing::debug_span!(parent: parent, "store append", readings, calls = group.len());
    }
    let span = tracing::info_span!(parent: parent, "store append", readings, calls = group.len());
    for call in group.iter().skip(1) {
        span.add_link(call.span.context().span().span_context().clone());
    }
    span
}

/// One Append, checked to answer once per reading.
async fn append(
    store: &mut StoreIngestServiceClient<AuthedChannel>,
    readings: Vec<ipb::NewReading>,
) -> Result<Vec<ipb::AppendResult>, Status> {
    let sent = readings.len();
    let results = store
        .append(ipb::AppendRequest { readings })
        .await?
        .into_inner()
        .results;
    if results.len() != sent {
        return Err(Status::internal(format!(
            "store-svc answered {} results for {sent} readings",
            results.len()
        )));
    }
    Ok(results)
}
