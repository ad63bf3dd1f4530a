//! Broker registration and heartbeats, the controller's side (Kafka's
//! BrokerHeartbeatManager): a broker registers (a RegisterBroker record; its epoch is the
//! record's offset), starts fenced, is unfenced by its first heartbeat once it has caught up
//! with the metadata log up to its own registration, and is fenced again when its heartbeats
//! stop for `broker.session.timeout.ms` or it asks to shut down. Heartbeat times live only in
//! the active controller's memory: a new controller gives every broker a fresh session.
//!
//! Every change of a broker's liveness is committed together with the elections it calls for
//! ([`super::partition_change`]): a fenced (or re-registered) broker leaves every ISR and
//! leads nothing in the same metadata entry that fences it, an unfenced one leads the
//! partitions left without a leader it is in sync for. A broker asking to shut down is fenced
//! the same way (controlled shutdown) and told to stop once it leads nothing another live
//! replica could lead.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::image::{MetadataImage, TopicImage};
use super::partition_change::{self, NO_LEADER};
use super::records::{BrokerEndpoint, MetadataRecord};
use super::{ApiError, Controller, RECORDS_PER_COMMIT_MAX};

/// Registered brokers a controller tracks heartbeats for; ids are bounded by `node.id`'s
/// range, this bounds the map against a flood of registrations.
const BROKERS_MAX: usize = 10_000;

#[derive(Clone, Debug)]
pub struct Registration {
    pub broker_id: i32,
    pub incarnation_id: Uuid,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub want_fence: bool,
    pub want_shutdown: bool,
    /// The offset of the last metadata record the broker applied.
    pub metadata_offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub should_shutdown: bool,
}

/// Last heartbeat of each registered broker, as this controller saw it in its current term.
#[derive(Debug, Default)]
pub struct HeartbeatTimes {
    last_seen: HashMap<i32, Instant>,
    /// The quorum epoch `last_seen` belongs to.
    epoch: i32,
}

impl HeartbeatTimes {
    /// Forgets what an earlier term saw: a controller active again after another one was
    /// (Kafka makes a new heartbeat manager at each activation) must not fence brokers by the
    /// heartbeats they stopped sending it when they turned to that other controller. Without
    /// it, a controller that came back after a partition fenced every broker, itself included,
    /// 3 s later, and every single-replica partition went offline (chaos soak seed 5707).
    fn begin_term(&mut self, epoch: i32) {
        if epoch != self.epoch {
            self.last_seen.clear();
            self.epoch = epoch;
        }
    }

    fn touch(&mut self, broker_id: i32, now: Instant) {
        if self.last_seen.len() >= BROKERS_MAX && !self.last_seen.contains_key(&broker_id) {
            return;
        }
        self.last_seen.insert(broker_id, now);
    }

    /// Whether the broker heartbeated to this controller within `session`. A broker this
    /// controller never heard from has no session: its id may be registered again at once
    /// (a restart after kill -9 of a one-node cluster).
    fn has_session(&self, broker_id: i32, now: Instant, session: Duration) -> bool {
        self.last_seen
            .get(&broker_id)
            .is_some_and(|seen| now.duration_since(*seen) < session)
    }

    /// Whether the broker's session expired; one never heard from gets a session starting
    /// now, so a newly active controller does not fence brokers that heartbeated to its
    /// predecessor.
    fn expired(&mut self, broker_id: i32, now: Instant, session: Duration) -> bool {
        if self.last_seen.len() < BROKERS_MAX {
            self.last_seen.entry(broker_id).or_insert(now);
        }
        !self.has_session(broker_id, now, session)
    }
}

