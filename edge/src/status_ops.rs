//! `edge status`: one screen for an operator. It asks health-svc
//! (`GetCloudHealth`: the link, each service's health), store-svc
//! (`GetStats`: backlog, oldest unsynced, dead letters) and sync-svc
//! (`GetStatus`: last sync), all at once, each under a deadline.
//!
//! A service that does not answer is reported on its own line; the command
//! fails (exit 1) only when nothing at all answers. When health-svc is the
//! one that is down, the services are asked `grpc.health.v1` directly, so
//! the screen still says which of them serve.

use std::future::Future;
use std::time::{Duration, SystemTime};

use edge_proto::service_names;
use edge_proto::v1 as pb;
use edge_proto::v1::cloud_health_service_client::CloudHealthServiceClient;
use edge_proto::v1::readings_service_client::ReadingsServiceClient;
use edge_proto::v1::sync_service_client::SyncServiceClient;
use edge_runtime::client::ClientArgs;
use health_svc::board::Serving;
use health_svc::mesh::Checker;
use prost_types::Timestamp;
use serde_json::{Value, json};

use crate::cli::{Format, StatusArgs};
use crate::ops::rfc3339;

/// One service's answer, or why there was none.
type Answer<T> = Result<T, String>;

/// Everything gathered for the screen.
struct Gathered {
    health: Answer<pb::CloudHealth>,
    /// Direct `grpc.health.v1` checks, made only when health-svc did not
    /// answer: (name, address, state, error).
    direct: Vec<(&'static str, String, Serving, Option<String>)>,
    stats: Answer<pb::GetStatsResponse>,
    sync: Answer<pb::SyncStatus>,
}

impl Gathered {
    /// Something answered: a service call, or a direct health check.
    fn anything_answered(&self) -> bool {
        self.health.is_ok()
            || self.stats.is_ok()
            || self.sync.is_ok()
            || self
                .direct
                .iter()
                .any(|(_, _, state, _)| matches!(state, Serving::Serving | Serving::NotServing))
    }
}

/// Runs `call` under `timeout`, turning every failure into a line of text.
async fn ask<T, F>(what: &str, url: &str, timeout: Duration, call: F) -> Answer<T>
where
    F: Future<Output = Result<T, tonic::Status>>,
{
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
            Err(format!("{what} unreachable at {url}"))
        }
        Ok(Err(status)) => Err(format!("{what} at {url}: {}", status.message())),
        Err(_) => Err(format!(
            "{what} at {url}: no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

async fn gather(args: &StatusArgs) -> anyhow::Result<Gathered> {
    let client_args = ClientArgs {
        connect_timeout: args.timeout,
        request_timeout: args.timeout,
    };
    let max = edge_runtime::config::DEFAULT_MAX_MESSAGE_BYTES;
    let health_url = &args.health.health_url;
    let store_url = &args.store.store_url;
    let sync_url = &args.sync.sync_url;
    let credentials = args.access.credentials()?;
    let channel = |url: &str| edge_runtime::client::channel(url, &client_args, &credentials);
    let health_client = CloudHealthServiceClient::new(channel(health_url)?);
    let store_client =
        ReadingsServiceClient::new(channel(store_url)?).max_decoding_message_size(max);
    let sync_client = SyncServiceClient::new(channel(sync_url)?);

    let health = ask("health-svc", health_url, args.timeout, async {
        let reply = health_client
            .clone()
            .get_cloud_health(pb::GetCloudHealthRequest {})
            .await?;
        Ok(reply.into_inner().health.unwrap_or_default())
    });
    let stats = ask("store-svc", store_url, args.timeout, async {
        let reply = store_client
            .clone()
            .get_stats(pb::GetStatsRequest {})
            .await?;
        Ok(reply.into_inner())
    });
    let sync = ask("sync-svc", sync_url, args.timeout, async {
        let reply = sync_client
            .clone()
            .get_status(pb::GetStatusRequest {})
            .await?;
        Ok(reply.into_inner().status.unwrap_or_default())
    });
    let (health, stats, sync) = tokio::join!(health, stats, sync);

    let mut direct = Vec::new();
    if health.is_err() {
        let targets = [
            ("ingest", &args.ingest.ingest_url, service_names::INGEST),
            ("store", store_url, service_names::READINGS),
            ("sync", sync_url, service_names::SYNC),
        ];
        let credentials = &credentials;
        let checks = targets.iter().map(|(name, url, service)| async move {
            let check = Checker::new(url, service, args.timeout, credentials)?
                .check()
                .await;
            anyhow::Ok((*name, url.to_string(), check.state, check.error))
        });
        for check in futures::future::join_all(checks).await {
            direct.push(check?);
        }
    }
    Ok(Gathered {
        health,
        direct,
        stats,
        sync,
    })
}

/// `edge status`.
pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let gathered = gather(&args).await?;
    let now = SystemTime::now();
    match args.format {
        Format::Json => println!("{}", to_json(&gathered, now)),
        Format::Table => print_table(&gathered, now),
    }
    if !gathered.anything_answered() {
        anyhow::bail!(
            "nothing answered: is the mesh running? (health-svc {}, store-svc {}, sync-svc {}, ingest-svc {})",
            args.health.health_url,
            args.store.store_url,
            args.sync.sync_url,
            args.ingest.ingest_url
        );
    }
    Ok(())
}

fn time_of(ts: Option<&Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    let secs = u64::try_from(ts.seconds).ok()?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// Seconds from `ts` to `now` (never negative).
fn age(ts: Option<&Timestamp>, now: SystemTime) -> Option<Duration> {
    time_of(ts).map(|t| now.duration_since(t).unwrap_or_default())
}

/// A duration rounded to whole seconds, for people.
fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

fn link_state_name(state: i32) -> &'static str {
    match pb::CloudLinkState::try_from(state) {
        Ok(pb::CloudLinkState::NotConfigured) => "not_configured",
        Ok(pb::CloudLinkState::Unknown) => "unknown",
        Ok(pb::CloudLinkState::Online) => "online",
        Ok(pb::CloudLinkState::Degraded) => "degraded",
        Ok(pb::CloudLinkState::Offline) => "offline",
        _ => "unspecified",
    }
}

fn serving_name(state: i32) -> &'static str {
    match pb::ServingState::try_from(state) {
        Ok(pb::ServingState::Unknown) => "unknown",
        Ok(pb::ServingState::Serving) => "serving",
        Ok(pb::ServingState::NotServing) => "not_serving",
        Ok(pb::ServingState::Unreachable) => "unreachable",
        _ => "unspecified",
    }
}

fn sync_state_name(state: i32) -> &'static str {
    match pb::SyncLinkState::try_from(state) {
        Ok(pb::SyncLinkState::Disabled) => "disabled",
        Ok(pb::SyncLinkState::Offline) => "offline",
        Ok(pb::SyncLinkState::Idle) => "idle",
        Ok(pb::SyncLinkState::Draining) => "draining",
        Ok(pb::SyncLinkState::BackingOff) => "backing_off",
        _ => "unspecified",
    }
}

