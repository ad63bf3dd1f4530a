//! Partition changes (Kafka's PartitionChangeBuilder): the one place that decides a
//! partition's next leader and ISR. Every event that can move leadership or the ISR — a broker
//! fenced, unfenced, (re)registered or shutting down, a leader's AlterPartition — goes through
//! [`next_state`] with the liveness of the brokers after the event, so that failover, recovery
//! and ISR changes follow one rule set:
//!
//! - the ISR holds live brokers only, except that its last member is never removed (without
//!   Kafka's eligible leader replicas, that member is the one replica known to have every
//!   committed record: it must stay electable when it returns);
//! - the leader stays while it is live and in the ISR; otherwise the first replica (in
//!   replica-list order, so the preferred leader first) that is live and in the ISR leads;
//! - with none, an unclean election (when the topic allows it) picks the first live replica
//!   and the ISR becomes that replica alone: records it lacks are lost, which is what
//!   `unclean.leader.election.enable` accepts; otherwise the partition has no leader (-1);
//! - the leader epoch is bumped when the leader changes, the partition epoch on every change;
//! - a reassignment in progress completes as soon as every replica it adds is in the ISR
//!   (Kafka's PartitionReassignmentReplicas): the replicas become the target, the leaving
//!   ones drop out of the ISR, and a leader that left is replaced;
//! - a preferred election (ElectLeaders) moves leadership to the first replica when it is
//!   live and in sync.
//!
//! Pure functions over the image: the controller turns their output into
//! [`MetadataRecord::PartitionChange`] records and commits them.

use uuid::Uuid;

use super::image::{MetadataImage, PartitionImage, TopicImage};
use super::records::MetadataRecord;

/// No leader (Kafka's NO_LEADER).
pub const NO_LEADER: i32 = -1;

/// A partition's next state and how its leader was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub next: PartitionImage,
    /// The leader came from outside the ISR: committed records may be lost.
    pub unclean: bool,
}

/// Panics unless `partition` is a state the controller may commit: `leader ∈ isr ⊆ replicas`
/// (or no leader), no broker twice, and an ISR that is never empty. A violation is a bug in
/// the controller, never an input to tolerate.
pub fn assert_invariants(partition: &PartitionImage) {
    let PartitionImage {
        replicas,
        isr,
        leader,
        adding_replicas,
        removing_replicas,
        ..
    } = partition;
    assert!(
        !replicas.is_empty(),
        "a partition without replicas: {partition:?}"
    );
    assert!(!isr.is_empty(), "an empty ISR: {partition:?}");
    for (index, id) in replicas.iter().enumerate() {
        assert!(
            !replicas[..index].contains(id),
            "duplicate replica: {partition:?}"
        );
    }
    for (index, id) in isr.iter().enumerate() {
        assert!(
            !isr[..index].contains(id),
            "duplicate ISR member: {partition:?}"
        );
        assert!(
            replicas.contains(id),
            "ISR member not a replica: {partition:?}"
        );
    }
    assert!(
        *leader == NO_LEADER || isr.contains(leader),
        "leader outside the ISR: {partition:?}"
    );
    for id in adding_replicas {
        assert!(
            replicas.contains(id) && !removing_replicas.contains(id),
            "adding replica not a replica, or also removed: {partition:?}"
        );
    }
    for id in removing_replicas {
        assert!(
            replicas.contains(id),
            "removing replica not a replica: {partition:?}"
        );
    }
    assert!(
        removing_replicas.len() < replicas.len(),
        "a reassignment that removes every replica: {partition:?}"
    );
}

/// The state of a new partition on `replicas`: every live replica is in sync (there is no
/// data yet) and the first of them leads. None when no replica is live.
pub fn new_partition(replicas: &[i32], is_live: &dyn Fn(i32) -> bool) -> Option<PartitionImage> {
    let isr: Vec<i32> = replicas.iter().copied().filter(|id| is_live(*id)).collect();
    let leader = *isr.first()?;
    let partition = PartitionImage {
        replicas: replicas.to_vec(),
        isr,
        leader,
        leader_epoch: 0,
        partition_epoch: 0,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    };
    assert_invariants(&partition);
    Some(partition)
}

/// How the leader is chosen when the current one could stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Election {
    /// Keep a leader that is live and in sync (every change but ElectLeaders').
    Keep,
    /// Move leadership to the first replica when it is live and in sync (Kafka's
    /// PREFERRED election).
    Preferred,
}

