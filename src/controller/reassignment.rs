//! Partition reassignment (AlterPartitionReassignments, API 45; ListPartitionReassignments,
//! API 46), the controller's side, with Kafka's semantics (ReplicationControlManager,
//! PartitionReassignmentReplicas, PartitionReassignmentRevert):
//!
//! - starting one records the target in the metadata log: `replicas` becomes the target
//!   replicas followed by the leaving ones, with `adding_replicas` and `removing_replicas`;
//!   the ISR and the leader stay. The new replicas' brokers see themselves in the replica set
//!   and start following (the replica layer), and the leader lets them into the ISR once they
//!   caught up (AlterPartition);
//! - it completes in [`partition_change::change`] as soon as every added replica is in the
//!   ISR: replicas = target, the leaving ones out of the ISR, a leaving leader replaced; the
//!   leaving brokers then drop the partition and delete its data;
//! - cancelling (null replicas) reverts to the original replicas; a new target for a
//!   partition being reassigned replaces the reassignment in progress (reverted first);
//! - a target that only reorders or removes replicas completes at once.

use kafka_protocol::ResponseError;

use super::image::{MetadataImage, PartitionImage};
use super::partition_change::{self, Election};
use super::records::MetadataRecord;
use super::{placement, ApiError, Controller, RECORDS_PER_COMMIT_MAX};

/// One partition of an AlterPartitionReassignments: `target` None cancels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassign {
    pub topic: String,
    pub partition: i32,
    pub target: Option<Vec<i32>>,
}

/// Partitions one AlterPartitionReassignments may name (one response holds them all).
pub const PARTITIONS_PER_REQUEST_MAX: usize = 100_000;

/// One ongoing reassignment, as ListPartitionReassignments answers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ongoing {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding_replicas: Vec<i32>,
    pub removing_replicas: Vec<i32>,
}

/// The partition as it was before its reassignment (Kafka's PartitionReassignmentRevert):
/// the added replicas gone from the replicas and the ISR. Should no original replica be in
/// sync, the ISR becomes the original replicas: the added ones cannot stay, and one of the
/// originals held every record acknowledged before the reassignment.
fn reverted(current: &PartitionImage) -> PartitionImage {
    let original: Vec<i32> = current
        .replicas
        .iter()
        .copied()
        .filter(|id| !current.adding_replicas.contains(id))
        .collect();
    let mut isr: Vec<i32> = current
        .isr
        .iter()
        .copied()
        .filter(|id| original.contains(id))
        .collect();
    if isr.is_empty() {
        isr = original.clone();
    }
    PartitionImage {
        replicas: original,
        isr,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
        ..current.clone()
    }
}

/// The partition with a reassignment from `base` (none in progress) to `target` recorded:
/// the target first, then the replicas leaving.
fn started(base: &PartitionImage, target: &[i32]) -> PartitionImage {
    let removing: Vec<i32> = base
        .replicas
        .iter()
        .copied()
        .filter(|id| !target.contains(id))
        .collect();
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|id| !base.replicas.contains(id))
        .collect();
    let mut replicas = target.to_vec();
    replicas.extend(&removing);
    PartitionImage {
        replicas,
        adding_replicas: adding,
        removing_replicas: removing,
        ..base.clone()
    }
}

