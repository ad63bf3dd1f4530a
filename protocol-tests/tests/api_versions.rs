//! ApiVersions v0–v4 and versions newer than served.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use dlog_protocol_tests::*;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::Decodable;

/// (api key, min, max) the broker must advertise at least: the documented table. More APIs may
/// be served as they are added; the advertised list must equal `SUPPORTED` exactly.
const DOCUMENTED: &[(i16, i16, i16)] = &[
    (0, 0, 12), // Produce (v0–2 advertised, refused per partition)
    (1, 4, 17), // Fetch
    (2, 1, 10), // ListOffsets
    (3, 0, 13), // Metadata
    (18, 0, 4), // ApiVersions
    (19, 2, 7), // CreateTopics
    (20, 1, 6), // DeleteTopics
    (32, 1, 4), // DescribeConfigs
    (60, 0, 1), // DescribeCluster
];

fn advertised(response: &ApiVersionsResponse) -> Vec<(i16, i16, i16)> {
    let mut keys: Vec<_> = response
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    keys.sort();
    keys
}

/// The broker's own table (`dlog::protocol::api_versions::SUPPORTED`), sorted by key.
fn served() -> Vec<(i16, i16, i16)> {
    let mut source: Vec<_> = dlog::protocol::api_versions::SUPPORTED
        .iter()
        .map(|(key, range)| (*key as i16, range.min, range.max))
        .collect();
    source.sort();
    source
}

#[test]
fn served_table_includes_the_documented_apis_and_versions() {
    let served = served();
    for entry in DOCUMENTED {
        assert!(served.contains(entry), "{entry:?} missing from {served:?}");
    }
}

#[test]
fn versions_0_to_4_advertise_the_served_table() {
    let broker = Broker::start();
    let mut conn = broker.connect();
    for version in 0..=4i16 {
        let mut request = ApiVersionsRequest::default();
        if version >= 3 {
            request = request
                .with_client_software_name(str_bytes("dlog-protocol-tests"))
                .with_client_software_version(str_bytes("0.1.0"));
        }
        // Distinct, non-sequential correlation ids, including a negative one.
        let correlation_id = [7, -3, i32::MAX, 0x1234_5678, i32::MIN][version as usize];
        let frame = request_frame(ApiKey::ApiVersions, version, correlation_id, &request);
        conn.send_frame(&frame);
        let frame = conn.receive_frame();
        // The response header is v0 (correlation id only) at every version, even v3+ (KIP-511).
        assert_eq!(correlation_id_of(&frame), correlation_id, "v{version}");
        let response: ApiVersionsResponse =
            decode_response(ApiKey::ApiVersions, version, correlation_id, frame);
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(advertised(&response), served(), "v{version}");
        if version >= 1 {
            assert_eq!(response.throttle_time_ms, 0, "v{version}");
        }
    }
}

#[test]
fn flexible_header_with_tagged_fields_is_read() {
    // v3+ requests use header v2: client id (nullable string), then tagged fields. Send an
    // unknown tagged field in the header and in the body; both must be skipped.
    let broker = Broker::start();
    let mut conn = broker.connect();
    let mut header = request_header(ApiKey::ApiVersions, 3, 4242);
    header
        .unknown_tagged_fields
        .insert(7, Bytes::from_static(b"header-tag"));
    let mut body = ApiVersionsRequest::default()
        .with_client_software_name(str_bytes("tagged"))
        .with_client_software_version(str_bytes("1"));
    body.unknown_tagged_fields
        .insert(9, Bytes::from_static(b"body-tag"));
    let mut frame = BytesMut::new();
    encode_header(&mut frame, &header, 2);
    kafka_protocol::protocol::Encodable::encode(&body, &mut frame, 3).unwrap();
    conn.send_frame(&frame);
    let response: ApiVersionsResponse = conn.receive_response(ApiKey::ApiVersions, 3, 4242);
    assert_eq!(response.error_code, 0);
    assert_eq!(advertised(&response), served());

    // A null client id in a flexible header.
    let header = request_header(ApiKey::ApiVersions, 4, 4243).with_client_id(None);
    let mut frame = BytesMut::new();
    encode_header(&mut frame, &header, 2);
    kafka_protocol::protocol::Encodable::encode(&body, &mut frame, 4).unwrap();
    conn.send_frame(&frame);
    let response: ApiVersionsResponse = conn.receive_response(ApiKey::ApiVersions, 4, 4243);
    assert_eq!(response.error_code, 0);

    // A null client id in a non-flexible (v1) header.
    let header = request_header(ApiKey::ApiVersions, 0, 4244).with_client_id(None);
    let mut frame = BytesMut::new();
    encode_header(&mut frame, &header, 1);
    conn.send_frame(&frame);
    let response: ApiVersionsResponse = conn.receive_response(ApiKey::ApiVersions, 0, 4244);
    assert_eq!(response.error_code, 0);
}

