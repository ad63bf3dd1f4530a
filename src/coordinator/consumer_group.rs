//! A KIP-848 consumer group: the broker assigns partitions (the `uniform` and `range`
//! assignors in [`super::assignor`]) and members converge on that target assignment through
//! ConsumerGroupHeartbeat, one heartbeat at a time.
//!
//! Epochs: the group epoch moves whenever membership, subscriptions or the subscribed topics'
//! partitions change; the target assignment is recomputed for it (the assignment epoch).
//! A member reaches the assignment epoch once it holds nothing the target takes away:
//! partitions leaving a member are first revoked (the member is told to give them up and
//! confirms in a later heartbeat), and a partition is given to its new owner only when no
//! other member holds it or is still revoking it. So no partition ever has two owners.
//!
//! Like [`super::group`], no I/O and no clocks. The coordinator writes the group to
//! `__consumer_offsets` as Kafka's KIP-848 records ([`ConsumerGroup::to_records`], only what
//! changed) and a new coordinator rebuilds it from them ([`ConsumerGroup::from_records`]):
//! members keep their ids, epochs and partitions across a coordinator restart or move.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use indexmap::IndexMap;
use kafka_protocol::ResponseError;

use regex::{Regex, RegexBuilder};

use uuid::Uuid;

use super::assignor;
use super::consumer_records::{
    ConsumerKey, ConsumerValue, CurrentAssignment, MemberMetadata, TopicPartitions,
};

/// Compiled size bound of a subscription regex: a hostile pattern cannot take much memory.
const REGEX_SIZE_BYTES_MAX: usize = 1 << 20;

/// Kafka matches a subscription regex against the whole topic name (RE2J `matches()`).
pub fn compile_regex(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_BYTES_MAX)
        .build()
        .map_err(|e| e.to_string())
}

/// The pattern a member subscribed with (what [`compile_regex`] wrapped).
pub fn regex_pattern(regex: &Regex) -> &str {
    let text = regex.as_str();
    &text["^(?:".len()..text.len() - ")$".len()]
}

fn resolve(names: &[String], regex: Option<&Regex>, all_topics: &[String]) -> Vec<String> {
    let mut topics: Vec<String> = names.to_vec();
    if let Some(regex) = regex {
        topics.extend(all_topics.iter().filter(|t| regex.is_match(t)).cloned());
    }
    topics.sort();
    topics.dedup();
    topics
}

/// topic name → partitions.
pub type Assignment = BTreeMap<String, BTreeSet<i32>>;

/// Epoch a leaving member sends: -1 leaves for good, -2 is a static member's temporary leave.
pub const LEAVE_EPOCH: i32 = -1;
pub const STATIC_LEAVE_EPOCH: i32 = -2;

pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Topics the member consumes: its names plus what its regex matches now (sorted).
    pub subscribed_topics: Vec<String>,
    pub subscribed_names: Vec<String>,
    pub subscribed_regex: Option<Regex>,
    pub server_assignor: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub member_epoch: i32,
    previous_member_epoch: i32,
    /// What the member owns as far as the coordinator knows.
    pub assigned: Assignment,
    /// Partitions the member was told to give up and has not yet confirmed.
    pub pending_revocation: Assignment,
    session_deadline_ms: i64,
    revocation_deadline_ms: Option<i64>,
    /// The next response carries the member's assignment.
    assignment_changed: bool,
    /// A static member that left with epoch -2: it keeps its partitions for its session.
    left_temporarily: bool,
}

/// A ConsumerGroupHeartbeat request, decoded.
#[derive(Clone, Debug, Default)]
pub struct HeartbeatRequest {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    /// None: unchanged since the last heartbeat.
    pub subscribed_topics: Option<Vec<String>>,
    /// None: unchanged; Some(""): no regex any more.
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// None: unchanged.
    pub owned: Option<Assignment>,
}

