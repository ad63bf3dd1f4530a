//! Elections: timeouts, pre-vote (KIP-996), Vote, BeginQuorumEpoch, EndQuorumEpoch, and the
//! leader's check-quorum.
//!
//! Safety rests on two rules: a voter grants at most one (real) vote per epoch, persisted
//! before the answer leaves; and it grants only to a candidate whose log is at least as up to
//! date as its own, so a winner holds every committed entry. Pre-votes bind nobody; they only
//! keep a node that cannot win from bumping the epoch and unseating a healthy leader.

use super::messages::*;
use super::{LeaderState, RaftNode, Role, VoteTally};
use std::collections::BTreeMap;

impl RaftNode {
    /// Unattached, prospective, candidate, resigned: count towards an election.
    pub(crate) fn tick_election(&mut self) {
        self.election_elapsed_ticks += 1;
        if self.election_elapsed_ticks < self.election_timeout_current_ticks {
            return;
        }
        if self.is_voter() {
            self.become_prospective();
        } else {
            self.reset_election_timer();
            self.send_observer_discovery_fetch();
        }
    }

    /// Pre-vote round: ask whether we could win epoch + 1, without changing any state that
    /// is persisted (ours or the voters').
    pub(crate) fn become_prospective(&mut self) {
        assert!(self.is_voter());
        let mut tally = VoteTally::default();
        tally.granted.insert(self.config.node_id);
        self.role = Role::Prospective(tally);
        self.reset_election_timer();
        self.request_votes(self.epoch + 1, true);
        self.maybe_win_pre_vote();
    }

    fn maybe_win_pre_vote(&mut self) {
        if let Role::Prospective(tally) = &self.role {
            if tally.granted.len() >= self.majority() {
                self.become_candidate();
            }
        }
    }

    fn become_candidate(&mut self) {
        let epoch = self.epoch + 1;
        self.become_unattached(epoch);
        self.voted_for = Some(self.config.node_id);
        self.quorum_state_dirty = true;
        let mut tally = VoteTally::default();
        tally.granted.insert(self.config.node_id);
        self.role = Role::Candidate(tally);
        self.request_votes(self.epoch, false);
        self.maybe_win_election();
    }

    /// Asks every other voter for its (pre-)vote for `candidate_epoch`, offering this node's
    /// log end.
    fn request_votes(&mut self, candidate_epoch: Epoch, pre_vote: bool) {
        let request = VoteRequest {
            candidate_epoch,
            candidate_id: self.config.node_id,
            last_offset_epoch: self.log.last_epoch(),
            last_offset: self.log.end_offset(),
            pre_vote,
        };
        let voters: Vec<NodeId> = self.other_voters().collect();
        for voter in voters {
            self.send(voter, Message::VoteRequest(request.clone()));
        }
    }

    fn maybe_win_election(&mut self) {
        if let Role::Candidate(tally) = &self.role {
            if tally.granted.len() >= self.majority() {
                self.become_leader();
            }
        }
    }

    fn become_leader(&mut self) {
        assert_eq!(self.voted_for, Some(self.config.node_id));
        assert!(self.leader_id.is_none());
        self.leader_id = Some(self.config.node_id);
        self.quorum_state_dirty = true;
        let epoch_start_offset = self.log.end_offset();
        self.log.append(Entry {
            epoch: self.epoch,
            kind: EntryKind::LeaderChange,
            data: bytes::Bytes::new(),
        });
        let progress = self
            .other_voters()
            .map(|v| {
                (
                    v,
                    super::ReplicaProgress {
                        end_offset: -1,
                        last_fetch_tick: None,
                    },
                )
            })
            .collect();
        self.role = Role::Leader(LeaderState {
            epoch_start_offset,
            elected_tick: self.now_ticks,
            begin_quorum_sent_tick: self.now_ticks,
            progress,
            parked: BTreeMap::new(),
        });
        let voters: Vec<NodeId> = self.other_voters().collect();
        for voter in voters {
            self.send_begin_quorum_epoch(voter);
        }
        self.maybe_advance_high_watermark();
    }

