//! P1 with the real binary: `edge up` is SIGKILLed right after it
//! acknowledged readings; after a restart on the same data, every
//! acknowledged reading is there.

mod common;

use std::path::Path;

use edge_proto::v1 as pb;
use edge_proto::v1::ingest_service_client::IngestServiceClient;
use edge_testkit::StoreClients;
use edge_testkit::{EdgeUp, TestDatabase, on_both_backends, spawn_edge_up};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

async fn edge_up(db: &TestDatabase) -> EdgeUp {
    spawn_edge_up(
        Path::new(env!("CARGO_BIN_EXE_edge")),
        &db.data_dir,
        db.url.as_deref(),
    )
    .await
    .expect("edge up starts")
}

async fn acknowledged_readings_survive_sigkill(db: &TestDatabase) {
    let mut site = edge_up(db).await;
    let mut ingest = IngestServiceClient::new(site.channel(&site.ingest_url).await);

    // Concurrent gateways, so acknowledged readings come from shared group commits.
    let mut gateways = tokio::task::JoinSet::new();
    for g in 0..8 {
        let mut client = ingest.clone();
        gateways.spawn(async move {
            let mut acked = Vec::new();
            for _ in 0..10 {
                let readings: Vec<_> = (0..20)
                    .map(|_| common::reading(&format!("gw-{g}"), 21.0))
                    .collect();
                let reply = client
                    .ingest(pb::IngestRequest { readings })
                    .await
                    .expect("ingest")
                    .into_inner();
                acked.extend(reply.results.into_iter().map(|r| r.id));
            }
            acked
        });
    }
    let mut acked = Vec::new();
    while let Some(ids) = gateways.join_next().await {
        acked.extend(ids.expect("gateway"));
    }
    // One last reply, then the power goes.
    let last = common::reading("gw-last", 22.0);
    let reply = ingest
        .ingest(pb::IngestRequest {
            readings: vec![last.clone()],
        })
        .await
        .expect("last ingest");
    assert_eq!(reply.into_inner().summary.expect("summary").stored, 1);
    acked.push(last.id);
    let pid = Pid::from_raw(site.child.id().expect("pid") as i32);
    kill(pid, Signal::SIGKILL).expect("SIGKILL");
    site.child.wait().await.expect("reaped");

    let site = edge_up(db).await;
    let mut store = StoreClients::of_site(&site).await;
    let stored: std::collections::HashSet<String> = common::query_all(&mut store)
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(acked.len(), 8 * 10 * 20 + 1);
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged readings lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    drop(site);
}
on_both_backends!(acknowledged_readings_survive_sigkill);
