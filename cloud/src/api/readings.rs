//! `POST /v1/readings/{reading_id}/amendments`, the cloud's own amendments,
//! and `GET /v1/readings/{reading_id}`, a reading's current version.
//!
//! An amendment is answered `200` only after the version it made has
//! committed, with the reading as the cloud then holds it.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use edge_cloud_link::contract::{AmendmentRequest, ReadingState};

use super::auth::CallerSite;
use super::body::{parse_json, read_limited};
use super::error::ApiError;
use super::{ApiState, reply_delay};
use crate::amend;
use crate::stats::add;

/// What the cloud records as the writer of its own amendment: the site
/// whose token asked for it.
const AMENDMENT_WRITER_PREFIX: &str = "site:";

// Every such writer is one a site accepts from the feed.
const _: () = assert!(
    AMENDMENT_WRITER_PREFIX.len() + crate::sites::MAX_SITE_ID_CHARS
        <= edge_cloud_link::contract::MAX_WRITTEN_BY_CHARS
);

/// Largest amendment body: a few numbers and a note of at most 1,024
/// characters (4 bytes each at worst), with room for JSON escapes.
pub const MAX_AMENDMENT_BODY_BYTES: usize = 64 * 1024;

pub(super) async fn amend(
    State(state): State<ApiState>,
    Extension(CallerSite(caller)): Extension<CallerSite>,
    reading_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ReadingState>, ApiError> {
    let reading_id = reading_id_of(reading_id)?;
    let raw = read_limited(&headers, body, MAX_AMENDMENT_BODY_BYTES).await?;
    let request: AmendmentRequest = parse_json(&raw)?;
    amend::check(&request).map_err(|e| match e.field {
        Some(field) => ApiError::invalid_field(field, e.message),
        None => ApiError::invalid_body(e.message),
    })?;
    let amendment = state
        .db
        .amend(
            &reading_id,
            &request,
            &format!("{AMENDMENT_WRITER_PREFIX}{caller}"),
        )
        .await?
        .ok_or_else(|| ApiError::UnknownReading(reading_id.clone()))?;
    add(&state.counters.amendments, 1);
    add(&state.counters.conflicts_resolved, amendment.conflicts);
    let stamp = &amendment.state.current.version;
    tracing::info!(
        %reading_id,
        physical_ms = stamp.hlc.physical_ms,
        logical = stamp.hlc.logical,
        "the cloud amended a reading"
    );
    reply_delay(&state).await;
    Ok(Json(amendment.state))
}

pub(super) async fn reading(
    State(state): State<ApiState>,
    reading_id: Result<Path<String>, PathRejection>,
) -> Result<Json<ReadingState>, ApiError> {
    let reading_id = reading_id_of(reading_id)?;
    let reading = state
        .db
        .reading_state(&reading_id)
        .await?
        .ok_or(ApiError::UnknownReading(reading_id))?;
    Ok(Json(reading))
}

/// The reading id in the path: a UUID, as every pushed reading's is.
fn reading_id_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(reading_id) =
        path.map_err(|e| ApiError::invalid_field("reading_id", e.body_text()))?;
    if uuid::Uuid::try_parse(&reading_id).is_err() {
        return Err(ApiError::invalid_field(
            "reading_id",
            format!(
                "reading_id {:?} is not a UUID",
                reading_id.chars().take(64).collect::<String>()
            ),
        ));
    }
    Ok(reading_id)
}
