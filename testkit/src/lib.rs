//! Fixtures for tests and benchmarks: a fresh database per test on either
//! backend, waiting on a condition with a deadline instead of sleeping, and
//! store-svc's clients ([`StoreClients`]) with reading everything a store
//! query matches.
//!
//! PostgreSQL comes from `EDGE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Each [`TestDatabase`] creates
//! its own database on that server, so tests never share state. When the
//! server cannot be reached, PostgreSQL tests are skipped with a message,
//! unless `EDGE_REQUIRE_POSTGRES=1` (CI sets it), which turns that into a
//! failure.
//!
//! Tests that stop, restart or fill PostgreSQL get a server of their own
//! ([`PostgresServer`]); tests of a full disk mount a small [`Tmpfs`].
//!
//! A real Prometheus (the `prometheus` binary on `PATH`, Debian package
//! `prometheus`) can be started to scrape a test's processes, and queried
//! through its HTTP API. When the binary is missing, those tests are skipped
//! with a message, unless `EDGE_REQUIRE_PROMETHEUS=1` (CI sets it).

pub mod cloud;
pub mod postgres_server;
pub mod security;
pub mod store;
pub mod tmpfs;
pub use cloud::{InProcessCloud, InProcessCloudBuilder, TEST_SITE_ID, TEST_SITE_IDS, site_token};
pub use postgres_server::{PostgresServer, StopMode};
pub use security::{
    TestSecurity, connect, connect_endpoint, connect_with, operator_endpoint, runtime_args,
    security,
};
pub use store::{StoreClients, query_all};
pub use tmpfs::Tmpfs;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// Default PostgreSQL server for tests.
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database that could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The PostgreSQL server is not reachable.
    #[error("PostgreSQL at {url} is not reachable: {source}")]
    Unreachable {
        /// The server URL.
        url: String,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },
    /// Creating or dropping the database failed.
    #[error("PostgreSQL fixture failed: {0}")]
    Sql(#[from] sqlx::Error),
    /// The temporary directory could not be created, or a process not started.
    #[error("fixture I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// `edge up` did not become ready.
    #[error("edge up did not become ready: {0}")]
    NotReady(String),
    /// Prometheus did not start, or its HTTP API answered something unexpected.
    #[error("Prometheus: {0}")]
    Prometheus(String),
}

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in a temporary directory.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

/// A fresh, empty database for one test. SQLite files live in `data_dir`;
/// for PostgreSQL, `url` names a database created for this test.
pub struct TestDatabase {
    /// The data directory (always present: services may keep files there).
    pub data_dir: PathBuf,
    /// `Some(postgres://…)` for PostgreSQL; `None` for SQLite in `data_dir`.
    pub url: Option<String>,
    _dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}

/// The PostgreSQL server URL for tests.
pub fn postgres_server_url() -> String {
    std::env::var("EDGE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.into())
}

/// Whether a missing PostgreSQL server must fail the run.
pub fn postgres_required() -> bool {
    required("EDGE_REQUIRE_POSTGRES")
}

/// Whether a missing `prometheus` binary must fail the run.
pub fn prometheus_required() -> bool {
    required("EDGE_REQUIRE_PROMETHEUS")
}

/// Whether the environment variable `var` says a dependency is required.
fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1" || v == "true")
}

/// Creates a fresh database named `{prefix}_{random}` on `server_url` and
/// returns its URL and name.
pub async fn create_postgres_database(
    server_url: &str,
    prefix: &str,
) -> Result<(String, String), FixtureError> {
    let mut admin =
        PgConnection::connect(server_url)
            .await
            .map_err(|source| FixtureError::Unreachable {
                url: server_url.to_owned(),
                source,
            })?;
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok((with_database(server_url, &name), name))
}

