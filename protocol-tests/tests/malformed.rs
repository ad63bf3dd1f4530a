//! Malformed and truncated frames: each closes the connection (or is answered with an
//! error), and the broker keeps serving new connections. Also the in-process regression test
//! for the `kafka-protocol` 0.18.0 abort on a Metadata body `7f ff ff ff`.

use bytes::{Bytes, BytesMut};
use dlog::protocol::api_versions::SUPPORTED;
use dlog::protocol::decode_request_frame;
use dlog_protocol_tests::*;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ConsumerGroupDescribeRequest,
    ConsumerGroupHeartbeatRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest, FetchRequest,
    FindCoordinatorRequest, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::Encodable;

const HUGE_COUNT_BODY: [u8; 4] = [0x7f, 0xff, 0xff, 0xff];

/// APIs the codec knows that the broker does not serve (computed, since APIs get added).
fn unserved_apis() -> Vec<ApiKey> {
    let candidates = [
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::FindCoordinator,
        ApiKey::JoinGroup,
        ApiKey::Heartbeat,
        ApiKey::LeaveGroup,
        ApiKey::SyncGroup,
        ApiKey::DescribeGroups,
        ApiKey::ListGroups,
        ApiKey::SaslHandshake,
        ApiKey::InitProducerId,
        ApiKey::AddPartitionsToTxn,
        ApiKey::EndTxn,
        ApiKey::SaslAuthenticate,
        ApiKey::CreatePartitions,
        ApiKey::AlterConfigs,
        ApiKey::Vote,
    ];
    let unserved: Vec<ApiKey> = candidates
        .into_iter()
        .filter(|key| dlog::protocol::api_versions::supported(*key).is_none())
        .collect();
    assert!(
        !unserved.is_empty(),
        "every candidate is served; extend the list"
    );
    unserved
}

/// (api, version) pairs just outside each served range (ApiVersions excepted: it answers).
fn unsupported_versions() -> Vec<(ApiKey, i16)> {
    let mut pairs = Vec::new();
    for (api_key, versions) in SUPPORTED {
        if *api_key == ApiKey::ApiVersions {
            continue;
        }
        pairs.push((*api_key, versions.max + 1));
        pairs.push((*api_key, i16::MAX));
        pairs.push((
            *api_key,
            if versions.min > 0 {
                versions.min - 1
            } else {
                -1
            },
        ));
    }
    pairs
}

// ---------------------------------------------------------------------------------------------
// In process: dlog::protocol::decode_request_frame, no broker
// ---------------------------------------------------------------------------------------------

/// Regression: kafka-protocol 0.18.0 reserved `Vec::with_capacity(0x7fffffff)` for this body
/// and the failed allocation aborted the process. It must be a decode error at every version.
#[test]
fn metadata_body_7fffffff_is_an_error_not_an_abort() {
    for version in 0..=13i16 {
        let frame = raw_request_frame(ApiKey::Metadata, version, 1, &HUGE_COUNT_BODY);
        let result = decode_request_frame(frame.freeze());
        assert!(result.is_err(), "Metadata v{version}: {result:?}");
    }
}

/// The same four bytes (and other huge counts) as the body of every served API and version.
#[test]
fn huge_counts_are_errors_for_every_api_in_process() {
    let bodies: [&[u8]; 6] = [
        &HUGE_COUNT_BODY,
        &[0xff, 0xff, 0xff, 0xff],
        &[0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff],
        &[0x00, 0x00, 0x7f, 0xff, 0xff, 0xff],
        &[0xff, 0xff, 0xff, 0xff, 0x0f], // compact: varint count 2^32 - 2
        &[0x80, 0x80, 0x80, 0x80, 0x08],
    ];
    for (api_key, versions) in SUPPORTED {
        for version in versions.min..=versions.max {
            for body in bodies {
                let frame = raw_request_frame(*api_key, version, 1, body);
                // Ok is possible (e.g. a Produce v0–2 is refused later, by the handler); what
                // matters is that it returns.
                let _ = decode_request_frame(frame.freeze());
            }
        }
    }
}

