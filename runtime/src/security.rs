//! The security settings every service takes, and what they resolve to: a
//! server TLS configuration, the connection limits, the identities a server
//! accepts, and what a client of the mesh presents.
//!
//! TLS is on by default: a service with no certificate refuses to start
//! unless `--insecure-plaintext` says otherwise, and that flag turns TLS off
//! and nothing else: every call still needs a credential. `edge up` fills
//! in a site CA and certificate of its own (see [`crate::tls::site_ca`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::auth::{Identities, IdentityRecord, IdentitySource, Rates, Scopes};
use crate::listener::AcceptLimits;
use crate::tls::{ClientAuth, ServerTlsFiles, TlsError};

/// Security and connection settings, flattened into every service's flags.
#[derive(Debug, Clone, Args)]
pub struct SecurityArgs {
    /// PEM certificate chain every gRPC port presents (a mounted Secret in
    /// Kubernetes). Read again when the file changes.
    #[arg(long, env = "EDGE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "EDGE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificates that sign gateways' client certificates. With it,
    /// a verified client certificate is a credential (its common name is
    /// the identity).
    #[arg(long, env = "EDGE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// Whether callers must present a client certificate: `required` is
    /// mTLS (refused in the handshake without one). Default: `optional`
    /// when `--tls-client-ca` is set, `none` otherwise.
    #[arg(long, env = "EDGE_TLS_CLIENT_AUTH", value_enum)]
    pub tls_client_auth: Option<ClientAuth>,

    /// Scopes of a client-certificate identity that no token of the same
    /// name defines (comma-separated).
    #[arg(long, env = "EDGE_TLS_CLIENT_CERT_SCOPES", default_value = "ingest", value_parser = parse_scopes)]
    pub tls_client_cert_scopes: Scopes,

    /// PEM CA the services trust when they call each other (the CA that
    /// signed `--tls-cert`). Default: the system's roots.
    #[arg(long, env = "EDGE_MESH_CA")]
    pub mesh_ca: Option<PathBuf>,

    /// Serve and call without TLS. Credentials are still required; only
    /// for a network that is private by other means. Logged at every start.
    #[arg(long, env = "EDGE_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,

    /// File holding the token the services present to each other (a
    /// Secret in Kubernetes; `edge up` makes one of its own). Every service
    /// of a site must be given the same one.
    #[arg(long, env = "EDGE_MESH_TOKEN_FILE")]
    pub mesh_token_file: Option<PathBuf>,

    /// The mesh token itself, for a process that makes it (`edge up`) or a
    /// test; never a flag.
    #[arg(skip)]
    pub mesh_token: Option<String>,

    /// How often a server reloads the identities (the longest a revoked
    /// token keeps working). At most 5 s.
    #[arg(long, env = "EDGE_IDENTITY_REFRESH", default_value = "2s", value_parser = parse_refresh)]
    pub identity_refresh: Duration,

    /// Time a new connection has to finish its TLS handshake and send the
    /// HTTP/2 preface before it is closed.
    #[arg(long, env = "EDGE_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub handshake_timeout: Duration,

    /// Connections open at once on each gRPC port; one more is closed on
    /// accept (`connections_refused_total{reason="max_connections"}`).
    #[arg(long, env = "EDGE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Connections open at once from one IP address on each gRPC port; one
    /// more is closed on accept
    /// (`connections_refused_total{reason="max_connections_per_ip"}`).
    #[arg(long, env = "EDGE_MAX_CONNECTIONS_PER_IP", default_value_t = 128)]
    pub max_connections_per_ip: usize,

    /// Concurrent calls (HTTP/2 streams) on one connection.
    #[arg(long, env = "EDGE_MAX_STREAMS_PER_CONNECTION", default_value_t = 128)]
    pub max_streams_per_connection: u32,

    /// Largest header block a call may send, in bytes.
    #[arg(long, env = "EDGE_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: u32,

