//! Which certificates the link trusts for an `https://` cloud.
//!
//! By default, the system's roots (reqwest's `rustls-no-provider` feature
//! brings `rustls-platform-verifier`, which reads the OS trust store; the
//! container image ships `ca-certificates`). With `--cloud-ca`, **only** the
//! CA certificates in that file: a site that names its private CA expects the
//! cloud's certificate to come from it, and trusting every public CA as well
//! would let any of them vouch for an impostor of the cloud. It also makes
//! the link independent of whether the host has a trust store at all (many
//! offline sites do not keep one current).
//!
//! The file is read and checked at start-up, so a wrong path or a file that
//! is not a CA certificate fails the start naming `--cloud-ca`, instead of
//! every push failing later with a handshake error.

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// The CA certificates the link trusts instead of the system's roots.
#[derive(Clone)]
pub struct CloudTrust {
    path: PathBuf,
    certs: Vec<reqwest::Certificate>,
}

impl std::fmt::Debug for CloudTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudTrust")
            .field("path", &self.path)
            .field("certs", &self.certs.len())
            .finish()
    }
}

/// `--cloud-ca` names a file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The file could not be read.
    #[error("--cloud-ca / EDGE_CLOUD_CA {path}: cannot read it: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no usable CA certificate.
    #[error("--cloud-ca / EDGE_CLOUD_CA {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl CloudTrust {
    /// The PEM CA certificates in `path` (one or more), each checked to be
    /// usable as a trust anchor.
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| TrustError::Read {
            path: shown.clone(),
            source,
        })?;
        let invalid = |reason: String| TrustError::Invalid {
            path: shown.clone(),
            reason,
        };
        let ders = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| invalid(format!("not PEM certificates: {err}")))?;
        if ders.is_empty() {
            return Err(invalid("holds no PEM certificate".into()));
        }
        // What rustls will do with them at the first handshake, done now.
        let mut roots = rustls::RootCertStore::empty();
        let mut certs = Vec::with_capacity(ders.len());
        for (index, der) in ders.into_iter().enumerate() {
            roots.add(der.clone()).map_err(|err| {
                invalid(format!(
                    "certificate {} is not a usable CA: {err}",
                    index + 1
                ))
            })?;
            certs.push(reqwest::Certificate::from_der(der.as_ref()).map_err(|err| {
                invalid(format!("certificate {} is not usable: {err}", index + 1))
            })?);
        }
        Ok(CloudTrust {
            path: path.to_path_buf(),
            certs,
        })
    }

    /// The file the certificates came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes `builder` trust these certificates and nothing else.
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        builder.tls_certs_only(self.certs.iter().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_file_names_the_flag() {
        let dir = std::env::temp_dir().join(format!("cloud-ca-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let missing = dir.join("missing.pem");
        let err = CloudTrust::load(&missing).expect_err("missing");
        assert!(err.to_string().contains("--cloud-ca"), "{err}");

        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = CloudTrust::load(&empty).expect_err("empty");
        let text = err.to_string();
        assert!(text.contains("--cloud-ca"), "{text}");
        assert!(text.contains("no PEM certificate"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
