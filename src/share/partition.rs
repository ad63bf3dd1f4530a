//! One share-partition (KIP-932, Kafka's `SharePartition`): which records of a topic partition
//! a share group has handed out, to whom, how often, and which are done with. A pure state
//! machine: the caller passes the time and the batches it read; nothing here does I/O.
//!
//! Every offset from the share-partition start offset (SPSO) up to the end offset (one past
//! the last offset ever acquired) is *in flight* and has a state: AVAILABLE (may be handed
//! out), ACQUIRED (locked by one member until its acquisition lock expires), ACKNOWLEDGED or
//! ARCHIVED (done). The SPSO moves past the finished prefix, so the in-flight window stays
//! `[start_offset, end_offset)` and its size is capped by `max_record_locks`. Offsets below
//! the SPSO are all done; offsets at or past the end offset were never handed out.

use std::collections::{BTreeMap, VecDeque};

/// A record's delivery state (Kafka's `RecordState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordState {
    Available,
    Acquired,
    Acknowledged,
    Archived,
}

/// What a consumer says about an acquired record (ShareFetch/ShareAcknowledge
/// `AcknowledgeTypes`: 0 gap, 1 accept, 2 release, 3 reject, 4 renew).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcknowledgeType {
    /// The offset holds no record (compaction, a control batch): finished without delivery.
    Gap,
    Accept,
    /// Give it back: available again for any member (or archived at the delivery limit).
    Release,
    /// Could not be processed: archived, never delivered again.
    Reject,
    /// KIP-1222: keep it and restart its acquisition lock.
    Renew,
}

impl AcknowledgeType {
    pub fn from_wire(value: i8) -> Option<AcknowledgeType> {
        Some(match value {
            0 => AcknowledgeType::Gap,
            1 => AcknowledgeType::Accept,
            2 => AcknowledgeType::Release,
            3 => AcknowledgeType::Reject,
            4 => AcknowledgeType::Renew,
            _ => return None,
        })
    }
}

/// Why an acknowledgement was refused (the partition's `AcknowledgeErrorCode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcknowledgeError {
    /// An offset in the range is not acquired by this member (never handed out, already
    /// acknowledged, its lock expired, or held by another member): INVALID_RECORD_STATE.
    InvalidRecordState,
    /// first > last, or a type list whose length is neither 1 nor the range's: INVALID_REQUEST.
    InvalidRequest,
}

/// The share-group settings a share-partition follows (`group.share.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareLimits {
    /// `group.share.record.lock.duration.ms`: how long an acquired record stays locked.
    pub record_lock_duration_ms: i64,
    /// `group.share.delivery.count.limit`: deliveries after which a record is archived
    /// instead of made available again.
    pub delivery_count_limit: u16,
    /// `group.share.partition.max.record.locks`: the in-flight window's size at most.
    pub max_record_locks: usize,
}

/// A contiguous range of acquired offsets with one delivery count (the response's
/// `AcquiredRecords`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcquiredRange {
    pub first_offset: i64,
    pub last_offset: i64,
    pub delivery_count: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct InFlight {
    state: RecordState,
    delivery_count: u16,
    /// The member holding the acquisition lock (only while ACQUIRED).
    owner: Option<String>,
    /// When the acquisition lock expires (only while ACQUIRED).
    lock_deadline_ms: i64,
}

/// Counts a state summary for describe tools and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub available: usize,
    pub acquired: usize,
    pub acknowledged: usize,
    pub archived: usize,
}

pub struct SharePartition {
    limits: ShareLimits,
    /// The share-partition start offset: every offset below it is finished.
    start_offset: i64,
    /// The in-flight window: entry i is offset `start_offset + i`. Its length is
    /// `end_offset - start_offset` and never exceeds `limits.max_record_locks`.
    in_flight: VecDeque<InFlight>,
}

impl SharePartition {
    /// A share-partition starting at `start_offset` (from `share.auto.offset.reset`, or the
    /// persisted SPSO), nothing in flight.
    pub fn new(start_offset: i64, limits: ShareLimits) -> SharePartition {
        assert!(
            limits.max_record_locks > 0,
            "a share-partition needs room for a record"
        );
        SharePartition {
            limits,
            start_offset: start_offset.max(0),
            in_flight: VecDeque::new(),
        }
    }

