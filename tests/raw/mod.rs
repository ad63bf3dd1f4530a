//! A minimal Kafka protocol client over a blocking TCP stream, for tests that must send exact
//! requests (a retried batch, a sequence gap) that real clients never send on purpose.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub struct RawClient {
    stream: TcpStream,
    correlation_id: i32,
}

impl RawClient {
    pub fn connect(addr: std::net::SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        RawClient {
            stream,
            correlation_id: 0,
        }
    }

    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Resp {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("raw-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, api_key.request_header_version(version))
            .unwrap();
        request.encode(&mut body, version).unwrap();
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).expect("write request");
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).expect("read size");
        let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut response).expect("read body");
        let mut response = Bytes::from(response);
        let header =
            ResponseHeader::decode(&mut response, api_key.response_header_version(version))
                .unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        Resp::decode(&mut response, version).unwrap()
    }

    /// InitProducerId v4 for an idempotent (non-transactional) producer: (id, epoch).
    pub fn init_producer_id(&mut self) -> (i64, i16) {
        let response: InitProducerIdResponse = self.call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id((-1).into())
                .with_producer_epoch(-1),
        );
        assert_eq!(response.error_code, 0, "InitProducerId error");
        (response.producer_id.0, response.producer_epoch)
    }

    /// Produce v9 of one batch to one partition: (error code, base offset).
    pub fn produce(&mut self, topic: &str, partition: i32, batch: &[u8]) -> (i16, i64) {
        self.produce_transactional(None, topic, partition, batch)
    }

    pub fn produce_transactional(
        &mut self,
        transactional_id: Option<&str>,
        topic: &str,
        partition: i32,
        batch: &[u8],
    ) -> (i16, i64) {
        self.produce_version(9, transactional_id, topic, partition, batch)
    }

    /// Produce of `version` (v12+ is a transactions-v2 client's) of one batch to one partition.
    pub fn produce_version(
        &mut self,
        version: i16,
        transactional_id: Option<&str>,
        topic: &str,
        partition: i32,
        batch: &[u8],
    ) -> (i16, i64) {
        let request = ProduceRequest::default()
            .with_transactional_id(
                transactional_id.map(|id| StrBytes::from_string(id.to_string()).into()),
            )
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(Bytes::copy_from_slice(batch)))])]);
        let response: ProduceResponse = self.call(ApiKey::Produce, version, &request);
        let partition = &response.responses[0].partition_responses[0];
        (partition.error_code, partition.base_offset)
    }
}

/// A consumer's Fetch (no session, no wait, READ_UNCOMMITTED, 10 MiB limits) of one partition
/// from `offset`; set further fields with the builder's `with_*`.
pub fn consumer_fetch(
    topic: &str,
    partition: i32,
    offset: i64,
) -> kafka_protocol::messages::FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    kafka_protocol::messages::FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(10 << 20)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(10 << 20)])])
}

/// InitProducerId v5 for `transactional_id` (60 s timeout): (producer id, epoch). Retries
/// what a client retries while the coordinator is not ready (COORDINATOR_LOAD_IN_PROGRESS,
/// COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: a fresh cluster's node may not have taken up
/// the leadership FindCoordinator named yet), for up to 30 s.
pub fn init_transactional(client: &mut RawClient, transactional_id: &str) -> (i64, i16) {
    use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
    const RETRIABLE: [i16; 3] = [14, 15, 16];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let response: InitProducerIdResponse = client.call(
            ApiKey::InitProducerId,
            5,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(
                    StrBytes::from_string(transactional_id.to_string()).into(),
                ))
                .with_transaction_timeout_ms(60_000),
        );
        if RETRIABLE.contains(&response.error_code) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
            continue;
        }
        assert_eq!(response.error_code, 0, "InitProducerId");
        return (response.producer_id.0, response.producer_epoch);
    }
}

/// EndTxn v5 (a transactions-v2 client's): (error code, producer id, producer epoch).
pub fn end_txn_v5(
    client: &mut RawClient,
    transactional_id: &str,
    (producer_id, epoch): (i64, i16),
    commit: bool,
) -> (i16, i64, i16) {
    use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
    let response: EndTxnResponse = client.call(
        ApiKey::EndTxn,
        5,
        &EndTxnRequest::default()
            .with_transactional_id(StrBytes::from_string(transactional_id.to_string()).into())
            .with_producer_id(producer_id.into())
            .with_producer_epoch(epoch)
            .with_committed(commit),
    );
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

/// A v2 batch of `count` records stamped with a producer id, epoch and first sequence (and the
/// transactional bit).
pub fn producer_batch(
    producer_id: i64,
    epoch: i16,
    first_sequence: i32,
    count: i32,
    transactional: bool,
) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut builder =
        dlog::record::builder::BatchBuilder::new(now).producer(producer_id, epoch, first_sequence);
    if transactional {
        builder = builder.transactional();
    }
    for i in 0..count {
        let value = format!("p{producer_id}-e{epoch}-s{}", first_sequence + i);
        builder = builder.record(None, Some(value.as_bytes()), now);
    }
    builder.build()
}

/// WriteTxnMarkers v1 for partition 0 of `topic`: one COMMIT or ABORT marker of producer
/// `producer_id`, as a transaction coordinator sends it. Returns the partition's error code.
pub fn write_marker(
    client: &mut RawClient,
    topic: &'static str,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
) -> i16 {
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    use kafka_protocol::messages::{ProducerId, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(topic)))
                .with_partition_indexes(vec![0])])]);
    let response: WriteTxnMarkersResponse = client.call(ApiKey::WriteTxnMarkers, 1, &request);
    response.markers[0].topics[0].partitions[0].error_code
}
