//! How the `edge` CLI reaches a site: like a kubeconfig, it finds what it
//! needs by itself. The token is `--token` / `EDGE_TOKEN`, else the file of
//! `--token-file` / `EDGE_TOKEN_FILE`, else `<data-dir>/operator.token` (the
//! one `edge up` writes on first start). The CA is `--ca` / `EDGE_CA`, else
//! `<data-dir>/tls/ca.pem` when it exists, else the system's roots. So after
//! `edge up` in a directory, every command run there just works.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use edge_runtime::client::{AuthedChannel, ClientArgs, Credentials, channel};

/// Where the CLI finds its credentials.
#[derive(Args, Clone, Debug)]
pub struct Access {
    /// Bearer token to present (default: the token file, then
    /// `<data-dir>/operator.token`).
    #[arg(long, env = "EDGE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,

    /// File holding the bearer token to present.
    #[arg(long, env = "EDGE_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,

    /// PEM CA certificate to trust (default: `<data-dir>/tls/ca.pem` when it
    /// exists, else the system's roots).
    #[arg(long, env = "EDGE_CA", global = true)]
    pub ca: Option<PathBuf>,

    /// The site's data directory, where `edge up` keeps the operator token
    /// and the site CA.
    #[arg(
        long = "data-dir",
        env = "EDGE_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Speak plaintext to a site started with --insecure-plaintext.
    #[arg(long, env = "EDGE_INSECURE_PLAINTEXT", global = true)]
    pub insecure_plaintext: bool,
}

impl Access {
    /// The token to present, if one is found.
    fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(token) = &self.token {
            return Ok(Some(token.trim().to_owned()));
        }
        if let Some(path) = &self.token_file {
            return Ok(Some(edge_credentials::read_secret_file(path)?));
        }
        let default = self.data_dir.join("operator.token");
        if default.exists() {
            return edge_credentials::read_secret_file(&default)
                .map(Some)
                .with_context(|| "reading the operator token (set --token or EDGE_TOKEN instead)");
        }
        Ok(None)
    }

    /// TLS trust and token, as found.
    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        let tls = if self.insecure_plaintext {
            None
        } else {
            let site_ca = self.data_dir.join("tls").join("ca.pem");
            let ca = match &self.ca {
                Some(ca) => Some(ca.clone()),
                None => site_ca.exists().then_some(site_ca),
            };
            Some(edge_runtime::tls::client::grpc_client_tls(
                ca.as_deref(),
                "--ca",
            )?)
        };
        Ok(Credentials {
            tls,
            token: self.token()?,
        })
    }

    /// A channel to `url` presenting these credentials.
    pub fn channel(&self, url: &str, args: &ClientArgs) -> anyhow::Result<AuthedChannel> {
        Ok(channel(url, args, &self.credentials()?)?)
    }
}
