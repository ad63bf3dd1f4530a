//! AlterPartition (API 56), the controller's side: a partition leader asks to change its ISR
//! (shrink when a follower lags, expand when it caught up). The active controller validates
//! the request against the image as Kafka's ReplicationControlManager does and commits the
//! new ISR as a [`MetadataRecord::PartitionChange`]; any other node forwards the request to
//! it as the same Kafka request. Epochs make it safe: a leader that lost leadership, or that
//! asks on top of a state that changed since it last saw the partition, is refused.

use std::collections::BTreeSet;

use kafka_protocol::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use kafka_protocol::messages::{AlterPartitionRequest, BrokerId};
use kafka_protocol::ResponseError;

use super::image::{MetadataImage, PartitionImage};
use super::partition_change;
use super::records::MetadataRecord;
use super::{ApiError, Controller};

/// The AlterPartition version brokers send (Kafka 4 sends 3: ISR members with their epochs).
pub const ALTER_PARTITION_VERSION: i16 = 3;
/// Partitions one AlterPartition may change: one commit holds them all.
pub const PARTITIONS_PER_REQUEST_MAX: usize = super::RECORDS_PER_COMMIT_MAX;

/// One partition's requested ISR change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrChange {
    pub topic: String,
    pub partition: i32,
    /// The leader epoch and partition epoch the leader last saw.
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
    /// The broker epoch of each member of `new_isr` as the leader saw it (from its fetches),
    /// in the same order; empty (or -1 for a member) skips the check.
    pub new_isr_broker_epochs: Vec<i64>,
}

/// The requester and its changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartition {
    pub broker_id: i32,
    /// -1 skips the check.
    pub broker_epoch: i64,
    pub changes: Vec<IsrChange>,
}

/// The outcome of one change: the partition's state afterwards.
pub type ChangeOutcome = Result<PartitionImage, ApiError>;

fn refuse(error: ResponseError, message: String) -> ApiError {
    ApiError::new(error, message)
}

/// Checks the requester (Kafka answers these for the whole request).
fn validate_broker(
    image: &MetadataImage,
    broker_id: i32,
    broker_epoch: i64,
) -> Result<(), ApiError> {
    match image.brokers.get(&broker_id) {
        Some(broker) if broker_epoch == -1 || broker.epoch == broker_epoch => Ok(()),
        Some(broker) => Err(refuse(
            ResponseError::StaleBrokerEpoch,
            format!(
                "Broker {broker_id} has epoch {}, not {broker_epoch}.",
                broker.epoch
            ),
        )),
        None => Err(refuse(
            ResponseError::StaleBrokerEpoch,
            format!("Broker {broker_id} is not registered."),
        )),
    }
}

