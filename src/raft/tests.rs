//! Scenario tests: one input at a time, the Ready checked field by field. The simulation
//! (`sim.rs`) finds schedules; these pin down rules a schedule rarely reaches.

use bytes::Bytes;

use super::*;

fn data_entry(epoch: Epoch) -> Entry {
    Entry {
        epoch,
        kind: EntryKind::Data,
        data: Bytes::from_static(b"x"),
    }
}

fn restored(node_id: NodeId, voters: &[NodeId], epoch: Epoch, entries: Vec<Entry>) -> RaftNode {
    RaftNode::restore(
        Config::new(node_id, voters.to_vec(), 7),
        Persisted {
            quorum_state: QuorumState {
                epoch,
                voted_for: None,
                leader_id: None,
            },
            snapshot: None,
            entries,
        },
    )
}

fn only_message(ready: &Ready) -> &Message {
    assert_eq!(ready.messages.len(), 1, "{:?}", ready.messages);
    &ready.messages[0].message
}

#[test]
fn single_voter_elects_itself_and_commits_on_append() {
    let mut node = RaftNode::new(Config::new(1, vec![1], 1));
    let mut ticks = 0;
    while !node.is_leader() {
        node.tick();
        ticks += 1;
        assert!(ticks <= 20, "no election");
    }
    let ready = node.ready();
    assert_eq!(
        ready.quorum_state,
        Some(QuorumState {
            epoch: 1,
            voted_for: Some(1),
            leader_id: Some(1)
        })
    );
    assert_eq!(ready.entries.len(), 1, "the LeaderChange entry");
    assert_eq!(ready.committed.len(), 1);
    assert!(ready.messages.is_empty());
    let offset = node.propose(Bytes::from_static(b"topic")).unwrap();
    assert_eq!(offset, 1);
    let ready = node.ready();
    assert_eq!(ready.entries_offset, 1);
    assert_eq!(ready.entries.len(), 1);
    assert_eq!(ready.committed_offset, 1);
    assert_eq!(ready.committed[0].data, Bytes::from_static(b"topic"));
    assert_eq!(node.high_watermark(), 2);
}

#[test]
fn a_vote_is_persisted_in_the_same_ready_as_its_answer() {
    // Already in epoch 5 (so granting changes nothing but the vote).
    let mut node = restored(2, &[1, 2, 3], 5, vec![]);
    let _ = node.ready();
    node.step(
        1,
        Message::VoteRequest(VoteRequest {
            candidate_epoch: 5,
            candidate_id: 1,
            last_offset_epoch: 0,
            last_offset: 0,
            pre_vote: false,
        }),
    );
    let ready = node.ready();
    assert_eq!(
        ready.quorum_state,
        Some(QuorumState {
            epoch: 5,
            voted_for: Some(1),
            leader_id: None
        })
    );
    let Message::VoteResponse(response) = only_message(&ready) else {
        panic!()
    };
    assert!(response.vote_granted);
    // A second candidate of the same epoch is refused.
    node.step(
        3,
        Message::VoteRequest(VoteRequest {
            candidate_epoch: 5,
            candidate_id: 3,
            last_offset_epoch: 0,
            last_offset: 0,
            pre_vote: false,
        }),
    );
    let Message::VoteResponse(response) = only_message(&node.ready()).clone() else {
        panic!()
    };
    assert!(!response.vote_granted);
}

#[test]
fn votes_require_an_up_to_date_log() {
    let mut node = restored(2, &[1, 2, 3], 3, vec![data_entry(1), data_entry(3)]);
    for (last_offset_epoch, last_offset, granted) in [(1, 5, false), (3, 1, false), (3, 2, true)] {
        node.step(
            1,
            Message::VoteRequest(VoteRequest {
                candidate_epoch: 4,
                candidate_id: 1,
                last_offset_epoch,
                last_offset,
                pre_vote: true,
            }),
        );
        let ready = node.ready();
        assert_eq!(ready.quorum_state, None, "a pre-vote changes nothing");
        let Message::VoteResponse(response) = only_message(&ready) else {
            panic!()
        };
        assert_eq!(
            response.vote_granted, granted,
            "({last_offset_epoch}, {last_offset})"
        );
    }
}

