//! The public API's request middleware: the fault gate, injected errors and
//! throttles, and the bearer token check. See the layer list in [`super`].

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::error::ApiError;
use crate::faults::{FaultMode, roll};
use crate::stats::add;

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

/// `Authorization: Bearer <token>`, or `401`.
pub(super) async fn auth(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match presented {
        Some(token) if same_secret(token.as_bytes(), state.token.as_bytes()) => {
            next.run(request).await
        }
        _ => ApiError::Unauthorized.into_response(),
    }
}

/// The token of a `Bearer` authorization value (the scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares secrets in time independent of where they differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_parsed() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"secret", b"secret"));
        assert!(!same_secret(b"secret", b"secreT"));
        assert!(!same_secret(b"secret", b"secret2"));
    }
}