/// A body of each API that decodes: the starting point for mutations.
fn valid_body(api_key: ApiKey, version: i16) -> Option<Vec<u8>> {
    fn encode<T: Encodable>(body: &T, version: i16) -> Option<Vec<u8>> {
        let mut output = BytesMut::new();
        body.encode(&mut output, version).ok()?;
        Some(output.to_vec())
    }
    let produce = produce_request("topic", 0, 1, &batch(2, 1_700_000_000_000));
    match api_key {
        ApiKey::Produce if version < 3 => Some(legacy_produce_body(&produce)),
        ApiKey::Produce => encode(&produce, version),
        ApiKey::Fetch => encode(&FetchRequest::default(), version),
        ApiKey::ListOffsets => encode(&ListOffsetsRequest::default(), version),
        ApiKey::Metadata => encode(&MetadataRequest::default(), version),
        ApiKey::ApiVersions => encode(&ApiVersionsRequest::default(), version.min(4)),
        ApiKey::CreateTopics => encode(&CreateTopicsRequest::default(), version),
        ApiKey::DeleteTopics => encode(&DeleteTopicsRequest::default(), version),
        ApiKey::DescribeConfigs => encode(&DescribeConfigsRequest::default(), version),
        ApiKey::DescribeCluster => encode(&DescribeClusterRequest::default(), version),
        ApiKey::FindCoordinator => encode(&FindCoordinatorRequest::default(), version),
        ApiKey::JoinGroup => encode(&JoinGroupRequest::default(), version),
        ApiKey::SyncGroup => encode(&SyncGroupRequest::default(), version),
        ApiKey::Heartbeat => encode(&HeartbeatRequest::default(), version),
        ApiKey::LeaveGroup => encode(&LeaveGroupRequest::default(), version),
        ApiKey::OffsetCommit => encode(&OffsetCommitRequest::default(), version),
        ApiKey::OffsetFetch => encode(&OffsetFetchRequest::default(), version),
        ApiKey::OffsetDelete => encode(&OffsetDeleteRequest::default(), version),
        ApiKey::DescribeGroups => encode(&DescribeGroupsRequest::default(), version),
        ApiKey::ListGroups => encode(&ListGroupsRequest::default(), version),
        ApiKey::DeleteGroups => encode(&DeleteGroupsRequest::default(), version),
        ApiKey::ConsumerGroupHeartbeat => {
            encode(&ConsumerGroupHeartbeatRequest::default(), version)
        }
        ApiKey::ConsumerGroupDescribe => encode(&ConsumerGroupDescribeRequest::default(), version),
        _ => None,
    }
}

#[test]
fn random_and_mutated_bodies_never_panic_in_process() {
    let mut random = XorShift::new(0xd106);
    for (api_key, versions) in SUPPORTED {
        for version in versions.min..=versions.max {
            // APIs added to the broker after these cases were written get random bodies only.
            let valid = valid_body(*api_key, version).unwrap_or_default();
            if !valid.is_empty() {
                let frame = raw_request_frame(*api_key, version, 1, &valid);
                assert!(
                    decode_request_frame(frame.freeze()).is_ok(),
                    "{api_key:?} v{version}: the unmutated body decodes"
                );
            }
            for _ in 0..300 {
                let body = if random.below(2) == 0 {
                    let length = random.below(96) as usize;
                    random.bytes(length)
                } else {
                    random.mutate(&valid)
                };
                let frame = raw_request_frame(*api_key, version, 1, &body);
                let _ = decode_request_frame(frame.freeze());
            }
        }
    }
}

