//! A server certificate that follows its files.
//!
//! In Kubernetes the certificate is a mounted Secret that cert-manager (or
//! an operator with `kubectl`) replaces in place; at an offline site an
//! operator copies new files over the old ones. Either way the next TLS
//! handshake after the change should present the new certificate, with no
//! restart and no dropped connection. The files are looked at during a
//! handshake at most once per [`CHECK_EVERY`] (two `stat` calls), and read
//! again only when their size or modification time changed. A pair that
//! does not load (a half-copied file, a key that does not match) is logged
//! and counted, and the previous certificate keeps being served.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{TlsError, read_certs, read_key};
use crate::security_metrics::metrics;

/// How often a handshake may look at the files.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies one version of a file without reading it.
type Stamp = Option<(u64, SystemTime)>;

fn stamp(path: &std::path::Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

struct State {
    key: Arc<CertifiedKey>,
    stamps: (Stamp, Stamp),
    checked: Instant,
}

/// The certificate and key in two PEM files, read again when they change.
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<State>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the pair now; a pair that does not load is an error at start-up
    /// (later, a bad pair only keeps the previous one).
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Self, TlsError> {
        let stamps = (stamp(&cert), stamp(&key));
        let certified = load_pair(&cert, &key)?;
        Ok(Self {
            cert,
            key,
            state: Mutex::new(State {
                key: certified,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The certificate to present now, read again first if the files
    /// changed since the last look.
    fn current(&self) -> Arc<CertifiedKey> {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.checked.elapsed() >= CHECK_EVERY {
            state.checked = Instant::now();
            let stamps = (stamp(&self.cert), stamp(&self.key));
            if stamps != state.stamps {
                state.stamps = stamps;
                match load_pair(&self.cert, &self.key) {
                    Ok(key) => {
                        state.key = key;
                        metrics()
                            .certificate_reloads
                            .add(1, &[opentelemetry::KeyValue::new("result", "ok")]);
                        tracing::info!(cert = %self.cert.display(), "server certificate reloaded");
                    }
                    Err(err) => {
                        metrics()
                            .certificate_reloads
                            .add(1, &[opentelemetry::KeyValue::new("result", "failed")]);
                        tracing::warn!(%err, "server certificate files changed but do not load; still serving the previous certificate");
                    }
                }
            }
        }
        state.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn load_pair(cert: &std::path::Path, key: &std::path::Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certs(cert, "--tls-cert")?;
    let key = read_key(key, "--tls-key")?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let certified = CertifiedKey::from_der(chain, key, &provider)?;
    Ok(Arc::new(certified))
}
