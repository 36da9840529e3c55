//! The mesh in the test process: store-svc and ingest-svc on port 0, on a
//! fresh database of either backend, with real gRPC clients.

#![allow(dead_code)]

pub mod gateways;
pub mod site;

use edge_runtime::Service as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use edge_proto::v1 as pb;
use edge_proto::v1::ingest_service_client::IngestServiceClient;
use edge_runtime::client::AuthedChannel;
use edge_runtime::{RuntimeArgs, ServeError, Shutdown};
use edge_testkit::StoreClients;
use edge_testkit::TestDatabase;
use ingest_svc::{IngestApp, IngestConfig};
use prost_types::Timestamp;
use store_svc::hlc::{SystemClock, WallClock};
use store_svc::{StoreApp, StoreConfig};
use tokio::task::JoinHandle;

pub fn runtime_args() -> RuntimeArgs {
    RuntimeArgs {
        shutdown_grace: Duration::from_secs(5),
        ..edge_testkit::runtime_args()
    }
}

/// A service running in this process.
pub struct Running {
    pub addr: SocketAddr,
    stop: Shutdown,
    task: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Runs a built service: `start` gets the stop token and spawns it.
    pub fn spawn(
        addr: SocketAddr,
        start: impl FnOnce(Shutdown) -> JoinHandle<Result<(), ServeError>>,
    ) -> Running {
        let stop = Shutdown::new();
        let task = start(stop.clone());
        Running { addr, stop, task }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("service task")
            .expect("service served");
    }
}

pub async fn start_store(db: &TestDatabase, addr: SocketAddr) -> Running {
    start_store_with(db, addr, |_| {}).await
}

/// store-svc with `configure`'s changes to the defaults.
pub async fn start_store_with(
    db: &TestDatabase,
    addr: SocketAddr,
    configure: impl FnOnce(&mut StoreConfig),
) -> Running {
    start_store_clocked(db, addr, Arc::new(SystemClock), configure).await
}

/// store-svc reading `clock` (a skewed wall clock), with `configure`'s
/// changes to the defaults.
pub async fn start_store_clocked(
    db: &TestDatabase,
    addr: SocketAddr,
    clock: Arc<dyn WallClock>,
    configure: impl FnOnce(&mut StoreConfig),
) -> Running {
    let mut config = StoreConfig::new(db.data_dir.clone());
    config.store_addr = addr;
    config.database_url = db.url.clone();
    config.storage.storage_reserve =
        store_svc::storage::Reserve::Bytes(edge_testkit::TEST_STORAGE_RESERVE_BYTES);
    configure(&mut config);
    let app = StoreApp::build(&config, &runtime_args(), clock)
        .await
        .expect("store-svc starts");
    let addr = app.local_addr();
    let stop = Shutdown::new();
    let task = tokio::spawn(app.run(stop.clone()));
    Running { addr, stop, task }
}

pub async fn start_ingest(store_addr: SocketAddr) -> Running {
    let mut config = IngestConfig::new(format!("http://{store_addr}"));
    config.ingest_addr = "127.0.0.1:0".parse().expect("address");
    config.client.connect_timeout = Duration::from_millis(500);
    config.client.request_timeout = Duration::from_secs(5);
    let app = IngestApp::build(&config, &runtime_args())
        .await
        .expect("ingest-svc starts");
    let addr = app.local_addr();
    let stop = Shutdown::new();
    let task = tokio::spawn(app.run(stop.clone()));
    Running { addr, stop, task }
}

/// A channel to an in-process service at `addr`, as the test operator.
pub async fn channel(addr: SocketAddr) -> AuthedChannel {
    edge_testkit::connect(&format!("http://{addr}")).await
}

/// store-svc and ingest-svc wired together.
pub struct Mesh {
    pub store: Running,
    pub ingest: Running,
    pub ingest_client: IngestServiceClient<AuthedChannel>,
    pub store_client: StoreClients,
}

impl Mesh {
    pub async fn start(db: &TestDatabase) -> Mesh {
        Mesh::start_with(db, |_| {}).await
    }

    /// The mesh with `configure`'s changes to store-svc's defaults.
    pub async fn start_with(db: &TestDatabase, configure: impl FnOnce(&mut StoreConfig)) -> Mesh {
        Mesh::start_clocked(db, Arc::new(SystemClock), configure).await
    }

    /// The mesh with store-svc reading `clock`.
    pub async fn start_clocked(
        db: &TestDatabase,
        clock: Arc<dyn WallClock>,
        configure: impl FnOnce(&mut StoreConfig),
    ) -> Mesh {
        let address = "127.0.0.1:0".parse().expect("address");
        let store = start_store_clocked(db, address, clock, configure).await;
        let ingest = start_ingest(store.addr).await;
        let ingest_client = IngestServiceClient::new(channel(ingest.addr).await);
        let store_client = StoreClients::connect(format!("http://{}", store.addr)).await;
        Mesh {
            store,
            ingest,
            ingest_client,
            store_client,
        }
    }

    pub async fn stop(self) {
        self.ingest.stop().await;
        self.store.stop().await;
    }

    /// Every stored reading, through store-svc's paginated query.
    pub async fn all_readings(&mut self) -> Vec<pb::StoredReading> {
        query_all(&mut self.store_client).await
    }
}

/// Every reading the store holds.
pub async fn query_all(client: &mut StoreClients) -> Vec<pb::StoredReading> {
    let request = pb::QueryReadingsRequest {
        page_size: 1000,
        ..Default::default()
    };
    edge_testkit::query_all(client, request).await
}

/// A valid gateway reading with a fresh UUIDv7.
pub fn reading(sensor: &str, temperature: f64) -> pb::Reading {
    pb::Reading {
        id: uuid::Uuid::now_v7().to_string(),
        sensor_id: sensor.into(),
        temperature_celsius: Some(temperature),
        humidity_percent: Some(45.0),
        measured_at: Some(Timestamp::from(SystemTime::now())),
        priority: pb::Priority::Normal as i32,
    }
}
