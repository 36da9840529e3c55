//! Who may call what: the public API's site tokens and the admin API's own
//! token.
//!
//! Public data routes need `Authorization: Bearer <site token>`. A route
//! with a `{site_id}` in its path (push, coverage, unsent reports, the
//! change feed) is served only for the site the token belongs to: no,
//! unknown or revoked token → `401`; another site's token → `403`, whose
//! message names the site asked for and never the token's own (a leaked
//! token should not also say whose it is). Routes without a site (a
//! reading's state, the cloud's amendments, the simple API) take any site's
//! valid token. `/health` takes none: probes must work before a site has a
//! token, and it says nothing but "up".
//!
//! The admin API needs its own token on every request, even on loopback:
//! any local process (a container sharing the network namespace, a
//! browser's DNS-rebound page) can reach loopback.

use std::sync::Arc;

use axum::extract::{RawPathParams, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use edge_credentials::TokenHash;

use super::ApiState;
use super::error::ApiError;
use crate::stats::{Counters, add};

/// The path parameter that names the site a route acts for.
const SITE_PARAM: &str = "site_id";

/// The bearer token of `request`, if it has one.
fn presented(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(edge_credentials::bearer)
}

/// The site whose token a public request carried, in the request's
/// extensions for the handlers that record who asked.
#[derive(Debug, Clone)]
pub(crate) struct CallerSite(pub Arc<str>);

/// A site token, valid for the path's `{site_id}` when the route has one.
pub(super) async fn site(
    State(state): State<ApiState>,
    params: RawPathParams,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(token) = presented(&request) else {
        add(&state.counters.unauthorized, 1);
        return ApiError::Unauthorized.into_response();
    };
    let owner = match state.sites.site_of(token).await {
        Ok(Some(owner)) => owner,
        Ok(None) => {
            add(&state.counters.unauthorized, 1);
            return ApiError::Unauthorized.into_response();
        }
        Err(err) => return ApiError::Db(err).into_response(),
    };
    if let Some((_, site)) = params.iter().find(|(name, _)| *name == SITE_PARAM)
        && site != &*owner
    {
        add(&state.counters.forbidden, 1);
        tracing::debug!(asked = site, "a site token was used for another site");
        return ApiError::Forbidden(site.to_owned()).into_response();
    }
    request.extensions_mut().insert(CallerSite(owner));
    next.run(request).await
}

/// What the admin check needs.
#[derive(Clone)]
pub(crate) struct AdminAuth {
    /// The hash of the admin token.
    pub token: TokenHash,
    /// Where refusals are counted.
    pub counters: Arc<Counters>,
}

/// The admin token, compared in constant time, or `401`.
pub(crate) async fn admin(State(auth): State<AdminAuth>, request: Request, next: Next) -> Response {
    match presented(&request) {
        Some(token) if auth.token.matches(token) => next.run(request).await,
        _ => {
            add(&auth.counters.admin_unauthorized, 1);
            ApiError::Unauthorized.into_response()
        }
    }
}
