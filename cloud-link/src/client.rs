//! The HTTP client for the cloud contract: gzip request bodies, the bearer
//! token, bounded response bodies, and failures sorted by what the caller
//! should do about them (see [`CloudError`]).
//!
//! A response is trusted only when it is well formed: a 2xx whose body is not
//! the expected JSON, or whose per-version results do not match what was sent
//! one for one, is a failure ([`CloudError::Malformed`]), never a success.

use std::collections::HashSet;
use std::io::Write as _;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Client, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::contract::{
    self, AmendmentRequest, ChangesPage, Coverage, ErrorBody, PushBatch, PushResponse,
    ReadingState, SimpleCreated, SimpleReading, UnsentAck, UnsentReport, VersionResult,
};
use crate::trust::CloudTrust;

/// Error codes of the contract that blame the request's envelope (headers),
/// not the data in it: never a reason to dead-letter a reading.
const REQUEST_ERROR_CODES: [&str; 5] = [
    "missing_idempotency_key",
    "invalid_idempotency_key",
    "idempotency_key_reused",
    "unauthorized",
    "unsupported_encoding",
];

/// How much of a bad response body goes into errors and logs.
const EXCERPT_CHARS: usize = 200;

/// How to reach the cloud.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL, e.g. `https://cloud.example.com` (no trailing path needed).
    pub base_url: String,
    /// Bearer token, if the cloud wants one.
    pub token: Option<String>,
    /// Deadline for a whole request, connect included.
    pub request_timeout: Duration,
    /// Deadline for the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Compress request bodies with gzip.
    pub gzip: bool,
    /// Largest response body read; a longer one is cut off and the request
    /// fails.
    pub max_response_bytes: usize,
    /// The CA certificates an `https://` cloud's certificate must chain to
    /// (`--cloud-ca`); `None`: the system's roots.
    pub trust: Option<CloudTrust>,
}

/// A request to the cloud failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CloudError {
    /// No connection was made (refused, unreachable, DNS, TLS handshake):
    /// the cloud never saw the request.
    #[error("cannot connect to the cloud: {0}")]
    Connect(String),
    /// No complete answer in time, or the connection broke after the
    /// request was sent: the cloud may or may not have processed it.
    #[error("no answer from the cloud: {0}")]
    NoAnswer(String),
    /// 429, or 503 with `Retry-After`: the cloud asked to slow down.
    #[error("the cloud asked to slow down (HTTP {status}){}", retry_note(*.retry_after))]
    Throttled {
        /// The status.
        status: u16,
        /// The `Retry-After` it sent.
        retry_after: Option<Duration>,
        /// Start of the body.
        excerpt: String,
    },
    /// Any other 5xx.
    #[error("the cloud failed (HTTP {status}): {excerpt}")]
    Server {
        /// The status.
        status: u16,
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
        /// Start of the body.
        excerpt: String,
    },
    /// 401 or 403: the token is missing or wrong. A configuration problem,
    /// not a property of the data.
    #[error("the cloud refused our credentials (HTTP {status}): {excerpt}")]
    Unauthorized {
        /// The status.
        status: u16,
        /// Start of the body.
        excerpt: String,
    },
    /// 400, 413 or 422: the cloud refused the request as a whole.
    #[error("the cloud refused the request (HTTP {status}): {excerpt}")]
    Refused {
        /// The status.
        status: u16,
        /// The error body, when it was one.
        body: Option<ErrorBody>,
        /// Start of the body.
        excerpt: String,
    },
    /// A status the contract does not use for this call.
    #[error("unexpected answer from the cloud (HTTP {status}): {excerpt}")]
    Unexpected {
        /// The status.
        status: u16,
        /// Start of the body.
        excerpt: String,
    },
    /// A success status with a body that is not what the contract promises.
    #[error("malformed answer from the cloud (HTTP {status}): {reason}; body starts {excerpt:?}")]
    Malformed {
        /// The status.
        status: u16,
        /// What is wrong with it.
        reason: String,
        /// Start of the body.
        excerpt: String,
    },
    /// The request body could not be built.
    #[error("cannot encode the request: {0}")]
    Encode(String),
}

fn retry_note(retry_after: Option<Duration>) -> String {
    retry_after
        .map(|d| format!(", retry after {}s", d.as_secs()))
        .unwrap_or_default()
}