impl Controller {
    /// The heartbeat times of this controller's current term.
    fn heartbeat_times(&self) -> std::sync::MutexGuard<'_, HeartbeatTimes> {
        let epoch = self.quorum.status().epoch;
        let mut times = self.heartbeats.lock().expect("heartbeats lock");
        times.begin_term(epoch);
        times
    }

    fn session_timeout(&self) -> Duration {
        Duration::from_millis(
            self.broker_properties
                .get_i64(crate::config::BROKER_SESSION_TIMEOUT_MS)
                .max(1) as u64,
        )
    }

    /// BrokerRegistration: returns the broker epoch.
    pub fn register_broker(&self, registration: &Registration) -> Result<i64, ApiError> {
        let _guard = self.lock_commits();
        let now = Instant::now();
        let image = self.image();
        if let Some(existing) = image.brokers.get(&registration.broker_id) {
            // The same process retrying its registration gets the same epoch.
            if existing.incarnation_id == registration.incarnation_id {
                return Ok(existing.epoch);
            }
            let heartbeats = self.heartbeat_times();
            if !existing.fenced
                && heartbeats.has_session(registration.broker_id, now, self.session_timeout())
            {
                return Err(ApiError::new(
                    ResponseError::DuplicateBrokerRegistration,
                    format!(
                        "Another broker is registered with broker id {} (incarnation {}).",
                        registration.broker_id, existing.incarnation_id
                    ),
                ));
            }
        }
        // A new incarnation starts fenced: what the previous one led moves elsewhere now.
        let records = vec![MetadataRecord::RegisterBroker {
            broker_id: registration.broker_id,
            incarnation_id: registration.incarnation_id,
            endpoints: registration.endpoints.clone(),
            rack: registration.rack.clone(),
        }];
        let liveness = BTreeMap::from([(registration.broker_id, false)]);
        self.commit_with_elections(&image, records, &liveness)?;
        self.heartbeat_times().touch(registration.broker_id, now);
        let epoch = self
            .image()
            .brokers
            .get(&registration.broker_id)
            .expect("registered broker in the image")
            .epoch;
        tracing::info!(
            broker_id = registration.broker_id,
            epoch,
            "broker registered"
        );
        Ok(epoch)
    }

    /// BrokerHeartbeat: keeps the broker's session alive and fences or unfences it.
    pub fn broker_heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatReply, ApiError> {
        let _guard = self.lock_commits();
        let image = self.image();
        let Some(broker) = image.brokers.get(&heartbeat.broker_id) else {
            return Err(ApiError::new(
                ResponseError::BrokerIdNotRegistered,
                format!("Broker {} is not registered.", heartbeat.broker_id),
            ));
        };
        if broker.epoch != heartbeat.broker_epoch {
            return Err(ApiError::new(
                ResponseError::StaleBrokerEpoch,
                format!(
                    "Broker {} has epoch {}, not {}.",
                    heartbeat.broker_id, broker.epoch, heartbeat.broker_epoch
                ),
            ));
        }
        self.heartbeat_times()
            .touch(heartbeat.broker_id, Instant::now());
        let is_caught_up = heartbeat.metadata_offset >= broker.epoch;
        let fence = heartbeat.want_fence || heartbeat.want_shutdown;
        let fenced = match (broker.fenced, fence) {
            (true, false) if is_caught_up => false,
            (false, true) => true,
            (current, _) => current,
        };
        if fenced != broker.fenced {
            let records = vec![MetadataRecord::BrokerFencing {
                broker_id: broker.id,
                broker_epoch: broker.epoch,
                fenced,
            }];
            let liveness = BTreeMap::from([(broker.id, !fenced)]);
            self.commit_with_elections(&image, records, &liveness)?;
            tracing::info!(broker_id = broker.id, fenced, "broker fencing changed");
        }
        // Controlled shutdown: the broker may stop once no partition it leads could be led by
        // another live replica (the fencing above moved them; a failed commit returned).
        let should_shutdown =
            heartbeat.want_shutdown && !leads_with_successor(&self.image(), heartbeat.broker_id);
        Ok(HeartbeatReply {
            is_caught_up,
            is_fenced: fenced,
            should_shutdown,
        })
    }

    /// Fences every unfenced broker whose heartbeats stopped for the session timeout, with the
    /// elections that calls for. Run periodically by the active controller; returns the
    /// fenced ids. Also elects where nothing was fenced but an election is due (a change
    /// whose elections did not commit, an image from before elections existed, an unclean
    /// election just allowed by a config change): the image converges whatever happened.
    pub fn fence_stale_brokers(&self) -> Result<Vec<i32>, ApiError> {
        let _guard = self.lock_commits();
        let now = Instant::now();
        let session = self.session_timeout();
        let image = self.image();
        let records: Vec<MetadataRecord> = {
            let mut heartbeats = self.heartbeat_times();
            image
                .live_brokers()
                .filter(|broker| heartbeats.expired(broker.id, now, session))
                .map(|broker| MetadataRecord::BrokerFencing {
                    broker_id: broker.id,
                    broker_epoch: broker.epoch,
                    fenced: true,
                })
                .collect()
        };
        let fenced: Vec<i32> = records
            .iter()
            .filter_map(|record| match record {
                MetadataRecord::BrokerFencing { broker_id, .. } => Some(*broker_id),
                _ => None,
            })
            .collect();
        let liveness: BTreeMap<i32, bool> = fenced.iter().map(|id| (*id, false)).collect();
        self.commit_with_elections(&image, records, &liveness)?;
        if !fenced.is_empty() {
            tracing::warn!(?fenced, "fenced brokers whose heartbeats stopped");
        }
        Ok(fenced)
    }

    /// Whether `topic` may elect a leader outside its ISR: the topic's override, else the
    /// dynamic broker config, else the static property (`unclean.leader.election.enable`).
    fn unclean_leader_election_enabled(
        topic: &TopicImage,
        properties: &crate::config::Properties,
    ) -> bool {
        let key = crate::config::UNCLEAN_LEADER_ELECTION_ENABLE;
        match topic.configs.get(key.name()) {
            Some(value) => value.trim().eq_ignore_ascii_case("true"),
            None => properties.get_bool(key),
        }
    }

    /// Commits `records` (broker records, which change liveness as `liveness` says: broker id
    /// → live afterwards) together with the elections the new liveness calls for. The broker
    /// records and the first elections are one entry, so no image shows a fenced broker
    /// leading; beyond `RECORDS_PER_COMMIT_MAX` records the rest follow in further entries
    /// (until they commit, readers see those leaders through `MetadataImage::live_leader`).
    /// Callers hold the commit lock; `image` is the image they validated against.
    fn commit_with_elections(
        &self,
        image: &MetadataImage,
        mut records: Vec<MetadataRecord>,
        liveness: &BTreeMap<i32, bool>,
    ) -> Result<(), ApiError> {
        let is_live = |id: i32| {
            liveness
                .get(&id)
                .copied()
                .unwrap_or_else(|| image.is_live(id))
        };
        let properties = self.effective_properties(image);
        let unclean_allowed =
            |topic: &TopicImage| Self::unclean_leader_election_enabled(topic, &properties);
        let elected = partition_change::elections(image, &is_live, &unclean_allowed);
        for election in &elected {
            let next = &election.transition.next;
            if election.transition.unclean {
                tracing::warn!(
                    topic = election.topic,
                    partition = election.partition,
                    leader = next.leader,
                    "unclean leader election: no in-sync replica is live, records may be lost"
                );
            } else if next.leader == NO_LEADER {
                tracing::warn!(
                    topic = election.topic,
                    partition = election.partition,
                    isr = ?next.isr,
                    "partition offline: no in-sync replica is live"
                );
            }
            records.push(partition_change::record(
                election.topic_id,
                election.partition,
                next,
            ));
        }
        if !elected.is_empty() {
            tracing::info!(partitions = elected.len(), "leaders and ISRs changed");
        }
        for chunk in records.chunks(RECORDS_PER_COMMIT_MAX) {
            self.commit(chunk)?;
        }
        Ok(())
    }
}

