//! A classic consumer group: members, generation, and Kafka's rebalance state machine
//!
//! ```text
//! Empty ──join──► PreparingRebalance ──all joined / timeout──► CompletingRebalance
//!   ▲                    ▲    ▲                                      │ leader's SyncGroup
//!   └── last member ─────┘    └──── join, leave, eviction ◄── Stable ◄┘
//! ```
//!
//! (Dead is the state of a group that was deleted or expired: it is removed from the map.)
//!
//! No I/O and no clocks here: every call takes `now_ms`, and deadlines are data the
//! coordinator's timer reads through [`ClassicGroup::next_deadline_ms`]. Responses that must
//! wait (JoinGroup until the rebalance completes, SyncGroup until the leader has assigned) are
//! oneshot senders stored on the member; every path that drops a member answers its waiters.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

use super::records::{GroupValue, MemberValue};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The names DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup answers.
#[derive(Clone, Debug, Default)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    /// (member id, group instance id, metadata): filled for the leader only.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub fn error(error: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: Some(error),
            generation_id: -1,
            member_id: member_id.to_string(),
            ..JoinResult::default()
        }
    }
}

/// What a SyncGroup answers.
#[derive(Clone, Debug, Default)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: ResponseError) -> SyncResult {
        SyncResult {
            error: Some(error),
            ..SyncResult::default()
        }
    }
}

pub enum Reply<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

/// A JoinGroup request, decoded.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a member without an id first gets one with MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
}

/// Limits the coordinator applies to every classic group.
#[derive(Clone, Copy, Debug)]
pub struct ClassicLimits {
    pub initial_rebalance_delay_ms: i64,
    /// group.max.size, capped by the coordinator's own bound.
    pub members_max: usize,
}

pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    session_deadline_ms: i64,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn fail_waiters(&mut self, error: ResponseError) {
        if let Some(waiter) = self.join_waiter.take() {
            let _ = waiter.send(JoinResult::error(error, &self.member_id));
        }
        if let Some(waiter) = self.sync_waiter.take() {
            let _ = waiter.send(SyncResult::error(error));
        }
    }
}

pub struct ClassicGroup {
    pub group_id: String,
    pub state: GroupState,
    pub state_timestamp_ms: i64,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub generation_id: i32,
    pub leader: Option<String>,
    pub members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet used to join: id → deadline.
    pending_members: HashMap<String, i64>,
    /// group.instance.id → member id of the static member holding it.
    static_members: HashMap<String, String>,
    /// PreparingRebalance: when the join phase ends even if members are missing.
    join_deadline_ms: Option<i64>,
    /// The initial delay (group.initial.rebalance.delay.ms) of a group that was Empty: the
    /// join phase waits for it in full, extended while members keep arriving, up to this.
    initial_join_limit_ms: Option<i64>,
    /// CompletingRebalance: members that have not sent SyncGroup by then are removed.
    sync_deadline_ms: Option<i64>,
}

/// Whether the group's metadata changed in a way that must be written to `__consumer_offsets`.
#[derive(Default, Debug, Clone, Copy)]
pub struct Effects {
    pub persist_group: bool,
}

impl Effects {
    fn merge(&mut self, other: Effects) {
        self.persist_group |= other.persist_group;
    }
}

