//! Clients of store-svc for tests and benchmarks. store-svc serves four
//! services on one port, one per kind of caller and right; a test plays every
//! caller, so [`StoreClients`] holds all four over one channel.

use edge_proto::internal::v1::store_ingest_service_client::StoreIngestServiceClient;
use edge_proto::internal::v1::store_sync_service_client::StoreSyncServiceClient;
use edge_proto::v1::operations_service_client::OperationsServiceClient;
use edge_proto::v1::readings_service_client::ReadingsServiceClient;
use edge_proto::v1::{QueryReadingsRequest, StoredReading};
use tonic::transport::Channel;

/// store-svc's four services over one channel.
#[derive(Clone)]
pub struct StoreClients {
    /// `edge.v1.ReadingsService`: query and stats.
    pub readings: ReadingsServiceClient<Channel>,
    /// `edge.v1.OperationsService`: amend, conflicts, dead letters.
    pub operations: OperationsServiceClient<Channel>,
    /// `edge.internal.v1.StoreIngestService`: append, as ingest-svc does.
    pub ingest: StoreIngestServiceClient<Channel>,
    /// `edge.internal.v1.StoreSyncService`: leases, completions, reports and
    /// the change feed, as sync-svc does.
    pub sync: StoreSyncServiceClient<Channel>,
}

impl StoreClients {
    /// The four clients over `channel`.
    pub fn new(channel: Channel) -> Self {
        StoreClients {
            readings: ReadingsServiceClient::new(channel.clone()),
            operations: OperationsServiceClient::new(channel.clone()),
            ingest: StoreIngestServiceClient::new(channel.clone()),
            sync: StoreSyncServiceClient::new(channel),
        }
    }

    /// Connects to store-svc at `url` (`http://host:port`).
    pub async fn connect(url: impl Into<String>) -> Result<Self, tonic::transport::Error> {
        let channel = tonic::transport::Endpoint::from_shared(url.into())?
            .connect()
            .await?;
        Ok(StoreClients::new(channel))
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
