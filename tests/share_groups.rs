//! Share groups (KIP-932) over raw TCP against a real `dlog`: the exact requests a share
//! consumer sends, and the bad ones it never sends on purpose (unknown member or session,
//! a stale session epoch, acknowledging offsets not acquired, unknown acknowledge types,
//! a truncated request), each answered with Kafka's error code, never a crash.
//! The Java KafkaShareConsumer scenarios are in compat/java-share.

mod common;
mod raw;

use std::io::Write;
use std::time::Duration;

use common::*;
use kafka_protocol::messages::alter_share_group_offsets_request::{
    AlterShareGroupOffsetsRequestPartition, AlterShareGroupOffsetsRequestTopic,
};
use kafka_protocol::messages::delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic;
use kafka_protocol::messages::describe_share_group_offsets_request::{
    DescribeShareGroupOffsetsRequestGroup, DescribeShareGroupOffsetsRequestTopic,
};
use kafka_protocol::messages::share_acknowledge_request::{
    AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch as AckBatch,
};
use kafka_protocol::messages::share_fetch_request::{
    AcknowledgementBatch, FetchPartition, FetchTopic,
};
use kafka_protocol::messages::{
    AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse, ApiKey,
    DeleteShareGroupOffsetsRequest, DeleteShareGroupOffsetsResponse,
    DescribeShareGroupOffsetsRequest, DescribeShareGroupOffsetsResponse, GroupId,
    ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest, ShareFetchResponse,
    ShareGroupDescribeRequest, ShareGroupDescribeResponse, ShareGroupHeartbeatRequest,
    ShareGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use raw::RawClient;
use rdkafka::producer::{FutureProducer, FutureRecord};
use uuid::Uuid;

/// Each run its own group, so the scenario can run again against a long-lived broker.
static GROUP: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("share-raw-{}", Uuid::new_v4()));

fn heartbeat(
    client: &mut RawClient,
    member: &str,
    epoch: i32,
    topics: Option<&[&str]>,
) -> ShareGroupHeartbeatResponse {
    client.call(
        ApiKey::ShareGroupHeartbeat,
        1,
        &ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(GROUP.clone())))
            .with_member_id(StrBytes::from_string(member.to_string()))
            .with_member_epoch(epoch)
            .with_subscribed_topic_names(topics.map(|names| {
                names
                    .iter()
                    .map(|n| TopicName(StrBytes::from_string(n.to_string())))
                    .collect()
            })),
    )
}

fn share_fetch(
    client: &mut RawClient,
    member: &str,
    epoch: i32,
    topic_id: Uuid,
    acks: Vec<AcknowledgementBatch>,
) -> ShareFetchResponse {
    client.call(
        ApiKey::ShareFetch,
        1,
        &ShareFetchRequest::default()
            .with_group_id(Some(GroupId(StrBytes::from_string(GROUP.clone()))))
            .with_member_id(Some(StrBytes::from_string(member.to_string())))
            .with_share_session_epoch(epoch)
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_max_records(500)
            .with_batch_size(500)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![FetchPartition::default()
                    .with_partition_index(0)
                    .with_acknowledgement_batches(acks)])]),
    )
}

fn acknowledge(
    client: &mut RawClient,
    member: &str,
    epoch: i32,
    topic_id: Uuid,
    first: i64,
    last: i64,
    kind: i8,
) -> ShareAcknowledgeResponse {
    client.call(
        ApiKey::ShareAcknowledge,
        1,
        &ShareAcknowledgeRequest::default()
            .with_group_id(Some(GroupId(StrBytes::from_string(GROUP.clone()))))
            .with_member_id(Some(StrBytes::from_string(member.to_string())))
            .with_share_session_epoch(epoch)
            .with_topics(vec![AcknowledgeTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![AcknowledgePartition::default()
                    .with_partition_index(0)
                    .with_acknowledgement_batches(vec![AckBatch::default()
                        .with_first_offset(first)
                        .with_last_offset(last)
                        .with_acknowledge_types(vec![kind])])])]),
    )
}

