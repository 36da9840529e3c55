//! [`AdminClient`]: a typed client of the admin API (and of the public
//! coverage endpoint), for end-to-end tests and demos that drive the
//! reference cloud: set faults, read counters, list what the cloud holds.

use std::time::Duration;

use edge_cloud_link::contract::{Coverage, ErrorBody, coverage_path};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use crate::admin::{
    ConflictsPage, CurrentVersionsPage, MAX_PAGE_LIMIT, SimpleReadingsPage, StoredConflict,
    StoredSimpleReading, StoredVersion, VersionsPage,
};
use crate::faults::Faults;
use crate::stats::CloudStats;
use edge_cloud_link::contract::VersionRecord;

/// An admin API call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    /// The admin token cannot be sent as a header (it has a control
    /// character or non-ASCII text).
    #[error("the admin token is not a valid header value")]
    BadToken,
    /// The admin token file could not be read.
    #[error("cannot read the admin token: {0}")]
    TokenFile(#[source] edge_credentials::SecretFileError),
    /// The admin URL does not parse.
    #[error("{url} is not a URL: {message}")]
    Url {
        /// The URL built.
        url: String,
        /// What the parser said.
        message: String,
    },
    /// The request did not get an answer (connection, timeout).
    #[error("request to {url} failed: {source}")]
    Request {
        /// The URL asked.
        url: String,
        /// What reqwest said.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered an error status.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status.
        status: StatusCode,
        /// The error body, if it was the usual JSON one.
        body: Box<ErrorBodyOrText>,
    },
    /// The answer was not the expected JSON.
    #[error("{url} answered something unexpected: {source}")]
    Decode {
        /// The URL asked.
        url: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

/// An error answer's body: the contract's [`ErrorBody`], or raw text.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorBodyOrText {
    /// The usual JSON error body.
    Json(ErrorBody),
    /// Anything else.
    Text(String),
}

impl std::fmt::Display for ErrorBodyOrText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorBodyOrText::Json(body) => write!(f, "{}: {}", body.error.code, body.error.message),
            ErrorBodyOrText::Text(text) => f.write_str(text),
        }
    }
}

/// Client of the reference cloud's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
}

impl AdminClient {
    /// A client of the admin API at `admin_base_url` (e.g.
    /// `http://127.0.0.1:8081`) that sends `admin_token` with every request.
    pub fn new(
        admin_base_url: impl Into<String>,
        admin_token: &str,
    ) -> Result<Self, AdminClientError> {
        Self::with_trust(admin_base_url, admin_token, None)
    }

