//! Metadata records: every change to cluster metadata is one of these, appended to the
//! metadata log (`__cluster_metadata-0`) and applied in order to the [`super::image`].
//! They mirror Kafka's KRaft records (TopicRecord, PartitionRecord, ConfigRecord,
//! RemoveTopicRecord, FeatureLevelRecord, ProducerIdsRecord, PartitionChangeRecord, …), stored
//! as JSON record values.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic,
    Broker,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    Topic {
        name: String,
        topic_id: Uuid,
    },
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        /// Empty in records written before replication: then every replica is in sync.
        #[serde(default)]
        isr: Vec<i32>,
        leader: i32,
        leader_epoch: i32,
        #[serde(default)]
        partition_epoch: i32,
        /// A reassignment in progress (Kafka's addingReplicas / removingReplicas): `replicas`
        /// holds the target replicas followed by those leaving; empty when none is.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        adding_replicas: Vec<i32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removing_replicas: Vec<i32>,
    },
    /// A partition's new leader and ISR (Kafka's PartitionChangeRecord), from an election or
    /// an AlterPartition. It carries the full new state rather than a delta: applying it
    /// needs nothing but the record, and the epochs say which state it replaces.
    PartitionChange {
        topic_id: Uuid,
        partition: i32,
        /// -1: no leader.
        leader: i32,
        isr: Vec<i32>,
        leader_epoch: i32,
        partition_epoch: i32,
        /// The replica set when it changed (a reassignment started, completed or was
        /// cancelled); None keeps it, as Kafka's nullable fields do (and as records written
        /// before reassignment existed say).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replicas: Option<Vec<i32>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        adding_replicas: Option<Vec<i32>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        removing_replicas: Option<Vec<i32>>,
    },
    /// `value: None` removes an override.
    Config {
        resource: ConfigResource,
        resource_name: String,
        name: String,
        value: Option<String>,
    },
    RemoveTopic {
        topic_id: Uuid,
    },
    FeatureLevel {
        name: String,
        level: i16,
    },
    /// A block of producer ids handed to a broker (Kafka's ProducerIdsRecord): ids below
    /// `next_producer_id` are taken, so none is ever handed out twice, even after a restart.
    ProducerIds {
        broker_id: i32,
        broker_epoch: i64,
        next_producer_id: i64,
    },
    /// A broker (re)registered (Kafka's RegisterBrokerRecord). Its broker epoch is this
    /// record's offset, so every registration gets a new, larger epoch. It starts fenced.
    RegisterBroker {
        broker_id: i32,
        incarnation_id: Uuid,
        endpoints: Vec<BrokerEndpoint>,
        rack: Option<String>,
    },
    /// Kafka's FenceBrokerRecord / UnfenceBrokerRecord: a fenced broker leads nothing and is
    /// given no new replicas.
    BrokerFencing {
        broker_id: i32,
        broker_epoch: i64,
        fenced: bool,
    },
    /// A user's SCRAM credential for one mechanism, added or replaced (Kafka's
    /// UserScramCredentialRecord). `mechanism` is the protocol code (1 SHA-256, 2 SHA-512).
    UserScramCredential {
        name: String,
        mechanism: i8,
        salt: Vec<u8>,
        stored_key: Vec<u8>,
        server_key: Vec<u8>,
        iterations: i32,
    },
    /// Kafka's RemoveUserScramCredentialRecord.
    RemoveUserScramCredential {
        name: String,
        mechanism: i8,
    },
    /// One ACL (Kafka's AccessControlEntryRecord); the id is what removal names.
    AccessControlEntry {
        id: Uuid,
        acl: crate::security::acl::AclBinding,
    },
    /// Kafka's RemoveAccessControlEntryRecord.
    RemoveAccessControlEntry {
        id: Uuid,
    },
    /// One quota of one entity set or removed (Kafka's ClientQuotaRecord: `remove` is
    /// `value: None`).
    ClientQuota {
        entity: crate::security::quota::QuotaEntity,
        key: String,
        value: Option<crate::security::quota::QuotaValue>,
    },
}

/// One listener of a broker, as clients reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security_protocol: i16,
}

impl MetadataRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("metadata records serialize")
    }

    pub fn decode(bytes: &[u8]) -> anyhow::Result<MetadataRecord> {
        Ok(serde_json::from_slice(bytes)?)
    }
}
