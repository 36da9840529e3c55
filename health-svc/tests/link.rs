//! health-svc against the real reference cloud (in this process, on
//! ephemeral ports), its faults switched at run time: the link's state
//! machine seen through `GetCloudHealth` and `WatchCloudHealth`.
//!
//! The mesh services are not running here (their addresses point at closed
//! ports): every test also shows that the link's state does not depend on
//! the mesh's.

use edge_runtime::Service as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use edge_cloud::{FaultMode, Faults};
use edge_cloud_link::{CloudLinkArgs, ProbeConfig};
use edge_proto::v1 as pb;
use edge_proto::v1::cloud_health_service_client::CloudHealthServiceClient;
use edge_runtime::client::AuthedChannel;
use edge_runtime::{RuntimeArgs, ServeError, Shutdown};
use edge_testkit::eventually;
use health_svc::{HealthApp, HealthConfig, MeshTargets};

const TOKEN: &str = "test-token";
/// Generous: CI machines are slow and shared; conditions usually hold in
/// well under a second.
const DEADLINE: Duration = Duration::from_secs(60);

/// The reference cloud in this process.
type Cloud = edge_testkit::InProcessCloud;

/// An address nothing listens on.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

/// A probe that reacts in a fraction of a second.
fn link(cloud_url: Option<&str>, interval: Duration) -> CloudLinkArgs {
    CloudLinkArgs {
        cloud_url: cloud_url.map(str::to_owned),
        cloud_token: Some(TOKEN.into()),
        probe: ProbeConfig {
            interval,
            timeout: Duration::from_millis(500),
            failures_to_offline: 3,
            successes_to_online: 2,
            window: 10,
            min_success_ratio: 0.8,
            max_latency: Duration::from_millis(150),
        },
        ..CloudLinkArgs::new()
    }
}

/// health-svc in this process.
struct Health {
    client: CloudHealthServiceClient<AuthedChannel>,
    stop: Shutdown,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Health {
    async fn start(link: &CloudLinkArgs) -> Health {
        let config = HealthConfig {
            health_addr: "127.0.0.1:0".parse().expect("address"),
            mesh_check_interval: Duration::from_millis(100),
            mesh_check_timeout: Duration::from_millis(500),
        };
        let mesh = MeshTargets {
            ingest_url: closed_port(),
            store_url: closed_port(),
            sync_url: closed_port(),
        };
        let runtime = RuntimeArgs {
            shutdown_grace: Duration::from_secs(5),
            ..edge_testkit::runtime_args()
        };
        let app = HealthApp::build(&config, link, &mesh, &runtime)
            .await
            .expect("health-svc starts");
        let addr = app.local_addr();
        let stop = Shutdown::new();
        // Serving before connecting: the TLS handshake needs the server.
        let task = tokio::spawn(app.run(stop.clone()));
        // store-svc is not there, so no identity is loaded: the services'
        // own (configured) identity is the one that gets in.
        let client = CloudHealthServiceClient::new(
            edge_testkit::connect_with(&format!("http://{addr}"), &edge_testkit::security().mesh())
                .await,
        );
        Health { client, stop, task }
    }

    async fn get(&self) -> pb::CloudHealth {
        self.client
            .clone()
            .get_cloud_health(pb::GetCloudHealthRequest {})
            .await
            .expect("GetCloudHealth")
            .into_inner()
            .health
            .expect("health")
    }

    async fn watch(&self) -> tonic::Streaming<pb::WatchCloudHealthResponse> {
        self.client
            .clone()
            .watch_cloud_health(pb::WatchCloudHealthRequest {})
            .await
            .expect("WatchCloudHealth")
            .into_inner()
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("health task")
            .expect("health-svc served");
    }
}

fn state(health: &pb::CloudHealth) -> pb::CloudLinkState {
    health
        .link
        .as_ref()
        .and_then(|l| pb::CloudLinkState::try_from(l.state).ok())
        .unwrap_or(pb::CloudLinkState::Unspecified)
}

/// The link states the stream delivers until (and including) `wanted`,
/// without repeats.
async fn states_until(
    updates: &mut tonic::Streaming<pb::WatchCloudHealthResponse>,
    wanted: pb::CloudLinkState,
) -> (Vec<pb::CloudLinkState>, pb::CloudHealth) {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            let update = updates.message().await.expect("stream").expect("an update");
            let health = update.health.expect("health");
            // A service's change also sends a message: keep link changes only.
            if seen.last() != Some(&state(&health)) {
                seen.push(state(&health));
            }
            if state(&health) == wanted {
                return health;
            }
        }
    })
    .await;
    match found {
        Ok(health) => (seen, health),
        Err(_) => panic!("no {wanted:?} update; saw {seen:?}"),
    }
}

