//! The quorum RPCs as plain structs. Each mirrors one Kafka KRaft message (KIP-595) field for
//! field, minus the topic/partition nesting (there is one metadata partition), so the driver's
//! mapping onto `kafka_protocol::messages::*` is one assignment per field. Fields that are not
//! on the wire are marked "echo": the driver copies them from the in-flight request the
//! response answers (Kafka pairs them by correlation id).

use bytes::Bytes;

pub type NodeId = i32;
/// Kafka's leader epoch; plays Raft's term.
pub type Epoch = i32;
pub type Offset = i64;

/// The Kafka error codes the quorum RPCs answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    None,
    /// 6: the receiver is not the leader of the epoch the request names.
    NotLeaderOrFollower,
    /// 42: the request contradicts itself (sender id differs from the id it claims).
    InvalidRequest,
    /// 74: the request's epoch is older than the receiver's.
    FencedLeaderEpoch,
    /// 75: the request's epoch is newer than the receiver knows about.
    UnknownLeaderEpoch,
    /// 94: the sender (or receiver) of a voter-only request is not a voter.
    InconsistentVoterSet,
    /// 98: the snapshot asked for is not (or no longer) the leader's latest.
    SnapshotNotFound,
    /// 99: a FetchSnapshot position outside the snapshot.
    PositionOutOfRange,
}

impl ErrorCode {
    pub fn kafka_code(self) -> i16 {
        match self {
            ErrorCode::None => 0,
            ErrorCode::NotLeaderOrFollower => 6,
            ErrorCode::InvalidRequest => 42,
            ErrorCode::FencedLeaderEpoch => 74,
            ErrorCode::UnknownLeaderEpoch => 75,
            ErrorCode::InconsistentVoterSet => 94,
            ErrorCode::SnapshotNotFound => 98,
            ErrorCode::PositionOutOfRange => 99,
        }
    }
}

/// What a log entry carries. KRaft writes a LeaderChange control record when a leader is
/// elected: it is the first entry of the epoch, so the leader has something of its own epoch
/// to commit (a leader never commits older epochs' entries by counting replicas).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    LeaderChange,
    Data,
}

/// One record of the metadata log. Its offset is its position in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub epoch: Epoch,
    pub kind: EntryKind,
    pub data: Bytes,
}

impl Entry {
    /// Bytes an entry counts against fetch limits: its payload plus a fixed record overhead,
    /// so that empty entries still use up budget.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + 16
    }
}

/// Kafka's SnapshotId: the snapshot holds every entry below `end_offset`; `epoch` is the epoch
/// of the entry at `end_offset - 1` (0 for the empty log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SnapshotId {
    pub end_offset: Offset,
    pub epoch: Epoch,
}

/// A snapshot of the applied state, produced by the caller's state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub id: SnapshotId,
    pub data: Bytes,
}

/// FetchResponse's CurrentLeader / Vote's leader fields. `leader_id: None` is Kafka's -1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderIdAndEpoch {
    pub leader_id: Option<NodeId>,
    pub leader_epoch: Epoch,
}

/// FetchResponse's DivergingEpoch: the leader's end offset of the largest epoch not above the
/// follower's last fetched epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEndOffset {
    pub epoch: Epoch,
    pub end_offset: Offset,
}

/// VoteRequest (v2, with KIP-996's PreVote).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteRequest {
    /// `replica_epoch`: the epoch the candidate stands in (for a pre-vote, the epoch it
    /// would stand in).
    pub candidate_epoch: Epoch,
    /// `replica_id`.
    pub candidate_id: NodeId,
    pub last_offset_epoch: Epoch,
    /// The candidate's log end offset.
    pub last_offset: Offset,
    pub pre_vote: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoteResponse {
    pub error: ErrorCode,
    /// The voter's current epoch and the leader it knows in it.
    pub leader_id: Option<NodeId>,
    pub leader_epoch: Epoch,
    pub vote_granted: bool,
    /// Echo of the request's `pre_vote`.
    pub pre_vote: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeginQuorumEpochRequest {
    pub leader_id: NodeId,
    pub leader_epoch: Epoch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BeginQuorumEpochResponse {
    pub error: ErrorCode,
    pub leader_id: Option<NodeId>,
    pub leader_epoch: Epoch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndQuorumEpochRequest {
    pub leader_id: NodeId,
    pub leader_epoch: Epoch,
    /// Voters in the order the resigning leader prefers them as successors (most caught-up
    /// first); the first ones time out sooner.
    pub preferred_successors: Vec<NodeId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndQuorumEpochResponse {
    pub error: ErrorCode,
    pub leader_id: Option<NodeId>,
    pub leader_epoch: Epoch,
}

/// FetchRequest for the metadata partition (replica fetch: `replica_id` is the sender).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    pub replica_id: NodeId,
    pub current_leader_epoch: Epoch,
    /// The fetcher's log end offset: everything below is persisted on the fetcher.
    pub fetch_offset: Offset,
    /// Epoch of the fetcher's entry at `fetch_offset - 1`.
    pub last_fetched_epoch: Epoch,
    pub log_start_offset: Offset,
    /// `max_wait_ms` in ticks: how long the leader may hold a caught-up fetch.
    pub max_wait_ticks: u32,
    /// `partition_max_bytes`.
    pub max_bytes: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchResponse {
    pub error: ErrorCode,
    pub high_watermark: Offset,
    pub log_start_offset: Offset,
    pub diverging_epoch: Option<EpochEndOffset>,
    pub current_leader: LeaderIdAndEpoch,
    /// Set when the fetch offset is below the leader's log start: fetch this snapshot.
    pub snapshot_id: Option<SnapshotId>,
    /// Entries from `fetch_offset` on (the `records` field).
    pub records: Vec<Entry>,
    /// Echo of the request's `fetch_offset`.
    pub fetch_offset: Offset,
    /// Echo of the request's `last_fetched_epoch`.
    pub last_fetched_epoch: Epoch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchSnapshotRequest {
    pub replica_id: NodeId,
    pub current_leader_epoch: Epoch,
    pub snapshot_id: SnapshotId,
    pub position: i64,
    pub max_bytes: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchSnapshotResponse {
    pub error: ErrorCode,
    pub snapshot_id: SnapshotId,
    pub current_leader: LeaderIdAndEpoch,
    /// Total size of the snapshot in bytes.
    pub size: i64,
    /// Where `unaligned_records` starts in the snapshot.
    pub position: i64,
    pub unaligned_records: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    VoteRequest(VoteRequest),
    VoteResponse(VoteResponse),
    BeginQuorumEpochRequest(BeginQuorumEpochRequest),
    BeginQuorumEpochResponse(BeginQuorumEpochResponse),
    EndQuorumEpochRequest(EndQuorumEpochRequest),
    EndQuorumEpochResponse(EndQuorumEpochResponse),
    FetchRequest(FetchRequest),
    FetchResponse(FetchResponse),
    FetchSnapshotRequest(FetchSnapshotRequest),
    FetchSnapshotResponse(FetchSnapshotResponse),
}

/// A message and its addressing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub message: Message,
}
