//! Share groups' membership (KIP-932): members join, heartbeat and leave with
//! ShareGroupHeartbeat, KIP-848 style (member epochs, the broker computes assignments), but
//! nothing is revoked: in a share group several members may fetch from the same partition,
//! and the share-partition (`crate::share`) decides which records each one gets. So the
//! assignor is the simple one: every member is assigned every partition of the topics it
//! subscribes to, and a member's new assignment is effective at once.
//!
//! No I/O and no clocks (the caller passes the time). Membership is in memory, like KIP-848
//! membership here: after a restart members rejoin (UNKNOWN_MEMBER_ID, then epoch 0).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::ResponseError;

use super::consumer_group::Assignment;
use super::{GROUPS_MAX, GROUP_ID_BYTES_MAX, NAME_BYTES_MAX};

/// Topics one member may subscribe to.
pub const SUBSCRIBED_TOPICS_MAX: usize = 10_000;

/// The epoch a leaving member sends.
pub const LEAVE_EPOCH: i32 = -1;

#[derive(Clone, Copy, Debug)]
pub struct ShareGroupSettings {
    pub session_timeout_ms: i64,
    pub heartbeat_interval_ms: i32,
    pub members_max: usize,
}

impl ShareGroupSettings {
    pub fn from_properties(properties: &crate::config::Properties) -> ShareGroupSettings {
        use crate::config;
        ShareGroupSettings {
            session_timeout_ms: properties.get_i64(config::GROUP_SHARE_SESSION_TIMEOUT_MS),
            heartbeat_interval_ms: properties
                .get_i64(config::GROUP_SHARE_HEARTBEAT_INTERVAL_MS)
                .clamp(1, i32::MAX as i64) as i32,
            members_max: (properties.get_i64(config::GROUP_SHARE_MAX_SIZE) as usize)
                .min(super::MEMBERS_PER_GROUP_MAX),
        }
    }
}

/// A ShareGroupHeartbeat, decoded.
#[derive(Clone, Debug, Default)]
pub struct ShareHeartbeat {
    pub member_id: String,
    pub member_epoch: i32,
    pub rack_id: Option<String>,
    /// None: unchanged since the last heartbeat.
    pub subscribed_topics: Option<Vec<String>>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareHeartbeatResult {
    pub member_id: String,
    pub member_epoch: i32,
    /// Set when the member's assignment changed (or it joined): the client replaces its own.
    pub assignment: Option<Assignment>,
}

pub struct ShareMember {
    pub member_id: String,
    pub member_epoch: i32,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topics: Vec<String>,
    pub assignment: Assignment,
    session_deadline_ms: i64,
}

pub struct ShareGroup {
    pub group_epoch: i32,
    pub members: BTreeMap<String, ShareMember>,
}

impl ShareGroup {
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else {
            "Stable"
        }
    }
}

/// The share-group coordinator: its settings and groups behind one mutex (heartbeats are
/// short and never wait while holding it).
pub struct ShareGroupCoordinator {
    pub settings: ShareGroupSettings,
    groups: std::sync::Mutex<ShareGroups>,
}

