//! Every error answer of the cloud, and its one mapping to a status and an
//! [`ErrorBody`]. Handlers return [`ApiError`]; nothing else builds error
//! responses, and internal errors are logged here and never shown.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use edge_cloud_link::contract::ErrorBody;

use crate::db::{Classify as _, DbError, Failure};

/// Why a request was not served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// No or a wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// A valid site token, for another site than the path names. The
    /// message names the site asked for, never the token's own.
    #[error("the bearer token is not valid for site {0:?}")]
    Forbidden(String),
    /// The request body did not arrive whole within `--body-timeout`.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// A batch push without `Idempotency-Key`.
    #[error("the Idempotency-Key header is required")]
    MissingIdempotencyKey,
    /// The body or a parameter is malformed; `field` names it when one is to blame.
    #[error("{message}")]
    Invalid {
        /// `invalid_body`, `invalid_idempotency_key`, …
        code: &'static str,
        /// The offending field, if any.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// The whole batch is refused (names no reading and no field).
    #[error("{0}")]
    InvalidBatch(String),
    /// The body is beyond a limit.
    #[error("{message}")]
    TooLarge {
        /// The offending field, if any.
        field: Option<String>,
        /// Which limit.
        message: String,
    },
    /// `Content-Encoding` other than gzip or identity.
    #[error("unsupported Content-Encoding {0:?}; send gzip or identity")]
    UnsupportedEncoding(String),
    /// The idempotency key was used before with another body.
    #[error("this Idempotency-Key was already used for a different batch")]
    KeyReused,
    /// No such route.
    #[error("no such resource")]
    NotFound,
    /// The cloud holds no reading with this id.
    #[error("the cloud holds no reading {0}")]
    UnknownReading(String),
    /// The route exists, the method does not.
    #[error("method not allowed on this resource")]
    MethodNotAllowed,
    /// `/health` while the cloud does not accept data.
    #[error("the cloud is not accepting data")]
    Unhealthy,
    /// An injected error answer (fault `error_rate`).
    #[error("injected fault: answering {0}")]
    Injected(StatusCode),
    /// An injected throttle (fault `throttle_rate`).
    #[error("rate limited; retry after {0} s")]
    Throttled(u64),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A blocking task failed.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ApiError {
    /// A malformed body, with serde's (or another) message.
    pub fn invalid_body(message: impl Into<String>) -> Self {
        ApiError::Invalid {
            code: "invalid_body",
            field: None,
            message: message.into(),
        }
    }

    /// A malformed field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            code: "invalid_body",
            field: Some(field.into()),
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::MissingIdempotencyKey => (StatusCode::BAD_REQUEST, "missing_idempotency_key"),
            ApiError::Invalid { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::InvalidBatch(_) => (StatusCode::BAD_REQUEST, "invalid_batch"),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::UnsupportedEncoding(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_encoding")
            }
            ApiError::KeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            ApiError::NotFound | ApiError::UnknownReading(_) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Unhealthy | ApiError::ShuttingDown => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ApiError::Injected(status) => (*status, injected_code(*status)),
            ApiError::Throttled(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Db(DbError::ClockExhausted { .. }) => {
                (StatusCode::CONFLICT, "clock_exhausted")
            }
            // Nothing of the request was acknowledged; a retry may succeed
            // (and finds what the database did commit as duplicates).
            ApiError::Db(err) if err.failure() == Failure::StorageFull => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_full")
            }
            ApiError::Db(err) if err.failure() == Failure::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            // Data the database cannot hold: a data error, so a site splits
            // the batch down to the version to blame and dead-letters it.
            ApiError::Db(err) if err.failure() == Failure::Refused => {
                (StatusCode::BAD_REQUEST, "invalid_body")
            }
            ApiError::Db(_) | ApiError::Task(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// The code of an injected error answer.
fn injected_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        503 => "unavailable",
        429 => "rate_limited",
        500..=599 => "internal",
        _ => "injected_fault",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = match &self {
            // An answer, not a failure: the reading cannot be amended.
            ApiError::Db(err @ DbError::ClockExhausted { .. }) => {
                ErrorBody::new(code, err.to_string())
            }
            ApiError::Db(err) if err.failure() == Failure::Refused => {
                tracing::error!(error = %self, "the database refused data that passed validation");
                ErrorBody::new(
                    code,
                    format!(
                        "the cloud's database cannot store this data: {}",
                        err.database_message().unwrap_or("refused")
                    ),
                )
            }
            ApiError::Db(err) if err.failure() != Failure::Other => {
                tracing::warn!(error = %self, "request failed; nothing of it was acknowledged");
                ErrorBody::new(
                    code,
                    match err.failure() {
                        Failure::StorageFull => {
                            "the cloud's storage is full; nothing of this request was stored, retry later"
                        }
                        _ => {
                            "the cloud's database is unavailable; nothing of this request was \
                              acknowledged, retry it"
                        }
                    },
                )
            }
            ApiError::Db(_) | ApiError::Task(_) => {
                // Logged here, once; the client learns only that it failed.
                tracing::error!(error = %self, "request failed");
                ErrorBody::new(code, "internal error; retry later")
            }
            ApiError::Invalid {
                field: Some(field),
                message,
                ..
            }
            | ApiError::TooLarge {
                field: Some(field),
                message,
            } => ErrorBody::field(code, field.clone(), message.clone()),
            ApiError::MissingIdempotencyKey => {
                ErrorBody::field(code, "Idempotency-Key", self.to_string())
            }
            ApiError::Forbidden(_) => ErrorBody::field(code, "site_id", self.to_string()),
            _ => ErrorBody::new(code, self.to_string()),
        };
        let mut response = (status, Json(body)).into_response();
        match self {
            ApiError::Throttled(seconds) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            ApiError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            // The rest of the body may still be on its way: the connection
            // cannot carry another request, so hyper closes it.
            ApiError::BodyTimeout(_) => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_carries_retry_after() {
        let response = ApiError::Throttled(7).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("7")
        );
    }

    #[test]
    fn injected_statuses_get_codes() {
        assert_eq!(
            injected_code(StatusCode::SERVICE_UNAVAILABLE),
            "unavailable"
        );
        assert_eq!(injected_code(StatusCode::BAD_GATEWAY), "internal");
        assert_eq!(injected_code(StatusCode::CONFLICT), "injected_fault");
    }
}
