//! The reference cloud (`edge-cloud`) in the test's own process, on an
//! ephemeral port with SQLite in a temp dir, and its admin API for faults,
//! stored versions, current versions and the conflict audit log.
//!
//! The cloud gives every site its own token, and a token only works for its
//! site. Tests share one secret (`TOKEN`) and derive each site's token from
//! it ([`site_token`]); a test cloud registers the derived tokens of
//! [`TEST_SITE_IDS`] (and of any site added with
//! [`InProcessCloudBuilder::site`]) at start, and test sites take one of
//! those ids ([`TEST_SITE_ID`] unless a test names another).

use std::sync::Arc;
use std::time::Duration;

use edge_cloud::{AdminClient, CloudApp, CloudArgs, FaultMode, Faults};
use edge_runtime::Shutdown;
use edge_versioning::{Policy, SystemClock, WallClock};

/// The site id test fixtures give a site unless the test names another.
pub const TEST_SITE_ID: &str = "test-site";

/// The site ids a test cloud knows tokens for from the start.
pub const TEST_SITE_IDS: &[&str] = &[TEST_SITE_ID, "site-a", "site-b", "site-c"];

/// The token of the test site `site_id` at a test cloud started with the
/// shared secret `token`.
pub fn site_token(token: &str, site_id: &str) -> String {
    format!("{token}.{site_id}")
}

/// A running reference cloud. Stopped by [`InProcessCloud::stop`], or when
/// dropped.
pub struct InProcessCloud {
    /// `http://…` of the public API (`https://…` with
    /// [`InProcessCloudBuilder::tls`]).
    pub url: String,
    /// With [`InProcessCloudBuilder::tls`]: the CA a client must trust
    /// (`pki.ca`) and the certificate and key the cloud serves, which a test
    /// may replace to see them reloaded.
    pub pki: Option<edge_runtime::tls::site_ca::SitePki>,
    /// Its admin API (faults, stats), with the admin token.
    pub admin: AdminClient,
    token: String,
    stop: Shutdown,
    task: tokio::task::JoinHandle<Result<(), edge_cloud::CloudError>>,
    _dir: tempfile::TempDir,
}

/// How to start an [`InProcessCloud`] other than with the defaults
/// (`lww`, the system clock, the default clock-skew bound of an hour):
/// `InProcessCloud::builder(TOKEN).policy(Policy::CloudWins).start().await`.
pub struct InProcessCloudBuilder {
    token: String,
    sites: Vec<String>,
    policy: Policy,
    clock: Arc<dyn WallClock>,
    max_clock_skew: Option<Duration>,
    tls: bool,
}

impl InProcessCloudBuilder {
    /// Registers the token of `site_id` too (beyond [`TEST_SITE_IDS`]).
    pub fn site(mut self, site_id: &str) -> Self {
        self.sites.push(site_id.to_owned());
        self
    }

    /// The deployment's conflict rule, which the cloud announces.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The cloud's wall clock (e.g. an `OffsetClock` an hour behind).
    pub fn clock(mut self, clock: Arc<dyn WallClock>) -> Self {
        self.clock = clock;
        self
    }

    /// The deployment's clock-skew bound: how far ahead of the cloud's
    /// clock a stamp may move it; versions further ahead are flagged.
    pub fn max_clock_skew(mut self, skew: Duration) -> Self {
        self.max_clock_skew = Some(skew);
        self
    }

    /// Serves both ports over TLS, with a CA and a certificate for
    /// `localhost` and `127.0.0.1` made in the cloud's temp dir (see
    /// [`InProcessCloud::pki`]).
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Starts the cloud.
    pub async fn start(self) -> InProcessCloud {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut args = CloudArgs::for_test(dir.path().to_path_buf(), None);
        let pki = self.tls.then(|| {
            let tls_dir = dir.path().join("tls");
            std::fs::create_dir_all(&tls_dir).expect("test certificate dir");
            let pki = edge_runtime::tls::site_ca::ensure(
                &tls_dir,
                &["localhost".to_owned(), "127.0.0.1".to_owned()],
            )
            .expect("test certificates");
            args = args.clone().with_tls(pki.cert.clone(), pki.key.clone());
            pki
        });
        for site in TEST_SITE_IDS
            .iter()
            .copied()
            .chain(self.sites.iter().map(String::as_str))
        {
            args = args.with_site_token(site, &site_token(&self.token, site));
        }
        args.conflict_policy = self.policy;
        if let Some(skew) = self.max_clock_skew {
            args.max_clock_skew = skew;
        }
        let app = CloudApp::build_with_clock(&args, self.clock)
            .await
            .expect("cloud starts");
        let url = app.url();
        let admin = match &pki {
            None => AdminClient::from_token_file(app.admin_url(), app.admin_token_file()),
            Some(pki) => AdminClient::from_token_file_trusting(
                app.admin_url(),
                app.admin_token_file(),
                &edge_cloud_link::CloudTrust::load(&pki.ca).expect("the test CA loads"),
            ),
        }
        .expect("admin client");
        let stop = Shutdown::new();
        let task = tokio::spawn(app.run(stop.clone()));
        InProcessCloud {
            url,
            pki,
            admin,
            token: self.token,
            stop,
            task,
            _dir: dir,
        }
    }
}

impl InProcessCloud {
    /// Starts a cloud whose test sites' tokens derive from `token`, with the
    /// default settings.
    pub async fn start(token: &str) -> InProcessCloud {
        Self::builder(token).start().await
    }

    /// A cloud whose test sites' tokens derive from `token`, to be
    /// configured before it starts.
    pub fn builder(token: &str) -> InProcessCloudBuilder {
        InProcessCloudBuilder {
            token: token.to_owned(),
            sites: Vec::new(),
            policy: Policy::default(),
            clock: Arc::new(SystemClock),
            max_clock_skew: None,
            tls: false,
        }
    }

    /// The token `site_id` must present (registered for [`TEST_SITE_IDS`]
    /// and the builder's sites).
    pub fn site_token(&self, site_id: &str) -> String {
        site_token(&self.token, site_id)
    }

    /// Makes the cloud misbehave as `faults` say.
    pub async fn faults(&self, faults: Faults) {
        self.admin.set_faults(&faults).await.expect("set faults");
    }

    /// Normal faults but for `mode` (dark, black hole, …).
    pub async fn mode(&self, mode: FaultMode) {
        self.faults(Faults {
            mode,
            ..Faults::normal()
        })
        .await;
    }

    /// Stops the cloud and waits for it.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for InProcessCloud {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