impl ShareGroupCoordinator {
    pub fn new(settings: ShareGroupSettings) -> ShareGroupCoordinator {
        ShareGroupCoordinator {
            settings,
            groups: std::sync::Mutex::new(ShareGroups::default()),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, ShareGroups> {
        self.groups.lock().expect("share groups lock")
    }
}

/// Every share group this coordinator holds. The caller serializes access (one mutex).
#[derive(Default)]
pub struct ShareGroups {
    groups: HashMap<String, ShareGroup>,
}

impl ShareGroups {
    pub fn get(&self, group_id: &str) -> Option<&ShareGroup> {
        self.groups.get(group_id)
    }

    pub fn group_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.groups.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Removes an empty group; Err(NON_EMPTY_GROUP) if it has members, GROUP_ID_NOT_FOUND if
    /// it is unknown.
    pub fn delete(&mut self, group_id: &str) -> Result<(), ResponseError> {
        match self.groups.get(group_id) {
            None => Err(ResponseError::GroupIdNotFound),
            Some(group) if !group.members.is_empty() => Err(ResponseError::NonEmptyGroup),
            Some(_) => {
                self.groups.remove(group_id);
                Ok(())
            }
        }
    }

    /// For changing a group's offsets, which Kafka allows only while nobody consumes:
    /// Err(NON_EMPTY_GROUP) if it has members. An unknown group is created empty when
    /// `create` (Kafka resets the offsets of a group that never ran), else GROUP_ID_NOT_FOUND.
    pub fn check_empty(&mut self, group_id: &str, create: bool) -> Result<(), ResponseError> {
        match self.groups.get(group_id) {
            Some(group) if !group.members.is_empty() => Err(ResponseError::NonEmptyGroup),
            Some(_) => Ok(()),
            None if !create => Err(ResponseError::GroupIdNotFound),
            None if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX => {
                Err(ResponseError::InvalidGroupId)
            }
            None if self.groups.len() >= GROUPS_MAX => Err(ResponseError::GroupMaxSizeReached),
            None => {
                self.groups.insert(
                    group_id.to_string(),
                    ShareGroup {
                        group_epoch: 0,
                        members: BTreeMap::new(),
                    },
                );
                Ok(())
            }
        }
    }

    /// Members whose session expired at `now_ms`, removed (the caller releases what they
    /// held). Returns (group id, member id) pairs.
    pub fn expire(&mut self, now_ms: i64) -> Vec<(String, String)> {
        let mut expired = Vec::new();
        for (group_id, group) in self.groups.iter_mut() {
            let before = group.members.len();
            group.members.retain(|member_id, member| {
                let alive = member.session_deadline_ms > now_ms;
                if !alive {
                    expired.push((group_id.clone(), member_id.clone()));
                }
                alive
            });
            if group.members.len() != before {
                group.group_epoch += 1;
            }
        }
        expired
    }

    /// One heartbeat. `partitions_of` says how many partitions a topic has (None: it does
    /// not exist).
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        request: ShareHeartbeat,
        partitions_of: &dyn Fn(&str) -> Option<i32>,
        settings: &ShareGroupSettings,
        now_ms: i64,
    ) -> Result<ShareHeartbeatResult, (ResponseError, String)> {
        if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX {
            return Err((
                ResponseError::InvalidRequest,
                "GroupId can't be empty.".into(),
            ));
        }
        if request.member_id.is_empty() || request.member_id.len() > NAME_BYTES_MAX {
            return Err((
                ResponseError::InvalidRequest,
                "MemberId can't be empty.".into(),
            ));
        }
        if let Some(topics) = &request.subscribed_topics {
            if topics.len() > SUBSCRIBED_TOPICS_MAX
                || topics
                    .iter()
                    .any(|t| t.is_empty() || t.len() > NAME_BYTES_MAX)
            {
                return Err((
                    ResponseError::InvalidRequest,
                    "Invalid subscription.".into(),
                ));
            }
        }
        match request.member_epoch {
            0 => {
                if request
                    .subscribed_topics
                    .as_ref()
                    .is_none_or(|t| t.is_empty())
                {
                    return Err((
                        ResponseError::InvalidRequest,
                        "SubscribedTopicNames must be set in first request.".into(),
                    ));
                }
            }
            LEAVE_EPOCH => {
                let Some(group) = self.groups.get_mut(group_id) else {
                    return Err((
                        ResponseError::UnknownMemberId,
                        format!("Group {group_id} not found."),
                    ));
                };
                if group.members.remove(&request.member_id).is_none() {
                    return Err((
                        ResponseError::UnknownMemberId,
                        format!("Member {} is not in group {group_id}.", request.member_id),
                    ));
                }
                group.group_epoch += 1;
                return Ok(ShareHeartbeatResult {
                    member_id: request.member_id,
                    member_epoch: LEAVE_EPOCH,
                    assignment: None,
                });
            }
            epoch if epoch < 0 => {
                return Err((
                    ResponseError::InvalidRequest,
                    "MemberEpoch is invalid.".into(),
                ))
            }
            _ => {}
        }
        if !self.groups.contains_key(group_id) {
            if request.member_epoch != 0 {
                return Err((
                    ResponseError::UnknownMemberId,
                    format!("Group {group_id} not found."),
                ));
            }
            if self.groups.len() >= GROUPS_MAX {
                return Err((
                    ResponseError::GroupMaxSizeReached,
                    format!("The coordinator holds {GROUPS_MAX} groups."),
                ));
            }
            self.groups.insert(
                group_id.to_string(),
                ShareGroup {
                    group_epoch: 0,
                    members: BTreeMap::new(),
                },
            );
        }
        let group = self.groups.get_mut(group_id).expect("inserted above");
        let joining = !group.members.contains_key(&request.member_id);
        if joining {
            if request.member_epoch != 0 {
                return Err((
                    ResponseError::UnknownMemberId,
                    format!("Member {} is not in group {group_id}.", request.member_id),
                ));
            }
            if group.members.len() >= settings.members_max {
                return Err((
                    ResponseError::GroupMaxSizeReached,
                    format!("Group {group_id} has {} members.", settings.members_max),
                ));
            }
            group.group_epoch += 1;
            group.members.insert(
                request.member_id.clone(),
                ShareMember {
                    member_id: request.member_id.clone(),
                    member_epoch: 0,
                    rack_id: None,
                    client_id: String::new(),
                    client_host: String::new(),
                    subscribed_topics: Vec::new(),
                    assignment: Assignment::new(),
                    session_deadline_ms: 0,
                },
            );
        }
        let member = group.members.get_mut(&request.member_id).expect("present");
        if request.member_epoch != 0 && request.member_epoch != member.member_epoch {
            return Err((
                ResponseError::FencedMemberEpoch,
                format!(
                    "The member's epoch {} is not its current epoch {}.",
                    request.member_epoch, member.member_epoch
                ),
            ));
        }
        member.session_deadline_ms = now_ms.saturating_add(settings.session_timeout_ms);
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        if request.rack_id.is_some() {
            member.rack_id = request.rack_id;
        }
        let mut subscription_changed = false;
        if let Some(mut topics) = request.subscribed_topics {
            topics.sort();
            topics.dedup();
            subscription_changed = topics != member.subscribed_topics;
            member.subscribed_topics = topics;
        }
        // The simple assignor of share groups: every partition of every subscribed topic
        // that exists now (topics created or grown later are picked up by the next heartbeat).
        let target: Assignment = member
            .subscribed_topics
            .iter()
            .filter_map(|topic| {
                let count = partitions_of(topic)?;
                Some((topic.clone(), (0..count.max(0)).collect::<BTreeSet<i32>>()))
            })
            .collect();
        let assignment_changed = joining || target != member.assignment;
        member.assignment = target;
        // The group epoch moves with membership (a join moved it above) and subscriptions; a
        // member whose assignment changed takes the group's epoch with it.
        if !joining && (subscription_changed || assignment_changed) {
            group.group_epoch += 1;
        }
        let group_epoch = group.group_epoch;
        let member = group.members.get_mut(&request.member_id).expect("present");
        if assignment_changed {
            member.member_epoch = group_epoch;
        }
        Ok(ShareHeartbeatResult {
            member_id: member.member_id.clone(),
            member_epoch: member.member_epoch,
            assignment: assignment_changed.then(|| member.assignment.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ShareGroupSettings {
        ShareGroupSettings {
            session_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            members_max: 2,
        }
    }

    fn join(member: &str, topics: &[&str]) -> ShareHeartbeat {
        ShareHeartbeat {
            member_id: member.into(),
            member_epoch: 0,
            subscribed_topics: Some(topics.iter().map(|t| t.to_string()).collect()),
            ..Default::default()
        }
    }

    fn partitions_of(topic: &str) -> Option<i32> {
        (topic == "t").then_some(2)
    }

    #[test]
    fn every_member_gets_every_partition_and_epochs_are_checked() {
        let mut groups = ShareGroups::default();
        let a = groups
            .heartbeat(
                "g",
                join("a", &["t", "missing"]),
                &partitions_of,
                &settings(),
                0,
            )
            .unwrap();
        let b = groups
            .heartbeat("g", join("b", &["t"]), &partitions_of, &settings(), 0)
            .unwrap();
        let all: Assignment = [("t".to_string(), BTreeSet::from([0, 1]))].into();
        assert_eq!(a.assignment.as_ref(), Some(&all));
        assert_eq!(b.assignment.as_ref(), Some(&all));
        assert!(a.member_epoch >= 1 && b.member_epoch > a.member_epoch);
        // A steady heartbeat carries no assignment and keeps the epoch.
        let again = ShareHeartbeat {
            member_id: "a".into(),
            member_epoch: a.member_epoch,
            ..Default::default()
        };
        let steady = groups
            .heartbeat("g", again.clone(), &partitions_of, &settings(), 10)
            .unwrap();
        assert_eq!(
            (steady.member_epoch, steady.assignment),
            (a.member_epoch, None)
        );
        // Stale epoch, unknown member, full group.
        let stale = ShareHeartbeat {
            member_epoch: a.member_epoch + 5,
            ..again.clone()
        };
        assert_eq!(
            groups
                .heartbeat("g", stale, &partitions_of, &settings(), 10)
                .unwrap_err()
                .0,
            ResponseError::FencedMemberEpoch
        );
        let unknown = ShareHeartbeat {
            member_id: "x".into(),
            member_epoch: 3,
            ..Default::default()
        };
        assert_eq!(
            groups
                .heartbeat("g", unknown, &partitions_of, &settings(), 10)
                .unwrap_err()
                .0,
            ResponseError::UnknownMemberId
        );
        assert_eq!(
            groups
                .heartbeat("g", join("c", &["t"]), &partitions_of, &settings(), 10)
                .unwrap_err()
                .0,
            ResponseError::GroupMaxSizeReached
        );
        // b's session runs out; a heartbeated at 10, so it stays.
        assert_eq!(
            groups.expire(1005),
            vec![("g".to_string(), "b".to_string())]
        );
        let leave = ShareHeartbeat {
            member_epoch: LEAVE_EPOCH,
            ..again
        };
        assert_eq!(
            groups
                .heartbeat("g", leave, &partitions_of, &settings(), 20)
                .unwrap()
                .member_epoch,
            -1
        );
        assert_eq!(groups.get("g").unwrap().state_name(), "Empty");
        assert_eq!(groups.delete("g"), Ok(()));
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut groups = ShareGroups::default();
        assert_eq!(
            groups
                .heartbeat("g", join("", &["t"]), &partitions_of, &settings(), 0)
                .unwrap_err()
                .0,
            ResponseError::InvalidRequest
        );
        assert_eq!(
            groups
                .heartbeat("g", join("a", &[]), &partitions_of, &settings(), 0)
                .unwrap_err()
                .0,
            ResponseError::InvalidRequest
        );
        assert_eq!(
            groups
                .heartbeat("", join("a", &["t"]), &partitions_of, &settings(), 0)
                .unwrap_err()
                .0,
            ResponseError::InvalidRequest
        );
    }
}