/// How long the site has been without the cloud, if it is.
fn offline_for(link: &pb::CloudLink, now: SystemTime) -> Option<Duration> {
    let state = pb::CloudLinkState::try_from(link.state).ok()?;
    matches!(
        state,
        pb::CloudLinkState::Offline | pb::CloudLinkState::Unknown
    )
    .then(|| age(link.reachability_since.as_ref(), now))
    .flatten()
}

/// One service line's facts, from health-svc or from a direct check.
struct ServiceLine {
    name: String,
    address: String,
    state: &'static str,
    since: Option<SystemTime>,
    error: String,
}

fn service_lines(g: &Gathered) -> Vec<ServiceLine> {
    match &g.health {
        Ok(health) => {
            let mut lines: Vec<ServiceLine> = health
                .services
                .iter()
                .map(|s| ServiceLine {
                    name: s.name.clone(),
                    address: s.address.clone(),
                    state: serving_name(s.state),
                    since: time_of(s.since.as_ref()),
                    error: s.error.clone(),
                })
                .collect();
            lines.push(ServiceLine {
                name: "health".into(),
                address: String::new(),
                state: "serving",
                since: None,
                error: String::new(),
            });
            lines
        }
        Err(err) => {
            let mut lines: Vec<ServiceLine> = g
                .direct
                .iter()
                .map(|(name, url, state, error)| ServiceLine {
                    name: (*name).to_owned(),
                    address: url.clone(),
                    state: state.as_str(),
                    since: None,
                    error: error.clone().unwrap_or_default(),
                })
                .collect();
            lines.push(ServiceLine {
                name: "health".into(),
                address: String::new(),
                state: "unreachable",
                since: None,
                error: err.clone(),
            });
            lines
        }
    }
}

