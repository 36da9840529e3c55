//! The rustls configuration of a gRPC port.

use std::path::PathBuf;
use std::sync::Arc;

use clap::ValueEnum;
use rustls::server::WebPkiClientVerifier;

use super::{ReloadingCert, TlsError, read_certs};

/// Whether callers must present a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientAuth {
    /// Client certificates are not asked for; callers present a token.
    None,
    /// A certificate signed by `--tls-client-ca` is accepted as a
    /// credential; callers without one present a token.
    Optional,
    /// Every connection must present a certificate signed by
    /// `--tls-client-ca` (mTLS); a connection without one is refused in the
    /// handshake.
    Required,
}

/// Where a server's certificate, key and client CA are.
#[derive(Debug, Clone)]
pub struct ServerTlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA certificates that sign client certificates.
    pub client_ca: Option<PathBuf>,
    /// Whether a client certificate is asked for.
    pub client_auth: ClientAuth,
}

/// A server configuration that serves HTTP/2 with the certificate in
/// `files` (followed as it changes) and checks client certificates as
/// configured.
pub fn server_config(files: &ServerTlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    super::install_provider();
    let resolver = Arc::new(ReloadingCert::load(files.cert.clone(), files.key.clone())?);
    let builder = rustls::ServerConfig::builder();
    let builder = match (&files.client_ca, files.client_auth) {
        (_, ClientAuth::None) => builder.with_no_client_auth(),
        (None, _) => {
            return Err(TlsError::Invalid {
                flag: "--tls-client-auth",
                path: String::new(),
                reason: "client certificates are asked for but no --tls-client-ca is set".into(),
            });
        }
        (Some(ca), auth) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(ca, "--tls-client-ca")? {
                roots.add(cert)?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots));
            let verifier = if auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|err| TlsError::Invalid {
                flag: "--tls-client-ca",
                path: ca.display().to_string(),
                reason: err.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}
