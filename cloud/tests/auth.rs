//! Who may call the cloud: each site's own token, good for its own site
//! only (403 for another's, 401 without one or with a revoked one); tokens
//! issued, rotated and revoked by `edge cloud sites` against the database of
//! a running cloud; the admin API behind its own token.

mod common;

use std::time::Duration;

use common::{TestCloud, batch, error_body, token};
use edge_cloud::{SitesAction, SitesArgs, SitesError};
use edge_cloud_link::contract::{
    IDEMPOTENCY_KEY_HEADER, batches_path, changes_path, coverage_path,
};
use edge_testkit::{TestDatabase, eventually, on_both_backends};

const A: &str = "ship-a";
const B: &str = "ship-b";

/// How long a running cloud may take to see a revoked token (the brief's
/// bound; the test cloud reloads every 2 s).
const REVOCATION_BOUND: Duration = Duration::from_secs(5);

/// Runs `edge cloud sites …` against `cloud`'s database; what it printed.
async fn sites(cloud: &edge_cloud::CloudArgs, action: SitesAction) -> Result<String, SitesError> {
    let mut out = Vec::new();
    edge_cloud::sites_command::run(&SitesArgs::for_cloud(cloud, action), &mut out).await?;
    Ok(String::from_utf8(out).expect("UTF-8 output"))
}

/// The token `sites add` printed (its first line).
fn printed_token(output: &str) -> String {
    output
        .lines()
        .next()
        .expect("a token line")
        .trim()
        .to_owned()
}

/// A push of one version of `site` as `token`: its status.
async fn push_as(cloud: &TestCloud, site: &str, token: &str, key: &str) -> u16 {
    cloud
        .http
        .post(cloud.at(&batches_path(site)))
        .bearer_auth(token)
        .header(IDEMPOTENCY_KEY_HEADER, key)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&batch(site, 1..=1)).expect("serialise"))
        .send()
        .await
        .expect("an answer")
        .status()
        .as_u16()
}

async fn a_site_cannot_act_as_another(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let (a, b) = (token(A), token(B));

    // A's token pushing as B: refused, nothing stored for B, and the answer
    // does not say whose token it was.
    let response = cloud
        .http
        .post(cloud.at(&batches_path(B)))
        .bearer_auth(&a)
        .header(IDEMPOTENCY_KEY_HEADER, "k1")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&batch(B, 1..=3)).expect("serialise"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 403);
    let body = error_body(response).await;
    assert_eq!(body.error.code, "forbidden");
    assert!(body.error.message.contains(B), "{}", body.error.message);
    assert!(!body.error.message.contains(A), "{}", body.error.message);
    assert!(
        cloud
            .admin
            .all_versions(B)
            .await
            .expect("versions")
            .is_empty(),
        "nothing is stored for B"
    );

    // Nor read B's books or pull B's changes.
    for path in [coverage_path(B), changes_path(B)] {
        let response = cloud
            .http
            .get(cloud.at(&path))
            .bearer_auth(&a)
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), 403, "{path}");
    }
    // No token at all: 401, as before.
    for path in [coverage_path(B), changes_path(B)] {
        let response = cloud
            .http
            .get(cloud.at(&path))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
    }
    // Each site as itself is fine.
    assert_eq!(push_as(&cloud, B, &b, "k1").await, 200);
    assert_eq!(push_as(&cloud, A, &a, "k1").await, 200);
    let stats = cloud.admin.stats().await.expect("stats");
    assert_eq!((stats.forbidden, stats.unauthorized), (3, 2));
    cloud.stop().await;
}
on_both_backends!(a_site_cannot_act_as_another);

