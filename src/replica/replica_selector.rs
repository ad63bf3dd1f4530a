//! Which replica a consumer should read from (KIP-392, Kafka's `ReplicaSelector`), chosen by
//! the leader of the partition when a consumer fetches (Fetch v11+ carries its `client.rack`).
//!
//! `replica.selector.class` picks the rule: unset, consumers read from the leader (Kafka's
//! default); Kafka's `RackAwareReplicaSelector` sends a consumer whose rack differs from the
//! leader's to the most caught-up in-sync replica of its own rack. The leader then answers
//! that partition with `preferred_read_replica` and no records, and the client fetches from
//! that broker. Followers serve consumer fetches (v11+) whatever the selector, up to their own
//! high watermark (Kafka's `FetchParams.fetchOnlyLeader` is false once client metadata exists).

use crate::controller::image::MetadataImage;

use super::LedPartition;

/// The one selector class Kafka ships (`clients/.../common/replica/`); the interface itself
/// (`ReplicaSelector`) is not a class one can configure.
pub const RACK_AWARE_REPLICA_SELECTOR_CLASS: &str =
    "org.apache.kafka.common.replica.RackAwareReplicaSelector";

/// The rule of `replica.selector.class`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReplicaSelector {
    /// Unset: consumers are never sent elsewhere (they may still fetch from a follower that
    /// some other leader's selector, or an older assignment, pointed them to).
    #[default]
    LeaderOnly,
    /// Kafka's `RackAwareReplicaSelector`.
    RackAware,
}

/// One replica as the selector sees it (Kafka's `ReplicaView`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaView {
    pub broker_id: i32,
    pub log_end_offset: i64,
    /// How long ago the replica last had the leader's whole log (0 for the leader).
    pub time_since_last_caught_up_ms: i64,
}

impl ReplicaSelector {
    /// The selector `replica.selector.class` names. Any class but the one Kafka ships is
    /// refused, so a broker never starts with a rule the operator did not get.
    pub fn from_class(class: &str) -> Result<ReplicaSelector, String> {
        match class.trim() {
            "" => Ok(ReplicaSelector::LeaderOnly),
            RACK_AWARE_REPLICA_SELECTOR_CLASS => Ok(ReplicaSelector::RackAware),
            other => Err(format!(
                "replica.selector.class={other} is not supported (unset for leader-only reads, \
                 or {RACK_AWARE_REPLICA_SELECTOR_CLASS})"
            )),
        }
    }

    /// The broker a consumer in `client_rack` fetching `fetch_offset` should read `led` from,
    /// when it is not this leader (Kafka's `ReplicaManager.findPreferredReadReplica`): among
    /// the in-sync followers whose log holds `fetch_offset` and whose broker is registered,
    /// unfenced and has an endpoint, the rack-aware rule prefers the leader when it is in the
    /// client's rack, else the same-rack replica with the largest log end, then the most
    /// recently caught up, then the largest id (Kafka's `ReplicaView.comparator`).
    pub fn preferred_read_replica(
        &self,
        image: &MetadataImage,
        led: &LedPartition,
        client_rack: &str,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Option<i32> {
        if *self == ReplicaSelector::LeaderOnly || client_rack.is_empty() {
            return None;
        }
        let rack_of = |broker_id: i32| {
            image
                .brokers
                .get(&broker_id)
                .filter(|broker| !broker.fenced && broker.client_endpoint().is_some())
                .and_then(|broker| broker.rack.as_deref())
        };
        let leader_id = led.replication.node_id();
        if rack_of(leader_id) == Some(client_rack) {
            return None;
        }
        let candidates = led.replication.in_sync_followers(now_ms);
        select_in_rack(
            candidates
                .into_iter()
                .filter(|follower| {
                    follower.log_start_offset <= fetch_offset
                        && follower.view.log_end_offset >= fetch_offset
                        && rack_of(follower.view.broker_id) == Some(client_rack)
                })
                .map(|follower| follower.view),
        )
        .map(|view| view.broker_id)
    }
}

/// The best replica of the client's rack (Kafka's `ReplicaView.comparator`, maximum):
/// the largest log end, then the shortest time since caught up, then the largest id.
fn select_in_rack(replicas: impl Iterator<Item = ReplicaView>) -> Option<ReplicaView> {
    replicas.max_by(|a, b| {
        a.log_end_offset
            .cmp(&b.log_end_offset)
            .then(
                b.time_since_last_caught_up_ms
                    .cmp(&a.time_since_last_caught_up_ms),
            )
            .then(a.broker_id.cmp(&b.broker_id))
    })
}

/// An in-sync follower as the leader last saw it.
#[derive(Clone, Copy, Debug)]
pub struct FollowerView {
    pub view: ReplicaView,
    /// The follower's log start offset from its last fetch (-1: not fetched yet).
    pub log_start_offset: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_class_kafka_ships_is_accepted() {
        assert_eq!(
            ReplicaSelector::from_class(""),
            Ok(ReplicaSelector::LeaderOnly)
        );
        assert_eq!(
            ReplicaSelector::from_class(RACK_AWARE_REPLICA_SELECTOR_CLASS),
            Ok(ReplicaSelector::RackAware)
        );
        assert!(
            ReplicaSelector::from_class("org.apache.kafka.common.replica.ReplicaSelector").is_err()
        );
        assert!(ReplicaSelector::from_class("RackAwareReplicaSelector").is_err());
    }

    #[test]
    fn the_most_caught_up_then_most_recent_then_largest_id_wins() {
        let view = |broker_id, log_end_offset, time_since_last_caught_up_ms| ReplicaView {
            broker_id,
            log_end_offset,
            time_since_last_caught_up_ms,
        };
        let best = |views: Vec<ReplicaView>| select_in_rack(views.into_iter()).map(|v| v.broker_id);
        assert_eq!(best(vec![view(2, 10, 0), view(3, 12, 500)]), Some(3));
        assert_eq!(best(vec![view(2, 10, 100), view(3, 10, 500)]), Some(2));
        assert_eq!(best(vec![view(2, 10, 0), view(3, 10, 0)]), Some(3));
        assert_eq!(best(vec![]), None);
    }
}