/// The next state of `current` once `target_isr` (an AlterPartition; None keeps the ISR) is
/// applied with brokers as live as `is_live` says, electing a leader when the current one can
/// no longer lead. None when nothing changes.
pub fn next_state(
    current: &PartitionImage,
    target_isr: Option<&[i32]>,
    is_live: &dyn Fn(i32) -> bool,
    unclean_allowed: bool,
) -> Option<Transition> {
    let mut proposed = current.clone();
    if let Some(isr) = target_isr {
        proposed.isr = isr.to_vec();
    }
    change(current, proposed, Election::Keep, is_live, unclean_allowed)
}

/// The next state of `current` when its replicas, reassignment sets and wanted ISR become
/// those of `proposed` (its leader and epochs are ignored): the ISR keeps live brokers only,
/// a reassignment whose added replicas are all in sync completes, and a leader is elected as
/// `election` says. None when nothing changes.
pub fn change(
    current: &PartitionImage,
    proposed: PartitionImage,
    election: Election,
    is_live: &dyn Fn(i32) -> bool,
    unclean_allowed: bool,
) -> Option<Transition> {
    let PartitionImage {
        mut replicas,
        isr: wanted,
        mut adding_replicas,
        mut removing_replicas,
        ..
    } = proposed;
    let mut isr: Vec<i32> = wanted.iter().copied().filter(|id| is_live(*id)).collect();
    if isr.is_empty() {
        // Never empty the ISR: keep the member most likely to hold every committed record,
        // the leader when it is one (it had them all), else the ISR as it was.
        isr = match wanted.contains(&current.leader) {
            true => vec![current.leader],
            false => wanted.clone(),
        };
    }
    // Complete a reassignment once every added replica is in sync (Kafka's rule: the target
    // replicas that were replicas before need not be), unless no in-sync replica would stay.
    if !adding_replicas.is_empty() || !removing_replicas.is_empty() {
        let staying: Vec<i32> = isr
            .iter()
            .copied()
            .filter(|id| !removing_replicas.contains(id))
            .collect();
        if !staying.is_empty() && adding_replicas.iter().all(|id| staying.contains(id)) {
            replicas.retain(|id| !removing_replicas.contains(id));
            isr = staying;
            adding_replicas.clear();
            removing_replicas.clear();
        }
    }
    let can_lead = |id: i32| is_live(id) && isr.contains(&id);
    let mut unclean = false;
    let preferred = replicas
        .first()
        .copied()
        .filter(|id| election == Election::Preferred && can_lead(*id));
    let leader = if let Some(id) = preferred {
        id
    } else if current.leader != NO_LEADER && can_lead(current.leader) {
        current.leader
    } else if let Some(&id) = replicas.iter().find(|id| can_lead(**id)) {
        id
    } else if let Some(&id) = replicas
        .iter()
        .find(|id| unclean_allowed && is_live(**id) && !removing_replicas.contains(id))
    {
        unclean = true;
        isr = vec![id];
        id
    } else {
        NO_LEADER
    };
    if leader == current.leader
        && isr == current.isr
        && replicas == current.replicas
        && adding_replicas == current.adding_replicas
        && removing_replicas == current.removing_replicas
    {
        return None;
    }
    let leader_changed = leader != current.leader;
    let next = PartitionImage {
        replicas,
        isr,
        leader,
        leader_epoch: current.leader_epoch + i32::from(leader_changed),
        partition_epoch: current.partition_epoch + 1,
        adding_replicas,
        removing_replicas,
    };
    assert_invariants(&next);
    Some(Transition { next, unclean })
}

/// The record that moves a partition to `next`.
pub fn record(topic_id: Uuid, partition: i32, next: &PartitionImage) -> MetadataRecord {
    MetadataRecord::PartitionChange {
        topic_id,
        partition,
        leader: next.leader,
        isr: next.isr.clone(),
        leader_epoch: next.leader_epoch,
        partition_epoch: next.partition_epoch,
        replicas: Some(next.replicas.clone()),
        adding_replicas: Some(next.adding_replicas.clone()),
        removing_replicas: Some(next.removing_replicas.clone()),
    }
}

/// A partition change the controller will commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elected {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub transition: Transition,
}

