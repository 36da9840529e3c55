//! The identities as store-svc serves them, for the services that have no
//! database of their own (ingest-svc, sync-svc, health-svc).

use edge_proto::internal::v1::ListIdentitiesRequest;
use edge_proto::internal::v1::identity_service_client::IdentityServiceClient;

use super::identity::{IdentityRecord, IdentitySource, LoadError, LoadFuture, Loaded};
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
                    IdentityRecord::parse(
                        entry.name,
                        &entry.token_sha256,
                        &entry.scopes.join(","),
                        entry.calls_per_second,
                        entry.readings_per_second,
                    )
                })
                .collect::<Result<Vec<_>, LoadError>>()?;
            Ok(Loaded {
                records,
                revoked_names: response.revoked_names,
            })
        })
    }
}
