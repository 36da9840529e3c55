//! Operator commands that talk to a running store-svc: `edge query` pages
//! through readings, `edge stats` prints the site's books.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use edge_proto::v1 as pb;
use edge_proto::v1::operations_service_client::OperationsServiceClient;
use edge_proto::v1::readings_service_client::ReadingsServiceClient;
use edge_runtime::client::{AuthedChannel, ClientArgs};
use prost_types::Timestamp;

use crate::access::Access;

use crate::cli::{Format, QueryArgs, StatsArgs, StoreTarget, SyncStateArg};

/// A client of store-svc's `edge.v1.ReadingsService` (`edge query`,
/// `edge stats`): a read right is enough.
pub(crate) fn readings_client(
    target: &StoreTarget,
    access: &Access,
) -> anyhow::Result<ReadingsServiceClient<AuthedChannel>> {
    Ok(
        ReadingsServiceClient::new(access.channel(&target.store_url, &ClientArgs::default())?)
            .max_decoding_message_size(edge_runtime::config::DEFAULT_MAX_MESSAGE_BYTES),
    )
}

/// A client of store-svc's `edge.v1.OperationsService` (`edge amend`,
/// `edge conflicts`, `edge dead-letters`): an operate right is needed.
pub(crate) fn operations_client(
    target: &StoreTarget,
    access: &Access,
) -> anyhow::Result<OperationsServiceClient<AuthedChannel>> {
    Ok(
        OperationsServiceClient::new(access.channel(&target.store_url, &ClientArgs::default())?)
            .max_decoding_message_size(edge_runtime::config::DEFAULT_MAX_MESSAGE_BYTES),
    )
}

pub(crate) fn rfc3339(ts: Option<&Timestamp>) -> String {
    ts.and_then(|ts| {
        let nanos = u32::try_from(ts.nanos).ok()?;
        let secs = u64::try_from(ts.seconds).ok()?;
        let t = SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))?;
        // humantime cannot print years past 9999: show "-" rather than fail.
        let mut text = String::new();
        write!(text, "{}", humantime::format_rfc3339_millis(t)).ok()?;
        Some(text)
    })
    .unwrap_or_else(|| "-".into())
}

/// The table's flags column: clock_suspect, a quality other than good, and
/// whether a note is attached.
fn flags(r: &pb::StoredReading) -> String {
    let mut flags = Vec::new();
    if r.clock_suspect {
        flags.push("clock_suspect");
    }
    if r.version_clock_ahead.is_some() {
        flags.push("clock_ahead");
    }
    match quality_name(r.quality) {
        "good" => {}
        other => flags.push(other),
    }
    if !r.note.is_empty() {
        flags.push("noted");
    }
    flags.join(",")
}

/// A version's writer as tables show it: `-` when not recorded.
pub(crate) fn writer(written_by: &str) -> &str {
    if written_by.is_empty() {
        "-"
    } else {
        written_by
    }
}

/// A quality flag's name.
pub(crate) fn quality_name(quality: i32) -> &'static str {
    match pb::Quality::try_from(quality) {
        Ok(pb::Quality::Suspect) => "suspect",
        Ok(pb::Quality::Bad) => "bad",
        _ => "good",
    }
}

/// `site:physical_ms.logical`, how versions are shown.
pub(crate) fn version_text(v: Option<&pb::VersionStamp>) -> String {
    v.map(|v| {
        let hlc = v.hlc.unwrap_or_default();
        format!("{}.{}@{}", hlc.physical_ms, hlc.logical, v.site_id)
    })
    .unwrap_or_else(|| "-".into())
}