/// The cloud goes dark: one failed probe leaves the link ONLINE, the
/// hysteresis threshold makes it OFFLINE (and the stream opened before the
/// outage delivers ONLINE then OFFLINE), and it is ONLINE again once the
/// cloud returns. The mesh's state (unreachable here) plays no part.
#[tokio::test]
async fn the_cloud_going_dark_is_offline_after_the_threshold_and_back() {
    let cloud = Cloud::start(TOKEN).await;
    // Probes far enough apart that the first failure is seen before the third.
    let health = Health::start(&link(Some(&cloud.url), Duration::from_millis(300))).await;
    let mut updates = health.watch().await;
    let (_, online) = states_until(&mut updates, pb::CloudLinkState::Online).await;
    let link = online.link.expect("link");
    assert_eq!(link.cloud_url, cloud.url);
    assert!(link.last_success_at.is_some() && link.last_latency.is_some());
    assert!(online.cloud_reachable);
    assert!(!online.mesh_healthy, "nothing of the mesh runs here");

    let dark_at = SystemTime::now();
    cloud
        .faults(Faults {
            mode: FaultMode::Refuse,
            ..Faults::normal()
        })
        .await;
    let after_one_failure = eventually(DEADLINE, "a failed probe", || async {
        let h = health.get().await;
        let link = h.link.clone().unwrap_or_default();
        (!link.last_error.is_empty()).then_some(h)
    })
    .await;
    assert_eq!(
        state(&after_one_failure),
        pb::CloudLinkState::Online,
        "one failed probe is not an outage"
    );

    let (seen, offline) = states_until(&mut updates, pb::CloudLinkState::Offline).await;
    assert!(
        seen.iter()
            .all(|s| matches!(s, pb::CloudLinkState::Online | pb::CloudLinkState::Offline)),
        "straight from ONLINE to OFFLINE, nothing in between: {seen:?}"
    );
    let link = offline.link.expect("link");
    let since = link.reachability_since.expect("reachability_since");
    assert!(
        SystemTime::try_from(since).expect("time") >= dark_at,
        "offline since the outage"
    );
    assert!(link.success_ratio < 1.0 && link.window_probes >= 3);
    assert!(!link.reason.is_empty(), "says why");
    assert!(!offline.cloud_reachable);

    cloud.faults(Faults::normal()).await;
    let (seen, back) = states_until(&mut updates, pb::CloudLinkState::Online).await;
    assert!(!seen.contains(&pb::CloudLinkState::Degraded), "{seen:?}");
    assert!(back.link.expect("link").reason.is_empty());

    health.stop().await;
    cloud.stop().await;
}