#[test]
fn a_follower_that_hears_its_leader_refuses_pre_votes() {
    let mut node = restored(2, &[1, 2, 3], 1, vec![]);
    node.step(
        1,
        Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest {
            leader_id: 1,
            leader_epoch: 2,
        }),
    );
    assert_eq!(node.role(), RoleKind::Follower);
    let _ = node.ready();
    node.step(
        3,
        Message::VoteRequest(VoteRequest {
            candidate_epoch: 3,
            candidate_id: 3,
            last_offset_epoch: 0,
            last_offset: 0,
            pre_vote: true,
        }),
    );
    let ready = node.ready();
    let Message::VoteResponse(response) = only_message(&ready) else {
        panic!()
    };
    assert!(!response.vote_granted);
    assert_eq!(response.leader_id, Some(1));
    assert_eq!(node.epoch(), 2, "the pre-vote did not move the epoch");
}

#[test]
fn bad_input_is_refused_with_kafka_errors() {
    let mut node = restored(2, &[1, 2, 3], 4, vec![]);
    // A vote from a node that is not a voter.
    node.step(
        9,
        Message::VoteRequest(VoteRequest {
            candidate_epoch: 5,
            candidate_id: 9,
            last_offset_epoch: 0,
            last_offset: 0,
            pre_vote: false,
        }),
    );
    let Message::VoteResponse(response) = only_message(&node.ready()).clone() else {
        panic!()
    };
    assert_eq!(response.error, ErrorCode::InconsistentVoterSet);
    assert_eq!(node.epoch(), 4);
    // A BeginQuorumEpoch claiming to come from someone else.
    node.step(
        1,
        Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest {
            leader_id: 3,
            leader_epoch: 5,
        }),
    );
    let Message::BeginQuorumEpochResponse(response) = only_message(&node.ready()).clone() else {
        panic!()
    };
    assert_eq!(response.error, ErrorCode::InvalidRequest);
    // A stale epoch.
    node.step(
        1,
        Message::BeginQuorumEpochRequest(BeginQuorumEpochRequest {
            leader_id: 1,
            leader_epoch: 3,
        }),
    );
    let Message::BeginQuorumEpochResponse(response) = only_message(&node.ready()).clone() else {
        panic!()
    };
    assert_eq!(response.error, ErrorCode::FencedLeaderEpoch);
    assert_eq!(response.error.kafka_code(), 74);
    // A fetch to a node that does not lead.
    node.step(
        1,
        Message::FetchRequest(FetchRequest {
            replica_id: 1,
            current_leader_epoch: 4,
            fetch_offset: 0,
            last_fetched_epoch: 0,
            log_start_offset: 0,
            max_wait_ticks: 0,
            max_bytes: 1000,
        }),
    );
    let Message::FetchResponse(response) = only_message(&node.ready()).clone() else {
        panic!()
    };
    assert_eq!(response.error, ErrorCode::NotLeaderOrFollower);
    assert_eq!(node.epoch(), 4);
    assert_eq!(node.role(), RoleKind::Unattached);
}

/// Elects node 1 of {1, 2, 3} in epoch `epoch + 1` over the given log.
fn leader_with(entries: Vec<Entry>, epoch: Epoch) -> RaftNode {
    let mut node = restored(1, &[1, 2, 3], epoch, entries);
    while node.role() != RoleKind::Prospective {
        node.tick();
    }
    node.step(
        2,
        Message::VoteResponse(VoteResponse {
            error: ErrorCode::None,
            leader_id: None,
            leader_epoch: epoch,
            vote_granted: true,
            pre_vote: true,
        }),
    );
    node.step(
        2,
        Message::VoteResponse(VoteResponse {
            error: ErrorCode::None,
            leader_id: None,
            leader_epoch: epoch + 1,
            vote_granted: true,
            pre_vote: false,
        }),
    );
    assert!(node.is_leader());
    let _ = node.ready();
    node
}