    /// How often an idle connection is pinged; one that does not answer
    /// within `--keepalive-timeout` is closed (a gateway that lost power).
    #[arg(long, env = "EDGE_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub keepalive_interval: Duration,

    /// How long a keep-alive ping may go unanswered.
    #[arg(long, env = "EDGE_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub keepalive_timeout: Duration,

    /// Calls per second each identity may make (0: unlimited). A token may
    /// carry its own.
    #[arg(long, env = "EDGE_RATE_CALLS_PER_SECOND", default_value_t = 2000)]
    pub rate_calls_per_second: u32,

    /// Readings per second each identity may ingest (0: unlimited). A token
    /// may carry its own.
    #[arg(long, env = "EDGE_RATE_READINGS_PER_SECOND", default_value_t = 50_000)]
    pub rate_readings_per_second: u32,

    /// Seconds' worth of calls or readings an identity may spend at once.
    #[arg(long, env = "EDGE_RATE_BURST_SECONDS", default_value_t = 2)]
    pub rate_burst_seconds: u32,
}

fn parse_scopes(text: &str) -> Result<Scopes, String> {
    Scopes::parse(text).map_err(|e| e.to_string())
}

fn parse_refresh(text: &str) -> Result<Duration, String> {
    let every = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if every.is_zero() || every > Duration::from_secs(5) {
        return Err(
            "must be more than 0 and at most 5s (a revoked token must stop working within 5 s)"
                .into(),
        );
    }
    Ok(every)
}

impl Default for SecurityArgs {
    fn default() -> Self {
        Self {
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_client_auth: None,
            tls_client_cert_scopes: Scopes::of(&[crate::auth::Scope::Ingest]),
            mesh_ca: None,
            insecure_plaintext: false,
            mesh_token_file: None,
            mesh_token: None,
            identity_refresh: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_ip: 128,
            max_streams_per_connection: 128,
            max_header_bytes: 16 * 1024,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            rate_calls_per_second: 2000,
            rate_readings_per_second: 50_000,
            rate_burst_seconds: 2,
        }
    }
}