/// Drops a database made by [`create_postgres_database`].
pub async fn drop_postgres_database(server_url: &str, name: &str) -> Result<(), FixtureError> {
    let mut admin = PgConnection::connect(server_url).await?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

impl TestDatabase {
    /// A fresh database on `backend`. Returns `None` (and says why on stderr)
    /// when PostgreSQL is not reachable and not required.
    ///
    /// # Panics
    /// When PostgreSQL is required (`EDGE_REQUIRE_POSTGRES=1`) but unreachable,
    /// or a fixture cannot be created at all: the test cannot run.
    pub async fn new(backend: Backend) -> Option<TestDatabase> {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(err) => panic!("cannot create a temporary directory: {err}"),
        };
        let data_dir = dir.path().to_path_buf();
        if let Err(err) = security().seed_operator_token(&data_dir) {
            panic!("cannot write the test operator token: {err}");
        }
        match backend {
            Backend::Sqlite => Some(TestDatabase {
                data_dir,
                url: None,
                _dir: dir,
                postgres: None,
            }),
            Backend::Postgres => {
                let server = postgres_server_url();
                match create_postgres_database(&server, "edge_test").await {
                    Ok((url, name)) => Some(TestDatabase {
                        data_dir,
                        url: Some(url),
                        _dir: dir,
                        postgres: Some((server, name)),
                    }),
                    Err(err @ FixtureError::Unreachable { .. }) if !postgres_required() => {
                        eprintln!(
                            "SKIPPED (PostgreSQL backend): {err}; set EDGE_REQUIRE_POSTGRES=1 to fail instead"
                        );
                        None
                    }
                    Err(err) => panic!("{err}"),
                }
            }
        }
    }

    /// Drops the PostgreSQL database (SQLite files go with the temp dir).
    pub async fn cleanup(self) {
        if let Some((server, name)) = &self.postgres
            && let Err(err) = drop_postgres_database(server, name).await
        {
            eprintln!("could not drop test database {name}: {err}");
        }
    }
}

/// Polls `check` until it returns `Some`, or fails after `timeout`. For
/// conditions that become true asynchronously; never a fixed sleep.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Declares `$name::sqlite` and `$name::postgres` tests that run
/// `async fn $name(db: &TestDatabase)` on a fresh database of each backend.
/// The PostgreSQL one is skipped, with a message, when the server is absent
/// and not required.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let db = $crate::TestDatabase::new($crate::Backend::Sqlite)
                    .await
                    .expect("SQLite fixture");
                super::$name(&db).await;
                db.cleanup().await;
            }

            #[tokio::test]
            async fn postgres() {
                let Some(db) = $crate::TestDatabase::new($crate::Backend::Postgres).await else {
                    return;
                };
                super::$name(&db).await;
                db.cleanup().await;
            }
        }
    };
}

/// An `edge up` child process on ephemeral ports. Killed when dropped.
pub struct EdgeUp {
    /// The child process.
    pub child: tokio::process::Child,
    /// `http://…` of ingest-svc.
    pub ingest_url: String,
    /// `http://…` of store-svc.
    pub store_url: String,
    /// `http://…` of sync-svc.
    pub sync_url: String,
    /// `http://…` of health-svc.
    pub health_url: String,
    /// `host:port` of the Prometheus endpoint.
    pub metrics_addr: String,
    /// What an operator of this site presents: TLS trusting the CA `edge
    /// up` made (or plaintext) and the operator's token it wrote.
    pub credentials: edge_runtime::client::Credentials,
    /// What the site's services present to each other (the test mesh
    /// token, given with --mesh-token-file), to play one of them.
    pub mesh_credentials: edge_runtime::client::Credentials,
}

impl EdgeUp {
    /// A connected channel to `url` (one of this site's) as its operator.
    pub async fn channel(&self, url: &str) -> edge_runtime::client::AuthedChannel {
        connect_with(url, &self.credentials).await
    }
}

/// The operator's credentials of the site whose ready file is `ready`.
fn site_credentials(
    ready: &serde_json::Value,
) -> Result<edge_runtime::client::Credentials, FixtureError> {
    let token_file = ready["operator_token_file"]
        .as_str()
        .ok_or_else(|| FixtureError::NotReady("the ready file lacks operator_token_file".into()))?;
    let token = edge_credentials::read_secret_file(Path::new(token_file))
        .map_err(|err| FixtureError::NotReady(err.to_string()))?;
    let tls = match ready["ca"].as_str() {
        Some(ca) => Some(
            edge_runtime::tls::client::grpc_client_tls(Some(Path::new(ca)), "ca")
                .map_err(|err| FixtureError::NotReady(err.to_string()))?,
        ),
        None if ready["tls"].as_bool() == Some(false) => None,
        // TLS with a configured certificate: the test process's CA.
        None => security().operator().tls,
    };
    Ok(edge_runtime::client::Credentials {
        tls,
        token: Some(token),
    })
}

