//! The harness every test shares: a real cloud on ephemeral ports over a
//! fresh database, a real HTTP client, and builders of contract bodies.

#![allow(dead_code)] // each test binary uses its own part of the harness

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use edge_cloud::{AdminClient, CloudApp, CloudArgs, CloudError};
use edge_cloud_link::contract::{
    Coverage, ErrorBody, Hlc, IDEMPOTENCY_KEY_HEADER, Priority, PushBatch, PushResponse,
    VersionRecord, VersionStamp, batches_path,
};
use edge_cloud_link::{ClientConfig, CloudClient};
use edge_testkit::TestDatabase;
use edge_versioning::{Policy, SystemClock, WallClock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The secret every test site's token derives from ([`token`]).
pub const TOKEN: &str = "test-token-3f9a";

/// The sites the tests push as: a test cloud registers each one's token at
/// start (`--site-token`).
pub const SITES: &[&str] = &[
    "ship-1", "ship-2", "ship-3", "ship-9", "ship-a", "ship-b", "mine-2", "mine-7", "camp-3",
    "camp-5", "other",
];

/// The token of test site `site` (registered for every site of [`SITES`]).
pub fn token(site: &str) -> String {
    edge_testkit::site_token(TOKEN, site)
}

/// A running reference cloud.
pub struct TestCloud {
    /// `http://127.0.0.1:port` of the public API.
    pub url: String,
    /// `http://127.0.0.1:port` of the admin API.
    pub admin_url: String,
    /// Plain HTTP client (keep-alive pool) for the public API.
    pub http: reqwest::Client,
    /// Admin API client, with the admin token.
    pub admin: AdminClient,
    /// Where the cloud keeps its admin token.
    pub admin_token_file: std::path::PathBuf,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), CloudError>>,
}

/// An HTTP client that talks to loopback directly.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("HTTP client")
}

impl TestCloud {
    /// Starts a cloud on `db` (SQLite in its data dir, or its PostgreSQL URL).
    pub async fn start(db: &TestDatabase) -> TestCloud {
        Self::start_with(Self::args(db)).await
    }

    /// The arguments of a test cloud on `db`; reopening with the same ones
    /// is a restart over the same database.
    pub fn args(db: &TestDatabase) -> CloudArgs {
        Self::args_in(db.data_dir.join("cloud"), db.url.clone())
    }

    /// The arguments of a test cloud with its data in `data_dir`, on the
    /// database `url` names (SQLite in `data_dir` if `None`), with the
    /// tokens of [`SITES`].
    pub fn args_in(data_dir: std::path::PathBuf, url: Option<String>) -> CloudArgs {
        SITES
            .iter()
            .fold(CloudArgs::for_test(data_dir, url), |args, site| {
                args.with_site_token(site, &token(site))
            })
    }

    /// Starts a cloud on `db` that resolves conflicts under `policy`.
    pub async fn start_with_policy(db: &TestDatabase, policy: Policy) -> TestCloud {
        let mut args = Self::args(db);
        args.conflict_policy = policy;
        Self::start_with(args).await
    }

    /// Starts a cloud with `args`.
    pub async fn start_with(args: CloudArgs) -> TestCloud {
        Self::start_with_clock(args, Arc::new(SystemClock)).await
    }