#[derive(Debug)]
pub struct HeartbeatResult {
    pub member_id: String,
    pub member_epoch: i32,
    /// Present when the member's assignment changed (or it just joined).
    pub assignment: Option<Assignment>,
}

/// Coordinator settings that apply to consumer groups.
#[derive(Clone, Debug)]
pub struct ConsumerLimits {
    pub session_timeout_ms: i32,
    pub members_max: usize,
    /// Assignors served, the default first.
    pub assignors: Vec<String>,
}

#[derive(Default)]
pub struct ConsumerGroup {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    /// Assignor that computed the current target.
    pub assignor_name: String,
    pub target: HashMap<String, Assignment>,
    pub members: IndexMap<String, ConsumerMember>,
    /// Partition counts of the subscribed topics when the target was computed: a topic
    /// created, deleted or grown since moves the group epoch.
    topic_partitions: BTreeMap<String, i32>,
    pub state_timestamp_ms: i64,
}

type Failure = (ResponseError, String);

fn failure(error: ResponseError, message: impl Into<String>) -> Failure {
    (error, message.into())
}

fn is_subset(small: &Assignment, big: &Assignment) -> bool {
    small
        .iter()
        .all(|(topic, partitions)| big.get(topic).is_some_and(|b| partitions.is_subset(b)))
}

fn difference(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(topic, partitions)| {
            let rest: BTreeSet<i32> = match b.get(topic) {
                Some(other) => partitions.difference(other).copied().collect(),
                None => partitions.clone(),
            };
            (!rest.is_empty()).then(|| (topic.clone(), rest))
        })
        .collect()
}

fn intersection(a: &Assignment, b: &Assignment) -> Assignment {
    a.iter()
        .filter_map(|(topic, partitions)| {
            let both: BTreeSet<i32> = partitions.intersection(b.get(topic)?).copied().collect();
            (!both.is_empty()).then(|| (topic.clone(), both))
        })
        .collect()
}

fn union_into(into: &mut Assignment, more: &Assignment) {
    for (topic, partitions) in more {
        into.entry(topic.clone())
            .or_default()
            .extend(partitions.iter().copied());
    }
}

impl ConsumerGroup {
    pub fn new(now_ms: i64) -> ConsumerGroup {
        ConsumerGroup {
            state_timestamp_ms: now_ms,
            ..ConsumerGroup::default()
        }
    }

    /// KIP-848 state names, as ConsumerGroupDescribe and ListGroups report them.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || !m.pending_revocation.is_empty())
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    fn bump_epoch(&mut self, now_ms: i64) {
        self.group_epoch = self.group_epoch.wrapping_add(1).max(1);
        self.state_timestamp_ms = now_ms;
    }

    /// Every subscribed topic's partition count now (topics that do not exist are absent).
    fn subscribed_partitions(
        &self,
        partitions_of: &dyn Fn(&str) -> Option<i32>,
    ) -> BTreeMap<String, i32> {
        self.members
            .values()
            .flat_map(|m| m.subscribed_topics.iter())
            .filter_map(|topic| Some((topic.clone(), partitions_of(topic)?)))
            .collect()
    }

