//! Share sessions (KIP-932, Kafka's `ShareSessionCache`): the partitions a share-group member
//! fetches from one broker, so that consecutive ShareFetch requests name only what changed.
//! Keyed by (group id, member id); the epoch says which request of the session this is.

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

/// Share sessions held at most (Kafka's `group.share.max.share.sessions` default); a new one
/// beyond it is refused with SHARE_SESSION_LIMIT_REACHED.
pub const SHARE_SESSIONS_MAX: usize = 2000;
/// Partitions one session may name at most.
pub const PARTITIONS_PER_SESSION_MAX: usize = 10_000;

/// Epoch 0 opens a session; -1 closes it after the request's acknowledgements.
pub const INITIAL_EPOCH: i32 = 0;
pub const FINAL_EPOCH: i32 = -1;

pub type TopicIdPartition = (Uuid, i32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// SHARE_SESSION_NOT_FOUND.
    NotFound,
    /// INVALID_SHARE_SESSION_EPOCH.
    InvalidEpoch,
    /// SHARE_SESSION_LIMIT_REACHED.
    LimitReached,
    /// INVALID_REQUEST (a session naming too many partitions).
    TooManyPartitions,
}

struct ShareSession {
    /// The epoch the next request must carry.
    next_epoch: i32,
    partitions: BTreeSet<TopicIdPartition>,
}

#[derive(Default)]
pub struct ShareSessions {
    sessions: HashMap<(String, String), ShareSession>,
}

fn next(epoch: i32) -> i32 {
    // Epochs run 1..=i32::MAX and wrap to 1 (0 and -1 mean open and close).
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

impl ShareSessions {
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Applies a request's session part: epoch 0 opens (or replaces) the member's session,
    /// -1 closes it, any other epoch must be the one expected. Returns the session's
    /// partitions after `added` and `forgotten` (for -1: the closed session's partitions).
    pub fn update(
        &mut self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
        added: &[TopicIdPartition],
        forgotten: &[TopicIdPartition],
    ) -> Result<Vec<TopicIdPartition>, SessionError> {
        let key = (group_id.to_string(), member_id.to_string());
        match epoch {
            INITIAL_EPOCH => {
                if !self.sessions.contains_key(&key) && self.sessions.len() >= SHARE_SESSIONS_MAX {
                    return Err(SessionError::LimitReached);
                }
                let partitions: BTreeSet<_> = added.iter().copied().collect();
                if partitions.len() > PARTITIONS_PER_SESSION_MAX {
                    return Err(SessionError::TooManyPartitions);
                }
                let list = partitions.iter().copied().collect();
                self.sessions.insert(
                    key,
                    ShareSession {
                        next_epoch: 1,
                        partitions,
                    },
                );
                Ok(list)
            }
            FINAL_EPOCH => self
                .sessions
                .remove(&key)
                .map(|session| session.partitions.into_iter().collect())
                .ok_or(SessionError::NotFound),
            epoch => {
                let session = self.sessions.get_mut(&key).ok_or(SessionError::NotFound)?;
                if epoch != session.next_epoch {
                    return Err(SessionError::InvalidEpoch);
                }
                let mut partitions = session.partitions.clone();
                partitions.extend(added.iter().copied());
                for forgotten in forgotten {
                    partitions.remove(forgotten);
                }
                if partitions.len() > PARTITIONS_PER_SESSION_MAX {
                    return Err(SessionError::TooManyPartitions);
                }
                session.partitions = partitions;
                session.next_epoch = next(epoch);
                Ok(session.partitions.iter().copied().collect())
            }
        }
    }

    /// Checks (and advances) the epoch of an acknowledgement-only request (ShareAcknowledge):
    /// it cannot open a session.
    pub fn acknowledge(
        &mut self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
    ) -> Result<(), SessionError> {
        if epoch == INITIAL_EPOCH {
            return Err(SessionError::InvalidEpoch);
        }
        self.update(group_id, member_id, epoch, &[], &[])
            .map(|_| ())
    }

    /// Drops every session of a member (it left its group).
    pub fn remove_member(&mut self, group_id: &str, member_id: &str) {
        self.sessions
            .remove(&(group_id.to_string(), member_id.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_open_advance_and_close() {
        let mut sessions = ShareSessions::default();
        let topic = Uuid::new_v4();
        assert_eq!(
            sessions.update("g", "m", 1, &[], &[]),
            Err(SessionError::NotFound)
        );
        assert_eq!(
            sessions.update("g", "m", 0, &[(topic, 0)], &[]).unwrap(),
            vec![(topic, 0)]
        );
        assert_eq!(
            sessions.update("g", "m", 2, &[], &[]),
            Err(SessionError::InvalidEpoch)
        );
        assert_eq!(
            sessions
                .update("g", "m", 1, &[(topic, 1)], &[(topic, 0)])
                .unwrap(),
            vec![(topic, 1)]
        );
        assert_eq!(sessions.acknowledge("g", "m", 2), Ok(()));
        assert_eq!(
            sessions.acknowledge("g", "m", 0),
            Err(SessionError::InvalidEpoch)
        );
        assert_eq!(
            sessions.update("g", "m", -1, &[], &[]).unwrap(),
            vec![(topic, 1)]
        );
        assert!(sessions.is_empty());
        assert_eq!(next(i32::MAX), 1);
    }
}