impl CloudError {
    /// The cloud may have processed the request although no answer came back.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, CloudError::NoAnswer(_))
    }

    /// The wait the cloud asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CloudError::Throttled { retry_after, .. } | CloudError::Server { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// A refusal of the request as a whole that names no version: splitting
    /// the batch finds the version to blame.
    pub fn is_batch_refusal(&self) -> bool {
        matches!(self, CloudError::Refused { .. })
    }

    /// The HTTP status, when one came back.
    pub fn status(&self) -> Option<u16> {
        match self {
            CloudError::Throttled { status, .. }
            | CloudError::Server { status, .. }
            | CloudError::Unauthorized { status, .. }
            | CloudError::Refused { status, .. }
            | CloudError::Unexpected { status, .. }
            | CloudError::Malformed { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The cloud's answer to a batch push, checked against what was sent.
#[derive(Debug, Clone, PartialEq)]
pub struct PushOutcome {
    /// One result per version sent, in the order sent.
    pub results: Vec<VersionResult>,
}

/// A client for one cloud.
#[derive(Debug, Clone)]
pub struct CloudClient {
    http: Client,
    config: ClientConfig,
    base: String,
    /// `base` as logs, stats and health may show it.
    shown: String,
}

/// `url` without user info, query or fragment (or only its scheme when it
/// does not parse).
pub(crate) fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.as_str().trim_end_matches('/').to_owned()
        }
        Err(_) => format!("{}://…", url.split(':').next().unwrap_or_default()),
    }
}

