//! Telling the cloud which seqs the site will not deliver, so its books
//! balance: every dead letter is reported through the unsent endpoint once
//! (again after a re-drive and a new rejection), and marked reported in the
//! store only after the cloud confirmed it; every version the storage policy
//! dropped is reported as dropped, and forgotten by the store only after the
//! cloud confirmed it.

use std::sync::Arc;
use std::time::Duration;

use edge_cloud_link::contract::{self, UnsentEntry, UnsentReport, UnsentStatus};
use edge_proto::internal::v1 as ipb;
use tokio_util::sync::CancellationToken;

use crate::convert::{record, version_stamp};
use crate::drain::Drain;

/// How often unreported dead letters are looked for without a nudge.
const REPORT_INTERVAL: Duration = Duration::from_secs(30);

/// Dead letters per report.
const REPORT_PAGE: u32 = 1_000;

/// Reports dead letters while the link is up, until `stop`.
pub async fn run(drain: Arc<Drain>, stop: CancellationToken) {
    let mut link = drain.prober.watch();
    loop {
        if link.borrow_and_update().is_reachable() {
            let reported = tokio::select! {
                reported = report_all(&drain) => reported,
                () = stop.cancelled() => return,
            };
            if let Err(err) = reported {
                tracing::warn!(error = %err, "cannot report dead letters to the cloud yet");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(REPORT_INTERVAL) => {}
            () = drain.dead_lettered.notified() => {}
            changed = link.changed() => if changed.is_err() { return },
        }
    }
}

/// Reports every unreported dead letter and drop, a page at a time.
async fn report_all(drain: &Drain) -> Result<(), String> {
    report_dead_letters(drain).await?;
    report_drops(drain).await
}

/// Sends `entries` to the cloud's unsent report; returns how many.
async fn send(drain: &Drain, entries: Vec<UnsentEntry>) -> Result<usize, String> {
    let count = entries.len();
    drain
        .cloud
        .report_unsent(&drain.site_id, &UnsentReport { entries })
        .await
        .map_err(|err| err.to_string())?;
    Ok(count)
}

/// A store-svc call's failure, as the report loop logs it.
fn store_error(status: tonic::Status) -> String {
    format!("store-svc: {}", status.message())
}

/// Reports every version the storage policy dropped, a page at a time.
async fn report_drops(drain: &Drain) -> Result<(), String> {
    let mut store = drain.store.sync.clone();
    loop {
        let page = store
            .list_unreported_drops(ipb::ListUnreportedDropsRequest {
                page_size: REPORT_PAGE,
            })
            .await
            .map_err(store_error)?
            .into_inner();
        if page.drops.is_empty() {
            return Ok(());
        }
        let ids: Vec<u64> = page.drops.iter().map(|d| d.version_id).collect();
        let entries: Vec<UnsentEntry> = page
            .drops
            .into_iter()
            .map(|d| UnsentEntry {
                seq: d.seq,
                reading_id: d.reading_id,
                version: version_stamp(d.version.as_ref()),
                status: UnsentStatus::Dropped,
                reason: Some("dropped unsynced by the site's storage policy".to_owned()),
            })
            .collect();
        let count = send(drain, entries).await?;
        store
            .forget_reported_drops(ipb::ForgetReportedDropsRequest { version_ids: ids })
            .await
            .map_err(store_error)?;
        tracing::info!(dropped = count, path = %contract::unsent_path(&drain.site_id), "drops reported to the cloud");
    }
}

/// Reports every unreported dead letter, a page at a time.
async fn report_dead_letters(drain: &Drain) -> Result<(), String> {
    let mut store = drain.store.sync.clone();
    loop {
        let page = store
            .list_unreported_dead_letters(ipb::ListUnreportedDeadLettersRequest {
                page_size: REPORT_PAGE,
            })
            .await
            .map_err(store_error)?
            .into_inner();
        if page.dead_letters.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(page.dead_letters.len());
        let entries: Vec<UnsentEntry> = page
            .dead_letters
            .iter()
            .filter_map(|d| d.version.as_ref())
            .map(|v| {
                ids.push(v.version_id);
                let rec = record(v);
                UnsentEntry {
                    seq: v.seq,
                    reading_id: rec.reading_id,
                    version: rec.version,
                    status: UnsentStatus::Rejected,
                    reason: (!v.last_error.is_empty()).then(|| v.last_error.clone()),
                }
            })
            .collect();
        let count = send(drain, entries).await?;
        store
            .mark_dead_letters_reported(ipb::MarkDeadLettersReportedRequest { version_ids: ids })
            .await
            .map_err(store_error)?;
        tracing::info!(dead_letters = count, path = %contract::unsent_path(&drain.site_id), "dead letters reported to the cloud");
    }
}