/// Checks one change against the image, in Kafka's order; returns the current state.
pub(crate) fn validate_change<'a>(
    image: &'a MetadataImage,
    broker_id: i32,
    change: &IsrChange,
) -> Result<&'a PartitionImage, ApiError> {
    let name = format!("{}-{}", change.topic, change.partition);
    let current = image
        .topics
        .get(&change.topic)
        .and_then(|topic| topic.partitions.get(&change.partition))
        .ok_or_else(|| {
            refuse(
                ResponseError::UnknownTopicOrPartition,
                format!("Unknown partition {name}."),
            )
        })?;
    // Epochs newer than the image: this controller is behind, likely no longer active.
    if change.leader_epoch > current.leader_epoch
        || change.partition_epoch > current.partition_epoch
    {
        return Err(refuse(
            ResponseError::NotController,
            format!("{name} has epochs older than the request's: this controller is behind."),
        ));
    }
    if change.leader_epoch < current.leader_epoch {
        return Err(refuse(
            ResponseError::FencedLeaderEpoch,
            format!(
                "{name} has leader epoch {}, not {}.",
                current.leader_epoch, change.leader_epoch
            ),
        ));
    }
    if broker_id != current.leader {
        return Err(refuse(
            ResponseError::InvalidRequest,
            format!("{name} is led by {}, not {broker_id}.", current.leader),
        ));
    }
    if change.partition_epoch < current.partition_epoch {
        return Err(refuse(
            ResponseError::InvalidUpdateVersion,
            format!(
                "{name} has partition epoch {}, not {}.",
                current.partition_epoch, change.partition_epoch
            ),
        ));
    }
    let isr = &change.new_isr;
    let duplicate = isr.iter().enumerate().any(|(i, id)| isr[..i].contains(id));
    if isr.is_empty() || duplicate || !isr.iter().all(|id| current.replicas.contains(id)) {
        return Err(refuse(
            ResponseError::InvalidRequest,
            format!(
                "{isr:?} is not a valid ISR of {name} (replicas {:?}).",
                current.replicas
            ),
        ));
    }
    if !isr.contains(&current.leader) {
        return Err(refuse(
            ResponseError::InvalidRequest,
            format!("The ISR {isr:?} of {name} leaves out its leader {broker_id}."),
        ));
    }
    for (index, id) in isr.iter().enumerate() {
        let seen_epoch = change
            .new_isr_broker_epochs
            .get(index)
            .copied()
            .unwrap_or(-1);
        let why = match image.brokers.get(id) {
            None => Some("not registered".to_string()),
            Some(broker) if broker.fenced => Some("fenced".to_string()),
            Some(broker) if seen_epoch != -1 && seen_epoch != broker.epoch => Some(format!(
                "broker epoch {seen_epoch}, registered {}",
                broker.epoch
            )),
            Some(_) => None,
        };
        if let Some(why) = why {
            return Err(refuse(
                ResponseError::IneligibleReplica,
                format!("Broker {id} may not join the ISR of {name}: {why}."),
            ));
        }
    }
    Ok(current)
}

impl Controller {
    /// AlterPartition: on the active controller, validates and commits; elsewhere forwards to
    /// it. Returns the requester's error for the whole request, or one outcome per change.
    pub fn alter_partition(
        &self,
        request: &AlterPartition,
    ) -> Result<Vec<ChangeOutcome>, ApiError> {
        if !self.is_local() {
            return self.forward_alter_partition(request);
        }
        self.alter_partition_here(request)
    }

    /// AlterPartition on this node (the controller listener: never forwarded twice; a node
    /// that is not the active controller answers NOT_CONTROLLER). A change to
    /// the ISR the partition already has answers the current state without a commit.
    pub fn alter_partition_here(
        &self,
        request: &AlterPartition,
    ) -> Result<Vec<ChangeOutcome>, ApiError> {
        if request.changes.len() > PARTITIONS_PER_REQUEST_MAX {
            return Err(refuse(
                ResponseError::PolicyViolation,
                format!("At most {PARTITIONS_PER_REQUEST_MAX} partitions per AlterPartition."),
            ));
        }
        // Validating against the image of a node that is not the active controller could
        // refuse a valid request with a stale view: the client must go to the active one.
        if !self.is_local() {
            return Err(refuse(
                ResponseError::NotController,
                "This node is not the active controller.".to_string(),
            ));
        }
        let _guard = self.lock_commits();
        let image = self.image();
        validate_broker(&image, request.broker_id, request.broker_epoch)?;
        let mut outcomes: Vec<ChangeOutcome> = Vec::with_capacity(request.changes.len());
        let mut records: Vec<MetadataRecord> = Vec::new();
        // Two changes of one partition in one request would both build on the same epoch.
        let mut seen: BTreeSet<(&str, i32)> = BTreeSet::new();
        for change in &request.changes {
            if !seen.insert((change.topic.as_str(), change.partition)) {
                outcomes.push(Err(refuse(
                    ResponseError::InvalidRequest,
                    format!("{}-{} appears twice.", change.topic, change.partition),
                )));
                continue;
            }
            let outcome = validate_change(&image, request.broker_id, change).map(|current| {
                let is_live = |id: i32| image.is_live(id);
                match partition_change::next_state(current, Some(&change.new_isr), &is_live, false)
                {
                    None => current.clone(),
                    Some(transition) => {
                        let topic_id = image.topics[&change.topic].id;
                        records.push(partition_change::record(
                            topic_id,
                            change.partition,
                            &transition.next,
                        ));
                        transition.next
                    }
                }
            });
            outcomes.push(outcome);
        }
        if !records.is_empty() {
            self.commit(&records)?;
            tracing::info!(
                broker_id = request.broker_id,
                partitions = records.len(),
                "ISR changed"
            );
        }
        Ok(outcomes)
    }