impl CloudClient {
    /// A client for `config.base_url`.
    pub fn new(config: ClientConfig) -> Result<CloudClient, CloudError> {
        edge_runtime::tls::install_provider();
        let http = Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("edge-sync/", env!("CARGO_PKG_VERSION")));
        let http = match &config.trust {
            Some(trust) => trust.apply(http),
            None => http,
        };
        let http = http
            .build()
            .map_err(|err| CloudError::Encode(format!("cannot build the HTTP client: {err}")))?;
        let base = config.base_url.trim_end_matches('/').to_owned();
        let shown = shown_url(&base);
        Ok(CloudClient {
            http,
            config,
            base,
            shown,
        })
    }

    /// The base URL as it may be shown (logs, `edge status`, health-svc):
    /// without user info or query, which may carry credentials.
    pub fn base_url(&self) -> &str {
        &self.shown
    }

    /// `GET /health` with `timeout`: `Ok(latency)` on 200.
    pub async fn health(&self, timeout: Duration) -> Result<Duration, CloudError> {
        let started = Instant::now();
        let response = self
            .http
            .get(format!("{}{}", self.base, contract::HEALTH_PATH))
            .timeout(timeout)
            .send()
            .await
            .map_err(send_error)?;
        let status = response.status();
        if status == StatusCode::OK {
            // Drain a little so the connection can be reused.
            let _ = self.read_bounded(response).await;
            return Ok(started.elapsed());
        }
        Err(self.failure(response).await)
    }

    /// Pushes a batch under idempotency key `batch_id` and checks that the
    /// answer holds exactly one result per version sent.
    pub async fn push(
        &self,
        site_id: &str,
        batch_id: &str,
        batch: &PushBatch,
    ) -> Result<PushOutcome, CloudError> {
        let response = self
            .send_json(
                reqwest::Method::POST,
                &contract::batches_path(site_id),
                batch,
                Some(batch_id),
            )
            .await?;
        let status = response.status();
        let answer: PushResponse = self.answer(response, StatusCode::OK).await?;
        match_results(batch, answer).map_err(|reason| CloudError::Malformed {
            status: status.as_u16(),
            reason,
            excerpt: String::new(),
        })
    }

    /// Reports seqs the site will not deliver.
    pub async fn report_unsent(
        &self,
        site_id: &str,
        report: &UnsentReport,
    ) -> Result<UnsentAck, CloudError> {
        let response = self
            .send_json(
                reqwest::Method::PUT,
                &contract::unsent_path(site_id),
                report,
                None,
            )
            .await?;
        self.answer(response, StatusCode::OK).await
    }

    /// The cloud's coverage of the site's seqs.
    pub async fn coverage(&self, site_id: &str) -> Result<Coverage, CloudError> {
        let response = self
            .get(format!("{}{}", self.base, contract::coverage_path(site_id)))
            .await?;
        self.answer(response, StatusCode::OK).await
    }

    /// One page of the site's change feed: versions written elsewhere after
    /// cursor `after` of the readings `site_id` originated and of the shared
    /// `sensors`, at most `limit` (1 to [`contract::MAX_CHANGES_PAGE`]). A
    /// page that breaks the contract's promises (a cursor that goes back,
    /// more versions than asked for) is [`CloudError::Malformed`].
    pub async fn changes(
        &self,
        site_id: &str,
        after: u64,
        limit: usize,
        sensors: &[String],
    ) -> Result<ChangesPage, CloudError> {
        let mut url =
            reqwest::Url::parse(&format!("{}{}", self.base, contract::changes_path(site_id)))
                .map_err(|err| {
                    CloudError::Encode(format!("cannot build the change feed URL: {err}"))
                })?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("after", &after.to_string());
            query.append_pair("limit", &limit.to_string());
            for sensor in sensors {
                query.append_pair("sensor", sensor);
            }
        }
        let response = self.get(url).await?;
        let status = response.status();
        let page: ChangesPage = self.answer(response, StatusCode::OK).await?;
        let broken = if page.next_cursor < after {
            Some(format!(
                "next_cursor {} is behind the cursor sent ({after})",
                page.next_cursor
            ))
        } else if page.versions.len() > limit {
            Some(format!(
                "{} versions on a page of at most {limit}",
                page.versions.len()
            ))
        } else {
            None
        };
        match broken {
            Some(reason) => Err(CloudError::Malformed {
                status: status.as_u16(),
                reason,
                excerpt: String::new(),
            }),
            None => Ok(page),
        }
    }

    /// Asks the cloud to amend a reading (a cloud-side correction, written
    /// on top of its current version); answers the reading as the cloud
    /// holds it afterwards. An unknown reading is a 404
    /// ([`CloudError::status`] says so).
    pub async fn amend(
        &self,
        reading_id: &str,
        request: &AmendmentRequest,
    ) -> Result<ReadingState, CloudError> {
        let response = self
            .send_json(
                reqwest::Method::POST,
                &contract::amendments_path(reading_id),
                request,
                None,
            )
            .await?;
        self.answer(response, StatusCode::OK).await
    }

    /// A reading's current version as the cloud holds it. An unknown
    /// reading is a 404 ([`CloudError::status`] says so).
    pub async fn reading(&self, reading_id: &str) -> Result<ReadingState, CloudError> {
        let response = self
            .get(format!(
                "{}{}",
                self.base,
                contract::reading_path(reading_id)
            ))
            .await?;
        self.answer(response, StatusCode::OK).await
    }

    /// Compatibility mode: one reading to the simple API, answered 201.
    pub async fn post_simple(&self, reading: &SimpleReading) -> Result<SimpleCreated, CloudError> {
        let response = self
            .send_json(
                reqwest::Method::POST,
                contract::SIMPLE_READINGS_PATH,
                reading,
                None,
            )
            .await?;
        self.answer(response, StatusCode::CREATED).await
    }

    /// An authorized GET of `url`.
    async fn get(&self, url: impl reqwest::IntoUrl) -> Result<Response, CloudError> {
        self.authorized(self.http.get(url))
            .send()
            .await
            .map_err(send_error)
    }

    /// The body of an answer that must have status `expected`; any other
    /// status is the failure it names.
    async fn answer<T: DeserializeOwned>(
        &self,
        response: Response,
        expected: StatusCode,
    ) -> Result<T, CloudError> {
        let status = response.status();
        if status != expected {
            return Err(self.failure(response).await);
        }
        self.parse(status, response).await
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.config.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            None => request,
        }
    }

    fn encode<T: Serialize>(&self, body: &T) -> Result<Vec<u8>, CloudError> {
        let json = serde_json::to_vec(body).map_err(|err| CloudError::Encode(err.to_string()))?;
        if !self.config.gzip {
            return Ok(json);
        }
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(json.len() / 4),
            flate2::Compression::fast(),
        );
        encoder
            .write_all(&json)
            .and_then(|()| encoder.finish())
            .map_err(|err| CloudError::Encode(err.to_string()))
    }

    fn with_body(
        &self,
        request: reqwest::RequestBuilder,
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        let request = if self.config.gzip {
            request.header(CONTENT_ENCODING, "gzip")
        } else {
            request
        };
        request.body(body)
    }

    /// Sends `body` as JSON (gzip-encoded if configured) with the token and,
    /// if given, an idempotency key.
    async fn send_json<T: Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &T,
        idempotency_key: Option<&str>,
    ) -> Result<Response, CloudError> {
        let body = self.encode(body)?;
        let mut request = self
            .authorized(self.http.request(method, format!("{}{path}", self.base)))
            .header(CONTENT_TYPE, "application/json");
        if let Some(key) = idempotency_key {
            request = request.header(contract::IDEMPOTENCY_KEY_HEADER, key);
        }
        // The caller's trace continues in the cloud (W3C traceparent).
        let mut trace = reqwest::header::HeaderMap::new();
        edge_runtime::trace_context::inject_http(&mut trace);
        if !trace.is_empty() {
            request = request.headers(trace);
        }
        self.with_body(request, body)
            .send()
            .await
            .map_err(send_error)
    }

    /// Reads at most `max_response_bytes` of the body; `Err` when it is
    /// longer (what was read is returned for the excerpt) or breaks off.
    async fn read_bounded(&self, mut response: Response) -> Result<Vec<u8>, (Vec<u8>, String)> {
        let limit = self.config.max_response_bytes;
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        let room = limit.saturating_sub(body.len());
                        body.extend_from_slice(&chunk[..room.min(chunk.len())]);
                        return Err((body, format!("response longer than {limit} bytes; cut off")));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(err) => return Err((body, format!("response body broke off: {err}"))),
            }
        }
    }

    async fn parse<T: DeserializeOwned>(
        &self,
        status: StatusCode,
        response: Response,
    ) -> Result<T, CloudError> {
        let body = match self.read_bounded(response).await {
            Ok(body) => body,
            Err((partial, reason)) => {
                return Err(CloudError::Malformed {
                    status: status.as_u16(),
                    reason,
                    excerpt: excerpt(&partial),
                });
            }
        };
        serde_json::from_slice(&body).map_err(|err| CloudError::Malformed {
            status: status.as_u16(),
            reason: format!("not the expected JSON: {err}"),
            excerpt: excerpt(&body),
        })
    }

    /// Turns a non-success answer into the matching error.
    async fn failure(&self, response: Response) -> CloudError {
        let status = response.status();
        let retry_after = parse_retry_after(response.headers(), SystemTime::now());
        let body = self.read_bounded(response).await.unwrap_or_else(|(b, _)| b);
        let text = excerpt(&body);
        let code = status.as_u16();
        match status {
            StatusCode::TOO_MANY_REQUESTS => CloudError::Throttled {
                status: code,
                retry_after,
                excerpt: text,
            },
            StatusCode::SERVICE_UNAVAILABLE if retry_after.is_some() => CloudError::Throttled {
                status: code,
                retry_after,
                excerpt: text,
            },
            s if s.is_server_error() => CloudError::Server {
                status: code,
                retry_after,
                excerpt: text,
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CloudError::Unauthorized {
                status: code,
                excerpt: text,
            },
            // Too large is about the batch whoever says it: splitting helps.
            StatusCode::PAYLOAD_TOO_LARGE => CloudError::Refused {
                status: code,
                body: serde_json::from_slice(&body).ok(),
                excerpt: text,
            },
            // A 400/422 blames the data only when it is the contract's error
            // body with a data code: a proxy's page, or a complaint about the
            // request's headers, must not dead-letter readings.
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                match serde_json::from_slice::<ErrorBody>(&body) {
                    Ok(parsed) if !REQUEST_ERROR_CODES.contains(&parsed.error.code.as_str()) => {
                        CloudError::Refused {
                            status: code,
                            body: Some(parsed),
                            excerpt: text,
                        }
                    }
                    _ => CloudError::Unexpected {
                        status: code,
                        excerpt: text,
                    },
                }
            }
            _ => CloudError::Unexpected {
                status: code,
                excerpt: text,
            },
        }
    }
}