fn to_json(g: &Gathered, now: SystemTime) -> Value {
    let link = match &g.health {
        Ok(health) => {
            let link = health.link.clone().unwrap_or_default();
            json!({
                "state": link_state_name(link.state),
                "cloud_url": link.cloud_url,
                "since": link.since.as_ref().map(|t| rfc3339(Some(t))),
                "offline_for_seconds": offline_for(&link, now).map(|d| d.as_secs_f64()),
                "last_success_at": link.last_success_at.as_ref().map(|t| rfc3339(Some(t))),
                "last_latency_ms": link.last_latency
                    .and_then(|d| Duration::try_from(d).ok())
                    .map(|d| d.as_secs_f64() * 1000.0),
                "success_ratio": (link.window_probes > 0).then_some(link.success_ratio),
                "window_probes": link.window_probes,
                "reason": (!link.reason.is_empty()).then_some(link.reason),
            })
        }
        Err(err) => json!({ "error": err }),
    };
    let services: serde_json::Map<String, Value> = service_lines(g)
        .into_iter()
        .map(|s| {
            let value = json!({
                "state": s.state,
                "address": (!s.address.is_empty()).then_some(s.address),
                "since": s.since.map(|t| rfc3339(Some(&Timestamp::from(t)))),
                "error": (!s.error.is_empty()).then_some(s.error),
            });
            (s.name, value)
        })
        .collect();
    let mesh_healthy = g.health.as_ref().ok().map(|h| h.mesh_healthy);
    let (backlog, dead_letters) = match &g.stats {
        Ok(s) => (
            json!({
                "site_id": s.site_id,
                "unsynced_versions": s.unsynced_versions,
                "oldest_unsynced_at": s.oldest_unsynced_at.as_ref().map(|t| rfc3339(Some(t))),
                "oldest_unsynced_age_seconds": age(s.oldest_unsynced_at.as_ref(), now).map(|d| d.as_secs_f64()),
            }),
            json!(s.dead_letters),
        ),
        Err(err) => (json!({ "error": err }), Value::Null),
    };
    let sync = match &g.sync {
        Ok(s) => json!({
            "state": sync_state_name(s.state),
            "last_success_at": s.last_success_at.as_ref().map(|t| rfc3339(Some(t))),
            "last_error": (!s.last_error.is_empty()).then_some(&s.last_error),
            "synced_since_start": s.synced_since_start,
        }),
        Err(err) => json!({ "error": err }),
    };
    json!({
        "link": link,
        "mesh_healthy": mesh_healthy,
        "services": services,
        "backlog": backlog,
        "dead_letters": dead_letters,
        "sync": sync,
    })
}

fn print_table(g: &Gathered, now: SystemTime) {
    match &g.health {
        Ok(health) => {
            let link = health.link.clone().unwrap_or_default();
            let state = link_state_name(link.state).to_uppercase();
            let headline = match pb::CloudLinkState::try_from(link.state) {
                Ok(pb::CloudLinkState::NotConfigured) => {
                    format!("{state} (no cloud URL: the site runs offline by design)")
                }
                _ => {
                    let mut text = format!("{state}  {}", link.cloud_url);
                    if let Some(d) = offline_for(&link, now) {
                        text.push_str(&format!("  (without the cloud for {})", human(d)));
                    } else if let Some(d) = age(link.since.as_ref(), now) {
                        text.push_str(&format!("  (for {})", human(d)));
                    }
                    text
                }
            };
            println!("link             {headline}");
            let configured = link.state != pb::CloudLinkState::NotConfigured as i32;
            if configured && !link.reason.is_empty() {
                println!("  why            {}", link.reason);
            }
            if link.window_probes > 0 {
                let latency = link
                    .last_latency
                    .and_then(|d| Duration::try_from(d).ok())
                    .map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "  probes         {:.0} % of the last {} answered, last latency {latency}, last contact {}",
                    link.success_ratio * 100.0,
                    link.window_probes,
                    rfc3339(link.last_success_at.as_ref())
                );
            }
            println!(
                "mesh             {}",
                if health.mesh_healthy {
                    "healthy: every service serving"
                } else {
                    "NOT HEALTHY: a service is not serving"
                }
            );
        }
        Err(err) => {
            println!("link             ? ({err})");
            println!("mesh             ? (asked each service directly)");
        }
    }
    for s in service_lines(g) {
        let mut line = format!("  {:<14} {}", s.name, s.state);
        if !s.address.is_empty() {
            line.push_str(&format!("  {}", s.address));
        }
        if let Some(since) = s.since {
            let d = now.duration_since(since).unwrap_or_default();
            line.push_str(&format!("  (for {})", human(d)));
        }
        if !s.error.is_empty() {
            line.push_str(&format!("  {}", s.error));
        }
        println!("{line}");
    }
    match &g.stats {
        Ok(s) => {
            let oldest = match age(s.oldest_unsynced_at.as_ref(), now) {
                Some(d) => format!(
                    ", oldest {} ({} ago)",
                    rfc3339(s.oldest_unsynced_at.as_ref()),
                    human(d)
                ),
                None => String::new(),
            };
            println!(
                "backlog          {} unsynced versions{oldest}",
                s.unsynced_versions
            );
            println!("dead letters     {}", s.dead_letters);
        }
        Err(err) => {
            println!("backlog          ? ({err})");
            println!("dead letters     ? ({err})");
        }
    }
    match &g.sync {
        Ok(s) => {
            let mut line = format!(
                "last sync        {}  (sync-svc {})",
                rfc3339(s.last_success_at.as_ref()),
                sync_state_name(s.state)
            );
            if !s.last_error.is_empty() {
                line.push_str(&format!("; last error: {}", s.last_error));
            }
            println!("{line}");
        }
        Err(err) => println!("last sync        ? ({err})"),
    }
}
