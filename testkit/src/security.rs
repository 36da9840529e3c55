//! Credentials for tests: the mesh's services in a test process serve real
//! TLS and check real tokens, like a site does.
//!
//! One [`TestSecurity`] per test process: a CA and server certificate for
//! `localhost`/`127.0.0.1`, a mesh token, and an operator token that every
//! [`crate::TestDatabase`] writes into its data directory (where store-svc
//! finds it), so [`connect`] reaches any in-process service. A spawned
//! `edge up` makes its own CA; [`crate::EdgeUp::channel`] trusts it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use edge_runtime::RuntimeArgs;
use edge_runtime::client::{AuthedChannel, ClientArgs, Credentials};
use edge_runtime::tls::site_ca;

/// The test process's PKI and tokens.
pub struct TestSecurity {
    /// The CA certificate every in-process server's certificate chains to.
    pub ca: PathBuf,
    /// The server certificate (`localhost`, `127.0.0.1`, `::1`).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The token the services present to each other.
    pub mesh_token: String,
    /// The file holding it (for a spawned `edge up`'s --mesh-token-file).
    pub mesh_token_file: PathBuf,
    /// The operator's token (every scope a person uses).
    pub operator_token: String,
    dir: PathBuf,
}

/// The test process's security, made on first use.
///
/// # Panics
/// When the certificates cannot be made: no test can run then.
pub fn security() -> &'static TestSecurity {
    static SECURITY: OnceLock<TestSecurity> = OnceLock::new();
    SECURITY.get_or_init(|| {
        let dir = match tempfile::Builder::new().prefix("edge-test-pki").tempdir() {
            Ok(dir) => dir.keep(),
            Err(err) => panic!("cannot create the test PKI directory: {err}"),
        };
        let pki = match site_ca::ensure(&dir, &site_ca::server_names(&[])) {
            Ok(pki) => pki,
            Err(err) => panic!("cannot make the test PKI: {err}"),
        };
        let mesh_token = edge_credentials::generate("edgemesh_");
        let mesh_token_file = dir.join("mesh.token");
        if let Err(err) = edge_credentials::write_secret_file(&mesh_token_file, &mesh_token) {
            panic!("cannot write the test mesh token: {err}");
        }
        TestSecurity {
            ca: pki.ca,
            cert: pki.cert,
            key: pki.key,
            mesh_token,
            mesh_token_file,
            operator_token: edge_credentials::generate("edge_"),
            dir,
        }
    })
}

impl TestSecurity {
    /// `runtime` serving TLS with the test certificate and presenting the
    /// test mesh token.
    pub fn apply(&self, runtime: &mut RuntimeArgs) {
        runtime.security.tls_cert = Some(self.cert.clone());
        runtime.security.tls_key = Some(self.key.clone());
        runtime.security.mesh_ca = Some(self.ca.clone());
        runtime.security.mesh_token = Some(self.mesh_token.clone());
    }

    /// What an operator presents: TLS trusting the test CA, and the
    /// operator's token.
    pub fn operator(&self) -> Credentials {
        self.with_token(Some(&self.operator_token))
    }

    /// What the services present to each other (for a test playing
    /// ingest-svc or sync-svc).
    pub fn mesh(&self) -> Credentials {
        self.with_token(Some(&self.mesh_token))
    }

    /// TLS trusting the test CA, and `token` (none: an anonymous caller).
    pub fn with_token(&self, token: Option<&str>) -> Credentials {
        let tls = match edge_runtime::tls::client::grpc_client_tls(Some(&self.ca), "test CA") {
            Ok(tls) => tls,
            Err(err) => panic!("the test CA does not load: {err}"),
        };
        Credentials {
            tls: Some(tls),
            token: token.map(str::to_owned),
        }
    }

    /// Writes the operator's token where store-svc looks for it in
    /// `data_dir`.
    pub fn seed_operator_token(&self, data_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(data_dir)?;
        edge_credentials::write_secret_file(&data_dir.join("operator.token"), &self.operator_token)
            .map_err(std::io::Error::other)
    }

    /// The environment the `edge` CLI finds an in-process site's trust and
    /// the operator's token in.
    pub fn cli_env(&self) -> [(&'static str, String); 2] {
        [
            ("EDGE_CA", self.ca.display().to_string()),
            ("EDGE_TOKEN", self.operator_token.clone()),
        ]
    }

    /// Where the PKI lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// [`RuntimeArgs::default`] with the test process's security applied.
pub fn runtime_args() -> RuntimeArgs {
    let mut runtime = RuntimeArgs::default();
    security().apply(&mut runtime);
    runtime
}

/// A connected channel to `url` presenting `credentials`.
///
/// # Panics
/// When the service cannot be reached: the test cannot go on.
pub async fn connect_with(url: &str, credentials: &Credentials) -> AuthedChannel {
    let endpoint = match edge_runtime::client::endpoint(url, &ClientArgs::default(), credentials) {
        Ok(endpoint) => endpoint,
        Err(err) => panic!("invalid endpoint {url}: {err}"),
    };
    connect_endpoint(endpoint, credentials).await
}

/// The endpoint of `url` with the test operator's TLS, for a test that
/// tunes it (e.g. a small header limit) before [`connect_endpoint`].
pub fn operator_endpoint(url: &str) -> tonic::transport::Endpoint {
    match edge_runtime::client::endpoint(url, &ClientArgs::default(), &security().operator()) {
        Ok(endpoint) => endpoint,
        Err(err) => panic!("invalid endpoint {url}: {err}"),
    }
}

/// Connects `endpoint` (made with `credentials`' TLS) and presents
/// `credentials`' token on every call.
pub async fn connect_endpoint(
    endpoint: tonic::transport::Endpoint,
    credentials: &Credentials,
) -> AuthedChannel {
    let uri = endpoint.uri().clone();
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(err) => panic!("cannot connect to {uri}: {err:?}"),
    };
    match edge_runtime::client::authed(channel, credentials) {
        Ok(channel) => channel,
        Err(err) => panic!("bad token: {err}"),
    }
}

/// A connected channel to an in-process service at `url`, as the operator.
pub async fn connect(url: &str) -> AuthedChannel {
    connect_with(url, &security().operator()).await
}
