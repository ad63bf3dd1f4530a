//! The balancer's side of the wire: reads the cluster and executes or verifies a plan with the
//! same requests, in the same order, as `kafka-reassign-partitions` (so it works against dlog
//! and Apache Kafka alike). Requests go through [`PeerClient`], one per broker address.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{
    alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic},
    describe_log_dirs_request::DescribeLogDirsRequest,
    elect_leaders_request::{ElectLeadersRequest, TopicPartitions},
    incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
    },
    list_partition_reassignments_request::{
        ListPartitionReassignmentsRequest, ListPartitionReassignmentsTopics,
    },
    AlterPartitionReassignmentsRequest, BrokerId as WireBrokerId, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::json::Reassignment;
use super::planner::{self, BrokerId, ClusterState};
use crate::controller::peer::PeerClient;

/// Versions both dlog and Kafka 4.x serve.
const METADATA_VERSION: i16 = 12;
const DESCRIBE_LOG_DIRS_VERSION: i16 = 4;
const INCREMENTAL_ALTER_CONFIGS_VERSION: i16 = 1;
const ALTER_REASSIGNMENTS_VERSION: i16 = 0;
const LIST_REASSIGNMENTS_VERSION: i16 = 0;
const ELECT_LEADERS_VERSION: i16 = 2;
/// How long one request may take (a reassignment or an election waits for the controller).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT_MS: i32 = 30_000;
const CLIENT_ID: &str = "dlog-rebalance";

/// Kafka's config names for replication throttles (KIP-73), as the Kafka tool sets them.
pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

/// ConfigResource types and IncrementalAlterConfigs operations on the wire.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const OPERATION_SET: i8 = 0;
const OPERATION_DELETE: i8 = 1;
/// ElectLeaders: the preferred replica.
const ELECTION_PREFERRED: i8 = 0;

/// What Metadata says about the cluster.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub brokers: Vec<planner::Broker>,
    pub addresses: BTreeMap<BrokerId, String>,
    pub controller: Option<BrokerId>,
    /// (topic, partition) → replicas, for every topic.
    pub replicas: BTreeMap<(String, i32), Vec<BrokerId>>,
    pub internal_topics: BTreeSet<String>,
}

/// A connection to the cluster through its bootstrap server and then each broker.
pub struct Admin {
    bootstrap: PeerClient,
    brokers: BTreeMap<BrokerId, PeerClient>,
}