    /// Starts a cloud with `args` whose wall clock is `clock`.
    pub async fn start_with_clock(args: CloudArgs, clock: Arc<dyn WallClock>) -> TestCloud {
        let app = CloudApp::build_with_clock(&args, clock)
            .await
            .expect("the cloud builds");
        let url = format!("http://{}", app.local_addr());
        let admin_url = format!("http://{}", app.admin_addr());
        let admin_token_file = app.admin_token_file().to_owned();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run(shutdown.clone()));
        TestCloud {
            url,
            admin: AdminClient::from_token_file(admin_url.clone(), &admin_token_file)
                .expect("admin client"),
            admin_token_file,
            admin_url,
            http: http_client(Duration::from_secs(30)),
            shutdown,
            task,
        }
    }

    /// Stops the cloud and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("the cloud task joins")
            .expect("the cloud stops cleanly");
    }

    /// A site's client of this cloud (the real one sync-svc uses), with the
    /// first test site's token: enough for the routes of no one site
    /// (readings, amendments).
    pub fn client(&self) -> CloudClient {
        self.client_for(SITES[0])
    }

    /// `site`'s client of this cloud (the real one sync-svc uses).
    pub fn client_for(&self, site: &str) -> CloudClient {
        CloudClient::new(ClientConfig {
            base_url: self.url.clone(),
            token: Some(token(site)),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            gzip: true,
            max_response_bytes: 64 * 1024 * 1024,
            trust: None,
        })
        .expect("the cloud client builds")
    }

    /// The admin token, for requests made by hand.
    pub fn admin_token(&self) -> String {
        edge_credentials::read_secret_file(&self.admin_token_file).expect("the admin token")
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Posts `batch` for `site` under `key`, authorised.
    pub async fn push(&self, site: &str, key: &str, batch: &PushBatch) -> reqwest::Response {
        self.http
            .post(self.at(&batches_path(site)))
            .bearer_auth(token(site))
            .header(IDEMPOTENCY_KEY_HEADER, key)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(batch).expect("serialise"))
            .send()
            .await
            .expect("the push gets an answer")
    }

    /// Posts `batch` and expects `200` with one result per version.
    /// `site`'s coverage, asked for as the site does.
    pub async fn coverage(&self, site: &str) -> Coverage {
        self.admin
            .coverage(&self.url, site, &token(site))
            .await
            .expect("coverage")
    }

    pub async fn push_ok(&self, site: &str, key: &str, batch: &PushBatch) -> PushResponse {
        let response = self.push(site, key, batch).await;
        assert_eq!(
            response.status(),
            200,
            "push answered {:?}",
            response.text().await
        );
        let answer: PushResponse = json(response).await;
        assert_eq!(answer.results.len(), batch.versions.len());
        answer
    }
}

/// A valid version of a new reading of `site` with `seq`.
pub fn version(site: &str, seq: u64) -> VersionRecord {
    VersionRecord {
        reading_id: uuid::Uuid::new_v4().to_string(),
        seq,
        origin_site_id: site.into(),
        sensor_id: format!("sensor-{}", seq % 7),
        temperature_celsius: 20.0 + (seq % 10) as f64,
        humidity_percent: 45.0,
        measured_at_us: 1_780_000_000_000_000 + seq as i64,
        received_at_us: 1_780_000_000_000_100 + seq as i64,
        priority: Priority::Normal,
        clock_suspect: false,
        version: VersionStamp {
            hlc: Hlc {
                physical_ms: 1_780_000_000_000 + seq,
                logical: 0,
            },
            site_id: site.into(),
        },
        quality: Default::default(),
        note: None,
        base: None,
        written_by: Some(format!("gateway-{}", seq % 3)),
    }
}

/// A version `site` wrote on top of `base` (of any site's reading), stamped
/// `physical_ms`, with `temperature`.
pub fn amendment_of(
    base: &VersionRecord,
    site: &str,
    physical_ms: u64,
    temperature: f64,
) -> VersionRecord {
    VersionRecord {
        temperature_celsius: temperature,
        version: VersionStamp {
            hlc: Hlc {
                physical_ms,
                logical: 0,
            },
            site_id: site.into(),
        },
        base: Some(base.version.clone()),
        written_by: Some("operator".into()),
        ..base.clone()
    }
}

/// A batch of new readings of `site` with seqs `seqs`.
pub fn batch(site: &str, seqs: impl IntoIterator<Item = u64>) -> PushBatch {
    PushBatch {
        versions: seqs.into_iter().map(|seq| version(site, seq)).collect(),
    }
}

/// Gzips `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip in memory");
    encoder.finish().expect("gzip in memory")
}

/// Reads an error answer's body, checking it is the contract's JSON.
pub async fn error_body(response: reqwest::Response) -> ErrorBody {
    let text = response.text().await.expect("a body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not an ErrorBody ({e}): {text}"))
}

/// Reads a JSON answer.
pub async fn json<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> T {
    let text = response.text().await.expect("a body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("unexpected body ({e}): {text}"))
}
