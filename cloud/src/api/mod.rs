//! The public API: the cloud contract (`docs/cloud-api.yaml`).
//!
//! Layers, outermost first, each for one reason:
//! 1. [`middleware::gate`] (every route, health and 404s included): holds a
//!    request while the fault mode is not `normal`, so a keep-alive
//!    connection cannot keep working while the port is meant to be dark;
//!    then adds the injected `latency_ms`.
//! 2. [`middleware::data_faults`] (data routes): counts batch pushes, then
//!    answers the injected share of errors and throttles before anything
//!    else happens, as a struggling cloud would.
//! 3. [`auth::site`] (data routes): the site's bearer token, which must be
//!    the path's site's own.
//!
//! Under the gate, for every route: [`deadline::body_deadline`] puts the
//! body under `--body-timeout`, and [`middleware::count_refusals`] counts
//! the limits' refusals (`408`, `413`) in the stats.
//!
//! Handlers live in [`batches`] (the push), [`books`] (coverage and unsent
//! reports), [`readings`] (the cloud's amendments and a reading's state),
//! [`changes`] (the change feed) and [`simple`] (the simple API); every
//! error goes through [`error::ApiError`].

pub(crate) mod auth;
mod batches;
pub(crate) mod body;
mod books;
mod changes;
pub(crate) mod deadline;
pub(crate) mod error;
mod middleware;
#[cfg(test)]
mod push_props;
mod readings;
mod simple;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use edge_cloud_link::contract::{HEALTH_PATH, SIMPLE_READINGS_PATH};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::db::CloudDb;
use crate::faults::FaultState;
use crate::sites::SiteRegistry;
use crate::stats::Counters;
use error::ApiError;

/// What every public handler shares.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub db: Arc<CloudDb>,
    pub faults: FaultState,
    pub counters: Arc<Counters>,
    /// Which site each token speaks for.
    pub sites: Arc<SiteRegistry>,
    /// `--body-timeout`.
    pub body_timeout: Duration,
    /// Server shutdown: releases requests held by the fault gate.
    pub shutdown: CancellationToken,
}

/// The public router.
pub(crate) fn router(state: ApiState) -> Router {
    let data = Router::new()
        .route("/v1/sites/{site_id}/batches", post(batches::push))
        .route("/v1/sites/{site_id}/coverage", get(books::coverage))
        .route("/v1/sites/{site_id}/unsent", put(books::unsent))
        .route("/v1/sites/{site_id}/changes", get(changes::changes))
        .route("/v1/readings/{reading_id}", get(readings::reading))
        .route(
            "/v1/readings/{reading_id}/amendments",
            post(readings::amend),
        )
        .route(SIMPLE_READINGS_PATH, post(simple::create))
        .route_layer(from_fn_with_state(state.clone(), auth::site))
        .route_layer(from_fn_with_state(state.clone(), middleware::data_faults));
    Router::new()
        .route(HEALTH_PATH, get(health))
        .merge(data)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(
            state.body_timeout,
            deadline::body_deadline,
        ))
        .layer(from_fn_with_state(
            state.counters.clone(),
            middleware::count_refusals,
        ))
        .layer(from_fn_with_state(state.clone(), middleware::gate))
        .with_state(state)
}

/// `GET /health`: 200 while the cloud accepts data.
async fn health(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    if state.faults.current().health_down {
        return Err(ApiError::Unhealthy);
    }
    Ok(Json(json!({ "status": "ok" })))
}

/// Unknown routes: JSON, like every other error.
pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// Known routes, wrong method: JSON, like every other error.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Checks a site id taken from the path (see
/// [`crate::sites::site_id_problem`]).
fn check_site_id(site_id: &str) -> Result<(), ApiError> {
    match crate::sites::site_id_problem(site_id) {
        Some(problem) => Err(ApiError::invalid_field("site_id", problem)),
        None => Ok(()),
    }
}

/// Waits the injected `reply_delay_ms` after a commit, before answering.
async fn reply_delay(state: &ApiState) {
    let delay = state.faults.current().reply_delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
}
