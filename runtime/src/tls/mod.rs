//! TLS for every port of the mesh, with rustls (no OpenSSL):
//!
//! - [`install_provider`]: the process's one crypto provider (ring), for
//!   servers and for every client (the cloud link, the OTLP exporter);
//! - [`ReloadingCert`]: a server certificate read from files and read again
//!   when they change, so a rotated certificate needs no restart;
//! - [`server_config`]: the rustls server configuration of a gRPC port,
//!   with optional or required client certificates;
//! - [`site_ca`]: the site CA and server certificate `edge up` creates on
//!   first start when none is configured;
//! - [`client`]: the trust a client of the mesh (a service, the CLI) uses.

pub mod client;
mod reload;
mod server;
pub mod site_ca;

pub use reload::ReloadingCert;
pub use server::{ClientAuth, ServerTlsFiles, server_config};

/// Makes ring the process's TLS provider. Idempotent.
pub fn install_provider() {
    // `Err` means a provider is installed already, which is the goal.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A certificate, key or CA file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{flag} {path}: {source}")]
    Read {
        /// The flag that names the file.
        flag: &'static str,
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no usable PEM of the kind expected.
    #[error("{flag} {path}: {reason}")]
    Invalid {
        /// The flag that names the file.
        flag: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration (a key that does not match the
    /// certificate, a CA that is not one).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The site CA or server certificate could not be generated.
    #[error("cannot generate the site certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// The generated certificates could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: edge_credentials::SecretFileError,
    },
}

/// PEM certificates in `path` (the value of `flag`, named in errors).
pub(crate) fn read_certs(
    path: &std::path::Path,
    flag: &'static str,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, TlsError> {
    use rustls_pki_types::pem::PemObject as _;
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.display().to_string(),
        source,
    })?;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::Invalid {
            flag,
            path: path.display().to_string(),
            reason: format!("not PEM certificates: {err}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            flag,
            path: path.display().to_string(),
            reason: "holds no certificate".into(),
        });
    }
    Ok(certs)
}

/// The PEM private key in `path`.
pub(crate) fn read_key(
    path: &std::path::Path,
    flag: &'static str,
) -> Result<rustls_pki_types::PrivateKeyDer<'static>, TlsError> {
    use rustls_pki_types::pem::PemObject as _;
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.display().to_string(),
        source,
    })?;
    rustls_pki_types::PrivateKeyDer::from_pem_slice(&pem).map_err(|err| TlsError::Invalid {
        flag,
        path: path.display().to_string(),
        reason: format!("no usable private key: {err}"),
    })
}

/// SHA-256 fingerprint of a DER certificate, as `AB:CD:…` (what `openssl
/// x509 -fingerprint -sha256` prints), for an operator to compare by eye.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
