//! The coordinator runtime (Kafka's `CoordinatorRuntime`, much reduced): what a coordinator
//! sees of the node it runs on, and the loading and unloading of its shards.
//!
//! A shard is the state of one internal partition (`__consumer_offsets`-N holds the groups
//! hashed to N, `__transaction_state`-N the transactional ids hashed to N). A shard is loaded
//! (its partition replayed) when this node becomes the partition's leader and unloaded when it
//! stops being the leader, by the shard loader ([`super::loader`]); a request for a group or
//! transactional id whose shard is not loaded here is answered COORDINATOR_LOAD_IN_PROGRESS
//! while this node leads its partition, else NOT_COORDINATOR, so the client asks
//! FindCoordinator again.
//!
//! Coordinators reach storage and the rest of the node only through [`CoordinatorHost`]: they
//! never import the node, a handler or the server.

use std::sync::Arc;

use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};

use crate::controller::image::MetadataImage;
use crate::controller::{ApiError, NewTopic};

use super::loader::ShardChange;
use super::transaction::TRANSACTION_STATE_TOPIC;
use super::{GroupCoordinator, OFFSETS_TOPIC};

/// Why a write through the host failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// This node does not lead the partition (any more).
    #[error("{0}-{1} is not led by this node")]
    NotLeader(String, i32),
    #[error("storage: {0}")]
    Storage(String),
}

/// A transaction open in a partition this node leads, as the partition's producer state
/// records it.
#[derive(Clone, Debug)]
pub struct OpenTransaction {
    pub topic: String,
    pub partition: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The coordinator epoch of the producer's last marker here.
    pub coordinator_epoch: i32,
    pub first_offset: i64,
}

/// What a coordinator needs from the node it runs on. Implemented by the node.
pub trait CoordinatorHost: Send + Sync {
    fn node_id(&self) -> i32;

    fn image(&self) -> Arc<MetadataImage>;

    /// Whether this node leads `topic`-`partition`.
    fn leads(&self, topic: &str, partition: i32) -> bool;

    /// Appends a batch a coordinator built to a partition this node leads; with `durable`
    /// the batch is fsynced before this returns.
    fn append(
        &self,
        topic: &str,
        partition: i32,
        batch: &[u8],
        durable: bool,
    ) -> Result<(), WriteError>;

    /// Every batch of a partition this node leads, from its log start (a shard's load).
    fn read_all(&self, topic: &str, partition: i32) -> Result<Vec<u8>, WriteError>;

    /// Writes a transaction marker (commit or abort) into a partition this node leads, and
    /// wakes the fetches waiting for it.
    fn write_marker(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
    ) -> Result<(), WriteError>;

    /// Transactions open in the partitions this node leads.
    fn open_transactions(&self) -> Vec<OpenTransaction>;

    /// Creates an internal topic through the controller (waits for the commit).
    fn create_topic(&self, topic: &NewTopic) -> Result<(), ApiError>;

    /// A new producer id from the blocks the controller allocates.
    fn next_producer_id(&self) -> Result<i64, ApiError>;

    /// The group coordinator (transactions write their offsets through it).
    fn groups(&self) -> &GroupCoordinator;

    /// Sends WriteTxnMarkers to broker `leader` at `address` and waits for its answer
    /// (blocking this thread, bounded by the peer client's request timeout).
    fn send_markers(
        &self,
        leader: i32,
        address: &str,
        request: &WriteTxnMarkersRequest,
    ) -> Result<WriteTxnMarkersResponse, String>;

    /// Sends AddPartitionsToTxn (v5, a partition leader's implicit add for a transactions-v2
    /// producer) to the transaction coordinator `coordinator` at `address`; blocks this
    /// thread, bounded by the peer client's request timeout.
    fn send_add_partitions(
        &self,
        coordinator: i32,
        address: &str,
        request: &AddPartitionsToTxnRequest,
    ) -> Result<AddPartitionsToTxnResponse, String>;
}

/// Kafka's answer for a request whose shard (`topic`-`partition`) is not loaded here:
/// COORDINATOR_LOAD_IN_PROGRESS while this node leads the partition (the shard is replaying),
/// NOT_COORDINATOR otherwise (the client asks FindCoordinator again). A shard that is not
/// loaded never answers.
pub fn unloaded_shard_error(
    host: &dyn CoordinatorHost,
    topic: &str,
    partition: i32,
) -> kafka_protocol::ResponseError {
    match host.leads(topic, partition) {
        true => kafka_protocol::ResponseError::CoordinatorLoadInProgress,
        false => kafka_protocol::ResponseError::NotCoordinator,
    }
}

/// Loads or unloads the coordinator shard of an internal partition whose leadership here
/// began or ended (on the shard loader's thread: [`super::loader`]).
pub fn apply_shard_change(
    host: &dyn CoordinatorHost,
    transactions: &super::transaction::TransactionCoordinator,
    change: &ShardChange,
) {
    let partition = change.partition;
    match (change.topic.as_str(), change.led, change.partition_count) {
        (OFFSETS_TOPIC, true, Some(partition_count)) => {
            let loaded = host.groups().load_shard(host, partition, partition_count);
            if let Err(error) = loaded {
                tracing::error!(partition, %error, "loading the groups of {OFFSETS_TOPIC} failed");
            }
        }
        (OFFSETS_TOPIC, false, partition_count) => {
            host.groups().unload_shard(partition);
            if let Some(partition_count) = partition_count {
                transactions.forget_staged_offsets(|group_id| {
                    super::records::partition_for(group_id, partition_count) == partition
                });
            }
        }
        (TRANSACTION_STATE_TOPIC, true, Some(_)) => {
            if let Err(error) = transactions.load_shard(host, partition, change.leader_epoch) {
                tracing::error!(
                    partition,
                    message = error.message,
                    "loading {TRANSACTION_STATE_TOPIC} failed"
                );
            }
        }
        (TRANSACTION_STATE_TOPIC, false, _) => transactions.unload_shard(partition),
        _ => {}
    }
}
