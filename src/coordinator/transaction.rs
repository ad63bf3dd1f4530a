//! The transaction coordinator (Kafka's TransactionCoordinator, `transaction.version` 2 /
//! KIP-890 part 2): one [`TxnMetadata`] per transactional id, persisted in the internal topic
//! `__transaction_state` (50 partitions; a transactional id lives in partition
//! `abs(javaHash(id)) % 50`) with Kafka's record schemas, so its files read like Kafka's.
//!
//! Commit and abort: PrepareCommit/PrepareAbort is written (fsynced), then a marker into every
//! partition of the transaction — directly into those hosted here, by WriteTxnMarkers to the
//! leaders of the others (sent without the lock on EndTxn) — then CompleteCommit/CompleteAbort.
//! A marker that cannot be written yet (leader down) leaves the transaction prepared; the
//! periodic check sends its markers again, as does a broker that crashed in between when it
//! loads the topic (markers are idempotent for readers while no new transaction has begun).
//!
//! This node coordinates the transactional ids of the `__transaction_state` partitions it
//! leads: one shard per partition, loaded when leadership arrives (a replay; the transactions
//! it left prepared are completed afterwards, off the shard loader's thread) and unloaded when
//! it leaves ([`super::runtime`], [`super::loader`]).
//!
//! One read-write lock guards the coordinator: state changes (including the log writes they
//! make) hold it for writing; produce of transactional batches only reads it to verify
//! ([`TransactionCoordinator::verify`]) and appends with the partition's verification guard,
//! taken before the check and voided by the transaction's marker, so a batch can never land
//! in a partition after that transaction's marker (which would leave a transaction open
//! forever and pin the last stable offset). Lock order: coordinator, then partition.
//!
//! Transactions v2 (a Kafka 4 client once `transaction.version` 2 is finalized): the client
//! sends no AddPartitionsToTxn; the leader of each partition it produces to (Produce v12) and the
//! group coordinator (TxnOffsetCommit v5) add the partition through
//! [`TransactionCoordinator::add_implicitly`] (AddPartitionsToTxn v5 when the coordinator is
//! another broker). EndTxn v5 bumps the producer epoch before the markers are written, so they
//! carry the new epoch and fence any late batch of the ended transaction; at the last epoch a new
//! producer id follows (`next_producer_id`, taken over on completion, the old one kept as
//! `previous_producer_id` to recognize a retried EndTxn). Clients of transactions v1 (EndTxn
//! v4 and below, librdkafka) keep the v1 rules.
//!
//! ```text
//! key   := version i16 (0) | transactional_id string
//! value := version i16 (0) | producer_id i64 | producer_epoch i16 | timeout_ms i32
//!          | status i8 | partitions [topic string, [partition i32]] | last_update_ms i64
//!          | start_ms i64                           (a null value deletes the id)
//! value v1 (flexible; a transactions-v2 transaction) := the same fields with compact strings
//!          and arrays, then tagged fields: 0 PreviousProducerId i64, 1 NextProducerId i64,
//!          2 ClientTransactionVersion i16 (each only when not its default)
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kafka_protocol::ResponseError;

use super::consumer_records::put_uvarint;
use super::runtime::{CoordinatorHost, WriteError};
use super::OFFSETS_TOPIC;
use crate::clock::now_ms;
use crate::controller::{ApiError, NewTopic};
use crate::record::batch::BatchIter;
use crate::record::builder::BatchBuilder;
use crate::record::records as record_codec;

/// The internal topic of transaction metadata.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Transactional ids kept at once; beyond it, InitProducerId for a new id is refused until
/// idle ids expire (`transactional.id.expiration.ms`).
pub const TRANSACTIONAL_IDS_MAX: usize = 100_000;
/// Partitions one transaction may span.
pub const PARTITIONS_PER_TRANSACTION_MAX: usize = 10_000;
/// Per-partition errors of a request that was otherwise accepted: ((topic, partition), error).
pub type PartitionErrors = Vec<((String, i32), ResponseError)>;

