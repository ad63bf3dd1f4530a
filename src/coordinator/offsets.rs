//! A group's committed offsets: the in-memory view of its OffsetCommit records.
//!
//! Its size is bounded by the partitions that exist: commits are accepted only for partitions
//! of existing topics.

use std::collections::BTreeMap;

use super::records::OffsetValue;

#[derive(Default)]
pub struct OffsetStore {
    /// (topic, partition) → the latest commit; ordered, so fetches list topics in order.
    offsets: BTreeMap<(String, i32), OffsetValue>,
}

impl OffsetStore {
    pub fn get(&self, topic: &str, partition: i32) -> Option<&OffsetValue> {
        self.offsets.get(&(topic.to_string(), partition))
    }

    pub fn put(&mut self, topic: &str, partition: i32, value: OffsetValue) {
        self.offsets.insert((topic.to_string(), partition), value);
    }

    pub fn remove(&mut self, topic: &str, partition: i32) -> Option<OffsetValue> {
        self.offsets.remove(&(topic.to_string(), partition))
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Every commit, ordered by topic then partition.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, &OffsetValue)> {
        self.offsets
            .iter()
            .map(|((topic, partition), value)| (topic.as_str(), *partition, value))
    }

    pub fn has_topic(&self, topic: &str) -> bool {
        self.offsets
            .range((topic.to_string(), i32::MIN)..=(topic.to_string(), i32::MAX))
            .next()
            .is_some()
    }

    /// Offsets of an empty group older than the retention (offsets.retention.minutes),
    /// counted from the later of the commit and the moment the group became empty, as Kafka
    /// does. Returns what it removed.
    pub fn expire(
        &mut self,
        retention_ms: i64,
        empty_since_ms: i64,
        now_ms: i64,
    ) -> Vec<(String, i32)> {
        let expired: Vec<(String, i32)> = self
            .offsets
            .iter()
            .filter(|(_, v)| now_ms - v.commit_timestamp_ms.max(empty_since_ms) >= retention_ms)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &expired {
            self.offsets.remove(key);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(offset: i64, at: i64) -> OffsetValue {
        OffsetValue {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: at,
        }
    }

    #[test]
    fn expiry_counts_from_the_later_of_commit_and_empty() {
        let mut store = OffsetStore::default();
        store.put("t", 0, value(1, 100));
        store.put("t", 1, value(2, 500));
        assert!(store.expire(1000, 0, 1000).is_empty());
        assert_eq!(store.expire(1000, 0, 1100), vec![("t".to_string(), 0)]);
        assert!(store.expire(1000, 2000, 2500).is_empty());
        assert_eq!(store.expire(1000, 2000, 3000).len(), 1);
        assert!(store.is_empty());
    }
}
