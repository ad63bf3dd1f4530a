//! Metadata v0–v13: brokers, cluster id, controller id, topics, topic ids, auto-creation.

use dlog_protocol_tests::*;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse};
use uuid::Uuid;

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const UNKNOWN_TOPIC_ID: i16 = 100;

fn all_topics(version: i16) -> MetadataRequest {
    // v0 has no null list: an empty list means "all topics".
    let topics = if version == 0 { Some(Vec::new()) } else { None };
    MetadataRequest::default().with_topics(topics)
}

fn named(version: i16, name: &str, allow_auto_create: bool) -> MetadataRequest {
    let mut request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name(name))),
    ]));
    if version >= 4 {
        request = request.with_allow_auto_topic_creation(allow_auto_create);
    }
    request
}

fn cluster_id_on_disk(broker: &Broker) -> String {
    let text = std::fs::read_to_string(broker.data_dir().join("meta.properties"))
        .expect("meta.properties in the data directory");
    text.lines()
        .find_map(|line| line.strip_prefix("cluster.id="))
        .expect("cluster.id in meta.properties")
        .trim()
        .to_string()
}

fn topic_names(response: &MetadataResponse) -> Vec<String> {
    let mut names: Vec<String> = response
        .topics
        .iter()
        .map(|t| t.name.as_ref().map(|n| n.to_string()).unwrap_or_default())
        .collect();
    names.sort();
    names
}

#[test]
fn brokers_cluster_controller_and_topics_for_every_version() {
    let broker = Broker::start();
    broker.create_topic("alpha", 3);
    let cluster_id = cluster_id_on_disk(&broker);
    let topic_id = broker.topic_id("alpha");
    assert_ne!(topic_id, Uuid::nil());
    let mut conn = broker.connect();
    for version in 0..=13i16 {
        let response: MetadataResponse =
            conn.request(ApiKey::Metadata, version, &all_topics(version));
        assert_eq!(response.brokers.len(), 1, "v{version}");
        let node = &response.brokers[0];
        assert_eq!(node.node_id, BrokerId(1), "v{version}");
        assert_eq!(node.host.as_str(), "127.0.0.1", "v{version}");
        assert_eq!(node.port, i32::from(broker.port()), "v{version}");
        assert_eq!(node.rack, None, "v{version}");
        if version >= 1 {
            assert_eq!(response.controller_id, BrokerId(1), "v{version}");
        }
        if version >= 2 {
            assert_eq!(
                response.cluster_id.as_ref().map(|c| c.as_str()),
                Some(cluster_id.as_str()),
                "v{version}"
            );
        } else {
            assert_eq!(response.cluster_id, None, "v{version}: not on the wire");
        }
        assert_eq!(topic_names(&response), ["alpha"], "v{version}");
        let topic = &response.topics[0];
        assert_eq!(topic.error_code, 0, "v{version}");
        assert!(!topic.is_internal, "v{version}");
        if version >= 10 {
            assert_eq!(topic.topic_id, topic_id, "v{version}");
        } else {
            assert_eq!(topic.topic_id, Uuid::nil(), "v{version}: not on the wire");
        }
        if version >= 8 {
            // Not requested: Kafka's "omitted" marker.
            assert_eq!(topic.topic_authorized_operations, i32::MIN, "v{version}");
        }
        let mut indexes: Vec<i32> = topic.partitions.iter().map(|p| p.partition_index).collect();
        indexes.sort();
        assert_eq!(indexes, [0, 1, 2], "v{version}");
        for partition in &topic.partitions {
            assert_eq!(partition.error_code, 0, "v{version}");
            assert_eq!(partition.leader_id, BrokerId(1), "v{version}");
            assert_eq!(partition.replica_nodes, [BrokerId(1)], "v{version}");
            assert_eq!(partition.isr_nodes, [BrokerId(1)], "v{version}");
            if version >= 7 {
                assert!(partition.leader_epoch >= 0, "v{version}");
            }
        }
    }
}

#[test]
fn versions_before_4_always_auto_create() {
    let broker = Broker::start();
    let mut conn = broker.connect();
    for version in 0..=3i16 {
        let name = format!("auto-v{version}");
        let response: MetadataResponse =
            conn.request(ApiKey::Metadata, version, &named(version, &name, true));
        assert_eq!(topic_names(&response), [name.clone()], "v{version}");
        let topic = &response.topics[0];
        assert_eq!(topic.error_code, 0, "v{version}: created");
        assert_eq!(topic.partitions.len(), 1, "v{version}: num.partitions=1");
        assert_eq!(topic.partitions[0].leader_id, BrokerId(1));
    }
    let response: MetadataResponse = conn.request(ApiKey::Metadata, 12, &all_topics(12));
    assert_eq!(
        topic_names(&response),
        ["auto-v0", "auto-v1", "auto-v2", "auto-v3"]
    );
}