fn error_text(code: i16, message: Option<&StrBytes>) -> String {
    let name = code
        .err()
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| format!("error {code}"));
    match message {
        Some(message) if !message.is_empty() => format!("{name}: {}", message.as_str()),
        _ => name,
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

impl Admin {
    pub fn new(bootstrap_server: &str) -> Admin {
        Admin {
            bootstrap: PeerClient::with_timeout(bootstrap_server, CLIENT_ID, REQUEST_TIMEOUT),
            brokers: BTreeMap::new(),
        }
    }

    /// Metadata of every topic; remembers each broker's address for the requests that must
    /// go to one broker (its log dirs, its configs).
    pub async fn describe(&mut self) -> Result<Cluster> {
        let request = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        let response = self
            .bootstrap
            .send(METADATA_VERSION, &request)
            .await
            .with_context(|| format!("Metadata from {}", self.bootstrap.address()))?;
        let mut cluster = Cluster {
            controller: (response.controller_id.0 >= 0).then_some(response.controller_id.0),
            ..Cluster::default()
        };
        for broker in &response.brokers {
            let id = broker.node_id.0;
            let address = format!("{}:{}", broker.host.as_str(), broker.port);
            cluster.brokers.push(planner::Broker {
                id,
                rack: broker.rack.as_ref().map(|r| r.as_str().to_string()),
            });
            cluster.addresses.insert(id, address.clone());
            self.brokers
                .entry(id)
                .or_insert_with(|| PeerClient::with_timeout(address, CLIENT_ID, REQUEST_TIMEOUT));
        }
        cluster.brokers.sort_by_key(|b| b.id);
        for topic in &response.topics {
            let Some(name) = topic.name.as_ref() else {
                continue;
            };
            if topic.error_code != 0 {
                bail!(
                    "topic {}: {}",
                    name.0.as_str(),
                    error_text(topic.error_code, None)
                );
            }
            if topic.is_internal {
                cluster.internal_topics.insert(name.0.to_string());
            }
            for partition in &topic.partitions {
                cluster.replicas.insert(
                    (name.0.to_string(), partition.partition_index),
                    partition.replica_nodes.iter().map(|b| b.0).collect(),
                );
            }
        }
        Ok(cluster)
    }

    fn broker(&self, id: BrokerId) -> Result<&PeerClient> {
        self.brokers
            .get(&id)
            .with_context(|| format!("broker {id} is not in the cluster's metadata"))
    }

    /// The controller Metadata names (where Kafka's admin client sends reassignments), or the
    /// bootstrap server.
    fn controller(&self, cluster: &Cluster) -> &PeerClient {
        cluster
            .controller
            .and_then(|id| self.brokers.get(&id))
            .unwrap_or(&self.bootstrap)
    }

    /// Each partition's size: the largest any broker's log dirs report for it.
    pub async fn partition_sizes(&self, cluster: &Cluster) -> Result<BTreeMap<(String, i32), u64>> {
        let mut sizes: BTreeMap<(String, i32), u64> = BTreeMap::new();
        for broker in &cluster.brokers {
            let response = self
                .broker(broker.id)?
                .send(
                    DESCRIBE_LOG_DIRS_VERSION,
                    &DescribeLogDirsRequest::default().with_topics(None),
                )
                .await
                .with_context(|| format!("DescribeLogDirs of broker {}", broker.id))?;
            if response.error_code != 0 {
                bail!(
                    "DescribeLogDirs of broker {}: {}",
                    broker.id,
                    error_text(response.error_code, None)
                );
            }
            for dir in response.results.iter().filter(|d| d.error_code == 0) {
                for topic in &dir.topics {
                    for partition in topic.partitions.iter().filter(|p| !p.is_future_key) {
                        let size_bytes = partition.partition_size.max(0) as u64;
                        let entry = sizes
                            .entry((topic.name.0.to_string(), partition.partition_index))
                            .or_default();
                        *entry = (*entry).max(size_bytes);
                    }
                }
            }
        }
        Ok(sizes)
    }

    /// Partitions of `partitions` with a reassignment in progress: (topic, partition) → the
    /// replicas being added.
    pub async fn ongoing(
        &self,
        cluster: &Cluster,
        partitions: &BTreeSet<(String, i32)>,
    ) -> Result<BTreeMap<(String, i32), Vec<BrokerId>>> {
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in partitions {
            topics.entry(topic).or_default().push(*partition);
        }
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(REQUEST_TIMEOUT_MS)
            .with_topics(Some(
                topics
                    .into_iter()
                    .map(|(name, indexes)| {
                        ListPartitionReassignmentsTopics::default()
                            .with_name(topic_name(name))
                            .with_partition_indexes(indexes)
                    })
                    .collect(),
            ));
        let response = self
            .controller(cluster)
            .send(LIST_REASSIGNMENTS_VERSION, &request)
            .await
            .context("ListPartitionReassignments")?;
        if response.error_code != 0 {
            bail!(
                "ListPartitionReassignments: {}",
                error_text(response.error_code, response.error_message.as_ref())
            );
        }
        Ok(response
            .topics
            .iter()
            .flat_map(|topic| {
                topic.partitions.iter().map(|p| {
                    (
                        (topic.name.0.to_string(), p.partition_index),
                        p.adding_replicas.iter().map(|b| b.0).collect(),
                    )
                })
            })
            .collect())
    }

    /// IncrementalAlterConfigs of one resource; a broker's configs go to that broker, as
    /// Kafka's admin client sends them.
    async fn alter_configs(
        &self,
        cluster: &Cluster,
        resource_type: i8,
        resource_name: &str,
        configs: Vec<(&str, Option<String>)>,
    ) -> Result<()> {
        let peer = if resource_type == RESOURCE_BROKER {
            self.broker(resource_name.parse().context("a broker id")?)?
        } else {
            self.controller(cluster)
        };
        let configs = configs
            .into_iter()
            .map(|(name, value)| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(name.to_string()))
                    .with_config_operation(if value.is_some() {
                        OPERATION_SET
                    } else {
                        OPERATION_DELETE
                    })
                    .with_value(value.map(StrBytes::from_string))
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(resource_name.to_string()))
                .with_configs(configs),
        ]);
        let response = peer
            .send(INCREMENTAL_ALTER_CONFIGS_VERSION, &request)
            .await
            .with_context(|| format!("IncrementalAlterConfigs of {resource_name}"))?;
        for result in &response.responses {
            if result.error_code != 0 {
                bail!(
                    "IncrementalAlterConfigs of {resource_name}: {}",
                    error_text(result.error_code, result.error_message.as_ref())
                );
            }
        }
        Ok(())
    }

    /// `kafka-reassign-partitions --execute [--throttle]`: the throttles first (so that the
    /// first byte copied is already throttled), then the reassignments. Returns the
    /// partitions started.
    pub async fn execute(
        &self,
        cluster: &Cluster,
        plan: &Reassignment,
        throttle_bytes_per_s: Option<u64>,
    ) -> Result<Vec<String>> {
        let planned: BTreeSet<(String, i32)> = plan
            .partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect();
        for key in &planned {
            if !cluster.replicas.contains_key(key) {
                bail!("partition {}-{} does not exist", key.0, key.1);
            }
        }
        let ongoing = self.ongoing(cluster, &planned).await?;
        if !ongoing.is_empty() {
            let names: Vec<String> = ongoing.keys().map(|(t, p)| format!("{t}-{p}")).collect();
            bail!(
                "reassignments already in progress for {}; wait for them (--verify) or cancel them",
                names.join(",")
            );
        }
        if let Some(rate) = throttle_bytes_per_s {
            let throttles = Throttles::of(cluster, plan);
            for broker in &throttles.brokers {
                self.alter_configs(
                    cluster,
                    RESOURCE_BROKER,
                    &broker.to_string(),
                    vec![
                        (LEADER_RATE, Some(rate.to_string())),
                        (FOLLOWER_RATE, Some(rate.to_string())),
                    ],
                )
                .await?;
            }
            for (topic, (leaders, followers)) in &throttles.topics {
                self.alter_configs(
                    cluster,
                    RESOURCE_TOPIC,
                    topic,
                    vec![
                        (LEADER_REPLICAS, Some(leaders.clone())),
                        (FOLLOWER_REPLICAS, Some(followers.clone())),
                    ],
                )
                .await?;
            }
        }
        let mut topics: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
        for p in &plan.partitions {
            topics.entry(&p.topic).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(p.partition)
                    .with_replicas(Some(p.replicas.iter().map(|&b| WireBrokerId(b)).collect())),
            );
        }
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(REQUEST_TIMEOUT_MS)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        ReassignableTopic::default()
                            .with_name(topic_name(name))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let response = self
            .controller(cluster)
            .send(ALTER_REASSIGNMENTS_VERSION, &request)
            .await
            .context("AlterPartitionReassignments")?;
        if response.error_code != 0 {
            bail!(
                "AlterPartitionReassignments: {}",
                error_text(response.error_code, response.error_message.as_ref())
            );
        }
        let mut started = Vec::new();
        let mut failures = Vec::new();
        for topic in &response.responses {
            for p in &topic.partitions {
                let name = format!("{}-{}", topic.name.0.as_str(), p.partition_index);
                if p.error_code == 0 {
                    started.push(name);
                } else {
                    failures.push(format!(
                        "{name}: {}",
                        error_text(p.error_code, p.error_message.as_ref())
                    ));
                }
            }
        }
        if !failures.is_empty() {
            bail!("reassignments refused: {}", failures.join("; "));
        }
        Ok(started)
    }

    /// `kafka-reassign-partitions --verify`: each partition's state; once none is moving, the
    /// throttles removed (every broker's rates, the plan's topics' throttled replicas) and, if
    /// asked, a preferred leader election of the plan's partitions.
    pub async fn verify(
        &self,
        cluster: &Cluster,
        plan: &Reassignment,
        elect_leaders: bool,
    ) -> Result<Verification> {
        let planned: BTreeSet<(String, i32)> = plan
            .partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect();
        let ongoing = self.ongoing(cluster, &planned).await?;
        let mut verification = Verification::default();
        for p in &plan.partitions {
            let key = (p.topic.clone(), p.partition);
            let name = format!("{}-{}", p.topic, p.partition);
            let state = if ongoing.contains_key(&key) {
                PartitionState::InProgress
            } else {
                match cluster.replicas.get(&key) {
                    Some(replicas) if *replicas == p.replicas => PartitionState::Completed,
                    Some(replicas) => PartitionState::Different(replicas.clone()),
                    None => PartitionState::Different(Vec::new()),
                }
            };
            verification
                .partitions
                .push((name, p.replicas.clone(), state));
        }
        if verification.moving() > 0 {
            return Ok(verification);
        }
        for broker in &cluster.brokers {
            self.alter_configs(
                cluster,
                RESOURCE_BROKER,
                &broker.id.to_string(),
                vec![(LEADER_RATE, None), (FOLLOWER_RATE, None)],
            )
            .await?;
        }
        verification.throttles_cleared_brokers = cluster.brokers.iter().map(|b| b.id).collect();
        let topics: BTreeSet<&str> = plan.partitions.iter().map(|p| p.topic.as_str()).collect();
        for topic in &topics {
            self.alter_configs(
                cluster,
                RESOURCE_TOPIC,
                topic,
                vec![(LEADER_REPLICAS, None), (FOLLOWER_REPLICAS, None)],
            )
            .await?;
            verification
                .throttles_cleared_topics
                .push(topic.to_string());
        }
        if elect_leaders {
            verification.elections = Some(self.elect_preferred(cluster, &planned).await?);
        }
        Ok(verification)
    }

    /// Preferred leader election of `partitions`: (partition, outcome) per partition; a
    /// partition already led by its preferred replica is "already led by its preferred replica".
    pub async fn elect_preferred(
        &self,
        cluster: &Cluster,
        partitions: &BTreeSet<(String, i32)>,
    ) -> Result<Vec<(String, String)>> {
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in partitions {
            topics.entry(topic).or_default().push(*partition);
        }
        let request = ElectLeadersRequest::default()
            .with_election_type(ELECTION_PREFERRED)
            .with_timeout_ms(REQUEST_TIMEOUT_MS)
            .with_topic_partitions(Some(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        TopicPartitions::default()
                            .with_topic(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect(),
            ));
        let response = self
            .controller(cluster)
            .send(ELECT_LEADERS_VERSION, &request)
            .await
            .context("ElectLeaders")?;
        if response.error_code != 0 {
            bail!("ElectLeaders: {}", error_text(response.error_code, None));
        }
        // ELECTION_NOT_NEEDED: the preferred replica leads already.
        const ELECTION_NOT_NEEDED: i16 = 84;
        let mut outcomes = Vec::new();
        for result in &response.replica_election_results {
            for p in &result.partition_result {
                let name = format!("{}-{}", result.topic.0.as_str(), p.partition_id);
                let outcome = match p.error_code {
                    0 => "elected its preferred replica".to_string(),
                    ELECTION_NOT_NEEDED => "already led by its preferred replica".to_string(),
                    code => format!(
                        "not elected: {}",
                        error_text(code, p.error_message.as_ref())
                    ),
                };
                outcomes.push((name, outcome));
            }
        }
        Ok(outcomes)
    }
}

