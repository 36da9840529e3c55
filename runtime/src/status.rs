//! Building gRPC errors the way every edge service reports a request-level
//! fault: code `INVALID_ARGUMENT` with `google.rpc.BadRequest` field
//! violations in the status details (via tonic-types), so clients see which
//! field and why.
//!
//! A status travels in HTTP/2 trailers, and standard clients refuse large
//! ones (grpc-core, under grpcio and the other wrapped languages, starts
//! refusing metadata at 8 KiB and always refuses it from 16 KiB; hyper, under
//! tonic, from 16 KiB): the caller then sees a transport error instead of the
//! reason. So every status built
//! here is bounded whatever the input, a hostile one included: at most
//! [`MAX_VIOLATIONS`] violations and [`MAX_VIOLATION_BYTES`] of them, each
//! field and reason cut to [`MAX_FIELD_BYTES`] and [`MAX_REASON_BYTES`], the
//! message cut to [`MAX_MESSAGE_BYTES`]. The message says how many violations
//! were left off. As sent (`grpc-message` percent-encoded, the details
//! base64-encoded and repeating the message), a status stays under 8 KiB.
//!
//! Per-item outcomes (one per reading of a batch) are not request-level
//! faults: they belong in the reply body, which has no such limit.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Most field violations one status carries.
pub const MAX_VIOLATIONS: usize = 20;
/// Most bytes of field names and reasons one status carries.
pub const MAX_VIOLATION_BYTES: usize = 3 * 1024;
/// Longest field name kept, in bytes (UTF-8; cut at a character boundary).
pub const MAX_FIELD_BYTES: usize = 256;
/// Longest reason kept, in bytes.
pub const MAX_REASON_BYTES: usize = 512;
/// Longest message kept, in bytes, before the count of violations left off.
pub const MAX_MESSAGE_BYTES: usize = 512;

/// Framing of one `FieldViolation` inside `BadRequest`: tags and lengths.
const VIOLATION_FRAMING_BYTES: usize = 12;

/// `INVALID_ARGUMENT` with one field violation per `(field, reason)` pair,
/// bounded as the module says: the first violations that fit are kept, in
/// order, and the message ends with how many more were left off.
pub fn invalid_argument<I, F, R>(message: impl Into<String>, violations: I) -> Status
where
    I: IntoIterator<Item = (F, R)>,
    F: Into<String>,
    R: Into<String>,
{
    let mut kept: Vec<FieldViolation> = Vec::new();
    let mut bytes = 0;
    let mut left_off = 0usize;
    for (field, reason) in violations {
        if left_off > 0 || kept.len() == MAX_VIOLATIONS {
            left_off += 1;
            continue;
        }
        let field = truncate(field.into(), MAX_FIELD_BYTES);
        let reason = truncate(reason.into(), MAX_REASON_BYTES);
        let size = field.len() + reason.len() + VIOLATION_FRAMING_BYTES;
        if bytes + size > MAX_VIOLATION_BYTES {
            left_off += 1;
            continue;
        }
        bytes += size;
        kept.push(FieldViolation::new(field, reason));
    }
    let mut message = truncate(message.into(), MAX_MESSAGE_BYTES);
    if left_off > 0 {
        let noun = if left_off == 1 {
            "violation"
        } else {
            "violations"
        };
        message.push_str(&format!(" ({left_off} more field {noun} left off)"));
    }
    Status::with_error_details(
        Code::InvalidArgument,
        message,
        ErrorDetails::with_bad_request(kept),
    )
}

/// `text` cut to at most `max` bytes at a character boundary, ending with
/// `…` when cut.
fn truncate(mut text: String, max: usize) -> String {
    const ELLIPSIS: &str = "…";
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(ELLIPSIS);
    text
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

/// Size of `status` as an HTTP/2 header list (RFC 9113 §6.5.2: name, value
/// and 32 bytes per field), as a client's limit counts it; `None` when the
/// status cannot be written as headers at all.
pub fn header_list_size(status: &Status) -> Option<usize> {
    let mut headers = http::HeaderMap::new();
    status.add_header(&mut headers).ok()?;
    Some(
        headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Comfortably under the 16 KiB that standard clients accept.
    const BOUND: usize = 8 * 1024;

    #[test]
    fn a_few_violations_travel_unchanged() {
        let status = invalid_argument(
            "invalid store request",
            [
                ("readings[0].sensor_id", "is required"),
                ("page_size", "must be at most 1000"),
            ],
        );
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "invalid store request");
        assert_eq!(
            field_violations(&status),
            [
                ("readings[0].sensor_id".to_owned(), "is required".to_owned()),
                ("page_size".to_owned(), "must be at most 1000".to_owned()),
            ]
        );
    }

    #[test]
    fn many_violations_are_capped_and_the_rest_counted() {
        let violations =
            (0..5_000).map(|i| (format!("readings[{i}].humidity_percent"), "is required"));
        let status = invalid_argument("bad batch", violations);
        let kept = field_violations(&status);
        assert_eq!(kept.len(), MAX_VIOLATIONS);
        assert_eq!(kept[0].0, "readings[0].humidity_percent");
        assert_eq!(
            status.message(),
            format!(
                "bad batch ({} more field violations left off)",
                5_000 - MAX_VIOLATIONS
            )
        );
        assert!(header_list_size(&status).expect("writable") < BOUND);
    }

    #[test]
    fn hostile_sizes_stay_bounded() {
        // Huge multi-byte field names, reasons and message, as a caller could
        // make a service echo them back.
        let huge = "é".repeat(1 << 20);
        let violations = (0..1_000).map(|_| (huge.clone(), huge.clone()));
        let status = invalid_argument(huge.clone(), violations);
        let size = header_list_size(&status).expect("writable");
        assert!(size < BOUND, "{size} bytes of trailers");
        let kept = field_violations(&status);
        assert!(!kept.is_empty());
        assert!(kept.iter().all(|(field, reason)| {
            field.len() <= MAX_FIELD_BYTES
                && reason.len() <= MAX_REASON_BYTES
                && field.ends_with('…')
                && field.trim_end_matches('…').chars().all(|c| c == 'é')
        }));
        let left_off = 1_000 - kept.len();
        assert!(
            status
                .message()
                .ends_with(&format!(" ({left_off} more field violations left off)")),
            "{}",
            status.message()
        );
        assert!(status.message().len() <= MAX_MESSAGE_BYTES + 64);
    }

    #[test]
    fn every_mix_of_sizes_stays_bounded() {
        // Percent-encoding triples each byte of a non-ASCII message; base64
        // adds a third to the details, which repeat the message.
        let message = "\u{7f}".repeat(4 * MAX_MESSAGE_BYTES);
        for len in [1, 10, 50, 100, 141, 200, 256, 300, 512, 1_000] {
            let violations = (0..100).map(|_| ("f".repeat(len), "r".repeat(len)));
            let status = invalid_argument(message.clone(), violations);
            let size = header_list_size(&status).expect("writable");
            assert!(size < BOUND, "{size} bytes for {len}-byte fields");
        }
    }

    #[test]
    fn one_violation_left_off_is_said_in_the_singular() {
        let violations = (0..=MAX_VIOLATIONS).map(|i| (format!("f{i}"), "bad"));
        let status = invalid_argument("m", violations);
        assert_eq!(status.message(), "m (1 more field violation left off)");
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("abc".into(), 3), "abc");
        assert_eq!(truncate("abcdef".into(), 5), "ab…");
        assert_eq!(truncate("ééé".into(), 5), "é…");
        assert_eq!(truncate("ééé".into(), 6), "ééé");
    }
}
