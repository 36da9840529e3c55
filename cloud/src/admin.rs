//! The admin API, on its own port: fault injection, counters and the stored
//! data. It is for tests, demos and operators; every request needs the admin
//! token (`Authorization: Bearer`, the file `--admin-token-file` names), even
//! on loopback, which it binds by default. It is a separate listener so that
//! it keeps answering while the public port is refusing or black-holing
//! connections.
//!
//! - `GET|PUT /admin/faults`: the [`Faults`] in force;
//! - `GET /admin/stats`: [`CloudStats`];
//! - `GET /admin/sites/{site_id}/versions?after=&limit=`: [`VersionsPage`]
//!   (the versions a site pushed);
//! - `GET /admin/clock-ahead?after=&limit=`: [`VersionsPage`] of the
//!   versions of any site stored although stamped further ahead of the
//!   cloud's clock than `--max-clock-skew` (flagged), so an operator finds
//!   the clock to fix;
//! - `GET /admin/current?origin=&after=&limit=`: [`CurrentVersionsPage`],
//!   each reading's current version by reading id, so a test can check that
//!   every replica holds the identical version (P4);
//! - `GET /admin/conflicts?reading_id=&after=&limit=`: [`ConflictsPage`],
//!   the audit log of resolved conflicts;
//! - `GET /admin/simple-readings?after=&limit=`: [`SimpleReadingsPage`].

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use edge_cloud_link::contract::VersionRecord;
use serde::{Deserialize, Serialize};

use crate::api::auth::AdminAuth;
use crate::api::error::ApiError;
use crate::db::CloudDb;
use crate::faults::{FaultState, Faults};
use crate::stats::{CloudStats, Counters};
pub use crate::stored::{StoredConflict, StoredSimpleReading, StoredVersion};

/// Default page size of the admin listings.
pub const DEFAULT_PAGE_LIMIT: u32 = 1_000;

/// Largest page size of the admin listings.
pub const MAX_PAGE_LIMIT: u32 = 10_000;

/// Largest admin request body (a fault configuration is a few hundred
/// bytes).
pub const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

/// `GET /admin/current`: current versions by reading id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentVersionsPage {
    /// Up to `limit` readings' current versions, by reading id.
    pub versions: Vec<VersionRecord>,
    /// Pass as `after` for the next page (a reading id); `null` at the end.
    pub next: Option<String>,
}

/// `GET /admin/conflicts`: the audit log by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictsPage {
    /// Up to `limit` conflicts.
    pub conflicts: Vec<StoredConflict>,
    /// Pass as `after` for the next page; `null` at the end.
    pub next: Option<i64>,
}

/// `GET /admin/sites/{site_id}/versions`: versions in storage order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionsPage {
    /// Up to `limit` versions.
    pub versions: Vec<StoredVersion>,
    /// Pass as `after` for the next page; `null` at the end.
    pub next: Option<i64>,
}

/// `GET /admin/simple-readings`: readings by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleReadingsPage {
    /// Up to `limit` readings.
    pub readings: Vec<StoredSimpleReading>,
    /// Pass as `after` for the next page; `null` at the end.
    pub next: Option<i64>,
}

/// `?after=&limit=` of the listings.
#[derive(Debug, Deserialize)]
struct PageQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

impl PageQuery {
    fn parse(query: Result<Query<PageQuery>, QueryRejection>) -> Result<(i64, u32), ApiError> {
        let Query(query) = query.map_err(|e| ApiError::invalid_field("query", e.body_text()))?;
        Ok((query.after.unwrap_or(0), page_limit(query.limit)?))
    }
}

/// `?origin=&after=&limit=` of the current-version listing.
#[derive(Debug, Deserialize)]
struct CurrentQuery {
    origin: Option<String>,
    after: Option<String>,
    limit: Option<u32>,
}

/// `?reading_id=&after=&limit=` of the conflict listing.
#[derive(Debug, Deserialize)]
struct ConflictsQuery {
    reading_id: Option<String>,
    after: Option<i64>,
    limit: Option<u32>,
}

