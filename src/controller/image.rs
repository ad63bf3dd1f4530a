//! The metadata image: the state that results from applying the metadata log in order.
//! Handlers read an immutable snapshot (`Arc<MetadataImage>`); only the controller's commit
//! path produces a new one.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use serde::{Deserialize, Serialize};

use super::records::{BrokerEndpoint, ConfigResource, MetadataRecord};

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionImage {
    pub replicas: Vec<i32>,
    /// In-sync replicas: the leader and the followers that have caught up with it. Only they
    /// may be elected leader in a clean election; acks=all waits for all of them.
    pub isr: Vec<i32>,
    /// -1: no leader (every ISR member is fenced or gone).
    pub leader: i32,
    /// Bumped on every leader change: stamped into the batches a leader appends, and what
    /// followers truncate by (KIP-101).
    pub leader_epoch: i32,
    /// Bumped on every change of this partition (leader, ISR, replicas): AlterPartition
    /// requests carrying an older one are stale (Kafka's partition epoch).
    pub partition_epoch: i32,
    /// A reassignment in progress (Kafka's PartitionRegistration): the replicas joining and
    /// those leaving once the joining ones are in sync. `replicas` lists the target replicas
    /// first, then the leaving ones. Both empty when no reassignment is in progress.
    #[serde(default)]
    pub adding_replicas: Vec<i32>,
    #[serde(default)]
    pub removing_replicas: Vec<i32>,
}

impl PartitionImage {
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas the partition will have once its reassignment completes (its replicas
    /// when none is in progress).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|id| !self.removing_replicas.contains(id))
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: BTreeMap<i32, PartitionImage>,
    /// Topic-level overrides only; defaults come from the broker configuration.
    pub configs: BTreeMap<String, String>,
}

impl TopicImage {
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }
}

/// What an applied record changed, for the broker to act on (open or delete logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    TopicChanged(String),
    TopicRemoved(String),
    /// A dynamic broker config changed: every log's effective config may have.
    BrokerConfigChanged,
    /// A broker registered, or was fenced or unfenced: partition leadership may have moved.
    BrokersChanged,
}

/// A registered broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerImage {
    pub id: i32,
    pub incarnation_id: Uuid,
    /// The offset of its registration record.
    pub epoch: i64,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
    pub fenced: bool,
}

impl BrokerImage {
    /// The endpoint clients use: the first advertised listener (the controller listener is
    /// never registered).
    pub fn client_endpoint(&self) -> Option<&BrokerEndpoint> {
        self.endpoints.first()
    }

    /// The endpoint of listener `name` (Kafka answers a client with the endpoints of the
    /// listener it connected to); the first one when the broker did not register that name.
    pub fn endpoint_for(&self, name: &str) -> Option<&BrokerEndpoint> {
        self.endpoints
            .iter()
            .find(|endpoint| endpoint.name.eq_ignore_ascii_case(name))
            .or_else(|| self.client_endpoint())
    }
}

/// Serializable: a snapshot of the metadata log is this image as JSON.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct MetadataImage {
    pub topics: BTreeMap<String, TopicImage>,
    /// Registered brokers by id, fenced or not.
    pub brokers: BTreeMap<i32, BrokerImage>,
    pub topic_names_by_id: HashMap<Uuid, String>,
    /// Dynamic broker configs by resource name: "" is the cluster-wide default, a node id
    /// that node's own (which wins).
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    pub features: BTreeMap<String, i16>,
    /// First producer id not yet handed out in a block (0 before any block).
    pub next_producer_id: i64,
    /// Offset of the last record applied, -1 before any.
    pub applied_offset: i64,
    /// SCRAM credentials by user, then mechanism code (AlterUserScramCredentials).
    #[serde(default)]
    pub scram_credentials: BTreeMap<String, BTreeMap<i8, ScramCredentialImage>>,
    /// Every ACL (CreateAcls); shared with the authorizer, copied only when ACLs change.
    #[serde(default)]
    pub acls: std::sync::Arc<crate::security::acl::AclSet>,
    /// Client quotas by entity (AlterClientQuotas); read by DescribeClientQuotas and by the
    /// quota manager on every produce and fetch.
    #[serde(default)]
    pub client_quotas: crate::security::quota::ClientQuotas,
}