#[test]
fn unknown_apis_versions_and_short_frames_are_errors_in_process() {
    for frame in [
        &[][..],
        &[0x00],
        &[0x00, 0x03, 0x00],
        &[0x00, 0x03, 0x00, 0x0c],             // no correlation id
        &[0x00, 0x03, 0x00, 0x0c, 0x00, 0x00], // half a correlation id
    ] {
        assert!(
            decode_request_frame(Bytes::copy_from_slice(frame)).is_err(),
            "{frame:02x?}"
        );
    }
    // Known to the codec but not served: OffsetCommit (8), JoinGroup (11), SaslHandshake (17).
    for api_key in [
        ApiKey::OffsetCommit,
        ApiKey::JoinGroup,
        ApiKey::SaslHandshake,
    ] {
        let frame = raw_request_frame(api_key, 0, 1, &[]);
        assert!(decode_request_frame(frame.freeze()).is_err(), "{api_key:?}");
    }
    // Unknown to the codec (4 = LeaderAndIsr, removed in Kafka 4).
    for code in [-1i16, 4, 999, i16::MAX, i16::MIN] {
        let mut frame = vec![];
        frame.extend_from_slice(&code.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0xff, 0xff]);
        assert!(
            decode_request_frame(Bytes::from(frame)).is_err(),
            "api key {code}"
        );
    }
    // Versions outside the served ranges.
    for (api_key, version) in unsupported_versions() {
        let frame = raw_request_frame(api_key, version, 1, &[]);
        assert!(
            decode_request_frame(frame.freeze()).is_err(),
            "{api_key:?} v{version}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Against a broker
// ---------------------------------------------------------------------------------------------

/// Writes `bytes` on a new connection and asserts the broker closes it without answering.
fn expect_close_after(broker: &Broker, bytes: &[u8], what: &str) {
    let mut conn = broker.connect();
    // The broker may close (and reset) before we finish writing: that is fine.
    let _ = conn.write_raw(bytes);
    conn.expect_closed(what);
}

#[test]
fn negative_frame_size_closes_the_connection() {
    let mut broker = Broker::start();
    for size in [-1i32, i32::MIN, -4] {
        expect_close_after(&broker, &size.to_be_bytes(), &format!("frame size {size}"));
    }
    // Even with a plausible request after the bad size.
    let mut bytes = (-1i32).to_be_bytes().to_vec();
    bytes.extend(request_frame(
        ApiKey::ApiVersions,
        0,
        1,
        &ApiVersionsRequest::default(),
    ));
    expect_close_after(&broker, &bytes, "negative size then a request");
    broker.assert_alive();
}

#[test]
fn frame_size_above_the_maximum_closes_before_the_body_arrives() {
    let mut broker = Broker::start_with(&["socket.request.max.bytes=1000"]);
    // One byte over the limit, and far over it: the broker closes on the size alone, without
    // waiting for (or allocating) the body.
    for size in [1001i32, 104_857_601, i32::MAX] {
        expect_close_after(&broker, &size.to_be_bytes(), &format!("frame size {size}"));
    }
    // At the limit, a request is read and answered.
    let mut conn = broker.connect();
    let mut frame = request_frame(
        ApiKey::Metadata,
        12,
        5,
        &MetadataRequest::default().with_topics(None),
    );
    // Pad the client id so that the frame is exactly 1000 bytes.
    let mut header = request_header(ApiKey::Metadata, 12, 5);
    let padding = 1000 - frame.len();
    header.client_id = Some(str_bytes(&format!("{CLIENT_ID}{}", "p".repeat(padding))));
    frame.clear();
    encode_header(&mut frame, &header, 2);
    MetadataRequest::default()
        .with_topics(None)
        .encode(&mut frame, 12)
        .unwrap();
    assert_eq!(frame.len(), 1000);
    conn.send_frame(&frame);
    let _: kafka_protocol::messages::MetadataResponse =
        conn.receive_response(ApiKey::Metadata, 12, 5);
    broker.assert_alive();
}

#[test]
fn default_maximum_is_104857600_bytes() {
    let mut broker = Broker::start();
    expect_close_after(&broker, &104_857_601i32.to_be_bytes(), "default max + 1");
    // A frame of exactly the default maximum is accepted as a size: the broker waits for the
    // body instead of closing. Send a little of it, then check it is still waiting.
    let mut conn = broker.connect();
    conn.write_raw(&104_857_600i32.to_be_bytes()).unwrap();
    conn.write_raw(&[0u8; 64]).unwrap();
    conn.stream
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut buffer = [0u8; 1];
    let result = std::io::Read::read(&mut conn.stream, &mut buffer);
    assert!(
        matches!(&result, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "a frame of exactly socket.request.max.bytes is waited for, got {result:?}"
    );
    drop(conn);
    broker.assert_alive();
}

#[test]
fn frames_shorter_than_a_header_close_the_connection() {
    let mut broker = Broker::start();
    for frame in [
        &[][..],
        &[0x00],
        &[0x00, 0x12],
        &[0x00, 0x12, 0x00],
        &[0x00, 0x12, 0x00, 0x00], // ApiVersions v0, no correlation id
        &[0x00, 0x12, 0x00, 0x00, 0x00, 0x00], // half a correlation id
        &[0x00, 0x03, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x01], // Metadata v12, no client id
        &[
            0x00, 0x03, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x00, 0x09, b'a',
        ], // client id cut
        &[0x00, 0x03, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x01, 0xff, 0xff], // no tagged fields
    ] {
        expect_close_after(
            &broker,
            &with_size_prefix(frame),
            &format!("frame {frame:02x?}"),
        );
    }
    broker.assert_alive();
}

#[test]
fn truncated_bodies_close_the_connection() {
    let mut broker = Broker::start();
    // Well-formed requests cut short; the size prefix matches what is sent.
    let cases: Vec<(ApiKey, i16, Vec<u8>)> = vec![
        (
            ApiKey::Metadata,
            1,
            valid_body(ApiKey::Metadata, 1).unwrap(),
        ),
        (
            ApiKey::Metadata,
            12,
            valid_body(ApiKey::Metadata, 12).unwrap(),
        ),
        (ApiKey::Produce, 3, valid_body(ApiKey::Produce, 3).unwrap()),
        (ApiKey::Produce, 9, valid_body(ApiKey::Produce, 9).unwrap()),
        (ApiKey::Fetch, 4, valid_body(ApiKey::Fetch, 4).unwrap()),
        (ApiKey::Fetch, 17, valid_body(ApiKey::Fetch, 17).unwrap()),
        (
            ApiKey::ListOffsets,
            10,
            valid_body(ApiKey::ListOffsets, 10).unwrap(),
        ),
        (
            ApiKey::CreateTopics,
            7,
            valid_body(ApiKey::CreateTopics, 7).unwrap(),
        ),
    ];
    for (api_key, version, body) in cases {
        for cut in [1, body.len() / 2, body.len() - 1] {
            let frame = raw_request_frame(api_key, version, 1, &body[..cut]);
            expect_close_after(
                &broker,
                &with_size_prefix(&frame),
                &format!(
                    "{api_key:?} v{version} cut to {cut} of {} bytes",
                    body.len()
                ),
            );
        }
    }
    // The stream ends inside a frame: the size promises more than is sent.
    let frame = request_frame(ApiKey::ApiVersions, 0, 1, &ApiVersionsRequest::default());
    let mut conn = broker.connect();
    let mut bytes = ((frame.len() + 10) as i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&frame);
    conn.write_raw(&bytes).unwrap();
    conn.shutdown_write();
    conn.expect_closed("end of stream inside a frame");
    broker.assert_alive();
}

#[test]
fn metadata_body_7fffffff_closes_the_connection_at_every_version() {
    let mut broker = Broker::start();
    for version in 0..=13i16 {
        let frame = raw_request_frame(ApiKey::Metadata, version, 1, &HUGE_COUNT_BODY);
        expect_close_after(
            &broker,
            &with_size_prefix(&frame),
            &format!("Metadata v{version} body 7f ff ff ff"),
        );
        broker.assert_alive();
    }
}

#[test]
fn unknown_apis_and_unsupported_versions_close_the_connection() {
    let mut broker = Broker::start();
    let unserved = unserved_apis().into_iter().map(|key| (key, 0i16));
    for (api_key, version) in unserved.chain(unsupported_versions()) {
        let frame = raw_request_frame(api_key, version, 1, &[0, 0, 0, 0]);
        expect_close_after(
            &broker,
            &with_size_prefix(&frame),
            &format!("{api_key:?} v{version}"),
        );
    }
    for code in [-1i16, 4, 7, 999, i16::MAX] {
        let mut frame = code.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0xff, 0xff]);
        expect_close_after(
            &broker,
            &with_size_prefix(&frame),
            &format!("api key {code}"),
        );
    }
    // A request before the bad one is still answered, then the connection closes.
    let mut conn = broker.connect();
    let mut bytes = with_size_prefix(&request_frame(
        ApiKey::ApiVersions,
        0,
        41,
        &ApiVersionsRequest::default(),
    ));
    bytes.extend(with_size_prefix(&raw_request_frame(
        ApiKey::Metadata,
        99,
        42,
        &[],
    )));
    conn.write_raw(&bytes).unwrap();
    let response: ApiVersionsResponse = conn.receive_response(ApiKey::ApiVersions, 0, 41);
    assert_eq!(response.error_code, 0);
    conn.expect_closed("Metadata v99 after a good request");
    broker.assert_alive();
}

/// Random and mutated bodies for every served API and version, each on its own connection and
/// followed by an ApiVersions request: the broker either closes the connection or answers
/// (in order), and the ApiVersions request, if it gets that far, is answered last.
#[test]
fn random_bodies_for_every_api_close_or_answer() {
    let mut broker = Broker::start();
    let mut random = XorShift::new(0x5eed);
    let mut closed = 0;
    let mut answered = 0;
    for (api_key, versions) in SUPPORTED {
        for version in versions.min..=versions.max {
            let valid = valid_body(*api_key, version).unwrap_or_default();
            let mut bodies = vec![HUGE_COUNT_BODY.to_vec()];
            for _ in 0..2 {
                let length = random.below(64) as usize;
                bodies.push(random.bytes(length));
                bodies.push(random.mutate(&valid));
            }
            for body in bodies {
                let mut conn = broker.connect();
                let mut bytes = with_size_prefix(&raw_request_frame(*api_key, version, 1, &body));
                bytes.extend(with_size_prefix(&request_frame(
                    ApiKey::ApiVersions,
                    0,
                    2,
                    &ApiVersionsRequest::default(),
                )));
                let _ = conn.write_raw(&bytes);
                let what = format!("{api_key:?} v{version} body {body:02x?}");
                match conn.receive() {
                    Received::Closed(_) => closed += 1,
                    Received::Frame(frame) => {
                        answered += 1;
                        let mut frame = frame;
                        if correlation_id_of(&frame) == 1 {
                            // Answered the garbage (an error response or a decoded request);
                            // the ApiVersions request follows.
                            match conn.receive() {
                                Received::Frame(next) => frame = next,
                                Received::Closed(_) => continue,
                            }
                        }
                        assert_eq!(correlation_id_of(&frame), 2, "{what}");
                        let response: ApiVersionsResponse =
                            decode_response(ApiKey::ApiVersions, 0, 2, frame);
                        assert_eq!(response.error_code, 0, "{what}");
                    }
                }
            }
            broker.assert_alive();
        }
    }
    eprintln!("hostile bodies: {closed} connections closed, {answered} answered");
    assert!(closed > 0);
}
