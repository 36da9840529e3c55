//! HTTPS for both ports (`--tls-cert`/`--tls-key`), as the site's own
//! ports do it: the rustls configuration of [`edge_runtime::tls`], whose
//! certificate is read again when its files change, so a renewed
//! certificate reaches the next connection without a restart.
//!
//! The cloud speaks HTTP/1.1 only, so ALPN offers `http/1.1` (the site's
//! configuration offers `h2`, which a client would then try to speak).
//!
//! The handshake runs in the connection's own task, bounded by
//! `--header-timeout`: a client that opens a socket and never completes the
//! handshake is closed like one that never sends its headers.

use std::path::PathBuf;
use std::sync::Arc;

use edge_runtime::tls::{ClientAuth, ServerTlsFiles, TlsError};
use tokio_rustls::TlsAcceptor;

/// The acceptor of both ports for the certificate in `cert` and the key in
/// `key`. A pair that does not load is an error naming the flag.
pub(crate) fn acceptor(cert: PathBuf, key: PathBuf) -> Result<TlsAcceptor, TlsError> {
    let config = edge_runtime::tls::server_config(&ServerTlsFiles {
        cert,
        key,
        client_ca: None,
        client_auth: ClientAuth::None,
    })?;
    let mut config = Arc::unwrap_or_clone(config);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