async fn tokens_are_issued_rotated_and_revoked_while_the_cloud_runs(db: &TestDatabase) {
    let args = TestCloud::args(db);
    let cloud = TestCloud::start_with(args.clone()).await;
    const SITE: &str = "new-site";

    // A token issued while the cloud runs works at once.
    let add = || SitesAction::Add {
        site_id: SITE.into(),
        rotate: false,
    };
    let output = sites(&args, add()).await.expect("sites add");
    assert!(output.contains("will not be shown again"), "{output}");
    let first = printed_token(&output);
    assert!(first.starts_with("edgecloud_"), "{first}");
    assert_eq!(push_as(&cloud, SITE, &first, "k1").await, 200);

    // A second add is refused, and changes nothing.
    let err = sites(&args, add()).await.expect_err("refused");
    assert!(matches!(err, SitesError::ActiveExists(_)), "{err}");
    assert!(err.to_string().contains("--rotate"), "{err}");
    assert_eq!(push_as(&cloud, SITE, &first, "k2").await, 200);

    // --rotate: the new token works at once, the old one stops within the bound.
    let rotate = SitesAction::Add {
        site_id: SITE.into(),
        rotate: true,
    };
    let second = printed_token(&sites(&args, rotate).await.expect("rotate"));
    assert_ne!(first, second);
    assert_eq!(push_as(&cloud, SITE, &second, "k3").await, 200);
    eventually(REVOCATION_BOUND, "the rotated-out token is refused", || {
        let cloud = &cloud;
        let first = first.clone();
        async move { (push_as(cloud, SITE, &first, "k4").await == 401).then_some(()) }
    })
    .await;

    // The list shows both tokens, one revoked, and never a secret.
    let listed = sites(&args, SitesAction::List).await.expect("list");
    let rows: Vec<&str> = listed.lines().filter(|l| l.starts_with(SITE)).collect();
    assert_eq!(rows.len(), 2, "{listed}");
    assert!(rows[0].trim_end().ends_with('Z'), "revoked: {listed}");
    assert!(rows[1].trim_end().ends_with('-'), "active: {listed}");
    assert!(!listed.contains(&first) && !listed.contains(&second));

    // Revoked: refused within the bound.
    let output = sites(
        &args,
        SitesAction::Revoke {
            site_id: SITE.into(),
        },
    )
    .await
    .expect("revoke");
    assert!(output.contains("revoked"), "{output}");
    eventually(REVOCATION_BOUND, "the revoked token is refused", || {
        let cloud = &cloud;
        let second = second.clone();
        async move { (push_as(cloud, SITE, &second, "k5").await == 401).then_some(()) }
    })
    .await;
    let err = sites(
        &args,
        SitesAction::Revoke {
            site_id: SITE.into(),
        },
    )
    .await
    .expect_err("nothing to revoke");
    assert!(matches!(err, SitesError::NoActiveToken(_)), "{err}");
    let err = sites(
        &args,
        SitesAction::Add {
            site_id: "cloud".into(),
            rotate: false,
        },
    )
    .await
    .expect_err("reserved");
    assert!(err.to_string().contains("site_id"), "{err}");
    cloud.stop().await;
}
on_both_backends!(tokens_are_issued_rotated_and_revoked_while_the_cloud_runs);

async fn the_admin_api_needs_its_own_token(db: &TestDatabase) {
    let cloud = TestCloud::start(db).await;
    let stats_url = format!("{}/admin/stats", cloud.admin_url);
    let site_token = token(A);
    for bearer in [None, Some("wrong"), Some(site_token.as_str())] {
        let mut request = cloud.http.get(&stats_url);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status(), 401, "{bearer:?}");
        assert_eq!(error_body(response).await.error.code, "unauthorized");
    }
    // Unknown admin routes too: nothing is said without the token.
    let response = cloud
        .http
        .get(format!("{}/admin/nothing-here", cloud.admin_url))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 401);
    let response = cloud
        .http
        .get(&stats_url)
        .bearer_auth(cloud.admin_token())
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
    let stats = cloud.admin.stats().await.expect("the client sends it");
    assert_eq!(stats.admin_unauthorized, 4);

    assert!(cloud.admin_token().starts_with("edgeadmin_"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&cloud.admin_token_file)
            .expect("admin.token")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The same token after a restart.
    let before = cloud.admin_token();
    let args = TestCloud::args(db);
    cloud.stop().await;
    let cloud = TestCloud::start_with(args).await;
    assert_eq!(cloud.admin_token(), before);
    cloud.stop().await;
}
on_both_backends!(the_admin_api_needs_its_own_token);
