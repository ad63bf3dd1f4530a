//! ElectLeaders (API 43), the controller's side: preferred elections move leadership back to
//! each partition's first replica (after a rolling restart or a failover left it elsewhere);
//! unclean elections give a leaderless partition a leader outside its ISR. Both go through
//! [`partition_change::change`] like every other leader change, and commit as
//! [`MetadataRecord::PartitionChange`] records (Kafka's ReplicationControlManager.electLeaders).

use kafka_protocol::ResponseError;

use super::image::MetadataImage;
use super::partition_change::{self, Election, NO_LEADER};
use super::records::MetadataRecord;
use super::{ApiError, Controller, RECORDS_PER_COMMIT_MAX};

/// Kafka's ElectionType.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElectionType {
    Preferred,
    Unclean,
}

impl ElectionType {
    /// The wire value (v0 has none: preferred).
    pub fn from_code(code: i8) -> Option<ElectionType> {
        match code {
            0 => Some(ElectionType::Preferred),
            1 => Some(ElectionType::Unclean),
            _ => None,
        }
    }
}

/// One partition's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elected {
    pub topic: String,
    pub partition: i32,
    pub outcome: Result<(), ApiError>,
}

/// Partitions one ElectLeaders may name: the results are one response.
pub const PARTITIONS_PER_REQUEST_MAX: usize = 100_000;

/// The election of one partition in `image`: the new state to commit, or why none.
fn elect(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    election_type: ElectionType,
) -> Result<Option<MetadataRecord>, ApiError> {
    let unknown = || {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("Unknown partition {topic}-{partition}."),
        )
    };
    let topic_image = image.topics.get(topic).ok_or_else(unknown)?;
    let current = topic_image.partitions.get(&partition).ok_or_else(unknown)?;
    let is_live = |id: i32| image.is_live(id);
    let leader_ok = current.leader != NO_LEADER
        && is_live(current.leader)
        && current.isr.contains(&current.leader);
    let not_needed = || {
        ApiError::new(
            ResponseError::ElectionNotNeeded,
            format!("{topic}-{partition} already has the leader this election would choose."),
        )
    };
    let transition = match election_type {
        ElectionType::Preferred => {
            let preferred = current.replicas[0];
            if current.leader == preferred && leader_ok {
                return Err(not_needed());
            }
            let transition = partition_change::change(
                current,
                current.clone(),
                Election::Preferred,
                &is_live,
                false,
            );
            match transition {
                Some(transition) if transition.next.leader == preferred => transition,
                _ => {
                    return Err(ApiError::new(
                        ResponseError::PreferredLeaderNotAvailable,
                        format!(
                            "The preferred leader {preferred} of {topic}-{partition} is not live or not in sync."
                        ),
                    ))
                }
            }
        }
        ElectionType::Unclean => {
            if leader_ok {
                return Err(not_needed());
            }
            match partition_change::change(current, current.clone(), Election::Keep, &is_live, true)
            {
                Some(transition) if transition.next.leader != NO_LEADER => {
                    if transition.unclean {
                        tracing::warn!(
                            topic,
                            partition,
                            leader = transition.next.leader,
                            "unclean leader election asked for: records may be lost"
                        );
                    }
                    transition
                }
                _ => {
                    return Err(ApiError::new(
                        ResponseError::EligibleLeadersNotAvailable,
                        format!("No live replica of {topic}-{partition} can lead."),
                    ))
                }
            }
        }
    };
    Ok(Some(partition_change::record(
        topic_image.id,
        partition,
        &transition.next,
    )))
}

/// Automatic preferred-leader balancing (Kafka's `auto.leader.rebalance.enable`), read once
/// from the static properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderBalanceSettings {
    pub enabled: bool,
    pub check_interval_ms: i64,
    /// A broker is imbalanced when more than this share of the partitions whose preferred
    /// replica it is are led elsewhere.
    pub imbalance_percentage_max: i64,
}

impl LeaderBalanceSettings {
    pub fn from_properties(properties: &crate::config::Properties) -> LeaderBalanceSettings {
        use crate::config::{
            AUTO_LEADER_REBALANCE_ENABLE, LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS,
            LEADER_IMBALANCE_PER_BROKER_PERCENTAGE,
        };
        LeaderBalanceSettings {
            enabled: properties.get_bool(AUTO_LEADER_REBALANCE_ENABLE),
            check_interval_ms: properties
                .get_i64(LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS)
                .saturating_mul(1000),
            imbalance_percentage_max: properties.get_i64(LEADER_IMBALANCE_PER_BROKER_PERCENTAGE),
        }
    }
}

