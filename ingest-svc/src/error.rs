//! The one mapping from ingest failures to gRPC statuses.
//!
//! What each code tells a gateway, and so what it may do:
//! - `INVALID_ARGUMENT`: the request as a whole is bad (no readings, more
//!   than the batch limit, or bytes that do not decode, which the server's
//!   codec answers before a handler runs); sent again unchanged it fails
//!   again. Bad *readings* are never this: they are per-reading results in
//!   an OK reply.
//! - `UNAVAILABLE`: store-svc is unreachable or a service is shutting down;
//!   nothing of the batch was acknowledged, so resend it.
//! - `RESOURCE_EXHAUSTED`: the site's storage is full; keep the readings at
//!   the gateway and resend later.
//! - `INTERNAL`: the site failed (a database error, store-svc refusing
//!   readings ingest-svc validated, an answer ingest-svc cannot read);
//!   nothing of the batch was acknowledged, and resending it is safe.
//!
//! A code store-svc answers is never passed on as it is: it describes
//! ingest-svc's request to store-svc, not the gateway's request.

use tonic::{Code, Status};

/// Why an ingest call failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The request as a whole is bad input (not one of its readings: those
    /// are reported per reading in the reply).
    #[error("{message}")]
    Invalid {
        /// Summary for the status message.
        message: String,
        /// `(field path, reason)` pairs for `google.rpc.BadRequest`.
        violations: Vec<(String, String)>,
    },
    /// store-svc could not be reached or did not answer in time; nothing of
    /// the batch was acknowledged.
    #[error("store-svc is unreachable; nothing from this batch was acknowledged, retry it")]
    StoreUnavailable(String),
    /// The site's storage is full and its policy refuses new readings;
    /// store-svc's message says how full.
    #[error("{0}")]
    StorageFull(String),
    /// store-svc failed, or answered something ingest-svc cannot use.
    #[error("store-svc failed: {}", .0.message())]
    Store(Status),
    /// The service is shutting down.
    #[error("ingest-svc is shutting down; reconnect and resend unacknowledged batches")]
    ShuttingDown,
}

impl IngestError {
    /// Classifies a failed call to store-svc.
    pub fn from_store(status: Status) -> IngestError {
        match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted => IngestError::StoreUnavailable(status.message().to_owned()),
            Code::ResourceExhausted => IngestError::StorageFull(status.message().to_owned()),
            _ => IngestError::Store(status),
        }
    }
}

impl From<IngestError> for Status {
    fn from(err: IngestError) -> Status {
        match err {
            IngestError::Invalid {
                message,
                violations,
            } => edge_runtime::status::invalid_argument(message, violations),
            IngestError::StoreUnavailable(ref detail) => {
                // The transport detail is for operators, not gateways.
                tracing::warn!(%detail, "store-svc unreachable");
                Status::unavailable(err.to_string())
            }
            IngestError::StorageFull(message) => Status::resource_exhausted(message),
            IngestError::ShuttingDown => Status::unavailable(err.to_string()),
            IngestError::Store(status) => {
                let code = status.code();
                tracing::error!(?code, message = status.message(), "store-svc failed");
                // Whatever store-svc said, the gateway's request was fine and
                // the site failed: a refusal of validated readings is
                // ingest-svc's bug, any other code a fault between the two.
                let what = if code == Code::InvalidArgument {
                    "store-svc refused validated readings; see ingest-svc logs".to_owned()
                } else {
                    format!("store-svc failed: {}", status.message())
                };
                Status::internal(format!(
                    "{what}; nothing of this batch was acknowledged, resending it is safe"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_for(store: Status) -> Code {
        Status::from(IngestError::from_store(store)).code()
    }

    #[test]
    fn transient_store_failures_are_unavailable() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Unknown,
            Code::Aborted,
        ] {
            assert_eq!(
                code_for(Status::new(code, "x")),
                Code::Unavailable,
                "{code:?}"
            );
        }
    }

    #[test]
    fn a_full_site_is_resource_exhausted_with_the_stores_words() {
        let status = Status::from(IngestError::from_store(Status::resource_exhausted(
            "the site's storage is full",
        )));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "the site's storage is full");
    }

    /// Codes that would describe the gateway's request if passed on (its
    /// arguments, its size, what exists) are the site's failure instead.
    #[test]
    fn every_other_store_code_is_internal() {
        for code in [
            Code::InvalidArgument,
            Code::OutOfRange,
            Code::NotFound,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::Unimplemented,
            Code::DataLoss,
            Code::Internal,
            Code::Ok,
        ] {
            assert_eq!(code_for(Status::new(code, "x")), Code::Internal, "{code:?}");
        }
    }
}
