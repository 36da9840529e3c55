//! Reading request bodies with hard limits. A body is never buffered beyond
//! its limit: the raw body is read through a length limit, and a gzip body is
//! inflated through a reader that stops one byte past the limit, so a gzip
//! bomb costs at most the limit in memory (and the CPU to inflate that much,
//! off the reactor). A body that does not arrive within `--body-timeout` is
//! `408` ([`super::deadline`]).

use std::io::Read as _;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Reads `body`, inflating it when `Content-Encoding: gzip`, and refuses
/// (`413`) a body whose decoded size exceeds `limit`.
pub(crate) async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let gzip = match headers.get(header::CONTENT_ENCODING) {
        None => false,
        Some(value) => {
            let value = value.to_str().unwrap_or("").trim().to_ascii_lowercase();
            match value.as_str() {
                "" | "identity" => false,
                "gzip" | "x-gzip" => true,
                other => {
                    return Err(ApiError::UnsupportedEncoding(
                        other.chars().take(40).collect(),
                    ));
                }
            }
        }
    };
    let too_large = || ApiError::TooLarge {
        field: None,
        message: format!("the request body exceeds {limit} bytes"),
    };
    // A declared length over the limit is refused before reading anything.
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > limit as u64
    {
        return Err(too_large());
    }
    let raw = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Err(err) => {
            return Err(match super::deadline::timed_out(&*err) {
                Some(timeout) => ApiError::BodyTimeout(timeout),
                None => ApiError::invalid_body(format!("cannot read the request body: {err}")),
            });
        }
    };
    if !gzip {
        return Ok(raw);
    }
    tokio::task::spawn_blocking(move || gunzip_limited(&raw, limit)).await?
}

/// Inflates `raw` (one or more gzip members), refusing output beyond
/// `limit` bytes (`413`) and bytes that are not gzip (`400 invalid_body`,
/// naming the encoding). Blocking: [`read_limited`] runs it off the reactor.
pub(crate) fn gunzip_limited(raw: &[u8], limit: usize) -> Result<Bytes, ApiError> {
    let mut decoded = Vec::with_capacity((raw.len() * 4).min(limit));
    flate2::read::MultiGzDecoder::new(raw)
        .take(limit as u64 + 1)
        .read_to_end(&mut decoded)
        .map_err(|e| ApiError::invalid_body(format!("the body is not valid gzip: {e}")))?;
    if decoded.len() > limit {
        return Err(ApiError::TooLarge {
            field: None,
            message: format!("the decompressed request body exceeds {limit} bytes"),
        });
    }
    Ok(Bytes::from(decoded))
}

/// Parses a JSON body; a malformed one is `400 invalid_body` with serde's
/// message (which gives the line and column). When the JSON is well-formed
/// but a value does not fit (a wrong type, a missing field), the error names
/// the field by its path in the body (`versions[3].seq`), in `field` and in
/// the message, as the contract's `ErrorBody.field` promises.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Tracking the path costs an allocation per key visited (a push of
    // 5,000 versions is some 100,000 keys), so only a body that fails is
    // parsed again to name where.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let err = err.into_inner();
        // A value that does not fit, in well-formed JSON (serde_json calls
        // some of those, such as `[]` for an enum, syntax errors).
        let misfit = err.is_data() || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
        if misfit && path != "." {
            ApiError::invalid_field(path.clone(), format!("malformed JSON body: {path}: {err}"))
        } else {
            ApiError::invalid_body(format!("malformed JSON body: {err}"))
        }
    })?;
    // Trailing characters after the value, as `serde_json::from_slice`.
    deserializer
        .end()
        .map_err(|err| ApiError::invalid_body(format!("malformed JSON body: {err}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).expect("gzip in memory");
        encoder.finish().expect("gzip in memory")
    }

    #[test]
    fn gzip_within_the_limit_inflates() {
        let body = gunzip_limited(&gzip(b"hello"), 5).expect("fits");
        assert_eq!(&body[..], b"hello");
    }

    #[test]
    fn gzip_beyond_the_limit_is_too_large() {
        let bomb = gzip(&vec![b' '; 10_000]);
        assert!(matches!(
            gunzip_limited(&bomb, 9_999),
            Err(ApiError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_is_not_gzip() {
        assert!(matches!(
            gunzip_limited(b"not gzip", 100),
            Err(ApiError::Invalid { .. })
        ));
    }
}