/// One reading as a JSON line.
pub(crate) fn reading_json(r: &pb::StoredReading) -> serde_json::Value {
    let priority = if r.priority == pb::Priority::Critical as i32 {
        "critical"
    } else {
        "normal"
    };
    serde_json::json!({
        "seq": r.seq,
        "id": r.id,
        "sensor_id": r.sensor_id,
        "measured_at": rfc3339(r.measured_at.as_ref()),
        "received_at": rfc3339(r.received_at.as_ref()),
        "temperature_celsius": r.temperature_celsius,
        "humidity_percent": r.humidity_percent,
        "priority": priority,
        "site_id": r.site_id,
        "sync_state": state_name(r.sync_state),
        "clock_suspect": r.clock_suspect,
        "quality": quality_name(r.quality),
        "note": r.note,
        "version": version_text(r.version.as_ref()),
        // Who wrote the current version; empty when not recorded.
        "written_by": r.written_by,
        // Set when the current version arrived stamped beyond the site's
        // clock-skew bound: how far ahead it was.
        "version_clock_ahead_ms": r.version_clock_ahead.map(duration_ms),
    })
}

/// A proto duration in whole milliseconds (negative ones, never sent, as 0).
fn duration_ms(d: prost_types::Duration) -> u64 {
    std::time::Duration::try_from(d).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn state_name(state: i32) -> &'static str {
    match pb::SyncState::try_from(state) {
        Ok(pb::SyncState::Pending) => "pending",
        Ok(pb::SyncState::Synced) => "synced",
        Ok(pb::SyncState::DeadLettered) => "dead-lettered",
        _ => "?",
    }
}

