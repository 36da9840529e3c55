//! The push client against a real HTTP server that answers the way broken
//! clouds and proxies do: every such answer is a failure with the status and
//! an excerpt of the body, never a success.

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use edge_cloud_link::contract::{Hlc, Priority, PushBatch, VersionRecord, VersionStamp};
use edge_cloud_link::{ClientConfig, CloudClient, CloudError};

fn version(id: &str) -> VersionRecord {
    VersionRecord {
        reading_id: id.into(),
        seq: 1,
        origin_site_id: "s".into(),
        sensor_id: "x".into(),
        temperature_celsius: 1.0,
        humidity_percent: 2.0,
        measured_at_us: 3,
        received_at_us: 4,
        priority: Priority::Normal,
        clock_suspect: false,
        version: VersionStamp {
            hlc: Hlc {
                physical_ms: 5,
                logical: 0,
            },
            site_id: "s".into(),
        },
        quality: Default::default(),
        note: None,
        base: None,
        written_by: None,
    }
}

/// Answers by the site id in the path.
async fn batches(Path(site): Path<String>) -> axum::response::Response {
    let json = [(header::CONTENT_TYPE, "application/json")];
    match site.as_str() {
        "html" => (
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>Welcome to the captive portal</body></html>",
        )
            .into_response(),
        "proxy" => (
            StatusCode::BAD_GATEWAY,
            "<html><head><title>502 Bad Gateway</title></head></html>",
        )
            .into_response(),
        "huge" => (json, "[".repeat(2 * 1024 * 1024)).into_response(),
        "stranger" => (
            json,
            r#"{"results":[{"reading_id":"a","version":{"hlc":{"physical_ms":5,"logical":0},"site_id":"s"},"status":"accepted"},{"reading_id":"zzz","version":{"hlc":{"physical_ms":5,"logical":0},"site_id":"s"},"status":"accepted"}]}"#,
        )
            .into_response(),
        "missing" => (json, r#"{"results":[]}"#).into_response(),
        "throttle" => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "3")],
            r#"{"error":{"code":"rate_limited","message":"slow down"}}"#,
        )
            .into_response(),
        "proxy-400" => (
            StatusCode::BAD_REQUEST,
            "<html><body>400 Bad Request</body></html>",
        )
            .into_response(),
        "no-key" => (
            StatusCode::BAD_REQUEST,
            json,
            r#"{"error":{"code":"missing_idempotency_key","message":"no key"}}"#,
        )
            .into_response(),
        "refused" => (
            StatusCode::BAD_REQUEST,
            json,
            r#"{"error":{"code":"invalid_batch","message":"no"}}"#,
        )
            .into_response(),
        _ => (
            json,
            r#"{"results":[{"reading_id":"a","version":{"hlc":{"physical_ms":5,"logical":0},"site_id":"s"},"status":"duplicate"}]}"#,
        )
            .into_response(),
    }
}

async fn client() -> CloudClient {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let app = Router::new().route("/v1/sites/{site}/batches", post(batches));
    tokio::spawn(async move { axum::serve(listener, app).await });
    CloudClient::new(ClientConfig {
        base_url: format!("http://{addr}"),
        token: Some("t".into()),
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        gzip: true,
        max_response_bytes: 64 * 1024,
        trust: None,
    })
    .expect("client")
}

async fn push(client: &CloudClient, site: &str) -> Result<(), CloudError> {
    let batch = PushBatch {
        versions: vec![version("a")],
    };
    client.push(site, "key", &batch).await.map(|_| ())
}

#[tokio::test]
async fn a_well_formed_answer_is_a_success() {
    let client = client().await;
    let outcome = client
        .push(
            "good",
            "key",
            &PushBatch {
                versions: vec![version("a")],
            },
        )
        .await
        .expect("well formed");
    assert_eq!(outcome.results.len(), 1);
}

#[tokio::test]
async fn html_from_a_proxy_is_a_failure_with_an_excerpt() {
    let client = client().await;
    match push(&client, "html").await {
        Err(CloudError::Malformed {
            status, excerpt, ..
        }) => {
            assert_eq!(status, 200);
            assert!(excerpt.contains("captive portal"), "{excerpt}");
        }
        other => panic!("expected a malformed answer, got {other:?}"),
    }
    match push(&client, "proxy").await {
        Err(err @ CloudError::Server { status: 502, .. }) => {
            assert!(err.to_string().contains("502 Bad Gateway"), "{err}");
        }
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn results_that_do_not_match_what_was_sent_are_a_failure() {
    let client = client().await;
    for site in ["stranger", "missing"] {
        let err = push(&client, site).await.expect_err(site);
        assert!(
            matches!(err, CloudError::Malformed { .. }),
            "{site}: {err:?}"
        );
    }
}

#[tokio::test]
async fn an_oversized_answer_is_cut_off_not_buffered() {
    let client = client().await;
    match push(&client, "huge").await {
        Err(CloudError::Malformed {
            reason, excerpt, ..
        }) => {
            assert!(reason.contains("longer than 65536 bytes"), "{reason}");
            assert!(excerpt.len() <= 1024);
        }
        other => panic!("expected a cut-off answer, got {other:?}"),
    }
}

#[tokio::test]
async fn throttling_and_refusals_are_told_apart() {
    let client = client().await;
    let throttled = push(&client, "throttle").await.expect_err("429");
    assert_eq!(throttled.retry_after(), Some(Duration::from_secs(3)));
    assert!(!throttled.is_batch_refusal());
    let refused = push(&client, "refused").await.expect_err("400");
    assert!(refused.is_batch_refusal());
    assert!(!refused.is_ambiguous());
    // A proxy's 400 page, or a complaint about the headers, blames no data.
    for site in ["proxy-400", "no-key"] {
        let err = push(&client, site).await.expect_err(site);
        assert!(!err.is_batch_refusal(), "{site}: {err:?}");
    }
}
