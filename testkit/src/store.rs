//! Clients of store-svc for tests and benchmarks. store-svc serves four
//! services on one port, one per kind of caller and right; a test plays every
//! caller, so [`StoreClients`] holds all four over one channel.

use edge_proto::internal::v1::store_ingest_service_client::StoreIngestServiceClient;
use edge_proto::internal::v1::store_sync_service_client::StoreSyncServiceClient;
use edge_proto::v1::operations_service_client::OperationsServiceClient;
use edge_proto::v1::readings_service_client::ReadingsServiceClient;
use edge_proto::v1::{QueryReadingsRequest, StoredReading};
use edge_runtime::client::AuthedChannel;

/// store-svc's four services over one channel.
#[derive(Clone)]
pub struct StoreClients {
    /// `edge.v1.ReadingsService`: query and stats.
    pub readings: ReadingsServiceClient<AuthedChannel>,
    /// `edge.v1.OperationsService`: amend, conflicts, dead letters.
    pub operations: OperationsServiceClient<AuthedChannel>,
    /// `edge.internal.v1.StoreIngestService`: append, as ingest-svc does.
    pub ingest: StoreIngestServiceClient<AuthedChannel>,
    /// `edge.internal.v1.StoreSyncService`: leases, completions, reports and
    /// the change feed, as sync-svc does.
    pub sync: StoreSyncServiceClient<AuthedChannel>,
}

impl StoreClients {
    /// The public clients over `operator` (an operator's channel), the
    /// internal ones over `mesh` (the services' own identity): each right
    /// belongs to its caller.
    pub fn new(operator: AuthedChannel, mesh: AuthedChannel) -> Self {
        StoreClients {
            readings: ReadingsServiceClient::new(operator.clone()),
            operations: OperationsServiceClient::new(operator),
            ingest: StoreIngestServiceClient::new(mesh.clone()),
            sync: StoreSyncServiceClient::new(mesh),
        }
    }

    /// Connects to an in-process store-svc at `url` as the test operator
    /// (see [`crate::security`]).
    pub async fn connect(url: impl Into<String>) -> Self {
        let url = url.into();
        let security = crate::security();
        StoreClients::new(
            crate::connect_with(&url, &security.operator()).await,
            crate::connect_with(&url, &security.mesh()).await,
        )
    }

    /// Connects to the store-svc of a spawned `edge up`.
    pub async fn of_site(site: &crate::EdgeUp) -> Self {
        StoreClients::new(
            site.channel(&site.store_url).await,
            crate::connect_with(&site.store_url, &site.mesh_credentials).await,
        )
    }
}

/// Every reading a store query matches, following page tokens to the end,
/// and checking that no page is longer than asked (100 when unset).
pub async fn query_all(
    client: &mut StoreClients,
    mut request: QueryReadingsRequest,
) -> Vec<StoredReading> {
    let mut all = Vec::new();
    loop {
        let page = client
            .readings
            .query_readings(request.clone())
            .await
            .expect("query")
            .into_inner();
        assert!(page.readings.len() <= request.page_size.max(100) as usize);
        all.extend(page.readings);
        if page.next_page_token.is_empty() {
            return all;
        }
        request.page_token = page.next_page_token;
    }
}
