//! Replication, KRaft style: followers pull with Fetch(fetch offset, last fetched epoch); the
//! leader checks that position against its own log — answering with entries, with the
//! diverging epoch (the follower truncates and asks again), or with a snapshot id (the
//! follower fetches the snapshot) — and counts every valid fetch offset as that follower's
//! progress. The high watermark is the offset a majority holds, once that includes an entry of
//! the leader's own epoch.

use bytes::Bytes;

use super::messages::*;
use super::{RaftNode, ReplicaProgress, Role, SnapshotFetch};

/// Observers a leader tracks at most (voters are always tracked).
const OBSERVERS_TRACKED_MAX: usize = 1024;

impl RaftNode {
    pub(crate) fn tick_follower(&mut self) {
        self.election_elapsed_ticks += 1;
        if self.election_elapsed_ticks >= self.election_timeout_current_ticks {
            if self.is_voter() {
                return self.become_prospective();
            }
            // An observer lost its leader: look for the current one.
            self.role = Role::Unattached;
            self.reset_election_timer();
            return self.send_observer_discovery_fetch();
        }
        let now = self.now_ticks;
        let retry = self.config.fetch_retry_ticks as u64;
        let Role::Follower(follower) = &self.role else {
            unreachable!()
        };
        if follower.fetch_sent_tick.is_none_or(|t| now - t >= retry) {
            self.send_fetch();
        }
    }

    /// Follower: the next Fetch (or FetchSnapshot while one is being fetched) to the leader.
    fn send_fetch(&mut self) {
        let leader = self.leader_id.expect("a follower knows its leader");
        let now = self.now_ticks;
        let Role::Follower(follower) = &mut self.role else {
            unreachable!()
        };
        follower.fetch_sent_tick = Some(now);
        let message = match &follower.snapshot_fetch {
            Some(fetch) => Message::FetchSnapshotRequest(FetchSnapshotRequest {
                replica_id: self.config.node_id,
                current_leader_epoch: self.epoch,
                snapshot_id: fetch.id,
                position: fetch.data.len() as i64,
                max_bytes: self.config.snapshot_chunk_size_bytes_max as i32,
            }),
            None => Message::FetchRequest(self.fetch_request()),
        };
        self.send(leader, message);
    }

    fn fetch_request(&self) -> FetchRequest {
        FetchRequest {
            replica_id: self.config.node_id,
            current_leader_epoch: self.epoch,
            fetch_offset: self.log.end_offset(),
            last_fetched_epoch: self.log.last_epoch(),
            log_start_offset: self.log.start_offset(),
            max_wait_ticks: self.config.fetch_max_wait_ticks,
            max_bytes: self.config.fetch_size_bytes_max as i32,
        }
    }

    /// An observer with no leader asks a voter; the answer names the leader.
    pub(crate) fn send_observer_discovery_fetch(&mut self) {
        let voters = &self.config.voters;
        let voter = voters[self.random.below(voters.len() as u64) as usize];
        let request = self.fetch_request();
        self.send(voter, Message::FetchRequest(request));
    }

    fn fetch_error(&self, request: &FetchRequest, error: ErrorCode) -> FetchResponse {
        FetchResponse {
            error,
            high_watermark: -1,
            log_start_offset: -1,
            diverging_epoch: None,
            current_leader: LeaderIdAndEpoch {
                leader_id: self.leader_id,
                leader_epoch: self.epoch,
            },
            snapshot_id: None,
            records: Vec::new(),
            fetch_offset: request.fetch_offset,
            last_fetched_epoch: request.last_fetched_epoch,
        }
    }

    fn request_error(&self, from: NodeId, replica_id: NodeId, epoch: Epoch) -> ErrorCode {
        if from != replica_id || from == self.config.node_id {
            ErrorCode::InvalidRequest
        } else if epoch < self.epoch {
            ErrorCode::FencedLeaderEpoch
        } else if epoch > self.epoch {
            // The sender knows a newer epoch; BeginQuorumEpoch or an election will tell us.
            ErrorCode::UnknownLeaderEpoch
        } else if !self.is_leader() {
            ErrorCode::NotLeaderOrFollower
        } else {
            ErrorCode::None
        }
    }