/// `edge query`: every matching reading, page after page.
pub async fn query(args: QueryArgs) -> anyhow::Result<()> {
    let mut store = readings_client(&args.target, &args.access)?;
    let mut request = pb::QueryReadingsRequest {
        sensor_id: args.sensor.clone().unwrap_or_default(),
        measured_from: args.from.map(Timestamp::from),
        measured_to: args.to.map(Timestamp::from),
        sync_state: match args.state {
            None => pb::SyncState::Unspecified,
            Some(SyncStateArg::Pending) => pb::SyncState::Pending,
            Some(SyncStateArg::Synced) => pb::SyncState::Synced,
            Some(SyncStateArg::DeadLettered) => pb::SyncState::DeadLettered,
        } as i32,
        page_size: args.page_size,
        page_token: String::new(),
    };
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    if args.format == Format::Table {
        println!(
            "{:>8}  {:<36}  {:<20}  {:<24}  {:>8}  {:>8}  {:<8}  {:<13}  {:<16}  flags",
            "seq",
            "id",
            "sensor",
            "measured_at",
            "temp_c",
            "hum_pct",
            "priority",
            "sync",
            "written_by"
        );
    }
    'pages: loop {
        let page = store
            .query_readings(request.clone())
            .await
            .with_context(|| format!("query to store-svc at {} failed", args.target.store_url))?
            .into_inner();
        for r in page.readings {
            if printed >= limit {
                break 'pages;
            }
            printed += 1;
            let priority = if r.priority == pb::Priority::Critical as i32 {
                "critical"
            } else {
                "normal"
            };
            match args.format {
                Format::Table => println!(
                    "{:>8}  {:<36}  {:<20}  {:<24}  {:>8.2}  {:>8.2}  {:<8}  {:<13}  {:<16}  {}",
                    r.seq,
                    r.id,
                    r.sensor_id,
                    rfc3339(r.measured_at.as_ref()),
                    r.temperature_celsius,
                    r.humidity_percent,
                    priority,
                    state_name(r.sync_state),
                    writer(&r.written_by),
                    flags(&r)
                ),
                Format::Json => println!("{}", reading_json(&r)),
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    if args.format == Format::Table {
        eprintln!("{printed} readings");
    }
    Ok(())
}

/// Bytes as MiB for the table view.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

/// `edge stats`.
pub async fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let s = readings_client(&args.target, &args.access)?
        .get_stats(pb::GetStatsRequest {})
        .await
        .with_context(|| format!("stats from store-svc at {} failed", args.target.store_url))?
        .into_inner();
    let oldest = rfc3339(s.oldest_unsynced_at.as_ref());
    let storage = s.storage.clone().unwrap_or_default();
    let max_clock_skew = s
        .max_clock_skew
        .and_then(|d| std::time::Duration::try_from(d).ok())
        .map(|d| humantime::format_duration(d).to_string())
        .unwrap_or_default();
    let retention = storage
        .retention
        .and_then(|d| std::time::Duration::try_from(d).ok())
        .map(|d| humantime::format_duration(d).to_string())
        .unwrap_or_default();
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "site_id": s.site_id,
                "backend": s.backend,
                "total_readings": s.total_readings,
                "total_versions": s.total_versions,
                "unsynced_versions": s.unsynced_versions,
                "dead_letters": s.dead_letters,
                "oldest_unsynced_at": oldest,
                "database_bytes": s.database_bytes,
                "last_seq": s.last_seq,
                "synced_versions": s.synced_versions,
                "hlc": s.hlc.map(|h| format!("{}.{}", h.physical_ms, h.logical)),
                "max_clock_skew": max_clock_skew,
                "max_clock_skew_announced": s.max_clock_skew_announced,
                "clock_ahead_versions": s.clock_ahead_versions,
                "storage": {
                    "used_bytes": storage.used_bytes,
                    "budget_bytes": (storage.budget_bytes > 0).then_some(storage.budget_bytes),
                    "disk_free_bytes": storage.disk_free_bytes,
                    "reserve_bytes": storage.reserve_bytes,
                    "room_bytes": storage.room_bytes,
                    "full": storage.full,
                    "full_reason": (!storage.full_reason.is_empty()).then_some(&storage.full_reason),
                    "full_since": storage.full_since.as_ref().map(|t| rfc3339(Some(t))),
                    "refused_seconds": storage.refused_seconds,
                    "policy": storage.policy,
                    "retention": retention,
                    "pruned_versions": storage.pruned_versions,
                    "dropped_versions": storage.dropped_versions,
                    "unreported_drops": storage.unreported_drops,
                },
            })
        ),
        Format::Table => {
            println!("site              {}", s.site_id);
            println!("backend           {}", s.backend);
            println!("readings          {}", s.total_readings);
            println!("versions          {}", s.total_versions);
            println!("unsynced          {}", s.unsynced_versions);
            println!("oldest unsynced   {oldest}");
            println!("dead letters      {}", s.dead_letters);
            println!("last seq          {}", s.last_seq);
            println!(
                "clock             {} (bound {max_clock_skew}{}); {} versions stored clock-ahead",
                s.hlc
                    .map(|h| format!("{}.{}", h.physical_ms, h.logical))
                    .unwrap_or_default(),
                if s.max_clock_skew_announced {
                    ", announced by the cloud"
                } else {
                    ", own setting"
                },
                s.clock_ahead_versions
            );
            let budget = match storage.budget_bytes {
                0 => "no budget".to_owned(),
                b => format!("of a {} budget", mib(b)),
            };
            println!(
                "storage           {} used {budget}",
                mib(storage.used_bytes)
            );
            if let Some(free) = storage.disk_free_bytes {
                println!(
                    "disk              {} free, {} kept in reserve",
                    mib(free),
                    mib(storage.reserve_bytes)
                );
            }
            println!(
                "room              {}{}",
                mib(storage.room_bytes),
                if storage.full {
                    "  (FULL: ingest refused)"
                } else {
                    ""
                }
            );
            if storage.full {
                let since = rfc3339(storage.full_since.as_ref());
                println!("refusing since    {since}: {}", storage.full_reason);
            }
            if storage.refused_seconds > 0.0 {
                println!(
                    "refused for       {:.0} s since store-svc started",
                    storage.refused_seconds
                );
            }
            println!(
                "policy            {}, synced kept {retention}",
                storage.policy
            );
            println!(
                "pruned / dropped  {} / {} versions ({} drops not yet reported)",
                storage.pruned_versions, storage.dropped_versions, storage.unreported_drops
            );
        }
    }
    Ok(())
}
