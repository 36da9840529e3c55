//! P1 with the real binary: `edge up` is SIGKILLed right after it
//! acknowledged readings; after a restart on the same data, every
//! acknowledged reading is there.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use edge_proto::v1 as pb;
use edge_proto::v1::ingest_service_client::IngestServiceClient;
use edge_proto::v1::store_service_client::StoreServiceClient;
use edge_testkit::{TestDatabase, eventually};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

struct EdgeUp {
    child: Child,
    ingest: String,
    store: String,
}

async fn edge_up(db: &TestDatabase, ready: &Path) -> EdgeUp {
    let _ = std::fs::remove_file(ready);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edge"));
    cmd.arg("up")
        .args([
            "--ingest-addr",
            "127.0.0.1:0",
            "--store-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&db.data_dir)
        .arg("--ready-file")
        .arg(ready)
        .env("EDGE_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(url) = &db.url {
        cmd.arg("--database-url").arg(url);
    }
    let mut child = cmd.spawn().expect("spawn edge up");
    let addrs: serde_json::Value =
        eventually(Duration::from_secs(60), "edge up to be ready", || {
            let exited = child.try_wait().expect("child status");
            assert!(exited.is_none(), "edge up exited early: {exited:?}");
            let text = std::fs::read_to_string(ready).ok();
            async move { text.and_then(|t| serde_json::from_str(&t).ok()) }
        })
        .await;
    let addr = |key: &str| format!("http://{}", addrs[key].as_str().expect("address"));
    EdgeUp {
        ingest: addr("ingest"),
        store: addr("store"),
        child,
    }
}

async fn acknowledged_readings_survive_sigkill(db: &TestDatabase) {
    let ready = db.data_dir.join("ready.json");
    let mut site = edge_up(db, &ready).await;
    let mut ingest = IngestServiceClient::connect(site.ingest.clone())
        .await
        .expect("connect ingest");

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

    let site = edge_up(db, &ready).await;
    let mut store = StoreServiceClient::connect(site.store.clone())
        .await
        .expect("connect store");
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