fn new_member_id(request: &JoinRequest) -> String {
    // Kafka: "<client id or instance id>-<uuid>".
    let prefix = request
        .group_instance_id
        .as_deref()
        .unwrap_or(&request.client_id);
    let prefix: String = prefix.chars().take(128).collect();
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

fn same_protocols(a: &[(String, Bytes)], b: &[(String, Bytes)]) -> bool {
    a == b
}

impl ClassicGroup {
    pub fn new(group_id: &str, now_ms: i64) -> ClassicGroup {
        ClassicGroup {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader: None,
            members: IndexMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            join_deadline_ms: None,
            initial_join_limit_ms: None,
            sync_deadline_ms: None,
        }
    }

    /// Rebuilds a group from its latest metadata record (broker start). Members come back
    /// with fresh session deadlines: they keep their assignment if they heartbeat in time.
    pub fn from_record(group_id: &str, value: &GroupValue, now_ms: i64) -> ClassicGroup {
        let mut group = ClassicGroup::new(group_id, now_ms);
        group.generation_id = value.generation;
        group.protocol_type = Some(value.protocol_type.clone()).filter(|t| !t.is_empty());
        group.protocol_name = value.protocol.clone();
        group.leader = value.leader.clone();
        for member in &value.members {
            let protocols = match &value.protocol {
                Some(name) => vec![(name.clone(), member.subscription.clone())],
                None => Vec::new(),
            };
            if let Some(instance) = &member.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), member.member_id.clone());
            }
            group.members.insert(
                member.member_id.clone(),
                Member {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    session_timeout_ms: member.session_timeout_ms,
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    protocols,
                    assignment: member.assignment.clone(),
                    session_deadline_ms: now_ms + i64::from(member.session_timeout_ms),
                    join_waiter: None,
                    sync_waiter: None,
                },
            );
        }
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        if !group
            .leader
            .as_ref()
            .is_some_and(|l| group.members.contains_key(l))
        {
            // A record without a valid leader (written by another broker, or damaged): any
            // member can lead the next rebalance.
            group.leader = group.members.keys().next().cloned();
        }
        group
    }

    /// The record that describes this group now.
    pub fn to_record(&self) -> GroupValue {
        let protocol = self.protocol_name.clone();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|member| MemberValue {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    session_timeout_ms: member.session_timeout_ms,
                    subscription: protocol
                        .as_deref()
                        .map(|p| member.metadata(p))
                        .unwrap_or_default(),
                    assignment: member.assignment.clone(),
                })
                .collect(),
        }
    }

    /// What must hold between operations (checked by the coordinator after each one).
    pub fn check_invariants(&self) {
        let id = &self.group_id;
        match self.state {
            GroupState::Empty => assert!(self.members.is_empty(), "{id}: Empty with members"),
            GroupState::CompletingRebalance | GroupState::Stable => {
                let leader = self.leader.as_ref().expect("a settled group has a leader");
                assert!(
                    self.members.contains_key(leader),
                    "{id}: leader is not a member"
                );
            }
            GroupState::PreparingRebalance | GroupState::Dead => {}
        }
        for member in self.members.values() {
            assert!(
                member.join_waiter.is_none() || self.state == GroupState::PreparingRebalance,
                "{id}: a join waits outside PreparingRebalance"
            );
            assert!(
                member.sync_waiter.is_none() || self.state == GroupState::CompletingRebalance,
                "{id}: a sync waits outside CompletingRebalance"
            );
        }
        for (instance, member_id) in &self.static_members {
            assert_eq!(
                self.members
                    .get(member_id)
                    .and_then(|m| m.group_instance_id.as_deref()),
                Some(instance.as_str()),
                "{id}: static member map out of step"
            );
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending_members.is_empty()
    }

    fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    /// Protocols every member supports (the candidates a new generation chooses from).
    fn candidate_protocols(&self) -> Vec<String> {
        let Some(first) = self.members.values().next() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
            .collect()
    }

    /// Whether a member with these protocols may join: same protocol type, and at least one
    /// protocol in common with every current member.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let candidates = self.candidate_protocols();
        protocols.iter().any(|(name, _)| candidates.contains(name))
    }

    fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    fn join_result_for(&self, member_id: &str, skip_assignment: bool) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| {
                    (
                        m.member_id.clone(),
                        m.group_instance_id.clone(),
                        m.metadata(&protocol),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            skip_assignment,
            member_id: member_id.to_string(),
            members,
        }
    }

    pub fn join(
        &mut self,
        request: JoinRequest,
        limits: ClassicLimits,
        now_ms: i64,
    ) -> (Reply<JoinResult>, Effects) {
        let fail = |error| {
            (
                Reply::Now(JoinResult::error(error, &request.member_id)),
                Effects::default(),
            )
        };
        if self.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        if !self.supports(&request.protocol_type, &request.protocols) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if request.member_id.is_empty() {
            if let Some(instance) = &request.group_instance_id {
                if let Some(old_member_id) = self.static_members.get(instance).cloned() {
                    return self.rejoin_static(old_member_id, request, now_ms);
                }
            }
            if self.members.len() + self.pending_members.len() >= limits.members_max {
                return fail(ResponseError::GroupMaxSizeReached);
            }
            let member_id = new_member_id(&request);
            if request.require_known_member_id && request.group_instance_id.is_none() {
                // KIP-394: the id is remembered for a session timeout; the member joins with it.
                self.pending_members.insert(
                    member_id.clone(),
                    now_ms + i64::from(request.session_timeout_ms),
                );
                return (
                    Reply::Now(JoinResult::error(
                        ResponseError::MemberIdRequired,
                        &member_id,
                    )),
                    Effects::default(),
                );
            }
            return self.add_member_and_rebalance(member_id, request, limits, now_ms);
        }
        if self.pending_members.remove(&request.member_id).is_some() {
            let member_id = request.member_id.clone();
            return self.add_member_and_rebalance(member_id, request, limits, now_ms);
        }
        if let Err(error) =
            self.validate_member(&request.member_id, request.group_instance_id.as_deref())
        {
            return fail(error);
        }
        let member_id = request.member_id.clone();
        let member = self.members.get(&member_id).expect("validated member");
        let unchanged = same_protocols(&member.protocols, &request.protocols);
        match self.state {
            GroupState::PreparingRebalance => {
                let receiver = self.update_member(&request, now_ms);
                let effects = self.maybe_complete_join(now_ms);
                (Reply::Wait(receiver), effects)
            }
            GroupState::CompletingRebalance if unchanged => {
                // A join response got lost: answer it again, the generation is unchanged.
                (
                    Reply::Now(self.join_result_for(&member_id, false)),
                    Effects::default(),
                )
            }
            GroupState::Stable if unchanged && self.leader.as_deref() != Some(&member_id) => (
                Reply::Now(self.join_result_for(&member_id, false)),
                Effects::default(),
            ),
            GroupState::CompletingRebalance | GroupState::Stable => {
                let receiver = self.update_member(&request, now_ms);
                self.prepare_rebalance(limits, now_ms);
                let effects = self.maybe_complete_join(now_ms);
                (Reply::Wait(receiver), effects)
            }
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId),
        }
    }

    /// A known group.instance.id joins without a member id: the restarted static member takes
    /// over its old identity (KIP-345). A stable group keeps its assignment without a rebalance.
    fn rejoin_static(
        &mut self,
        old_member_id: String,
        request: JoinRequest,
        now_ms: i64,
    ) -> (Reply<JoinResult>, Effects) {
        let instance = request
            .group_instance_id
            .clone()
            .expect("static rejoin has an instance id");
        let mut member = self
            .members
            .shift_remove(&old_member_id)
            .expect("static_members points at a member");
        // The old incarnation may still be waiting: it is fenced now.
        member.fail_waiters(ResponseError::FencedInstanceId);
        let new_member_id = new_member_id(&request);
        let unchanged = same_protocols(&member.protocols, &request.protocols);
        member.member_id = new_member_id.clone();
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.protocols = request.protocols.clone();
        member.session_deadline_ms = now_ms + i64::from(request.session_timeout_ms);
        self.members.insert(new_member_id.clone(), member);
        self.static_members.insert(instance, new_member_id.clone());
        if self.leader.as_deref() == Some(&old_member_id) {
            self.leader = Some(new_member_id.clone());
        }
        let limits = ClassicLimits {
            initial_rebalance_delay_ms: 0,
            members_max: usize::MAX,
        };
        match self.state {
            GroupState::Stable if unchanged => {
                let is_leader = self.leader.as_deref() == Some(&new_member_id);
                let result = self.join_result_for(&new_member_id, is_leader);
                (
                    Reply::Now(result),
                    Effects {
                        persist_group: true,
                    },
                )
            }
            GroupState::PreparingRebalance => {
                let receiver = self.set_join_waiter(&new_member_id);
                let effects = self.maybe_complete_join(now_ms);
                (Reply::Wait(receiver), effects)
            }
            _ => {
                let receiver = self.set_join_waiter(&new_member_id);
                self.prepare_rebalance(limits, now_ms);
                let effects = self.maybe_complete_join(now_ms);
                (Reply::Wait(receiver), effects)
            }
        }
    }

    fn set_join_waiter(&mut self, member_id: &str) -> oneshot::Receiver<JoinResult> {
        let (sender, receiver) = oneshot::channel();
        let member = self.members.get_mut(member_id).expect("member exists");
        if let Some(old) = member.join_waiter.replace(sender) {
            // The same member sent JoinGroup twice; the older request loses.
            let _ = old.send(JoinResult::error(ResponseError::UnknownMemberId, member_id));
        }
        receiver
    }

    fn update_member(
        &mut self,
        request: &JoinRequest,
        now_ms: i64,
    ) -> oneshot::Receiver<JoinResult> {
        let member = self
            .members
            .get_mut(&request.member_id)
            .expect("member exists");
        member.protocols = request.protocols.clone();
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.session_deadline_ms = now_ms + i64::from(request.session_timeout_ms);
        let member_id = request.member_id.clone();
        self.set_join_waiter(&member_id)
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        request: JoinRequest,
        limits: ClassicLimits,
        now_ms: i64,
    ) -> (Reply<JoinResult>, Effects) {
        assert!(
            !self.members.contains_key(&member_id),
            "member ids are unique"
        );
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        if let Some(instance) = &request.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        let (sender, receiver) = oneshot::channel();
        self.members.insert(
            member_id.clone(),
            Member {
                member_id: member_id.clone(),
                group_instance_id: request.group_instance_id.clone(),
                client_id: request.client_id,
                client_host: request.client_host,
                session_timeout_ms: request.session_timeout_ms,
                rebalance_timeout_ms: request.rebalance_timeout_ms,
                protocols: request.protocols,
                assignment: Bytes::new(),
                session_deadline_ms: now_ms + i64::from(request.session_timeout_ms),
                join_waiter: Some(sender),
                sync_waiter: None,
            },
        );
        if self.state == GroupState::PreparingRebalance {
            if let Some(limit) = self.initial_join_limit_ms {
                // Another member arrived during the initial delay: wait a delay more.
                self.join_deadline_ms =
                    Some((now_ms + limits.initial_rebalance_delay_ms).min(limit));
            }
        } else {
            self.prepare_rebalance(limits, now_ms);
        }
        let effects = self.maybe_complete_join(now_ms);
        (Reply::Wait(receiver), effects)
    }

    fn prepare_rebalance(&mut self, limits: ClassicLimits, now_ms: i64) {
        if self.state == GroupState::CompletingRebalance {
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(waiter) = member.sync_waiter.take() {
                    let _ = waiter.send(SyncResult::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let rebalance_timeout_ms = self.max_rebalance_timeout_ms();
        if self.state == GroupState::Empty {
            let delay_ms = limits.initial_rebalance_delay_ms.min(rebalance_timeout_ms);
            self.join_deadline_ms = Some(now_ms + delay_ms);
            self.initial_join_limit_ms = Some(now_ms + rebalance_timeout_ms);
        } else {
            self.join_deadline_ms = Some(now_ms + rebalance_timeout_ms);
            self.initial_join_limit_ms = None;
        }
        self.sync_deadline_ms = None;
        self.transition(GroupState::PreparingRebalance, now_ms);
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Ends the join phase early once every member has rejoined (not during the initial delay,
    /// which exists precisely to let more members arrive).
    fn maybe_complete_join(&mut self, now_ms: i64) -> Effects {
        if self.state == GroupState::PreparingRebalance
            && self.initial_join_limit_ms.is_none()
            && self.all_members_joined()
        {
            return self.complete_join(now_ms);
        }
        Effects::default()
    }

    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: BTreeMap<usize, usize> = BTreeMap::new();
        for member in self.members.values() {
            if let Some(index) = member
                .protocols
                .iter()
                .find_map(|(name, _)| candidates.iter().position(|c| c == name))
            {
                *votes.entry(index).or_default() += 1;
            }
        }
        // Most votes wins; ties go to the protocol the first member prefers.
        let best = votes
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(index, _)| *index)?;
        candidates.get(best).cloned()
    }

    /// The join phase ends: members that did not rejoin leave (static members stay, they may
    /// be restarting), the next generation starts and every waiting member gets its answer.
    fn complete_join(&mut self, now_ms: i64) -> Effects {
        assert_eq!(self.state, GroupState::PreparingRebalance);
        let not_rejoined: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in not_rejoined {
            self.remove_member_only(&member_id, ResponseError::UnknownMemberId);
        }
        self.join_deadline_ms = None;
        self.initial_join_limit_ms = None;
        self.generation_id = self.generation_id.wrapping_add(1).max(1);
        if self.members.values().all(|m| m.join_waiter.is_none()) {
            // Nobody is waiting (every member left, or only absent static members remain).
            for member_id in self.members.keys().cloned().collect::<Vec<_>>() {
                self.remove_member_only(&member_id, ResponseError::UnknownMemberId);
            }
            self.protocol_name = None;
            self.leader = None;
            self.transition(GroupState::Empty, now_ms);
            return Effects {
                persist_group: true,
            };
        }
        self.protocol_name = self.select_protocol();
        let leader_rejoined = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_some_and(|m| m.join_waiter.is_some());
        if !leader_rejoined {
            self.leader = self
                .members
                .values()
                .find(|m| m.join_waiter.is_some())
                .map(|m| m.member_id.clone());
        }
        self.transition(GroupState::CompletingRebalance, now_ms);
        self.sync_deadline_ms = Some(now_ms + self.max_rebalance_timeout_ms());
        let member_ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in member_ids {
            let result = self.join_result_for(&member_id, false);
            let member = self.members.get_mut(&member_id).expect("listed member");
            member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(result);
            }
        }
        Effects::default()
    }

    /// Checks that `member_id` is a member and that a static member's instance id is its own.
    fn validate_member(
        &self,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance {
            match self.static_members.get(instance) {
                Some(owner) if owner != member_id => return Err(ResponseError::FencedInstanceId),
                Some(_) => return Ok(()),
                None => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(())
    }

    pub fn sync(
        &mut self,
        generation_id: i32,
        member_id: &str,
        instance: Option<&str>,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        limits: ClassicLimits,
        now_ms: i64,
    ) -> (Reply<SyncResult>, Effects) {
        let fail = |error| (Reply::Now(SyncResult::error(error)), Effects::default());
        if self.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        if let Err(error) = self.validate_member(member_id, instance) {
            return fail(error);
        }
        if generation_id != self.generation_id {
            return fail(ResponseError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol_name.as_deref())
        {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        let _ = limits;
        match self.state {
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                let member = self.members.get_mut(member_id).expect("validated member");
                member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                let result = SyncResult {
                    error: None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment: member.assignment.clone(),
                };
                (Reply::Now(result), Effects::default())
            }
            GroupState::CompletingRebalance => {
                let (sender, receiver) = oneshot::channel();
                let member = self.members.get_mut(member_id).expect("validated member");
                member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                if let Some(old) = member.sync_waiter.replace(sender) {
                    let _ = old.send(SyncResult::error(ResponseError::RebalanceInProgress));
                }
                if self.leader.as_deref() != Some(member_id) {
                    return (Reply::Wait(receiver), Effects::default());
                }
                // The leader's assignment: members it does not mention get nothing;
                // entries for unknown members are ignored.
                let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                for member in self.members.values_mut() {
                    member.assignment = by_member.remove(&member.member_id).unwrap_or_default();
                }
                self.sync_deadline_ms = None;
                self.transition(GroupState::Stable, now_ms);
                (
                    Reply::Wait(receiver),
                    Effects {
                        persist_group: true,
                    },
                )
            }
        }
    }

    /// After the assignment is persisted: answer every member waiting in SyncGroup.
    pub fn complete_sync(
        &mut self,
        error: Option<ResponseError>,
        limits: ClassicLimits,
        now_ms: i64,
    ) {
        if let Some(error) = error {
            // The assignment could not be stored: waiters fail and the group rebalances, as
            // Kafka does when the group metadata append fails.
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(waiter) = member.sync_waiter.take() {
                    let _ = waiter.send(SyncResult::error(error));
                }
            }
            self.state = GroupState::CompletingRebalance;
            self.prepare_rebalance(limits, now_ms);
            return;
        }
        let protocol_type = self.protocol_type.clone();
        let protocol_name = self.protocol_name.clone();
        for member in self.members.values_mut() {
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(SyncResult {
                    error: None,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    assignment: member.assignment.clone(),
                });
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        generation_id: i32,
        member_id: &str,
        instance: Option<&str>,
        now_ms: i64,
    ) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if let Err(error) = self.validate_member(member_id, instance) {
            return Some(error);
        }
        if generation_id != self.generation_id {
            return Some(ResponseError::IllegalGeneration);
        }
        let member = self.members.get_mut(member_id).expect("validated member");
        match self.state {
            GroupState::Empty | GroupState::Dead => Some(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                Some(ResponseError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.session_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                None
            }
        }
    }

    /// LeaveGroup for one member identity: by instance id when given, else by member id.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        limits: ClassicLimits,
        now_ms: i64,
    ) -> (Option<ResponseError>, Effects) {
        if self.state == GroupState::Dead {
            return (
                Some(ResponseError::CoordinatorNotAvailable),
                Effects::default(),
            );
        }
        let target = match instance {
            Some(instance) => match self.static_members.get(instance) {
                None => return (Some(ResponseError::UnknownMemberId), Effects::default()),
                Some(owner) if !member_id.is_empty() && owner != member_id => {
                    return (Some(ResponseError::FencedInstanceId), Effects::default())
                }
                Some(owner) => owner.clone(),
            },
            None => {
                if self.pending_members.remove(member_id).is_some() {
                    return (None, self.maybe_complete_join(now_ms));
                }
                if !self.members.contains_key(member_id) {
                    return (Some(ResponseError::UnknownMemberId), Effects::default());
                }
                member_id.to_string()
            }
        };
        (
            None,
            self.remove_member(&target, ResponseError::UnknownMemberId, limits, now_ms),
        )
    }

    fn remove_member_only(&mut self, member_id: &str, error: ResponseError) {
        if let Some(mut member) = self.members.shift_remove(member_id) {
            member.fail_waiters(error);
            if let Some(instance) = &member.group_instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
        }
    }

    /// Removes a member and moves the group on: a stable group rebalances, a rebalancing one
    /// may now have everyone it waits for.
    fn remove_member(
        &mut self,
        member_id: &str,
        error: ResponseError,
        limits: ClassicLimits,
        now_ms: i64,
    ) -> Effects {
        self.remove_member_only(member_id, error);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(limits, now_ms);
                self.maybe_complete_join(now_ms)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms),
            GroupState::Empty | GroupState::Dead => Effects::default(),
        }
    }

    /// Earliest time something here expires: a session, a pending member id, the join or
    /// sync phase.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none())
            .map(|m| m.session_deadline_ms);
        sessions
            .chain(self.pending_members.values().copied())
            .chain(self.join_deadline_ms)
            .chain(self.sync_deadline_ms)
            .min()
    }

    /// Fires everything due at `now_ms`. Returns effects and the member ids evicted.
    pub fn expire(&mut self, limits: ClassicLimits, now_ms: i64) -> (Effects, Vec<String>) {
        let mut effects = Effects::default();
        let mut evicted = Vec::new();
        let before = self.pending_members.len();
        self.pending_members
            .retain(|_, deadline| *deadline > now_ms);
        if self.pending_members.len() != before {
            effects.merge(self.maybe_complete_join(now_ms));
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.join_waiter.is_none()
                    && m.sync_waiter.is_none()
                    && m.session_deadline_ms <= now_ms
            })
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in expired {
            // Also during a join phase: a member that neither rejoins nor heartbeats within
            // its session is gone, and the phase need not wait out the rebalance timeout.
            effects.merge(self.remove_member(
                &member_id,
                ResponseError::UnknownMemberId,
                limits,
                now_ms,
            ));
            evicted.push(member_id);
        }
        if self.state == GroupState::PreparingRebalance
            && self.join_deadline_ms.is_some_and(|d| d <= now_ms)
        {
            effects.merge(self.complete_join(now_ms));
        }
        if self.state == GroupState::CompletingRebalance
            && self.sync_deadline_ms.is_some_and(|d| d <= now_ms)
        {
            // Members that never sent SyncGroup are gone; the rest rebalance without them.
            let silent: Vec<String> = self
                .members
                .values()
                .filter(|m| m.sync_waiter.is_none())
                .map(|m| m.member_id.clone())
                .collect();
            for member_id in &silent {
                self.remove_member_only(member_id, ResponseError::UnknownMemberId);
            }
            evicted.extend(silent);
            self.prepare_rebalance(limits, now_ms);
            effects.merge(self.maybe_complete_join(now_ms));
        }
        (effects, evicted)
    }

    /// Topics the members subscribe to, from their "consumer" protocol metadata (OffsetDelete
    /// refuses to delete offsets of a subscribed topic).
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = Vec::new();
        for member in self.members.values() {
            let mut metadata = member.metadata(protocol);
            if metadata.len() < 2 {
                return None;
            }
            let version = i16::from_be_bytes([metadata[0], metadata[1]]);
            let _ = bytes::Buf::get_i16(&mut metadata);
            let subscription =
                ConsumerProtocolSubscription::decode(&mut metadata, version.clamp(0, 3)).ok()?;
            topics.extend(subscription.topics.into_iter().map(|t| t.to_string()));
        }
        Some(topics)
    }

    /// Removes every member (group deletion or shutdown); their waiters get `error`.
    pub fn clear(&mut self, error: ResponseError) {
        for (_, mut member) in self.members.drain(..) {
            member.fail_waiters(error);
        }
        self.pending_members.clear();
        self.static_members.clear();
    }
}