/// The record for one partition's request, None when nothing changes.
fn reassign(
    image: &MetadataImage,
    request: &Reassign,
    allow_replication_factor_change: bool,
) -> Result<Option<MetadataRecord>, ApiError> {
    let name = format!("{}-{}", request.topic, request.partition);
    let topic = image.topics.get(&request.topic);
    let Some(current) = topic.and_then(|t| t.partitions.get(&request.partition)) else {
        return Err(ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("Unknown partition {name}."),
        ));
    };
    let topic_id = topic.expect("partition of a known topic").id;
    let base = match current.is_reassigning() {
        true => reverted(current),
        false => current.clone(),
    };
    let proposed = match &request.target {
        None if !current.is_reassigning() => {
            return Err(ApiError::new(
                ResponseError::NoReassignmentInProgress,
                format!("No reassignment of {name} is in progress."),
            ))
        }
        None => base,
        Some(target) => {
            placement::validate_assignment(image, target)?;
            if !allow_replication_factor_change && target.len() != base.replicas.len() {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicationFactor,
                    format!(
                        "{name} has {} replicas; the target {target:?} would change that, which the request does not allow.",
                        base.replicas.len()
                    ),
                ));
            }
            started(&base, target)
        }
    };
    let is_live = |id: i32| image.is_live(id);
    let transition = partition_change::change(current, proposed, Election::Keep, &is_live, false);
    Ok(transition.map(|t| partition_change::record(topic_id, request.partition, &t.next)))
}

impl Controller {
    /// AlterPartitionReassignments on the active controller: one outcome per request entry;
    /// the changes that validate commit together.
    pub fn alter_partition_reassignments(
        &self,
        requests: &[Reassign],
        allow_replication_factor_change: bool,
    ) -> Result<Vec<Result<(), ApiError>>, ApiError> {
        if requests.len() > PARTITIONS_PER_REQUEST_MAX {
            return Err(ApiError::new(
                ResponseError::PolicyViolation,
                format!("At most {PARTITIONS_PER_REQUEST_MAX} partitions per request."),
            ));
        }
        let _guard = self.lock_commits();
        let image = self.image();
        let mut seen = std::collections::BTreeSet::new();
        let mut records = Vec::new();
        let mut outcomes: Vec<Result<(), ApiError>> = requests
            .iter()
            .map(|request| {
                if !seen.insert((request.topic.as_str(), request.partition)) {
                    return Err(ApiError::new(
                        ResponseError::InvalidRequest,
                        format!("{}-{} appears twice.", request.topic, request.partition),
                    ));
                }
                let record = reassign(&image, request, allow_replication_factor_change)?;
                records.extend(record);
                Ok(())
            })
            .collect();
        for chunk in records.chunks(RECORDS_PER_COMMIT_MAX) {
            if let Err(error) = self.commit(chunk) {
                for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                    *outcome = Err(error.clone());
                }
                return Ok(outcomes);
            }
        }
        if !records.is_empty() {
            tracing::info!(
                partitions = records.len(),
                "partition reassignments changed"
            );
        }
        Ok(outcomes)
    }
}

