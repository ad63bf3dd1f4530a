//! The replica layer's roles and the coordinator shards that follow them: leadership comes from
//! the metadata image, never from the files on disk. A partition this node does not lead
//! refuses produce (NOT_LEADER_OR_FOLLOWER) and loads no coordinator shard; a shard is unloaded
//! when its partition stops being led here.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::ResponseError;

use dlog::config::Properties;
use dlog::controller::image::{Change, MetadataImage, PartitionImage, TopicImage};
use dlog::controller::{ApiError, NewTopic};
use dlog::coordinator::loader::ShardChange;
use dlog::coordinator::runtime::{self, CoordinatorHost, OpenTransaction, WriteError};
use dlog::coordinator::transaction::{TransactionCoordinator, TransactionSettings};
use dlog::coordinator::{GroupCoordinator, OFFSETS_TOPIC};
use dlog::log::log_config::LogConfig;
use dlog::log::LogManager;
use dlog::record::builder::BatchBuilder;
use dlog::replica::{ReplicaManager, Role};

const THIS_NODE: i32 = 1;
const OTHER_NODE: i32 = 2;
const GROUP: &str = "payments";

/// One node's view: its replica layer and coordinators, wired as the node wires them.
struct TestNode {
    image: std::sync::Mutex<Arc<MetadataImage>>,
    replicas: ReplicaManager,
    groups: GroupCoordinator,
    transactions: TransactionCoordinator,
}

impl TestNode {
    fn open(dir: &std::path::Path) -> TestNode {
        let properties = Properties::default();
        TestNode {
            image: std::sync::Mutex::new(Arc::new(MetadataImage::new())),
            replicas: ReplicaManager::new(THIS_NODE, LogManager::open(dir).unwrap()).unwrap(),
            groups: GroupCoordinator::new(&properties),
            transactions: TransactionCoordinator::new(TransactionSettings::from_properties(
                &properties,
            )),
        }
    }

    /// Publishes an image in which `topic`-0 (one partition) has `leader` with `epoch`.
    fn publish(&self, topic: &str, leader: i32, epoch: i32) {
        let mut image = MetadataImage::new();
        let partitions: BTreeMap<i32, PartitionImage> = [(
            0,
            PartitionImage {
                replicas: vec![THIS_NODE, OTHER_NODE],
                isr: vec![THIS_NODE, OTHER_NODE],
                leader,
                leader_epoch: epoch,
                partition_epoch: epoch,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            },
        )]
        .into_iter()
        .collect();
        let id = uuid::Uuid::new_v4();
        image.topics.insert(
            topic.to_string(),
            TopicImage {
                name: topic.to_string(),
                id,
                partitions,
                configs: BTreeMap::new(),
            },
        );
        image.topic_names_by_id.insert(id, topic.to_string());
        let image = Arc::new(image);
        *self.image.lock().unwrap() = image.clone();
        let leadership = self
            .replicas
            .apply(&image, &[Change::TopicChanged(topic.to_string())], |t| {
                Arc::new(LogConfig::new(&Properties::default(), &t.configs))
            })
            .unwrap();
        // The node's shard loader applies these on its thread; here, at once.
        for change in leadership {
            if let Some(change) =
                ShardChange::new(&image, &change.topic, change.partition, change.led)
            {
                runtime::apply_shard_change(self, &self.transactions, &change);
            }
        }
    }
}

impl CoordinatorHost for TestNode {
    fn node_id(&self) -> i32 {
        THIS_NODE
    }
    fn image(&self) -> Arc<MetadataImage> {
        self.image.lock().unwrap().clone()
    }
    fn leads(&self, topic: &str, partition: i32) -> bool {
        self.replicas.is_leader(topic, partition)
    }
    fn append(&self, topic: &str, partition: i32, batch: &[u8], _: bool) -> Result<(), WriteError> {
        let log = self
            .replicas
            .leader_log(&self.image(), topic, partition)
            .map_err(|_| WriteError::NotLeader(topic.to_string(), partition))?;
        log.append_trusted(batch, 0)
            .map(|_| ())
            .map_err(|e| WriteError::Storage(e.to_string()))
    }
    fn read_all(&self, topic: &str, partition: i32) -> Result<Vec<u8>, WriteError> {
        let log = self
            .replicas
            .leader_log(&self.image(), topic, partition)
            .map_err(|_| WriteError::NotLeader(topic.to_string(), partition))?;
        log.read_all_from(0)
            .map_err(|e| WriteError::Storage(e.to_string()))
    }
    fn write_marker(
        &self,
        _: &str,
        _: i32,
        _: i64,
        _: i16,
        _: i32,
        _: bool,
    ) -> Result<(), WriteError> {
        unreachable!("no transactions here")
    }
    fn open_transactions(&self) -> Vec<OpenTransaction> {
        Vec::new()
    }
    fn create_topic(&self, _: &NewTopic) -> Result<(), ApiError> {
        unreachable!("the test publishes its topics")
    }
    fn next_producer_id(&self) -> Result<i64, ApiError> {
        unreachable!("no producers here")
    }
    fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }
    fn send_markers(
        &self,
        _: i32,
        _: &str,
        _: &WriteTxnMarkersRequest,
    ) -> Result<WriteTxnMarkersResponse, String> {
        unreachable!("no transactions here")
    }
    fn send_add_partitions(
        &self,
        _: i32,
        _: &str,
        _: &kafka_protocol::messages::AddPartitionsToTxnRequest,
    ) -> Result<kafka_protocol::messages::AddPartitionsToTxnResponse, String> {
        unreachable!("no transactions here")
    }
}