    pub fn start_offset(&self) -> i64 {
        self.start_offset
    }

    /// One past the last offset ever acquired.
    pub fn end_offset(&self) -> i64 {
        self.start_offset + self.in_flight.len() as i64
    }

    fn entry(&self, offset: i64) -> Option<&InFlight> {
        let index = offset.checked_sub(self.start_offset)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| self.in_flight.get(i))
    }

    fn entry_mut(&mut self, offset: i64) -> Option<&mut InFlight> {
        let index = offset.checked_sub(self.start_offset)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| self.in_flight.get_mut(i))
    }

    /// The state of one offset (finished below the SPSO, never handed out past the end).
    pub fn state_of(&self, offset: i64) -> Option<(RecordState, u16)> {
        self.entry(offset).map(|e| (e.state, e.delivery_count))
    }

    pub fn counts(&self) -> StateCounts {
        let mut counts = StateCounts::default();
        for entry in &self.in_flight {
            match entry.state {
                RecordState::Available => counts.available += 1,
                RecordState::Acquired => counts.acquired += 1,
                RecordState::Acknowledged => counts.acknowledged += 1,
                RecordState::Archived => counts.archived += 1,
            }
        }
        counts
    }

    /// Where a fetch for this share-partition should read from: the first AVAILABLE
    /// in-flight offset, else the end offset. None when nothing could be acquired now (no
    /// available record and the window is full).
    pub fn next_fetch_offset(&self) -> Option<i64> {
        if let Some(index) = self
            .in_flight
            .iter()
            .position(|e| e.state == RecordState::Available)
        {
            return Some(self.start_offset + index as i64);
        }
        (self.in_flight.len() < self.limits.max_record_locks).then(|| self.end_offset())
    }

    /// The log start moved past the SPSO (retention, DeleteRecords): those records are gone,
    /// so the share-partition starts there.
    pub fn advance_to_log_start(&mut self, log_start_offset: i64) {
        while self.start_offset < log_start_offset {
            if self.in_flight.pop_front().is_none() {
                self.start_offset = log_start_offset;
                return;
            }
            self.start_offset += 1;
        }
    }

    /// Expires acquisition locks due at `now_ms`: the record becomes AVAILABLE again, or
    /// ARCHIVED once it was delivered `delivery_count_limit` times. Returns how many expired.
    pub fn expire_locks(&mut self, now_ms: i64) -> usize {
        let limit = self.limits.delivery_count_limit;
        let mut expired = 0;
        for entry in self.in_flight.iter_mut() {
            if entry.state == RecordState::Acquired && entry.lock_deadline_ms <= now_ms {
                release_entry(entry, limit);
                expired += 1;
            }
        }
        if expired > 0 {
            self.advance_start();
        }
        expired
    }

    /// The earliest acquisition lock deadline, if any record is acquired.
    pub fn next_lock_deadline_ms(&self) -> Option<i64> {
        self.in_flight
            .iter()
            .filter(|e| e.state == RecordState::Acquired)
            .map(|e| e.lock_deadline_ms)
            .min()
    }

    /// Acquires for `member` the offsets of the batches read (`(base offset, last offset)`
    /// in log order, read from `next_fetch_offset()`) that may be handed out: AVAILABLE
    /// in-flight records and records past the end offset, while the window has room, at most
    /// `max_records` (rounded up to the end of a batch, as Kafka's batch-optimized mode does,
    /// so a consumer does not receive a batch it holds only part of). Returns the acquired
    /// ranges, each with one delivery count.
    pub fn acquire(
        &mut self,
        member: &str,
        batches: &[(i64, i64)],
        max_records: usize,
        now_ms: i64,
    ) -> Vec<AcquiredRange> {
        let deadline_ms = now_ms.saturating_add(self.limits.record_lock_duration_ms);
        let mut acquired: Vec<AcquiredRange> = Vec::new();
        let mut count = 0usize;
        for &(base_offset, last_offset) in batches {
            if count >= max_records.max(1) {
                break;
            }
            let first = base_offset.max(self.start_offset);
            if last_offset < first {
                continue;
            }
            for offset in first..=last_offset {
                let delivery_count = if offset < self.end_offset() {
                    let entry = self.entry_mut(offset).expect("inside the window");
                    if entry.state != RecordState::Available {
                        continue;
                    }
                    entry.delivery_count = entry.delivery_count.saturating_add(1);
                    entry.state = RecordState::Acquired;
                    entry.owner = Some(member.to_string());
                    entry.lock_deadline_ms = deadline_ms;
                    entry.delivery_count
                } else {
                    if self.in_flight.len() >= self.limits.max_record_locks {
                        break;
                    }
                    if offset > self.end_offset() {
                        // A hole between the end offset and this batch (compacted away, or
                        // the batch list skipped): those offsets hold nothing to deliver.
                        let gap = (offset - self.end_offset()) as usize;
                        if self.in_flight.len() + gap >= self.limits.max_record_locks {
                            break;
                        }
                        for _ in 0..gap {
                            self.in_flight.push_back(InFlight {
                                state: RecordState::Archived,
                                delivery_count: 0,
                                owner: None,
                                lock_deadline_ms: 0,
                            });
                        }
                    }
                    self.in_flight.push_back(InFlight {
                        state: RecordState::Acquired,
                        delivery_count: 1,
                        owner: Some(member.to_string()),
                        lock_deadline_ms: deadline_ms,
                    });
                    1
                };
                count += 1;
                match acquired.last_mut() {
                    Some(last)
                        if last.last_offset + 1 == offset
                            && last.delivery_count == delivery_count =>
                    {
                        last.last_offset = offset
                    }
                    _ => acquired.push(AcquiredRange {
                        first_offset: offset,
                        last_offset: offset,
                        delivery_count,
                    }),
                }
            }
        }
        self.advance_start();
        acquired
    }

    /// Applies one acknowledgement batch of `member`: `types` holds one type for the whole
    /// range or one per offset. All-or-nothing: if any offset is not acquired by `member`,
    /// nothing changes.
    pub fn acknowledge(
        &mut self,
        member: &str,
        first_offset: i64,
        last_offset: i64,
        types: &[AcknowledgeType],
        now_ms: i64,
    ) -> Result<(), AcknowledgeError> {
        if first_offset > last_offset || first_offset < 0 {
            return Err(AcknowledgeError::InvalidRequest);
        }
        let length = last_offset - first_offset + 1;
        if types.is_empty() || (types.len() != 1 && types.len() as i64 != length) {
            return Err(AcknowledgeError::InvalidRequest);
        }
        if first_offset < self.start_offset || last_offset >= self.end_offset() {
            return Err(AcknowledgeError::InvalidRecordState);
        }
        for offset in first_offset..=last_offset {
            let entry = self.entry(offset).expect("inside the window");
            let kind = types[if types.len() == 1 {
                0
            } else {
                (offset - first_offset) as usize
            }];
            // A gap may name an offset the member was handed as part of its batch; anything
            // else must be held by the member.
            let held =
                entry.state == RecordState::Acquired && entry.owner.as_deref() == Some(member);
            if !held && !(kind == AcknowledgeType::Gap && entry.state == RecordState::Archived) {
                return Err(AcknowledgeError::InvalidRecordState);
            }
        }
        let limit = self.limits.delivery_count_limit;
        let lock_ms = self.limits.record_lock_duration_ms;
        for offset in first_offset..=last_offset {
            let kind = types[if types.len() == 1 {
                0
            } else {
                (offset - first_offset) as usize
            }];
            let entry = self.entry_mut(offset).expect("inside the window");
            match kind {
                AcknowledgeType::Accept => finish(entry, RecordState::Acknowledged),
                AcknowledgeType::Gap | AcknowledgeType::Reject => {
                    finish(entry, RecordState::Archived)
                }
                AcknowledgeType::Release => release_entry(entry, limit),
                AcknowledgeType::Renew => {
                    entry.lock_deadline_ms = now_ms.saturating_add(lock_ms);
                }
            }
        }
        self.advance_start();
        Ok(())
    }

    /// Releases every record `member` holds (its share session closed or it left the group).
    /// Returns how many were released.
    pub fn release_member(&mut self, member: &str) -> usize {
        let limit = self.limits.delivery_count_limit;
        let mut released = 0;
        for entry in self.in_flight.iter_mut() {
            if entry.state == RecordState::Acquired && entry.owner.as_deref() == Some(member) {
                release_entry(entry, limit);
                released += 1;
            }
        }
        self.advance_start();
        released
    }

    /// Moves the SPSO past the finished prefix of the window.
    fn advance_start(&mut self) {
        while let Some(front) = self.in_flight.front() {
            if !matches!(
                front.state,
                RecordState::Acknowledged | RecordState::Archived
            ) {
                break;
            }
            self.in_flight.pop_front();
            self.start_offset += 1;
        }
    }

    /// Ranges of offsets in each state, for describing the share-partition (and tests).
    pub fn ranges(&self) -> BTreeMap<i64, (i64, RecordState)> {
        let mut ranges: BTreeMap<i64, (i64, RecordState)> = BTreeMap::new();
        let mut current: Option<(i64, i64, RecordState)> = None;
        for (index, entry) in self.in_flight.iter().enumerate() {
            let offset = self.start_offset + index as i64;
            current = match current {
                Some((first, _, state)) if state == entry.state => Some((first, offset, state)),
                Some((first, last, state)) => {
                    ranges.insert(first, (last, state));
                    Some((offset, offset, entry.state))
                }
                None => Some((offset, offset, entry.state)),
            };
        }
        if let Some((first, last, state)) = current {
            ranges.insert(first, (last, state));
        }
        ranges
    }
}