/// A slow cloud is DEGRADED (reachable, with a reason), not OFFLINE, and
/// ONLINE again once it is fast.
#[tokio::test]
async fn a_slow_cloud_is_degraded_not_offline() {
    let cloud = Cloud::start(TOKEN).await;
    let health = Health::start(&link(Some(&cloud.url), Duration::from_millis(50))).await;
    let mut updates = health.watch().await;
    states_until(&mut updates, pb::CloudLinkState::Online).await;

    cloud
        .faults(Faults {
            latency_ms: 300,
            ..Faults::normal()
        })
        .await;
    let (seen, degraded) = states_until(&mut updates, pb::CloudLinkState::Degraded).await;
    assert!(!seen.contains(&pb::CloudLinkState::Offline), "{seen:?}");
    assert!(degraded.cloud_reachable, "degraded is still reachable");
    let link = degraded.link.expect("link");
    assert!(
        link.reason.contains("--probe-max-latency"),
        "{}",
        link.reason
    );
    let latency = std::time::Duration::try_from(link.last_latency.expect("latency")).expect("d");
    assert!(latency >= Duration::from_millis(300), "{latency:?}");
    assert_eq!(link.success_ratio, 1.0, "slow, but every probe answered");

    cloud.faults(Faults::normal()).await;
    let (seen, _) = states_until(&mut updates, pb::CloudLinkState::Online).await;
    assert!(
        !seen.contains(&pb::CloudLinkState::Offline),
        "never OFFLINE: {seen:?}"
    );

    health.stop().await;
    cloud.stop().await;
}

/// Latency drift alone sends nothing on the stream: only state changes do.
#[tokio::test]
async fn the_stream_is_quiet_while_only_figures_change() {
    let cloud = Cloud::start(TOKEN).await;
    let health = Health::start(&link(Some(&cloud.url), Duration::from_millis(50))).await;
    // Wait until the link and every (unreachable) service have settled.
    eventually(DEADLINE, "a settled health", || async {
        let h = health.get().await;
        let settled = state(&h) == pb::CloudLinkState::Online
            && h.services
                .iter()
                .all(|s| s.state == pb::ServingState::Unreachable as i32);
        settled.then_some(())
    })
    .await;
    let mut updates = health.watch().await;
    let first = updates.message().await.expect("stream").expect("at once");
    assert_eq!(
        state(&first.health.expect("health")),
        pb::CloudLinkState::Online
    );
    // Many probes (each with its own latency) and checks happen meanwhile.
    let probed_at = |h: pb::CloudHealth| {
        h.link
            .and_then(|l| l.last_probe_at)
            .and_then(|t| SystemTime::try_from(t).ok())
    };
    let first_probe = probed_at(health.get().await).expect("probed");
    eventually(DEADLINE, "ten more probes", || async {
        let last = probed_at(health.get().await)?;
        (last > first_probe + Duration::from_millis(500)).then_some(())
    })
    .await;
    let next = tokio::time::timeout(Duration::from_millis(100), updates.message()).await;
    assert!(next.is_err(), "no message without a state change: {next:?}");
    health.stop().await;
    cloud.stop().await;
}

/// No cloud URL: the link is NOT_CONFIGURED (offline by design), which is
/// neither an error nor UNKNOWN.
#[tokio::test]
async fn without_a_cloud_the_link_is_not_configured() {
    let health = Health::start(&link(None, Duration::from_millis(50))).await;
    let h = health.get().await;
    assert_eq!(state(&h), pb::CloudLinkState::NotConfigured);
    assert!(!h.cloud_reachable);
    let link = h.link.expect("link");
    assert!(link.reason.contains("--cloud-url"), "{}", link.reason);
    assert_eq!(h.services.len(), 3);
    health.stop().await;
}

/// A cloud URL that is not http(s) is refused at start-up, naming the flag.
#[tokio::test]
async fn a_bad_cloud_url_is_refused_naming_the_flag() {
    let config = HealthConfig {
        health_addr: "127.0.0.1:0".parse().expect("address"),
        ..HealthConfig::new()
    };
    let err = HealthApp::build(
        &config,
        &link(Some("ftp://cloud"), Duration::from_secs(1)),
        &MeshTargets::default(),
        &edge_testkit::runtime_args(),
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("--cloud-url"), "{err}");

    let mesh = MeshTargets {
        store_url: "not a url".into(),
        ..MeshTargets::default()
    };
    let err = HealthApp::build(
        &config,
        &link(None, Duration::from_secs(1)),
        &mesh,
        &edge_testkit::runtime_args(),
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("--store-url"), "{err}");
}