/// Whether `broker_id` leads a partition that another live ISR member could lead instead:
/// then a controlled shutdown must wait for an election.
fn leads_with_successor(image: &MetadataImage, broker_id: i32) -> bool {
    image.topics.values().any(|topic| {
        topic.partitions.values().any(|partition| {
            partition.leader == broker_id
                && partition
                    .isr
                    .iter()
                    .any(|id| *id != broker_id && image.is_live(*id))
        })
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::Properties;
    use crate::controller::alter_partition::{AlterPartition, IsrChange};
    use crate::controller::image::PartitionImage;
    use crate::controller::quorum::QuorumConfig;
    use crate::controller::records::ConfigResource;
    use crate::controller::{ConfigChange, ConfigOp, NewTopic};

    pub(crate) fn open(dir: &std::path::Path) -> Controller {
        let quorum = QuorumConfig::single_node_for_tests(1);
        Controller::open(dir, 1, Properties::default(), quorum).unwrap()
    }

    /// Registers broker `id` and unfences it; returns its epoch.
    pub(crate) fn join(controller: &Controller, id: i32) -> i64 {
        let epoch = controller
            .register_broker(&Registration {
                broker_id: id,
                incarnation_id: Uuid::new_v4(),
                endpoints: Vec::new(),
                rack: None,
            })
            .unwrap();
        let reply = heartbeat(controller, id, epoch, false, false);
        assert!(!reply.is_fenced);
        epoch
    }

    pub(crate) fn heartbeat(
        controller: &Controller,
        id: i32,
        epoch: i64,
        want_fence: bool,
        want_shutdown: bool,
    ) -> HeartbeatReply {
        controller
            .broker_heartbeat(&Heartbeat {
                broker_id: id,
                broker_epoch: epoch,
                want_fence,
                want_shutdown,
                metadata_offset: i64::MAX,
            })
            .unwrap()
    }

    pub(crate) fn create(controller: &Controller, name: &str, replicas: &[i32]) {
        let topic = NewTopic {
            name: name.into(),
            partition_count: -1,
            replication_factor: -1,
            assignments: [(0, replicas.to_vec())].into_iter().collect(),
            configs: Default::default(),
        };
        controller.create_topic(&topic, false).unwrap();
    }

    pub(crate) fn state(controller: &Controller, name: &str) -> PartitionImage {
        controller.image().topics[name].partitions[&0].clone()
    }

    pub(crate) fn leader_isr_epochs(partition: &PartitionImage) -> (i32, Vec<i32>, i32, i32) {
        (
            partition.leader,
            partition.isr.clone(),
            partition.leader_epoch,
            partition.partition_epoch,
        )
    }

    #[test]
    fn fencing_elects_from_the_isr_and_unfencing_restores_a_leader() {
        let temp = tempfile::tempdir().unwrap();
        let controller = open(temp.path());
        let epochs: Vec<i64> = (1..=3).map(|id| join(&controller, id)).collect();
        create(&controller, "t", &[1, 2, 3]);
        assert_eq!(
            leader_isr_epochs(&state(&controller, "t")),
            (1, vec![1, 2, 3], 0, 0)
        );

        heartbeat(&controller, 1, epochs[0], true, false);
        assert_eq!(
            leader_isr_epochs(&state(&controller, "t")),
            (2, vec![2, 3], 1, 1)
        );
        heartbeat(&controller, 2, epochs[1], true, false);
        assert_eq!(
            leader_isr_epochs(&state(&controller, "t")),
            (3, vec![3], 2, 2)
        );
        // The last in-sync replica goes: no leader, and it stays in the ISR.
        heartbeat(&controller, 3, epochs[2], true, false);
        assert_eq!(
            leader_isr_epochs(&state(&controller, "t")),
            (-1, vec![3], 3, 3)
        );
        // An out-of-sync replica returning does not lead (unclean elections are off)…
        heartbeat(&controller, 1, epochs[0], false, false);
        assert_eq!(
            leader_isr_epochs(&state(&controller, "t")),
            (-1, vec![3], 3, 3)
        );
        // …the in-sync one does.
        heartbeat(&controller, 3, epochs[2], false, false);
        assert_eq!(
            leader_isr_epochs(&state(&controller, "t")),
            (3, vec![3], 4, 4)
        );
    }

    #[test]
    fn unclean_election_when_the_topic_allows_it() {
        let temp = tempfile::tempdir().unwrap();
        let controller = open(temp.path());
        let epochs: Vec<i64> = (1..=2).map(|id| join(&controller, id)).collect();
        create(&controller, "u", &[1, 2]);
        heartbeat(&controller, 1, epochs[0], true, false);
        heartbeat(&controller, 2, epochs[1], true, false);
        heartbeat(&controller, 1, epochs[0], false, false);
        assert_eq!(state(&controller, "u").leader, -1);
        let allow = ConfigOp {
            name: "unclean.leader.election.enable".into(),
            change: ConfigChange::Set("true".into()),
        };
        controller
            .alter_configs(ConfigResource::Topic, "u", &[allow], false, false)
            .unwrap();
        // The periodic check elects what became electable.
        assert_eq!(controller.fence_stale_brokers().unwrap(), Vec::<i32>::new());
        assert_eq!(
            leader_isr_epochs(&state(&controller, "u")),
            (1, vec![1], 3, 3)
        );
    }

    #[test]
    fn controlled_shutdown_moves_leadership_before_answering() {
        let temp = tempfile::tempdir().unwrap();
        let controller = open(temp.path());
        let epochs: Vec<i64> = (1..=2).map(|id| join(&controller, id)).collect();
        create(&controller, "shared", &[1, 2]);
        create(&controller, "alone", &[1]);
        let reply = heartbeat(&controller, 1, epochs[0], false, true);
        assert!(reply.should_shutdown && reply.is_fenced);
        assert_eq!(
            leader_isr_epochs(&state(&controller, "shared")),
            (2, vec![2], 1, 1)
        );
        assert_eq!(
            leader_isr_epochs(&state(&controller, "alone")),
            (-1, vec![1], 1, 1)
        );
        assert!(!leads_with_successor(&controller.image(), 1));
    }

    #[test]
    fn a_returning_broker_rejoins_through_the_leader_not_the_controller() {
        let temp = tempfile::tempdir().unwrap();
        let controller = open(temp.path());
        let epochs: Vec<i64> = (1..=2).map(|id| join(&controller, id)).collect();
        create(&controller, "r", &[1, 2]);
        heartbeat(&controller, 1, epochs[0], true, false);
        heartbeat(&controller, 1, epochs[0], false, false);
        // The live leader stays; broker 1 is behind until the leader's AlterPartition says
        // otherwise.
        assert_eq!(
            leader_isr_epochs(&state(&controller, "r")),
            (2, vec![2], 1, 1)
        );
    }

    #[test]
    fn alter_partition_commits_isr_changes_by_epoch() {
        let temp = tempfile::tempdir().unwrap();
        let controller = open(temp.path());
        let epochs: Vec<i64> = (1..=3).map(|id| join(&controller, id)).collect();
        create(&controller, "a", &[1, 2, 3]);
        let request = |isr: &[i32], partition_epoch: i32| AlterPartition {
            broker_id: 1,
            broker_epoch: epochs[0],
            changes: vec![IsrChange {
                topic: "a".into(),
                partition: 0,
                leader_epoch: 0,
                partition_epoch,
                new_isr: isr.to_vec(),
                new_isr_broker_epochs: Vec::new(),
            }],
        };
        let shrunk = controller.alter_partition(&request(&[1, 3], 0)).unwrap();
        assert_eq!(
            leader_isr_epochs(shrunk[0].as_ref().unwrap()),
            (1, vec![1, 3], 0, 1)
        );
        assert_eq!(state(&controller, "a"), *shrunk[0].as_ref().unwrap());
        // The same ISR again: the current state, no commit.
        let offset = controller.image().applied_offset;
        let same = controller.alter_partition(&request(&[1, 3], 1)).unwrap();
        assert_eq!(same[0].as_ref().unwrap().partition_epoch, 1);
        assert_eq!(controller.image().applied_offset, offset);
        // A request built on the state before the shrink is stale.
        let stale = controller.alter_partition(&request(&[1, 2, 3], 0)).unwrap();
        assert_eq!(
            stale[0].as_ref().unwrap_err().error,
            ResponseError::InvalidUpdateVersion
        );
        // A fenced broker may not join.
        heartbeat(&controller, 2, epochs[1], true, false);
        let fenced = controller.alter_partition(&request(&[1, 2, 3], 1)).unwrap();
        assert_eq!(
            fenced[0].as_ref().unwrap_err().error,
            ResponseError::IneligibleReplica
        );
        let mut wrong_epoch = request(&[1, 3], 1);
        wrong_epoch.broker_epoch = epochs[0] + 1000;
        assert_eq!(
            controller.alter_partition(&wrong_epoch).unwrap_err().error,
            ResponseError::StaleBrokerEpoch
        );
    }

    #[test]
    fn a_new_term_gives_every_broker_a_new_session() {
        let session = Duration::from_secs(6);
        let start = Instant::now();
        let mut times = HeartbeatTimes::default();
        times.begin_term(2);
        times.touch(1, start);
        let later = start + Duration::from_secs(10);
        times.begin_term(2);
        assert!(times.expired(1, later, session), "same term: expired");
        // Another controller led in between; this one is active again in term 4.
        let mut times = HeartbeatTimes::default();
        times.begin_term(2);
        times.touch(1, start);
        times.begin_term(4);
        assert!(
            !times.expired(1, later, session),
            "the heartbeats of term 2 do not count in term 4"
        );
        assert!(times.expired(1, later + session, session));
    }
}