fn finish(entry: &mut InFlight, state: RecordState) {
    entry.state = state;
    entry.owner = None;
    entry.lock_deadline_ms = 0;
}

/// An acquired record given back (released, its lock expired, its member gone): available
/// again unless it has been delivered as often as allowed.
fn release_entry(entry: &mut InFlight, delivery_count_limit: u16) {
    let state = if entry.delivery_count >= delivery_count_limit {
        RecordState::Archived
    } else {
        RecordState::Available
    };
    finish(entry, state);
}

#[cfg(test)]
mod tests {
    use super::*;
    use AcknowledgeType::*;

    fn limits() -> ShareLimits {
        ShareLimits {
            record_lock_duration_ms: 1000,
            delivery_count_limit: 3,
            max_record_locks: 10,
        }
    }

    fn range(first_offset: i64, last_offset: i64, delivery_count: u16) -> AcquiredRange {
        AcquiredRange {
            first_offset,
            last_offset,
            delivery_count,
        }
    }

    #[test]
    fn acquires_new_records_once_and_accept_moves_the_start() {
        let mut partition = SharePartition::new(0, limits());
        assert_eq!(partition.next_fetch_offset(), Some(0));
        let got = partition.acquire("a", &[(0, 2), (3, 4)], 100, 0);
        assert_eq!(got, vec![range(0, 4, 1)]);
        // A second member reading the same batches gets nothing: all are locked.
        assert!(partition.acquire("b", &[(0, 2), (3, 4)], 100, 0).is_empty());
        assert_eq!(partition.next_fetch_offset(), Some(5));
        partition.acknowledge("a", 0, 4, &[Accept], 0).unwrap();
        assert_eq!(partition.start_offset(), 5);
        assert_eq!(partition.counts(), StateCounts::default());
    }