fn ack_batch(first: i64, last: i64, kind: i8) -> AcknowledgementBatch {
    AcknowledgementBatch::default()
        .with_first_offset(first)
        .with_last_offset(last)
        .with_acknowledge_types(vec![kind])
}

/// (acquired ranges, partition error, acknowledge error) of the one partition answered.
fn partition_of(response: &ShareFetchResponse) -> (Vec<(i64, i64, i16)>, i16, i16) {
    let Some(partition) = response
        .responses
        .first()
        .and_then(|t| t.partitions.first())
    else {
        return (Vec::new(), 0, 0);
    };
    (
        partition
            .acquired_records
            .iter()
            .map(|a| (a.first_offset, a.last_offset, a.delivery_count))
            .collect(),
        partition.error_code,
        partition.acknowledge_error_code,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_fetch_acknowledge_and_bad_input() {
    let broker = Broker::start_with(&["group.share.record.lock.duration.ms=1000"]);
    scenario(broker.addr(), "queue").await;
}

/// The same scenario against another broker (a real Kafka 4.4 with share groups enabled) to
/// compare: `SHARE_DIFF_BOOTSTRAP=127.0.0.1:9092 cargo test --test share_groups -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn same_scenario_against_another_broker() {
    let bootstrap = std::env::var("SHARE_DIFF_BOOTSTRAP").expect("SHARE_DIFF_BOOTSTRAP");
    let addr = bootstrap.parse().expect("host:port");
    let topic = format!("queue-{}", Uuid::new_v4());
    scenario(addr, &topic).await;
}

async fn scenario(addr: std::net::SocketAddr, topic: &str) {
    let bootstrap = addr.to_string();
    create_topic(&bootstrap, topic, 1, &[]).await;
    let mut client = RawClient::connect(addr);

    // Join: the member is assigned the topic's one partition, named by topic id (dlog
    // assigns at once; Kafka may answer a later heartbeat).
    let joined = heartbeat(&mut client, "m1", 0, Some(&[topic]));
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    assert!(joined.member_epoch > 0);
    let mut member_epoch = joined.member_epoch;
    let mut assignment = joined.assignment.filter(|a| !a.topic_partitions.is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while assignment.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let beat = heartbeat(&mut client, "m1", member_epoch, None);
        assert_eq!(beat.error_code, 0, "{:?}", beat.error_message);
        member_epoch = beat.member_epoch;
        assignment = beat.assignment.filter(|a| !a.topic_partitions.is_empty());
    }
    let assignment = assignment.expect("an assignment within 30 s");
    let topic_id = assignment.topic_partitions[0].topic_id;
    assert_eq!(assignment.topic_partitions[0].partitions, vec![0]);
    let steady = heartbeat(&mut client, "m1", member_epoch, None);
    assert_eq!((steady.error_code, steady.assignment.is_none()), (0, true));
    assert_eq!(
        heartbeat(&mut client, "m1", member_epoch + 7, None).error_code,
        ResponseError::FencedMemberEpoch.code()
    );
    assert_eq!(
        heartbeat(&mut client, "stranger", 3, None).error_code,
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        heartbeat(&mut client, "", 0, Some(&[topic])).error_code,
        ResponseError::InvalidRequest.code()
    );

    // No session yet: any epoch but 0 is SHARE_SESSION_NOT_FOUND.
    let response = share_fetch(&mut client, "m1", 3, topic_id, vec![]);
    assert_eq!(
        response.error_code,
        ResponseError::ShareSessionNotFound.code()
    );
    // Acknowledgements cannot ride on the request that opens a session.
    let response = share_fetch(&mut client, "m1", 0, topic_id, vec![ack_batch(0, 0, 1)]);
    assert_eq!(response.error_code, ResponseError::InvalidRequest.code());
    // The first fetch opens the session and starts the share-partition at the high
    // watermark (share.auto.offset.reset=latest): nothing yet.
    let response = share_fetch(&mut client, "m1", 0, topic_id, vec![]);
    assert_eq!(response.error_code, 0);
    assert!(partition_of(&response).0.is_empty());

    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    for value in 0..5 {
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(&value.to_string()),
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }

    let response = share_fetch(&mut client, "m1", 1, topic_id, vec![]);
    assert_eq!(response.error_code, 0);
    assert_eq!(partition_of(&response).0, vec![(0, 4, 1)]);
    let lock_ms = response.acquisition_lock_timeout_ms as u64;
    assert!(lock_ms >= 1000);
    // A stale epoch is refused and changes nothing.
    let response = share_fetch(&mut client, "m1", 1, topic_id, vec![]);
    assert_eq!(
        response.error_code,
        ResponseError::InvalidShareSessionEpoch.code()
    );

    // Another member's session sees the records locked: nothing for it.
    let other = share_fetch(&mut client, "m2", 0, topic_id, vec![]);
    assert!(partition_of(&other).0.is_empty());

    // Acknowledging offsets never acquired: INVALID_RECORD_STATE for the partition.
    let response = acknowledge(&mut client, "m1", 2, topic_id, 100, 105, 1);
    assert_eq!(response.error_code, 0);
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ResponseError::InvalidRecordState.code()
    );
    // An unknown acknowledge type: INVALID_REQUEST for the partition, the session goes on.
    let response = acknowledge(&mut client, "m1", 3, topic_id, 0, 0, 9);
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ResponseError::InvalidRequest.code()
    );
    // Another member acknowledging m1's records: refused.
    let response = acknowledge(&mut client, "m2", 1, topic_id, 0, 4, 1);
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ResponseError::InvalidRecordState.code()
    );
    // Accept 0..=1, release 2..=4 (piggy-backed on the next fetch): 2..=4 come back at once
    // with delivery count 2.
    let response = acknowledge(&mut client, "m1", 4, topic_id, 0, 1, 1);
    assert_eq!(response.responses[0].partitions[0].error_code, 0);
    let response = share_fetch(&mut client, "m1", 5, topic_id, vec![ack_batch(2, 4, 2)]);
    let (acquired, error, ack_error) = partition_of(&response);
    assert_eq!((error, ack_error), (0, 0));
    assert_eq!(acquired, vec![(2, 4, 2)]);

    // m1 goes silent: after the 1 s lock, m2 gets 2..=4 on its third delivery.
    std::thread::sleep(Duration::from_millis(lock_ms + 300));
    let response = share_fetch(&mut client, "m2", 2, topic_id, vec![]);
    assert_eq!(partition_of(&response).0, vec![(2, 4, 3)]);
    // m1's late acknowledgement of records it no longer holds is refused.
    let response = acknowledge(&mut client, "m1", 6, topic_id, 2, 4, 1);
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ResponseError::InvalidRecordState.code()
    );
    // m2 rejects them and closes its session (epoch -1).
    let response = acknowledge(&mut client, "m2", -1, topic_id, 2, 4, 3);
    assert_eq!(response.responses[0].partitions[0].error_code, 0);
    let response = share_fetch(&mut client, "m2", 4, topic_id, vec![]);
    assert_eq!(
        response.error_code,
        ResponseError::ShareSessionNotFound.code()
    );

    // ShareGroupDescribe: the group and its member; an unknown group is GROUP_ID_NOT_FOUND.
    let described: ShareGroupDescribeResponse = client.call(
        ApiKey::ShareGroupDescribe,
        1,
        &ShareGroupDescribeRequest::default().with_group_ids(vec![
            GroupId(StrBytes::from_string(GROUP.clone())),
            GroupId(StrBytes::from_static_str("no-such-group")),
        ]),
    );
    assert_eq!(described.groups[0].error_code, 0);
    assert_eq!(described.groups[0].members.len(), 1);
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    assert_eq!(
        described.groups[1].error_code,
        ResponseError::GroupIdNotFound.code()
    );

    // Leaving: epoch -1.
    let left = heartbeat(&mut client, "m1", member_epoch, None);
    assert_eq!(left.error_code, 0);
    assert_eq!(heartbeat(&mut client, "m1", -1, None).member_epoch, -1);

    // A truncated ShareFetch closes that connection; the broker serves the next one.
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut frame = Vec::new();
    let body: &[u8] = &[0, 78, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0xff, 0xff, 0xff];
    frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
    frame.extend_from_slice(body);
    stream.write_all(&frame).unwrap();
    assert!(wait_closed(&mut stream, Duration::from_secs(10)));
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    api_versions_roundtrip(&mut stream, 7, Duration::from_secs(10)).unwrap();
}

fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// DescribeShareGroupOffsets v0 for one group: (error, [(topic, partition, start offset,
/// partition error)]). `topics` None asks for every share-partition of the group.
fn describe_offsets(
    client: &mut RawClient,
    group: &str,
    topics: Option<&[(&str, &[i32])]>,
) -> (i16, Vec<(String, i32, i64, i16)>) {
    let response: DescribeShareGroupOffsetsResponse = client.call(
        ApiKey::DescribeShareGroupOffsets,
        0,
        &DescribeShareGroupOffsetsRequest::default().with_groups(vec![
            DescribeShareGroupOffsetsRequestGroup::default()
                .with_group_id(group_id(group))
                .with_topics(topics.map(|topics| {
                    topics
                        .iter()
                        .map(|(name, partitions)| {
                            DescribeShareGroupOffsetsRequestTopic::default()
                                .with_topic_name(topic_name(name))
                                .with_partitions(partitions.to_vec())
                        })
                        .collect()
                })),
        ]),
    );
    let group = &response.groups[0];
    let mut partitions = Vec::new();
    for topic in &group.topics {
        for p in &topic.partitions {
            partitions.push((
                topic.topic_name.to_string(),
                p.partition_index,
                p.start_offset,
                p.error_code,
            ));
        }
    }
    (group.error_code, partitions)
}

