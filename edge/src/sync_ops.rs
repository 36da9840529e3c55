//! Operator commands for the cloud link: `edge sync status|now|watch` talk
//! to sync-svc, `edge dead-letters list|redrive` to store-svc.

use anyhow::Context as _;
use edge_proto::v1 as pb;
use edge_proto::v1::sync_service_client::SyncServiceClient;
use edge_runtime::client::{AuthedChannel, ClientArgs};
use tokio_stream::StreamExt as _;

use crate::access::Access;

use crate::cli::{DeadLettersArgs, DeadLettersCommand, Format, SyncArgs, SyncCommand, SyncTarget};
use crate::ops::{operations_client, rfc3339};

fn sync_client(
    target: &SyncTarget,
    access: &Access,
) -> anyhow::Result<SyncServiceClient<AuthedChannel>> {
    Ok(SyncServiceClient::new(
        access.channel(&target.sync_url, &ClientArgs::default())?,
    ))
}

fn state_name(state: i32) -> &'static str {
    match pb::SyncLinkState::try_from(state) {
        Ok(pb::SyncLinkState::Disabled) => "disabled (no cloud configured)",
        Ok(pb::SyncLinkState::Offline) => "offline",
        Ok(pb::SyncLinkState::Idle) => "online, idle",
        Ok(pb::SyncLinkState::Draining) => "online, draining",
        Ok(pb::SyncLinkState::BackingOff) => "backing off after failures",
        _ => "unknown",
    }
}

fn print_status(status: &pb::SyncStatus, format: Format) {
    if format == Format::Json {
        let json = serde_json::json!({
            "state": state_name(status.state),
            "cloud_url": status.cloud_url,
            "compat_mode": status.compat_mode,
            "backlog": status.backlog,
            "dead_letters": status.dead_letters,
            "stuck_versions": status.stuck_versions,
            "synced_since_start": status.synced_since_start,
            "last_success_at": status.last_success_at.as_ref().map(|t| rfc3339(Some(t))),
            "last_error": status.last_error,
            "last_error_at": status.last_error_at.as_ref().map(|t| rfc3339(Some(t))),
            "next_attempt_at": status.next_attempt_at.as_ref().map(|t| rfc3339(Some(t))),
            "link_since": status.link_since.as_ref().map(|t| rfc3339(Some(t))),
        });
        println!("{json}");
        return;
    }
    let cloud = if status.cloud_url.is_empty() {
        "-".to_owned()
    } else if status.compat_mode {
        format!("{} (compatibility mode: at-least-once)", status.cloud_url)
    } else {
        status.cloud_url.clone()
    };
    println!("state            {}", state_name(status.state));
    println!("cloud            {cloud}");
    println!("link since       {}", rfc3339(status.link_since.as_ref()));
    println!("backlog          {} versions", status.backlog);
    println!("dead letters     {}", status.dead_letters);
    println!("stuck            {}", status.stuck_versions);
    println!("synced (since start) {}", status.synced_since_start);
    println!(
        "last success     {}",
        rfc3339(status.last_success_at.as_ref())
    );
    if !status.last_error.is_empty() {
        println!(
            "last error       {} ({})",
            status.last_error,
            rfc3339(status.last_error_at.as_ref())
        );
    }
    if status.next_attempt_at.is_some() {
        println!(
            "next attempt     {}",
            rfc3339(status.next_attempt_at.as_ref())
        );
    }
}

/// `edge sync …`.
pub async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let mut client = sync_client(&args.target, &args.access)?;
    let cannot = || format!("cannot reach sync-svc at {}", args.target.sync_url);
    match args.command {
        SyncCommand::Status { format } => {
            let status = client
                .get_status(pb::GetStatusRequest {})
                .await
                .with_context(cannot)?
                .into_inner()
                .status
                .unwrap_or_default();
            print_status(&status, format);
        }
        SyncCommand::Now => {
            match client.sync_now(pb::SyncNowRequest {}).await {
                Ok(_) => {}
                // sync-svc answered: say what it said, not that it is unreachable.
                Err(status) if status.code() != tonic::Code::Unavailable => {
                    anyhow::bail!("sync-svc refused: {}", status.message())
                }
                Err(status) => return Err(status).with_context(cannot),
            }
            println!("sync started; follow it with `edge sync watch`");
        }
        SyncCommand::Watch { format } => {
            let mut stream = client
                .watch_status(pb::WatchStatusRequest {})
                .await
                .with_context(cannot)?
                .into_inner();
            while let Some(update) = stream.next().await {
                let status = update.context("the status stream broke off")?.status;
                print_status(&status.unwrap_or_default(), format);
                if format == Format::Table {
                    println!();
                }
            }
        }
    }
    Ok(())
}

/// `edge dead-letters …`.
pub async fn dead_letters(args: DeadLettersArgs) -> anyhow::Result<()> {
    let mut store = operations_client(&args.target, &args.access)?;
    let cannot = || format!("cannot reach store-svc at {}", args.target.store_url);
    match args.command {
        DeadLettersCommand::List { limit, format } => {
            let mut token = String::new();
            let mut shown = 0u64;
            if format == Format::Table {
                println!(
                    "{:>10}  {:>10}  {:36}  {:24}  {:8}  reason",
                    "version", "seq", "reading", "dead-lettered", "reported"
                );
            }
            loop {
                let page = store
                    .list_dead_letters(pb::ListDeadLettersRequest {
                        page_size: 500,
                        page_token: token,
                        unreported_only: false,
                    })
                    .await
                    .with_context(cannot)?
                    .into_inner();
                for dead in &page.dead_letters {
                    if limit.is_some_and(|l| shown >= l) {
                        return Ok(());
                    }
                    shown += 1;
                    let v = dead.version.clone().unwrap_or_default();
                    let at = rfc3339(dead.dead_lettered_at.as_ref());
                    if format == Format::Json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "version_id": v.version_id, "seq": v.seq, "reading_id": v.reading_id,
                                "sensor_id": v.sensor_id, "dead_lettered_at": at,
                                "reported": dead.reported, "reason": v.last_error,
                            })
                        );
                    } else {
                        println!(
                            "{:>10}  {:>10}  {:36}  {:24}  {:8}  {}",
                            v.version_id, v.seq, v.reading_id, at, dead.reported, v.last_error
                        );
                    }
                }
                if page.next_page_token.is_empty() {
                    return Ok(());
                }
                token = page.next_page_token;
            }
        }
        DeadLettersCommand::Redrive { all, version_ids } => {
            let done = store
                .redrive_dead_letters(pb::RedriveDeadLettersRequest { version_ids, all })
                .await
                .with_context(cannot)?
                .into_inner();
            println!(
                "{} dead letters back in the outbox; `edge sync now` pushes them at once",
                done.redriven
            );
        }
    }
    Ok(())
}
