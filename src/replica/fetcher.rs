//! Follower fetchers (Kafka's `ReplicaFetcherThread`): one task per leader broker fetches
//! every partition this node follows from that leader in one Fetch request (replica id =
//! this node), appends what it gets as the leader wrote it, and learns the high watermark.
//!
//! Divergence (KIP-101 / KIP-595): each partition's fetch carries the epoch of the last batch
//! in the follower's log; a leader whose log differs there answers with a `DivergingEpoch`
//! (its end offset for that epoch), and the follower truncates to the smaller of that and its
//! own end offset for the epoch, then fetches again. A follower below the leader's log start
//! starts over at it; one above the leader's log end truncates to the high watermark.
//!
//! A fetcher stops when it has nothing left to fetch from its leader; [`Fetchers::ensure`]
//! starts the ones the current assignment needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::now_ms;
use crate::controller::peer::PeerClient;

use super::{FollowedPartition, PartitionLog, ReplicaManager};

/// Fetch v12: topics by name, `last_fetched_epoch` and `DivergingEpoch`, `replica_id` field.
const FETCH_VERSION: i16 = 12;
/// How long the leader may hold a fetch that finds no new data (`replica.fetch.wait.max.ms`).
const FETCH_WAIT_MAX_MS: i32 = 500;
/// Bytes per partition per fetch (`replica.fetch.max.bytes`).
const PARTITION_FETCH_BYTES_MAX: i32 = 1024 * 1024;
/// Bytes per fetch response (`replica.fetch.response.max.bytes`).
const RESPONSE_BYTES_MAX: i32 = 10 * 1024 * 1024;
/// Pause after a failed fetch or a partition error (`replica.fetch.backoff.ms`, lowered:
/// the metadata that resolves most errors arrives within milliseconds here).
const BACKOFF: Duration = Duration::from_millis(200);
/// A fetch that waits `FETCH_WAIT_MAX_MS` on the leader plus this is late: retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a broker is reached: `host:port` of its first listener, if registered.
pub type AddressOf = Arc<dyn Fn(i32) -> Option<String> + Send + Sync>;

/// The running fetchers by leader id.
#[derive(Default)]
pub struct Fetchers {
    running: Mutex<HashMap<i32, JoinHandle<()>>>,
}

impl Fetchers {
    /// Starts a fetcher for every leader this node follows partitions of and has none for.
    /// Call on a runtime.
    pub fn ensure(
        &self,
        replicas: &Arc<ReplicaManager>,
        address_of: &AddressOf,
        shutdown: &watch::Receiver<bool>,
    ) {
        let leaders = replicas.followed_leaders();
        let mut running = self.running.lock().expect("fetchers lock");
        running.retain(|_, handle| !handle.is_finished());
        for leader in leaders {
            if leader == replicas.node_id() || running.contains_key(&leader) {
                continue;
            }
            let task = run(
                replicas.clone(),
                leader,
                address_of.clone(),
                shutdown.clone(),
            );
            running.insert(leader, tokio::spawn(task));
        }
    }
}

/// One leader's fetcher: fetches until no partition of that leader is followed here.
async fn run(
    replicas: Arc<ReplicaManager>,
    leader_id: i32,
    address_of: AddressOf,
    mut shutdown: watch::Receiver<bool>,
) {
    let node_id = replicas.node_id();
    let mut client: Option<PeerClient> = None;
    tracing::info!(leader_id, "replica fetcher started");
    loop {
        if *shutdown.borrow() {
            return;
        }
        let partitions = replicas.followed_from(leader_id);
        if partitions.is_empty() {
            tracing::info!(leader_id, "replica fetcher stopped: nothing to follow");
            return;
        }
        let Some(address) = address_of(leader_id) else {
            pause(&mut shutdown).await;
            continue;
        };
        if client.as_ref().is_none_or(|c| c.address() != address) {
            client = Some(PeerClient::with_timeout(
                address,
                format!("dlog-replica-fetcher-{node_id}"),
                REQUEST_TIMEOUT,
            ));
        }
        // The next fetch's offsets tell the leader what this replica has: with `flush.messages`
        // owing a flush, only once the flusher made it durable (as when the append fsynced).
        if !wait_flushed(&replicas, &partitions, &mut shutdown).await {
            return;
        }
        // KIP-73: throttled partitions this replica is out of sync on wait while the
        // follower replication rate is over its quota; with none left, the fetcher pauses.
        let quota = &replicas.replication_quotas.follower;
        let now_ms = super::replication_quota::now_ms();
        let partitions: Vec<FollowedPartition> = partitions
            .into_iter()
            .filter(|p| {
                !quota.holds_back(
                    &p.topic,
                    p.partition,
                    || p.replication.isr().contains(&node_id),
                    now_ms,
                )
            })
            .collect();
        if partitions.is_empty() {
            pause(&mut shutdown).await;
            continue;
        }
        let request = fetch_request(node_id, &partitions);
        let sent = client
            .as_ref()
            .expect("client")
            .send(FETCH_VERSION, &request);
        let response = tokio::select! {
            response = sent => response,
            _ = shutdown.changed() => return,
        };
        let response = match response {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(leader_id, %error, "replica fetch failed");
                client = None;
                pause(&mut shutdown).await;
                continue;
            }
        };
        let mut back_off = response.error_code != 0;
        for topic in response.responses {
            for data in topic.partitions {
                let Some(followed) = partitions.iter().find(|p| {
                    p.topic == topic.topic.as_str() && p.partition == data.partition_index
                }) else {
                    continue;
                };
                back_off |= !apply(&replicas, followed, &data);
                if quota.is_throttled(&followed.topic, followed.partition) {
                    let bytes = data.records.as_ref().map_or(0, |r| r.len() as u64);
                    quota.record(bytes, super::replication_quota::now_ms());
                }
            }
        }
        if back_off {
            pause(&mut shutdown).await;
        }
    }
}