/// AlterShareGroupOffsets v0: (top-level error, [(topic, partition, error)]).
fn alter_offsets(
    client: &mut RawClient,
    group: &str,
    topic: &str,
    offsets: &[(i32, i64)],
) -> (i16, Vec<(String, i32, i16)>) {
    let response: AlterShareGroupOffsetsResponse = client.call(
        ApiKey::AlterShareGroupOffsets,
        0,
        &AlterShareGroupOffsetsRequest::default()
            .with_group_id(group_id(group))
            .with_topics(vec![AlterShareGroupOffsetsRequestTopic::default()
                .with_topic_name(topic_name(topic))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|&(partition, offset)| {
                            AlterShareGroupOffsetsRequestPartition::default()
                                .with_partition_index(partition)
                                .with_start_offset(offset)
                        })
                        .collect(),
                )]),
    );
    let partitions = response
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.topic_name.to_string(), p.partition_index, p.error_code))
        })
        .collect();
    (response.error_code, partitions)
}

/// DeleteShareGroupOffsets v0: (top-level error, [(topic, error)]).
fn delete_offsets(
    client: &mut RawClient,
    group: &str,
    topics: &[&str],
) -> (i16, Vec<(String, i16)>) {
    let response: DeleteShareGroupOffsetsResponse = client.call(
        ApiKey::DeleteShareGroupOffsets,
        0,
        &DeleteShareGroupOffsetsRequest::default()
            .with_group_id(group_id(group))
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        DeleteShareGroupOffsetsRequestTopic::default()
                            .with_topic_name(topic_name(t))
                    })
                    .collect(),
            ),
    );
    let topics = response
        .responses
        .iter()
        .map(|t| (t.topic_name.to_string(), t.error_code))
        .collect();
    (response.error_code, topics)
}