    /// [`Self::new`] for an `https://` admin API whose certificate chains to
    /// `trust` (the system's roots when `None`).
    pub fn with_trust(
        admin_base_url: impl Into<String>,
        admin_token: &str,
        trust: Option<&edge_cloud_link::CloudTrust>,
    ) -> Result<Self, AdminClientError> {
        // reqwest is built without a default crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut authorization =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", admin_token.trim()))
                .map_err(|_| AdminClientError::BadToken)?;
        authorization.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, authorization);
        let http = reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers)
            .timeout(Duration::from_secs(30));
        let http = match trust {
            Some(trust) => trust.apply(http),
            None => http,
        };
        let http = http.build().map_err(AdminClientError::Build)?;
        Ok(AdminClient {
            http,
            base: admin_base_url.into().trim_end_matches('/').to_owned(),
        })
    }

    /// A client of the admin API at `admin_base_url` with the token read
    /// from `token_file` (the cloud's `admin.token`).
    pub fn from_token_file(
        admin_base_url: impl Into<String>,
        token_file: &std::path::Path,
    ) -> Result<Self, AdminClientError> {
        let token =
            edge_credentials::read_secret_file(token_file).map_err(AdminClientError::TokenFile)?;
        Self::new(admin_base_url, &token)
    }

    /// [`Self::from_token_file`] for an `https://` admin API whose
    /// certificate chains to `trust`.
    pub fn from_token_file_trusting(
        admin_base_url: impl Into<String>,
        token_file: &std::path::Path,
        trust: &edge_cloud_link::CloudTrust,
    ) -> Result<Self, AdminClientError> {
        let token =
            edge_credentials::read_secret_file(token_file).map_err(AdminClientError::TokenFile)?;
        Self::with_trust(admin_base_url, &token, Some(trust))
    }

    /// The faults in force.
    pub async fn faults(&self) -> Result<Faults, AdminClientError> {
        self.get(&format!("{}/admin/faults", self.base)).await
    }

    /// Replaces the faults in force; returns them as the server stored them.
    pub async fn set_faults(&self, faults: &Faults) -> Result<Faults, AdminClientError> {
        let url = format!("{}/admin/faults", self.base);
        let body = serde_json::to_vec(faults).map_err(|source| AdminClientError::Decode {
            url: url.clone(),
            source,
        })?;
        let request = self
            .http
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        send(request, url).await
    }

    /// Counters since the server started.
    pub async fn stats(&self) -> Result<CloudStats, AdminClientError> {
        self.get(&format!("{}/admin/stats", self.base)).await
    }

    /// One page of the versions stored for `site_id`, after cursor `after`.
    pub async fn versions_page(
        &self,
        site_id: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<VersionsPage, AdminClientError> {
        let mut url = format!(
            "{}/admin/sites/{}/versions?limit={limit}",
            self.base, site_id
        );
        if let Some(after) = after {
            url.push_str(&format!("&after={after}"));
        }
        self.get(&url).await
    }

    /// Every version stored for `site_id`, in storage order.
    pub async fn all_versions(
        &self,
        site_id: &str,
    ) -> Result<Vec<StoredVersion>, AdminClientError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.versions_page(site_id, after, MAX_PAGE_LIMIT).await?;
            all.extend(page.versions);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// One page of the versions stored flagged (stamped further ahead of the
    /// cloud's clock than `--max-clock-skew`), after cursor `after`.
    pub async fn clock_ahead_page(
        &self,
        after: Option<i64>,
        limit: u32,
    ) -> Result<VersionsPage, AdminClientError> {
        let mut url = format!("{}/admin/clock-ahead?limit={limit}", self.base);
        if let Some(after) = after {
            url.push_str(&format!("&after={after}"));
        }
        self.get(&url).await
    }

    /// Every version stored flagged, in storage order.
    pub async fn all_clock_ahead(&self) -> Result<Vec<StoredVersion>, AdminClientError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.clock_ahead_page(after, MAX_PAGE_LIMIT).await?;
            all.extend(page.versions);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// One page of the readings' current versions, by reading id after
    /// `after`, optionally only of readings that originated at `origin`.
    pub async fn current_page(
        &self,
        origin: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<CurrentVersionsPage, AdminClientError> {
        let mut url = self.url("/admin/current")?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("limit", &limit.to_string());
            if let Some(origin) = origin {
                query.append_pair("origin", origin);
            }
            if let Some(after) = after {
                query.append_pair("after", after);
            }
        }
        self.get(url.as_str()).await
    }

    /// Every reading's current version (of one origin site, if given), by
    /// reading id: what a replica must hold identically (P4).
    pub async fn all_current(
        &self,
        origin: Option<&str>,
    ) -> Result<Vec<VersionRecord>, AdminClientError> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .current_page(origin, after.as_deref(), MAX_PAGE_LIMIT)
                .await?;
            all.extend(page.versions);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// One page of the conflict audit log after id `after`, optionally only
    /// of `reading_id`.
    pub async fn conflicts_page(
        &self,
        reading_id: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<ConflictsPage, AdminClientError> {
        let mut url = self.url("/admin/conflicts")?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("limit", &limit.to_string());
            if let Some(reading_id) = reading_id {
                query.append_pair("reading_id", reading_id);
            }
            if let Some(after) = after {
                query.append_pair("after", &after.to_string());
            }
        }
        self.get(url.as_str()).await
    }

    /// The whole conflict audit log (of one reading, if given), in the
    /// order the conflicts were resolved.
    pub async fn all_conflicts(
        &self,
        reading_id: Option<&str>,
    ) -> Result<Vec<StoredConflict>, AdminClientError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .conflicts_page(reading_id, after, MAX_PAGE_LIMIT)
                .await?;
            all.extend(page.conflicts);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// One page of the simple-API readings, after id `after`.
    pub async fn simple_readings_page(
        &self,
        after: Option<i64>,
        limit: u32,
    ) -> Result<SimpleReadingsPage, AdminClientError> {
        let mut url = format!("{}/admin/simple-readings?limit={limit}", self.base);
        if let Some(after) = after {
            url.push_str(&format!("&after={after}"));
        }
        self.get(&url).await
    }

    /// Every simple-API reading, by id.
    pub async fn simple_readings_all(&self) -> Result<Vec<StoredSimpleReading>, AdminClientError> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.simple_readings_page(after, MAX_PAGE_LIMIT).await?;
            all.extend(page.readings);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// A site's coverage from the public API at `public_base_url`, with the
    /// bearer `token` (coverage is part of the contract, not the admin API).
    pub async fn coverage(
        &self,
        public_base_url: &str,
        site_id: &str,
        token: &str,
    ) -> Result<Coverage, AdminClientError> {
        let url = format!(
            "{}{}",
            public_base_url.trim_end_matches('/'),
            coverage_path(site_id)
        );
        // The site's token, not the admin one the default headers carry.
        let request = self
            .http
            .get(&url)
            .header(reqwest::header::AUTHORIZATION, format!("Bearer {token}"));
        send(request, url).await
    }

    /// `base` + `path`, parsed so a query can be added with proper escaping.
    fn url(&self, path: &str) -> Result<reqwest::Url, AdminClientError> {
        let url = format!("{}{path}", self.base);
        reqwest::Url::parse(&url).map_err(|err| AdminClientError::Url {
            url,
            message: err.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, url: &str) -> Result<T, AdminClientError> {
        send(self.http.get(url), url.to_owned()).await
    }
}

/// Sends `request`, turning error statuses and bad JSON into errors.
async fn send<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
    url: String,
) -> Result<T, AdminClientError> {
    let response = match request.send().await {
        Ok(response) => response,
        Err(source) => return Err(AdminClientError::Request { url, source }),
    };
    let status = response.status();
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(source) => return Err(AdminClientError::Request { url, source }),
    };
    if !status.is_success() {
        let body = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ErrorBodyOrText::Json(body),
            Err(_) => {
                ErrorBodyOrText::Text(String::from_utf8_lossy(&bytes).chars().take(500).collect())
            }
        };
        return Err(AdminClientError::Status {
            url,
            status,
            body: Box::new(body),
        });
    }
    serde_json::from_slice(&bytes).map_err(|source| AdminClientError::Decode { url, source })
}
