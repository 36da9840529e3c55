//! The one mapping from ingest failures to gRPC statuses.

use tonic::{Code, Status};

/// Why an ingest call failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Nothing in the request can be stored because of bad input.
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
    /// store-svc answered with an error of its own.
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
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                IngestError::StoreUnavailable(status.message().to_owned())
            }
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
            IngestError::ShuttingDown => Status::unavailable(err.to_string()),
            IngestError::Store(status) => match status.code() {
                // A store refusing what we validated is our bug, not the caller's.
                Code::InvalidArgument => {
                    tracing::error!(
                        message = status.message(),
                        "store-svc refused validated readings"
                    );
                    Status::internal("store-svc refused validated readings; see ingest-svc logs")
                }
                code => Status::new(code, format!("store-svc failed: {}", status.message())),
            },
        }
    }
}