/// A listing's page size: [`DEFAULT_PAGE_LIMIT`] when absent, at most
/// [`MAX_PAGE_LIMIT`].
fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE_LIMIT);
    if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("must be between 1 and {MAX_PAGE_LIMIT}, got {limit}"),
        ));
    }
    Ok(limit)
}

#[derive(Clone)]
struct AdminState {
    db: Arc<CloudDb>,
    faults: FaultState,
    counters: Arc<Counters>,
}

/// The admin router: every route behind the admin token, every body under
/// `body_timeout`.
pub(crate) fn router(
    db: Arc<CloudDb>,
    faults: FaultState,
    counters: Arc<Counters>,
    auth: AdminAuth,
    body_timeout: std::time::Duration,
) -> Router {
    Router::new()
        .route("/admin/faults", get(get_faults).put(put_faults))
        .route("/admin/stats", get(stats))
        .route("/admin/sites/{site_id}/versions", get(versions))
        .route("/admin/clock-ahead", get(clock_ahead))
        .route("/admin/current", get(current))
        .route("/admin/conflicts", get(conflicts))
        .route("/admin/simple-readings", get(simple_readings))
        .fallback(crate::api::not_found)
        .method_not_allowed_fallback(crate::api::method_not_allowed)
        .layer(from_fn_with_state(
            body_timeout,
            crate::api::deadline::body_deadline,
        ))
        .layer(from_fn_with_state(auth, crate::api::auth::admin))
        .with_state(AdminState {
            db,
            faults,
            counters,
        })
}

async fn get_faults(State(state): State<AdminState>) -> Json<Faults> {
    Json(Faults::clone(&state.faults.current()))
}

async fn put_faults(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Faults>, ApiError> {
    let body = crate::api::body::read_limited(&headers, body, MAX_ADMIN_BODY_BYTES).await?;
    let faults: Faults =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid_body(e.to_string()))?;
    faults
        .validate()
        .map_err(|e| ApiError::invalid_field(e.field, e.message))?;
    state.faults.set(faults.clone());
    Ok(Json(faults))
}

async fn stats(State(state): State<AdminState>) -> Json<CloudStats> {
    Json(state.counters.snapshot())
}

async fn versions(
    State(state): State<AdminState>,
    Path(site_id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<VersionsPage>, ApiError> {
    let (after, limit) = PageQuery::parse(query)?;
    let page = state.db.versions_page(&site_id, after, limit).await?;
    Ok(Json(VersionsPage {
        versions: page.rows,
        next: page.next,
    }))
}

async fn clock_ahead(
    State(state): State<AdminState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<VersionsPage>, ApiError> {
    let (after, limit) = PageQuery::parse(query)?;
    let page = state.db.clock_ahead_page(after, limit).await?;
    Ok(Json(VersionsPage {
        versions: page.rows,
        next: page.next,
    }))
}

async fn current(
    State(state): State<AdminState>,
    query: Result<Query<CurrentQuery>, QueryRejection>,
) -> Result<Json<CurrentVersionsPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid_field("query", e.body_text()))?;
    let limit = page_limit(query.limit)?;
    let page = state
        .db
        .current_page(query.origin.as_deref(), query.after.as_deref(), limit)
        .await?;
    Ok(Json(CurrentVersionsPage {
        versions: page.rows,
        next: page.next,
    }))
}

async fn conflicts(
    State(state): State<AdminState>,
    query: Result<Query<ConflictsQuery>, QueryRejection>,
) -> Result<Json<ConflictsPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid_field("query", e.body_text()))?;
    let limit = page_limit(query.limit)?;
    let page = state
        .db
        .conflicts_page(query.reading_id.as_deref(), query.after.unwrap_or(0), limit)
        .await?;
    Ok(Json(ConflictsPage {
        conflicts: page.rows,
        next: page.next,
    }))
}

async fn simple_readings(
    State(state): State<AdminState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<SimpleReadingsPage>, ApiError> {
    let (after, limit) = PageQuery::parse(query)?;
    let page = state.db.simple_page(after, limit).await?;
    Ok(Json(SimpleReadingsPage {
        readings: page.rows,
        next: page.next,
    }))
}