    #[test]
    fn release_makes_records_available_with_a_higher_delivery_count() {
        let mut partition = SharePartition::new(0, limits());
        partition.acquire("a", &[(0, 3)], 100, 0);
        partition
            .acknowledge("a", 0, 3, &[Accept, Release, Release, Accept], 0)
            .unwrap();
        assert_eq!(partition.start_offset(), 1);
        assert_eq!(partition.next_fetch_offset(), Some(1));
        let got = partition.acquire("b", &[(0, 3)], 100, 0);
        assert_eq!(got, vec![range(1, 2, 2)]);
        assert_eq!(partition.state_of(3), Some((RecordState::Acknowledged, 1)));
    }

    #[test]
    fn an_expired_lock_redelivers_and_the_limit_archives() {
        let mut partition = SharePartition::new(0, limits());
        for delivery in 1..=3u16 {
            let now_ms = (delivery as i64 - 1) * 2000;
            assert_eq!(partition.expire_locks(now_ms), usize::from(delivery > 1));
            assert_eq!(
                partition.acquire("a", &[(0, 0)], 100, now_ms),
                vec![range(0, 0, delivery)]
            );
            assert_eq!(partition.next_lock_deadline_ms(), Some(now_ms + 1000));
        }
        // The third delivery's lock expires: delivered 3 times, the limit: archived.
        partition.expire_locks(10_000);
        assert_eq!(partition.start_offset(), 1);
        assert!(partition.acquire("a", &[(0, 0)], 100, 10_000).is_empty());
    }