    /// Leader: notes that `from` is alive; bounded for observers.
    fn note_fetch_contact(&mut self, from: NodeId) {
        let now = self.now_ticks;
        let voters = self.config.voters.len();
        let is_voter = self.is_voter_id(from);
        let Role::Leader(leader) = &mut self.role else {
            unreachable!()
        };
        if !is_voter
            && !leader.progress.contains_key(&from)
            && leader.progress.len() >= voters + OBSERVERS_TRACKED_MAX
        {
            return;
        }
        leader
            .progress
            .entry(from)
            .or_insert(ReplicaProgress {
                end_offset: -1,
                last_fetch_tick: None,
            })
            .last_fetch_tick = Some(now);
    }

    pub(crate) fn handle_fetch_request(&mut self, from: NodeId, request: FetchRequest) {
        let error = self.request_error(from, request.replica_id, request.current_leader_epoch);
        if error != ErrorCode::None {
            let response = self.fetch_error(&request, error);
            return self.send(from, Message::FetchResponse(response));
        }
        self.note_fetch_contact(from);
        self.answer_fetch(from, request, true);
    }

    /// Leader: validate the fetch position and answer (or park the fetch when it is caught up
    /// and nothing changed).
    fn answer_fetch(&mut self, from: NodeId, request: FetchRequest, may_park: bool) {
        assert!(self.is_leader());
        let fetch_offset = request.fetch_offset;
        let mut response = FetchResponse {
            error: ErrorCode::None,
            high_watermark: self.high_watermark,
            log_start_offset: self.log.start_offset(),
            diverging_epoch: None,
            current_leader: LeaderIdAndEpoch {
                leader_id: Some(self.config.node_id),
                leader_epoch: self.epoch,
            },
            snapshot_id: None,
            records: Vec::new(),
            fetch_offset,
            last_fetched_epoch: request.last_fetched_epoch,
        };
        let position = if fetch_offset < self.log.start_offset() {
            None
        } else {
            self.log.end_offset_for_epoch(request.last_fetched_epoch)
        };
        match position {
            None => {
                // Below our log start: only the snapshot has it.
                let snapshot = self
                    .snapshot
                    .as_ref()
                    .expect("log start > 0 has a snapshot");
                response.snapshot_id = Some(snapshot.id);
            }
            Some((epoch, end_offset))
                if epoch != request.last_fetched_epoch || fetch_offset > end_offset =>
            {
                response.diverging_epoch = Some(EpochEndOffset { epoch, end_offset });
            }
            Some(_) => {
                // The follower's log equals ours below `fetch_offset` (same epoch at the same
                // offset means same history): that much is replicated on it.
                let high_watermark_before = self.high_watermark;
                if self.is_voter_id(from) {
                    let Role::Leader(leader) = &mut self.role else {
                        unreachable!()
                    };
                    leader
                        .progress
                        .get_mut(&from)
                        .expect("voters are tracked")
                        .end_offset = fetch_offset;
                    self.maybe_advance_high_watermark();
                }
                if may_park
                    && fetch_offset == self.log.end_offset()
                    && request.max_wait_ticks > 0
                    && self.high_watermark == high_watermark_before
                {
                    let now = self.now_ticks;
                    let Role::Leader(leader) = &mut self.role else {
                        unreachable!()
                    };
                    leader.parked.insert(from, (request, now));
                    return;
                }
                response.high_watermark = self.high_watermark;
                let size_bytes_max =
                    (request.max_bytes.max(0) as usize).min(self.config.fetch_size_bytes_max);
                response.records =
                    self.log
                        .slice(fetch_offset, self.config.fetch_entries_max, size_bytes_max);
            }
        }
        self.send(from, Message::FetchResponse(response));
    }

    /// Leader: answer parked fetches — all of them (new entries or a new high watermark), or
    /// only those that waited their `max_wait_ticks`.
    pub(crate) fn complete_parked_fetches(&mut self, expired_only: bool) {
        let now = self.now_ticks;
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        let parked = std::mem::take(&mut leader.parked);
        let mut due = Vec::new();
        for (from, (request, parked_tick)) in parked {
            let waited = now - parked_tick;
            if !expired_only || waited >= request.max_wait_ticks as u64 {
                due.push((from, request));
            } else {
                leader.parked.insert(from, (request, parked_tick));
            }
        }
        for (from, request) in due {
            if self.is_leader() {
                self.answer_fetch(from, request, false);
            }
        }
    }

