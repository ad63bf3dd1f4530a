//! Glue over the `kafka-protocol` crate: request header and body decoding (the crate is
//! patched so that wire counts cannot force huge allocations, see `vendor/kafka-protocol`),
//! response encoding, the ApiVersions table, and the zero-copy Fetch response layout.

pub mod api_versions;
pub mod fetch_response;
pub mod throttle_time;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;

use crate::log::partition::FileSlice;

#[derive(Debug, Error)]
pub enum RequestError {
    #[error("request shorter than its header")]
    Truncated,
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("unsupported version {version} of {api_key:?}")]
    UnsupportedVersion { api_key: ApiKey, version: i16 },
    #[error("malformed request: {0}")]
    Malformed(String),
}

/// A decoded request header with the body bytes still encoded (they borrow the frame).
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: Bytes,
}

/// Peeks the api key and version, checks them against what is served, then decodes the header.
/// An ApiVersions request of any version is let through: it is answered even when unsupported.
pub fn parse_request(frame: Bytes) -> Result<Request, RequestError> {
    parse_request_in(frame, api_versions::supported)
}

/// [`parse_request`] against another listener's table (the controller listener's).
pub fn parse_request_in(
    mut frame: Bytes,
    supported: fn(ApiKey) -> Option<api_versions::VersionRange>,
) -> Result<Request, RequestError> {
    if frame.len() < 4 {
        return Err(RequestError::Truncated);
    }
    let api_key_code = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key =
        ApiKey::try_from(api_key_code).map_err(|_| RequestError::UnknownApiKey(api_key_code))?;
    let supported = supported(api_key).ok_or(RequestError::UnknownApiKey(api_key_code))?;
    let header_version = if api_key == ApiKey::ApiVersions && version > supported.max {
        // Unknown future version: read the header as the newest we know (v2 is a superset
        // prefix of every ApiVersions request header).
        api_key.request_header_version(supported.max)
    } else if version < supported.min || version > supported.max {
        return Err(RequestError::UnsupportedVersion { api_key, version });
    } else {
        api_key.request_header_version(version)
    };
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| RequestError::Malformed(e.to_string()))?;
    Ok(Request {
        api_key,
        version,
        header,
        body: frame,
    })
}

/// Decodes a request body of type `T` at `version`.
pub fn decode<T: Decodable>(body: &mut Bytes, version: i16) -> Result<T, RequestError> {
    T::decode(body, version).map_err(|e| RequestError::Malformed(e.to_string()))
}

/// One part of a response frame: bytes in memory, or a region of a segment file that the
/// connection sends with sendfile(2).
pub enum Chunk {
    Bytes(Bytes),
    File(FileSlice),
}

impl Chunk {
    pub fn len(&self) -> u64 {
        match self {
            Chunk::Bytes(bytes) => bytes.len() as u64,
            Chunk::File(slice) => slice.length_bytes,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A response frame without its 4-byte size prefix (the connection writes that).
pub struct ResponseFrame {
    pub chunks: Vec<Chunk>,
}

impl ResponseFrame {
    pub fn size_bytes(&self) -> u64 {
        self.chunks.iter().map(Chunk::len).sum()
    }

    /// The frame's bytes in memory, file regions read in (tests and TLS-less tools).
    pub fn to_bytes(&self) -> std::io::Result<Bytes> {
        let mut output = BytesMut::with_capacity(self.size_bytes() as usize);
        for chunk in &self.chunks {
            match chunk {
                Chunk::Bytes(bytes) => output.put_slice(bytes),
                Chunk::File(slice) => output.put_slice(&slice.read_to_vec()?),
            }
        }
        Ok(output.freeze())
    }
}

/// Encodes the response header for `request` into `output`.
pub fn encode_response_header(
    output: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
) {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(output, api_key.response_header_version(version))
        .expect("response header encodes");
}

/// Encodes a whole response (header and body) into one chunk. A body that cannot be encoded
/// at the request's version is a handler bug: it names the API and version.
pub fn encode_response<T: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> ResponseFrame {
    let mut output = BytesMut::with_capacity(64);
    encode_response_header(&mut output, api_key, version, correlation_id);
    if let Err(error) = body.encode(&mut output, version) {
        panic!("cannot encode {api_key:?} v{version} response: {error}");
    }
    ResponseFrame {
        chunks: vec![Chunk::Bytes(output.freeze())],
    }
}

/// Decodes a request frame and its body as the handler for its api key would, without
/// acting on it: the fuzz target's entry point, and a cheap well-formedness check.
pub fn decode_request_frame(frame: Bytes) -> Result<(), RequestError> {
    let mut request = parse_request(frame)?;
    let version = request.version;
    match request.api_key {
        // Answered without decoding the body: newer ApiVersions in the v0 layout, refused
        // Produce versions per partition.
        ApiKey::ApiVersions if version > 4 => Ok(()),
        ApiKey::Produce if version < api_versions::PRODUCE_VERSION_MIN_ACCEPTED => Ok(()),
        // parse_request admitted only served (api, version) pairs; decode as the handler will.
        api_key => {
            kafka_protocol::messages::RequestKind::decode(api_key, &mut request.body, version)
                .map(drop)
                .map_err(|e| RequestError::Malformed(e.to_string()))
        }
    }
}