    fn send_begin_quorum_epoch(&mut self, voter: NodeId) {
        self.send(
            voter,
            Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest {
                leader_id: self.config.node_id,
                leader_epoch: self.epoch,
            }),
        );
    }

    /// Leader: check-quorum, re-announce to silent voters, answer parked fetches that waited
    /// long enough.
    pub(crate) fn tick_leader(&mut self) {
        let now = self.now_ticks;
        let timeout = self.config.check_quorum_timeout_ticks as u64;
        let majority = self.majority();
        let Role::Leader(leader) = &mut self.role else {
            unreachable!()
        };
        if now - leader.elected_tick >= timeout {
            let heard = 1 + leader
                .progress
                .iter()
                .filter(|(id, p)| {
                    self.config.voters.binary_search(id).is_ok()
                        && p.last_fetch_tick.is_some_and(|t| now - t < timeout)
                })
                .count();
            if heard < majority {
                // Probably partitioned away: a majority may have elected someone else, and
                // clients writing here would wait forever.
                self.become_resigned();
                return;
            }
        }
        let retry = self.config.begin_quorum_retry_ticks as u64;
        if now - leader.begin_quorum_sent_tick >= retry {
            leader.begin_quorum_sent_tick = now;
            let silent: Vec<NodeId> = leader
                .progress
                .iter()
                .filter(|(id, p)| {
                    self.config.voters.binary_search(id).is_ok()
                        && p.last_fetch_tick.is_none_or(|t| now - t >= retry)
                })
                .map(|(id, _)| *id)
                .collect();
            for voter in silent {
                self.send_begin_quorum_epoch(voter);
            }
        }
        self.complete_parked_fetches(true);
    }

    /// Whether this node still hears from a live leader: then it refuses pre-votes.
    fn has_live_leader(&self) -> bool {
        match &self.role {
            Role::Leader(_) => true,
            Role::Follower(follower) => follower
                .leader_contact_tick
                .is_some_and(|t| self.now_ticks - t < self.config.election_timeout_ticks as u64),
            _ => false,
        }
    }

    pub(crate) fn handle_vote_request(&mut self, from: NodeId, request: VoteRequest) {
        let reject = |node: &RaftNode, error: ErrorCode| {
            Message::VoteResponse(VoteResponse {
                error,
                leader_id: node.leader_id,
                leader_epoch: node.epoch,
                vote_granted: false,
                pre_vote: request.pre_vote,
            })
        };
        if from != request.candidate_id {
            let message = reject(self, ErrorCode::InvalidRequest);
            return self.send(from, message);
        }
        if !self.is_voter_id(from) || !self.is_voter() {
            let message = reject(self, ErrorCode::InconsistentVoterSet);
            return self.send(from, message);
        }
        let log_ok = self
            .log
            .is_up_to_date(request.last_offset_epoch, request.last_offset);
        let granted = if request.pre_vote {
            // No state changes at all: a pre-vote is a question.
            request.candidate_epoch >= self.epoch
                && !self.has_live_leader()
                && (request.candidate_epoch > self.epoch
                    || (self.leader_id.is_none() && self.voted_for.is_none_or(|v| v == from)))
                && log_ok
        } else {
            if request.candidate_epoch > self.epoch {
                self.become_unattached(request.candidate_epoch);
            }
            let granted = request.candidate_epoch == self.epoch
                && self.leader_id.is_none()
                && self.voted_for.is_none_or(|v| v == from)
                && log_ok;
            if granted {
                assert!(matches!(self.role, Role::Unattached | Role::Prospective(_)));
                if self.voted_for.is_none() {
                    self.voted_for = Some(from);
                    self.quorum_state_dirty = true;
                }
                self.reset_election_timer();
            }
            granted
        };
        let error = if request.candidate_epoch < self.epoch {
            ErrorCode::FencedLeaderEpoch
        } else {
            ErrorCode::None
        };
        self.send(
            from,
            Message::VoteResponse(VoteResponse {
                error,
                leader_id: self.leader_id,
                leader_epoch: self.epoch,
                vote_granted: granted,
                pre_vote: request.pre_vote,
            }),
        );
    }

    pub(crate) fn handle_vote_response(&mut self, from: NodeId, response: VoteResponse) {
        if !self.is_voter_id(from) || from == self.config.node_id {
            return;
        }
        if self.observe_leader(from, response.leader_id, response.leader_epoch, false) {
            return;
        }
        if response.pre_vote {
            if let Role::Prospective(tally) = &mut self.role {
                // A pre-vote answer may come from a voter still in an older epoch: it answers
                // the question about epoch + 1 just the same.
                if response.vote_granted {
                    tally.granted.insert(from);
                } else {
                    tally.rejected.insert(from);
                }
                self.maybe_win_pre_vote();
            }
        } else if response.leader_epoch == self.epoch {
            if let Role::Candidate(tally) = &mut self.role {
                if response.vote_granted {
                    tally.granted.insert(from);
                } else {
                    tally.rejected.insert(from);
                }
                self.maybe_win_election();
            }
        }
    }

    pub(crate) fn handle_begin_quorum_epoch(
        &mut self,
        from: NodeId,
        request: BeginQuorumEpochRequest,
    ) {
        let error = if from != request.leader_id || from == self.config.node_id {
            ErrorCode::InvalidRequest
        } else if !self.is_voter_id(from) {
            ErrorCode::InconsistentVoterSet
        } else if request.leader_epoch < self.epoch {
            ErrorCode::FencedLeaderEpoch
        } else {
            let known = request.leader_epoch == self.epoch
                && self.leader_id == Some(request.leader_id)
                && matches!(self.role, Role::Follower(_));
            if !known {
                self.become_follower(request.leader_epoch, request.leader_id, true);
            } else if let Role::Follower(follower) = &mut self.role {
                follower.leader_contact_tick = Some(self.now_ticks);
            }
            ErrorCode::None
        };
        self.send(
            from,
            Message::BeginQuorumEpochResponse(BeginQuorumEpochResponse {
                error,
                leader_id: self.leader_id,
                leader_epoch: self.epoch,
            }),
        );
    }

    pub(crate) fn handle_end_quorum_epoch(&mut self, from: NodeId, request: EndQuorumEpochRequest) {
        let error = if from != request.leader_id || from == self.config.node_id {
            ErrorCode::InvalidRequest
        } else if !self.is_voter_id(from) {
            ErrorCode::InconsistentVoterSet
        } else if request.leader_epoch < self.epoch {
            ErrorCode::FencedLeaderEpoch
        } else {
            if request.leader_epoch > self.epoch
                || (self.leader_id.is_none() && !matches!(self.role, Role::Candidate(_)))
            {
                self.become_follower(request.leader_epoch, request.leader_id, false);
            }
            if self.leader_id == Some(request.leader_id) {
                if let Role::Follower(follower) = &mut self.role {
                    // The leader is gone: grant pre-votes now, and stand sooner the more
                    // caught-up the leader thought we were.
                    follower.leader_contact_tick = None;
                    let rank = request
                        .preferred_successors
                        .iter()
                        .position(|v| *v == self.config.node_id)
                        .unwrap_or(request.preferred_successors.len());
                    self.election_elapsed_ticks = 0;
                    self.election_timeout_current_ticks = 1 + 2 * rank as u32;
                }
            }
            ErrorCode::None
        };
        self.send(
            from,
            Message::EndQuorumEpochResponse(EndQuorumEpochResponse {
                error,
                leader_id: self.leader_id,
                leader_epoch: self.epoch,
            }),
        );
    }
}
