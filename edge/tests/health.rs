//! health-svc watching a real mesh: services in this process on ephemeral
//! ports (killed and restarted), then the real `edge up` binary with
//! `edge status` run against it. The cloud is the real reference cloud.

mod common;

use edge_runtime::Service as _;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use edge_cloud::{FaultMode, Faults};
use edge_cloud_link::{CloudLinkArgs, ProbeConfig};
use edge_proto::v1 as pb;
use edge_proto::v1::cloud_health_service_client::CloudHealthServiceClient;
use edge_runtime::client::AuthedChannel;
use edge_runtime::client::ClientArgs;
use edge_testkit::{TestDatabase, eventually, sample, scrape, spawn_edge_up_with};
use health_svc::{HealthApp, HealthConfig, MeshTargets};
use sync_svc::{SyncApp, SyncConfig};

use common::{Running, runtime_args, start_ingest, start_store};

const TOKEN: &str = "test-token";
/// Generous: CI machines are slow and shared.
const DEADLINE: Duration = Duration::from_secs(60);

/// The reference cloud in this process.
type Cloud = edge_testkit::InProcessCloud;

fn quick_link(cloud_url: &str) -> CloudLinkArgs {
    CloudLinkArgs {
        cloud_url: Some(cloud_url.to_owned()),
        cloud_token: Some(TOKEN.into()),
        probe: ProbeConfig {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
            failures_to_offline: 2,
            successes_to_online: 1,
            ..ProbeConfig::default()
        },
        ..CloudLinkArgs::new()
    }
}

fn link_state(h: &pb::CloudHealth) -> i32 {
    h.link.as_ref().map_or(0, |l| l.state)
}

fn service<'a>(h: &'a pb::CloudHealth, name: &str) -> &'a pb::MeshServiceHealth {
    h.services
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name} in {h:?}"))
}

