//! Whether PostgreSQL makes a commit durable: a service that acknowledges
//! what it stored (the site to its gateways, the cloud to its sites) must
//! not run on a server that can lose a committed transaction in a crash,
//! unless the operator accepted that risk.

use sqlx::{Pool, Postgres};

/// The server settings a durable commit depends on, and the values that
/// keep it durable.
const DURABLE_SETTINGS: [(&str, &[&str]); 3] = [
    // Without fsync the server never forces its WAL to disk.
    ("fsync", &["on"]),
    // `off` acknowledges a commit before its WAL record is flushed; `local`,
    // `remote_write` and `remote_apply` all flush locally first.
    (
        "synchronous_commit",
        &["on", "local", "remote_write", "remote_apply"],
    ),
    // Without full page images a crash during a page write can tear it.
    ("full_page_writes", &["on"]),
];

/// PostgreSQL is set up so that a commit may not survive a crash.
#[derive(Debug, thiserror::Error)]
pub enum DurabilityError {
    /// A setting lets a committed transaction be lost.
    #[error(
        "PostgreSQL's {setting} is {value:?}, so data acknowledged as stored could be lost in a \
         crash or power cut; set {setting} to one of [{durable}] on the server (or, to run \
         anyway, pass {flag})"
    )]
    NotDurable {
        /// The server setting.
        setting: &'static str,
        /// Its value as the server reports it.
        value: String,
        /// The values that keep commits durable.
        durable: String,
        /// The flag (and environment variable) that accepts the risk.
        flag: &'static str,
    },
    /// The settings could not be read.
    #[error("cannot read PostgreSQL's durability settings: {0}")]
    Query(#[from] sqlx::Error),
}

/// Refuses a PostgreSQL server on which a committed transaction may not
/// survive a crash, naming the setting, unless `accept_risk` (then the risk
/// is logged at every start; `flag` names the setting that accepted it).
/// The values are the server's as this connection sees them, so a
/// per-database or per-role override counts.
pub async fn check_postgres_durability(
    pool: &Pool<Postgres>,
    accept_risk: bool,
    flag: &'static str,
) -> Result<(), DurabilityError> {
    for (setting, durable) in DURABLE_SETTINGS {
        let value: String = sqlx::query_scalar("SELECT current_setting($1)")
            .bind(setting)
            .fetch_one(pool)
            .await?;
        if durable.contains(&value.as_str()) {
            continue;
        }
        if !accept_risk {
            return Err(DurabilityError::NotDurable {
                setting,
                value,
                durable: durable.join(", "),
                flag,
            });
        }
        tracing::warn!(
            setting,
            value = %value,
            accepted_by = flag,
            "PostgreSQL does not make commits durable; acknowledged data may be lost in a crash \
             or power cut"
        );
    }
    Ok(())
}
