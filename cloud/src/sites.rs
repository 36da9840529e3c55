//! Which site a bearer token speaks for: the running cloud's registry of
//! site tokens, and the `--site-token SITE_ID=TOKEN` setting.
//!
//! Tokens live in the database, hashed (`site_tokens`, written by `edge
//! cloud sites`, see [`crate::sites_command`]). The server keeps an
//! in-memory map from token hash to site id so a request costs no query:
//!
//! - the whole map is reloaded from the database every
//!   `--site-token-refresh` (2 s by default), so a token revoked by `edge
//!   cloud sites revoke`, even from another process, stops working within
//!   that interval;
//! - a token missing from the map is looked up in the database once (a read
//!   through), so a token issued a moment ago works at once. Revocation never
//!   goes through that path: a revoked token is only ever dropped by the
//!   next reload.
//!
//! The map is keyed by the token's SHA-256, never the token: a timing
//! difference in the lookup can only tell a caller about the hash of what it
//! sent, which says nothing about any stored token.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use edge_credentials::TokenHash;
use edge_versioning::CLOUD_SITE_ID;
use tokio_util::sync::CancellationToken;

use crate::db::{CloudDb, DbError};

/// Longest site id, in characters.
pub const MAX_SITE_ID_CHARS: usize = 128;

/// The prefix of a site's token to the cloud: recognisable in a log or a
/// secret scanner.
pub const SITE_TOKEN_PREFIX: &str = "edgecloud_";

/// What is wrong with `site_id` as a site id, if anything. `cloud` names the
/// cloud's own versions, so no site may use it.
pub(crate) fn site_id_problem(site_id: &str) -> Option<String> {
    if site_id.is_empty() || site_id.chars().count() > MAX_SITE_ID_CHARS {
        return Some(format!("a site id has 1 to {MAX_SITE_ID_CHARS} characters"));
    }
    if site_id.chars().any(char::is_control) {
        return Some("a site id has no control characters".into());
    }
    if site_id == CLOUD_SITE_ID {
        return Some(format!(
            "the site id {CLOUD_SITE_ID:?} is reserved for the cloud itself"
        ));
    }
    None
}

/// One `--site-token SITE_ID=TOKEN`: a token registered for a site at start,
/// so a test or a demo can run a cloud and a site with a known token without
/// a separate `edge cloud sites add`. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SiteToken {
    /// The site.
    pub site_id: String,
    /// Its token, as the site will send it.
    pub token: String,
}

impl SiteToken {
    /// `token` for `site_id`.
    pub fn new(site_id: impl Into<String>, token: impl Into<String>) -> Self {
        SiteToken {
            site_id: site_id.into(),
            token: token.into(),
        }
    }
}

impl std::fmt::Debug for SiteToken {
    // The token never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SiteToken({}=<set>)", self.site_id)
    }
}

impl FromStr for SiteToken {
    type Err = String;

    // The message never repeats the value: it holds a secret.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((site_id, token)) = text.split_once('=') else {
            return Err("--site-token takes SITE_ID=TOKEN (no '=' found)".into());
        };
        let (site_id, token) = (site_id.trim(), token.trim());
        if let Some(problem) = site_id_problem(site_id) {
            return Err(format!("--site-token: the site id is not valid: {problem}"));
        }
        if token.is_empty() {
            return Err(format!("--site-token {site_id}=: the token is empty"));
        }
        Ok(SiteToken::new(site_id, token))
    }
}

/// The running cloud's map from token hash to site id (see the module).
pub(crate) struct SiteRegistry {
    db: Arc<CloudDb>,
    tokens: RwLock<Arc<HashMap<TokenHash, Arc<str>>>>,
}

impl SiteRegistry {
    /// A registry over `db`, loaded once.
    pub async fn load(db: Arc<CloudDb>) -> Result<SiteRegistry, DbError> {
        let registry = SiteRegistry {
            db,
            tokens: RwLock::new(Arc::default()),
        };
        registry.reload().await?;
        Ok(registry)
    }

    /// Replaces the map with the database's active tokens; returns how many.
    pub async fn reload(&self) -> Result<usize, DbError> {
        let rows = self.db.active_site_tokens().await?;
        let mut tokens = HashMap::with_capacity(rows.len());
        for (hash, site) in rows {
            match TokenHash::from_hex(&hash) {
                Ok(hash) => {
                    tokens.insert(hash, Arc::from(site));
                }
                // Written by hand, or damaged: that site cannot sign in until
                // it gets a new token, and the operator is told why.
                Err(err) => tracing::warn!(site_id = %site, %err, "ignoring a stored site token"),
            }
        }
        let count = tokens.len();
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tokens);
        Ok(count)
    }

    /// The site `token` speaks for, if it is an active token.
    pub async fn site_of(&self, token: &str) -> Result<Option<Arc<str>>, DbError> {
        let hash = TokenHash::of(token);
        let known = self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
            .cloned();
        if known.is_some() {
            return Ok(known);
        }
        // A miss may be a token issued since the last reload.
        let Some(site) = self.db.site_of_token_hash(&hash.to_hex()).await? else {
            return Ok(None);
        };
        let site: Arc<str> = Arc::from(site);
        let mut guard = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        let mut tokens = HashMap::clone(&guard);
        tokens.insert(hash, site.clone());
        *guard = Arc::new(tokens);
        Ok(Some(site))
    }

    /// Reloads every `every` until `shutdown`. A failed reload keeps the
    /// previous map (a database hiccup must not lock every site out) and is
    /// logged; the next one tries again.
    pub async fn refresh_until(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if let Err(err) = self.reload().await {
                tracing::warn!(%err, "cannot reload the site tokens; keeping the previous ones");
            }
        }
    }
}

/// Now, in µs since the Unix epoch (what `site_tokens` stores).
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_token_flags_parse_without_echoing_the_token() {
        let parsed: SiteToken = "ship-1=secret".parse().expect("parses");
        assert_eq!(parsed, SiteToken::new("ship-1", "secret"));
        assert!(!format!("{parsed:?}").contains("secret"));
        let err = "ship-1secret"
            .parse::<SiteToken>()
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("SITE_ID=TOKEN") && !err.contains("secret"),
            "{err}"
        );
        let err = "cloud=secret"
            .parse::<SiteToken>()
            .err()
            .unwrap_or_default();
        assert!(err.contains("reserved") && !err.contains("secret"), "{err}");
        let err = "ship-1= ".parse::<SiteToken>().err().unwrap_or_default();
        assert!(err.contains("empty"), "{err}");
    }
}