/// Decodes the v0 layout by hand: header (correlation id), error code, [(key, min, max)].
fn decode_v0_by_hand(mut frame: Bytes) -> (i32, i16, Vec<(i16, i16, i16)>) {
    let correlation_id = frame.get_i32();
    let error_code = frame.get_i16();
    let count = frame.get_i32();
    let mut keys = Vec::new();
    for _ in 0..count {
        keys.push((frame.get_i16(), frame.get_i16(), frame.get_i16()));
    }
    assert_eq!(
        frame.remaining(),
        0,
        "v0 layout has nothing after the key list"
    );
    keys.sort();
    (correlation_id, error_code, keys)
}

#[test]
fn unknown_versions_are_answered_in_v0_layout_with_error_35() {
    let broker = Broker::start();
    let mut conn = broker.connect();
    for (version, correlation_id) in [(5i16, 500), (127, 12_700), (i16::MAX, 9)] {
        // What a newer client sends: a flexible (v2) header and a body it believes is vN;
        // here the v4 body.
        let mut frame = BytesMut::new();
        encode_header(
            &mut frame,
            &request_header(ApiKey::ApiVersions, version, correlation_id),
            2,
        );
        let body = ApiVersionsRequest::default()
            .with_client_software_name(str_bytes("future-client"))
            .with_client_software_version(str_bytes("9.9"));
        kafka_protocol::protocol::Encodable::encode(&body, &mut frame, 4).unwrap();
        conn.send_frame(&frame);
        let response = conn.receive_frame();
        let (echoed, error_code, keys) = decode_v0_by_hand(response.clone());
        assert_eq!(echoed, correlation_id, "v{version}");
        assert_eq!(error_code, 35, "v{version}: UNSUPPORTED_VERSION");
        assert_eq!(keys, served(), "v{version}");
        // And the crate's v0 decoder agrees.
        let mut buffer = response.slice(4..);
        let decoded = ApiVersionsResponse::decode(&mut buffer, 0).unwrap();
        assert_eq!(buffer.remaining(), 0);
        assert_eq!(decoded.error_code, 35);
    }
    // The connection stays usable: the client retries with a version both know.
    let response: ApiVersionsResponse =
        conn.request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
    assert_eq!(advertised(&response), served());
}

#[test]
fn unknown_version_with_an_empty_body_is_answered() {
    // Only the header is needed to answer; a body the broker cannot read is not an error.
    let broker = Broker::start();
    let mut conn = broker.connect();
    let mut frame = BytesMut::new();
    encode_header(&mut frame, &request_header(ApiKey::ApiVersions, 5, 77), 2);
    conn.send_frame(&frame);
    let (echoed, error_code, keys) = decode_v0_by_hand(conn.receive_frame());
    assert_eq!((echoed, error_code), (77, 35));
    assert_eq!(keys, served());

    // A trailing garbage body on an unknown version is also answered.
    let mut frame = BytesMut::new();
    encode_header(&mut frame, &request_header(ApiKey::ApiVersions, 6, 78), 2);
    frame.put_slice(&[0xde, 0xad, 0xbe, 0xef]);
    conn.send_frame(&frame);
    let (echoed, error_code, _) = decode_v0_by_hand(conn.receive_frame());
    assert_eq!((echoed, error_code), (78, 35));
}
