//! What a client of the mesh trusts: the site CA (or a configured one),
//! never "any certificate".

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig};

use super::TlsError;

/// TLS for a gRPC client that trusts the CA certificates in `ca` (PEM), or
/// the system's roots when `None`.
pub fn grpc_client_tls(ca: Option<&Path>, flag: &'static str) -> Result<ClientTlsConfig, TlsError> {
    super::install_provider();
    let config = ClientTlsConfig::new();
    match ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| TlsError::Read {
                flag,
                path: path.display().to_string(),
                source,
            })?;
            // Checked here so a wrong file is named at start, not at the
            // first call.
            super::read_certs(path, flag)?;
            Ok(config.ca_certificate(Certificate::from_pem(pem)))
        }
        None => Ok(config.with_enabled_roots()),
    }
}
