//! Bearer tokens, the one credential every caller of a site and every site
//! of the cloud presents.
//!
//! - A token is 32 random bytes, base64url, behind a prefix that says what
//!   it is for (`edge_` for a site's identities, `edgecloud_` for a site's
//!   key to the cloud), so a leaked token is recognisable in a log or a
//!   secret scanner.
//! - Only its SHA-256 is stored ([`TokenHash`]). The tokens are random and
//!   long, so a fast hash is enough: there is nothing to guess by brute force
//!   that a slow hash would protect.
//! - A token shown to an operator is shown once; the files that hold one
//!   (an operator token, an admin credential) are written with mode 0600.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// A fresh token: `prefix` then 43 base64url characters of randomness.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The SHA-256 of a token: what is stored and compared, never the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of `token` as presented (surrounding whitespace ignored).
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.trim().as_bytes()).into())
    }

    /// Lower-case hex, as stored.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses a stored hex hash.
    pub fn from_hex(text: &str) -> Result<Self, BadHash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut out).map_err(|_| BadHash)?;
        Ok(Self(out))
    }

    /// Whether `token` hashes to this, in time independent of where the
    /// hashes differ.
    pub fn matches(&self, token: &str) -> bool {
        Self::of(token).0.ct_eq(&self.0).into()
    }
}

impl fmt::Debug for TokenHash {
    // The first bytes only: enough to tell two apart in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

/// A stored hash that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("a stored token hash is not 64 hex digits")]
pub struct BadHash;

/// The token of an `Authorization: Bearer <token>` value (the scheme is
/// case-insensitive, as HTTP says).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A secret file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file holds nothing but whitespace.
    #[error("{path} is empty")]
    Empty {
        /// The file.
        path: String,
    },
}

/// Reads a secret (a token) from `path`, trimmed.
pub fn read_secret_file(path: &Path) -> Result<String, SecretFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretFileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(SecretFileError::Empty {
            path: path.display().to_string(),
        });
    }
    Ok(secret.to_owned())
}

/// Writes `secret` to `path` with mode 0600, whole or not at all (a
/// temporary file renamed into place), creating the parent directory.
pub fn write_secret_file(path: &Path, secret: &str) -> Result<(), SecretFileError> {
    let io = |source| SecretFileError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    // A stale temporary file (or a link planted in its place) goes first,
    // and the new one is created exclusively: O_EXCL never follows a link.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(io(err)),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The token in `path` if the file exists, or a new one (`prefix`) written
/// there with mode 0600. The boolean says whether it was created.
pub fn load_or_create(path: &Path, prefix: &str) -> Result<(String, bool), SecretFileError> {
    if path.exists() {
        return read_secret_file(path).map(|t| (t, false));
    }
    let token = generate(prefix);
    write_secret_file(path, &token)?;
    Ok((token, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_prefixed() {
        let (a, b) = (generate("edge_"), generate("edge_"));
        assert_ne!(a, b);
        assert!(a.starts_with("edge_"));
        assert_eq!(a.len(), "edge_".len() + 43);
    }

    #[test]
    fn hashes_match_only_their_token() {
        let token = generate("edge_");
        let hash = TokenHash::of(&token);
        assert!(hash.matches(&token));
        assert!(hash.matches(&format!(" {token}\n")));
        assert!(!hash.matches(&generate("edge_")));
        assert_eq!(TokenHash::from_hex(&hash.to_hex()).ok(), Some(hash));
        assert!(TokenHash::from_hex("zz").is_err());
    }

    #[test]
    fn bearer_values_are_parsed() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer  "), None);
    }

    #[test]
    fn secret_files_are_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/operator.token");
        let (first, created) = load_or_create(&path, "edge_").expect("create");
        assert!(created);
        let (again, created) = load_or_create(&path, "edge_").expect("reuse");
        assert!(!created);
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, " \n").expect("write");
        assert!(matches!(
            read_secret_file(&path),
            Err(SecretFileError::Empty { .. })
        ));
    }
}