#[test]
fn versions_4_and_later_honour_allow_auto_topic_creation() {
    let broker = Broker::start();
    let mut conn = broker.connect();
    for version in 4..=13i16 {
        let refused = format!("refused-v{version}");
        let response: MetadataResponse =
            conn.request(ApiKey::Metadata, version, &named(version, &refused, false));
        assert_eq!(topic_names(&response), [refused.clone()], "v{version}");
        assert_eq!(
            response.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION,
            "v{version}: not created without the flag"
        );
        assert!(response.topics[0].partitions.is_empty());

        let created = format!("created-v{version}");
        let response: MetadataResponse =
            conn.request(ApiKey::Metadata, version, &named(version, &created, true));
        assert_eq!(response.topics[0].error_code, 0, "v{version}: created");
        assert_eq!(response.topics[0].partitions.len(), 1);
        if version >= 10 {
            assert_ne!(response.topics[0].topic_id, Uuid::nil(), "v{version}");
        }
    }
    let response: MetadataResponse = conn.request(ApiKey::Metadata, 1, &all_topics(1));
    let names = topic_names(&response);
    assert_eq!(names.len(), 10, "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("created-v")),
        "{names:?}"
    );
}

#[test]
fn auto_create_disabled_by_the_broker() {
    let broker = Broker::start_with(&["auto.create.topics.enable=false"]);
    let mut conn = broker.connect();
    for version in [0i16, 3, 4, 9, 12, 13] {
        let name = format!("never-v{version}");
        let response: MetadataResponse =
            conn.request(ApiKey::Metadata, version, &named(version, &name, true));
        assert_eq!(
            response.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION,
            "v{version}"
        );
    }
    let response: MetadataResponse = conn.request(ApiKey::Metadata, 1, &all_topics(1));
    assert!(response.topics.is_empty());
}

#[test]
fn invalid_topic_names_are_refused() {
    let broker = Broker::start();
    let mut conn = broker.connect();
    for version in [1i16, 4, 9, 12] {
        let long_name = "x".repeat(250);
        for name in ["bad name", "a/b", "..", long_name.as_str()] {
            let response: MetadataResponse =
                conn.request(ApiKey::Metadata, version, &named(version, name, true));
            assert_eq!(
                response.topics[0].error_code, INVALID_TOPIC_EXCEPTION,
                "v{version} {name:?}"
            );
        }
    }
}

#[test]
fn topics_by_id_at_v12_and_v13() {
    let broker = Broker::start();
    broker.create_topic("by-id", 2);
    let topic_id = broker.topic_id("by-id");
    let unknown = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    let mut conn = broker.connect();
    for version in [12i16, 13] {
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(Some(vec![
                MetadataRequestTopic::default()
                    .with_name(None)
                    .with_topic_id(topic_id),
                MetadataRequestTopic::default()
                    .with_name(None)
                    .with_topic_id(unknown),
            ]));
        let response: MetadataResponse = conn.request(ApiKey::Metadata, version, &request);
        assert_eq!(response.topics.len(), 2, "v{version}");
        let found = &response.topics[0];
        assert_eq!(found.error_code, 0, "v{version}");
        assert_eq!(found.name.as_ref().map(|n| n.as_str()), Some("by-id"));
        assert_eq!(found.topic_id, topic_id);
        assert_eq!(found.partitions.len(), 2);
        let missing = &response.topics[1];
        assert_eq!(missing.error_code, UNKNOWN_TOPIC_ID, "v{version}");
        assert_eq!(missing.topic_id, unknown);
        assert_eq!(missing.name, None);
    }
}

#[test]
fn empty_topic_list_at_v1_and_later_means_no_topics() {
    let broker = Broker::start();
    broker.create_topic("exists", 1);
    let mut conn = broker.connect();
    for version in 1..=13i16 {
        let request = MetadataRequest::default().with_topics(Some(Vec::new()));
        let response: MetadataResponse = conn.request(ApiKey::Metadata, version, &request);
        assert!(response.topics.is_empty(), "v{version}: {response:?}");
        assert_eq!(response.brokers.len(), 1, "v{version}");
    }
}

#[test]
fn unknown_tagged_fields_in_flexible_bodies_are_skipped() {
    let broker = Broker::start();
    broker.create_topic("tagged", 1);
    let mut conn = broker.connect();
    for version in 9..=13i16 {
        let mut topic = MetadataRequestTopic::default().with_name(Some(topic_name("tagged")));
        topic
            .unknown_tagged_fields
            .insert(1000, bytes::Bytes::from_static(b"topic-level"));
        let mut request = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(Some(vec![topic]));
        request
            .unknown_tagged_fields
            .insert(77, bytes::Bytes::from_static(&[1, 2, 3]));
        let response: MetadataResponse = conn.request(ApiKey::Metadata, version, &request);
        assert_eq!(response.topics[0].error_code, 0, "v{version}");
    }
}
