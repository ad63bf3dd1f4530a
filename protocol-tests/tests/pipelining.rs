//! Many requests written back to back on one connection are answered in request order.

use std::time::{Duration, Instant};

use dlog_protocol_tests::*;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceResponse,
};

fn fetch(offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("pipe"))
            .with_partitions(vec![FetchPartition::default()
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

fn latest() -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name("pipe"))
            .with_partitions(vec![
                ListOffsetsPartition::default().with_timestamp(-1)
            ])])
}

fn metadata() -> MetadataRequest {
    MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name("pipe")))
    ]))
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    ApiVersions,
    Metadata,
    Produce,
    ListOffsets,
    Fetch,
}

#[test]
fn fifty_mixed_requests_in_one_write_are_answered_in_order() {
    let broker = Broker::start();
    broker.create_topic("pipe", 1);
    let mut conn = broker.connect();
    let kinds = [
        Kind::ApiVersions,
        Kind::Produce,
        Kind::Metadata,
        Kind::ListOffsets,
        Kind::Fetch,
    ];
    let mut bytes = Vec::new();
    let mut sent = Vec::new();
    let now = now_ms();
    for i in 0..50 {
        let kind = kinds[i % kinds.len()];
        // Correlation ids that are not simply increasing.
        let correlation_id = 1000 + (i as i32 * 7919) % 997;
        let frame = match kind {
            Kind::ApiVersions => request_frame(
                ApiKey::ApiVersions,
                3,
                correlation_id,
                &ApiVersionsRequest::default(),
            ),
            Kind::Metadata => request_frame(ApiKey::Metadata, 12, correlation_id, &metadata()),
            Kind::Produce => request_frame(
                ApiKey::Produce,
                9,
                correlation_id,
                &produce_request("pipe", 0, 1, &batch(1, now)),
            ),
            Kind::ListOffsets => request_frame(ApiKey::ListOffsets, 8, correlation_id, &latest()),
            Kind::Fetch => request_frame(ApiKey::Fetch, 12, correlation_id, &fetch(0, 0)),
        };
        bytes.extend_from_slice(&with_size_prefix(&frame));
        sent.push((kind, correlation_id));
    }
    conn.write_raw(&bytes).expect("write 50 requests at once");
    let mut produced = 0i64;
    for (i, (kind, correlation_id)) in sent.into_iter().enumerate() {
        let frame = conn.receive_frame();
        assert_eq!(
            correlation_id_of(&frame),
            correlation_id,
            "response {i} ({kind:?}) out of order"
        );
        match kind {
            Kind::ApiVersions => {
                let response: ApiVersionsResponse =
                    decode_response(ApiKey::ApiVersions, 3, correlation_id, frame);
                assert_eq!(response.error_code, 0);
            }
            Kind::Metadata => {
                let response: MetadataResponse =
                    decode_response(ApiKey::Metadata, 12, correlation_id, frame);
                assert_eq!(response.topics[0].error_code, 0);
            }
            Kind::Produce => {
                let response: ProduceResponse =
                    decode_response(ApiKey::Produce, 9, correlation_id, frame);
                let partition = &response.responses[0].partition_responses[0];
                assert_eq!(partition.error_code, 0);
                assert_eq!(
                    partition.base_offset, produced,
                    "produces appended in order"
                );
                produced += 1;
            }
            Kind::ListOffsets => {
                let response: ListOffsetsResponse =
                    decode_response(ApiKey::ListOffsets, 8, correlation_id, frame);
                // Every produce before it on this connection has been applied.
                assert_eq!(response.topics[0].partitions[0].offset, produced);
            }
            Kind::Fetch => {
                let response: FetchResponse =
                    decode_response(ApiKey::Fetch, 12, correlation_id, frame);
                let data = &response.responses[0].partitions[0];
                assert_eq!(data.error_code, 0);
                assert_eq!(data.high_watermark, produced);
                let records = data
                    .records
                    .as_ref()
                    .map(|r| r.to_vec())
                    .unwrap_or_default();
                assert_eq!(split_batches(&records).len() as i64, produced);
            }
        }
    }
    assert_eq!(produced, 10);
}

#[test]
fn a_waiting_fetch_holds_back_later_responses() {
    let broker = Broker::start();
    broker.create_topic("pipe", 1);
    let mut conn = broker.connect();
    let mut bytes = with_size_prefix(&request_frame(ApiKey::Fetch, 12, 1, &fetch(0, 400)));
    for correlation_id in 2..=21 {
        bytes.extend(with_size_prefix(&request_frame(
            ApiKey::Metadata,
            12,
            correlation_id,
            &metadata(),
        )));
    }
    let started = Instant::now();
    conn.write_raw(&bytes).unwrap();
    let first = conn.receive_frame();
    assert_eq!(correlation_id_of(&first), 1, "the fetch is answered first");
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "the fetch waited for max_wait_ms"
    );
    let _: FetchResponse = decode_response(ApiKey::Fetch, 12, 1, first);
    for correlation_id in 2..=21 {
        let frame = conn.receive_frame();
        assert_eq!(correlation_id_of(&frame), correlation_id);
        let _: MetadataResponse = decode_response(ApiKey::Metadata, 12, correlation_id, frame);
    }
}

#[test]
fn more_requests_than_the_response_queue_holds() {
    // The broker queues at most 64 responses per connection and stops reading while full;
    // 500 pipelined requests must still all be answered, in order.
    let broker = Broker::start();
    let mut conn = broker.connect();
    let mut bytes = Vec::new();
    for correlation_id in 0..500 {
        bytes.extend(with_size_prefix(&request_frame(
            ApiKey::ApiVersions,
            (correlation_id % 5) as i16,
            correlation_id,
            &ApiVersionsRequest::default(),
        )));
    }
    conn.write_raw(&bytes).unwrap();
    for correlation_id in 0..500 {
        let frame = conn.receive_frame();
        assert_eq!(correlation_id_of(&frame), correlation_id);
        let response: ApiVersionsResponse = decode_response(
            ApiKey::ApiVersions,
            (correlation_id % 5) as i16,
            correlation_id,
            frame,
        );
        assert_eq!(response.error_code, 0);
    }
}

#[test]
fn acks_0_produces_interleaved_with_answered_requests() {
    let broker = Broker::start();
    broker.create_topic("pipe", 1);
    let mut conn = broker.connect();
    let now = now_ms();
    let mut bytes = Vec::new();
    let mut answered = Vec::new();
    for i in 0..30 {
        let correlation_id = i + 1;
        let acks = if i % 3 == 0 { 1 } else { 0 };
        bytes.extend(with_size_prefix(&request_frame(
            ApiKey::Produce,
            9,
            correlation_id,
            &produce_request("pipe", 0, acks, &batch(1, now)),
        )));
        if acks != 0 {
            answered.push((correlation_id, i64::from(i)));
        }
    }
    bytes.extend(with_size_prefix(&request_frame(
        ApiKey::ListOffsets,
        8,
        99,
        &latest(),
    )));
    conn.write_raw(&bytes).unwrap();
    for (correlation_id, offset) in answered {
        let response: ProduceResponse = conn.receive_response(ApiKey::Produce, 9, correlation_id);
        assert_eq!(
            response.responses[0].partition_responses[0].base_offset,
            offset
        );
    }
    let response: ListOffsetsResponse = conn.receive_response(ApiKey::ListOffsets, 8, 99);
    assert_eq!(response.topics[0].partitions[0].offset, 30);
}