/// The throttles `kafka-reassign-partitions --execute --throttle` sets for a plan: the rates on
/// every broker that holds or will hold a replica of a moving partition; per topic, the
/// current replicas of its moving partitions as leader-throttled (they send the data) and the
/// added replicas as follower-throttled (they copy it), as `partition:broker` lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Throttles {
    pub brokers: BTreeSet<BrokerId>,
    /// topic → (leader.replication.throttled.replicas, follower.replication.throttled.replicas)
    pub topics: BTreeMap<String, (String, String)>,
}

impl Throttles {
    pub fn of(cluster: &Cluster, plan: &Reassignment) -> Throttles {
        let mut throttles = Throttles::default();
        let mut lists: BTreeMap<&str, (Vec<String>, Vec<String>)> = BTreeMap::new();
        for p in &plan.partitions {
            let current = cluster
                .replicas
                .get(&(p.topic.clone(), p.partition))
                .cloned()
                .unwrap_or_default();
            let mut target = p.replicas.clone();
            let mut sorted_current = current.clone();
            target.sort_unstable();
            sorted_current.sort_unstable();
            if target == sorted_current {
                continue; // a reorder copies nothing
            }
            throttles.brokers.extend(current.iter().chain(&p.replicas));
            let (leaders, followers) = lists.entry(&p.topic).or_default();
            leaders.extend(current.iter().map(|b| format!("{}:{b}", p.partition)));
            followers.extend(
                p.replicas
                    .iter()
                    .filter(|b| !current.contains(b))
                    .map(|b| format!("{}:{b}", p.partition)),
            );
        }
        throttles.topics = lists
            .into_iter()
            .map(|(topic, (leaders, followers))| {
                (topic.to_string(), (leaders.join(","), followers.join(",")))
            })
            .collect();
        throttles
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartitionState {
    Completed,
    InProgress,
    /// No reassignment in progress, but the replicas are these rather than the plan's.
    Different(Vec<BrokerId>),
}

#[derive(Clone, Debug, Default)]
pub struct Verification {
    /// (topic-partition, target replicas, state), in plan order.
    pub partitions: Vec<(String, Vec<BrokerId>, PartitionState)>,
    pub throttles_cleared_brokers: Vec<BrokerId>,
    pub throttles_cleared_topics: Vec<String>,
    pub elections: Option<Vec<(String, String)>>,
}

impl Verification {
    pub fn moving(&self) -> usize {
        self.partitions
            .iter()
            .filter(|(_, _, s)| *s == PartitionState::InProgress)
            .count()
    }

    /// The lines `kafka-reassign-partitions --verify` prints.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec!["Status of partition reassignment:".to_string()];
        for (name, target, state) in &self.partitions {
            lines.push(match state {
                PartitionState::Completed => {
                    format!("Reassignment of partition {name} is completed.")
                }
                PartitionState::InProgress => {
                    format!("Reassignment of partition {name} is still in progress.")
                }
                PartitionState::Different(replicas) => format!(
                    "There is no active reassignment of partition {name}, but replica set is \
                     {replicas:?} rather than {target:?}."
                ),
            });
        }
        if !self.throttles_cleared_brokers.is_empty() {
            let brokers: Vec<String> = self
                .throttles_cleared_brokers
                .iter()
                .map(i32::to_string)
                .collect();
            lines.push(format!(
                "Clearing broker-level throttles on brokers {}",
                brokers.join(",")
            ));
        }
        for topic in &self.throttles_cleared_topics {
            lines.push(format!("Clearing topic-level throttles on topic {topic}"));
        }
        for (name, outcome) in self.elections.iter().flatten() {
            lines.push(format!("Preferred leader election of {name}: {outcome}"));
        }
        lines
    }
}

/// The planner's input from Metadata and log dir sizes: the partitions of `topics` (all
/// topics but the internal ones when empty).
pub fn cluster_state(
    cluster: &Cluster,
    sizes: &BTreeMap<(String, i32), u64>,
    topics: &[String],
) -> Result<ClusterState> {
    for topic in topics {
        if !cluster.replicas.keys().any(|(t, _)| t == topic) {
            bail!("topic {topic} does not exist");
        }
    }
    let partitions = cluster
        .replicas
        .iter()
        .filter(|((topic, _), _)| {
            if topics.is_empty() {
                !cluster.internal_topics.contains(topic)
            } else {
                topics.contains(topic)
            }
        })
        .map(|((topic, partition), replicas)| planner::Partition {
            topic: topic.clone(),
            partition: *partition,
            replicas: replicas.clone(),
            size_bytes: sizes
                .get(&(topic.clone(), *partition))
                .copied()
                .unwrap_or(0),
        })
        .collect();
    Ok(ClusterState {
        brokers: cluster.brokers.clone(),
        partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_are_the_kafka_tools() {
        // reassign.py's case: partition 0 [2,3] -> [3,1]: rates on 1,2,3; leaders 0:2,0:3;
        // followers 0:1. A reorder (partition 1) throttles nothing.
        let cluster = Cluster {
            replicas: BTreeMap::from([
                (("t".to_string(), 0), vec![2, 3]),
                (("t".to_string(), 1), vec![1, 2]),
            ]),
            ..Cluster::default()
        };
        let plan = Reassignment::of([("t", 0, &[3, 1][..]), ("t", 1, &[2, 1][..])]);
        let throttles = Throttles::of(&cluster, &plan);
        assert_eq!(throttles.brokers, BTreeSet::from([1, 2, 3]));
        assert_eq!(
            throttles.topics,
            BTreeMap::from([("t".to_string(), ("0:2,0:3".to_string(), "0:1".to_string()))])
        );
    }
}