/// The next update for which `wanted` holds.
async fn next_where(
    updates: &mut tonic::Streaming<pb::WatchCloudHealthResponse>,
    what: &str,
    wanted: impl Fn(&pb::CloudHealth) -> bool,
) -> pb::CloudHealth {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let update = updates.message().await.expect("stream").expect("update");
            let health = update.health.expect("health");
            if wanted(&health) {
                return health;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no update with {what}"))
}

/// store-svc stopped: health-svc reports it UNREACHABLE (or NOT_SERVING
/// while it drains), the mesh unhealthy, the link still ONLINE, and the
/// stream delivers the change; restarted on the same port, it is SERVING
/// again.
#[tokio::test]
async fn a_stopped_service_is_reported_while_the_link_stays_online() {
    let db = TestDatabase::new(edge_testkit::Backend::Sqlite)
        .await
        .expect("SQLite fixture");
    let cloud = Cloud::start(TOKEN).await;
    let store = start_store(&db, "127.0.0.1:0".parse().expect("address")).await;
    let store_addr = store.addr;
    let ingest = start_ingest(store_addr).await;
    let sync_config = SyncConfig {
        sync_addr: "127.0.0.1:0".parse().expect("address"),
        link: quick_link(&cloud.url),
        ..SyncConfig::new()
    };
    let sync_app = SyncApp::build(
        &sync_config,
        &format!("http://{store_addr}"),
        &runtime_args(),
        &ClientArgs::default(),
    )
    .await
    .expect("sync-svc starts");
    let sync = Running::spawn(sync_app.local_addr(), |stop| {
        tokio::spawn(sync_app.run(stop))
    });

    let config = HealthConfig {
        health_addr: "127.0.0.1:0".parse().expect("address"),
        mesh_check_interval: Duration::from_millis(100),
        mesh_check_timeout: Duration::from_millis(500),
    };
    let targets = MeshTargets {
        ingest_url: format!("http://{}", ingest.addr),
        store_url: format!("http://{store_addr}"),
        sync_url: format!("http://{}", sync.addr),
    };
    let app = HealthApp::build(&config, &quick_link(&cloud.url), &targets, &runtime_args())
        .await
        .expect("health-svc starts");
    let health_addr = app.local_addr();
    let health = Running::spawn(health_addr, |stop| tokio::spawn(app.run(stop)));
    let client: CloudHealthServiceClient<AuthedChannel> =
        CloudHealthServiceClient::new(common::channel(health_addr).await);
    let mut updates = client
        .clone()
        .watch_cloud_health(pb::WatchCloudHealthRequest {})
        .await
        .expect("watch")
        .into_inner();

    let all_well = next_where(&mut updates, "everything serving and online", |h| {
        h.mesh_healthy && link_state(h) == pb::CloudLinkState::Online as i32
    })
    .await;
    assert_eq!(all_well.services.len(), 3);
    for name in ["ingest", "store", "sync"] {
        assert_eq!(
            service(&all_well, name).state,
            pb::ServingState::Serving as i32
        );
    }

    store.stop().await;
    let store_down = next_where(&mut updates, "store-svc not serving", |h| {
        service(h, "store").state != pb::ServingState::Serving as i32
    })
    .await;
    assert!(!store_down.mesh_healthy);
    assert_eq!(
        link_state(&store_down),
        pb::CloudLinkState::Online as i32,
        "a service down says nothing about the link"
    );
    assert!(store_down.cloud_reachable);
    assert_eq!(
        service(&store_down, "ingest").state,
        pb::ServingState::Serving as i32
    );
    let unreachable = eventually(DEADLINE, "store-svc unreachable", || async {
        let h = client
            .clone()
            .get_cloud_health(pb::GetCloudHealthRequest {})
            .await
            .ok()?
            .into_inner()
            .health?;
        let store = service(&h, "store").clone();
        (store.state == pb::ServingState::Unreachable as i32).then_some(store)
    })
    .await;
    assert!(!unreachable.error.is_empty(), "says why");

    let store = start_store(&db, store_addr).await;
    let back = next_where(&mut updates, "store-svc serving again", |h| {
        service(h, "store").state == pb::ServingState::Serving as i32
    })
    .await;
    assert!(back.mesh_healthy);
    assert_eq!(link_state(&back), pb::CloudLinkState::Online as i32);

    health.stop().await;
    sync.stop().await;
    ingest.stop().await;
    store.stop().await;
    db.cleanup().await;
}

/// Runs `edge status` with `args`: trusting the test process's CA and
/// presenting its operator token, unless `args` name a site's own.
async fn edge_status(args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_edge"));
    command.arg("status").args(args);
    if !args.contains(&"--token-file") {
        command.envs(edge_testkit::security().cli_env());
    }
    command.output().await.expect("edge status runs")
}

fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

/// `edge status` against a real `edge up`: names the link state and every
/// service (JSON and table), says so on the line of a service that does not
/// answer, and fails only when nothing answers. health-svc's gauges are on
/// the process's `/metrics`.
#[tokio::test]
async fn edge_status_shows_the_link_and_every_service() {
    let cloud = Cloud::start(TOKEN).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let extra: Vec<String> = [
        "--cloud-url",
        &cloud.url,
        "--cloud-token",
        &edge_testkit::site_token(TOKEN, edge_testkit::TEST_SITE_ID),
        "--site-id",
        edge_testkit::TEST_SITE_ID,
        "--probe-interval",
        "100ms",
        "--mesh-check-interval",
        "100ms",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let site = spawn_edge_up_with(
        Path::new(env!("CARGO_BIN_EXE_edge")),
        dir.path(),
        None,
        &extra,
    )
    .await
    .expect("edge up starts");
    let client = CloudHealthServiceClient::new(site.channel(&site.health_url).await);
    eventually(DEADLINE, "edge up's health online and serving", || async {
        let h = client
            .clone()
            .get_cloud_health(pb::GetCloudHealthRequest {})
            .await
            .ok()?
            .into_inner()
            .health?;
        (h.mesh_healthy && link_state(&h) == pb::CloudLinkState::Online as i32).then_some(())
    })
    .await;

    // This site made its own CA and operator token in its data directory.
    let ca = dir.path().join("tls").join("ca.pem").display().to_string();
    let token = dir.path().join("operator.token").display().to_string();
    let targets = [
        "--health-url",
        &site.health_url,
        "--store-url",
        &site.store_url,
        "--sync-url",
        &site.sync_url,
        "--ingest-url",
        &site.ingest_url,
        "--ca",
        &ca,
        "--token-file",
        &token,
    ];
    let out = edge_status(&[&targets[..], &["--format", "json"][..]].concat()).await;
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["link"]["state"], "online", "{json}");
    assert_eq!(json["link"]["cloud_url"], cloud.url.as_str());
    assert_eq!(json["mesh_healthy"], true);
    for name in ["ingest", "store", "sync", "health"] {
        assert_eq!(json["services"][name]["state"], "serving", "{name}: {json}");
    }
    assert_eq!(json["backlog"]["unsynced_versions"], 0);
    assert_eq!(json["dead_letters"], 0);
    assert!(json["sync"]["state"].is_string(), "{json}");

    let out = edge_status(&targets).await;
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("ONLINE"), "{table}");
    for name in [
        "ingest",
        "store",
        "sync",
        "health",
        "backlog",
        "dead letters",
        "last sync",
    ] {
        assert!(table.contains(name), "{name} missing:\n{table}");
    }

    let metrics = scrape(&site.metrics_addr).await.expect("scrape");
    for (metric, value) in [
        ("cloud_reachable{probe=\"health\"}", 1.0),
        ("cloud_reachable{probe=\"sync\"}", 1.0),
        ("cloud_unreachable_seconds{probe=\"health\"}", 0.0),
        ("cloud_link_state{probe=\"health\",state=\"online\"}", 1.0),
        ("cloud_link_state{probe=\"health\",state=\"offline\"}", 0.0),
        ("cloud_probe_success_ratio{probe=\"health\"}", 1.0),
        ("mesh_service_serving{service=\"store\"}", 1.0),
        ("mesh_service_serving{service=\"ingest\"}", 1.0),
        ("mesh_service_serving{service=\"sync\"}", 1.0),
    ] {
        assert_eq!(
            sample(&metrics, metric),
            Some(value),
            "{metric}:\n{metrics}"
        );
    }
    assert!(sample(&metrics, "cloud_probe_latency_seconds{probe=\"health\"}").is_some());

    // The cloud goes dark: the link line says OFFLINE, the mesh is still healthy.
    cloud
        .admin
        .set_faults(&Faults {
            mode: FaultMode::Refuse,
            ..Faults::normal()
        })
        .await
        .expect("faults");
    let offline = eventually(DEADLINE, "edge status saying offline", || async {
        let out = edge_status(&[&targets[..], &["--format", "json"][..]].concat()).await;
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (json["link"]["state"] == "offline").then_some(json)
    })
    .await;
    assert_eq!(offline["mesh_healthy"], true, "offline is not a site fault");
    assert!(
        offline["link"]["offline_for_seconds"].is_number(),
        "{offline}"
    );

    // One service not answering: said on its line, the command still succeeds.
    let dead = closed_port();
    let partial = [
        "--health-url",
        &site.health_url,
        "--store-url",
        &site.store_url,
        "--sync-url",
        &dead,
        "--ingest-url",
        &site.ingest_url,
        "--ca",
        &ca,
        "--token-file",
        &token,
    ];
    let out = edge_status(&partial).await;
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    let sync_line = table
        .lines()
        .find(|l| l.starts_with("last sync"))
        .expect("a last sync line");
    assert!(sync_line.contains("unreachable"), "{table}");

    // Nothing answering at all: the screen still says what failed, exit 1.
    let nothing = [
        "--health-url",
        &dead,
        "--store-url",
        &dead,
        "--sync-url",
        &dead,
        "--ingest-url",
        &dead,
        "--timeout",
        "1s",
    ];
    let out = edge_status(&nothing).await;
    assert!(!out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("health-svc unreachable"), "{table}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing answered"));
}
