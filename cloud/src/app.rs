//! Building and running the reference cloud: load (or create) the admin
//! token, open the database (migrations run here), register the
//! `--site-token`s, bind the public and admin listeners, serve both until
//! told to stop. Tests and `edge cloud` use this exactly alike.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use edge_credentials::{SecretFileError, TokenHash};

use edge_versioning::{SystemClock, WallClock};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::api::auth::AdminAuth;
use crate::api::{self, ApiState};
use crate::config::CloudArgs;
use crate::db::{CloudDb, DbError, DbOptions, Issued, Replace, Versioning};
use crate::faults::FaultState;
use crate::server::Serving;
use crate::sites::{SiteRegistry, now_us};
use crate::stats::Counters;

/// The prefix of the admin token: recognisable in a log or a secret
/// scanner.
pub const ADMIN_TOKEN_PREFIX: &str = "edgeadmin_";

/// The cloud could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The admin token file could not be read or created.
    #[error(
        "--admin-token-file / EDGE_CLOUD_ADMIN_TOKEN_FILE: cannot load or create the admin token: \
         {0}"
    )]
    AdminToken(#[source] SecretFileError),
    /// A `--site-token` names a token stored for another site.
    #[error(
        "--site-token {site_id}=…: this token is already registered for another site; a token \
         speaks for one site"
    )]
    SiteTokenTaken {
        /// The site the flag named.
        site_id: String,
    },
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// `public` or `admin`.
        what: &'static str,
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// `--tls-cert` / `--tls-key` cannot be used (the error names the
    /// flag and the file).
    #[error("cannot serve TLS: {0}")]
    Tls(#[from] edge_runtime::tls::TlsError),
    /// A server task panicked.
    #[error("a server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A built cloud, listening and ready to run.
pub struct CloudApp {
    db: Arc<CloudDb>,
    public: TcpListener,
    admin: TcpListener,
    public_addr: SocketAddr,
    admin_addr: SocketAddr,
    faults: FaultState,
    counters: Arc<Counters>,
    sites: Arc<SiteRegistry>,
    admin_token: TokenHash,
    admin_token_file: PathBuf,
    site_token_refresh: Duration,
    header_timeout: Duration,
    body_timeout: Duration,
    grace: Duration,
    tls: Option<TlsAcceptor>,
}

impl CloudApp {
    /// Checks the configuration, opens and migrates the database, and binds
    /// both listeners (port 0 picks a free port; see [`Self::local_addr`]).
    /// The cloud's wall clock is the system's.
    pub async fn build(args: &CloudArgs) -> Result<CloudApp, CloudError> {
        Self::build_with_clock(args, Arc::new(SystemClock)).await
    }

    /// [`Self::build`] with the wall clock `clock`, which stamps the cloud's
    /// amendments and measures the skew of what sites push: tests set it an
    /// hour behind or a day back to see the HLC keep its order.
    pub async fn build_with_clock(
        args: &CloudArgs,
        clock: Arc<dyn WallClock>,
    ) -> Result<CloudApp, CloudError> {
        // Before the database: a certificate that does not load is a
        // configuration error to report at once.
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert.clone(), key.clone())?),
            // clap makes the flags require each other; set in code, one
            // alone is refused the same way.
            (Some(_), None) | (None, Some(_)) => {
                return Err(CloudError::Tls(edge_runtime::tls::TlsError::Invalid {
                    flag: "--tls-cert / --tls-key",
                    path: String::new(),
                    reason: "both must be set, or neither".into(),
                }));
            }
            (None, None) => None,
        };
        let admin_token_file = args.admin_token_path();
        let (admin_token, created) =
            edge_credentials::load_or_create(&admin_token_file, ADMIN_TOKEN_PREFIX)
                .map_err(CloudError::AdminToken)?;
        if created {
            // The path only: the token stays in its 0600 file.
            tracing::info!(path = %admin_token_file.display(), "wrote a new admin token");
        }
        let admin_token = TokenHash::of(&admin_token);
        let db = CloudDb::open(
            &DbOptions {
                database_url: args.database_url.clone(),
                data_dir: args.data_dir.clone(),
                read_connections: args.read_connections,
                migration_backup: args.migration_backup,
                accept_postgres_durability_risk: args.accept_postgres_durability_risk,
                write_faults: args.write_faults.clone(),
            },
            Versioning {
                policy: args.conflict_policy,
                clock,
                max_clock_skew: edge_versioning::SkewBound::from_duration(args.max_clock_skew),
            },
        )
        .await?;
        tracing::info!(
            backend = db.backend(),
            policy = %args.conflict_policy,
            max_clock_skew = %humantime::format_duration(args.max_clock_skew),
            "cloud database ready"
        );
        let db = Arc::new(db);
        for site in &args.site_tokens {
            let hash = TokenHash::of(&site.token).to_hex();
            match db
                .issue_site_token(&site.site_id, &hash, now_us(), Replace::IfDifferent)
                .await?
            {
                Issued::OtherSite(_) => {
                    return Err(CloudError::SiteTokenTaken {
                        site_id: site.site_id.clone(),
                    });
                }
                Issued::Now => {
                    tracing::info!(site_id = %site.site_id, "registered --site-token")
                }
                Issued::Unchanged | Issued::ActiveExists => {}
            }
        }
        let sites = Arc::new(SiteRegistry::load(db.clone()).await?);
        let public = bind("public", args.listen).await?;
        let admin = bind("admin", args.admin_listen).await?;
        let addr_of = |what, listener: &TcpListener, addr| {
            listener
                .local_addr()
                .map_err(|source| CloudError::Bind { what, addr, source })
        };
        Ok(CloudApp {
            public_addr: addr_of("public", &public, args.listen)?,
            admin_addr: addr_of("admin", &admin, args.admin_listen)?,
            db,
            public,
            admin,
            faults: FaultState::default(),
            counters: Arc::new(Counters::default()),
            sites,
            admin_token,
            admin_token_file,
            site_token_refresh: args.site_token_refresh,
            header_timeout: args.header_timeout,
            body_timeout: args.body_timeout,
            grace: args.shutdown_grace,
            tls,
        })
    }

    /// The address of the public API.
    pub fn local_addr(&self) -> SocketAddr {
        self.public_addr
    }

    /// The address of the admin API.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Whether both ports speak TLS (`--tls-cert`).
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `https://addr` or `http://addr` of the public API.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.public_addr)
    }

    /// `https://addr` or `http://addr` of the admin API.
    pub fn admin_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.admin_addr)
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The file holding the admin API's bearer token (0600). Tests and
    /// scripts read the token from it; it is never printed or logged.
    pub fn admin_token_file(&self) -> &Path {
        &self.admin_token_file
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.db.backend()
    }

    /// Serves both ports until `shutdown` is cancelled, drains in-flight
    /// requests (bounded by the shutdown grace) and closes the database.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), CloudError> {
        tracing::info!(public = %self.url(), admin = %self.admin_url(), "reference cloud serving");
        if self.tls.is_none() {
            tracing::warn!(
                "serving plain HTTP: site tokens, the admin token and the data cross the network \
                 unencrypted; set --tls-cert and --tls-key unless a TLS-terminating proxy is in \
                 front"
            );
        }
        let refresh = tokio::spawn(
            self.sites
                .clone()
                .refresh_until(self.site_token_refresh, shutdown.clone()),
        );
        let public_router = api::router(ApiState {
            db: self.db.clone(),
            faults: self.faults.clone(),
            counters: self.counters.clone(),
            sites: self.sites.clone(),
            body_timeout: self.body_timeout,
            shutdown: shutdown.clone(),
        });
        let serving = Serving {
            what: "public",
            faults: Some(self.faults.subscribe()),
            header_timeout: self.header_timeout,
            tls: self.tls.clone(),
            counters: self.counters.clone(),
            shutdown: shutdown.clone(),
            grace: self.grace,
        };
        let public = tokio::spawn(crate::server::serve(
            self.public,
            public_router,
            serving.clone(),
        ));
        let admin_router = crate::admin::router(
            self.db.clone(),
            self.faults.clone(),
            self.counters.clone(),
            AdminAuth {
                token: self.admin_token,
                counters: self.counters.clone(),
            },
            self.body_timeout,
        );
        let admin = tokio::spawn(crate::server::serve(
            self.admin,
            admin_router,
            Serving {
                what: "admin",
                faults: None,
                ..serving
            },
        ));

        let public_result = public.await;
        let admin_result = admin.await;
        let refresh_result = refresh.await;
        self.db.close().await;
        tracing::info!("reference cloud stopped");
        public_result?;
        admin_result?;
        refresh_result?;
        Ok(())
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, CloudError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| CloudError::Bind { what, addr, source })
}