    #[test]
    fn reject_archives_and_a_late_acknowledgement_is_refused() {
        let mut partition = SharePartition::new(0, limits());
        partition.acquire("a", &[(0, 1)], 100, 0);
        partition.acknowledge("a", 0, 0, &[Reject], 0).unwrap();
        assert_eq!(partition.start_offset(), 1);
        partition.expire_locks(1000);
        // Offset 1's lock expired: acknowledging it now is refused, nothing changes.
        assert_eq!(
            partition.acknowledge("a", 1, 1, &[Accept], 1000),
            Err(AcknowledgeError::InvalidRecordState)
        );
        assert_eq!(partition.state_of(1), Some((RecordState::Available, 1)));
    }

    #[test]
    fn acknowledgements_of_other_members_or_unacquired_offsets_are_refused() {
        let mut partition = SharePartition::new(10, limits());
        partition.acquire("a", &[(10, 12)], 100, 0);
        assert_eq!(
            partition.acknowledge("b", 10, 10, &[Accept], 0),
            Err(AcknowledgeError::InvalidRecordState)
        );
        assert_eq!(
            partition.acknowledge("a", 11, 13, &[Accept], 0),
            Err(AcknowledgeError::InvalidRecordState)
        );
        assert_eq!(
            partition.acknowledge("a", 5, 5, &[Accept], 0),
            Err(AcknowledgeError::InvalidRecordState)
        );
        assert_eq!(
            partition.acknowledge("a", 12, 11, &[Accept], 0),
            Err(AcknowledgeError::InvalidRequest)
        );
        assert_eq!(
            partition.acknowledge("a", 10, 12, &[Accept, Accept], 0),
            Err(AcknowledgeError::InvalidRequest)
        );
        assert_eq!(partition.counts().acquired, 3);
    }

    #[test]
    fn the_window_is_bounded_by_max_record_locks() {
        let mut partition = SharePartition::new(0, limits());
        let got = partition.acquire("a", &[(0, 99)], 1000, 0);
        assert_eq!(got, vec![range(0, 9, 1)]);
        assert_eq!(partition.next_fetch_offset(), None);
        partition.acknowledge("a", 0, 4, &[Accept], 0).unwrap();
        assert_eq!(partition.next_fetch_offset(), Some(10));
        assert_eq!(
            partition.acquire("a", &[(10, 99)], 1000, 0),
            vec![range(10, 14, 1)]
        );
    }

    #[test]
    fn max_records_stops_at_a_batch_boundary() {
        let mut partition = SharePartition::new(0, limits());
        let got = partition.acquire("a", &[(0, 2), (3, 5)], 2, 0);
        assert_eq!(got, vec![range(0, 2, 1)]);
    }

    #[test]
    fn release_member_and_renew() {
        let mut partition = SharePartition::new(0, limits());
        partition.acquire("a", &[(0, 1)], 100, 0);
        partition.acknowledge("a", 0, 0, &[Renew], 900).unwrap();
        partition.expire_locks(1000);
        assert_eq!(partition.state_of(0), Some((RecordState::Acquired, 1)));
        assert_eq!(partition.state_of(1), Some((RecordState::Available, 1)));
        assert_eq!(partition.release_member("a"), 1);
        assert_eq!(
            partition.acquire("b", &[(0, 1)], 100, 0),
            vec![range(0, 1, 2)]
        );
    }

    #[test]
    fn gaps_and_log_start_moves() {
        let mut partition = SharePartition::new(0, limits());
        // Offsets 2..=3 were compacted away: archived, and a gap acknowledgement of them is fine.
        assert_eq!(
            partition.acquire("a", &[(0, 1), (4, 4)], 100, 0),
            vec![range(0, 1, 1), range(4, 4, 1)]
        );
        partition
            .acknowledge("a", 0, 4, &[Accept, Accept, Gap, Gap, Accept], 0)
            .unwrap();
        assert_eq!(partition.start_offset(), 5);
        partition.advance_to_log_start(8);
        assert_eq!(partition.start_offset(), 8);
        assert_eq!(partition.next_fetch_offset(), Some(8));
    }
}
