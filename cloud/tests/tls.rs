//! The reference cloud over TLS (`--tls-cert`/`--tls-key`) and the site's
//! link checking its certificate (`--cloud-ca`): a real cloud on ephemeral
//! ports with certificates from the site CA generator, real clients built
//! from the link's own flags.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_cloud::{CloudApp, CloudArgs};
use edge_cloud_link::{
    ClientUse, CloudClient, CloudError, CloudLinkArgs, LinkState, ProbeConfig, Prober,
};
use edge_runtime::tls::site_ca::{self, SitePki};
use edge_testkit::{InProcessCloud, TEST_SITE_ID, eventually};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "tls-test-secret";
const DEADLINE: Duration = Duration::from_secs(20);

/// A CA and a `localhost`/`127.0.0.1` certificate in `dir`.
fn make_pki(dir: &Path) -> SitePki {
    site_ca::ensure(dir, &["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("certificates")
}

/// The link's flags for `cloud`, trusting `ca` (the system's roots when
/// `None`).
fn link(cloud: &InProcessCloud, ca: Option<PathBuf>) -> CloudLinkArgs {
    CloudLinkArgs {
        cloud_url: Some(cloud.url.clone()),
        cloud_token: Some(cloud.site_token(TEST_SITE_ID)),
        cloud_ca: ca,
        ..CloudLinkArgs::new()
    }
}

fn usage() -> ClientUse {
    ClientUse {
        request_timeout: Duration::from_secs(10),
        gzip: true,
        max_response_bytes: 1024 * 1024,
    }
}

fn client(args: &CloudLinkArgs) -> CloudClient {
    args.client(usage())
        .expect("the link's configuration is valid")
        .expect("a cloud is configured")
}

fn fast_probe() -> ProbeConfig {
    ProbeConfig {
        interval: Duration::from_millis(20),
        failures_to_offline: 1,
        successes_to_online: 1,
        ..ProbeConfig::default()
    }
}

async fn tls_cloud() -> (InProcessCloud, SitePki) {
    let cloud = InProcessCloud::builder(SECRET).tls().start().await;
    let pki = cloud.pki.clone().expect("a TLS cloud has certificates");
    (cloud, pki)
}

#[tokio::test]
async fn a_site_trusting_the_cloud_ca_pushes_and_probes_over_tls() {
    let (cloud, pki) = tls_cloud().await;
    assert!(cloud.url.starts_with("https://"), "{}", cloud.url);
    let client = client(&link(&cloud, Some(pki.ca.clone())));

    let outcome = client
        .push(
            TEST_SITE_ID,
            "tls-batch-1",
            &common::batch(TEST_SITE_ID, 1..=3),
        )
        .await
        .expect("the push succeeds over TLS");
    assert_eq!(outcome.results.len(), 3);
    client
        .health(Duration::from_secs(5))
        .await
        .expect("the health check succeeds over TLS");

    let stop = CancellationToken::new();
    let prober = Prober::spawn(client, fast_probe(), stop.clone());
    eventually(DEADLINE, "the probe sees the cloud online", || {
        let status = prober.status();
        async move { (status.state == LinkState::Online).then_some(()) }
    })
    .await;
    stop.cancel();

    // The admin port speaks TLS too.
    let stats = cloud.admin.stats().await.expect("admin stats over TLS");
    assert_eq!(stats.versions_accepted, 3);
    assert_eq!(stats.tls_handshake_failures, 0);
    cloud.stop().await;
}

#[tokio::test]
async fn a_site_that_does_not_trust_the_certificate_is_refused_and_sees_the_cloud_offline() {
    let (cloud, _pki) = tls_cloud().await;
    let other = tempfile::tempdir().expect("temp dir");
    let other_ca = make_pki(other.path()).ca;

    for (what, args) in [
        ("another CA", link(&cloud, Some(other_ca))),
        ("the system roots", link(&cloud, None)),
    ] {
        let client = client(&args);
        let err = client
            .push(
                TEST_SITE_ID,
                "tls-batch-x",
                &common::batch(TEST_SITE_ID, 1..=1),
            )
            .await
            .expect_err("an untrusted certificate is refused");
        assert!(matches!(err, CloudError::Connect(_)), "{what}: {err}");
        let text = err.to_string();
        assert!(text.contains("certificate"), "{what}: {text}");

        let stop = CancellationToken::new();
        let prober = Prober::spawn(client, fast_probe(), stop.clone());
        let status = eventually(DEADLINE, "the probe sees the cloud offline", || {
            let status = prober.status();
            async move { (status.state == LinkState::Offline).then_some(status) }
        })
        .await;
        stop.cancel();
        let reason = status.last_error.unwrap_or_default();
        assert!(reason.contains("certificate"), "{what}: {reason}");
    }

    // A plain HTTP client on the TLS port fails its handshake too.
    let plain = cloud.url.replacen("https://", "http://", 1);
    let _ = common::http_client(Duration::from_secs(5))
        .get(format!("{plain}/health"))
        .send()
        .await;

    let stats = eventually(DEADLINE, "the failed handshakes are counted", || {
        let admin = cloud.admin.clone();
        async move {
            let stats = admin.stats().await.ok()?;
            (stats.tls_handshake_failures >= 3).then_some(stats)
        }
    })
    .await;
    assert_eq!(stats.versions_accepted, 0);
    cloud.stop().await;
}

#[tokio::test]
async fn a_replaced_certificate_is_served_to_the_next_connection() {
    let (cloud, pki) = tls_cloud().await;
    let renewed_dir = tempfile::tempdir().expect("temp dir");
    let renewed = make_pki(renewed_dir.path());
    let old_ca = link(&cloud, Some(pki.ca.clone()));
    let new_ca = link(&cloud, Some(renewed.ca.clone()));
    client(&old_ca)
        .health(Duration::from_secs(5))
        .await
        .expect("the first certificate is served");

    std::fs::copy(&renewed.cert, &pki.cert).expect("replace the certificate");
    std::fs::copy(&renewed.key, &pki.key).expect("replace the key");

    // A new client each time: a new connection, a new handshake.
    eventually(DEADLINE, "the renewed certificate is served", || {
        let client = client(&new_ca);
        async move { client.health(Duration::from_secs(5)).await.ok() }
    })
    .await;
    let err = client(&old_ca)
        .health(Duration::from_secs(5))
        .await
        .expect_err("the old CA no longer vouches for the cloud");
    assert!(err.to_string().contains("certificate"), "{err}");
    cloud.stop().await;
}

#[tokio::test]
async fn an_unusable_cloud_ca_or_certificate_fails_start_naming_the_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let args = CloudLinkArgs {
        cloud_url: Some("https://127.0.0.1:9".into()),
        cloud_ca: Some(garbage.clone()),
        ..CloudLinkArgs::new()
    };
    let err = args.client(usage()).expect_err("the CA file is refused");
    assert!(err.to_string().contains("--cloud-ca"), "{err}");

    let args = CloudArgs::for_test(dir.path().join("cloud"), None)
        .with_tls(dir.path().join("missing.pem"), garbage);
    let err = CloudApp::build(&args)
        .await
        .err()
        .expect("the cloud refuses to start");
    assert!(err.to_string().contains("--tls-cert"), "{err}");
}
