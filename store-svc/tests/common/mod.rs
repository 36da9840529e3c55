//! What the store-svc integration tests share: a settable clock, a store-svc
//! on port 0 over a test database, and small request builders.
#![allow(dead_code)]

use edge_runtime::Service as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use edge_proto::internal::v1 as ipb;
use edge_proto::v1 as pb;
use edge_runtime::{RuntimeArgs, Shutdown};
use edge_testkit::StoreClients;
use edge_testkit::TestDatabase;
use prost_types::Timestamp;
use store_svc::app::StartError;
use store_svc::hlc::WallClock;
use store_svc::{StoreApp, StoreConfig};
use tokio::task::JoinHandle;

/// A wall clock the test sets (microseconds since the epoch).
pub struct TestClock(AtomicI64);

impl TestClock {
    pub fn at(us: i64) -> Arc<TestClock> {
        Arc::new(TestClock(AtomicI64::new(us)))
    }
    pub fn set(&self, us: i64) {
        self.0.store(us, Ordering::SeqCst);
    }
}

impl WallClock for TestClock {
    fn now_us(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// 2026-11-23T00:00:00Z.
pub const T0_US: i64 = 1_795_392_000_000_000;

/// A running store-svc on port 0.
pub struct RunningStore {
    pub client: StoreClients,
    pub addr: std::net::SocketAddr,
    pub stop: Shutdown,
    pub task: JoinHandle<Result<(), edge_runtime::ServeError>>,
}

impl RunningStore {
    pub async fn start(
        db: &TestDatabase,
        clock: Arc<dyn WallClock>,
        site_id: Option<&str>,
    ) -> Result<Self, StartError> {
        Self::start_with(db, clock, |config| {
            config.site_id = site_id.map(str::to_owned);
        })
        .await
    }

    /// Starts with the test's database and `configure`'s changes.
    pub async fn start_with(
        db: &TestDatabase,
        clock: Arc<dyn WallClock>,
        configure: impl FnOnce(&mut StoreConfig),
    ) -> Result<Self, StartError> {
        let mut config = StoreConfig::new(db.data_dir.clone());
        config.store_addr = "127.0.0.1:0".parse().expect("address");
        config.database_url = db.url.clone();
        config.storage.storage_reserve =
            store_svc::storage::Reserve::Bytes(edge_testkit::TEST_STORAGE_RESERVE_BYTES);
        configure(&mut config);
        // The data directory may be another than the fixture's (a small
        // tmpfs): the test's operator token goes where store-svc looks.
        edge_testkit::security()
            .seed_operator_token(&config.data_dir)
            .expect("operator token");
        let runtime = RuntimeArgs {
            shutdown_grace: Duration::from_secs(5),
            ..edge_testkit::runtime_args()
        };
        let app = StoreApp::build(&config, &runtime, clock).await?;
        let addr = app.local_addr();
        let stop = Shutdown::new();
        let task = tokio::spawn(app.run(stop.clone()));
        let client = StoreClients::connect(format!("http://{addr}")).await;
        Ok(RunningStore {
            client,
            addr,
            stop,
            task,
        })
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("store task").expect("store served");
    }
}

pub fn ts(us: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1000) as i32,
    })
}

pub fn reading(n: u32, sensor: &str, measured_at_us: i64) -> ipb::NewReading {
    ipb::NewReading {
        id: format!("01900000-0000-7000-8000-{n:012}"),
        sensor_id: sensor.into(),
        temperature_celsius: 20.0 + f64::from(n % 10),
        humidity_percent: 50.0,
        measured_at: ts(measured_at_us),
        received_at: ts(measured_at_us + 1_000),
        priority: pb::Priority::Normal as i32,
        written_by: String::new(),
    }
}

pub async fn append(
    client: &mut StoreClients,
    readings: Vec<ipb::NewReading>,
) -> Vec<ipb::AppendResult> {
    client
        .ingest
        .append(ipb::AppendRequest { readings })
        .await
        .expect("append")
        .into_inner()
        .results
}

pub async fn stats(client: &mut StoreClients) -> pb::GetStatsResponse {
    client
        .readings
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner()
}

/// The site's SQLite database file in `db`'s data directory.
pub fn sqlite_file(db: &TestDatabase) -> std::path::PathBuf {
    db.data_dir.join("edge.db")
}

/// Runs `body` with a pool of `db`'s backend, then closes the pool.
#[macro_export]
macro_rules! with_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match &$db.url {
            Some(url) => {
                let $pool = sqlx::PgPool::connect(url).await.expect("postgres");
                let result = $body;
                $pool.close().await;
                result
            }
            None => {
                let $pool = sqlx::SqlitePool::connect_with(
                    sqlx::sqlite::SqliteConnectOptions::new()
                        .filename($crate::common::sqlite_file($db)),
                )
                .await
                .expect("sqlite");
                let result = $body;
                $pool.close().await;
                result
            }
        }
    };
}

/// Waits until fewer than `batch` readings lie above the by-sensor index's
/// high mark, read from the database itself.
pub async fn sensor_index_caught_up(db: &TestDatabase, batch: i64) {
    let sql = "SELECT next_seq - 1 - sensor_indexed_seq FROM site_state WHERE singleton = 1";
    edge_testkit::eventually(
        std::time::Duration::from_secs(30),
        "the sensor index to catch up",
        || async {
            let lag: i64 = with_pool!(db, |pool| sqlx::query_scalar(sql)
                .fetch_one(&pool)
                .await
                .expect("lag"));
            (lag < batch).then_some(())
        },
    )
    .await;
}
