//! The cloud-link flags sync-svc and health-svc share: where the cloud is,
//! the token, the connect deadline and the probe. One [`clap::Args`] struct,
//! flattened into both services' configs (and once into `edge up`, where
//! both services use it), so the flag names and their `EDGE_*` variables
//! cannot drift apart.
//!
//! No cloud URL is a valid configuration: the site runs offline by design.

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use clap::Args;

use crate::client::{ClientConfig, CloudClient, CloudError};
use crate::probe::ProbeConfig;
use crate::trust::{CloudTrust, TrustError};

/// Where the cloud is and how to probe it.
#[derive(Debug, Clone, Args)]
pub struct CloudLinkArgs {
    /// The cloud's base URL, `http://` or `https://` (e.g.
    /// https://cloud.example.com); any other scheme is refused at start-up.
    /// Unset: no cloud, the site runs offline.
    #[arg(long, env = "EDGE_CLOUD_URL")]
    pub cloud_url: Option<String>,

    /// Bearer token for the cloud. Unset: no `Authorization` header. Never
    /// logged.
    #[arg(long, env = "EDGE_CLOUD_TOKEN", hide_env_values = true)]
    pub cloud_token: Option<String>,

    /// PEM file of the CA certificate(s) the cloud's certificate must chain
    /// to, for a cloud under a private PKI. When set, only these are trusted
    /// (not the system's roots): see docs/deploy.md. Unset: the system's
    /// trust store. Read at start-up; a file that is not a CA certificate
    /// stops the start.
    #[arg(long, env = "EDGE_CLOUD_CA")]
    pub cloud_ca: Option<PathBuf>,

    /// Deadline for connecting to the cloud.
    #[arg(long, env = "EDGE_CLOUD_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub cloud_connect_timeout: Duration,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub probe: ProbeConfig,
}

/// The cloud settings cannot work.
#[derive(Debug, thiserror::Error)]
pub enum LinkConfigError {
    /// The cloud URL is not http(s).
    #[error("--cloud-url / EDGE_CLOUD_URL must start with http:// or https:// (got {0:?})")]
    Scheme(String),
    /// The `--cloud-ca` file cannot be used.
    #[error(transparent)]
    CloudCa(#[from] TrustError),
    /// The HTTP client could not be built for that URL.
    #[error("--cloud-url: {0}")]
    Client(#[from] CloudError),
}

/// How a service uses its HTTP client beyond the shared settings.
#[derive(Debug, Clone, Copy)]
pub struct ClientUse {
    /// Deadline for a whole request (the probe sets its own, shorter one).
    pub request_timeout: Duration,
    /// Compress request bodies.
    pub gzip: bool,
    /// Largest response body read.
    pub max_response_bytes: usize,
}

impl CloudLinkArgs {
    /// No cloud, default probe: what `edge up` with no flags uses.
    pub fn new() -> Self {
        CloudLinkArgs {
            cloud_url: None,
            cloud_token: None,
            cloud_ca: None,
            cloud_connect_timeout: Duration::from_secs(5),
            probe: ProbeConfig::default(),
        }
    }

    /// The cloud URL if one is configured (an empty value counts as none),
    /// checked to be http(s).
    pub fn url(&self) -> Result<Option<&str>, LinkConfigError> {
        match self.cloud_url.as_deref().filter(|u| !u.is_empty()) {
            None => Ok(None),
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => Ok(Some(url)),
            Some(url) => {
                // Only the scheme: the rest may carry credentials.
                let scheme = url.split(':').next().unwrap_or_default();
                Err(LinkConfigError::Scheme(scheme.chars().take(20).collect()))
            }
        }
    }

    /// The HTTP client's settings for `base_url`, with the `--cloud-ca`
    /// certificates read and checked.
    pub fn client_config(
        &self,
        base_url: &str,
        usage: ClientUse,
    ) -> Result<ClientConfig, LinkConfigError> {
        let trust = self.cloud_ca.as_deref().map(CloudTrust::load).transpose()?;
        Ok(ClientConfig {
            base_url: base_url.to_owned(),
            token: self.cloud_token.clone(),
            request_timeout: usage.request_timeout,
            connect_timeout: self.cloud_connect_timeout,
            gzip: usage.gzip,
            max_response_bytes: usage.max_response_bytes,
            trust,
        })
    }

    /// A client of the configured cloud, or `None` when there is none.
    pub fn client(&self, usage: ClientUse) -> Result<Option<CloudClient>, LinkConfigError> {
        match self.url()? {
            None => Ok(None),
            Some(url) => {
                let config = self.client_config(url, usage)?;
                warn_if_plaintext(url);
                Ok(Some(CloudClient::new(config)?))
            }
        }
    }
}

/// Logs, once per process (sync-svc and health-svc each build a client),
/// that an `http://` link is not encrypted: allowed for tests and for a
/// cloud behind a TLS-terminating proxy on the same trusted network, but
/// the token and the data cross the network in the clear.
fn warn_if_plaintext(url: &str) {
    static WARNED: Once = Once::new();
    if url.starts_with("http://") {
        WARNED.call_once(|| {
            tracing::warn!(
                cloud = %crate::client::shown_url(url),
                "the cloud link is plain http://: the site token and the readings are not encrypted; use https:// (with --cloud-ca for a private CA)"
            );
        });
    }
}

impl Default for CloudLinkArgs {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> CloudLinkArgs {
        CloudLinkArgs {
            cloud_url: Some(url.to_owned()),
            ..CloudLinkArgs::new()
        }
    }

    #[test]
    fn no_or_empty_url_means_no_cloud() {
        assert!(matches!(CloudLinkArgs::new().url(), Ok(None)));
        assert!(matches!(with_url("").url(), Ok(None)));
        assert!(matches!(with_url("https://c.example").url(), Ok(Some(_))));
    }

    #[test]
    fn a_bad_scheme_names_the_flag_but_not_the_rest_of_the_url() {
        let err = with_url("ftp://user:secret@host")
            .url()
            .expect_err("not http");
        let text = err.to_string();
        assert!(text.contains("--cloud-url"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
