//! Identities and where a server finds them.
//!
//! Tokens are stored hashed in one place, store-svc's database, which every
//! replica of every service reads: store-svc directly, the others through
//! `edge.internal.v1.IdentityService`. Each server keeps the table in
//! memory and loads it again every `--identity-refresh` (2 s by default),
//! so a revoked token stops working everywhere within that, plus one call.
//! A token the table does not know triggers an early reload (at most one
//! every [`MISS_RELOAD_GAP`]), so a token added a moment ago works at once
//! and unknown tokens cannot make a server hammer the database.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use edge_credentials::TokenHash;

use super::Scopes;
use super::limits::{RateLimiter, Rates};
use crate::shutdown::Shutdown;

/// The least time between two reloads caused by unknown tokens.
const MISS_RELOAD_GAP: Duration = Duration::from_millis(250);

/// One credential as stored: a token's hash, its identity and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    /// The identity's name (`operator`, `gateway-7`, …).
    pub name: String,
    /// The SHA-256 of its token.
    pub token_hash: TokenHash,
    /// What it may call.
    pub scopes: Scopes,
    /// Its own rates, where set; the site's defaults otherwise.
    pub rates: Rates,
}

impl IdentityRecord {
    /// A record from its stored form (store-svc's row, or the same sent by
    /// `IdentityService`): the token's SHA-256 in hex, the scopes
    /// comma-separated, the identity's own rates.
    pub fn parse(
        name: String,
        token_sha256: &str,
        scopes: &str,
        calls_per_second: Option<u32>,
        readings_per_second: Option<u32>,
    ) -> Result<Self, LoadError> {
        let bad = |e: String| LoadError(format!("identity {name:?}: {e}"));
        Ok(Self {
            token_hash: TokenHash::from_hex(token_sha256).map_err(|e| bad(e.to_string()))?,
            scopes: Scopes::parse(scopes).map_err(|e| bad(e.to_string()))?,
            rates: Rates {
                calls_per_second,
                readings_per_second,
                burst_seconds: None,
            },
            name,
        })
    }
}

/// Who made a call; put into each call's extensions by the credential
/// check, so a handler can record who wrote what.
#[derive(Debug)]
pub struct Identity {
    /// The identity's name.
    pub name: Arc<str>,
    /// What it may call.
    pub scopes: Scopes,
    /// Its rate limits (shared by every call it makes on this server).
    pub limiter: RateLimiter,
    /// Set when a reload no longer holds this credential (revoked): a
    /// stream it opened before is refused at its next message.
    pub retired: std::sync::atomic::AtomicBool,
}

impl Identity {
    /// Takes `count` readings from this identity's reading rate on server
    /// `server` (a metrics label): `RESOURCE_EXHAUSTED` with a retry delay
    /// when over it, counted in `rate_limited_total{kind="readings"}`.
    pub fn take_readings(&self, count: usize, server: &'static str) -> Result<(), tonic::Status> {
        if self.retired.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(tonic::Status::unauthenticated(format!(
                "the credential of identity {:?} was revoked",
                self.name
            )));
        }
        // An empty batch still costs a reading: free messages would let a
        // stream make unbounded work.
        self.limiter
            .check_readings(count.max(1))
            .map_err(|retry_after| {
                crate::security_metrics::metrics().rate_limited.add(
                    1,
                    &crate::security_metrics::labels(server, "kind", "readings"),
                );
                super::limits::over_rate(&self.name, "readings-per-second", retry_after)
            })
    }
}

/// What a load of the table found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Every valid (not revoked) credential.
    pub records: Vec<IdentityRecord>,
    /// Names with no valid credential left: a client certificate naming one
    /// is refused.
    pub revoked_names: Vec<String>,
}

/// A boxed future of a table load.
pub type LoadFuture<'a> = Pin<Box<dyn Future<Output = Result<Loaded, LoadError>> + Send + 'a>>;

/// Where a server reads the identities from.
pub trait IdentitySource: Send + Sync + 'static {
    /// The valid credentials and the revoked names.
    fn load(&self) -> LoadFuture<'_>;
}

/// The identities could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("cannot load identities: {0}")]
pub struct LoadError(pub String);

#[derive(Default)]
struct Table {
    by_hash: HashMap<TokenHash, Arc<Identity>>,
    revoked_names: std::collections::HashSet<String>,
    loaded: bool,
}

/// What a token turned out to be.
pub enum Lookup {
    /// A valid credential.
    Found(Arc<Identity>),
    /// Not a valid credential (unknown, or revoked).
    Unknown,
    /// The table has never loaded (store-svc unreachable since start), so
    /// nothing but the server's own configured identities can be checked.
    NotLoaded,
}

