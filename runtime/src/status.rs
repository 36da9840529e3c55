//! Building gRPC errors the way every edge service reports bad input: code
//! `INVALID_ARGUMENT` with `google.rpc.BadRequest` field violations in the
//! status details (via tonic-types), so clients see which field and why.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// `INVALID_ARGUMENT` with one field violation per `(field, reason)` pair.
pub fn invalid_argument<I, F, R>(message: impl Into<String>, violations: I) -> Status
where
    I: IntoIterator<Item = (F, R)>,
    F: Into<String>,
    R: Into<String>,
{
    let violations: Vec<FieldViolation> = violations
        .into_iter()
        .map(|(field, reason)| FieldViolation::new(field, reason))
        .collect();
    Status::with_error_details(
        Code::InvalidArgument,
        message,
        ErrorDetails::with_bad_request(violations),
    )
}

/// The field violations carried by a status, as `(field, reason)` pairs.
pub fn field_violations(status: &Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| (v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}
