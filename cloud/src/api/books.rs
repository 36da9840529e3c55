//! The site's books at the cloud: `GET /v1/sites/{site_id}/coverage` (which
//! seqs the cloud can account for) and `PUT /v1/sites/{site_id}/unsent` (the
//! seqs the site will not deliver: dead letters and drops).

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use edge_cloud_link::contract::{
    Coverage, MAX_BATCH_BODY_BYTES, MAX_BATCH_VERSIONS, UnsentAck, UnsentReport,
};

use super::body::{parse_json, read_limited};
use super::error::ApiError;
use super::{ApiState, check_site_id, reply_delay};
use crate::stats::add;

pub(super) async fn coverage(
    State(state): State<ApiState>,
    site_id: Result<Path<String>, PathRejection>,
) -> Result<Json<Coverage>, ApiError> {
    let Path(site_id) = site_id.map_err(|e| ApiError::invalid_field("site_id", e.body_text()))?;
    check_site_id(&site_id)?;
    Ok(Json(state.db.coverage(&site_id).await?))
}

pub(super) async fn unsent(
    State(state): State<ApiState>,
    site_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UnsentAck>, ApiError> {
    let Path(site_id) = site_id.map_err(|e| ApiError::invalid_field("site_id", e.body_text()))?;
    check_site_id(&site_id)?;
    let raw = read_limited(&headers, body, MAX_BATCH_BODY_BYTES).await?;
    let report: UnsentReport = parse_json(&raw)?;
    if report.entries.is_empty() {
        return Err(ApiError::invalid_field(
            "entries",
            format!("a report holds 1 to {MAX_BATCH_VERSIONS} entries; this one is empty"),
        ));
    }
    if report.entries.len() > MAX_BATCH_VERSIONS {
        return Err(ApiError::TooLarge {
            field: Some("entries".into()),
            message: format!(
                "a report holds at most {MAX_BATCH_VERSIONS} entries; this one has {}",
                report.entries.len()
            ),
        });
    }
    for (i, entry) in report.entries.iter().enumerate() {
        if entry.seq == 0 || i64::try_from(entry.seq).is_err() {
            return Err(ApiError::invalid_field(
                format!("entries[{i}].seq"),
                format!("seq must be between 1 and {}, got {}", i64::MAX, entry.seq),
            ));
        }
    }
    let recorded = state.db.record_unsent(&site_id, &report).await?;
    add(&state.counters.unsent_reports, 1);
    reply_delay(&state).await;
    Ok(Json(UnsentAck { recorded }))
}
