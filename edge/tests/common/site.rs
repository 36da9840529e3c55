//! A whole site in the test process: store-svc and ingest-svc (the
//! [`Mesh`]) plus sync-svc pointed at a cloud, with settings that make the
//! link react in milliseconds. sync-svc can be stopped and started again
//! while the mesh runs: a site that loses and regains its link.

use edge_runtime::Service as _;
use std::sync::Arc;
use std::time::Duration;

use edge_cloud_link::{CloudLinkArgs, ProbeConfig};
use edge_proto::v1 as pb;
use edge_proto::v1::sync_service_client::SyncServiceClient;
use edge_runtime::client::ClientArgs;
use edge_testkit::StoreClients;
use edge_testkit::TestDatabase;
use store_svc::StoreConfig;
use store_svc::hlc::{SystemClock, WallClock};
use sync_svc::{SyncApp, SyncConfig};

use super::{Mesh, Running, channel, runtime_args};

/// The secret the test sites' tokens derive from: a test cloud registers
/// each test site's own token ([`token_of`]).
pub const TOKEN: &str = "test-token";

/// The token site `site_id` presents to a test cloud started with [`TOKEN`].
pub fn token_of(site_id: &str) -> String {
    edge_testkit::site_token(TOKEN, site_id)
}

/// Settings that make a test's link react in milliseconds, not seconds.
pub fn quick_sync(cloud_url: &str) -> SyncConfig {
    SyncConfig {
        sync_addr: "127.0.0.1:0".parse().expect("address"),
        link: CloudLinkArgs {
            cloud_url: Some(cloud_url.to_owned()),
            // A site is TEST_SITE_ID unless its test names another (then
            // the test sets that site's token).
            cloud_token: Some(token_of(edge_testkit::TEST_SITE_ID)),
            probe: ProbeConfig {
                interval: Duration::from_millis(100),
                timeout: Duration::from_millis(500),
                failures_to_offline: 2,
                successes_to_online: 1,
                ..ProbeConfig::default()
            },
            ..CloudLinkArgs::new()
        },
        push_timeout: Duration::from_secs(3),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        lease_duration: Duration::from_secs(5),
        idle_poll: Duration::from_millis(50),
        stats_interval: Duration::from_millis(200),
        pull_interval: Duration::from_millis(100),
        ..SyncConfig::new()
    }
}

/// The mesh plus sync-svc, in this process.
pub struct Site {
    pub mesh: Mesh,
    sync: Option<Running>,
    pub sync_client: SyncServiceClient<edge_runtime::client::AuthedChannel>,
    pub site_id: String,
}

impl Site {
    pub async fn start(db: &TestDatabase, config: SyncConfig) -> Site {
        Site::start_with(db, config, |_| {}).await
    }

    /// A site whose store-svc has `configure`'s changes.
    pub async fn start_with(
        db: &TestDatabase,
        config: SyncConfig,
        configure: impl FnOnce(&mut StoreConfig),
    ) -> Site {
        Site::start_clocked(db, config, Arc::new(SystemClock), configure).await
    }

    /// A site whose store-svc reads `clock` (a skewed wall clock) and has
    /// `configure`'s changes.
    pub async fn start_clocked(
        db: &TestDatabase,
        config: SyncConfig,
        clock: Arc<dyn WallClock>,
        configure: impl FnOnce(&mut StoreConfig),
    ) -> Site {
        let mut mesh = Mesh::start_clocked(db, clock, |store| {
            // The id the test cloud knows a token for, unless the test names one.
            store
                .site_id
                .get_or_insert_with(|| edge_testkit::TEST_SITE_ID.to_owned());
            configure(store)
        })
        .await;
        let site_id = mesh
            .store_client
            .readings
            .get_stats(pb::GetStatsRequest {})
            .await
            .expect("stats")
            .into_inner()
            .site_id;
        let (sync, sync_client) = start_sync(&mesh, &config).await;
        Site {
            mesh,
            sync: Some(sync),
            sync_client,
            site_id,
        }
    }

    /// Stops sync-svc: the site works on without a link.
    pub async fn disconnect(&mut self) {
        if let Some(sync) = self.sync.take() {
            sync.stop().await;
        }
    }

    /// Starts sync-svc again with `config`.
    pub async fn reconnect(&mut self, config: &SyncConfig) {
        self.disconnect().await;
        let (sync, client) = start_sync(&self.mesh, config).await;
        self.sync = Some(sync);
        self.sync_client = client;
    }

    pub async fn stats(&self) -> pb::GetStatsResponse {
        stats(&self.mesh.store_client).await
    }

    pub async fn status(&self) -> pb::SyncStatus {
        self.sync_client
            .clone()
            .get_status(pb::GetStatusRequest {})
            .await
            .expect("status")
            .into_inner()
            .status
            .unwrap_or_default()
    }

    pub async fn stop(mut self) {
        self.disconnect().await;
        self.mesh.stop().await;
    }
}

/// sync-svc for `mesh`'s store, running.
async fn start_sync(
    mesh: &Mesh,
    config: &SyncConfig,
) -> (
    Running,
    SyncServiceClient<edge_runtime::client::AuthedChannel>,
) {
    let store_url = format!("http://{}", mesh.store.addr);
    let app = SyncApp::build(config, &store_url, &runtime_args(), &ClientArgs::default())
        .await
        .expect("sync-svc starts");
    let addr = app.local_addr();
    let sync = Running::spawn(addr, |stop| tokio::spawn(app.run(stop)));
    let client = SyncServiceClient::new(channel(addr).await);
    (sync, client)
}

pub async fn stats(store: &StoreClients) -> pb::GetStatsResponse {
    store
        .clone()
        .readings
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner()
}
