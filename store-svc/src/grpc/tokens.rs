//! `edge.v1.TokensService` (operators manage the site's identities) and
//! `edge.internal.v1.IdentityService` (every service reads them to check
//! its callers). The guard in front of the port has already decided who may
//! call which; here a token is made, listed without its secret, or revoked.

use std::sync::Arc;

use edge_proto::internal::v1 as ipb;
use edge_proto::internal::v1::identity_service_server::IdentityService;
use edge_proto::v1 as pb;
use edge_proto::v1::tokens_service_server::TokensService;
use edge_runtime::auth::{Scope, Scopes, caller_name};
use prost_types::Timestamp;
use tonic::{Request, Response, Status};

use super::{Store, StoreError, violation};
use crate::db::IdentityRow;
use crate::identities::stored_rate;

/// Prefix of the site's tokens, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "edge_";

/// Longest identity name.
const MAX_NAME: usize = 64;

/// The TokensService and IdentityService implementation.
pub struct TokensGrpc {
    store: Arc<Store>,
}

impl TokensGrpc {
    pub(super) fn new(store: Arc<Store>) -> Self {
        Self { store }
    }
}

/// Checks an identity name: 1 to 64 of letters, digits, `-`, `_`, `.`.
pub fn check_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(violation(
            "name",
            format!("must be 1 to {MAX_NAME} characters"),
        ));
    }
    if name == "mesh" {
        return Err(violation(
            "name",
            "mesh is the services' own identity and cannot be a token's name",
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(violation(
            "name",
            "may hold only letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

fn scopes_from_proto(scopes: &[String]) -> Result<Scopes, StoreError> {
    if scopes.is_empty() {
        return Err(violation(
            "scopes",
            "name at least one of ingest, read, operate",
        ));
    }
    let parsed =
        Scopes::parse(&scopes.join(",")).map_err(|err| violation("scopes", err.to_string()))?;
    if parsed.contains(Scope::Mesh) {
        return Err(violation(
            "scopes",
            "mesh is the services' own scope and cannot be given to a token",
        ));
    }
    Ok(parsed)
}

fn timestamp(us: i64) -> Timestamp {
    Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: i32::try_from(us.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

fn info(row: &IdentityRow) -> pb::TokenInfo {
    pb::TokenInfo {
        name: row.name.clone(),
        scopes: row.scopes.split(',').map(str::to_owned).collect(),
        created_at: Some(timestamp(row.created_at_us)),
        revoked_at: row.revoked_at_us.map(timestamp),
        calls_per_second: stored_rate(row.calls_per_second),
        readings_per_second: stored_rate(row.readings_per_second),
        created_by: row.created_by.clone(),
    }
}

#[tonic::async_trait]
impl TokensService for TokensGrpc {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let created_by = caller_name(&request);
        let request = request.into_inner();
        check_name(&request.name)?;
        let scopes = scopes_from_proto(&request.scopes)?;
        let token = edge_credentials::generate(TOKEN_PREFIX);
        let row = IdentityRow {
            name: request.name.clone(),
            token_sha256: edge_credentials::TokenHash::of(&token).to_hex(),
            scopes: scopes.to_string(),
            calls_per_second: request.calls_per_second.map(i64::from),
            readings_per_second: request.readings_per_second.map(i64::from),
            created_at_us: self.store.clock.now_us(),
            created_by,
            revoked_at_us: None,
        };
        if !self
            .store
            .db
            .add_identity(&row)
            .await
            .map_err(StoreError::from)?
        {
            return Err(Status::already_exists(format!(
                "an identity named {:?} exists; revoke it first to issue a new token",
                request.name
            )));
        }
        tracing::info!(name = %row.name, scopes = %row.scopes, by = %row.created_by, "token created");
        Ok(Response::new(pb::CreateTokenResponse {
            token,
            info: Some(info(&row)),
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let rows = self
            .store
            .db
            .identities(request.get_ref().include_revoked)
            .await
            .map_err(StoreError::from)?;
        Ok(Response::new(pb::ListTokensResponse {
            tokens: rows.iter().map(info).collect(),
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let by = caller_name(&request);
        let name = request.into_inner().name;
        check_name(&name)?;
        match self
            .store
            .db
            .revoke_identity(&name, self.store.clock.now_us())
            .await
            .map_err(StoreError::from)?
        {
            Some(row) => {
                tracing::info!(%name, %by, "token revoked");
                Ok(Response::new(pb::RevokeTokenResponse {
                    info: Some(info(&row)),
                }))
            }
            None => Err(Status::not_found(format!(
                "no valid identity named {name:?}"
            ))),
        }
    }
}

#[tonic::async_trait]
impl IdentityService for TokensGrpc {
    async fn list_identities(
        &self,
        _request: Request<ipb::ListIdentitiesRequest>,
    ) -> Result<Response<ipb::ListIdentitiesResponse>, Status> {
        let rows = self
            .store
            .db
            .identities(true)
            .await
            .map_err(StoreError::from)?;
        let loaded =
            crate::identities::loaded(rows).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ipb::ListIdentitiesResponse {
            identities: loaded
                .records
                .into_iter()
                .map(|record| ipb::IdentityEntry {
                    token_sha256: record.token_hash.to_hex(),
                    scopes: record
                        .scopes
                        .iter()
                        .map(|s| s.as_str().to_owned())
                        .collect(),
                    calls_per_second: record.rates.calls_per_second,
                    readings_per_second: record.rates.readings_per_second,
                    name: record.name,
                })
                .collect(),
            revoked_names: loaded.revoked_names,
        }))
    }
}