/// Elections after broker liveness changed: every partition of `image` whose leader or ISR
/// must move once brokers are as live as `is_live` says. `unclean_allowed` answers per topic.
/// A full scan: liveness changes are rare and the work per partition is a few comparisons.
pub fn elections(
    image: &MetadataImage,
    is_live: &dyn Fn(i32) -> bool,
    unclean_allowed: &dyn Fn(&TopicImage) -> bool,
) -> Vec<Elected> {
    let mut elected = Vec::new();
    for topic in image.topics.values() {
        let unclean = unclean_allowed(topic);
        for (&partition, current) in &topic.partitions {
            if let Some(transition) = next_state(current, None, is_live, unclean) {
                elected.push(Elected {
                    topic: topic.name.clone(),
                    topic_id: topic.id,
                    partition,
                    transition,
                });
            }
        }
    }
    elected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionImage {
        PartitionImage {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 5,
            partition_epoch: 9,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    fn live(ids: &'static [i32]) -> impl Fn(i32) -> bool {
        move |id| ids.contains(&id)
    }

    #[test]
    fn fenced_leader_replaced_by_first_live_isr_member_in_replica_order() {
        let current = partition(&[1, 2, 3], &[3, 2, 1], 1);
        let change = next_state(&current, None, &live(&[2, 3]), false).unwrap();
        assert_eq!(change.next.leader, 2, "replica order, not ISR order");
        assert_eq!(change.next.isr, vec![3, 2]);
        assert_eq!(change.next.leader_epoch, 6);
        assert_eq!(change.next.partition_epoch, 10);
        assert!(!change.unclean);
    }

    #[test]
    fn fenced_follower_leaves_the_isr_without_a_leader_change() {
        let current = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let change = next_state(&current, None, &live(&[1, 2]), false).unwrap();
        assert_eq!(change.next.leader, 1);
        assert_eq!(change.next.isr, vec![1, 2]);
        assert_eq!(
            change.next.leader_epoch, 5,
            "same leader, same leader epoch"
        );
        assert_eq!(change.next.partition_epoch, 10);
    }

    #[test]
    fn last_isr_member_kept_and_partition_leaderless() {
        let current = partition(&[1, 2], &[1], 1);
        let change = next_state(&current, None, &live(&[2]), false).unwrap();
        assert_eq!(change.next.leader, NO_LEADER);
        assert_eq!(change.next.isr, vec![1], "the last member stays electable");
        assert_eq!(change.next.leader_epoch, 6);
        // Stable: nothing more happens while broker 1 is away…
        assert_eq!(next_state(&change.next, None, &live(&[2]), false), None);
        // …and it leads again when it returns.
        let back = next_state(&change.next, None, &live(&[1, 2]), false).unwrap();
        assert_eq!(back.next.leader, 1);
        assert_eq!(back.next.isr, vec![1]);
        assert_eq!(back.next.leader_epoch, 7);
    }

    #[test]
    fn leader_and_isr_fenced_together_keeps_the_leader_in_the_isr() {
        let current = partition(&[1, 2, 3], &[1, 2], 1);
        let change = next_state(&current, None, &live(&[3]), false).unwrap();
        assert_eq!(change.next.leader, NO_LEADER);
        assert_eq!(change.next.isr, vec![1]);
    }

    #[test]
    fn unclean_election_only_when_allowed() {
        let current = partition(&[1, 2], &[1], NO_LEADER);
        assert_eq!(next_state(&current, None, &live(&[2]), false), None);
        let change = next_state(&current, None, &live(&[2]), true).unwrap();
        assert!(change.unclean);
        assert_eq!(change.next.leader, 2);
        assert_eq!(change.next.isr, vec![2]);
        assert_eq!(change.next.leader_epoch, 6);
    }

    #[test]
    fn isr_change_keeps_leader_and_bumps_only_the_partition_epoch() {
        let current = partition(&[1, 2, 3], &[1], 1);
        let change = next_state(&current, Some(&[1, 3]), &live(&[1, 2, 3]), false).unwrap();
        assert_eq!(change.next.isr, vec![1, 3]);
        assert_eq!(change.next.leader, 1);
        assert_eq!(change.next.leader_epoch, 5);
        assert_eq!(change.next.partition_epoch, 10);
        assert_eq!(
            next_state(&current, Some(&[1]), &live(&[1, 2, 3]), false),
            None
        );
    }

    #[test]
    fn leader_of_a_legacy_image_on_a_fenced_broker_is_replaced() {
        // Before elections existed a fenced leader stayed in the image.
        let current = partition(&[1], &[1], 1);
        let change = next_state(&current, None, &live(&[]), false).unwrap();
        assert_eq!(change.next.leader, NO_LEADER);
        assert_eq!(change.next.isr, vec![1]);
    }

    #[test]
    fn new_partitions_lead_on_the_first_live_replica() {
        let image = new_partition(&[3, 1, 2], &live(&[1, 2])).unwrap();
        assert_eq!(image.leader, 1);
        assert_eq!(image.isr, vec![1, 2]);
        assert_eq!(new_partition(&[3], &live(&[1])), None);
    }

    #[test]
    #[should_panic(expected = "leader outside the ISR")]
    fn invariants_are_checked() {
        assert_invariants(&partition(&[1, 2], &[2], 1));
    }
}