fn fetch(
    node: &mut RaftNode,
    from: NodeId,
    fetch_offset: Offset,
    last_fetched_epoch: Epoch,
) -> FetchResponse {
    node.step(
        from,
        Message::FetchRequest(FetchRequest {
            replica_id: from,
            current_leader_epoch: node.epoch(),
            fetch_offset,
            last_fetched_epoch,
            log_start_offset: 0,
            max_wait_ticks: 0,
            max_bytes: 1 << 20,
        }),
    );
    let ready = node.ready();
    let Message::FetchResponse(response) = only_message(&ready) else {
        panic!()
    };
    response.clone()
}

#[test]
fn the_leader_answers_a_diverging_fetch_with_its_epoch_end() {
    // Leader log: epochs [1, 1, 3] then its LeaderChange in epoch 4.
    let mut node = leader_with(vec![data_entry(1), data_entry(1), data_entry(3)], 3);
    assert_eq!(node.epoch(), 4);
    // The follower has [1, 1, 2, 2]: offset 4, last epoch 2 → the leader ends epoch 1 at 2.
    let response = fetch(&mut node, 2, 4, 2);
    assert_eq!(
        response.diverging_epoch,
        Some(EpochEndOffset {
            epoch: 1,
            end_offset: 2
        })
    );
    assert!(response.records.is_empty());
    // A fetch that matches gets the rest, and moves the high watermark (own epoch reached).
    let response = fetch(&mut node, 2, 2, 1);
    assert_eq!(response.diverging_epoch, None);
    assert_eq!(response.records.len(), 2);
    assert_eq!(
        node.high_watermark(),
        0,
        "nothing of epoch 4 is on a majority yet"
    );
    let response = fetch(&mut node, 2, 4, 4);
    assert_eq!(node.high_watermark(), 4);
    assert_eq!(response.high_watermark, 4);
}

#[test]
fn a_fetch_below_the_log_start_is_sent_to_the_snapshot() {
    let mut node = leader_with(vec![data_entry(1), data_entry(1)], 1);
    let response = fetch(&mut node, 2, 3, 2);
    assert_eq!(response.diverging_epoch, None);
    assert_eq!(node.high_watermark(), 3);
    let _ = node.ready();
    node.snapshot(3, Bytes::from_static(b"image"));
    let ready = node.ready();
    assert_eq!(
        ready.snapshot.as_ref().unwrap().id,
        SnapshotId {
            end_offset: 3,
            epoch: 2
        }
    );
    assert!(!ready.snapshot_replaces_log);
    let response = fetch(&mut node, 3, 1, 1);
    assert_eq!(
        response.snapshot_id,
        Some(SnapshotId {
            end_offset: 3,
            epoch: 2
        })
    );
    node.step(
        3,
        Message::FetchSnapshotRequest(FetchSnapshotRequest {
            replica_id: 3,
            current_leader_epoch: 2,
            snapshot_id: SnapshotId {
                end_offset: 3,
                epoch: 2,
            },
            position: 2,
            max_bytes: 2,
        }),
    );
    let ready = node.ready();
    let Message::FetchSnapshotResponse(response) = only_message(&ready) else {
        panic!()
    };
    assert_eq!(response.size, 5);
    assert_eq!(response.unaligned_records, Bytes::from_static(b"ag"));
}

#[test]
fn a_leader_without_fetches_from_a_majority_resigns() {
    let mut node = leader_with(vec![], 0);
    let timeout = node.config.check_quorum_timeout_ticks;
    for _ in 0..timeout {
        node.tick();
    }
    assert_eq!(node.role(), RoleKind::Resigned);
    assert_eq!(
        node.propose(Bytes::new()),
        Err(ProposeError::NotLeader {
            leader_id: Some(1),
            epoch: 1
        })
    );
}
