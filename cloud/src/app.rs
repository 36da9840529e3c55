//! Building and running the reference cloud: open the database (migrations
//! run here), bind the public and admin listeners, serve both until told to
//! stop. Tests and `edge cloud` use this exactly alike.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edge_versioning::{SystemClock, WallClock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::config::CloudArgs;
use crate::db::{CloudDb, DbError, DbOptions, Versioning};
use crate::faults::FaultState;
use crate::stats::Counters;

/// The cloud could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// No bearer token configured: the cloud never runs open to anyone.
    #[error(
        "no cloud token configured: set --cloud-token or EDGE_CLOUD_TOKEN to the bearer token \
         clients must send (there is no default)"
    )]
    MissingToken,
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
    /// The admin server failed while serving.
    #[error("the admin server failed: {0}")]
    Serve(#[source] std::io::Error),
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
    token: Arc<str>,
    grace: Duration,
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
        let token: Arc<str> = match args.token.as_deref().map(str::trim) {
            Some(token) if !token.is_empty() => token.into(),
            _ => return Err(CloudError::MissingToken),
        };
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
            token,
            grace: args.shutdown_grace,
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

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        self.db.backend()
    }

    /// Serves both ports until `shutdown` is cancelled, drains in-flight
    /// requests (bounded by the shutdown grace) and closes the database.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), CloudError> {
        tracing::info!(public = %self.public_addr, admin = %self.admin_addr, "reference cloud serving");
        let public_router = api::router(ApiState {
            db: self.db.clone(),
            faults: self.faults.clone(),
            counters: self.counters.clone(),
            token: self.token,
            shutdown: shutdown.clone(),
        });
        let public = tokio::spawn(crate::server::serve_public(
            self.public,
            public_router,
            self.faults.subscribe(),
            shutdown.clone(),
            self.grace,
        ));
        let admin_router =
            crate::admin::router(self.db.clone(), self.faults.clone(), self.counters.clone());
        let admin = axum::serve(self.admin, admin_router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let admin = tokio::spawn(async move { admin.await });

        let public_result = public.await;
        let admin_result = match tokio::time::timeout(self.grace, admin).await {
            Ok(joined) => joined
                .map_err(CloudError::from)
                .and_then(|r| r.map_err(CloudError::Serve)),
            Err(_) => {
                tracing::warn!("admin server still busy at the end of the grace period");
                Ok(())
            }
        };
        self.db.close().await;
        tracing::info!("reference cloud stopped");
        public_result?;
        admin_result
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, CloudError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| CloudError::Bind { what, addr, source })
}
