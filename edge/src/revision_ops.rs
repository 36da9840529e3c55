//! Operator commands about versions after the first: `edge amend` corrects a
//! reading at this site, `edge conflicts` lists the conflicts the site
//! resolved when it pulled the cloud's changes.

use anyhow::Context as _;
use edge_proto::v1 as pb;

use crate::cli::{AmendArgs, ConflictsArgs, Format, QualityArg};
use crate::ops::{operations_client, reading_json, rfc3339, version_text, writer};

/// `edge amend`: one new version of a reading, current at once, queued for
/// the cloud like a reading.
pub async fn amend(args: AmendArgs) -> anyhow::Result<()> {
    let mut store = operations_client(&args.target, &args.access)?;
    let request = pb::AmendRequest {
        reading_id: args.reading_id.clone(),
        temperature_celsius: args.temperature,
        humidity_percent: args.humidity,
        quality: match args.quality {
            None => pb::Quality::Unspecified,
            Some(QualityArg::Good) => pb::Quality::Good,
            Some(QualityArg::Suspect) => pb::Quality::Suspect,
            Some(QualityArg::Bad) => pb::Quality::Bad,
        } as i32,
        note: args.note.clone(),
    };
    let reading = store
        .amend(request)
        .await
        .map_err(explain)
        .with_context(|| {
            format!(
                "amending {} at {} failed",
                args.reading_id, args.target.store_url
            )
        })?
        .into_inner()
        .reading
        .context("store-svc answered without the reading")?;
    match args.format {
        Format::Json => println!("{}", reading_json(&reading)),
        Format::Table => println!(
            "amended {}: {:.2} °C, {:.2} %, quality {}, note {:?}; version {} by {} queued for \
             the cloud",
            reading.id,
            reading.temperature_celsius,
            reading.humidity_percent,
            crate::ops::quality_name(reading.quality),
            reading.note,
            version_text(reading.version.as_ref()),
            writer(&reading.written_by),
        ),
    }
    Ok(())
}

/// `edge conflicts`: the audit log, oldest first.
pub async fn conflicts(args: ConflictsArgs) -> anyhow::Result<()> {
    let mut store = operations_client(&args.target, &args.access)?;
    let mut request = pb::ListConflictsRequest {
        page_size: 1000,
        page_token: String::new(),
    };
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut total: u64;
    if args.format == Format::Table {
        println!(
            "{:<36}  {:<32}  {:<16}  {:<32}  {:<16}  {:<6}  {:<10}  resolved_at",
            "reading", "local", "local_by", "remote", "remote_by", "winner", "policy"
        );
    }
    'pages: loop {
        let page = store
            .list_conflicts(request.clone())
            .await
            .with_context(|| format!("listing conflicts at {} failed", args.target.store_url))?
            .into_inner();
        total = page.total;
        for c in page.conflicts {
            if printed >= limit {
                break 'pages;
            }
            printed += 1;
            match args.format {
                Format::Table => println!(
                    "{:<36}  {:<32}  {:<16}  {:<32}  {:<16}  {:<6}  {:<10}  {}",
                    c.reading_id,
                    version_text(c.local.as_ref()),
                    writer(&c.local_written_by),
                    version_text(c.remote.as_ref()),
                    writer(&c.remote_written_by),
                    c.winner,
                    c.policy,
                    rfc3339(c.resolved_at.as_ref()),
                ),
                Format::Json => println!(
                    "{}",
                    serde_json::json!({
                        "reading_id": c.reading_id,
                        "local": version_text(c.local.as_ref()),
                        "remote": version_text(c.remote.as_ref()),
                        "local_written_by": c.local_written_by,
                        "remote_written_by": c.remote_written_by,
                        "current": version_text(c.current.as_ref()),
                        "winner": c.winner,
                        "policy": c.policy,
                        "resolved_at": rfc3339(c.resolved_at.as_ref()),
                    })
                ),
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    if args.format == Format::Table {
        eprintln!("{printed} of {total} conflicts");
    }
    Ok(())
}

/// A refusal as an operator reads it: the status and each field at fault.
fn explain(status: tonic::Status) -> anyhow::Error {
    let mut message = format!("{:?}: {}", status.code(), status.message());
    for (field, reason) in edge_runtime::status::field_violations(&status) {
        message.push_str(&format!("\n  {field}: {reason}"));
    }
    anyhow::anyhow!(message)
}