/// The identities a server accepts.
pub struct Identities {
    table: RwLock<Arc<Table>>,
    /// Identities from configuration (the mesh token): valid before the
    /// first load and whatever the database says.
    configured: Vec<IdentityRecord>,
    source: Arc<dyn IdentitySource>,
    defaults: Rates,
    /// When a miss last reloaded; held while it does, so concurrent
    /// misses wait for that reload instead of being refused meanwhile.
    last_miss_reload: tokio::sync::Mutex<Option<Instant>>,
}

impl Identities {
    /// Identities read from `source`, plus `configured` ones, with
    /// `defaults` for identities without rates of their own.
    pub fn new(
        source: Arc<dyn IdentitySource>,
        configured: Vec<IdentityRecord>,
        defaults: Rates,
    ) -> Arc<Self> {
        let identities = Arc::new(Self {
            table: RwLock::new(Arc::new(Table::default())),
            configured,
            source,
            defaults,
            last_miss_reload: tokio::sync::Mutex::new(None),
        });
        identities.install(Loaded::default(), false);
        identities
    }

    fn current(&self) -> Arc<Table> {
        match self.table.read() {
            Ok(table) => table.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the table, keeping each unchanged identity (and so its rate
    /// limiter's state).
    fn install(&self, loaded_table: Loaded, loaded: bool) {
        let old = self.current();
        let mut by_hash = HashMap::new();
        for record in self.configured.iter().cloned().chain(loaded_table.records) {
            let rates = record.rates.or(self.defaults);
            let kept = old.by_hash.get(&record.token_hash).filter(|i| {
                *i.name == *record.name && i.scopes == record.scopes && i.limiter.rates() == rates
            });
            let identity = match kept {
                Some(identity) => identity.clone(),
                None => Arc::new(Identity {
                    name: record.name.into(),
                    scopes: record.scopes,
                    limiter: RateLimiter::new(rates),
                    retired: std::sync::atomic::AtomicBool::new(false),
                }),
            };
            by_hash.insert(record.token_hash, identity);
        }
        for (hash, identity) in &old.by_hash {
            if !by_hash.contains_key(hash) {
                identity
                    .retired
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let table = Arc::new(Table {
            by_hash,
            revoked_names: loaded_table.revoked_names.into_iter().collect(),
            loaded,
        });
        match self.table.write() {
            Ok(mut slot) => *slot = table,
            Err(poisoned) => *poisoned.into_inner() = table,
        }
    }

    /// Loads the table from the source now.
    pub async fn reload(&self) -> Result<(), LoadError> {
        let loaded = self.source.load().await?;
        self.install(loaded, true);
        Ok(())
    }

    /// The identity `token` belongs to.
    pub async fn lookup(&self, token: &str) -> Lookup {
        let hash = TokenHash::of(token);
        let table = self.current();
        if let Some(identity) = table.by_hash.get(&hash) {
            return Lookup::Found(identity.clone());
        }
        {
            let mut last = self.last_miss_reload.lock().await;
            // Another miss may have reloaded while this one waited.
            if let Some(identity) = self.current().by_hash.get(&hash) {
                return Lookup::Found(identity.clone());
            }
            let now = Instant::now();
            if last.is_none_or(|at| now.duration_since(at) >= MISS_RELOAD_GAP) {
                *last = Some(now);
                if self.reload().await.is_err() {
                    // The token may be new: say "retry", not "invalid".
                    return Lookup::NotLoaded;
                }
                return match self.current().by_hash.get(&hash) {
                    Some(identity) => Lookup::Found(identity.clone()),
                    None => Lookup::Unknown,
                };
            }
        }
        if self.current().loaded {
            Lookup::Unknown
        } else {
            Lookup::NotLoaded
        }
    }

    /// Whether `name` has been revoked and has no valid credential left.
    pub fn is_revoked(&self, name: &str) -> bool {
        self.current().revoked_names.contains(name)
    }

    /// Named identities presented through a client certificate: the
    /// identity of that name in the table, if any. Identities from
    /// configuration (the services' own) are never found by name: a
    /// certificate cannot stand for them.
    pub fn by_name(&self, name: &str) -> Option<Arc<Identity>> {
        if self.configured.iter().any(|c| c.name == name) {
            return None;
        }
        self.current()
            .by_hash
            .values()
            .find(|i| &*i.name == name)
            .cloned()
    }

    /// Whether `name` is an identity of configuration (the services' own).
    pub fn is_configured(&self, name: &str) -> bool {
        self.configured.iter().any(|c| c.name == name)
    }

    /// Reloads every `every` until `stop`, the first time `every` from now
    /// (the caller loads first); a failed load keeps the last table and is
    /// logged once per failure streak.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration, stop: Shutdown) {
        let identities = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = stop.cancelled() => return,
                }
                let Some(this) = identities.upgrade() else {
                    return;
                };
                match this.reload().await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("identities loaded again");
                    }
                    Ok(()) => {}
                    Err(err) if !failing => {
                        failing = true;
                        tracing::warn!(%err, "cannot reload identities; keeping the last ones loaded");
                    }
                    Err(_) => {}
                }
                drop(this);
            }
        });
    }
}