/// ListPartitionReassignments over `image`: every partition being reassigned, or those of
/// `wanted` (topic, partitions) that are (others, known or not, are left out as Kafka does).
pub fn ongoing(image: &MetadataImage, wanted: Option<&[(String, Vec<i32>)]>) -> Vec<Ongoing> {
    let entry = |topic: &str, partition: i32, state: &PartitionImage| {
        state.is_reassigning().then(|| Ongoing {
            topic: topic.to_string(),
            partition,
            replicas: state.replicas.clone(),
            adding_replicas: state.adding_replicas.clone(),
            removing_replicas: state.removing_replicas.clone(),
        })
    };
    match wanted {
        None => image
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter_map(|(&p, state)| entry(&t.name, p, state))
            })
            .collect(),
        Some(wanted) => wanted
            .iter()
            .flat_map(|(topic, partitions)| {
                partitions.iter().filter_map(move |&p| {
                    let state = image.topics.get(topic)?.partitions.get(&p)?;
                    entry(topic, p, state)
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::alter_partition::{AlterPartition, IsrChange};
    use crate::controller::registration::tests::{create, join, open, state};

    fn reassign_to(controller: &Controller, target: Option<&[i32]>) -> Result<(), ApiError> {
        let request = Reassign {
            topic: "r".into(),
            partition: 0,
            target: target.map(<[i32]>::to_vec),
        };
        controller
            .alter_partition_reassignments(&[request], true)
            .unwrap()
            .remove(0)
    }

    fn sets(partition: &PartitionImage) -> (Vec<i32>, Vec<i32>, Vec<i32>, Vec<i32>, i32) {
        (
            partition.replicas.clone(),
            partition.adding_replicas.clone(),
            partition.removing_replicas.clone(),
            partition.isr.clone(),
            partition.leader,
        )
    }

    #[test]
    fn reassignment_records_the_move_and_completes_when_the_added_replicas_are_in_sync() {
        let temp = tempfile::tempdir().unwrap();
        let controller = open(temp.path());
        let epochs: Vec<i64> = (1..=3).map(|id| join(&controller, id)).collect();
        create(&controller, "r", &[1, 2]);
        reassign_to(&controller, Some(&[2, 3])).unwrap();
        let moving = state(&controller, "r");
        assert_eq!(
            sets(&moving),
            (vec![2, 3, 1], vec![3], vec![1], vec![1, 2], 1),
            "target first, then the leaving replica; ISR and leader unchanged"
        );
        let listed = ongoing(&controller.image(), None);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].adding_replicas, vec![3]);
        // Broker 3 caught up: the leader adds it to the ISR, which completes the move and,
        // the leader leaving, elects the first in-sync target replica.
        let outcome = controller
            .alter_partition(&AlterPartition {
                broker_id: 1,
                broker_epoch: epochs[0],
                changes: vec![IsrChange {
                    topic: "r".into(),
                    partition: 0,
                    leader_epoch: moving.leader_epoch,
                    partition_epoch: moving.partition_epoch,
                    new_isr: vec![1, 2, 3],
                    new_isr_broker_epochs: Vec::new(),
                }],
            })
            .unwrap();
        assert!(outcome[0].is_ok());
        let done = state(&controller, "r");
        assert_eq!(sets(&done), (vec![2, 3], vec![], vec![], vec![2, 3], 2));
        assert_eq!(done.leader_epoch, moving.leader_epoch + 1);
        assert_eq!(ongoing(&controller.image(), None), Vec::new());
    }

    #[test]
    fn cancellation_reverts_and_reordering_completes_at_once() {
        let temp = tempfile::tempdir().unwrap();
        let controller = open(temp.path());
        for id in 1..=3 {
            join(&controller, id);
        }
        create(&controller, "r", &[1, 2]);
        reassign_to(&controller, Some(&[3, 1])).unwrap();
        assert_eq!(
            sets(&state(&controller, "r")),
            (vec![3, 1, 2], vec![3], vec![2], vec![1, 2], 1)
        );
        // A new target replaces the one in progress.
        reassign_to(&controller, Some(&[1, 3])).unwrap();
        assert_eq!(
            sets(&state(&controller, "r")),
            (vec![1, 3, 2], vec![3], vec![2], vec![1, 2], 1)
        );
        reassign_to(&controller, None).unwrap();
        assert_eq!(
            sets(&state(&controller, "r")),
            (vec![1, 2], vec![], vec![], vec![1, 2], 1)
        );
        assert_eq!(
            reassign_to(&controller, None).unwrap_err().error,
            ResponseError::NoReassignmentInProgress
        );
        reassign_to(&controller, Some(&[2, 1])).unwrap();
        assert_eq!(
            sets(&state(&controller, "r")),
            (vec![2, 1], vec![], vec![], vec![1, 2], 1)
        );
        // Removing a replica only: done at once.
        reassign_to(&controller, Some(&[2])).unwrap();
        assert_eq!(
            sets(&state(&controller, "r")),
            (vec![2], vec![], vec![], vec![2], 2)
        );
        assert_eq!(
            reassign_to(&controller, Some(&[2, 2])).unwrap_err().error,
            ResponseError::InvalidReplicaAssignment
        );
        assert_eq!(
            reassign_to(&controller, Some(&[9])).unwrap_err().error,
            ResponseError::InvalidReplicaAssignment
        );
    }
}