    pub fn heartbeat(
        &mut self,
        request: HeartbeatRequest,
        partitions_of: &dyn Fn(&str) -> Option<i32>,
        all_topics: &[String],
        limits: &ConsumerLimits,
        now_ms: i64,
    ) -> Result<HeartbeatResult, Failure> {
        let regex = match request.subscribed_regex.as_deref() {
            None | Some("") => None,
            Some(pattern) => Some(compile_regex(pattern).map_err(|e| {
                failure(
                    ResponseError::InvalidRegularExpression,
                    format!("{pattern}: {e}"),
                )
            })?),
        };
        if let Some(assignor) = &request.server_assignor {
            if !limits.assignors.contains(assignor) {
                return Err(failure(
                    ResponseError::UnsupportedAssignor,
                    format!(
                        "Assignor {assignor} is not supported; this broker serves {:?}.",
                        limits.assignors
                    ),
                ));
            }
        }
        match request.member_epoch {
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => return self.leave(&request, now_ms),
            0 => self.join(&request, limits, now_ms)?,
            epoch if epoch < 0 => {
                return Err(failure(
                    ResponseError::InvalidRequest,
                    format!("member epoch {epoch}"),
                ))
            }
            epoch => {
                let member = self.members.get(&request.member_id).ok_or_else(|| {
                    failure(
                        ResponseError::UnknownMemberId,
                        format!("Member {} is not a member of the group.", request.member_id),
                    )
                })?;
                let owned_ok = request
                    .owned
                    .as_ref()
                    .is_none_or(|owned| is_subset(owned, &member.assigned));
                // A member whose last response was lost may still send the previous epoch.
                if epoch != member.member_epoch
                    && !(epoch == member.previous_member_epoch && owned_ok)
                {
                    return Err(failure(
                        ResponseError::FencedMemberEpoch,
                        format!(
                            "The member epoch {epoch} does not match the expected epoch {}.",
                            member.member_epoch
                        ),
                    ));
                }
            }
        }
        let member_id = request.member_id.clone();
        let member = self
            .members
            .get_mut(&member_id)
            .expect("joined or validated");
        member.session_deadline_ms = now_ms + i64::from(limits.session_timeout_ms);
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        if request.rebalance_timeout_ms > 0 {
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        if request.rack_id.is_some() {
            member.rack_id = request.rack_id.clone();
        }
        if let Some(names) = &request.subscribed_topics {
            member.subscribed_names = names.clone();
        }
        if let Some(pattern) = &request.subscribed_regex {
            member.subscribed_regex = if pattern.is_empty() { None } else { regex };
        }
        // Regexes are re-resolved on every heartbeat: topics come and go.
        let mut subscription_changed = false;
        for member in self.members.values_mut() {
            let topics = resolve(
                &member.subscribed_names,
                member.subscribed_regex.as_ref(),
                all_topics,
            );
            if topics != member.subscribed_topics {
                member.subscribed_topics = topics;
                subscription_changed = true;
            }
        }
        let member = self.members.get_mut(&member_id).expect("member");
        if request.server_assignor.is_some() {
            member.server_assignor = request.server_assignor.clone();
        }
        if subscription_changed
            || self.subscribed_partitions(partitions_of) != self.topic_partitions
        {
            self.bump_epoch(now_ms);
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(partitions_of, limits);
        }
        self.reconcile(&member_id, request.owned.as_ref(), now_ms);
        self.check_invariants();
        let member = self.members.get_mut(&member_id).expect("member");
        let send_assignment = member.assignment_changed || request.member_epoch == 0;
        member.assignment_changed = false;
        Ok(HeartbeatResult {
            member_id,
            member_epoch: member.member_epoch,
            assignment: send_assignment.then(|| member.assigned.clone()),
        })
    }

    fn join(
        &mut self,
        request: &HeartbeatRequest,
        limits: &ConsumerLimits,
        now_ms: i64,
    ) -> Result<(), Failure> {
        if request.subscribed_topics.is_none() && request.subscribed_regex.is_none() {
            return Err(failure(
                ResponseError::InvalidRequest,
                "SubscribedTopicNames or SubscribedTopicRegex must be set when joining.",
            ));
        }
        // A static member coming back takes over its previous identity and partitions.
        if let Some(instance) = &request.instance_id {
            let previous = self
                .members
                .values()
                .find(|m| {
                    m.instance_id.as_deref() == Some(instance) && m.member_id != request.member_id
                })
                .map(|m| m.member_id.clone());
            if let Some(previous) = previous {
                if !self.members[&previous].left_temporarily {
                    return Err(failure(
                        ResponseError::UnreleasedInstanceId,
                        format!("Static member {instance} is still in use by member {previous}."),
                    ));
                }
                let mut member = self.members.shift_remove(&previous).expect("found above");
                if let Some(target) = self.target.remove(&previous) {
                    self.target.insert(request.member_id.clone(), target);
                }
                member.member_id = request.member_id.clone();
                member.left_temporarily = false;
                member.assignment_changed = true;
                self.members.insert(request.member_id.clone(), member);
                return Ok(());
            }
        }
        if let Some(existing) = self.members.get_mut(&request.member_id) {
            // A known member rejoining (it was fenced, or restarted with the same id): it
            // starts over, giving up what it held.
            existing.member_epoch = 0;
            existing.previous_member_epoch = 0;
            existing.assigned.clear();
            existing.pending_revocation.clear();
            existing.revocation_deadline_ms = None;
            existing.assignment_changed = true;
            self.bump_epoch(now_ms);
            return Ok(());
        }
        if self.members.len() >= limits.members_max {
            return Err(failure(
                ResponseError::GroupMaxSizeReached,
                format!(
                    "The group has reached its maximum size of {}.",
                    limits.members_max
                ),
            ));
        }
        self.members.insert(
            request.member_id.clone(),
            ConsumerMember {
                member_id: request.member_id.clone(),
                instance_id: request.instance_id.clone(),
                rack_id: request.rack_id.clone(),
                client_id: request.client_id.clone(),
                client_host: request.client_host.clone(),
                subscribed_topics: Vec::new(),
                subscribed_names: Vec::new(),
                subscribed_regex: None,
                server_assignor: None,
                rebalance_timeout_ms: request.rebalance_timeout_ms.max(1),
                member_epoch: 0,
                previous_member_epoch: 0,
                assigned: Assignment::new(),
                pending_revocation: Assignment::new(),
                session_deadline_ms: now_ms + i64::from(limits.session_timeout_ms),
                revocation_deadline_ms: None,
                assignment_changed: true,
                left_temporarily: false,
            },
        );
        self.bump_epoch(now_ms);
        Ok(())
    }

    fn leave(
        &mut self,
        request: &HeartbeatRequest,
        now_ms: i64,
    ) -> Result<HeartbeatResult, Failure> {
        let known = self.members.get_mut(&request.member_id).ok_or_else(|| {
            failure(
                ResponseError::UnknownMemberId,
                format!("Member {} is not a member of the group.", request.member_id),
            )
        })?;
        if request.member_epoch == STATIC_LEAVE_EPOCH && known.instance_id.is_some() {
            known.left_temporarily = true;
        } else {
            self.remove_member(&request.member_id, now_ms);
        }
        Ok(HeartbeatResult {
            member_id: request.member_id.clone(),
            member_epoch: request.member_epoch,
            assignment: None,
        })
    }

    pub fn remove_member(&mut self, member_id: &str, now_ms: i64) {
        if self.members.shift_remove(member_id).is_some() {
            self.target.remove(member_id);
            self.bump_epoch(now_ms);
        }
    }

    fn compute_target(
        &mut self,
        partitions_of: &dyn Fn(&str) -> Option<i32>,
        limits: &ConsumerLimits,
    ) {
        let topics = self.subscribed_partitions(partitions_of);
        // The assignor most members ask for; the broker's default otherwise.
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(name) = &member.server_assignor {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let name = votes
            .iter()
            .max_by_key(|(_, count)| **count)
            .map(|(name, _)| name.to_string())
            .unwrap_or_else(|| limits.assignors[0].clone());
        let subscriptions: Vec<(String, Vec<String>)> = self
            .members
            .values()
            .map(|m| (m.member_id.clone(), m.subscribed_topics.clone()))
            .collect();
        self.target = if name == "range" {
            assignor::range(&subscriptions, &topics)
        } else {
            assignor::uniform(&subscriptions, &topics, &self.target)
        };
        self.assignor_name = name;
        self.topic_partitions = topics;
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves one member towards its target: revoke first, then take the new epoch, then pick
    /// up partitions that no other member still holds.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>, now_ms: i64) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let held_by_others: Assignment = {
            let mut held = Assignment::new();
            for other in self.members.values().filter(|m| m.member_id != member_id) {
                union_into(&mut held, &other.assigned);
                union_into(&mut held, &other.pending_revocation);
            }
            held
        };
        let assignment_epoch = self.assignment_epoch;
        let member = self.members.get_mut(member_id).expect("member");
        if !member.pending_revocation.is_empty() {
            let confirmed = owned
                .is_some_and(|owned| intersection(owned, &member.pending_revocation).is_empty());
            if !confirmed {
                return;
            }
            member.pending_revocation.clear();
            member.revocation_deadline_ms = None;
        }
        let revoke = difference(&member.assigned, &target);
        if !revoke.is_empty() {
            member.assigned = intersection(&member.assigned, &target);
            member.pending_revocation = revoke;
            member.revocation_deadline_ms = Some(now_ms + i64::from(member.rebalance_timeout_ms));
            member.assignment_changed = true;
            return;
        }
        if member.member_epoch != assignment_epoch {
            member.previous_member_epoch = member.member_epoch;
            member.member_epoch = assignment_epoch;
            member.assignment_changed = true;
        }
        let free = difference(&difference(&target, &member.assigned), &held_by_others);
        if !free.is_empty() {
            union_into(&mut member.assigned, &free);
            member.assignment_changed = true;
        }
    }

    /// No partition is held (assigned or being revoked) by two members.
    fn check_invariants(&self) {
        if let Some((topic, partition)) = self.partition_held_twice() {
            panic!("{topic}-{partition} held by two members");
        }
    }

    fn partition_held_twice(&self) -> Option<(String, i32)> {
        let mut seen: BTreeSet<(&str, i32)> = BTreeSet::new();
        for member in self.members.values() {
            for assignment in [&member.assigned, &member.pending_revocation] {
                for (topic, partitions) in assignment {
                    for partition in partitions {
                        if !seen.insert((topic.as_str(), *partition)) {
                            return Some((topic.clone(), *partition));
                        }
                    }
                }
            }
        }
        None
    }

    /// The group as Kafka's KIP-848 records, keyed for diffing against what was written last.
    /// Topics without an id (deleted since) are left out of the assignments.
    pub fn to_records(
        &self,
        topic_id: &dyn Fn(&str) -> Option<Uuid>,
    ) -> BTreeMap<ConsumerKey, ConsumerValue> {
        let by_id = |assignment: &Assignment| -> TopicPartitions {
            let mut topics: TopicPartitions = assignment
                .iter()
                .filter_map(|(topic, partitions)| {
                    Some((topic_id(topic)?, partitions.iter().copied().collect()))
                })
                .collect();
            topics.sort();
            topics
        };
        let mut records = BTreeMap::new();
        records.insert(
            ConsumerKey::Metadata,
            ConsumerValue::Metadata {
                epoch: self.group_epoch,
            },
        );
        let topics = self
            .topic_partitions
            .iter()
            .filter_map(|(name, count)| Some((topic_id(name)?, name.clone(), *count)))
            .collect();
        records.insert(
            ConsumerKey::PartitionMetadata,
            ConsumerValue::PartitionMetadata(topics),
        );
        records.insert(
            ConsumerKey::TargetAssignmentMetadata,
            ConsumerValue::TargetAssignmentMetadata {
                assignment_epoch: self.assignment_epoch,
            },
        );
        for (member_id, target) in &self.target {
            records.insert(
                ConsumerKey::TargetAssignmentMember(member_id.clone()),
                ConsumerValue::TargetAssignmentMember(by_id(target)),
            );
        }
        for member in self.members.values() {
            records.insert(
                ConsumerKey::MemberMetadata(member.member_id.clone()),
                ConsumerValue::MemberMetadata(MemberMetadata {
                    instance_id: member.instance_id.clone(),
                    rack_id: member.rack_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    subscribed_topic_names: member.subscribed_names.clone(),
                    subscribed_topic_regex: member
                        .subscribed_regex
                        .as_ref()
                        .map(|r| regex_pattern(r).to_string()),
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    server_assignor: member.server_assignor.clone(),
                }),
            );
            let target = self.target.get(&member.member_id);
            // Kafka's MemberState.
            let state = if !member.pending_revocation.is_empty() {
                1
            } else if target.is_some_and(|t| *t != member.assigned) {
                2
            } else {
                0
            };
            // A static member gone for its session is written with Kafka's epoch -2.
            let (member_epoch, previous_member_epoch) = if member.left_temporarily {
                (STATIC_LEAVE_EPOCH, member.member_epoch)
            } else {
                (member.member_epoch, member.previous_member_epoch)
            };
            records.insert(
                ConsumerKey::CurrentMemberAssignment(member.member_id.clone()),
                ConsumerValue::CurrentMemberAssignment(CurrentAssignment {
                    member_epoch,
                    previous_member_epoch,
                    state,
                    assigned: by_id(&member.assigned),
                    pending_revocation: by_id(&member.pending_revocation),
                }),
            );
        }
        records
    }

    /// Rebuilds a group from its records (None without a group metadata record). Members get
    /// a fresh session to come back in; partitions of topics gone since are dropped.
    pub fn from_records(
        records: &BTreeMap<ConsumerKey, ConsumerValue>,
        topic_name: &dyn Fn(Uuid) -> Option<String>,
        all_topics: &[String],
        limits: &ConsumerLimits,
        now_ms: i64,
    ) -> Option<ConsumerGroup> {
        let Some(ConsumerValue::Metadata { epoch }) = records.get(&ConsumerKey::Metadata) else {
            return None;
        };
        let by_name = |topics: &TopicPartitions| -> Assignment {
            topics
                .iter()
                .filter_map(|(id, partitions)| {
                    Some((topic_name(*id)?, partitions.iter().copied().collect()))
                })
                .collect()
        };
        let mut group = ConsumerGroup::new(now_ms);
        group.group_epoch = *epoch;
        for (key, value) in records {
            match (key, value) {
                (
                    ConsumerKey::TargetAssignmentMetadata,
                    ConsumerValue::TargetAssignmentMetadata { assignment_epoch },
                ) => group.assignment_epoch = *assignment_epoch,
                (ConsumerKey::PartitionMetadata, ConsumerValue::PartitionMetadata(topics)) => {
                    group.topic_partitions = topics
                        .iter()
                        .map(|(_, name, count)| (name.clone(), *count))
                        .collect();
                }
                (
                    ConsumerKey::TargetAssignmentMember(member_id),
                    ConsumerValue::TargetAssignmentMember(topics),
                ) => {
                    group.target.insert(member_id.clone(), by_name(topics));
                }
                (ConsumerKey::MemberMetadata(member_id), ConsumerValue::MemberMetadata(meta)) => {
                    let regex = meta
                        .subscribed_topic_regex
                        .as_deref()
                        .and_then(|p| compile_regex(p).ok());
                    let current = match records
                        .get(&ConsumerKey::CurrentMemberAssignment(member_id.clone()))
                    {
                        Some(ConsumerValue::CurrentMemberAssignment(current)) => current.clone(),
                        _ => CurrentAssignment {
                            member_epoch: 0,
                            previous_member_epoch: 0,
                            state: 0,
                            assigned: Vec::new(),
                            pending_revocation: Vec::new(),
                        },
                    };
                    let left_temporarily = current.member_epoch == STATIC_LEAVE_EPOCH;
                    let (member_epoch, previous_member_epoch) = if left_temporarily {
                        (current.previous_member_epoch, current.previous_member_epoch)
                    } else {
                        (current.member_epoch, current.previous_member_epoch)
                    };
                    let pending_revocation = by_name(&current.pending_revocation);
                    let rebalance_timeout_ms = meta.rebalance_timeout_ms.max(1);
                    group.members.insert(
                        member_id.clone(),
                        ConsumerMember {
                            member_id: member_id.clone(),
                            instance_id: meta.instance_id.clone(),
                            rack_id: meta.rack_id.clone(),
                            client_id: meta.client_id.clone(),
                            client_host: meta.client_host.clone(),
                            subscribed_topics: resolve(
                                &meta.subscribed_topic_names,
                                regex.as_ref(),
                                all_topics,
                            ),
                            subscribed_names: meta.subscribed_topic_names.clone(),
                            subscribed_regex: regex,
                            server_assignor: meta.server_assignor.clone(),
                            rebalance_timeout_ms,
                            member_epoch,
                            previous_member_epoch,
                            assigned: by_name(&current.assigned),
                            revocation_deadline_ms: (!pending_revocation.is_empty())
                                .then(|| now_ms + i64::from(rebalance_timeout_ms)),
                            pending_revocation,
                            session_deadline_ms: now_ms + i64::from(limits.session_timeout_ms),
                            // The member learns its assignment again on its next heartbeat.
                            assignment_changed: true,
                            left_temporarily,
                        },
                    );
                }
                _ => {}
            }
        }
        group
            .target
            .retain(|member_id, _| group.members.contains_key(member_id));
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in group.members.values() {
            if let Some(name) = &member.server_assignor {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        group.assignor_name = votes
            .iter()
            .max_by_key(|(_, count)| **count)
            .map(|(name, _)| name.to_string())
            .unwrap_or_else(|| limits.assignors[0].clone());
        if let Some((topic, partition)) = group.partition_held_twice() {
            // Records this broker wrote never say so; if they do, no member keeps anything
            // and the group assigns afresh rather than give one partition two owners.
            tracing::warn!(
                topic,
                partition,
                "consumer group records give a partition two owners"
            );
            for member in group.members.values_mut() {
                member.assigned.clear();
                member.pending_revocation.clear();
                member.revocation_deadline_ms = None;
                member.member_epoch = 0;
            }
            group.bump_epoch(now_ms);
        }
        group.check_invariants();
        Some(group)
    }

    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.members
            .values()
            .flat_map(|m| [Some(m.session_deadline_ms), m.revocation_deadline_ms])
            .flatten()
            .min()
    }

    /// Removes members whose session ended or who did not revoke in time. Returns their ids.
    pub fn expire(&mut self, now_ms: i64) -> Vec<String> {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.session_deadline_ms <= now_ms
                    || m.revocation_deadline_ms.is_some_and(|d| d <= now_ms)
            })
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in &expired {
            self.remove_member(member_id, now_ms);
        }
        expired
    }

    /// OffsetCommit rules for consumer groups: a member commits with its current epoch; a
    /// non-member (epoch -1) only while the group has no members.
    pub fn validate_commit(&self, member_id: &str, member_epoch: i32) -> Result<(), ResponseError> {
        if member_epoch < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        let member = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if member_epoch != member.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    /// OffsetFetch rules for consumer groups: no member named (id absent, epoch < 0) is
    /// accepted; otherwise the member must exist and send its current epoch.
    pub fn validate_offset_fetch(
        &self,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        if member_id.is_none() && member_epoch < 0 {
            return Ok(());
        }
        let member = self
            .members
            .get(member_id.unwrap_or_default())
            .ok_or(ResponseError::UnknownMemberId)?;
        if member_epoch != member.member_epoch {
            return Err(ResponseError::StaleMemberEpoch);
        }
        Ok(())
    }

    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscribed_topics.iter().cloned())
            .collect()
    }
}