/// What `kafka-share-groups --describe / --reset-offsets / --delete-offsets` sends: the
/// share-partition start offset follows the acknowledgements, and changes only while the
/// group has no member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_group_offsets_described_altered_deleted() {
    let broker = Broker::start_with(&["group.share.record.lock.duration.ms=1000"]);
    let bootstrap = broker.bootstrap();
    let topic = "offsets";
    create_topic(&bootstrap, topic, 1, &[]).await;
    let mut client = RawClient::connect(broker.addr());
    let group = GROUP.as_str();
    let none = ResponseError::GroupIdNotFound.code();
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    let non_empty = ResponseError::NonEmptyGroup.code();

    // Unknown group.
    assert_eq!(describe_offsets(&mut client, "no-such-group", None).0, none);
    assert_eq!(
        delete_offsets(&mut client, "no-such-group", &[topic]).0,
        none
    );

    let joined = heartbeat(&mut client, "m1", 0, Some(&[topic]));
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    let topic_id = {
        let described: kafka_protocol::messages::MetadataResponse = client.call(
            ApiKey::Metadata,
            12,
            &kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(topic_name(topic))),
            ])),
        );
        described.topics[0].topic_id
    };
    // Never fetched: no share-partition (all topics), start offset -1 (named).
    assert_eq!(describe_offsets(&mut client, group, None), (0, vec![]));
    assert_eq!(
        describe_offsets(&mut client, group, Some(&[(topic, &[0]), ("nope", &[0])])),
        (
            0,
            vec![
                (topic.to_string(), 0, -1, 0),
                ("nope".to_string(), 0, -1, unknown)
            ]
        )
    );

    // The first fetch starts the share-partition at the log end (0); five records come,
    // m1 accepts 0..=2: the start offset moves to 3.
    assert_eq!(
        share_fetch(&mut client, "m1", 0, topic_id, vec![]).error_code,
        0
    );
    assert_eq!(
        describe_offsets(&mut client, group, None),
        (0, vec![(topic.to_string(), 0, 0, 0)])
    );
    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    for value in 0..5 {
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(&value.to_string()),
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
    let response = share_fetch(&mut client, "m1", 1, topic_id, vec![]);
    assert_eq!(partition_of(&response).0, vec![(0, 4, 1)]);
    let response = acknowledge(&mut client, "m1", 2, topic_id, 0, 2, 1);
    assert_eq!(response.responses[0].partitions[0].error_code, 0);
    assert_eq!(
        describe_offsets(&mut client, group, Some(&[(topic, &[0])])),
        (0, vec![(topic.to_string(), 0, 3, 0)])
    );

    // m1 is a member: the offsets cannot change.
    let (error, partitions) = alter_offsets(&mut client, group, topic, &[(0, 1)]);
    assert_eq!(
        (error, partitions),
        (non_empty, vec![(topic.to_string(), 0, non_empty)])
    );
    assert_eq!(delete_offsets(&mut client, group, &[topic]).0, non_empty);

    // m1 leaves (what it held, 3..=4, goes back): now they can.
    assert_eq!(heartbeat(&mut client, "m1", -1, None).member_epoch, -1);
    let (error, partitions) = alter_offsets(&mut client, group, topic, &[(0, 1), (7, 0)]);
    assert_eq!(error, 0);
    assert_eq!(
        partitions,
        vec![(topic.to_string(), 0, 0), (topic.to_string(), 7, unknown)]
    );
    assert_eq!(
        describe_offsets(&mut client, group, None),
        (0, vec![(topic.to_string(), 0, 1, 0)])
    );
    // Past the log end it is kept at the log end; a negative offset is a bad request; an
    // unknown topic is UNKNOWN_TOPIC_OR_PARTITION.
    assert_eq!(
        alter_offsets(&mut client, group, topic, &[(0, 100)]).1[0].2,
        0
    );
    assert_eq!(
        describe_offsets(&mut client, group, None).1,
        vec![(topic.to_string(), 0, 5, 0)]
    );
    assert_eq!(
        alter_offsets(&mut client, group, topic, &[(0, -5)]).1[0].2,
        ResponseError::InvalidRequest.code()
    );
    assert_eq!(
        alter_offsets(&mut client, group, "nope", &[(0, 0)]).1[0].2,
        unknown
    );

    // Reset to 1: a new member's first fetch gets 1..=4 again.
    assert_eq!(alter_offsets(&mut client, group, topic, &[(0, 1)]).0, 0);
    let joined = heartbeat(&mut client, "m3", 0, Some(&[topic]));
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    let response = share_fetch(&mut client, "m3", 0, topic_id, vec![]);
    assert_eq!(partition_of(&response).0, vec![(1, 4, 1)]);
    assert_eq!(delete_offsets(&mut client, group, &[topic]).0, non_empty);

    // m3 leaves; deleting forgets the share-partition.
    assert_eq!(heartbeat(&mut client, "m3", -1, None).member_epoch, -1);
    assert_eq!(
        delete_offsets(&mut client, group, &[topic, "nope"]),
        (
            0,
            vec![(topic.to_string(), 0), ("nope".to_string(), unknown)]
        )
    );
    assert_eq!(describe_offsets(&mut client, group, None), (0, vec![]));
    assert_eq!(
        describe_offsets(&mut client, group, Some(&[(topic, &[0])])).1,
        vec![(topic.to_string(), 0, -1, 0)]
    );

    // Resetting a group that never ran creates it, empty (as Kafka's tool may).
    let fresh = format!("{group}-fresh");
    assert_eq!(alter_offsets(&mut client, &fresh, topic, &[(0, 2)]).0, 0);
    assert_eq!(
        describe_offsets(&mut client, &fresh, None),
        (0, vec![(topic.to_string(), 0, 2, 0)])
    );
    // ListGroups shows share groups, type "share" (what `kafka-share-groups --list` asks).
    let listed: kafka_protocol::messages::ListGroupsResponse = client.call(
        ApiKey::ListGroups,
        5,
        &kafka_protocol::messages::ListGroupsRequest::default()
            .with_types_filter(vec![StrBytes::from_static_str("share")]),
    );
    let mut listed: Vec<(String, String)> = listed
        .groups
        .iter()
        .map(|g| (g.group_id.to_string(), g.group_state.to_string()))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            (group.to_string(), "Empty".to_string()),
            (fresh.clone(), "Empty".to_string())
        ]
    );
    // An empty group id is not a group.
    assert_eq!(
        alter_offsets(&mut client, "", topic, &[(0, 2)]).0,
        ResponseError::InvalidGroupId.code()
    );
}

