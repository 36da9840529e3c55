//! The identities as store-svc serves them, for the services that have no
//! database of their own (ingest-svc, sync-svc, health-svc).

use edge_credentials::TokenHash;
use edge_proto::internal::v1::ListIdentitiesRequest;
use edge_proto::internal::v1::identity_service_client::IdentityServiceClient;

use super::identity::{IdentityRecord, IdentitySource, LoadError, LoadFuture, Loaded};
use super::{Rates, Scopes};
use crate::client::AuthedChannel;

/// Reads the identities from store-svc's `IdentityService`.
pub struct RemoteIdentities {
    client: IdentityServiceClient<AuthedChannel>,
}

impl RemoteIdentities {
    /// A source calling store-svc over `channel` (with the mesh token).
    pub fn new(channel: AuthedChannel) -> Self {
        Self {
            client: IdentityServiceClient::new(channel),
        }
    }
}

impl IdentitySource for RemoteIdentities {
    fn load(&self) -> LoadFuture<'_> {
        let mut client = self.client.clone();
        Box::pin(async move {
            let response = client
                .list_identities(ListIdentitiesRequest {})
                .await
                .map_err(|status| LoadError(format!("store-svc answered {status}")))?;
            let response = response.into_inner();
            let records = response
                .identities
                .into_iter()
                .map(|entry| {
                    Ok(IdentityRecord {
                        token_hash: TokenHash::from_hex(&entry.token_sha256)
                            .map_err(|e| LoadError(format!("identity {:?}: {e}", entry.name)))?,
                        scopes: Scopes::parse(&entry.scopes.join(","))
                            .map_err(|e| LoadError(format!("identity {:?}: {e}", entry.name)))?,
                        rates: Rates {
                            calls_per_second: entry.calls_per_second,
                            readings_per_second: entry.readings_per_second,
                            burst_seconds: None,
                        },
                        name: entry.name,
                    })
                })
                .collect::<Result<Vec<_>, LoadError>>()?;
            Ok(Loaded {
                records,
                revoked_names: response.revoked_names,
            })
        })
    }
}