/// Offsets one transaction may stage with TxnOffsetCommit (over all its groups).
pub const PENDING_OFFSETS_PER_TRANSACTION_MAX: usize = 100_000;
/// The WriteTxnMarkers version brokers send (the one kafka_protocol knows).
pub const WRITE_TXN_MARKERS_VERSION: i16 = 1;
/// Partitions one WriteTxnMarkers request may name (over all its markers).
pub const MARKER_PARTITIONS_PER_REQUEST_MAX: usize = PARTITIONS_PER_TRANSACTION_MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnState {
    fn from_i8(value: i8) -> Option<TxnState> {
        Some(match value {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// Kafka's names (DescribeTransactions / ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    pub start_ms: i64,
    /// The producer id before the last epoch overflow (KIP-890 part 2): a retried EndTxn of
    /// the transaction that overflowed still carries it. -1 when none.
    pub previous_producer_id: i64,
    /// The producer id the transaction being completed moves to (its epoch overflowed); it
    /// becomes `producer_id` when the transaction completes. -1 when none.
    pub next_producer_id: i64,
    /// The client's transaction version (Kafka's `ClientTransactionVersion`): 2 when the open
    /// or last transaction was driven by a transactions-v2 client (implicit partition adds,
    /// an epoch bump per EndTxn), else 0.
    pub client_transaction_version: i16,
}

/// No producer id (Kafka's `RecordBatch.NO_PRODUCER_ID`).
pub const NO_PRODUCER_ID: i64 = -1;
/// The `transaction.version` level this broker finalizes (KIP-890 part 2 at 2: implicit
/// partition adds and an epoch bump per transaction). The switch for transactions v2: at 0
/// clients keep AddPartitionsToTxn and EndTxn v4, and produce never adds partitions.
/// It was at 0 for a while: franz-go 1.22.3's `TestTxnEtl` failed with v2 until each EndTxn
/// picked the v1 or v2 rules by its own version; it passes with 2 (`compat/go`).
pub const TRANSACTION_VERSION_FINALIZED: i16 = 2;
/// The highest `transaction.version` this broker supports.
pub const TRANSACTION_VERSION_SUPPORTED_MAX: i16 = 2;
/// The transaction version from which EndTxn bumps the epoch and produce adds partitions.
pub const TRANSACTION_VERSION_EPOCH_BUMP: i16 = 2;
/// The first EndTxn / TxnOffsetCommit / Produce versions of transactions v2 clients.
pub const END_TXN_VERSION_V2: i16 = 5;
pub const TXN_OFFSET_COMMIT_VERSION_V2: i16 = 5;
pub const PRODUCE_VERSION_V2: i16 = 12;
/// The AddPartitionsToTxn version a partition leader sends a remote coordinator to add a
/// partition for a transactions-v2 produce (verify_only false).
pub const ADD_PARTITIONS_TO_TXN_BROKER_VERSION: i16 = 5;

/// Offsets a transaction commits for a consumer group (TxnOffsetCommit), held until EndTxn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

struct State {
    txns: HashMap<String, TxnMetadata>,
    /// Transactional ids whose markers are being sent to other brokers without the lock held:
    /// the retry path leaves them alone (a late duplicate marker could end the producer's next
    /// transaction in that partition).
    sending: HashSet<String>,
}

pub struct TransactionCoordinator {
    /// Written by every state change (which also writes the logs); read by the produce path's
    /// verification, so transactional produce to different partitions runs in parallel.
    state: RwLock<State>,
    /// Offsets TxnOffsetCommit staged here (this node coordinates their group), by producer
    /// id, until the transaction's marker in `__consumer_offsets` decides them — whichever node
    /// coordinates the transaction, then or by the time it ends: the coordinator moves, and a
    /// transaction staged under a remote coordinator may end under this one (chaos seeds 5501
    /// and 5606: kept apart, the offsets a moved transaction had staged were never decided
    /// and answered UNSTABLE_OFFSET_COMMIT for good). Apart from `state` (locked after it when
    /// both are): the WriteTxnMarkers handler must not wait for this coordinator's lock, which
    /// may be held across a call to the marker's sender.
    staged_offsets: Mutex<StagedOffsets>,
    /// The `__transaction_state` partitions whose shard is loaded here, with the coordinator
    /// epoch of each: the partition's leader epoch when it loaded (Kafka's), written into the
    /// shard's markers so that partitions refuse those of an older coordinator.
    shards: Mutex<BTreeMap<i32, i32>>,
    settings: TransactionSettings,
}

/// The transaction coordinator's settings, read once from the broker properties.
#[derive(Clone, Debug)]
pub struct TransactionSettings {
    /// `transaction.state.log.num.partitions`
    pub state_partitions: i32,
    /// `transaction.max.timeout.ms`
    pub timeout_max_ms: i64,
    /// `transactional.id.expiration.ms`
    pub id_expiration_ms: i64,
}

impl TransactionSettings {
    pub fn from_properties(properties: &crate::config::Properties) -> TransactionSettings {
        TransactionSettings {
            state_partitions: properties
                .get_i64(crate::config::TRANSACTION_STATE_LOG_NUM_PARTITIONS)
                as i32,
            timeout_max_ms: properties.get_i64(crate::config::TRANSACTION_MAX_TIMEOUT_MS),
            id_expiration_ms: properties.get_i64(crate::config::TRANSACTIONAL_ID_EXPIRATION_MS),
        }
    }
}

/// producer id → group id → staged offsets.
type StagedOffsets = HashMap<i64, BTreeMap<String, Vec<PendingOffset>>>;

impl TransactionCoordinator {
    pub fn new(settings: TransactionSettings) -> Self {
        TransactionCoordinator {
            state: RwLock::new(State {
                txns: HashMap::new(),
                sending: HashSet::new(),
            }),
            staged_offsets: Mutex::new(HashMap::new()),
            shards: Mutex::new(BTreeMap::new()),
            settings,
        }
    }
}

/// Kafka's `Utils.abs(s.hashCode())`, with Java's String.hashCode over UTF-16 units.
pub fn java_hash_abs(text: &str) -> i32 {
    let hash = text.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    if hash == i32::MIN {
        0
    } else {
        hash.abs()
    }
}

fn api(error: ResponseError, message: impl Into<String>) -> ApiError {
    ApiError::new(error, message)
}

// ---------------------------------------------------------------------------------------------
// Record encoding

fn put_string(output: &mut Vec<u8>, text: &str) {
    output.extend_from_slice(&(text.len() as i16).to_be_bytes());
    output.extend_from_slice(text.as_bytes());
}

pub fn encode_key(transactional_id: &str) -> Vec<u8> {
    let mut key = 0i16.to_be_bytes().to_vec();
    put_string(&mut key, transactional_id);
    key
}

/// Value version 1 (flexible, with KIP-890's tagged fields) for the transactions of a
/// transactions-v2 client, version 0 otherwise, as Kafka writes them.
pub fn encode_value(txn: &TxnMetadata) -> Vec<u8> {
    let flexible = txn.client_transaction_version >= TRANSACTION_VERSION_EPOCH_BUMP;
    let mut value = i16::from(flexible).to_be_bytes().to_vec();
    value.extend_from_slice(&txn.producer_id.to_be_bytes());
    value.extend_from_slice(&txn.producer_epoch.to_be_bytes());
    value.extend_from_slice(&txn.timeout_ms.to_be_bytes());
    value.push(txn.state as i8 as u8);
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in &txn.partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let put_length = |value: &mut Vec<u8>, length: usize| {
        if flexible {
            put_uvarint(value, length as u64 + 1);
        } else {
            value.extend_from_slice(&(length as i32).to_be_bytes());
        }
    };
    put_length(&mut value, by_topic.len());
    for (topic, partitions) in by_topic {
        if flexible {
            put_uvarint(&mut value, topic.len() as u64 + 1);
            value.extend_from_slice(topic.as_bytes());
        } else {
            put_string(&mut value, topic);
        }
        put_length(&mut value, partitions.len());
        for partition in partitions {
            value.extend_from_slice(&partition.to_be_bytes());
        }
        if flexible {
            put_uvarint(&mut value, 0); // the partition entry's tagged fields: none
        }
    }
    value.extend_from_slice(&txn.last_update_ms.to_be_bytes());
    value.extend_from_slice(&txn.start_ms.to_be_bytes());
    if flexible {
        // Tagged fields, only those away from their defaults, in tag order.
        let mut tags: Vec<(u64, Vec<u8>)> = Vec::new();
        if txn.previous_producer_id != NO_PRODUCER_ID {
            tags.push((
                TAG_PREVIOUS_PRODUCER_ID,
                txn.previous_producer_id.to_be_bytes().to_vec(),
            ));
        }
        if txn.next_producer_id != NO_PRODUCER_ID {
            tags.push((
                TAG_NEXT_PRODUCER_ID,
                txn.next_producer_id.to_be_bytes().to_vec(),
            ));
        }
        if txn.client_transaction_version != 0 {
            tags.push((
                TAG_CLIENT_TRANSACTION_VERSION,
                txn.client_transaction_version.to_be_bytes().to_vec(),
            ));
        }
        put_uvarint(&mut value, tags.len() as u64);
        for (tag, data) in tags {
            put_uvarint(&mut value, tag);
            put_uvarint(&mut value, data.len() as u64);
            value.extend_from_slice(&data);
        }
    }
    value
}

/// TransactionLogValue v1's tags (Kafka's `TransactionLogValue.json`).
const TAG_PREVIOUS_PRODUCER_ID: u64 = 0;
const TAG_NEXT_PRODUCER_ID: u64 = 1;
const TAG_CLIENT_TRANSACTION_VERSION: u64 = 2;

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Reader<'_> {
    fn take(&mut self, count: usize) -> Option<&[u8]> {
        let end = self.position.checked_add(count)?;
        let slice = self.bytes.get(self.position..end)?;
        self.position = end;
        Some(slice)
    }
    fn i8(&mut self) -> Option<i8> {
        Some(self.take(1)?[0] as i8)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let length = usize::try_from(self.i16()?).ok()?;
        String::from_utf8(self.take(length)?.to_vec()).ok()
    }
    fn uvarint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    /// A compact (flexible) array count, null read as empty, bounded like [`Self::count`].
    fn compact_count(&mut self, element_bytes_min: usize) -> Option<usize> {
        let count = usize::try_from(self.uvarint()?.checked_sub(1).unwrap_or(0)).ok()?;
        (count.checked_mul(element_bytes_min)? <= self.bytes.len() - self.position).then_some(count)
    }
    fn compact_string(&mut self) -> Option<String> {
        let length = usize::try_from(self.uvarint()?.checked_sub(1)?).ok()?;
        String::from_utf8(self.take(length)?.to_vec()).ok()
    }
    /// An array count that cannot exceed what the remaining bytes could hold.
    fn count(&mut self, element_bytes_min: usize) -> Option<usize> {
        let count = self.i32()?;
        if count < 0 {
            return Some(0);
        }
        let count = count as usize;
        (count * element_bytes_min <= self.bytes.len() - self.position).then_some(count)
    }
}

pub fn decode_key(bytes: &[u8]) -> Option<String> {
    let mut reader = Reader { bytes, position: 0 };
    if reader.i16()? > 1 {
        return None;
    }
    reader.string()
}

/// Reads value versions 0 and 1 (flexible, with KIP-890's tagged fields; unknown tags are
/// skipped).
pub fn decode_value(transactional_id: &str, bytes: &[u8]) -> Option<TxnMetadata> {
    let mut reader = Reader { bytes, position: 0 };
    let flexible = match reader.i16()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let producer_id = reader.i64()?;
    let producer_epoch = reader.i16()?;
    let timeout_ms = reader.i32()?;
    let state = TxnState::from_i8(reader.i8()?)?;
    let mut partitions = BTreeSet::new();
    let topic_count = if flexible {
        reader.compact_count(3)?
    } else {
        reader.count(6)?
    };
    for _ in 0..topic_count {
        let topic = if flexible {
            reader.compact_string()?
        } else {
            reader.string()?
        };
        let partition_count = if flexible {
            reader.compact_count(4)?
        } else {
            reader.count(4)?
        };
        for _ in 0..partition_count {
            partitions.insert((topic.clone(), reader.i32()?));
        }
        if flexible {
            skip_tags(&mut reader)?;
        }
    }
    let last_update_ms = reader.i64()?;
    let start_ms = reader.i64()?;
    let mut txn = TxnMetadata {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms,
        start_ms,
        previous_producer_id: NO_PRODUCER_ID,
        next_producer_id: NO_PRODUCER_ID,
        client_transaction_version: 0,
    };
    if flexible {
        for _ in 0..reader.uvarint()? {
            let tag = reader.uvarint()?;
            let size = usize::try_from(reader.uvarint()?).ok()?;
            let data = reader.take(size)?;
            let mut field = Reader {
                bytes: data,
                position: 0,
            };
            match tag {
                TAG_PREVIOUS_PRODUCER_ID => txn.previous_producer_id = field.i64()?,
                TAG_NEXT_PRODUCER_ID => txn.next_producer_id = field.i64()?,
                TAG_CLIENT_TRANSACTION_VERSION => txn.client_transaction_version = field.i16()?,
                _ => {}
            }
        }
    }
    Some(txn)
}

/// Skips a struct's tagged fields.
fn skip_tags(reader: &mut Reader<'_>) -> Option<()> {
    for _ in 0..reader.uvarint()? {
        reader.uvarint()?;
        let size = usize::try_from(reader.uvarint()?).ok()?;
        reader.take(size)?;
    }
    Some(())
}

// ---------------------------------------------------------------------------------------------
// The coordinator

/// The checks every transactional request makes against the stored producer id and epoch.
/// CONCURRENT_TRANSACTIONS (clients retry) while the previous transaction's markers are
/// being written.
fn refuse_while_completing(txn: &TxnMetadata) -> Result<(), ApiError> {
    match txn.state {
        TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => Err(api(
            ResponseError::ConcurrentTransactions,
            "transaction is completing",
        )),
        _ => Ok(()),
    }
}

fn check_producer(txn: &TxnMetadata, producer_id: i64, epoch: i16) -> Result<(), ApiError> {
    if txn.producer_id != producer_id {
        return Err(api(
            ResponseError::InvalidProducerIdMapping,
            format!(
                "producer id {producer_id} is not the current producer of '{}'",
                txn.transactional_id
            ),
        ));
    }
    if txn.producer_epoch != epoch {
        return Err(api(
            ResponseError::ProducerFenced,
            format!(
                "epoch {epoch} of producer {producer_id} is not the current epoch {}",
                txn.producer_epoch
            ),
        ));
    }
    Ok(())
}

/// The producer checks of EndTxn for a transactions-v2 transaction (Kafka's
/// `TransactionCoordinator.endTransaction`): the current producer id and epoch end the open
/// transaction; the epoch just before the bump (or the id before an overflow) is accepted
/// only as a retry of the EndTxn that completed; anything else is fenced.
fn check_end_v2(txn: &TxnMetadata, producer_id: i64, epoch: i16) -> Result<(), ApiError> {
    let completing_or_done = matches!(
        txn.state,
        TxnState::PrepareCommit
            | TxnState::PrepareAbort
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
    );
    let retry_after_bump =
        completing_or_done && txn.producer_id == producer_id && txn.producer_epoch == epoch + 1;
    let retry_after_overflow = matches!(
        txn.state,
        TxnState::CompleteCommit | TxnState::CompleteAbort
    ) && txn.previous_producer_id == producer_id
        && epoch == i16::MAX - 1
        && txn.producer_epoch == 0;
    if txn.producer_id != producer_id && !retry_after_overflow {
        return Err(api(
            ResponseError::InvalidProducerIdMapping,
            format!(
                "producer id {producer_id} is not the current producer of '{}'",
                txn.transactional_id
            ),
        ));
    }
    let valid = match txn.state {
        TxnState::Ongoing | TxnState::Empty | TxnState::Dead | TxnState::PrepareEpochFence => {
            epoch == txn.producer_epoch
        }
        TxnState::PrepareCommit | TxnState::PrepareAbort => retry_after_bump,
        // The current epoch: the EndTxn of the producer's next transaction (an empty abort is
        // legal in transactions v2); one below it: a retry of the one that completed.
        TxnState::CompleteCommit | TxnState::CompleteAbort => {
            epoch == txn.producer_epoch || retry_after_bump || retry_after_overflow
        }
    };
    if !valid {
        return Err(api(
            ResponseError::ProducerFenced,
            format!(
                "epoch {epoch} of producer {producer_id} is not the current epoch {} of '{}'",
                txn.producer_epoch, txn.transactional_id
            ),
        ));
    }
    Ok(())
}

impl TransactionCoordinator {
    fn lock(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().expect("transaction coordinator lock")
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().expect("transaction coordinator lock")
    }

    /// The `__transaction_state` partition of `transactional_id`.
    pub fn state_partition(&self, transactional_id: &str) -> i32 {
        java_hash_abs(transactional_id) % self.settings.state_partitions
    }

    /// Creates `__transaction_state` if needed: what FindCoordinator for a transaction, and
    /// every transactional request, do first. Its shards load as the creation applies.
    pub fn ensure_ready(&self, host: &dyn CoordinatorHost) -> Result<(), ApiError> {
        if host.image().topics.contains_key(TRANSACTION_STATE_TOPIC) {
            return Ok(());
        }
        let topic = NewTopic {
            name: TRANSACTION_STATE_TOPIC.to_string(),
            partition_count: self.settings.state_partitions,
            replication_factor: 1,
            configs: [("cleanup.policy".to_string(), "compact".to_string())]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        match host.create_topic(&topic) {
            Ok(()) => Ok(()),
            Err(error) if error.error == ResponseError::TopicAlreadyExists => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn any_shard_loaded(&self) -> bool {
        !self.shards.lock().expect("shards lock").is_empty()
    }

    /// Loads the shard of `partition` (this node became its leader): replays it, the last
    /// record per id winning. Transactions it left prepared are completed by
    /// [`Self::complete_prepared`] (which may send markers to other brokers, so it is not
    /// done here, on the shard loader's thread).
    pub fn load_shard(
        &self,
        host: &dyn CoordinatorHost,
        partition: i32,
        coordinator_epoch: i32,
    ) -> Result<(), ApiError> {
        let storage = |e: WriteError| api(ResponseError::CoordinatorNotAvailable, e.to_string());
        let bytes = host
            .read_all(TRANSACTION_STATE_TOPIC, partition)
            .map_err(storage)?;
        let mut loaded: HashMap<String, TxnMetadata> = HashMap::new();
        for item in BatchIter::new(&bytes) {
            let Ok((position, header)) = item else { break };
            let batch = &bytes[position..position + header.size_bytes()];
            let Ok(section) = record_codec::records_section(batch, &header) else {
                continue;
            };
            let Ok(records) = record_codec::decode(&section, &header) else {
                continue;
            };
            for record in records {
                let Some(id) = record.key.and_then(decode_key) else {
                    continue;
                };
                match record.value.and_then(|v| decode_value(&id, v)) {
                    Some(txn) => {
                        loaded.insert(id, txn);
                    }
                    None => {
                        loaded.remove(&id);
                    }
                }
            }
        }
        let mut state = self.lock();
        state
            .txns
            .retain(|id, _| self.state_partition(id) != partition);
        tracing::info!(
            partition,
            coordinator_epoch,
            transactions = loaded.len(),
            "loaded transaction state"
        );
        state.txns.extend(loaded);
        self.shards
            .lock()
            .expect("shards lock")
            .insert(partition, coordinator_epoch);
        Ok(())
    }

    /// Unloads the shard of `partition` (this node stopped leading it): its transactional ids
    /// are forgotten here; the new leader replays them.
    pub fn unload_shard(&self, partition: i32) {
        if self
            .shards
            .lock()
            .expect("shards lock")
            .remove(&partition)
            .is_none()
        {
            return;
        }
        let mut state = self.lock();
        let before = state.txns.len();
        state
            .txns
            .retain(|id, _| self.state_partition(id) != partition);
        tracing::info!(
            partition,
            transactions = before - state.txns.len(),
            "unloaded transaction state"
        );
    }

    /// Finishes the transactions a crash (or the previous leader) left in
    /// PrepareCommit/PrepareAbort: after shards load.
    pub fn complete_prepared(&self, host: &dyn CoordinatorHost) {
        let mut state = self.lock();
        let unfinished: Vec<String> = state
            .txns
            .values()
            .filter(|t| matches!(t.state, TxnState::PrepareCommit | TxnState::PrepareAbort))
            .filter(|t| !state.sending.contains(&t.transactional_id))
            .map(|t| t.transactional_id.clone())
            .collect();
        for id in unfinished {
            let mut txn = state.txns[&id].clone();
            let commit = txn.state == TxnState::PrepareCommit;
            tracing::info!(
                transactional_id = id,
                commit,
                "completing a prepared transaction"
            );
            if let Err(error) = self.complete(host, &mut state, &mut txn, commit) {
                // Left prepared: the periodic retry finishes it (a partition's broker may be
                // down).
                tracing::warn!(
                    transactional_id = id,
                    message = error.message,
                    "completing a prepared transaction failed; will retry"
                );
            }
        }
    }

    /// Appends the metadata of `txn` to its `__transaction_state` partition and fsyncs it.
    fn persist(&self, host: &dyn CoordinatorHost, txn: &TxnMetadata) -> Result<(), ApiError> {
        self.persist_record(host, &txn.transactional_id, Some(encode_value(txn)))
    }

    fn persist_record(
        &self,
        host: &dyn CoordinatorHost,
        transactional_id: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), ApiError> {
        let partition = self.state_partition(transactional_id);
        let now = now_ms();
        let key = encode_key(transactional_id);
        let batch = BatchBuilder::new(now)
            .record(Some(&key), value.as_deref(), now)
            .build();
        host.append(TRANSACTION_STATE_TOPIC, partition, &batch, true)
            .map_err(|error| match error {
                WriteError::NotLeader(..) => api(ResponseError::NotCoordinator, error.to_string()),
                WriteError::Storage(_) => {
                    api(ResponseError::CoordinatorNotAvailable, error.to_string())
                }
            })
    }

    /// Writes Prepare, the markers (local ones, then those of partitions other brokers lead,
    /// holding the lock across those calls), then Complete; leaves `txn` (and the map)
    /// Complete. On error `txn` stays prepared, for the periodic retry.
    fn complete(
        &self,
        host: &dyn CoordinatorHost,
        state: &mut State,
        txn: &mut TxnMetadata,
        commit: bool,
    ) -> Result<(), ApiError> {
        let remote = self.prepare(host, state, txn, commit)?;
        let coordinator_epoch = self.coordinator_epoch(&txn.transactional_id);
        send_remote_markers(host, txn, coordinator_epoch, commit, &remote)?;
        self.finish(host, state, txn, commit)
    }

    /// Persists PrepareCommit/PrepareAbort (unless already there) and writes the markers of the
    /// partitions hosted here; returns the partitions (of existing topics) hosted elsewhere.
    fn prepare(
        &self,
        host: &dyn CoordinatorHost,
        state: &mut State,
        txn: &mut TxnMetadata,
        commit: bool,
    ) -> Result<Vec<(String, i32)>, ApiError> {
        let now = now_ms();
        let prepared = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        if txn.state != prepared {
            txn.state = prepared;
            txn.last_update_ms = now;
            self.persist(host, txn)?;
            state.txns.insert(txn.transactional_id.clone(), txn.clone());
        }
        let image = host.image();
        let coordinator_epoch = self.coordinator_epoch(&txn.transactional_id);
        let mut remote = Vec::new();
        for (topic, partition) in &txn.partitions {
            if !host.leads(topic, *partition) {
                let exists = image
                    .topics
                    .get(topic)
                    .is_some_and(|t| t.partitions.contains_key(partition));
                // A topic deleted during the transaction has nothing to mark.
                if exists {
                    remote.push((topic.clone(), *partition));
                }
                continue;
            }
            host.write_marker(
                topic,
                *partition,
                txn.producer_id,
                txn.producer_epoch,
                coordinator_epoch,
                commit,
            )
            .map_err(|e| api(ResponseError::KafkaStorageError, e.to_string()))?;
        }
        Ok(remote)
    }

    /// After every marker is written: the staged offsets take effect (or are dropped) and
    /// CompleteCommit/CompleteAbort is persisted.
    fn finish(
        &self,
        host: &dyn CoordinatorHost,
        state: &mut State,
        txn: &mut TxnMetadata,
        commit: bool,
    ) -> Result<(), ApiError> {
        // The markers decided the offsets in `__consumer_offsets`; now the groups see them.
        let staged = self.take_staged_offsets(txn.producer_id);
        host.groups()
            .end_transactional_offsets(txn.producer_id, staged.as_ref(), commit);
        txn.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        txn.partitions.clear();
        if txn.next_producer_id != NO_PRODUCER_ID {
            // The epoch overflowed with this transaction: the producer carries on under the
            // new id; the old one is kept to recognize a retried EndTxn.
            txn.previous_producer_id = txn.producer_id;
            txn.producer_id = txn.next_producer_id;
            txn.next_producer_id = NO_PRODUCER_ID;
            txn.producer_epoch = 0;
        }
        txn.last_update_ms = now_ms();
        self.persist(host, txn)?;
        state.txns.insert(txn.transactional_id.clone(), txn.clone());
        Ok(())
    }

    /// Offsets TxnOffsetCommit staged here for `producer_id`: taken when its marker in
    /// `__consumer_offsets` is written here (by this coordinator, or by WriteTxnMarkers from
    /// another).
    pub fn take_staged_offsets(
        &self,
        producer_id: i64,
    ) -> Option<BTreeMap<String, Vec<PendingOffset>>> {
        self.staged_offsets
            .lock()
            .expect("staged offsets lock")
            .remove(&producer_id)
    }

    /// The `__consumer_offsets` shard of the groups `in_shard` names left this node: what
    /// was staged for them is dropped. The new leader replays those offsets from the log
    /// and waits for their marker there; kept here, they would answer UNSTABLE_OFFSET_COMMIT
    /// for good if the shard came back after the marker.
    pub fn forget_staged_offsets(&self, in_shard: impl Fn(&str) -> bool) {
        let mut staged = self.staged_offsets.lock().expect("staged offsets lock");
        for groups in staged.values_mut() {
            groups.retain(|group_id, _| !in_shard(group_id));
        }
        staged.retain(|_, groups| !groups.is_empty());
    }

    /// Kafka's answer for a transactional id this node cannot serve yet: NOT_COORDINATOR when
    /// it does not lead the id's `__transaction_state` partition (the client asks
    /// FindCoordinator again), COORDINATOR_LOAD_IN_PROGRESS while it leads it but the shard is
    /// still replaying — never an answer from a shard that is not loaded. Creates the topic
    /// on first use.
    fn check_coordinator(
        &self,
        host: &dyn CoordinatorHost,
        transactional_id: &str,
    ) -> Result<(), ApiError> {
        self.ensure_ready(host)?;
        if self.coordinates(transactional_id) {
            return Ok(());
        }
        let partition = self.state_partition(transactional_id);
        let error = super::runtime::unloaded_shard_error(host, TRANSACTION_STATE_TOPIC, partition);
        Err(api(
            error,
            format!("{TRANSACTION_STATE_TOPIC}-{partition} is not loaded here"),
        ))
    }

    /// Whether this node coordinates `transactional_id`: its shard is loaded here.
    pub fn coordinates(&self, transactional_id: &str) -> bool {
        let partition = self.state_partition(transactional_id);
        self.shards
            .lock()
            .expect("shards lock")
            .contains_key(&partition)
    }

    /// The coordinator epoch of `transactional_id`'s shard here (0 when it is not loaded: a
    /// marker written with it is refused wherever a loaded coordinator wrote one).
    fn coordinator_epoch(&self, transactional_id: &str) -> i32 {
        let partition = self.state_partition(transactional_id);
        let shards = self.shards.lock().expect("shards lock");
        shards.get(&partition).copied().unwrap_or(0)
    }

    /// InitProducerId with a transactional id: (producer id, epoch). Fences the previous
    /// producer of the id by bumping the epoch, aborting its open transaction first.
    pub fn init_producer_id(
        &self,
        host: &dyn CoordinatorHost,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ApiError> {
        let timeout_max_ms = self.settings.timeout_max_ms;
        if timeout_ms <= 0 || i64::from(timeout_ms) > timeout_max_ms {
            return Err(api(
                ResponseError::InvalidTransactionTimeout,
                format!("transaction timeout {timeout_ms} ms is not in 1..={timeout_max_ms}"),
            ));
        }
        self.check_coordinator(host, transactional_id)?;
        let mut state = self.lock();
        let now = now_ms();
        let Some(existing) = state.txns.get(transactional_id).cloned() else {
            if state.txns.len() >= TRANSACTIONAL_IDS_MAX {
                return Err(api(
                    ResponseError::CoordinatorNotAvailable,
                    "too many transactional ids; retry after idle ones expire",
                ));
            }
            let producer_id = host.next_producer_id()?;
            let txn = TxnMetadata {
                transactional_id: transactional_id.to_string(),
                producer_id,
                producer_epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                last_update_ms: now,
                start_ms: -1,
                previous_producer_id: NO_PRODUCER_ID,
                next_producer_id: NO_PRODUCER_ID,
                client_transaction_version: 0,
            };
            self.persist(host, &txn)?;
            state.txns.insert(transactional_id.to_string(), txn);
            return Ok((producer_id, 0));
        };
        let mut txn = existing;
        if let Some((producer_id, epoch)) = expected {
            // KIP-360: a producer re-initializing itself must still be the current one.
            check_producer(&txn, producer_id, epoch)?;
        }
        refuse_while_completing(&txn)?;
        match txn.state {
            TxnState::Ongoing => {
                // Fence the old producer: its open transaction is aborted under a bumped epoch,
                // so its late writes and its EndTxn are refused.
                txn.producer_epoch += 1;
                self.complete(host, &mut state, &mut txn, false)?;
            }
            _ => {}
        }
        if txn.producer_epoch >= i16::MAX - 1 {
            txn.producer_id = host.next_producer_id()?;
            txn.producer_epoch = 0;
        } else {
            txn.producer_epoch += 1;
        }
        txn.timeout_ms = timeout_ms;
        txn.state = TxnState::Empty;
        txn.partitions.clear();
        txn.start_ms = -1;
        txn.last_update_ms = now;
        self.persist(host, &txn)?;
        let result = (txn.producer_id, txn.producer_epoch);
        state.txns.insert(transactional_id.to_string(), txn);
        Ok(result)
    }

    /// AddPartitionsToTxn: adds partitions to the open transaction, starting it (recording
    /// the client's transaction version: 2 when a partition leader adds them for a
    /// transactions-v2 produce, 0 for a client's own AddPartitionsToTxn).
    /// Returns the error for the whole request, or per-partition errors for unknown partitions.
    pub fn add_partitions(
        &self,
        host: &dyn CoordinatorHost,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        client_transaction_version: i16,
    ) -> Result<PartitionErrors, ApiError> {
        self.check_coordinator(host, transactional_id)?;
        let image = host.image();
        let unknown: Vec<&(String, i32)> = partitions
            .iter()
            .filter(|(topic, partition)| {
                topic != OFFSETS_TOPIC
                    && image
                        .topics
                        .get(topic)
                        .is_none_or(|t| !t.partitions.contains_key(partition))
            })
            .collect();
        if !unknown.is_empty() {
            return Ok(partitions
                .iter()
                .map(|p| {
                    let error = if unknown.contains(&p) {
                        ResponseError::UnknownTopicOrPartition
                    } else {
                        ResponseError::OperationNotAttempted
                    };
                    (p.clone(), error)
                })
                .collect());
        }
        let mut state = self.lock();
        let mut txn = state.txns.get(transactional_id).cloned().ok_or_else(|| {
            api(
                ResponseError::InvalidProducerIdMapping,
                "unknown transactional id",
            )
        })?;
        check_producer(&txn, producer_id, epoch)?;
        refuse_while_completing(&txn)?;
        match txn.state {
            TxnState::Dead => {
                return Err(api(ResponseError::InvalidTxnState, "transaction is dead"))
            }
            _ => {}
        }
        let added: Vec<&(String, i32)> = partitions
            .iter()
            .filter(|p| !txn.partitions.contains(*p))
            .collect();
        if added.is_empty() && txn.state == TxnState::Ongoing {
            return Ok(Vec::new());
        }
        if txn.partitions.len() + added.len() > PARTITIONS_PER_TRANSACTION_MAX {
            return Err(api(
                ResponseError::InvalidRequest,
                format!(
                    "a transaction may span at most {PARTITIONS_PER_TRANSACTION_MAX} partitions"
                ),
            ));
        }
        let now = now_ms();
        if txn.state != TxnState::Ongoing {
            txn.state = TxnState::Ongoing;
            txn.start_ms = now;
            txn.client_transaction_version = client_transaction_version;
        }
        txn.partitions.extend(added.into_iter().cloned());
        txn.last_update_ms = now;
        self.persist(host, &txn)?;
        state.txns.insert(transactional_id.to_string(), txn);
        Ok(Vec::new())
    }

    /// AddPartitionsToTxn v4+ with verify_only: whether each partition is in the producer's
    /// open transaction.
    pub fn verify_partitions(
        &self,
        host: &dyn CoordinatorHost,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<PartitionErrors, ApiError> {
        self.check_coordinator(host, transactional_id)?;
        let state = self.read();
        let txn = state.txns.get(transactional_id).ok_or_else(|| {
            api(
                ResponseError::InvalidProducerIdMapping,
                "unknown transactional id",
            )
        })?;
        check_producer(txn, producer_id, epoch)?;
        Ok(partitions
            .iter()
            .filter(|p| txn.state != TxnState::Ongoing || !txn.partitions.contains(*p))
            .map(|p| (p.clone(), ResponseError::InvalidTxnState))
            .collect())
    }

    /// AddOffsetsToTxn: the group's `__consumer_offsets` partition joins the transaction. With
    /// `implicitly`, TxnOffsetCommit v5's add (transactions v2: no AddOffsetsToTxn came first),
    /// through the transaction's coordinator wherever it is, as a produce's partition joins.
    pub fn add_offsets(
        &self,
        host: &dyn CoordinatorHost,
        transactional_id: &str,
        (producer_id, epoch): (i64, i16),
        group_id: &str,
        implicitly: bool,
    ) -> Result<(), ApiError> {
        let partitions = [offsets_partition_of(host, group_id)?];
        if implicitly {
            return self
                .add_implicitly(host, transactional_id, producer_id, epoch, &partitions)
                .map_err(|error| api(error, "adding the offsets partition failed"));
        }
        self.add_partitions(host, transactional_id, producer_id, epoch, &partitions, 0)
            .map(|_| ())
    }

    /// TxnOffsetCommit: writes the offsets to `__consumer_offsets` as part of the transaction
    /// (so a restart finds them, and the transaction's marker decides them) and stages them
    /// in memory until the transaction ends.
    pub fn stage_offsets(
        &self,
        host: &dyn CoordinatorHost,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group_id: &str,
        offsets: Vec<PendingOffset>,
    ) -> Result<(), ApiError> {
        if !self.coordinates(transactional_id) {
            // Another broker coordinates the transaction (this one the group): its state is
            // not here to check, as for produce; the marker it sends decides the offsets.
            return self.stage_in(host, producer_id, epoch, group_id, offsets);
        }
        let state = self.lock();
        let txn = state.txns.get(transactional_id).ok_or_else(|| {
            api(
                ResponseError::InvalidProducerIdMapping,
                "unknown transactional id",
            )
        })?;
        check_producer(txn, producer_id, epoch)?;
        if txn.state != TxnState::Ongoing
            || !txn
                .partitions
                .iter()
                .any(|(topic, _)| topic == OFFSETS_TOPIC)
        {
            return Err(api(
                ResponseError::InvalidTxnState,
                "AddOffsetsToTxn must come first",
            ));
        }
        // Held on: the transaction cannot end between the check above and the staging.
        let staged = self.stage_in(host, producer_id, epoch, group_id, offsets);
        drop(state);
        staged
    }

    /// Appends the transactional offsets and stages them under `producer_id`. The staged map
    /// stays locked across the append, so a marker decided meanwhile waits and finds them.
    fn stage_in(
        &self,
        host: &dyn CoordinatorHost,
        producer_id: i64,
        epoch: i16,
        group_id: &str,
        offsets: Vec<PendingOffset>,
    ) -> Result<(), ApiError> {
        let mut pending = self.staged_offsets.lock().expect("staged offsets lock");
        let groups = pending.entry(producer_id).or_default();
        let staged_count: usize = groups.values().map(Vec::len).sum();
        if staged_count + offsets.len() > PENDING_OFFSETS_PER_TRANSACTION_MAX {
            return Err(api(
                ResponseError::InvalidRequest,
                format!(
                    "a transaction may stage at most {PENDING_OFFSETS_PER_TRANSACTION_MAX} offsets"
                ),
            ));
        }
        host.groups()
            .append_transactional_offsets(host, group_id, (producer_id, epoch), &offsets)
            .map_err(|error| api(error, "writing transactional offsets failed"))?;
        let groups = pending.entry(producer_id).or_default();
        let staged = groups.entry(group_id.to_string()).or_default();
        for offset in offsets {
            staged.retain(|o| {
                (o.topic.as_str(), o.partition) != (offset.topic.as_str(), offset.partition)
            });
            staged.push(offset);
        }
        Ok(())
    }

    /// Transactions v2's implicit add (Kafka's `AddPartitionsToTxnManager`): the leader of a
    /// partition a transactions-v2 producer writes to (or the group coordinator, for
    /// TxnOffsetCommit v5) adds it to the producer's transaction before appending: in process
    /// when this node coordinates the transactional id, else by AddPartitionsToTxn v5
    /// (verify_only false) to the coordinator. Returns the coordinator's error.
    pub fn add_implicitly(
        &self,
        host: &dyn CoordinatorHost,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), ResponseError> {
        if self.coordinates(transactional_id) {
            return match self.add_partitions(
                host,
                transactional_id,
                producer_id,
                epoch,
                partitions,
                TRANSACTION_VERSION_EPOCH_BUMP,
            ) {
                Ok(errors) => errors.first().map_or(Ok(()), |(_, error)| Err(*error)),
                Err(error) => Err(error.error),
            };
        }
        add_remotely(
            host,
            self.state_partition(transactional_id),
            transactional_id,
            producer_id,
            epoch,
            partitions,
        )
    }

    /// Whether an open transaction has staged an offset for this group partition
    /// (TxnOffsetCommit before EndTxn).
    pub fn has_staged_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        let staged = |pending: &StagedOffsets| {
            pending.values().any(|groups| {
                groups.get(group_id).is_some_and(|offsets| {
                    offsets
                        .iter()
                        .any(|o| o.partition == partition && o.topic == topic)
                })
            })
        };
        staged(&self.staged_offsets.lock().expect("staged offsets lock"))
    }

    /// EndTxn: commits or aborts the open transaction; returns the producer id and epoch the
    /// producer carries on with. `bump_epoch` (EndTxn v5+, a transactions-v2 client): the
    /// markers are written with the epoch bumped by one (a new producer id follows when the
    /// epoch is exhausted), so a zombie's late batch of this transaction is fenced, and the
    /// bumped epoch is returned for the next transaction.
    pub fn end_transaction(
        &self,
        host: &dyn CoordinatorHost,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        bump_epoch: bool,
    ) -> Result<(i64, i16), ApiError> {
        self.check_coordinator(host, transactional_id)?;
        let mut state = self.lock();
        let mut txn = state.txns.get(transactional_id).cloned().ok_or_else(|| {
            api(
                ResponseError::InvalidProducerIdMapping,
                "unknown transactional id",
            )
        })?;
        let current = |txn: &TxnMetadata| (txn.producer_id, txn.producer_epoch);
        // The request's version decides the rules, not the version the transaction started
        // with (as Kafka): a transactions-v2 producer's first EndTxn may find its
        // transaction Empty, straight after InitProducerId, and abort it.
        if bump_epoch {
            check_end_v2(&txn, producer_id, epoch)?;
            let retry = txn.producer_epoch != epoch || txn.producer_id != producer_id;
            match (txn.state, commit, retry) {
                (TxnState::Ongoing, _, false) => {}
                // Transactions v2 lets a producer abort a transaction it wrote nothing in (as
                // Kafka 4.x does; clients abort whenever a produce may have failed): no
                // markers, only the epoch bump.
                (
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort,
                    false,
                    false,
                ) if txn.partitions.is_empty() => {}
                // A retry of an EndTxn that already completed (its response was lost): the
                // same answer again.
                (TxnState::CompleteCommit, true, true) | (TxnState::CompleteAbort, false, true) => {
                    return Ok(current(&txn))
                }
                (TxnState::PrepareCommit, true, true) | (TxnState::PrepareAbort, false, true) => {
                    return Err(api(
                        ResponseError::ConcurrentTransactions,
                        "transaction is completing",
                    ))
                }
                (state, _, _) => {
                    return Err(api(
                        ResponseError::InvalidTxnState,
                        format!("EndTxn(commit={commit}) in state {}", state.name()),
                    ))
                }
            }
        } else {
            check_producer(&txn, producer_id, epoch)?;
            match (txn.state, commit) {
                (TxnState::Ongoing, _) => {}
                // A retry of an EndTxn that already completed.
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                    return Ok(current(&txn))
                }
                (TxnState::PrepareCommit | TxnState::PrepareAbort, _) => {
                    return Err(api(
                        ResponseError::ConcurrentTransactions,
                        "transaction is completing",
                    ))
                }
                (state, _) => {
                    return Err(api(
                        ResponseError::InvalidTxnState,
                        format!("EndTxn(commit={commit}) in state {}", state.name()),
                    ))
                }
            }
        }
        if bump_epoch {
            // The markers carry the bumped epoch; at the last usable epoch a new producer id
            // takes over once the transaction completes (`finish`).
            if txn.producer_epoch >= i16::MAX - 1 {
                txn.next_producer_id = host.next_producer_id()?;
            }
            txn.producer_epoch += 1;
            txn.client_transaction_version = TRANSACTION_VERSION_EPOCH_BUMP;
        }
        // What the producer goes on with, also when the markers are still being written.
        let carry_on = |txn: &TxnMetadata| {
            if txn.next_producer_id != NO_PRODUCER_ID {
                (txn.next_producer_id, 0)
            } else {
                current(txn)
            }
        };
        let remote = match self.prepare(host, &mut state, &mut txn, commit) {
            Ok(remote) => remote,
            // A marker of a partition led here did not reach its in-sync replicas in time.
            // The decision is durable (Prepare): the periodic retry writes the markers, as
            // for other brokers' partitions below.
            Err(error)
                if state.txns.get(transactional_id).is_some_and(|t| {
                    matches!(t.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
                }) =>
            {
                tracing::warn!(
                    transactional_id,
                    message = error.message,
                    "transaction markers not written yet; will retry"
                );
                return Ok(carry_on(&txn));
            }
            Err(error) => return Err(error),
        };
        if remote.is_empty() {
            self.finish(host, &mut state, &mut txn, commit)?;
            return Ok(current(&txn));
        }
        // The other brokers' markers are sent without the lock: other transactions
        // go on meanwhile; this one is prepared, so its own requests wait
        // (CONCURRENT_TRANSACTIONS) and the retry path leaves it to us.
        state.sending.insert(transactional_id.to_string());
        drop(state);
        let coordinator_epoch = self.coordinator_epoch(transactional_id);
        let sent = send_remote_markers(host, &txn, coordinator_epoch, commit, &remote);
        let mut state = self.lock();
        state.sending.remove(transactional_id);
        if let Err(error) = sent {
            // The decision is durable (Prepare); the periodic retry writes the rest,
            // as Kafka answers EndTxn once Prepare is written.
            tracing::warn!(
                transactional_id,
                message = error.message,
                "transaction markers not written yet; will retry"
            );
            return Ok(carry_on(&txn));
        }
        let unchanged = state.txns.get(transactional_id).is_some_and(|t| {
            t.state == txn.state
                && t.producer_id == txn.producer_id
                && t.producer_epoch == txn.producer_epoch
        });
        if unchanged {
            self.finish(host, &mut state, &mut txn, commit)?;
            Ok(current(&txn))
        } else {
            Ok(carry_on(&txn))
        }
    }

    /// Whether a produce of transactional batches to `topic`-`partition` belongs to the
    /// producer's open transaction (KIP-890 part 1's verification, in process). The caller
    /// took the partition's verification guard before asking and appends with it, so a marker
    /// written in between voids the append; no lock is held across the append.
    pub fn verify(
        &self,
        transactional_id: Option<&str>,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), ResponseError> {
        verify_in(
            &self.read(),
            transactional_id,
            producer_id,
            epoch,
            topic,
            partition,
        )
    }

    /// [`Self::verify`] if the coordinator's lock is free now; `None` while a writer holds
    /// it. Writers hold it across a `__transaction_state` append that waits for the ISR
    /// (seconds when a follower just died), so a caller on a runtime worker (Produce) must not
    /// wait for it there: once every worker waits, nothing serves the follower fetches or
    /// fires the timer that write waits for, and the node freezes (compat/cluster/rolling.sh).
    pub fn try_verify(
        &self,
        transactional_id: Option<&str>,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Option<Result<(), ResponseError>> {
        let state = match self.state.try_read() {
            Ok(state) => state,
            Err(std::sync::TryLockError::WouldBlock) => return None,
            Err(std::sync::TryLockError::Poisoned(_)) => panic!("transaction coordinator lock"),
        };
        Some(verify_in(
            &state,
            transactional_id,
            producer_id,
            epoch,
            topic,
            partition,
        ))
    }

    /// Aborts transactions open longer than their timeout (bumping the epoch, which fences the
    /// producer, as Kafka does) and forgets ids idle longer than
    /// `transactional.id.expiration.ms`.
    pub fn abort_timed_out(&self, host: &dyn CoordinatorHost, now: i64) {
        if !self.any_shard_loaded() {
            return;
        }
        let mut state = self.lock();
        // A completion that failed half-way (a marker write failed) is retried: markers are
        // idempotent for readers.
        let stuck: Vec<TxnMetadata> = state
            .txns
            .values()
            .filter(|t| matches!(t.state, TxnState::PrepareCommit | TxnState::PrepareAbort))
            .filter(|t| !state.sending.contains(&t.transactional_id))
            .cloned()
            .collect();
        for mut txn in stuck {
            let commit = txn.state == TxnState::PrepareCommit;
            if let Err(error) = self.complete(host, &mut state, &mut txn, commit) {
                tracing::error!(
                    transactional_id = txn.transactional_id,
                    message = error.message,
                    "completing transaction failed"
                );
            }
        }
        let timed_out: Vec<TxnMetadata> = state
            .txns
            .values()
            .filter(|t| t.state == TxnState::Ongoing && now - t.start_ms > i64::from(t.timeout_ms))
            .cloned()
            .collect();
        for mut txn in timed_out {
            tracing::info!(
                transactional_id = txn.transactional_id,
                producer_id = txn.producer_id,
                "aborting timed-out transaction"
            );
            if txn.producer_epoch < i16::MAX - 1 {
                txn.producer_epoch += 1;
            }
            if let Err(error) = self.complete(host, &mut state, &mut txn, false) {
                tracing::error!(
                    transactional_id = txn.transactional_id,
                    message = error.message,
                    "abort failed"
                );
            }
        }
        let expiration_ms = self.settings.id_expiration_ms;
        let expired: Vec<String> = state
            .txns
            .values()
            .filter(|t| {
                matches!(
                    t.state,
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                ) && now - t.last_update_ms > expiration_ms
            })
            .map(|t| t.transactional_id.clone())
            .collect();
        for id in expired {
            if self.persist_record(host, &id, None).is_ok() {
                state.txns.remove(&id);
            }
        }
    }

    /// Aborts transactions that are open in a partition but that no coordinator transaction
    /// accounts for (state lost, e.g. `__transaction_state` damaged): without this they would
    /// pin the partition's last stable offset forever. Kafka leaves these to an operator
    /// (`kafka-transactions abort`); with the coordinator in-process dlog can tell for sure.
    pub fn abort_hanging(&self, host: &dyn CoordinatorHost) {
        if !self.any_shard_loaded() {
            return;
        }
        let state = self.lock();
        // With other brokers, a producer this coordinator does not know may be another
        // coordinator's (whose markers come by WriteTxnMarkers): only the partition's last
        // stable offset and that coordinator's timeout apply then.
        let alone = host.image().brokers.keys().all(|id| *id == host.node_id());
        for open in host.open_transactions() {
            let producer_id = open.producer_id;
            let known = state.txns.values().any(|t| t.producer_id == producer_id);
            let accounted = state.txns.values().any(|t| {
                t.producer_id == producer_id
                    && matches!(
                        t.state,
                        TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort
                    )
                    && t.partitions.contains(&(open.topic.clone(), open.partition))
            });
            if accounted || (!known && !alone) {
                continue;
            }
            tracing::warn!(
                topic = open.topic,
                partition = open.partition,
                producer_id,
                first_offset = open.first_offset,
                "aborting a hanging transaction no coordinator state accounts for"
            );
            if let Err(error) = host.write_marker(
                &open.topic,
                open.partition,
                producer_id,
                open.producer_epoch,
                // The last coordinator's epoch: this abort stands in for it.
                open.coordinator_epoch,
                false,
            ) {
                tracing::error!(%error, "writing the abort marker failed");
            }
        }
    }

    /// A copy of every transaction (DescribeTransactions / ListTransactions).
    pub fn transactions(&self) -> Vec<TxnMetadata> {
        self.read().txns.values().cloned().collect()
    }

    pub fn transaction(&self, transactional_id: &str) -> Option<TxnMetadata> {
        self.read().txns.get(transactional_id).cloned()
    }
}

/// Sends WriteTxnMarkers for `partitions` (hosted on other brokers) to their leaders, one
/// request per leader; Ok once every partition has its marker. Blocks this thread, each call
/// bounded by the peer client's request timeout; a partition without a live leader fails at
/// once (CONCURRENT_TRANSACTIONS: the transaction stays prepared and is retried).
fn send_remote_markers(
    host: &dyn CoordinatorHost,
    txn: &TxnMetadata,
    coordinator_epoch: i32,
    commit: bool,
    partitions: &[(String, i32)],
) -> Result<(), ApiError> {
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
    use kafka_protocol::protocol::StrBytes;

    if partitions.is_empty() {
        return Ok(());
    }
    let pending = |why: String| api(ResponseError::ConcurrentTransactions, why);
    let image = host.image();
    let mut by_leader: BTreeMap<i32, BTreeMap<&str, Vec<i32>>> = BTreeMap::new();
    // Every reachable leader gets its markers even when one cannot (its partitions' last
    // stable offsets move on); the first failure is reported.
    let mut first_error: Option<ApiError> = None;
    for (topic, partition) in partitions {
        let Some(image_partition) = image
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition))
        else {
            continue; // deleted since: nothing to mark
        };
        let leader = image.live_leader(image_partition);
        if leader < 0 || leader == host.node_id() {
            // No live leader, or this node leads it but has not opened it yet.
            first_error.get_or_insert_with(|| {
                pending(format!("{topic}-{partition} has no reachable leader"))
            });
            continue;
        }
        by_leader
            .entry(leader)
            .or_default()
            .entry(topic)
            .or_default()
            .push(*partition);
    }
    for (leader, topics) in by_leader {
        let Some(endpoint) = image.brokers.get(&leader).and_then(|b| b.client_endpoint()) else {
            first_error.get_or_insert_with(|| pending(format!("broker {leader} has no endpoint")));
            continue;
        };
        let address = format!("{}:{}", endpoint.host, endpoint.port);
        let marker = WritableTxnMarker::default()
            .with_producer_id(ProducerId(txn.producer_id))
            .with_producer_epoch(txn.producer_epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(
                topics
                    .iter()
                    .map(|(topic, indexes)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                            .with_partition_indexes(indexes.clone())
                    })
                    .collect(),
            );
        let request = WriteTxnMarkersRequest::default().with_markers(vec![marker]);
        let response = match host.send_markers(leader, &address, &request) {
            Ok(response) => response,
            Err(e) => {
                first_error.get_or_insert_with(|| {
                    pending(format!("WriteTxnMarkers to broker {leader}: {e}"))
                });
                continue;
            }
        };
        let failed: Vec<String> = response
            .markers
            .iter()
            .flat_map(|m| m.topics.iter())
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .filter(|p| p.error_code != 0)
                    .map(move |p| {
                        format!(
                            "{}-{}: {}",
                            t.name.as_str(),
                            p.partition_index,
                            p.error_code
                        )
                    })
            })
            .collect();
        let answered: usize = response
            .markers
            .iter()
            .flat_map(|m| m.topics.iter())
            .map(|t| t.partitions.len())
            .sum();
        let asked: usize = topics.values().map(Vec::len).sum();
        if !failed.is_empty() || answered != asked {
            first_error.get_or_insert_with(|| {
                pending(format!(
                    "broker {leader} did not write every marker: {}",
                    failed.join(", ")
                ))
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The `__consumer_offsets` partition the group coordinator writes `group_id`'s offsets to (and
/// so where TxnOffsetCommit's records go): the transaction's marker must follow them there.
fn offsets_partition_of(
    host: &dyn CoordinatorHost,
    group_id: &str,
) -> Result<(String, i32), ApiError> {
    let partition = host
        .groups()
        .offsets_partition(host, group_id)
        .map_err(|error| api(error, "__consumer_offsets unavailable"))?;
    Ok((OFFSETS_TOPIC.to_string(), partition))
}

/// Sends AddPartitionsToTxn v5 (verify_only false) for `partitions` to the leader of
/// `__transaction_state` partition `state_partition`, the transaction's coordinator; blocks
/// this thread, bounded by the peer client's request timeout.
fn add_remotely(
    host: &dyn CoordinatorHost,
    state_partition: i32,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
) -> Result<(), ResponseError> {
    use kafka_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    use kafka_protocol::messages::{
        AddPartitionsToTxnRequest, ProducerId, TopicName, TransactionalId,
    };
    use kafka_protocol::protocol::StrBytes;

    let image = host.image();
    let leader = image
        .topics
        .get(TRANSACTION_STATE_TOPIC)
        .and_then(|t| t.partitions.get(&state_partition))
        .map_or(-1, |p| image.live_leader(p));
    if leader < 0 {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    if leader == host.node_id() {
        // Leader here, shard not loaded yet.
        return Err(ResponseError::CoordinatorLoadInProgress);
    }
    let Some(endpoint) = image.brokers.get(&leader).and_then(|b| b.client_endpoint()) else {
        return Err(ResponseError::CoordinatorNotAvailable);
    };
    let address = format!("{}:{}", endpoint.host, endpoint.port);
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let transaction = AddPartitionsToTxnTransaction::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(
            transactional_id.to_string(),
        )))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_verify_only(false)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(topic, indexes)| {
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(indexes)
                })
                .collect(),
        );
    let request = AddPartitionsToTxnRequest::default().with_transactions(vec![transaction]);
    let response = host
        .send_add_partitions(leader, &address, &request)
        .map_err(|error| {
            tracing::debug!(
                leader,
                error,
                "AddPartitionsToTxn to the coordinator failed"
            );
            ResponseError::CoordinatorNotAvailable
        })?;
    let code = if response.error_code != 0 {
        response.error_code
    } else {
        response
            .results_by_transaction
            .iter()
            .flat_map(|t| t.topic_results.iter())
            .flat_map(|t| t.results_by_partition.iter())
            .map(|p| p.partition_error_code)
            .find(|code| *code != 0)
            .unwrap_or(0)
    };
    match code {
        0 => Ok(()),
        code => {
            Err(ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError))
        }
    }
}

/// The check of [`TransactionCoordinator::verify`] on a locked state.
fn verify_in(
    state: &State,
    transactional_id: Option<&str>,
    producer_id: i64,
    epoch: i16,
    topic: &str,
    partition: i32,
) -> Result<(), ResponseError> {
    let Some(txn) = transactional_id.and_then(|id| state.txns.get(id)) else {
        return Err(ResponseError::InvalidTxnState);
    };
    if txn.producer_id != producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if epoch < txn.producer_epoch {
        return Err(ResponseError::InvalidProducerEpoch);
    }
    if txn.state != TxnState::Ongoing || !txn.partitions.contains(&(topic.to_string(), partition)) {
        return Err(ResponseError::InvalidTxnState);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Produce verifies on a runtime worker: while a coordinator write holds the lock (across
    /// its wait for the ISR), `try_verify` answers at once that it would have to wait, so the
    /// handler waits with the worker handed off instead of blocking it (the freeze found by
    /// compat/cluster/rolling.sh: every worker blocked here, no follower fetch served).
    #[test]
    fn try_verify_does_not_wait_for_a_writer() {
        let coordinator = TransactionCoordinator::new(TransactionSettings {
            state_partitions: 50,
            timeout_max_ms: 900_000,
            id_expiration_ms: 604_800_000,
        });
        let writer = coordinator.lock();
        assert_eq!(coordinator.try_verify(Some("t"), 1, 0, "a", 0), None);
        drop(writer);
        assert_eq!(
            coordinator.try_verify(Some("t"), 1, 0, "a", 0),
            Some(Err(ResponseError::InvalidTxnState))
        );
        assert_eq!(
            coordinator.verify(Some("t"), 1, 0, "a", 0),
            Err(ResponseError::InvalidTxnState)
        );
    }

    #[test]
    fn java_hash_matches_kafka() {
        // "hello".hashCode() == 99162322 in Java.
        assert_eq!(java_hash_abs("hello"), 99_162_322);
        assert_eq!(java_hash_abs(""), 0);
    }

    fn txn_copy() -> TxnMetadata {
        TxnMetadata {
            transactional_id: "t".into(),
            producer_id: 1,
            producer_epoch: 0,
            timeout_ms: 1,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            last_update_ms: 0,
            start_ms: 0,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            client_transaction_version: 0,
        }
    }

    #[test]
    fn records_round_trip() {
        let txn = TxnMetadata {
            transactional_id: "t".into(),
            producer_id: 7,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [
                ("a".to_string(), 0),
                ("a".to_string(), 2),
                ("b".to_string(), 1),
            ]
            .into_iter()
            .collect(),
            last_update_ms: 5,
            start_ms: 4,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            client_transaction_version: 0,
        };
        assert_eq!(decode_key(&encode_key("t")).as_deref(), Some("t"));
        assert_eq!(decode_value("t", &encode_value(&txn)), Some(txn));
        assert_eq!(decode_value("t", &[0, 0, 1]), None);
        // A huge array count cannot make the decoder allocate.
        let mut bad = encode_value(&TxnMetadata {
            partitions: BTreeSet::new(),
            ..txn_copy()
        });
        bad[17..21].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_value("t", &bad), None);
    }

    /// A transactions-v2 transaction is written as TransactionLogValue v1 (flexible, with
    /// KIP-890's tagged fields) and read back, unknown tags skipped; the bytes are Kafka's.
    #[test]
    fn v2_records_round_trip_with_tagged_fields() {
        let txn = TxnMetadata {
            transactional_id: "t".into(),
            producer_id: 7,
            producer_epoch: 32_767,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [("a".to_string(), 0), ("a".to_string(), 2)]
                .into_iter()
                .collect(),
            last_update_ms: 5,
            start_ms: 4,
            previous_producer_id: 3,
            next_producer_id: 9,
            client_transaction_version: 2,
        };
        let bytes = encode_value(&txn);
        assert_eq!(&bytes[..2], &[0, 1], "value version 1");
        assert_eq!(decode_value("t", &bytes), Some(txn.clone()));
        // Kafka's layout: fixed fields, compact array of (compact string, compact int32 array,
        // no tags), two timestamps, then tags 0, 1, 2.
        let mut expected = vec![0, 1];
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.extend_from_slice(&32_767i16.to_be_bytes());
        expected.extend_from_slice(&60_000i32.to_be_bytes());
        expected.push(2);
        expected.extend_from_slice(&[2, 2, b'a', 3, 0, 0, 0, 0, 0, 0, 0, 2, 0]);
        expected.extend_from_slice(&5i64.to_be_bytes());
        expected.extend_from_slice(&4i64.to_be_bytes());
        expected.extend_from_slice(&[3, 0, 8]);
        expected.extend_from_slice(&3i64.to_be_bytes());
        expected.extend_from_slice(&[1, 8]);
        expected.extend_from_slice(&9i64.to_be_bytes());
        expected.extend_from_slice(&[2, 2, 0, 2]);
        assert_eq!(bytes, expected);
        // An unknown tag (a newer Kafka's) is skipped.
        let mut newer = bytes.clone();
        let tags_at = newer.len() - (1 + 10 + 10 + 4);
        newer[tags_at] = 4;
        newer.extend_from_slice(&[7, 1, 0xff]);
        assert_eq!(decode_value("t", &newer), Some(txn.clone()));
        // Defaults are not written; a v1 record without tags reads with the defaults.
        let plain = TxnMetadata {
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            ..txn
        };
        let bytes = encode_value(&plain);
        assert_eq!(&bytes[bytes.len() - 5..], &[1, 2, 2, 0, 2]);
        assert_eq!(decode_value("t", &bytes), Some(plain));
        // A compact array count beyond the bytes cannot allocate.
        let mut bad = encode_value(&TxnMetadata {
            partitions: BTreeSet::new(),
            ..txn_copy()
        });
        bad[0..2].copy_from_slice(&1i16.to_be_bytes());
        bad[17] = 0x7f;
        assert_eq!(decode_value("t", &bad), None);
    }

    /// A coordinator of one `__transaction_state` partition (its shard not loaded yet).
    fn one_shard_coordinator() -> TransactionCoordinator {
        TransactionCoordinator::new(TransactionSettings {
            state_partitions: 1,
            timeout_max_ms: 900_000,
            id_expiration_ms: 604_800_000,
        })
    }

    /// A host for the coordinator alone: every partition led here, markers and records kept.
    struct FakeHost {
        image: std::sync::Arc<crate::controller::image::MetadataImage>,
        groups: crate::coordinator::GroupCoordinator,
        next_producer_id: Mutex<i64>,
        markers: Mutex<Vec<(String, i32, i64, i16, bool)>>,
        records: Mutex<Vec<Vec<u8>>>,
        /// Whether this node leads every partition (the replica manager's view).
        leading: std::sync::atomic::AtomicBool,
        /// How long a shard's read (`read_all`) takes: a window for a race.
        read_delay_ms: std::sync::atomic::AtomicU64,
    }

    impl FakeHost {
        fn new() -> FakeHost {
            let mut image = crate::controller::image::MetadataImage::default();
            image.topics.insert(
                TRANSACTION_STATE_TOPIC.to_string(),
                crate::controller::image::TopicImage {
                    name: TRANSACTION_STATE_TOPIC.to_string(),
                    id: uuid::Uuid::nil(),
                    partitions: BTreeMap::new(),
                    configs: BTreeMap::new(),
                },
            );
            FakeHost {
                image: std::sync::Arc::new(image),
                groups: crate::coordinator::GroupCoordinator::new(
                    &crate::config::Properties::default(),
                ),
                next_producer_id: Mutex::new(1000),
                markers: Mutex::new(Vec::new()),
                records: Mutex::new(Vec::new()),
                leading: std::sync::atomic::AtomicBool::new(true),
                read_delay_ms: std::sync::atomic::AtomicU64::new(0),
            }
        }
    }

    impl CoordinatorHost for FakeHost {
        fn node_id(&self) -> i32 {
            1
        }
        fn image(&self) -> std::sync::Arc<crate::controller::image::MetadataImage> {
            self.image.clone()
        }
        fn leads(&self, _: &str, _: i32) -> bool {
            self.leading.load(std::sync::atomic::Ordering::Relaxed)
        }
        fn append(&self, _: &str, _: i32, batch: &[u8], _: bool) -> Result<(), WriteError> {
            self.records.lock().unwrap().push(batch.to_vec());
            Ok(())
        }
        fn read_all(&self, _: &str, _: i32) -> Result<Vec<u8>, WriteError> {
            let read = self.records.lock().unwrap().concat();
            let delay = self
                .read_delay_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(std::time::Duration::from_millis(delay));
            Ok(read)
        }
        fn write_marker(
            &self,
            topic: &str,
            partition: i32,
            producer_id: i64,
            producer_epoch: i16,
            _coordinator_epoch: i32,
            commit: bool,
        ) -> Result<(), WriteError> {
            self.markers.lock().unwrap().push((
                topic.to_string(),
                partition,
                producer_id,
                producer_epoch,
                commit,
            ));
            Ok(())
        }
        fn open_transactions(&self) -> Vec<super::super::runtime::OpenTransaction> {
            Vec::new()
        }
        fn create_topic(&self, _: &NewTopic) -> Result<(), ApiError> {
            Ok(())
        }
        fn next_producer_id(&self) -> Result<i64, ApiError> {
            let mut next = self.next_producer_id.lock().unwrap();
            *next += 1;
            Ok(*next)
        }
        fn groups(&self) -> &crate::coordinator::GroupCoordinator {
            &self.groups
        }
        fn send_markers(
            &self,
            _: i32,
            _: &str,
            _: &kafka_protocol::messages::WriteTxnMarkersRequest,
        ) -> Result<kafka_protocol::messages::WriteTxnMarkersResponse, String> {
            unreachable!("every partition is led here")
        }
        fn send_add_partitions(
            &self,
            _: i32,
            _: &str,
            _: &kafka_protocol::messages::AddPartitionsToTxnRequest,
        ) -> Result<kafka_protocol::messages::AddPartitionsToTxnResponse, String> {
            unreachable!("the coordinator is here")
        }
    }

    /// A transactional request is never answered from a shard that is not loaded: while this
    /// node leads the state partition but has not replayed it the answer is
    /// COORDINATOR_LOAD_IN_PROGRESS, once it does not lead it NOT_COORDINATOR (the CI failure
    /// of stop 24: InitProducerId reached a fresh node before its shard loaded).
    #[test]
    fn requests_wait_for_the_shard_to_load() {
        let host = FakeHost::new();
        let coordinator = one_shard_coordinator();
        let init = || {
            coordinator
                .init_producer_id(&host, "t", 60_000, None)
                .map_err(|e| e.error)
        };
        assert_eq!(init(), Err(ResponseError::CoordinatorLoadInProgress));
        coordinator.load_shard(&host, 0, 0).unwrap();
        let (pid, epoch) = init().unwrap();
        coordinator.unload_shard(0);
        host.leading
            .store(false, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(init(), Err(ResponseError::NotCoordinator));
        assert_eq!(
            coordinator
                .end_transaction(&host, "t", pid, epoch, false, true)
                .map_err(|e| e.error),
            Err(ResponseError::NotCoordinator)
        );
        assert_eq!(
            coordinator
                .add_partitions(&host, "t", pid, epoch, &[("a".to_string(), 0)], 0)
                .map(|_| ())
                .map_err(|e| e.error),
            Err(ResponseError::NotCoordinator)
        );
        // Back as leader: the replay finds the producer where it was.
        host.leading
            .store(true, std::sync::atomic::Ordering::Relaxed);
        coordinator.load_shard(&host, 0, 0).unwrap();
        assert_eq!(init(), Ok((pid, epoch + 1)));
    }

    /// A group shard's load and a transaction marker decided meanwhile (chaos seed 5501): the
    /// load read the log before the marker was appended, and the marker's decision came before
    /// the load recorded the transaction's offsets as undecided. The decision waits for the
    /// load and finds them: the offset is committed, not left undecided for good.
    #[test]
    fn a_marker_decided_during_a_group_load_decides_the_loaded_offsets() {
        use crate::coordinator::records::{offset_key, offset_value, OffsetValue};
        let host = std::sync::Arc::new(FakeHost::new());
        let producer_id = 77;
        let value = OffsetValue {
            offset: 42,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 1,
        };
        let batch = BatchBuilder::new(1)
            .producer(producer_id, 0, -1)
            .transactional()
            .record(
                Some(&offset_key("g", "t", 0)),
                Some(&offset_value(&value)),
                1,
            )
            .build();
        host.records.lock().unwrap().push(batch);
        host.read_delay_ms
            .store(300, std::sync::atomic::Ordering::Relaxed);
        let loading = {
            let host = host.clone();
            std::thread::spawn(move || host.groups.load_shard(host.as_ref(), 0, 1))
        };
        // The marker arrives while the load is inside its read.
        std::thread::sleep(std::time::Duration::from_millis(100));
        host.groups
            .end_transactional_offsets(producer_id, None, true);
        loading.join().unwrap().unwrap();
        assert!(!host.groups.has_undecided_offset("g", "t", 0));
        let fetched = host
            .groups
            .fetch_offsets("g", (None, -1), Some(vec![("t".to_string(), vec![0])]))
            .unwrap();
        assert_eq!(fetched[0].1[0].1.as_ref().map(|v| v.offset), Some(42));
    }

    /// Offsets staged while another node coordinated the transaction, decided by this node
    /// once the coordinator moved here (chaos seeds 5501 and 5606: the group coordinator
    /// kept them staged for good, answering UNSTABLE_OFFSET_COMMIT, and a consumer gave up
    /// and read its partition again from the start).
    #[test]
    fn offsets_staged_under_a_remote_coordinator_are_decided_when_it_moves_here() {
        use crate::controller::image::{PartitionImage, TopicImage};
        let mut host = FakeHost::new();
        let mut image = (*host.image).clone();
        let partition = PartitionImage {
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        };
        image.topics.insert(
            OFFSETS_TOPIC.to_string(),
            TopicImage {
                name: OFFSETS_TOPIC.to_string(),
                id: uuid::Uuid::nil(),
                partitions: BTreeMap::from([(0, partition)]),
                configs: BTreeMap::new(),
            },
        );
        host.image = std::sync::Arc::new(image);
        let coordinator = one_shard_coordinator();
        coordinator.load_shard(&host, 0, 0).unwrap();
        let (pid, epoch) = coordinator
            .init_producer_id(&host, "t", 60_000, None)
            .unwrap();
        coordinator
            .add_offsets(&host, "t", (pid, epoch), "g", false)
            .unwrap();
        // The transactional id's shard is elsewhere while TxnOffsetCommit arrives...
        coordinator.shards.lock().unwrap().remove(&0);
        let offset = PendingOffset {
            topic: "source".to_string(),
            partition: 5,
            offset: 365,
            leader_epoch: -1,
            metadata: None,
        };
        coordinator
            .stage_offsets(&host, "t", pid, epoch, "g", vec![offset])
            .unwrap();
        assert!(coordinator.has_staged_offset("g", "source", 5));
        // ...and back here for the EndTxn.
        coordinator.shards.lock().unwrap().insert(0, 0);
        coordinator
            .end_transaction(&host, "t", pid, epoch, true, false)
            .unwrap();
        assert!(
            !coordinator.has_staged_offset("g", "source", 5),
            "the commit decided the staged offset"
        );
        let fetched = host
            .groups
            .fetch_offsets("g", (None, -1), Some(vec![("source".to_string(), vec![5])]))
            .unwrap();
        assert_eq!(fetched[0].1[0].1.as_ref().map(|v| v.offset), Some(365));
    }

    /// A group shard that left this node takes its staged offsets with it: the new leader
    /// replays them and waits for their marker there.
    #[test]
    fn staged_offsets_of_an_unloaded_group_shard_are_forgotten() {
        let coordinator = one_shard_coordinator();
        let offset = |partition| PendingOffset {
            topic: "source".to_string(),
            partition,
            offset: 1,
            leader_epoch: -1,
            metadata: None,
        };
        coordinator.staged_offsets.lock().unwrap().insert(
            7,
            BTreeMap::from([
                ("gone".to_string(), vec![offset(0)]),
                ("kept".to_string(), vec![offset(1)]),
            ]),
        );
        coordinator.forget_staged_offsets(|group_id| group_id == "gone");
        assert!(!coordinator.has_staged_offset("gone", "source", 0));
        assert!(coordinator.has_staged_offset("kept", "source", 1));
    }

    /// EndTxn v5 straight after InitProducerId (franz-go aborts when a transaction's produces
    /// all failed): the request's version picks the rules, not the one the (not yet started)
    /// transaction recorded. Kafka's table for an Empty transaction: abort at the current
    /// epoch bumps it, commit is INVALID_TXN_STATE, the epoch below is fenced; EndTxn v0-4
    /// keeps the v1 rule (nothing to end).
    #[test]
    fn end_txn_v5_aborts_a_fresh_producers_empty_transaction() {
        let host = FakeHost::new();
        let coordinator = one_shard_coordinator();
        coordinator.load_shard(&host, 0, 0).unwrap();
        let (pid, epoch) = coordinator
            .init_producer_id(&host, "t", 60_000, None)
            .unwrap();
        let end = |epoch, commit, v5| {
            coordinator
                .end_transaction(&host, "t", pid, epoch, commit, v5)
                .map_err(|e| e.error)
        };
        assert_eq!(
            end(epoch, false, false),
            Err(ResponseError::InvalidTxnState),
            "v1: nothing to abort"
        );
        assert_eq!(end(epoch, true, true), Err(ResponseError::InvalidTxnState));
        assert_eq!(end(epoch, false, true), Ok((pid, epoch + 1)), "abort bumps");
        assert!(
            host.markers.lock().unwrap().is_empty(),
            "no partition, no marker"
        );
        let txn = coordinator.transaction("t").unwrap();
        assert_eq!(
            (txn.state, txn.producer_epoch),
            (TxnState::CompleteAbort, epoch + 1)
        );
        assert_eq!(
            end(epoch, false, true),
            Ok((pid, epoch + 1)),
            "a retried abort"
        );
        assert_eq!(
            end(epoch + 1, false, true),
            Ok((pid, epoch + 2)),
            "the next empty abort"
        );
        assert_eq!(
            end(epoch, false, true),
            Err(ResponseError::ProducerFenced),
            "two epochs behind"
        );
    }

    /// EndTxn v5 at the last usable epoch: the markers carry the epoch bumped to i16::MAX, the
    /// producer carries on under a new producer id at epoch 0 (returned), a retried EndTxn with
    /// the old id and epoch gets the same answer, the old id is fenced otherwise, and the state
    /// replays from its TransactionLogValue v1 record.
    #[test]
    fn end_txn_at_epoch_exhaustion_moves_to_a_new_producer_id() {
        let host = FakeHost::new();
        let coordinator = one_shard_coordinator();
        coordinator.load_shard(&host, 0, 0).unwrap();
        let last_epoch = i16::MAX - 1;
        coordinator.lock().txns.insert(
            "t".into(),
            TxnMetadata {
                producer_id: 7,
                producer_epoch: last_epoch,
                state: TxnState::Ongoing,
                partitions: [("a".to_string(), 0)].into_iter().collect(),
                client_transaction_version: TRANSACTION_VERSION_EPOCH_BUMP,
                ..txn_copy()
            },
        );
        let end = |pid, epoch, commit| {
            coordinator
                .end_transaction(&host, "t", pid, epoch, commit, true)
                .map_err(|e| e.error)
        };
        assert_eq!(end(7, last_epoch, true), Ok((1001, 0)));
        assert_eq!(
            *host.markers.lock().unwrap(),
            vec![("a".to_string(), 0, 7, i16::MAX, true)],
            "the marker carries the bumped epoch of the old id"
        );
        let txn = coordinator.transaction("t").unwrap();
        assert_eq!(
            (txn.state, txn.producer_id, txn.producer_epoch),
            (TxnState::CompleteCommit, 1001, 0)
        );
        assert_eq!(
            (txn.previous_producer_id, txn.next_producer_id),
            (7, NO_PRODUCER_ID)
        );
        assert_eq!(end(7, last_epoch, true), Ok((1001, 0)), "a retried commit");
        assert_eq!(
            end(7, last_epoch, false),
            Err(ResponseError::InvalidTxnState)
        );
        assert_eq!(
            end(7, 3, true),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        // The current epoch of a completed transaction is valid (a v2 producer may abort an
        // empty transaction); a commit with nothing open is an invalid transition.
        assert_eq!(
            end(1001, 0, true),
            Err(ResponseError::InvalidTxnState),
            "no transaction open under the new id"
        );
        // The new id's next transaction: a retry of the previous EndTxn no longer matches.
        coordinator
            .add_partitions(&host, "t", 1001, 0, &[], TRANSACTION_VERSION_EPOCH_BUMP)
            .unwrap();
        assert_eq!(
            coordinator.transaction("t").unwrap().state,
            TxnState::Ongoing
        );
        assert_eq!(end(1001, 0, false), Ok((1001, 1)));
        assert_eq!(
            end(7, last_epoch, true),
            Err(ResponseError::InvalidProducerIdMapping)
        );
        // An abort with nothing written (Kafka 4 allows it in transactions v2; franz-go sends
        // one whenever a produce of the transaction may have failed): no markers, the epoch
        // bumps, and a retry of it gets the same answer.
        let markers_before = host.markers.lock().unwrap().len();
        assert_eq!(end(1001, 1, false), Ok((1001, 2)));
        assert_eq!(end(1001, 1, false), Ok((1001, 2)), "a retried empty abort");
        assert_eq!(host.markers.lock().unwrap().len(), markers_before);
        assert_eq!(
            coordinator.transaction("t").unwrap().state,
            TxnState::CompleteAbort
        );

        // Replay: the last record per id wins, tagged fields included.
        let replayed = TransactionCoordinator::new(coordinator.settings.clone());
        replayed.load_shard(&host, 0, 0).unwrap();
        assert_eq!(replayed.transaction("t"), coordinator.transaction("t"));
        assert_eq!(replayed.transaction("t").unwrap().previous_producer_id, 7);
    }
}
