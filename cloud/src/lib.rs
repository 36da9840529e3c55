//! The reference cloud server, `edge cloud`: the cloud contract
//! (`docs/cloud-api.yaml`) implemented for real, on SQLite or PostgreSQL,
//! with fault injection so tests and demos can make the cloud misbehave.
//!
//! A tour:
//!
//! - [`config`]: [`CloudArgs`], the flags (`--listen`, `--admin-listen`,
//!   `--cloud-data-dir`, `--cloud-database-url`, `--site-token`,
//!   `--admin-token-file`, `--header-timeout`, `--body-timeout`,
//!   `--conflict-policy`, `--max-clock-skew`), flattened into `edge cloud`;
//! - [`sites`]: which site a bearer token speaks for (tokens hashed in the
//!   database, an in-memory map refreshed from it);
//!   [`sites_command`]: `edge cloud sites add|list|revoke`;
//! - [`app`]: [`CloudApp::build`] opens the database and binds both ports
//!   ([`CloudApp::build_with_clock`] with an injected wall clock);
//!   [`CloudApp::run`] serves until cancelled;
//! - `api`: the public routes (health, batch push, coverage, unsent
//!   reports, amendments and reading state, the change feed, the simple
//!   API), their middleware (site and admin tokens in `api::auth`, the body
//!   deadline in `api::deadline`) and their one error type;
//! - `batch`: the per-version rules a pushed version must meet;
//! - `amend`: what a cloud amendment may change, and the version it makes;
//! - `resolve`: offering versions to readings' histories (the rule itself is
//!   `edge_versioning`'s) and moving the cloud's hybrid logical clock;
//! - `db`: the SQL, once for both backends; one write connection so a push
//!   is one serialised transaction and an answer means committed;
//! - `server`: the public port's accept loop, serving connections itself so
//!   that the fault mode (`refuse`, `black_hole`) reaches open connections;
//! - [`faults`]: [`Faults`], set at run time on the admin port;
//! - [`admin`]: the admin API (faults, counters, stored data), on its own
//!   port behind its own token, for tests, demos and operators;
//!   [`AdminClient`] is its typed client;
//! - [`stats`]: the counters behind `GET /admin/stats`.

pub mod admin;
mod amend;
mod api;
pub mod app;
mod batch;
pub mod client;
pub mod config;
mod db;
pub mod faults;
mod resolve;
mod server;
pub mod sites;
pub mod sites_command;
pub mod stats;
mod stored;
mod tls;

pub use admin::{
    ConflictsPage, CurrentVersionsPage, SimpleReadingsPage, StoredConflict, StoredSimpleReading,
    StoredVersion, VersionsPage,
};
pub use app::{CloudApp, CloudError};
pub use client::{AdminClient, AdminClientError, ErrorBodyOrText};
pub use config::CloudArgs;
pub use db::{DbError, FEED_WINDOW, SiteTokenRow};
pub use faults::{FaultMode, Faults, InvalidFaults};
pub use sites::SiteToken;
pub use sites_command::{SitesAction, SitesArgs, SitesError};
pub use stats::CloudStats;