/// Starts `exe up` (the `edge` binary) on `data_dir` and, if given, the
/// PostgreSQL database at `database_url`, with every port bound to 0, and
/// waits (at most a minute) for it to write its ready file.
pub async fn spawn_edge_up(
    exe: &Path,
    data_dir: &Path,
    database_url: Option<&str>,
) -> Result<EdgeUp, FixtureError> {
    spawn_edge_up_with(exe, data_dir, database_url, &[]).await
}

/// [`spawn_edge_up`] with extra command-line arguments (e.g. the cloud URL).
pub async fn spawn_edge_up_with(
    exe: &Path,
    data_dir: &Path,
    database_url: Option<&str>,
    extra_args: &[String],
) -> Result<EdgeUp, FixtureError> {
    spawn_edge_up_with_env(exe, data_dir, database_url, extra_args, &[]).await
}

/// [`spawn_edge_up_with`] with extra environment variables (e.g. the
/// `OTEL_*` ones).
pub async fn spawn_edge_up_with_env(
    exe: &Path,
    data_dir: &Path,
    database_url: Option<&str>,
    extra_args: &[String],
    env: &[(&str, &str)],
) -> Result<EdgeUp, FixtureError> {
    std::fs::create_dir_all(data_dir)?;
    let ready = data_dir.join("ready.json");
    let _ = std::fs::remove_file(&ready);
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("up")
        .args([
            "--ingest-addr",
            "127.0.0.1:0",
            "--store-addr",
            "127.0.0.1:0",
            "--sync-addr",
            "127.0.0.1:0",
            "--health-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--ready-file")
        .arg(&ready)
        .arg("--mesh-token-file")
        .arg(&security().mesh_token_file)
        .env("EDGE_LOG", "warn,sqlx::query=error")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(url) = database_url {
        cmd.arg("--database-url").arg(url);
    }
    cmd.args(extra_args);
    cmd.env("EDGE_STORAGE_RESERVE", TEST_STORAGE_RESERVE);
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn()?;
    let addrs = wait_for_ready_file(&mut child, &ready).await?;
    let credentials = site_credentials(&addrs)?;
    let url = |key: &str| {
        addrs[key]
            .as_str()
            .map(|addr| format!("http://{addr}"))
            .ok_or_else(|| FixtureError::NotReady(format!("the ready file lacks {key:?}")))
    };
    Ok(EdgeUp {
        ingest_url: url("ingest")?,
        store_url: url("store")?,
        sync_url: url("sync")?,
        health_url: url("health")?,
        metrics_addr: addrs["metrics"].as_str().unwrap_or_default().to_owned(),
        mesh_credentials: edge_runtime::client::Credentials {
            tls: credentials.tls.clone(),
            token: Some(security().mesh_token.clone()),
        },
        credentials,
        child,
    })
}

/// An `edge cloud` child process. Killed when dropped.
pub struct EdgeCloud {
    /// The child process.
    pub child: tokio::process::Child,
    /// `http://…` of the public API.
    pub url: String,
    /// `http://…` of the admin API.
    pub admin_url: String,
    /// The admin API's token, read from the file the ready file names.
    pub admin_token: String,
}

impl EdgeCloud {
    /// A client of its admin API, with its admin token.
    pub fn admin(&self) -> Result<edge_cloud::AdminClient, edge_cloud::AdminClientError> {
        edge_cloud::AdminClient::new(self.admin_url.clone(), &self.admin_token)
    }
}

/// Starts `exe cloud` with SQLite in `dir`, the public API on `listen`
/// (`127.0.0.1:0` for any port), the admin API on any port, and the tokens
/// of [`TEST_SITE_IDS`] derived from `token` ([`site_token`]); waits (at
/// most a minute) for its ready file.
pub async fn spawn_edge_cloud(
    exe: &Path,
    dir: &Path,
    listen: &str,
    token: &str,
) -> Result<EdgeCloud, FixtureError> {
    std::fs::create_dir_all(dir)?;
    let ready = dir.join("cloud-ready.json");
    let _ = std::fs::remove_file(&ready);
    let mut child = tokio::process::Command::new(exe)
        .args(["cloud", "--listen", listen, "--admin-listen", "127.0.0.1:0"])
        .arg("--cloud-data-dir")
        .arg(dir)
        .arg("--ready-file")
        .arg(&ready)
        .env(
            "EDGE_CLOUD_SITE_TOKENS",
            TEST_SITE_IDS
                .iter()
                .map(|site| format!("{site}={}", site_token(token, site)))
                .collect::<Vec<_>>()
                .join(","),
        )
        .env("EDGE_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let addrs = wait_for_ready_file(&mut child, &ready).await?;
    let url = |key: &str| {
        addrs[key]
            .as_str()
            .map(|addr| format!("http://{addr}"))
            .ok_or_else(|| FixtureError::NotReady(format!("the ready file lacks {key:?}")))
    };
    let token_file = addrs["admin_token_file"].as_str().ok_or_else(|| {
        FixtureError::NotReady("the ready file lacks \"admin_token_file\"".into())
    })?;
    let admin_token = edge_credentials::read_secret_file(Path::new(token_file))
        .map_err(|e| FixtureError::NotReady(format!("cannot read the admin token: {e}")))?;
    Ok(EdgeCloud {
        url: url("listen")?,
        admin_url: url("admin")?,
        admin_token,
        child,
    })
}

/// Waits (at most a minute) for a child's ready file, failing early if the
/// child exits.
async fn wait_for_ready_file(
    child: &mut tokio::process::Child,
    ready: &Path,
) -> Result<serde_json::Value, FixtureError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(addrs) = std::fs::read_to_string(ready)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
        {
            return Ok(addrs);
        }
        if let Some(status) = child.try_wait()? {
            return Err(FixtureError::NotReady(format!("it exited with {status}")));
        }
        if Instant::now() > deadline {
            return Err(FixtureError::NotReady("no ready file within 60 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Free disk a site under test leaves alone: small, so a test does not
/// depend on how full the machine's disk is (the default reserve is 10 % of
/// the file system). Tests of the reserve set their own.
pub const TEST_STORAGE_RESERVE: &str = "64MiB";
/// [`TEST_STORAGE_RESERVE`] in bytes.
pub const TEST_STORAGE_RESERVE_BYTES: u64 = 64 << 20;

/// The text of `GET /metrics` at `addr` (`host:port`), over plain HTTP/1.0.
pub async fn scrape(addr: &str) -> Result<String, FixtureError> {
    Ok(http_get(addr, "/metrics").await?.1)
}

/// `GET path` at `addr` (`host:port`) over plain HTTP/1.0 (the server closes
/// the connection after the reply): the status code and the body.
pub async fn http_get(addr: &str, path: &str) -> Result<(u16, String), FixtureError> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// The value of the first sample of `metric` (name and labels as written,
/// e.g. `cloud_reachable{probe="sync"}`) in a scrape.
pub fn sample(scrape: &str, metric: &str) -> Option<f64> {
    scrape
        .lines()
        .find(|line| line.starts_with(metric) && line[metric.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// The `prometheus` binary on `PATH`. `None`, with the reason on stderr, when
/// it is missing and not required.
///
/// # Panics
/// When it is missing and `EDGE_REQUIRE_PROMETHEUS=1`: the test cannot run.
pub fn prometheus_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("prometheus"))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(exe) => Some(exe),
        None if prometheus_required() => {
            panic!("no prometheus binary on PATH, and EDGE_REQUIRE_PROMETHEUS=1")
        }
        None => {
            eprintln!(
                "SKIPPED (Prometheus): no prometheus binary on PATH (Debian package `prometheus`); \
                 set EDGE_REQUIRE_PROMETHEUS=1 to fail instead"
            );
            None
        }
    }
}

/// A Prometheus server child process with its own configuration and storage
/// in a temporary directory. Killed when dropped.
pub struct Prometheus {
    /// The child process.
    pub child: tokio::process::Child,
    /// `host:port` of its HTTP API.
    pub addr: String,
    dir: tempfile::TempDir,
}

/// One sample of an instant query's result.
#[derive(Debug, Clone)]
pub struct QuerySample {
    /// The series' labels.
    pub labels: serde_json::Map<String, serde_json::Value>,
    /// Its value (NaN and infinities as Prometheus wrote them).
    pub value: f64,
}

/// Starts `exe` (a `prometheus` binary) scraping `target` (`host:port`, path
/// `/metrics`) as job `job` every `interval`, listening on a free port of
/// 127.0.0.1; waits (at most a minute) until it is ready to serve queries.
pub async fn spawn_prometheus(
    exe: &Path,
    job: &str,
    target: &str,
    interval: Duration,
) -> Result<Prometheus, FixtureError> {
    let dir = tempfile::tempdir()?;
    let seconds = interval.as_secs_f64();
    let config = format!(
        "global:\n  scrape_interval: {seconds}s\n  evaluation_interval: {seconds}s\n\
         scrape_configs:\n  - job_name: {job:?}\n    static_configs:\n      - targets: [{target:?}]\n"
    );
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(&config_file, config)?;
    // The port is free when asked; another process may take it before
    // Prometheus binds it, so a start that fails is retried on a new one.
    let mut last_error = String::new();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let mut child = tokio::process::Command::new(exe)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http_get(&addr, "/-/ready").await {
                return Ok(Prometheus { child, addr, dir });
            }
            if let Some(status) = child.try_wait()? {
                let log =
                    std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
                last_error = format!("it exited with {status}: {log}");
                break;
            }
            if Instant::now() > deadline {
                return Err(FixtureError::Prometheus("not ready within 60 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Err(FixtureError::Prometheus(last_error))
}

impl Prometheus {
    /// The result of the instant query `expr` (`/api/v1/query`), which must
    /// be a vector (possibly empty).
    pub async fn query(&self, expr: &str) -> Result<Vec<QuerySample>, FixtureError> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let (status, body) = http_get(&self.addr, &path).await?;
        let bad =
            |why: &str| FixtureError::Prometheus(format!("{why} for {expr:?}: {status} {body}"));
        let reply: serde_json::Value =
            serde_json::from_str(&body).map_err(|_| bad("a reply that is not JSON"))?;
        if status != 200 || reply["status"] != "success" {
            return Err(bad("an error"));
        }
        if reply["data"]["resultType"] != "vector" {
            return Err(bad("a result that is not a vector"));
        }
        let samples = reply["data"]["result"]
            .as_array()
            .ok_or_else(|| bad("no result"))?;
        samples
            .iter()
            .map(|sample| {
                let labels = sample["metric"].as_object().cloned().unwrap_or_default();
                let value = sample["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad("a sample without a value"))?;
                Ok(QuerySample { labels, value })
            })
            .collect()
    }

    /// The directory holding the configuration, storage and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// `text` with everything but unreserved URL characters percent-encoded, for
/// a query string.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{percent_encode, sample, with_database};

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            percent_encode("rate(x{job=~\".*\"}[5m]) / 2"),
            "rate%28x%7Bjob%3D~%22.%2A%22%7D%5B5m%5D%29%20%2F%202"
        );
    }

    #[test]
    fn samples_are_found_by_name_and_labels() {
        let text = "# HELP x\nsync_success_total 3\ncloud_reachable{probe=\"sync\"} 1\nsync_success_total_other 9\n";
        assert_eq!(sample(text, "sync_success_total"), Some(3.0));
        assert_eq!(sample(text, "cloud_reachable{probe=\"sync\"}"), Some(1.0));
        assert_eq!(sample(text, "missing"), None);
    }

    #[test]
    fn database_names_are_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/test", "x"),
            "postgres://u:p@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://h/test?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
