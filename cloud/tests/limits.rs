//! The limits that keep one bad client from costing the cloud more than
//! its share: stalled headers close the connection, a stalled body is
//! answered 408, and a gzip bomb is refused 413 without inflating it whole;
//! after each, the cloud keeps serving.

mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use common::{TestCloud, batch, error_body, token};
use edge_cloud_link::contract::{IDEMPOTENCY_KEY_HEADER, MAX_BATCH_BODY_BYTES, batches_path};
use edge_testkit::{Backend, TestDatabase, eventually};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const SITE: &str = "ship-1";

/// The timeouts the tests set, short so the tests are quick.
const HEADER_TIMEOUT: Duration = Duration::from_millis(300);
const BODY_TIMEOUT: Duration = Duration::from_millis(300);

/// Scheduling slack on a loaded machine.
const SLACK: Duration = Duration::from_secs(5);

async fn start(db: &TestDatabase) -> TestCloud {
    let mut args = TestCloud::args(db);
    args.header_timeout = HEADER_TIMEOUT;
    args.body_timeout = BODY_TIMEOUT;
    TestCloud::start_with(args).await
}

/// Reads until the server closes the connection (or `SLACK` passes); what
/// it sent, and how long that took.
async fn read_to_close(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(SLACK, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server did not close the connection");
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_connection_stalled_in_its_headers_is_closed() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let cloud = start(&db).await;
    let addr = cloud.url.trim_start_matches("http://").to_owned();
    let mut stalled = TcpStream::connect(&addr).await.expect("connect");
    stalled
        .write_all(
            format!(
                "POST {} HTTP/1.1\r\nHost: {addr}\r\nContent-",
                batches_path(SITE)
            )
            .as_bytes(),
        )
        .await
        .expect("half the headers");
    let (answer, took) = read_to_close(&mut stalled).await;
    assert!(
        took >= HEADER_TIMEOUT.saturating_sub(Duration::from_millis(50)),
        "closed after {took:?}"
    );
    // hyper may say 408 before closing; it never serves the request.
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    eventually(SLACK, "the header timeout is counted", || async {
        let stats = cloud.admin.stats().await.expect("stats");
        (stats.header_timeouts == 1).then_some(())
    })
    .await;
    // The cloud keeps serving.
    cloud.push_ok(SITE, "after", &batch(SITE, 1..=1)).await;
    cloud.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_body_that_stalls_is_answered_408_and_the_connection_closed() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    let cloud = start(&db).await;
    let addr = cloud.url.trim_start_matches("http://").to_owned();
    let mut stalled = TcpStream::connect(&addr).await.expect("connect");
    stalled
        .write_all(
            format!(
                "POST {} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
                 {IDEMPOTENCY_KEY_HEADER}: k\r\nContent-Type: application/json\r\n\
                 Content-Length: 1000\r\n\r\n{{\"versions\": [",
                batches_path(SITE),
                token(SITE)
            )
            .as_bytes(),
        )
        .await
        .expect("headers and a little body");
    let (answer, took) = read_to_close(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(took >= BODY_TIMEOUT.saturating_sub(Duration::from_millis(50)));
    let stats = cloud.admin.stats().await.expect("stats");
    assert_eq!(stats.body_timeouts, 1);
    assert_eq!(stats.versions_accepted, 0);
    cloud.push_ok(SITE, "after", &batch(SITE, 1..=1)).await;
    cloud.stop().await;
    db.cleanup().await;
}

/// About 1 MB of gzip that inflates to far more than the push limit:
/// copies of one small gzip member (1 MiB of zeros each), which a
/// multi-member decoder inflates one after the other.
fn gzip_bomb() -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![0u8; 1 << 20]).expect("gzip");
    let member = encoder.finish().expect("gzip");
    let copies = (1 << 20) / member.len();
    let bomb = member.repeat(copies);
    assert!(
        copies << 20 > 16 * MAX_BATCH_BODY_BYTES,
        "inflates to {copies} MiB"
    );
    bomb
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_and_the_cloud_keeps_serving() {
    let db = TestDatabase::new(Backend::Sqlite).await.expect("fixture");
    // The default body timeout: the upload must not race a short one.
    let cloud = TestCloud::start(&db).await;
    let bomb = gzip_bomb();
    assert!(bomb.len() > 900 * 1024 && bomb.len() <= 1 << 20);
    let response = cloud
        .http
        .post(cloud.at(&batches_path(SITE)))
        .bearer_auth(token(SITE))
        .header(IDEMPOTENCY_KEY_HEADER, "bomb")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 413);
    let body = error_body(response).await;
    assert_eq!(body.error.code, "too_large");
    assert!(body.error.message.contains("decompressed"), "{body:?}");
    let stats = cloud.admin.stats().await.expect("stats");
    assert_eq!(stats.too_large, 1);
    // The next normal push goes through.
    cloud.push_ok(SITE, "after", &batch(SITE, 1..=3)).await;
    cloud.stop().await;
    db.cleanup().await;
}
