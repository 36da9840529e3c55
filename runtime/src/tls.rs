//! The process's TLS provider. reqwest and rustls are built without a
//! default one (no C toolchain beyond `cc`, one provider for every client:
//! the cloud link, the OTLP exporter), so every HTTP client is built after
//! [`install_provider`].

/// Makes ring the process's TLS provider. Idempotent.
pub fn install_provider() {
    // `Err` means a provider is installed already, which is the goal.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
