//! The identities table, written once for both backends: tokens stored as
//! their SHA-256, named, scoped, and revoked by setting `revoked_at_us`
//! (rows are kept, so the record says who existed and when).

use edge_sql::WriteConn;
use sqlx::FromRow;

use super::DbError;
use super::backend::Backend;
use super::faults::WriteOp;
use super::store::Store;

/// One identity as stored (never its token).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct IdentityRow {
    /// The identity's name.
    pub name: String,
    /// SHA-256 of its token, hex.
    pub token_sha256: String,
    /// Comma-separated scopes.
    pub scopes: String,
    /// Its call rate; `None`: the site's default; 0: unlimited.
    pub calls_per_second: Option<i64>,
    /// Its reading rate; `None`: the site's default; 0: unlimited.
    pub readings_per_second: Option<i64>,
    /// When it was created, µs since the epoch.
    pub created_at_us: i64,
    /// The identity that created it.
    pub created_by: String,
    /// When it was revoked.
    pub revoked_at_us: Option<i64>,
}

const COLUMNS: &str = "name, token_sha256, scopes, calls_per_second, readings_per_second, \
                       created_at_us, created_by, revoked_at_us";

#[edge_sql::sql_bounds]
impl<DB: Backend> Store<DB>
where
    for<'r> IdentityRow: FromRow<'r, DB::Row>,
{
    /// Inserts `row`, valid, in the transaction `tx`.
    async fn insert(tx: &mut WriteConn<DB>, row: &IdentityRow) -> Result<(), DbError> {
        let sql =
            format!("INSERT INTO identities ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)");
        sqlx::query(&sql)
            .bind(row.name.as_str())
            .bind(row.token_sha256.as_str())
            .bind(row.scopes.as_str())
            .bind(row.calls_per_second)
            .bind(row.readings_per_second)
            .bind(row.created_at_us)
            .bind(row.created_by.as_str())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Identities, valid ones only unless `include_revoked`, by name.
    pub async fn identities(&self, include_revoked: bool) -> Result<Vec<IdentityRow>, DbError> {
        let filter = if include_revoked {
            ""
        } else {
            " WHERE revoked_at_us IS NULL"
        };
        let sql = format!("SELECT {COLUMNS} FROM identities{filter} ORDER BY name, id");
        Ok(sqlx::query_as(&sql)
            .fetch_all(&mut *self.pools.read().acquire().await?)
            .await?)
    }

    /// Adds `row`; `Ok(false)` when a valid identity has that name already.
    pub async fn add_identity(&self, row: &IdentityRow) -> Result<bool, DbError> {
        let mut tx = self.write_tx(WriteOp::Identities).await?;
        let taken: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM identities WHERE name = $1 AND revoked_at_us IS NULL",
        )
        .bind(row.name.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if taken.is_some() {
            tx.rollback().await?;
            return Ok(false);
        }
        Self::insert(&mut tx, row).await?;
        tx.statements_done().await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Revokes the valid identity `name` at `now_us`; the row as revoked,
    /// or `None` when there is no valid identity of that name.
    pub async fn revoke_identity(
        &self,
        name: &str,
        now_us: i64,
    ) -> Result<Option<IdentityRow>, DbError> {
        let mut tx = self.write_tx(WriteOp::Identities).await?;
        let sql = format!(
            "UPDATE identities SET revoked_at_us = $1 WHERE name = $2 AND revoked_at_us IS NULL \
             RETURNING {COLUMNS}"
        );
        let row: Option<IdentityRow> = sqlx::query_as(&sql)
            .bind(now_us)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        tx.statements_done().await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Makes `row` the valid identity of its name: nothing when it already
    /// is (same token), otherwise the previous one is revoked and `row`
    /// added. How a configured token (the operator's file) takes effect.
    /// `Ok(false)`, changing nothing, when `row`'s token was revoked: a
    /// revoked token never comes back by a restart.
    pub async fn ensure_identity(&self, row: &IdentityRow) -> Result<bool, DbError> {
        let mut tx = self.write_tx(WriteOp::Identities).await?;
        let current: Option<String> = sqlx::query_scalar(
            "SELECT token_sha256 FROM identities WHERE name = $1 AND revoked_at_us IS NULL",
        )
        .bind(row.name.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if current.as_deref() == Some(row.token_sha256.as_str()) {
            tx.rollback().await?;
            return Ok(true);
        }
        let revoked: Option<i64> =
            sqlx::query_scalar("SELECT id FROM identities WHERE token_sha256 = $1")
                .bind(row.token_sha256.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if revoked.is_some() {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE identities SET revoked_at_us = $1 WHERE name = $2 AND revoked_at_us IS NULL",
        )
        .bind(row.created_at_us)
        .bind(row.name.as_str())
        .execute(&mut *tx)
        .await?;
        Self::insert(&mut tx, row).await?;
        tx.statements_done().await?;
        tx.commit().await?;
        Ok(true)
    }
}