/// The partitions a leader balancing round moves back to their preferred replica, in image
/// order: for each broker whose imbalance (partitions preferring it but led elsewhere, over
/// all partitions preferring it) is above `imbalance_percentage_max`, those of its partitions
/// it can lead now (live, in the ISR), as the controller's `checkAndTriggerAutoLeaderRebalance`
/// picks them. Partitions being reassigned are left alone (the move decides their leader).
pub fn imbalanced_partitions(
    image: &MetadataImage,
    imbalance_percentage_max: i64,
) -> Vec<(String, i32)> {
    /// One broker's partitions as their preferred replica.
    #[derive(Default)]
    struct Preferring {
        count: u64,
        /// Led elsewhere: (topic, partition, whether the broker can lead it now).
        led_elsewhere: Vec<(String, i32, bool)>,
    }
    let mut per_broker: std::collections::BTreeMap<i32, Preferring> = Default::default();
    for topic in image.topics.values() {
        for (&index, partition) in &topic.partitions {
            let Some(&preferred) = partition.replicas.first() else {
                continue;
            };
            let entry = per_broker.entry(preferred).or_default();
            entry.count += 1;
            if partition.leader != preferred {
                let reassigning = !partition.adding_replicas.is_empty()
                    || !partition.removing_replicas.is_empty();
                let can_lead = image.is_live(preferred) && partition.isr.contains(&preferred);
                entry
                    .led_elsewhere
                    .push((topic.name.clone(), index, can_lead && !reassigning));
            }
        }
    }
    let mut chosen = Vec::new();
    for broker in per_broker.into_values() {
        let imbalance_percentage = broker.led_elsewhere.len() as u64 * 100 / broker.count.max(1);
        if imbalance_percentage as i64 > imbalance_percentage_max {
            chosen.extend(
                broker
                    .led_elsewhere
                    .into_iter()
                    .filter(|(_, _, electable)| *electable)
                    .map(|(topic, partition, _)| (topic, partition)),
            );
        }
    }
    chosen.truncate(PARTITIONS_PER_REQUEST_MAX);
    chosen
}

impl Controller {
    /// One automatic leader balancing round on the active controller: preferred elections
    /// of [`imbalanced_partitions`]. Returns how many partitions it moved.
    pub fn balance_leaders(&self, imbalance_percentage_max: i64) -> usize {
        let wanted = imbalanced_partitions(&self.image(), imbalance_percentage_max);
        if wanted.is_empty() {
            return 0;
        }
        match self.elect_leaders(ElectionType::Preferred, Some(wanted)) {
            Ok(results) => results.iter().filter(|r| r.outcome.is_ok()).count(),
            Err(error) => {
                tracing::warn!(error = %error.message, "automatic leader balancing failed");
                0
            }
        }
    }