    /// Sends the request to the active controller as AlterPartition v3 (topics by id, from
    /// this node's image) and reads its answer back into partition states.
    fn forward_alter_partition(
        &self,
        request: &AlterPartition,
    ) -> Result<Vec<ChangeOutcome>, ApiError> {
        let image = self.image();
        let mut topics: Vec<TopicData> = Vec::new();
        for change in &request.changes {
            let Some(topic) = image.topics.get(&change.topic) else {
                continue;
            };
            let members = change.new_isr.iter().enumerate().map(|(index, id)| {
                BrokerState::default()
                    .with_broker_id(BrokerId(*id))
                    .with_broker_epoch(
                        change
                            .new_isr_broker_epochs
                            .get(index)
                            .copied()
                            .unwrap_or(-1),
                    )
            });
            let partition = PartitionData::default()
                .with_partition_index(change.partition)
                .with_leader_epoch(change.leader_epoch)
                .with_partition_epoch(change.partition_epoch)
                .with_new_isr_with_epochs(members.collect());
            match topics.iter_mut().find(|t| t.topic_id == topic.id) {
                Some(entry) => entry.partitions.push(partition),
                None => topics.push(
                    TopicData::default()
                        .with_topic_id(topic.id)
                        .with_partitions(vec![partition]),
                ),
            }
        }
        let wire = AlterPartitionRequest::default()
            .with_broker_id(BrokerId(request.broker_id))
            .with_broker_epoch(request.broker_epoch)
            .with_topics(topics);
        let response = self.call_active(ALTER_PARTITION_VERSION, &wire)?;
        let error_of = |code: i16| {
            ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError)
        };
        if response.error_code != 0 {
            let error = error_of(response.error_code);
            return Err(refuse(error, format!("AlterPartition refused: {error:?}")));
        }
        let outcomes = request
            .changes
            .iter()
            .map(|change| {
                // The answer carries no replica set: the local image's, which a completed
                // reassignment may have changed since (the next image says).
                let (topic, known) = image
                    .topics
                    .get(&change.topic)
                    .and_then(|t| Some((t, t.partitions.get(&change.partition)?.clone())))
                    .ok_or_else(|| {
                        refuse(
                            ResponseError::UnknownTopicOrPartition,
                            format!("Unknown partition {}-{}.", change.topic, change.partition),
                        )
                    })?;
                let answer = response
                    .topics
                    .iter()
                    .filter(|t| t.topic_id == topic.id)
                    .flat_map(|t| t.partitions.iter())
                    .find(|p| p.partition_index == change.partition)
                    .ok_or_else(|| {
                        refuse(
                            ResponseError::UnknownServerError,
                            format!(
                                "The controller did not answer for {}-{}.",
                                change.topic, change.partition
                            ),
                        )
                    })?;
                if answer.error_code != 0 {
                    let error = error_of(answer.error_code);
                    return Err(refuse(
                        error,
                        format!(
                            "AlterPartition of {}-{}: {error:?}",
                            change.topic, change.partition
                        ),
                    ));
                }
                Ok(PartitionImage {
                    isr: answer.isr.iter().map(|id| id.0).collect(),
                    leader: answer.leader_id.0,
                    leader_epoch: answer.leader_epoch,
                    partition_epoch: answer.partition_epoch,
                    ..known
                })
            })
            .collect();
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::records::MetadataRecord;