/// A group's metadata record (an empty classic group), as the coordinator writes it.
fn group_record_batch() -> Vec<u8> {
    let key = dlog::coordinator::records::group_key(GROUP);
    let group = dlog::coordinator::group::ClassicGroup::new(GROUP, 0);
    let value = dlog::coordinator::records::group_value(&group.to_record());
    BatchBuilder::new(0)
        .record(Some(&key), Some(&value), 0)
        .build()
}

#[test]
fn a_follower_copy_refuses_produce_and_loads_no_shard_whatever_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    // Files on disk: this node led the partition once and wrote a group into it.
    {
        let node = TestNode::open(dir.path());
        node.publish(OFFSETS_TOPIC, THIS_NODE, 0);
        node.append(OFFSETS_TOPIC, 0, &group_record_batch(), true)
            .unwrap();
        node.replicas.logs().shutdown(0).unwrap();
    }
    // Restarted, with the image saying another node leads it now.
    let node = TestNode::open(dir.path());
    node.publish(OFFSETS_TOPIC, OTHER_NODE, 1);
    assert_eq!(
        node.replicas.role(OFFSETS_TOPIC, 0),
        Some((Role::Follower, 1))
    );
    assert!(
        node.replicas.logs().get(OFFSETS_TOPIC, 0).is_some(),
        "the copy is hosted (open) here"
    );
    let refused = node
        .replicas
        .leader_log(&node.image(), OFFSETS_TOPIC, 0)
        .err();
    assert_eq!(refused, Some(ResponseError::NotLeaderOrFollower));
    assert!(!node.groups.is_loaded(0), "a follower loads no shard");
    assert_eq!(
        node.groups.check_coordinator(&node, GROUP),
        Err(ResponseError::NotCoordinator)
    );
    assert!(node.groups.describe(GROUP).is_none());
    // A partition that does not exist at all is UNKNOWN_TOPIC_OR_PARTITION.
    assert_eq!(
        node.replicas.leader_log(&node.image(), "absent", 0).err(),
        Some(ResponseError::UnknownTopicOrPartition)
    );
}

#[test]
fn a_shard_loads_on_leadership_and_unloads_when_it_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::open(dir.path());
    node.publish(OFFSETS_TOPIC, THIS_NODE, 0);
    assert_eq!(
        node.replicas.role(OFFSETS_TOPIC, 0),
        Some((Role::Leader, 0))
    );
    assert!(node.groups.is_loaded(0));
    node.append(OFFSETS_TOPIC, 0, &group_record_batch(), true)
        .unwrap();

    // Leadership moves away: the shard is unloaded and writes are refused.
    node.publish(OFFSETS_TOPIC, OTHER_NODE, 1);
    assert!(!node.groups.is_loaded(0));
    assert_eq!(
        node.groups.check_coordinator(&node, GROUP),
        Err(ResponseError::NotCoordinator)
    );
    assert!(matches!(
        node.append(OFFSETS_TOPIC, 0, &group_record_batch(), true),
        Err(WriteError::NotLeader(..))
    ));

    // And back: the shard is replayed from the partition, the group is there again.
    node.publish(OFFSETS_TOPIC, THIS_NODE, 2);
    assert!(node.groups.is_loaded(0));
    assert_eq!(node.groups.check_coordinator(&node, GROUP), Ok(()));
    assert!(
        node.groups.describe(GROUP).is_some(),
        "replayed from the log"
    );
}

/// `replication-offset-checkpoint`: a restarted leader starts from the high watermark it had
/// reached (kept within its log), not from its log start, so what was replicated stays
/// readable before its followers fetch again.
#[test]
fn a_restarted_leader_takes_its_high_watermark_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let topic = "orders";
    let batch = || {
        BatchBuilder::new(0)
            .record(None, Some(b"v"), 0)
            .record(None, Some(b"v"), 0)
            .build()
    };
    {
        let node = TestNode::open(dir.path());
        node.publish(topic, THIS_NODE, 0);
        node.append(topic, 0, &batch(), true).unwrap();
        node.append(topic, 0, &batch(), true).unwrap();
        let led = node
            .replicas
            .leader_partition(&node.image(), topic, 0)
            .unwrap();
        assert_eq!(
            led.high_watermark(),
            0,
            "the follower in the ISR has fetched nothing"
        );
        // The follower fetches at 2: the high watermark moves to 2, not to the log end 4.
        led.replication.follower_fetched(OTHER_NODE, 2, 4, 0);
        assert_eq!(node.replicas.high_watermark_of(topic, 0), 2);
        node.replicas.checkpoint_high_watermarks().unwrap();
        node.replicas.logs().shutdown(0).unwrap();
    }
    let text = std::fs::read_to_string(dir.path().join("replication-offset-checkpoint")).unwrap();
    assert_eq!(text, "0\n1\norders 0 2\n", "Kafka's checkpoint format");

    let node = TestNode::open(dir.path());
    node.publish(topic, THIS_NODE, 1);
    assert_eq!(
        node.replicas.high_watermark_of(topic, 0),
        2,
        "the checkpointed high watermark, before any follower fetch"
    );

    // A checkpoint beyond the log (the tail was lost) is cut to the log end.
    drop(node);
    std::fs::write(
        dir.path().join("replication-offset-checkpoint"),
        "0\n1\norders 0 99\n",
    )
    .unwrap();
    let node = TestNode::open(dir.path());
    node.publish(topic, THIS_NODE, 2);
    assert_eq!(node.replicas.high_watermark_of(topic, 0), 4);
}