fn send_error(err: reqwest::Error) -> CloudError {
    // `is_connect` covers refused, unreachable and handshake failures: the
    // request never left. Everything else may have reached the cloud.
    let text = error_chain(&err);
    if err.is_connect() {
        CloudError::Connect(text)
    } else {
        CloudError::NoAnswer(text)
    }
}

/// An error and its sources, one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The start of a body, printable, for logs.
pub fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(EXCERPT_CHARS * 4)])
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Longest `Retry-After` honoured: a larger value (a misconfigured proxy, a
/// hostile answer) is cut to this, so it can delay a push but never park it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

/// `Retry-After` as seconds or an HTTP date, relative to `now`, at most
/// [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds.min(MAX_RETRY_AFTER.as_secs())),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Matches results to the versions sent: exactly one each, nothing else.
fn match_results(batch: &PushBatch, answer: PushResponse) -> Result<PushOutcome, String> {
    let key = |reading_id: &str, v: &contract::VersionStamp| {
        (reading_id.to_owned(), v.hlc, v.site_id.clone())
    };
    let sent: HashSet<_> = batch
        .versions
        .iter()
        .map(|v| key(&v.reading_id, &v.version))
        .collect();
    let mut by_key = std::collections::HashMap::with_capacity(answer.results.len());
    for result in answer.results {
        let k = key(&result.reading_id, &result.version);
        if !sent.contains(&k) {
            return Err(format!(
                "a result for reading {} version {:?} that was not sent",
                result.reading_id, result.version
            ));
        }
        if by_key.insert(k, result).is_some() {
            return Err("two results for one version".into());
        }
    }
    let mut results = Vec::with_capacity(batch.versions.len());
    for v in &batch.versions {
        match by_key.remove(&key(&v.reading_id, &v.version)) {
            Some(result) => results.push(result),
            None => {
                return Err(format!(
                    "no result for reading {} (of {} sent)",
                    v.reading_id,
                    batch.versions.len()
                ));
            }
        }
    }
    Ok(PushOutcome { results })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_carry_no_credentials() {
        assert_eq!(
            shown_url("https://user:secret@cloud.example.com:8443/edge?token=x#f"),
            "https://cloud.example.com:8443/edge"
        );
        assert_eq!(shown_url("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }
    use crate::contract::{Hlc, Priority, VersionRecord, VersionStamp, VersionStatus};

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

    fn result(v: &VersionRecord) -> VersionResult {
        VersionResult {
            reading_id: v.reading_id.clone(),
            version: v.version.clone(),
            status: VersionStatus::Accepted,
            reason: None,
        }
    }

    #[test]
    fn results_must_match_the_batch_one_for_one() {
        let batch = PushBatch {
            versions: vec![version("a"), version("b")],
        };
        let ok = PushResponse {
            results: vec![result(&batch.versions[1]), result(&batch.versions[0])],
        };
        let outcome = match_results(&batch, ok).expect("matching results");
        assert_eq!(outcome.results[0].reading_id, "a", "put in the order sent");

        let missing = PushResponse {
            results: vec![result(&batch.versions[0])],
        };
        assert!(match_results(&batch, missing).is_err());
        let stranger = PushResponse {
            results: vec![
                result(&batch.versions[0]),
                result(&batch.versions[1]),
                result(&version("c")),
            ],
        };
        assert!(match_results(&batch, stranger).is_err());
        let twice = PushResponse {
            results: vec![result(&batch.versions[0]), result(&batch.versions[0])],
        };
        assert!(match_results(&batch, twice).is_err());
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, reqwest::header::HeaderValue::from_static("7"));
        assert_eq!(
            parse_retry_after(&headers, now),
            Some(Duration::from_secs(7))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        headers.insert(
            RETRY_AFTER,
            reqwest::header::HeaderValue::from_str(&later).expect("header"),
        );
        assert_eq!(
            parse_retry_after(&headers, now),
            Some(Duration::from_secs(30))
        );
        headers.insert(
            RETRY_AFTER,
            reqwest::header::HeaderValue::from_static("soon"),
        );
        assert_eq!(parse_retry_after(&headers, now), None);
    }

    #[test]
    fn excerpts_are_short_and_printable() {
        let html = format!("<html>\n<body>{}</body>", "x".repeat(1000));
        let text = excerpt(html.as_bytes());
        assert_eq!(text.chars().count(), EXCERPT_CHARS);
        assert!(!text.contains('\n'));
    }
}