    /// Brokers 1–3 (3 fenced) and topic t with partition 0 on [1, 2, 3], ISR [1], leader 1,
    /// leader epoch 4, partition epoch 7.
    fn image() -> MetadataImage {
        let mut image =
            MetadataImage::with_brokers(&[(1, None, false), (2, None, false), (3, None, true)]);
        let offset = image.applied_offset + 1;
        let topic_id = uuid::Uuid::new_v4();
        image.apply(
            offset,
            &MetadataRecord::Topic {
                name: "t".into(),
                topic_id,
            },
        );
        image.apply(
            offset + 1,
            &MetadataRecord::Partition {
                topic_id,
                partition: 0,
                replicas: vec![1, 2, 3],
                isr: vec![1],
                leader: 1,
                leader_epoch: 4,
                partition_epoch: 7,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            },
        );
        image
    }

    fn change(new_isr: &[i32]) -> IsrChange {
        IsrChange {
            topic: "t".into(),
            partition: 0,
            leader_epoch: 4,
            partition_epoch: 7,
            new_isr: new_isr.to_vec(),
            new_isr_broker_epochs: Vec::new(),
        }
    }

    fn error_of(image: &MetadataImage, broker_id: i32, change: &IsrChange) -> ResponseError {
        validate_change(image, broker_id, change).unwrap_err().error
    }

    #[test]
    fn leader_may_expand_its_isr_with_live_replicas() {
        let image = image();
        assert!(validate_change(&image, 1, &change(&[1, 2])).is_ok());
        assert_eq!(
            error_of(&image, 1, &change(&[1, 3])),
            ResponseError::IneligibleReplica
        );
        assert_eq!(
            error_of(&image, 1, &change(&[1, 9])),
            ResponseError::InvalidRequest
        );
        assert_eq!(
            error_of(&image, 1, &change(&[2])),
            ResponseError::InvalidRequest
        );
        assert_eq!(
            error_of(&image, 1, &change(&[1, 1])),
            ResponseError::InvalidRequest
        );
        let mut stale_member = change(&[1, 2]);
        stale_member.new_isr_broker_epochs = vec![-1, 99];
        assert_eq!(
            error_of(&image, 1, &stale_member),
            ResponseError::IneligibleReplica
        );
    }

    #[test]
    fn stale_requests_are_refused_by_epoch() {
        let image = image();
        assert_eq!(
            error_of(&image, 2, &change(&[1, 2])),
            ResponseError::InvalidRequest
        );
        let mut old_leader = change(&[1, 2]);
        old_leader.leader_epoch = 3;
        assert_eq!(
            error_of(&image, 1, &old_leader),
            ResponseError::FencedLeaderEpoch
        );
        let mut old_partition = change(&[1, 2]);
        old_partition.partition_epoch = 6;
        assert_eq!(
            error_of(&image, 1, &old_partition),
            ResponseError::InvalidUpdateVersion
        );
        let mut ahead = change(&[1, 2]);
        ahead.partition_epoch = 8;
        assert_eq!(error_of(&image, 1, &ahead), ResponseError::NotController);
        let mut unknown = change(&[1]);
        unknown.partition = 5;
        assert_eq!(
            error_of(&image, 1, &unknown),
            ResponseError::UnknownTopicOrPartition
        );
    }

    #[test]
    fn requester_epoch_checked() {
        let image = image();
        assert!(validate_broker(&image, 1, 0).is_ok());
        assert!(validate_broker(&image, 1, -1).is_ok());
        assert_eq!(
            validate_broker(&image, 1, 2).unwrap_err().error,
            ResponseError::StaleBrokerEpoch
        );
        assert_eq!(
            validate_broker(&image, 7, 0).unwrap_err().error,
            ResponseError::StaleBrokerEpoch
        );
    }
}