    /// Leader: the high watermark is the largest offset a majority of voters holds, once that
    /// covers this epoch's first entry (Raft's rule: count replicas only for your own
    /// epoch's entries; earlier ones commit with them).
    pub(crate) fn maybe_advance_high_watermark(&mut self) {
        let Role::Leader(leader) = &self.role else {
            return;
        };
        let me = self.config.node_id;
        let mut end_offsets: Vec<Offset> = self
            .config
            .voters
            .iter()
            .map(|v| {
                if *v == me {
                    // Counted before it is persisted: the Ready contract persists entries
                    // before anything that depends on this high watermark leaves the node,
                    // and no follower holds an entry we have not persisted.
                    self.log.end_offset()
                } else {
                    leader.progress.get(v).map_or(-1, |p| p.end_offset)
                }
            })
            .collect();
        end_offsets.sort_unstable_by(|a, b| b.cmp(a));
        let majority_offset = end_offsets[self.majority() - 1];
        if majority_offset > self.high_watermark && majority_offset > leader.epoch_start_offset {
            assert!(majority_offset <= self.log.end_offset());
            self.high_watermark = majority_offset;
            self.complete_parked_fetches(false);
        }
    }

    pub(crate) fn handle_fetch_response(&mut self, from: NodeId, response: FetchResponse) {
        let leader = response.current_leader;
        if self.observe_leader(
            from,
            leader.leader_id,
            leader.leader_epoch,
            response.error == ErrorCode::None,
        ) {
            return; // Answers a fetch of an older epoch.
        }
        if !self.is_following(from, leader.leader_epoch) {
            return;
        }
        let Role::Follower(follower) = &mut self.role else {
            unreachable!()
        };
        if response.error != ErrorCode::None || follower.snapshot_fetch.is_some() {
            follower.fetch_sent_tick = None;
            return;
        }
        if response.fetch_offset != self.log.end_offset()
            || response.last_fetched_epoch != self.log.last_epoch()
        {
            return; // A duplicate or an answer to a fetch from before our log changed.
        }
        follower.fetch_sent_tick = None;
        follower.leader_contact_tick = Some(self.now_ticks);
        self.reset_election_timer();

        if let Some(diverging) = response.diverging_epoch {
            // Keep the longest prefix that can agree with the leader: our end of the
            // leader's diverging epoch, or the leader's end of it, whichever is first.
            let target = match self.log.end_offset_for_epoch(diverging.epoch) {
                Some((_, end_offset)) => end_offset.min(diverging.end_offset),
                None => self.log.start_offset(),
            };
            let target = target.max(self.log.start_offset());
            assert!(
                target < self.log.end_offset(),
                "divergence must shorten the log: target {target}, end {}, {diverging:?}",
                self.log.end_offset()
            );
            self.truncate_log(target);
            return self.send_fetch();
        }
        if let Some(snapshot_id) = response.snapshot_id {
            if snapshot_id.end_offset > self.high_watermark {
                let Role::Follower(follower) = &mut self.role else {
                    unreachable!()
                };
                follower.snapshot_fetch = Some(SnapshotFetch {
                    id: snapshot_id,
                    data: Vec::new(),
                });
            }
            return self.send_fetch();
        }
        let record_count = response.records.len();
        for entry in response.records {
            assert!(entry.epoch <= self.epoch, "entry from a future epoch");
            self.log.append(entry);
        }
        // Below `fetch_offset` our log matched the leader's (it answered without divergence)
        // and we just appended its entries: the leader's high watermark covers our log up to
        // our end offset.
        let high_watermark = response.high_watermark.min(self.log.end_offset());
        if high_watermark > self.high_watermark {
            self.high_watermark = high_watermark;
        }
        if record_count > 0 {
            self.send_fetch();
        }
    }

