//! The public API's request middleware: the fault gate, injected errors and
//! throttles, and counting refusals. See the layer list in [`super`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::error::ApiError;
use crate::faults::{FaultMode, roll};
use crate::stats::{Counters, add};

/// The batch push route, as axum matches it.
const BATCHES_ROUTE: &str = "/v1/sites/{site_id}/batches";

/// Holds the request while the mode is not `normal` (under `refuse` the
/// connection task resets the connection meanwhile; under `black_hole` the
/// request simply never proceeds until the mode changes), then adds the
/// injected latency.
pub(super) async fn gate(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let mut faults = state.faults.subscribe();
    let open = tokio::select! {
        normal = async { faults.wait_for(|f| f.mode == FaultMode::Normal).await.is_ok() } => normal,
        () = state.shutdown.cancelled() => false,
    };
    if !open {
        return ApiError::ShuttingDown.into_response();
    }
    let latency = state.faults.current().latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    next.run(request).await
}

/// Counts batch pushes, then answers the injected share of errors and
/// throttles before the request does anything.
pub(super) async fn data_faults(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let is_push = request.method() == Method::POST
        && request
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|p| p.as_str() == BATCHES_ROUTE);
    if is_push {
        add(&state.counters.pushes_received, 1);
    }
    let faults = state.faults.current();
    if roll(faults.error_rate) {
        let status =
            StatusCode::from_u16(faults.error_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return ApiError::Injected(status).into_response();
    }
    if roll(faults.throttle_rate) {
        return ApiError::Throttled(faults.retry_after_seconds).into_response();
    }
    next.run(request).await
}

/// Counts the answers that refuse a request at a limit: `408` (the body
/// was too slow) and `413` (too large), on top of whatever the handler
/// counted.
pub(super) async fn count_refusals(
    State(counters): State<Arc<Counters>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    match response.status() {
        StatusCode::REQUEST_TIMEOUT => add(&counters.body_timeouts, 1),
        StatusCode::PAYLOAD_TOO_LARGE => add(&counters.too_large, 1),
        _ => {}
    }
    response
}
