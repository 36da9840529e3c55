//! Where store-svc's own server finds the identities: its database, the one
//! every other service reads through `IdentityService`. At start the
//! operator's token (a file: `<data-dir>/operator.token`, made on first
//! start, or a mounted Secret) is made the valid `operator` identity.

use std::sync::Arc;

use edge_credentials::TokenHash;
use edge_runtime::auth::{IdentityRecord, IdentitySource, LoadError, LoadFuture, Loaded, Scopes};

use crate::db::{Database, DbError, IdentityRow};

/// The name of the operator's identity.
pub const OPERATOR: &str = "operator";

/// The identities in the site database.
pub struct StoredIdentities {
    db: Arc<Database>,
}

impl StoredIdentities {
    /// The identities in `db`.
    pub fn new(db: Arc<Database>) -> Self {
        Self { db }
    }
}

/// A stored rate (a BIGINT column) as the guard and the listings use it.
pub fn stored_rate(value: Option<i64>) -> Option<u32> {
    value.map(|v| u32::try_from(v.max(0)).unwrap_or(u32::MAX))
}

/// A stored row as the guard uses it.
pub fn record(row: IdentityRow) -> Result<IdentityRecord, LoadError> {
    IdentityRecord::parse(
        row.name,
        &row.token_sha256,
        &row.scopes,
        stored_rate(row.calls_per_second),
        stored_rate(row.readings_per_second),
    )
}

/// Every row of the table (revoked ones too) as the guard uses it: the
/// valid credentials, and the names none of whose tokens is valid.
pub fn loaded(rows: Vec<IdentityRow>) -> Result<Loaded, LoadError> {
    let valid: std::collections::HashSet<String> = rows
        .iter()
        .filter(|r| r.revoked_at_us.is_none())
        .map(|r| r.name.clone())
        .collect();
    let mut revoked_names: Vec<String> = rows
        .iter()
        .filter(|r| !valid.contains(&r.name))
        .map(|r| r.name.clone())
        .collect();
    revoked_names.sort();
    revoked_names.dedup();
    Ok(Loaded {
        records: rows
            .into_iter()
            .filter(|r| r.revoked_at_us.is_none())
            .map(record)
            .collect::<Result<_, _>>()?,
        revoked_names,
    })
}

impl IdentitySource for StoredIdentities {
    fn load(&self) -> LoadFuture<'_> {
        Box::pin(async move {
            let rows = self
                .db
                .identities(true)
                .await
                .map_err(|e| LoadError(e.to_string()))?;
            loaded(rows)
        })
    }
}

/// Makes `token` the operator's: every scope a person uses, no rate limit.
/// `Ok(false)` when that token was revoked (it never comes back).
pub async fn ensure_operator(db: &Database, token: &str, now_us: i64) -> Result<bool, DbError> {
    db.ensure_identity(&IdentityRow {
        name: OPERATOR.into(),
        token_sha256: TokenHash::of(token).to_hex(),
        scopes: Scopes::operator().to_string(),
        calls_per_second: Some(0),
        readings_per_second: Some(0),
        created_at_us: now_us,
        created_by: "store-svc start-up (--operator-token-file)".into(),
        revoked_at_us: None,
    })
    .await
}
