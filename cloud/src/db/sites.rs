//! The site token table (`site_tokens`): which token hash names which site,
//! and when each token was issued and revoked. Written by `edge cloud sites`
//! and by `--site-token` at start; read by the running cloud's registry
//! ([`crate::sites`]) every refresh and on a miss.
//!
//! At most one token per site is active (a partial unique index); rotating
//! revokes the active one and inserts the new one in one transaction, so a
//! site never has two active tokens, and a reader never sees none between.

use super::DbError;
use super::backend::Backend;
use super::store::Store;

/// One stored token, as listed: never the token, never its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteTokenRow {
    /// The site the token belongs to.
    pub site_id: String,
    /// When it was issued, µs since the Unix epoch.
    pub created_at_us: i64,
    /// When it was revoked (or replaced by a rotation); `None` while active.
    pub revoked_at_us: Option<i64>,
}

/// When issuing a token for a site that already has an active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replace {
    /// Refuse (`sites add` without `--rotate`): a second `add` is more
    /// likely a typo than a wish to lock the site out.
    Never,
    /// Revoke the active token and issue the new one (`--rotate`).
    Always,
    /// `--site-token` at start: keep the active token if it is this one,
    /// otherwise replace it (a revoked row with this hash is reactivated:
    /// the flag says this token is the site's).
    IfDifferent,
}

/// What issuing a token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Issued {
    /// The token is now the site's active one.
    Now,
    /// It already was (only with [`Replace::IfDifferent`]).
    Unchanged,
    /// The site has an active token and [`Replace::Never`] was asked.
    ActiveExists,
    /// The hash is already stored for another site: a token names one site.
    OtherSite(String),
}

#[edge_sql::sql_bounds]
impl<DB: Backend> Store<DB> {
    /// Every active token: (hash hex, site id).
    pub async fn active_site_tokens(&self) -> Result<Vec<(String, String)>, DbError> {
        let rows = sqlx::query_as::<DB, (String, String)>(
            "SELECT token_hash, site_id FROM site_tokens WHERE revoked_at_us IS NULL",
        )
        .fetch_all(self.pools.read())
        .await?;
        Ok(rows)
    }

    /// The site whose active token hashes to `hash` (hex), if any.
    pub async fn site_of_token_hash(&self, hash: &str) -> Result<Option<String>, DbError> {
        let mut sql = String::from(
            "SELECT site_id FROM site_tokens WHERE revoked_at_us IS NULL AND token_hash = ",
        );
        DB::placeholder(&mut sql, 1);
        let site = sqlx::query_as::<DB, (String,)>(&sql)
            .bind(hash)
            .fetch_optional(self.pools.read())
            .await?;
        Ok(site.map(|(site,)| site))
    }

    /// Makes the token hashing to `hash` (hex) `site`'s active one, as
    /// `replace` says, at `now_us`.
    pub async fn issue_site_token(
        &self,
        site: &str,
        hash: &str,
        now_us: i64,
        replace: Replace,
    ) -> Result<Issued, DbError> {
        let mut tx = self.write_tx("sites").await?;
        let conn: &mut DB::Connection = &mut tx;
        let mut sql =
            String::from("SELECT id, site_id, revoked_at_us FROM site_tokens WHERE token_hash = ");
        DB::placeholder(&mut sql, 1);
        let known = sqlx::query_as::<DB, (i64, String, Option<i64>)>(&sql)
            .bind(hash)
            .fetch_optional(&mut *conn)
            .await?;
        let mut sql =
            String::from("SELECT id FROM site_tokens WHERE revoked_at_us IS NULL AND site_id = ");
        DB::placeholder(&mut sql, 1);
        let active = sqlx::query_as::<DB, (i64,)>(&sql)
            .bind(site)
            .fetch_optional(&mut *conn)
            .await?
            .map(|(id,)| id);
        let reuse = match (&known, replace) {
            (Some((_, owner, _)), _) if owner != site => {
                tx.rollback().await?;
                return Ok(Issued::OtherSite(owner.clone()));
            }
            (Some((id, _, None)), Replace::IfDifferent) if active == Some(*id) => {
                tx.rollback().await?;
                return Ok(Issued::Unchanged);
            }
            (Some((id, _, _)), Replace::IfDifferent) => Some(*id),
            _ if active.is_some() && replace == Replace::Never => {
                tx.rollback().await?;
                return Ok(Issued::ActiveExists);
            }
            _ => None,
        };
        let mut sql = String::from("UPDATE site_tokens SET revoked_at_us = ");
        DB::placeholder(&mut sql, 1);
        sql.push_str(" WHERE revoked_at_us IS NULL AND site_id = ");
        DB::placeholder(&mut sql, 2);
        sqlx::query::<DB>(&sql)
            .bind(now_us)
            .bind(site)
            .execute(&mut *conn)
            .await?;
        match reuse {
            Some(id) => {
                let mut sql =
                    String::from("UPDATE site_tokens SET revoked_at_us = NULL, created_at_us = ");
                DB::placeholder(&mut sql, 1);
                sql.push_str(" WHERE id = ");
                DB::placeholder(&mut sql, 2);
                sqlx::query::<DB>(&sql)
                    .bind(now_us)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
            }
            None => {
                let mut sql = String::from(
                    "INSERT INTO site_tokens (site_id, token_hash, created_at_us) VALUES (",
                );
                DB::placeholder(&mut sql, 1);
                sql.push_str(", ");
                DB::placeholder(&mut sql, 2);
                sql.push_str(", ");
                DB::placeholder(&mut sql, 3);
                sql.push(')');
                sqlx::query::<DB>(&sql)
                    .bind(site)
                    .bind(hash)
                    .bind(now_us)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        tx.statements_done().await?;
        tx.commit().await?;
        Ok(Issued::Now)
    }

    /// Revokes `site`'s active token at `now_us`; how many were revoked (0
    /// or 1).
    pub async fn revoke_site_tokens(&self, site: &str, now_us: i64) -> Result<u64, DbError> {
        let mut tx = self.write_tx("sites").await?;
        let conn: &mut DB::Connection = &mut tx;
        let mut sql = String::from("UPDATE site_tokens SET revoked_at_us = ");
        DB::placeholder(&mut sql, 1);
        sql.push_str(" WHERE revoked_at_us IS NULL AND site_id = ");
        DB::placeholder(&mut sql, 2);
        let done = sqlx::query::<DB>(&sql)
            .bind(now_us)
            .bind(site)
            .execute(&mut *conn)
            .await?;
        tx.statements_done().await?;
        tx.commit().await?;
        Ok(DB::rows_affected(&done))
    }

    /// Every token row, by site then issue order.
    pub async fn site_tokens(&self) -> Result<Vec<SiteTokenRow>, DbError> {
        let rows = sqlx::query_as::<DB, (String, i64, Option<i64>)>(
            "SELECT site_id, created_at_us, revoked_at_us FROM site_tokens ORDER BY site_id, id",
        )
        .fetch_all(self.pools.read())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(site_id, created_at_us, revoked_at_us)| SiteTokenRow {
                site_id,
                created_at_us,
                revoked_at_us,
            })
            .collect())
    }
}
