//! The quick start's own PKI: a site CA and a server certificate, created
//! in `<data-dir>/tls/` the first time `edge up` starts without a
//! certificate configured.
//!
//! - `ca.pem` (the CA certificate, what clients trust) and `ca-key.pem`
//!   (mode 0600) are made once and kept: every client that trusts the CA
//!   keeps trusting the site across restarts.
//! - `server.pem` and `server-key.pem` are issued again at every start, so
//!   the names they carry (`localhost`, `127.0.0.1`, `::1`, the host's name
//!   and any `--tls-san`) always match the current settings.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::TlsError;

/// The files of a site's PKI.
#[derive(Debug, Clone)]
pub struct SitePki {
    /// The CA certificate clients trust.
    pub ca: PathBuf,
    /// The server certificate every port presents.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// SHA-256 fingerprint of the CA certificate.
    pub ca_fingerprint: String,
    /// Whether the CA was created by this call.
    pub created_ca: bool,
}

/// The CA certificate's subject, the same every time it is rebuilt from
/// its key to sign a new server certificate.
fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "edge mesh");
    name.push(DnType::CommonName, "edge site CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Long-lived: an offline site cannot renew it on a schedule.
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(params)
}

/// The names the server certificate carries: loopback, the host's name,
/// and `extra`.
pub fn server_names(extra: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if let Ok(host) = rustix::system::uname().nodename().to_str()
        && !host.is_empty()
    {
        names.push(host.to_owned());
    }
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

fn write(path: &Path, text: &str) -> Result<(), TlsError> {
    edge_credentials::write_secret_file(path, text).map_err(|source| TlsError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Makes sure `<dir>` holds a site CA and a fresh server certificate for
/// `names`.
pub fn ensure(dir: &Path, names: &[String]) -> Result<SitePki, TlsError> {
    super::install_provider();
    let ca_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca-key.pem");
    let created_ca = !(ca_path.exists() && ca_key_path.exists());
    let (ca_key, ca_der) = if created_ca {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write(&ca_key_path, &key.serialize_pem())?;
        // Written last: its presence says the pair is complete.
        write(&ca_path, &cert.pem())?;
        (key, cert.der().to_vec())
    } else {
        let pem = std::fs::read_to_string(&ca_key_path).map_err(|source| TlsError::Read {
            flag: "--data-dir",
            path: ca_key_path.display().to_string(),
            source,
        })?;
        let key = KeyPair::from_pem(&pem)?;
        let der = super::read_certs(&ca_path, "--data-dir")?
            .into_iter()
            .next()
            .map(|c| c.to_vec())
            .unwrap_or_default();
        (key, der)
    };
    let issuer = Issuer::new(ca_params()?, ca_key);

    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "edge site");
    params.distinguished_name = name;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let server = params.signed_by(&server_key, &issuer)?;
    let key_path = dir.join("server-key.pem");
    let cert_path = dir.join("server.pem");
    write(&key_path, &server_key.serialize_pem())?;
    write(&cert_path, &server.pem())?;

    Ok(SitePki {
        ca: ca_path,
        cert: cert_path,
        key: key_path,
        ca_fingerprint: super::fingerprint(&ca_der),
        created_ca,
    })
}

/// A client certificate signed by the site CA in `dir`, for a gateway that
/// authenticates with mTLS (`CN` = `name`). Returns (certificate PEM, key
/// PEM).
pub fn issue_client_cert(dir: &Path, name: &str) -> Result<(String, String), TlsError> {
    let ca_key_path = dir.join("ca-key.pem");
    let pem = std::fs::read_to_string(&ca_key_path).map_err(|source| TlsError::Read {
        flag: "--data-dir",
        path: ca_key_path.display().to_string(),
        source,
    })?;
    let issuer = Issuer::new(ca_params()?, KeyPair::from_pem(&pem)?);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}