/// Waits until every followed log may acknowledge its whole length (no flush owed); false on
/// shutdown.
async fn wait_flushed(
    replicas: &ReplicaManager,
    partitions: &[FollowedPartition],
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        let flushed = replicas.appended();
        tokio::pin!(flushed);
        flushed.as_mut().enable();
        let owed = partitions.iter().any(|p| {
            !p.log.flush_failed()
                && p.log.acknowledgeable_end_offset() < p.log.offsets().log_end_offset
        });
        if !owed {
            return true;
        }
        tokio::select! {
            _ = flushed => {}
            _ = shutdown.changed() => return false,
        }
    }
}

async fn pause(shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(BACKOFF) => {}
        _ = shutdown.changed() => {}
    }
}

fn fetch_request(node_id: i32, partitions: &[FollowedPartition]) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for followed in partitions {
        let offsets = followed.log.offsets();
        let partition = FetchPartition::default()
            .with_partition(followed.partition)
            .with_current_leader_epoch(followed.leader_epoch)
            .with_fetch_offset(offsets.log_end_offset)
            .with_last_fetched_epoch(followed.log.latest_epoch())
            .with_log_start_offset(offsets.log_start_offset)
            .with_partition_max_bytes(PARTITION_FETCH_BYTES_MAX);
        match topics.last_mut() {
            Some(topic) if topic.topic.as_str() == followed.topic => {
                topic.partitions.push(partition)
            }
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(followed.topic.clone())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(node_id))
        .with_max_wait_ms(FETCH_WAIT_MAX_MS)
        .with_min_bytes(1)
        .with_max_bytes(RESPONSE_BYTES_MAX)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// Applies one partition's answer to the follower's log. Returns false when the fetcher
/// should back off before asking again (an error the metadata will resolve).
fn apply(
    replicas: &ReplicaManager,
    followed: &FollowedPartition,
    data: &kafka_protocol::messages::fetch_response::PartitionData,
) -> bool {
    // The assignment may have changed while the fetch was out: only a partition still
    // followed in the same epoch takes its answer.
    if replicas.role(&followed.topic, followed.partition)
        != Some((super::Role::Follower, followed.leader_epoch))
    {
        return true;
    }
    let log = &followed.log;
    let topic = followed.topic.as_str();
    let partition = followed.partition;
    let error = ResponseError::try_from_code(data.error_code);
    let outcome: std::io::Result<()> = match error {
        None if data.diverging_epoch.epoch >= 0 => {
            let diverging = &data.diverging_epoch;
            let target = truncation_target(log, diverging.epoch, diverging.end_offset);
            tracing::info!(
                topic,
                partition,
                leader_epoch = diverging.epoch,
                leader_end_offset = diverging.end_offset,
                target,
                "follower log diverged from the leader's: truncating"
            );
            log.truncate_to(target).map(|_| ())
        }
        None => {
            let records = data
                .records
                .as_ref()
                .map(|r| whole_batches(r))
                .filter(|r| !r.is_empty());
            let appended = match records {
                Some(records) => log.append_as_follower(records, now_ms()).map(|_| ()),
                None => Ok(()),
            };
            match appended {
                Ok(()) => {
                    let offsets = log.offsets();
                    let moved = followed
                        .replication
                        .follower_learned(data.high_watermark, offsets.log_end_offset);
                    if moved {
                        // Consumers reading from this follower (KIP-392) wait for it.
                        replicas.notify_appended();
                    }
                    // DeleteRecords and retention on the leader: the follower's log start
                    // follows (as far as its own log reaches).
                    let leader_log_start = data.log_start_offset.min(offsets.log_end_offset);
                    if leader_log_start > offsets.log_start_offset {
                        if let Err(error) =
                            replicas
                                .logs()
                                .delete_records(log, leader_log_start, now_ms())
                        {
                            tracing::warn!(topic, partition, %error, "follower log start not moved");
                        }
                    }
                    return true;
                }
                Err(error) => {
                    tracing::warn!(topic, partition, %error, "follower append failed");
                    return false;
                }
            }
        }
        Some(ResponseError::OffsetOutOfRange) => {
            let offsets = log.offsets();
            if offsets.log_end_offset < data.log_start_offset {
                // Behind the leader's log start: nothing to keep, start over there.
                tracing::warn!(
                    topic,
                    partition,
                    leader_log_start = data.log_start_offset,
                    "follower below the leader's log start: starting over"
                );
                log.reset_to(data.log_start_offset)
            } else {
                // Ahead of the leader's log end: what is above the high watermark may be
                // uncommitted; drop it and fetch again.
                log.truncate_to(data.high_watermark.max(offsets.log_start_offset))
                    .map(|_| ())
            }
        }
        Some(error) => {
            tracing::debug!(topic, partition, ?error, "replica fetch partition error");
            return false;
        }
    };
    if let Err(error) = outcome {
        tracing::error!(topic, partition, %error, "follower truncation failed");
        return false;
    }
    true
}

/// Where a follower truncates when its leader says its log diverged at (`leader_epoch`,
/// `leader_end_offset`): the smaller of that end offset and where the follower's own log
/// ends that epoch (or the largest epoch below it it has) — KIP-101/KIP-279.
///
/// A leader that knows no epoch at or below the follower's last one answers (-1, -1): its
/// cache is empty, or the follower's last epoch is newer than any the leader appended in (a
/// new leader records its epoch only with its first append). The leader never had that
/// epoch, so none of its records is committed: the follower drops the whole epoch and asks
/// again with the one before (KIP-279 walks back the same way), until the leader knows its
/// last epoch or its log is empty; never below its log start (-1 would restart the log
/// there).
pub fn truncation_target(log: &PartitionLog, leader_epoch: i32, leader_end_offset: i64) -> i64 {
    let offsets = log.offsets();
    if leader_epoch < 0 || leader_end_offset < 0 {
        let latest_epoch_start = log.leader_epochs().last().map(|entry| entry.start_offset);
        return latest_epoch_start
            .unwrap_or(offsets.log_start_offset)
            .max(offsets.log_start_offset);
    }
    let (local_epoch, local_end) = log.end_offset_for_leader_epoch(leader_epoch);
    match local_epoch {
        -1 => leader_end_offset.min(log.offsets().log_end_offset),
        _ => leader_end_offset.min(local_end),
    }
}

/// The whole batches at the start of a fetch answer's records. A leader fills a partition's
/// byte budget from the log file as it is, so the answer may end in part of a batch (KIP-74;
/// Kafka's readers skip it): appending that part would fail the same way on every retry, and
/// a follower lagging more than a fetch's worth in one segment would never catch up. The
/// cut batch comes whole in the next fetch.
pub fn whole_batches(records: &[u8]) -> &[u8] {
    // Each batch starts with its base offset (8 bytes) and the length of the rest (4 bytes).
    const LENGTH_END: usize = 12;
    let mut end = 0;
    while let Some(length_bytes) = records.get(end + 8..end + LENGTH_END) {
        let length = i32::from_be_bytes(length_bytes.try_into().expect("4 bytes"));
        let Some(next) = usize::try_from(length)
            .ok()
            .and_then(|length| (end + LENGTH_END).checked_add(length))
            .filter(|next| *next <= records.len())
        else {
            break;
        };
        end = next;
    }
    &records[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::builder::BatchBuilder;

    #[test]
    fn a_partial_batch_at_the_end_of_a_fetch_answer_is_left_for_the_next_fetch() {
        let batch = |value: &[u8]| BatchBuilder::new(0).record(None, Some(value), 0).build();
        let (first, second) = (batch(b"one"), batch(b"two"));
        let both = [first.clone(), second.clone()].concat();
        assert_eq!(whole_batches(&both), &both[..]);
        for cut in [1, 11, 12, 30, second.len() - 1] {
            let records = &both[..first.len() + cut];
            assert_eq!(
                whole_batches(records),
                &first[..],
                "cut {cut} bytes into the second"
            );
        }
        assert!(whole_batches(&first[..5]).is_empty());
        assert!(whole_batches(&[]).is_empty());
    }

    #[test]
    fn a_leader_that_knows_no_epoch_of_the_follower_makes_it_drop_its_latest_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::log::partition::tests::config(&[]);
        let log = PartitionLog::open(
            dir.path(),
            "t",
            0,
            config,
            crate::log::loader::Checkpoints::default(),
            false,
        )
        .unwrap();
        for epoch in [1, 3] {
            log.set_leader_epoch(epoch);
            for _ in 0..2 {
                let batch = BatchBuilder::new(0).record(None, Some(b"v"), 0).build();
                log.append(&batch, crate::clock::now_ms()).unwrap();
            }
        }
        // Leader answer (-1, -1): an empty leader, or one that never appended in epoch 3.
        assert_eq!(truncation_target(&log, -1, -1), 2, "epoch 3 (2..4) dropped");
        log.truncate_to(2).unwrap();
        assert_eq!(
            truncation_target(&log, -1, -1),
            0,
            "then epoch 1, never below 0"
        );
        // A known epoch: where it ends on the leader or here, whichever is smaller.
        assert_eq!(truncation_target(&log, 1, 1), 1);
    }
}