/// A stored SCRAM credential: never the password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentialImage {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl MetadataImage {
    pub fn new() -> MetadataImage {
        MetadataImage {
            applied_offset: -1,
            ..Default::default()
        }
    }

    /// The dynamic value of a broker config for `node_id`: (value, set for the node itself
    /// rather than as the cluster default).
    pub fn dynamic_broker_config(&self, node_id: i32, name: &str) -> Option<(&str, bool)> {
        if let Some(value) = self
            .broker_configs
            .get(&node_id.to_string())
            .and_then(|c| c.get(name))
        {
            return Some((value, true));
        }
        let value = self.broker_configs.get("").and_then(|c| c.get(name))?;
        Some((value, false))
    }

    /// Ids of the brokers that may lead partitions and take new replicas.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerImage> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Whether broker `id` is registered and unfenced: it may lead and be in an ISR.
    pub fn is_live(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// The partition's leader if it is on a live broker; -1 (no leader) otherwise. Elections
    /// commit a new leader with every fencing, so this differs from `partition.leader` only in
    /// images written before elections existed: readers use it to never name a fenced leader.
    pub fn live_leader(&self, partition: &PartitionImage) -> i32 {
        match self.brokers.get(&partition.leader) {
            Some(broker) if !broker.fenced => partition.leader,
            _ => -1,
        }
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topics.get(self.topic_names_by_id.get(id)?)
    }

    /// The topic a partition record names; the controller only writes records of known
    /// topics, so an unknown one is a bug.
    fn known_topic_mut(&mut self, id: &Uuid) -> &mut TopicImage {
        let name = self
            .topic_names_by_id
            .get(id)
            .expect("partition record of a known topic");
        self.topics.get_mut(name).expect("topic present")
    }

    /// An image of brokers `(id, rack, fenced)` registered in order, for tests.
    #[cfg(test)]
    pub fn with_brokers(brokers: &[(i32, Option<&str>, bool)]) -> MetadataImage {
        let mut image = MetadataImage::new();
        for &(id, rack, fenced) in brokers {
            let epoch = image.applied_offset + 1;
            image.apply(
                epoch,
                &MetadataRecord::RegisterBroker {
                    broker_id: id,
                    incarnation_id: Uuid::new_v4(),
                    endpoints: Vec::new(),
                    rack: rack.map(str::to_string),
                },
            );
            image.apply(
                epoch + 1,
                &MetadataRecord::BrokerFencing {
                    broker_id: id,
                    broker_epoch: epoch,
                    fenced,
                },
            );
        }
        image
    }

    /// Applies one record. A record that does not fit the image (a partition of an unknown
    /// topic) is a bug in the controller, which validates before appending.
    pub fn apply(&mut self, offset: i64, record: &MetadataRecord) -> Option<Change> {
        assert!(
            offset > self.applied_offset,
            "metadata applied out of order: {offset} after {}",
            self.applied_offset
        );
        self.applied_offset = offset;
        match record {
            MetadataRecord::Topic { name, topic_id } => {
                self.topic_names_by_id.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        id: *topic_id,
                        partitions: BTreeMap::new(),
                        configs: BTreeMap::new(),
                    },
                );
                Some(Change::TopicChanged(name.clone()))
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
                adding_replicas,
                removing_replicas,
            } => {
                let topic = self.known_topic_mut(topic_id);
                // Records written before replication carry no ISR: every replica was in sync.
                let isr = match isr.is_empty() {
                    true => replicas.clone(),
                    false => isr.clone(),
                };
                let image = PartitionImage {
                    replicas: replicas.clone(),
                    isr,
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                    adding_replicas: adding_replicas.clone(),
                    removing_replicas: removing_replicas.clone(),
                };
                topic.partitions.insert(*partition, image);
                Some(Change::TopicChanged(topic.name.clone()))
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
                leader_epoch,
                partition_epoch,
                replicas,
                adding_replicas,
                removing_replicas,
            } => {
                // The controller validated the change against this very image (under its
                // commit lock): a change to a partition gone since is a bug, as is an epoch
                // that does not move forward.
                let topic = self.known_topic_mut(topic_id);
                let name = &topic.name;
                let image = topic
                    .partitions
                    .get_mut(partition)
                    .expect("partition change of a known partition");
                assert!(
                    *partition_epoch > image.partition_epoch && *leader_epoch >= image.leader_epoch,
                    "partition change of {name}-{partition} goes backwards: {record:?} after {image:?}"
                );
                image.leader = *leader;
                image.isr = isr.clone();
                image.leader_epoch = *leader_epoch;
                image.partition_epoch = *partition_epoch;
                if let Some(replicas) = replicas {
                    image.replicas = replicas.clone();
                }
                if let Some(adding) = adding_replicas {
                    image.adding_replicas = adding.clone();
                }
                if let Some(removing) = removing_replicas {
                    image.removing_replicas = removing.clone();
                }
                super::partition_change::assert_invariants(image);
                Some(Change::TopicChanged(topic.name.clone()))
            }
            MetadataRecord::Config {
                resource: ConfigResource::Topic,
                resource_name,
                name,
                value,
            } => {
                let topic = self.topics.get_mut(resource_name)?;
                match value {
                    Some(value) => topic.configs.insert(name.clone(), value.clone()),
                    None => topic.configs.remove(name),
                };
                Some(Change::TopicChanged(resource_name.clone()))
            }
            MetadataRecord::Config {
                resource: ConfigResource::Broker,
                resource_name,
                name,
                value,
            } => {
                let configs = self
                    .broker_configs
                    .entry(resource_name.clone())
                    .or_default();
                match value {
                    Some(value) => configs.insert(name.clone(), value.clone()),
                    None => configs.remove(name),
                };
                Some(Change::BrokerConfigChanged)
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                let name = self.topic_names_by_id.remove(topic_id)?;
                self.topics.remove(&name);
                Some(Change::TopicRemoved(name))
            }
            MetadataRecord::FeatureLevel { name, level } => {
                self.features.insert(name.clone(), *level);
                None
            }
            MetadataRecord::ProducerIds {
                next_producer_id, ..
            } => {
                // Blocks only move forward: a smaller value would hand out ids twice.
                assert!(
                    *next_producer_id > self.next_producer_id,
                    "producer id blocks went backwards: {next_producer_id} after {}",
                    self.next_producer_id
                );
                self.next_producer_id = *next_producer_id;
                None
            }
            MetadataRecord::RegisterBroker {
                broker_id,
                incarnation_id,
                endpoints,
                rack,
            } => {
                let broker = BrokerImage {
                    id: *broker_id,
                    incarnation_id: *incarnation_id,
                    epoch: offset,
                    endpoints: endpoints.clone(),
                    rack: rack.clone(),
                    fenced: true,
                };
                self.brokers.insert(*broker_id, broker);
                Some(Change::BrokersChanged)
            }
            MetadataRecord::BrokerFencing {
                broker_id,
                broker_epoch,
                fenced,
            } => {
                // A fencing decided against an older registration is stale: skip it.
                let broker = self.brokers.get_mut(broker_id)?;
                if broker.epoch != *broker_epoch {
                    return None;
                }
                broker.fenced = *fenced;
                Some(Change::BrokersChanged)
            }
            MetadataRecord::UserScramCredential {
                name,
                mechanism,
                salt,
                stored_key,
                server_key,
                iterations,
            } => {
                self.scram_credentials
                    .entry(name.clone())
                    .or_default()
                    .insert(
                        *mechanism,
                        ScramCredentialImage {
                            salt: salt.clone(),
                            stored_key: stored_key.clone(),
                            server_key: server_key.clone(),
                            iterations: *iterations,
                        },
                    );
                None
            }
            MetadataRecord::RemoveUserScramCredential { name, mechanism } => {
                if let Some(credentials) = self.scram_credentials.get_mut(name) {
                    credentials.remove(mechanism);
                    if credentials.is_empty() {
                        self.scram_credentials.remove(name);
                    }
                }
                None
            }
            MetadataRecord::AccessControlEntry { id, acl } => {
                std::sync::Arc::make_mut(&mut self.acls).insert(*id, acl.clone());
                None
            }
            MetadataRecord::RemoveAccessControlEntry { id } => {
                std::sync::Arc::make_mut(&mut self.acls).remove(id);
                None
            }
            MetadataRecord::ClientQuota { entity, key, value } => {
                self.client_quotas.apply(entity, key, value.map(|v| v.0));
                None
            }
        }
    }
}
