//! The one place where store failures become gRPC statuses, whichever of
//! store-svc's services a call came through.

use tonic::Status;

use crate::db::{Classify as _, DbError, Failure};
use crate::model::FieldViolation;
use crate::writer::WriteError;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request is malformed.
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Reading failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A request refused for one field.
pub(crate) fn violation(field: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Invalid(vec![(field.to_owned(), reason.into())])
}

/// How a database error looks to callers; the one place that decides it.
pub(crate) fn db_status(err: &DbError) -> Status {
    match err.failure() {
        Failure::StorageFull => Status::resource_exhausted(format!(
            "the site's storage is full ({}); nothing of this call was stored: keep the readings \
             and retry once there is room",
            err.database_message().unwrap_or("no space left")
        )),
        Failure::Unavailable => Status::unavailable(
            "the site database is unavailable; this call was not acknowledged: retry it with the \
             same reading ids (readings already stored are answered DUPLICATE)",
        ),
        Failure::Refused => {
            tracing::error!(error = %err, "the database refused data that passed validation");
            Status::invalid_argument(format!(
                "the site database cannot store this request's data: {}",
                err.database_message().unwrap_or("refused")
            ))
        }
        Failure::Other => Status::internal("the site database failed; see store-svc logs"),
    }
}

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Status {
        match err {
            StoreError::Invalid(violations) => {
                edge_runtime::status::invalid_argument("invalid store request", violations)
            }
            StoreError::Write(WriteError::Closed) => {
                Status::unavailable("store-svc is shutting down")
            }
            StoreError::Write(WriteError::Db(err)) => db_status(&err),
            StoreError::Write(WriteError::Full(full)) => Status::resource_exhausted(full.0),
            StoreError::Db(err) => {
                tracing::error!(error = %err, "store query failed");
                db_status(&err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    fn code_for(code: &'static str) -> Code {
        db_status(&DbError::Query(edge_sql::faults::database_error(code))).code()
    }

    #[test]
    fn full_storage_is_resource_exhausted() {
        assert_eq!(code_for("53100"), Code::ResourceExhausted); // PostgreSQL disk_full
        assert_eq!(code_for("13"), Code::ResourceExhausted); // SQLITE_FULL
    }

    #[test]
    fn transient_failures_are_unavailable() {
        assert_eq!(code_for("08006"), Code::Unavailable); // PostgreSQL connection failure
        assert_eq!(code_for("57P01"), Code::Unavailable); // admin shutdown
        assert_eq!(code_for("40001"), Code::Unavailable); // serialization failure
        assert_eq!(code_for("5"), Code::Unavailable); // SQLITE_BUSY
        assert_eq!(code_for("517"), Code::Unavailable); // SQLITE_BUSY_SNAPSHOT
        assert_eq!(
            db_status(&DbError::Query(sqlx::Error::PoolTimedOut)).code(),
            Code::Unavailable
        );
    }

    #[test]
    fn other_failures_are_internal_without_details() {
        let status = db_status(&DbError::Query(edge_sql::faults::database_error("XX000")));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("XX000"));
        assert_eq!(code_for("11"), Code::Internal); // SQLITE_CORRUPT
    }

    #[test]
    fn data_the_database_refuses_is_invalid_argument_not_a_retry() {
        assert_eq!(code_for("22021"), Code::InvalidArgument); // invalid byte sequence
        assert_eq!(code_for("23505"), Code::InvalidArgument); // unique violation
        assert_eq!(code_for("2067"), Code::InvalidArgument); // SQLITE_CONSTRAINT_UNIQUE
        assert_eq!(code_for("18"), Code::InvalidArgument); // SQLITE_TOOBIG
    }
}