/// With Kafka's StandardAuthorizer: READ on the group for every share API, DESCRIBE on the
/// subscribed topics for the heartbeat, READ on a topic for ShareFetch of its partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_groups_are_authorized_as_kafka_authorizes_them() {
    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
    // Kafka's codes: TOPIC 2, GROUP 3; LITERAL 3; READ 3, DESCRIBE 8; DENY 2, ALLOW 3.
    let acl = |resource_type: i8, name: &str, operation: i8, permission: i8| {
        AclCreation::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_resource_pattern_type(3)
            .with_principal(StrBytes::from_static_str("User:ANONYMOUS"))
            .with_host(StrBytes::from_static_str("*"))
            .with_operation(operation)
            .with_permission_type(permission)
    };
    let broker = Broker::start_with(&[
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found=true",
    ]);
    let bootstrap = broker.bootstrap();
    for topic in ["share-open", "share-secret", "share-hidden"] {
        create_topic(&bootstrap, topic, 1, &[]).await;
    }
    let mut client = RawClient::connect(broker.addr());
    let created: CreateAclsResponse = client.call(
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(vec![
            // Any ACL on a resource ends "no ACL found" for it: DESCRIBE allowed explicitly.
            acl(2, "share-secret", 8, 3),
            acl(2, "share-secret", 3, 2),
            acl(2, "share-hidden", 8, 2),
            acl(3, "share-closed", 3, 2),
        ]),
    );
    assert!(created.results.iter().all(|r| r.error_code == 0));

    // A group the principal may not READ: refused by every share API.
    let closed: ShareGroupHeartbeatResponse = client.call(
        ApiKey::ShareGroupHeartbeat,
        1,
        &ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("share-closed")))
            .with_member_id(StrBytes::from_static_str("m1"))
            .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_static_str(
                "share-open",
            ))])),
    );
    assert_eq!(
        closed.error_code,
        ResponseError::GroupAuthorizationFailed.code()
    );
    let closed: ShareFetchResponse = client.call(
        ApiKey::ShareFetch,
        1,
        &ShareFetchRequest::default()
            .with_group_id(Some(GroupId(StrBytes::from_static_str("share-closed"))))
            .with_member_id(Some(StrBytes::from_static_str("m1"))),
    );
    assert_eq!(
        closed.error_code,
        ResponseError::GroupAuthorizationFailed.code()
    );
    // A subscription naming a topic it may not DESCRIBE.
    assert_eq!(
        heartbeat(&mut client, "m1", 0, Some(&["share-open", "share-hidden"])).error_code,
        ResponseError::TopicAuthorizationFailed.code()
    );
    // A topic it may DESCRIBE but not READ: assigned, but its partition refuses ShareFetch.
    let mut beat = heartbeat(&mut client, "m1", 0, Some(&["share-open", "share-secret"]));
    assert_eq!(beat.error_code, 0, "{:?}", beat.error_message);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while beat
        .assignment
        .as_ref()
        .map_or(0, |a| a.topic_partitions.len())
        < 2
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
        beat = heartbeat(&mut client, "m1", beat.member_epoch, None);
    }
    let assignment = beat.assignment.expect("both topics assigned");
    let described: kafka_protocol::messages::MetadataResponse = client.call(
        ApiKey::Metadata,
        12,
        &kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("share-secret")))),
        ])),
    );
    let secret_id = described.topics[0].topic_id;
    assert!(assignment
        .topic_partitions
        .iter()
        .any(|t| t.topic_id == secret_id));
    let response = share_fetch(&mut client, "m1", 0, secret_id, vec![]);
    assert_eq!(
        partition_of(&response).1,
        ResponseError::TopicAuthorizationFailed.code()
    );

    // The offsets APIs: DESCRIBE, READ, DELETE on the group (denied on share-closed)...
    let group_denied = ResponseError::GroupAuthorizationFailed.code();
    let topic_denied = ResponseError::TopicAuthorizationFailed.code();
    assert_eq!(
        describe_offsets(&mut client, "share-closed", None).0,
        group_denied
    );
    assert_eq!(
        alter_offsets(&mut client, "share-closed", "share-open", &[(0, 0)]).0,
        group_denied
    );
    assert_eq!(
        delete_offsets(&mut client, "share-closed", &["share-open"]).0,
        group_denied
    );
    // ...DESCRIBE on a topic to describe it, READ to alter or delete it.
    let group = GROUP.as_str();
    assert_eq!(
        describe_offsets(
            &mut client,
            group,
            Some(&[("share-hidden", &[0]), ("share-open", &[0])])
        )
        .1
        .iter()
        .map(|p| p.3)
        .collect::<Vec<_>>(),
        vec![topic_denied, 0]
    );
    assert_eq!(heartbeat(&mut client, "m1", -1, None).member_epoch, -1);
    assert_eq!(
        alter_offsets(&mut client, group, "share-secret", &[(0, 0)]).1[0].2,
        topic_denied
    );
    assert_eq!(
        alter_offsets(&mut client, group, "share-open", &[(0, 0)]).1[0].2,
        0
    );
    assert_eq!(
        delete_offsets(&mut client, group, &["share-secret", "share-open"]).1,
        vec![
            ("share-secret".to_string(), topic_denied),
            ("share-open".to_string(), 0)
        ]
    );
}
