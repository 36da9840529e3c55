//! `POST /v1/sites/{site_id}/batches`: a batch of versions under an
//! idempotency key.
//!
//! Batch-level refusals (no key, unreadable or oversized body, bad JSON,
//! empty or too many versions, the injected `batch_reject_sensors`) answer
//! 4xx before anything is stored. Everything else is answered `200` with one
//! result per version, only after the transaction that stored the versions
//! and the answer itself has committed.

use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use edge_cloud_link::contract::{
    IDEMPOTENCY_KEY_HEADER, MAX_BATCH_BODY_BYTES, MAX_BATCH_VERSIONS, PushBatch, VersionRecord,
};
use xxhash_rust::xxh3::xxh3_128;

use super::body::{parse_json, read_limited};
use super::error::ApiError;
use super::{ApiState, check_site_id, reply_delay};
use crate::batch::CheckedBatch;
use crate::db::PushOutcome;
use crate::stats::add;

/// Longest idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;

pub(super) async fn push(
    State(state): State<ApiState>,
    site_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Path(site_id) = site_id.map_err(|e| ApiError::invalid_field("site_id", e.body_text()))?;
    check_site_id(&site_id)?;
    let key = idempotency_key(&headers)?;
    let raw = read_limited(&headers, body, MAX_BATCH_BODY_BYTES).await?;
    let faults = state.faults.current();
    // Parsing and checking thousands of versions is CPU work: off the reactor.
    let (batch, digest) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let digest = xxh3_128(&raw).to_be_bytes();
        let versions = parse_push_body(&raw)?;
        if versions
            .iter()
            .any(|v| faults.batch_reject_sensors.contains(&v.sensor_id))
        {
            // Deliberately vague: names no reading and no field, so the
            // site has to split the batch to find the culprit.
            return Err(ApiError::InvalidBatch(
                "the cloud refused this batch".into(),
            ));
        }
        Ok((CheckedBatch::check(&site_id, versions, &faults), digest))
    })
    .await??;

    let body = match state.db.push(&batch, &key, &digest).await? {
        PushOutcome::Stored {
            body,
            accepted,
            duplicate,
            rejected,
            conflicts,
            skew,
        } => {
            add(&state.counters.versions_accepted, accepted);
            add(&state.counters.versions_duplicate, duplicate);
            add(&state.counters.versions_rejected, rejected);
            add(&state.counters.conflicts_resolved, conflicts);
            if let Some(skew) = skew {
                add(&state.counters.clock_skew_versions, skew.versions);
                // One line per push, not per version: a site whose clock is
                // an hour ahead pushes thousands of them.
                tracing::warn!(
                    site_id = %batch.site_id,
                    versions = skew.versions,
                    furthest_ahead = %humantime::format_duration(Duration::from_millis(skew.furthest_ahead_ms)),
                    reading_id = %skew.reading_id,
                    "accepted versions stamped ahead of the cloud's clock by more than --max-clock-skew"
                );
            }
            tracing::debug!(site_id = %batch.site_id, accepted, duplicate, rejected, conflicts, "batch stored");
            body
        }
        PushOutcome::Replay { body } => {
            add(&state.counters.batch_replays, 1);
            tracing::debug!(site_id = %batch.site_id, "batch replayed from its idempotency record");
            body
        }
        PushOutcome::KeyReused => return Err(ApiError::KeyReused),
    };
    add(&state.counters.pushes, 1);
    reply_delay(&state).await;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Parses a push body, already read and inflated
/// ([`super::body::read_limited`]), into its versions, in the order sent.
/// The lowest level of the push that sees the body's bytes; pure, so that it
/// can be tested on any bytes. Refusals, each naming what is wrong:
/// - `400 invalid_body`: not JSON, or JSON not of the `PushBatch` shape, with
///   serde's reason (the field, the line and column);
/// - `400 invalid_body` on field `versions`: no versions;
/// - `413 too_large` on field `versions`: more than [`MAX_BATCH_VERSIONS`].
///
/// The per-version rules are [`CheckedBatch::check`]'s, after this.
pub(crate) fn parse_push_body(raw: &[u8]) -> Result<Vec<VersionRecord>, ApiError> {
    let PushBatch { versions } = parse_json(raw)?;
    if versions.is_empty() {
        return Err(ApiError::invalid_field(
            "versions",
            format!("a batch holds 1 to {MAX_BATCH_VERSIONS} versions; this one is empty"),
        ));
    }
    if versions.len() > MAX_BATCH_VERSIONS {
        return Err(ApiError::TooLarge {
            field: Some("versions".into()),
            message: format!(
                "a batch holds at most {MAX_BATCH_VERSIONS} versions; this one has {}",
                versions.len()
            ),
        });
    }
    Ok(versions)
}

/// The `Idempotency-Key` header: required, 1 to 200 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(IDEMPOTENCY_KEY_HEADER)
        .ok_or(ApiError::MissingIdempotencyKey)?;
    let invalid = |message: String| ApiError::Invalid {
        code: "invalid_idempotency_key",
        field: Some("Idempotency-Key".into()),
        message,
    };
    let key = value
        .to_str()
        .map_err(|_| invalid("the Idempotency-Key must be visible ASCII".into()))?;
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(invalid(format!(
            "the Idempotency-Key must have 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters, got {}",
            key.len()
        )));
    }
    Ok(key.to_owned())
}
