//! The codec every `edge.v1` server decodes its requests with.
//!
//! tonic's prost codec reports a message that does not decode as INTERNAL
//! (gRPC's advice for parse errors in general). On a server that is the wrong
//! word: bytes that are not a valid request (garbage, a string field holding
//! invalid UTF-8) are the caller's fault, and INTERNAL tells a caller "the
//! site failed, retrying is safe", so a gateway would resend a poison batch
//! forever. [`RequestCodec`] encodes replies exactly as
//! `tonic_prost::ProstCodec` does, and answers a request that does not decode
//! with INVALID_ARGUMENT and prost's reason, which names the message and
//! field (`Reading.sensor_id: invalid string value: data is not UTF-8
//! encoded`). That reason is built from schema names only, never from the
//! input's bytes, so it stays short whatever a caller sends. On a stream, the
//! first message that does not decode ends the call with that status.
//!
//! Clients keep tonic's codec on purpose: a *reply* that does not decode is
//! the server's fault (or a contract mismatch), not the caller's, so INTERNAL
//! is right there, and a service that reads INVALID_ARGUMENT from a peer as
//! "my request was bad" is never misled by a local decoding failure. The
//! build script generates the servers in a pass of their own with this codec.
//!
//! Only the message decoding differs from tonic's codec. Faults in the gRPC
//! framing around a message (an invalid compressed flag, a truncated frame, a
//! body that does not decompress) are found by tonic before any codec runs
//! and keep tonic's codes.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// Server-side codec: tonic's prost encoding for replies, INVALID_ARGUMENT
/// for a request that does not decode.
#[derive(Debug, Clone)]
pub struct RequestCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for RequestCodec<T, U> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U> Codec for RequestCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder { _type: PhantomData }
    }
}

/// Decodes one request message; see [`undecodable`] for its failure.
#[derive(Debug, Clone)]
pub struct RequestDecoder<U> {
    _type: PhantomData<U>,
}

impl<U: Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|err| undecodable(&err))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// The status for a request that does not decode: INVALID_ARGUMENT, with
/// prost's reason (message and field names, no input bytes).
pub fn undecodable(err: &prost::DecodeError) -> Status {
    Status::invalid_argument(format!("request could not be decoded: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1 as pb;
    use tonic::Code;

    /// A `Reading` whose `sensor_id` (field 2, a string) holds `sensor_id`'s
    /// bytes, which need not be UTF-8.
    fn reading_with_raw_sensor_id(sensor_id: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        prost::encoding::bytes::encode(2, &sensor_id.to_vec(), &mut buf);
        buf
    }

    #[test]
    fn invalid_utf8_in_a_string_field_is_invalid_argument_naming_the_field() {
        let bytes = reading_with_raw_sensor_id(b"hold-\xff");
        let err = pb::Reading::decode(bytes.as_slice()).expect_err("not UTF-8");
        let status = undecodable(&err);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .starts_with("request could not be decoded: "),
            "{}",
            status.message()
        );
        assert!(
            status.message().contains("Reading.sensor_id"),
            "{}",
            status.message()
        );
        let valid = reading_with_raw_sensor_id(b"hold-1");
        assert_eq!(
            pb::Reading::decode(valid.as_slice())
                .expect("UTF-8")
                .sensor_id,
            "hold-1"
        );
    }
}