    /// ElectLeaders on the active controller: `partitions` None means every partition, and
    /// then (as Kafka) the partitions needing no election are left out of the answer.
    /// One outcome per partition named; the elections that can happen commit together.
    pub fn elect_leaders(
        &self,
        election_type: ElectionType,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<Elected>, ApiError> {
        let _guard = self.lock_commits();
        let image = self.image();
        let all = partitions.is_none();
        let wanted: Vec<(String, i32)> = match partitions {
            Some(partitions) => partitions,
            None => image
                .topics
                .values()
                .flat_map(|t| t.partitions.keys().map(|&p| (t.name.clone(), p)))
                .collect(),
        };
        if wanted.len() > PARTITIONS_PER_REQUEST_MAX {
            return Err(ApiError::new(
                ResponseError::PolicyViolation,
                format!("At most {PARTITIONS_PER_REQUEST_MAX} partitions per ElectLeaders."),
            ));
        }
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(wanted.len());
        let mut seen = std::collections::BTreeSet::new();
        for (topic, partition) in wanted {
            // The same partition twice would build two changes on one epoch.
            if !seen.insert((topic.clone(), partition)) {
                continue;
            }
            let outcome = elect(&image, &topic, partition, election_type).map(|record| {
                records.extend(record);
            });
            let not_needed =
                matches!(&outcome, Err(e) if e.error == ResponseError::ElectionNotNeeded);
            if all && not_needed {
                continue;
            }
            results.push(Elected {
                topic,
                partition,
                outcome,
            });
        }
        for chunk in records.chunks(RECORDS_PER_COMMIT_MAX) {
            if let Err(error) = self.commit(chunk) {
                // Which chunks committed is unknown to the caller: every elected partition
                // answers the failure (the client retries; elections are idempotent).
                for result in results.iter_mut().filter(|r| r.outcome.is_ok()) {
                    result.outcome = Err(error.clone());
                }
                return Ok(results);
            }
        }
        if !records.is_empty() {
            tracing::info!(
                ?election_type,
                partitions = records.len(),
                "leaders elected"
            );
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::alter_partition::{AlterPartition, IsrChange};
    use crate::controller::registration::tests::{create, heartbeat, join, open, state};

    fn preferred(controller: &Controller, topic: &str) -> Result<(), ApiError> {
        let results = controller
            .elect_leaders(ElectionType::Preferred, Some(vec![(topic.into(), 0)]))
            .unwrap();
        assert_eq!(results.len(), 1);
        results[0].outcome.clone()
    }

    #[test]
    fn preferred_election_moves_leadership_back_once_the_first_replica_is_in_sync() {
        moves_leadership_back(false);
    }

    /// The same through automatic leader balancing: nothing to do while the preferred
    /// replica is out of sync, then the partition goes back.
    #[test]
    fn leader_balancing_moves_leadership_back_once_imbalanced_and_in_sync() {
        moves_leadership_back(true);
    }

    fn moves_leadership_back(automatic: bool) {
        let temp = tempfile::tempdir().unwrap();
        let controller = open(temp.path());
        let epochs: Vec<i64> = (1..=3).map(|id| join(&controller, id)).collect();
        create(&controller, "p", &[1, 2, 3]);
        assert_eq!(
            preferred(&controller, "p").unwrap_err().error,
            ResponseError::ElectionNotNeeded
        );
        // A restart of broker 1: leadership moves to 2, and 1 returns out of sync.
        heartbeat(&controller, 1, epochs[0], true, false);
        heartbeat(&controller, 1, epochs[0], false, false);
        let moved = state(&controller, "p");
        assert_eq!((moved.leader, moved.isr.clone()), (2, vec![2, 3]));
        assert_eq!(
            preferred(&controller, "p").unwrap_err().error,
            ResponseError::PreferredLeaderNotAvailable
        );
        assert_eq!(
            imbalanced_partitions(&controller.image(), 0),
            Vec::new(),
            "broker 1 is out of sync: it cannot lead"
        );
        // Broker 1 caught up: its leader lets it back into the ISR…
        controller
            .alter_partition(&AlterPartition {
                broker_id: 2,
                broker_epoch: epochs[1],
                changes: vec![IsrChange {
                    topic: "p".into(),
                    partition: 0,
                    leader_epoch: moved.leader_epoch,
                    partition_epoch: moved.partition_epoch,
                    new_isr: vec![1, 2, 3],
                    new_isr_broker_epochs: Vec::new(),
                }],
            })
            .unwrap()[0]
            .as_ref()
            .unwrap();
        // …and the preferred election makes it the leader again, in a new leader epoch.
        if automatic {
            // Broker 1 prefers one partition and leads none: 100 % imbalance, balanced
            // unless 100 % is allowed.
            let image = controller.image();
            assert_eq!(imbalanced_partitions(&image, 100), Vec::new());
            assert_eq!(
                imbalanced_partitions(&image, 10),
                vec![("p".to_string(), 0)]
            );
            assert_eq!(controller.balance_leaders(10), 1);
            assert_eq!(imbalanced_partitions(&controller.image(), 0), Vec::new());
        } else {
            preferred(&controller, "p").unwrap();
        }
        let back = state(&controller, "p");
        assert_eq!((back.leader, back.isr.clone()), (1, vec![1, 2, 3]));
        assert_eq!(back.leader_epoch, moved.leader_epoch + 1);
        // Every partition: those needing no election are left out of the answer.
        create(&controller, "q", &[2, 1]);
        let all = controller
            .elect_leaders(ElectionType::Preferred, None)
            .unwrap();
        assert_eq!(all, Vec::new());
        let unknown = controller
            .elect_leaders(ElectionType::Preferred, Some(vec![("nope".into(), 0)]))
            .unwrap();
        assert_eq!(
            unknown[0].outcome.as_ref().unwrap_err().error,
            ResponseError::UnknownTopicOrPartition
        );
    }

    #[test]
    fn unclean_election_only_for_a_partition_without_a_live_in_sync_leader() {
        let temp = tempfile::tempdir().unwrap();
        let controller = open(temp.path());
        let epochs: Vec<i64> = (1..=2).map(|id| join(&controller, id)).collect();
        create(&controller, "u", &[1, 2]);
        let unclean = |controller: &Controller| {
            controller
                .elect_leaders(ElectionType::Unclean, Some(vec![("u".into(), 0)]))
                .unwrap()[0]
                .outcome
                .clone()
        };
        assert_eq!(
            unclean(&controller).unwrap_err().error,
            ResponseError::ElectionNotNeeded
        );
        heartbeat(&controller, 1, epochs[0], true, false);
        heartbeat(&controller, 2, epochs[1], true, false);
        heartbeat(&controller, 1, epochs[0], false, false);
        assert_eq!(state(&controller, "u").leader, NO_LEADER);
        // The topic does not allow unclean elections; the request does, for this partition.
        unclean(&controller).unwrap();
        let elected = state(&controller, "u");
        assert_eq!((elected.leader, elected.isr), (1, vec![1]));
    }
}
