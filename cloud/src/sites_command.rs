//! `edge cloud sites add|list|revoke`: issuing, listing and revoking the
//! sites' tokens, straight in the cloud's database (the same
//! `--cloud-data-dir` / `--cloud-database-url` as the server), so they work
//! on the cloud host with or without the server running. A running cloud
//! sees a new token at once and a revoked one within `--site-token-refresh`
//! (see [`crate::sites`]).
//!
//! A token is printed once, by `add`; only its hash is stored, so it cannot
//! be shown again: a lost token is replaced with `add --rotate`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use clap::{Args, Subcommand};
use edge_credentials::TokenHash;
use edge_versioning::{Policy, SkewBound, SystemClock};

use crate::config::CloudArgs;
use crate::db::{CloudDb, DbError, DbOptions, Issued, Replace, Versioning};
use crate::sites::{SITE_TOKEN_PREFIX, now_us, site_id_problem};

/// `edge cloud sites`: the cloud database to work on, and what to do.
#[derive(Debug, Clone, Args)]
pub struct SitesArgs {
    /// Directory of the embedded SQLite database (`cloud.db`), as the
    /// server's.
    #[arg(
        long = "cloud-data-dir",
        env = "EDGE_CLOUD_DATA_DIR",
        default_value = "./cloud-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// The server's `--cloud-database-url`, when it runs on PostgreSQL (or
    /// `sqlite:path`). Never logged.
    #[arg(
        long = "cloud-database-url",
        env = "EDGE_CLOUD_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub action: SitesAction,
}

/// What `edge cloud sites` does.
#[derive(Debug, Clone, Subcommand)]
pub enum SitesAction {
    /// Issue a site's token and print it, once.
    Add {
        /// The site's id (its `--site-id`).
        site_id: String,
        /// Replace the site's active token: the old one stops working.
        #[arg(long)]
        rotate: bool,
    },
    /// The sites' tokens: site id, when issued, when revoked (never a
    /// token).
    List,
    /// Revoke a site's active token: its pushes and pulls are refused
    /// (`401`) until it gets a new one.
    Revoke {
        /// The site's id.
        site_id: String,
    },
}

impl SitesArgs {
    /// `action` on the database `cloud` runs on (tests drive the command
    /// this way against a running cloud's database).
    pub fn for_cloud(cloud: &CloudArgs, action: SitesAction) -> Self {
        SitesArgs {
            data_dir: cloud.data_dir.clone(),
            database_url: cloud.database_url.clone(),
            action,
        }
    }
}

/// `edge cloud sites` failed.
#[derive(Debug, thiserror::Error)]
pub enum SitesError {
    /// The database could not be opened or written.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The site id is not one a site may have.
    #[error("site_id {site_id:?} is not valid: {problem}")]
    InvalidSiteId {
        /// What was given.
        site_id: String,
        /// Why not.
        problem: String,
    },
    /// `add` on a site that already has an active token.
    #[error(
        "site {0:?} already has an active token; pass --rotate to replace it (the old token stops \
         working)"
    )]
    ActiveExists(String),
    /// `revoke` on a site without an active token.
    #[error("site {0:?} has no active token")]
    NoActiveToken(String),
    /// The freshly generated token's hash is stored already (never in
    /// practice: 256 random bits).
    #[error("the generated token collides with a stored one; run the command again")]
    Collision,
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs `args.action`, printing to `out`.
pub async fn run(args: &SitesArgs, out: &mut dyn Write) -> Result<(), SitesError> {
    let db = open(args).await?;
    let result = act(&db, &args.action, out).await;
    db.close().await;
    result
}

async fn act(db: &CloudDb, action: &SitesAction, out: &mut dyn Write) -> Result<(), SitesError> {
    match action {
        SitesAction::Add { site_id, rotate } => {
            check(site_id)?;
            let token = edge_credentials::generate(SITE_TOKEN_PREFIX);
            let replace = if *rotate {
                Replace::Always
            } else {
                Replace::Never
            };
            match db
                .issue_site_token(site_id, &TokenHash::of(&token).to_hex(), now_us(), replace)
                .await?
            {
                Issued::Now | Issued::Unchanged => {}
                Issued::ActiveExists => return Err(SitesError::ActiveExists(site_id.clone())),
                Issued::OtherSite(_) => return Err(SitesError::Collision),
            }
            writeln!(out, "{token}")?;
            writeln!(
                out,
                "# the token of site {site_id:?}: set it as that site's --cloud-token \
                 (EDGE_CLOUD_TOKEN). It is stored hashed and will not be shown again."
            )?;
        }
        SitesAction::List => {
            writeln!(out, "{:<32} {:<22} REVOKED", "SITE", "CREATED")?;
            for row in db.site_tokens().await? {
                writeln!(
                    out,
                    "{:<32} {:<22} {}",
                    row.site_id,
                    timestamp(row.created_at_us),
                    row.revoked_at_us.map_or_else(|| "-".to_owned(), timestamp)
                )?;
            }
        }
        SitesAction::Revoke { site_id } => {
            check(site_id)?;
            if db.revoke_site_tokens(site_id, now_us()).await? == 0 {
                return Err(SitesError::NoActiveToken(site_id.clone()));
            }
            writeln!(
                out,
                "revoked the token of site {site_id:?}; a running cloud refuses it within its \
                 --site-token-refresh"
            )?;
        }
    }
    Ok(())
}

fn check(site_id: &str) -> Result<(), SitesError> {
    match site_id_problem(site_id) {
        Some(problem) => Err(SitesError::InvalidSiteId {
            site_id: site_id.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// The cloud database, migrated like the server's (with its backup first).
async fn open(args: &SitesArgs) -> Result<CloudDb, DbError> {
    CloudDb::open(
        &DbOptions {
            database_url: args.database_url.clone(),
            data_dir: args.data_dir.clone(),
            read_connections: 1,
            migration_backup: edge_sql::BackupPolicy::Required,
            // Durability guards versions a site was told are stored; a token
            // written here is checked by running `list` again.
            accept_postgres_durability_risk: true,
            write_faults: None,
        },
        // Nothing here stamps or resolves versions.
        Versioning {
            policy: Policy::default(),
            clock: Arc::new(SystemClock),
            max_clock_skew: SkewBound::from_duration(crate::config::DEFAULT_MAX_CLOCK_SKEW),
        },
    )
    .await
}

/// `2024-05-01T12:00:00Z` for µs since the epoch.
fn timestamp(us: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}
