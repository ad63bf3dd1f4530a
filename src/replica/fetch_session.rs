//! Fetch sessions (KIP-227): a client's incremental fetches name only the partitions that
//! changed, and the broker answers only with partitions that have news. The cache is bounded
//! (Kafka's `max.incremental.fetch.session.cache.slots`) and evicts the least recently used.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use indexmap::IndexMap;
use kafka_protocol::ResponseError;
use uuid::Uuid;

/// Sessions kept at once; the least recently used is evicted beyond it.
const SESSIONS_MAX: usize = 1000;
/// Session epoch that opens a new session / closes one (KIP-227).
const INITIAL_EPOCH: i32 = 0;
const FINAL_EPOCH: i32 = -1;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct PartitionKey {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
}

#[derive(Clone, Copy, Debug)]
pub struct PartitionState {
    pub fetch_offset: i64,
    pub max_bytes: i32,
    /// The leader epoch the fetcher believes current (-1: not checked).
    pub current_leader_epoch: i32,
    /// A follower's epoch of its last fetched batch (-1: none), for divergence (KIP-595).
    pub last_fetched_epoch: i32,
    /// A follower's log start offset (-1 from consumers): where a consumer may be sent to
    /// read it from (KIP-392).
    pub replica_log_start_offset: i64,
    /// What the client was last told, to decide whether an incremental response includes it.
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// What one fetch reads once the request is applied to its session.
pub struct SessionView {
    /// 0: no session (a full fetch).
    pub session_id: i32,
    /// Incremental: only partitions that changed are answered.
    pub incremental: bool,
    pub partitions: Vec<(PartitionKey, PartitionState)>,
}

/// What the session needs to know of one partition's answer.
pub struct Answered {
    pub has_records: bool,
    /// The answer names a preferred read replica (KIP-392): the client must see it.
    pub redirected: bool,
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

struct Session {
    next_epoch: i32,
    partitions: IndexMap<PartitionKey, PartitionState>,
}

#[derive(Default)]
struct SessionCache {
    sessions: HashMap<i32, Session>,
    /// Least recently used first.
    recency: VecDeque<i32>,
    last_id: i32,
}

#[derive(Default)]
pub struct FetchSessions {
    cache: Mutex<SessionCache>,
}

impl SessionCache {
    fn touch(&mut self, id: i32) {
        self.recency.retain(|&other| other != id);
        self.recency.push_back(id);
    }

    fn remove(&mut self, id: i32) {
        self.sessions.remove(&id);
        self.recency.retain(|&other| other != id);
    }

    fn insert(&mut self, partitions: IndexMap<PartitionKey, PartitionState>) -> i32 {
        while self.sessions.len() >= SESSIONS_MAX {
            let Some(oldest) = self.recency.pop_front() else {
                break;
            };
            self.sessions.remove(&oldest);
        }
        loop {
            self.last_id = self.last_id.wrapping_add(1).max(1);
            if !self.sessions.contains_key(&self.last_id) {
                break;
            }
        }
        let id = self.last_id;
        self.sessions.insert(
            id,
            Session {
                next_epoch: 1,
                partitions,
            },
        );
        self.touch(id);
        id
    }
}

impl FetchSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, SessionCache> {
        self.cache.lock().expect("session cache lock")
    }

    /// Applies a fetch (v7+) to the session cache: opens, closes or continues a session.
    /// `forgotten` names partitions an incremental fetch drops. A top-level session error
    /// (unknown id, wrong epoch) is returned as the error code to answer with.
    pub fn update(
        &self,
        session_id: i32,
        session_epoch: i32,
        requested: Vec<(PartitionKey, PartitionState)>,
        forgotten: impl FnOnce() -> Vec<PartitionKey>,
    ) -> Result<SessionView, ResponseError> {
        let full = |session_id: i32, partitions| SessionView {
            session_id,
            incremental: false,
            partitions,
        };
        let mut cache = self.lock();
        match (session_id, session_epoch) {
            (0, FINAL_EPOCH) => Ok(full(0, requested)),
            (id, FINAL_EPOCH) => {
                cache.remove(id);
                Ok(full(0, requested))
            }
            (id, INITIAL_EPOCH) => {
                if id != 0 {
                    cache.remove(id);
                }
                let partitions: IndexMap<_, _> = requested.iter().cloned().collect();
                let new_id = cache.insert(partitions);
                Ok(full(new_id, requested))
            }
            (id, epoch) => {
                let session = cache
                    .sessions
                    .get_mut(&id)
                    .ok_or(ResponseError::FetchSessionIdNotFound)?;
                if session.next_epoch != epoch {
                    return Err(ResponseError::InvalidFetchSessionEpoch);
                }
                session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
                for key in forgotten() {
                    session.partitions.shift_remove(&key);
                }
                for (key, state) in &requested {
                    match session.partitions.get_mut(key) {
                        Some(existing) => {
                            existing.fetch_offset = state.fetch_offset;
                            existing.max_bytes = state.max_bytes;
                            existing.current_leader_epoch = state.current_leader_epoch;
                            existing.last_fetched_epoch = state.last_fetched_epoch;
                            existing.replica_log_start_offset = state.replica_log_start_offset;
                        }
                        None => {
                            session.partitions.insert(key.clone(), *state);
                        }
                    }
                }
                let partitions = session
                    .partitions
                    .iter()
                    .map(|(k, s)| (k.clone(), *s))
                    .collect();
                cache.touch(id);
                Ok(SessionView {
                    session_id: id,
                    incremental: true,
                    partitions,
                })
            }
        }
    }

    /// Keeps the answers the client must see (an incremental response drops partitions with
    /// no records, no error and nothing new) and records what it was told in the session.
    pub fn filter_answered<R>(
        &self,
        session_id: i32,
        incremental: bool,
        results: Vec<(PartitionKey, R)>,
        answered: impl Fn(&R) -> Answered,
    ) -> Vec<(PartitionKey, R)> {
        if session_id == 0 {
            return results;
        }
        let mut cache = self.lock();
        let mut session = cache.sessions.get_mut(&session_id);
        let mut included = Vec::with_capacity(results.len());
        for (key, result) in results {
            let answer = answered(&result);
            let cached = session
                .as_ref()
                .and_then(|s| s.partitions.get(&key))
                .copied();
            let changed = cached.is_none_or(|c| {
                c.high_watermark != answer.high_watermark
                    || c.log_start_offset != answer.log_start_offset
            });
            if !incremental
                || answer.has_records
                || answer.redirected
                || answer.error_code != 0
                || changed
            {
                if let Some(state) = session.as_mut().and_then(|s| s.partitions.get_mut(&key)) {
                    state.high_watermark = answer.high_watermark;
                    state.log_start_offset = answer.log_start_offset;
                }
                included.push((key, result));
            }
        }
        included
    }
}