    fn is_following(&self, from: NodeId, epoch: Epoch) -> bool {
        matches!(self.role, Role::Follower(_))
            && self.leader_id == Some(from)
            && epoch == self.epoch
    }

    /// Drops our entries from `offset` on; never committed ones.
    fn truncate_log(&mut self, offset: Offset) {
        assert!(
            offset >= self.high_watermark,
            "truncating to {offset} below the high watermark {}",
            self.high_watermark
        );
        self.log.truncate_to(offset);
        if offset < self.stable_end_offset {
            self.stable_end_offset = offset;
            self.pending_truncate = Some(self.pending_truncate.map_or(offset, |t| t.min(offset)));
        }
    }

    pub(crate) fn handle_fetch_snapshot_request(
        &mut self,
        from: NodeId,
        request: FetchSnapshotRequest,
    ) {
        let mut response = FetchSnapshotResponse {
            error: self.request_error(from, request.replica_id, request.current_leader_epoch),
            snapshot_id: request.snapshot_id,
            current_leader: LeaderIdAndEpoch {
                leader_id: self.leader_id,
                leader_epoch: self.epoch,
            },
            size: -1,
            position: request.position,
            unaligned_records: Bytes::new(),
        };
        if response.error == ErrorCode::None {
            self.note_fetch_contact(from);
            match &self.snapshot {
                Some(snapshot) if snapshot.id == request.snapshot_id => {
                    let size = snapshot.data.len() as i64;
                    if request.position < 0 || request.position > size {
                        response.error = ErrorCode::PositionOutOfRange;
                    } else {
                        let chunk_bytes = (request.max_bytes.max(1) as i64)
                            .min(self.config.snapshot_chunk_size_bytes_max as i64);
                        let end = (request.position + chunk_bytes).min(size);
                        response.size = size;
                        response.unaligned_records =
                            snapshot.data.slice(request.position as usize..end as usize);
                    }
                }
                _ => response.error = ErrorCode::SnapshotNotFound,
            }
        }
        self.send(from, Message::FetchSnapshotResponse(response));
    }

    pub(crate) fn handle_fetch_snapshot_response(
        &mut self,
        from: NodeId,
        response: FetchSnapshotResponse,
    ) {
        let leader = response.current_leader;
        if self.observe_leader(
            from,
            leader.leader_id,
            leader.leader_epoch,
            response.error == ErrorCode::None,
        ) {
            return;
        }
        if !self.is_following(from, leader.leader_epoch) {
            return;
        }
        let now = self.now_ticks;
        let Role::Follower(follower) = &mut self.role else {
            unreachable!()
        };
        let Some(fetch) = &mut follower.snapshot_fetch else {
            return;
        };
        if response.snapshot_id != fetch.id || response.position != fetch.data.len() as i64 {
            return; // Duplicate or stale chunk.
        }
        follower.fetch_sent_tick = None;
        if response.error != ErrorCode::None {
            // The leader has a newer snapshot (or none): fetch again to learn which.
            follower.snapshot_fetch = None;
            return self.send_fetch();
        }
        let end = response.position + response.unaligned_records.len() as i64;
        assert!(end <= response.size, "chunk past the snapshot's size");
        fetch.data.extend_from_slice(&response.unaligned_records);
        follower.leader_contact_tick = Some(now);
        if end == response.size {
            let fetch = follower.snapshot_fetch.take().expect("in progress");
            self.install_snapshot(Snapshot {
                id: fetch.id,
                data: Bytes::from(fetch.data),
            });
        }
        self.reset_election_timer();
        self.send_fetch();
    }

    /// Follower: replace the whole log with the leader's snapshot.
    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let id = snapshot.id;
        if id.end_offset <= self.high_watermark {
            return; // We already hold all of it committed.
        }
        assert!(id.epoch <= self.epoch);
        self.log.reset_to(id);
        self.snapshot = Some(snapshot.clone());
        self.pending_snapshot = Some((snapshot.clone(), true));
        self.pending_truncate = None;
        self.stable_end_offset = id.end_offset;
        // Everything in a leader's snapshot is committed.
        self.high_watermark = id.end_offset;
        self.applied_offset = id.end_offset;
        self.pending_apply_snapshot = Some(snapshot);
    }
}