/// The security settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// No certificate and no `--insecure-plaintext`.
    #[error(
        "TLS is on by default: set --tls-cert and --tls-key (EDGE_TLS_CERT, EDGE_TLS_KEY), or \
         --insecure-plaintext to serve without TLS"
    )]
    NoCertificate,
    /// A service that calls the others has no mesh token.
    #[error("no mesh token: set --mesh-token-file (EDGE_MESH_TOKEN_FILE) to the site's mesh token")]
    NoMeshToken,
    /// The mesh token file cannot be read.
    #[error("--mesh-token-file: {0}")]
    MeshToken(#[from] edge_credentials::SecretFileError),
    /// A certificate, key or CA file cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The address of the service that holds the identities is not usable.
    #[error(transparent)]
    Endpoint(#[from] crate::client::InvalidEndpoint),
}

impl SecurityArgs {
    /// The site's default rates.
    pub fn default_rates(&self) -> Rates {
        Rates {
            calls_per_second: Some(self.rate_calls_per_second),
            readings_per_second: Some(self.rate_readings_per_second),
            burst_seconds: Some(self.rate_burst_seconds),
        }
    }

    /// The server TLS configuration, or `None` in plaintext.
    pub fn server_tls(&self) -> Result<Option<Arc<rustls::ServerConfig>>, SecurityError> {
        if self.insecure_plaintext {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Err(SecurityError::NoCertificate);
        };
        let client_auth = self
            .tls_client_auth
            .unwrap_or(if self.tls_client_ca.is_some() {
                ClientAuth::Optional
            } else {
                ClientAuth::None
            });
        Ok(Some(crate::tls::server_config(&ServerTlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: self.tls_client_ca.clone(),
            client_auth,
        })?))
    }

    /// The mesh token, if one is configured.
    pub fn mesh_token(&self) -> Result<Option<String>, SecurityError> {
        if let Some(token) = &self.mesh_token {
            return Ok(Some(token.clone()));
        }
        match &self.mesh_token_file {
            Some(path) => Ok(Some(edge_credentials::read_secret_file(path)?)),
            None => Ok(None),
        }
    }

    /// The identity the services present to each other, as a configured
    /// record every server accepts.
    pub fn mesh_identity(&self) -> Result<Option<IdentityRecord>, SecurityError> {
        Ok(self.mesh_token()?.map(|token| IdentityRecord {
            name: "mesh".into(),
            token_hash: edge_credentials::TokenHash::of(&token),
            scopes: Scopes::mesh(),
            rates: Rates::UNLIMITED,
        }))
    }

    /// What a service presents when it calls another: TLS trusting
    /// `--mesh-ca` (none in plaintext) and the mesh token.
    pub fn mesh_client(&self) -> Result<crate::client::Credentials, SecurityError> {
        let token = self.mesh_token()?.ok_or(SecurityError::NoMeshToken)?;
        let tls = if self.insecure_plaintext {
            None
        } else {
            Some(crate::tls::client::grpc_client_tls(
                self.mesh_ca.as_deref(),
                "--mesh-ca",
            )?)
        };
        Ok(crate::client::Credentials {
            tls,
            token: Some(token),
        })
    }

    /// The identities a server accepts, read from `source` every
    /// `--identity-refresh` from now until `stop` (the caller loads them
    /// the first time: [`Identities::reload`]).
    pub fn identities(
        &self,
        source: Arc<dyn IdentitySource>,
        stop: crate::Shutdown,
    ) -> Result<Arc<Identities>, SecurityError> {
        let configured = self.mesh_identity()?.into_iter().collect();
        let identities = Identities::new(source, configured, self.default_rates());
        identities.spawn_refresh(self.identity_refresh, stop);
        Ok(identities)
    }

    /// The security of the gRPC server `name`: its TLS and limits, and a
    /// guard accepting the identities `source` holds (loaded once now, then
    /// every `--identity-refresh` until `stop`).
    pub async fn server(
        &self,
        name: &'static str,
        source: Arc<dyn IdentitySource>,
        stop: crate::Shutdown,
    ) -> Result<crate::ServerSecurity, SecurityError> {
        self.log_mode();
        let identities = self.identities(source, stop)?;
        if let Err(err) = identities.reload().await {
            // Not fatal: the peer that holds them may start later; the
            // refresh keeps trying and calls get UNAVAILABLE meanwhile.
            tracing::warn!(%err, server = name, "identities not loaded yet");
        }
        let guard = crate::auth::Guard::new(
            identities,
            self.tls_client_cert_scopes,
            self.default_rates(),
            name,
        );
        crate::ServerSecurity::new(name, self, guard)
    }

    /// [`Self::server`] for a service without a database: the identities
    /// come from store-svc at `store_url`, over the mesh's credentials.
    pub async fn server_via_store(
        &self,
        name: &'static str,
        store_url: &str,
        client: &crate::client::ClientArgs,
        stop: crate::Shutdown,
    ) -> Result<crate::ServerSecurity, SecurityError> {
        let channel = crate::client::channel(store_url, client, &self.mesh_client()?)?;
        let source = Arc::new(crate::auth::remote::RemoteIdentities::new(channel));
        self.server(name, source, stop).await
    }

    /// How connections are accepted.
    pub fn accept_limits(&self) -> AcceptLimits {
        AcceptLimits {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            handshake_timeout: self.handshake_timeout,
        }
    }

    /// Says in the log how this process serves, once per start (a process
    /// of four services says it once, not four times).
    pub fn log_mode(&self) {
        static SAID: std::sync::Once = std::sync::Once::new();
        if self.insecure_plaintext {
            SAID.call_once(|| {
                tracing::warn!(
                    "--insecure-plaintext: serving and calling WITHOUT TLS; credentials are \
                     still required, but they and all data cross the network in the clear"
                );
            });
        }
    }
}
