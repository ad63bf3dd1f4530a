//! The fixed 61-byte header of a v2 record batch, parsed and validated without decoding records.
//!
//! Layout (big-endian), as Kafka stores it on disk and sends it on the wire:
//! ```text
//!  0 base_offset i64          8 batch_length i32        12 partition_leader_epoch i32
//! 16 magic i8                17 crc u32 (CRC32C of bytes 21..end)
//! 21 attributes i16          23 last_offset_delta i32  27 base_timestamp i64
//! 35 max_timestamp i64       43 producer_id i64        51 producer_epoch i16
//! 53 base_sequence i32       57 records_count i32      61 records…
//! ```
//! `batch_length` counts the bytes after itself, so a batch spans `12 + batch_length` bytes.
//! Base offset and leader epoch are outside the CRC: the broker rewrites them in place.

use thiserror::Error;

pub const HEADER_SIZE_BYTES: usize = 61;
/// Bytes before `batch_length`'s coverage starts: base offset + the length itself.
pub const LOG_OVERHEAD_BYTES: usize = 12;
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

pub const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
pub const ATTRIBUTE_LOG_APPEND_TIME: i16 = 0x08;
pub const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
pub const ATTRIBUTE_CONTROL: i16 = 0x20;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than a header, or than the batch length claims: a torn or truncated batch.
    #[error("truncated batch")]
    Truncated,
    #[error("batch length {0} out of range")]
    BadLength(i32),
    #[error("unsupported magic {0}")]
    BadMagic(i8),
    #[error("CRC mismatch: stored {stored:#x}, computed {computed:#x}")]
    CorruptCrc { stored: u32, computed: u32 },
    #[error("invalid record count {count} for last offset delta {last_offset_delta}")]
    BadCount { count: i32, last_offset_delta: i32 },
    #[error("unknown compression codec {0}")]
    BadCodec(i16),
}

fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}
fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}
fn read_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A copy of a batch header's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Reads the header fields from the first 61 bytes; checks only that they are there.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < HEADER_SIZE_BYTES {
            return Err(BatchError::Truncated);
        }
        Ok(BatchHeader {
            base_offset: read_i64(bytes, BASE_OFFSET),
            batch_length: read_i32(bytes, BATCH_LENGTH),
            partition_leader_epoch: read_i32(bytes, PARTITION_LEADER_EPOCH),
            magic: bytes[MAGIC] as i8,
            crc: read_i32(bytes, CRC) as u32,
            attributes: read_i16(bytes, ATTRIBUTES),
            last_offset_delta: read_i32(bytes, LAST_OFFSET_DELTA),
            base_timestamp: read_i64(bytes, BASE_TIMESTAMP),
            max_timestamp: read_i64(bytes, MAX_TIMESTAMP),
            producer_id: read_i64(bytes, PRODUCER_ID),
            producer_epoch: read_i16(bytes, PRODUCER_EPOCH),
            base_sequence: read_i32(bytes, BASE_SEQUENCE),
            records_count: read_i32(bytes, RECORDS_COUNT),
        })
    }

    /// Bytes the whole batch occupies.
    pub fn size_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn compression_codec(&self) -> i16 {
        self.attributes & ATTRIBUTE_COMPRESSION_MASK
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }
}

/// Validates one batch at the start of `bytes` (length, magic, CRC32C, codec) and returns its
/// header. `bytes` may hold more batches after it. This is the broker's whole check of a
/// produced batch: records are not decoded.
pub fn validate(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    if (header.batch_length as i64) < (HEADER_SIZE_BYTES - LOG_OVERHEAD_BYTES) as i64 {
        return Err(BatchError::BadLength(header.batch_length));
    }
    if header.magic != MAGIC_V2 {
        return Err(BatchError::BadMagic(header.magic));
    }
    let size_bytes = header.size_bytes();
    if bytes.len() < size_bytes {
        return Err(BatchError::Truncated);
    }
    let computed = crc32c::crc32c(&bytes[ATTRIBUTES..size_bytes]);
    if computed != header.crc {
        return Err(BatchError::CorruptCrc {
            stored: header.crc,
            computed,
        });
    }
    if header.compression_codec() > 4 {
        return Err(BatchError::BadCodec(header.compression_codec()));
    }
    Ok(header)
}

/// Stricter checks for a batch a producer sent: it must hold records and its offsets must be
/// dense (`last_offset_delta + 1 == records_count`), which is what every client writes.
pub fn validate_produced(header: &BatchHeader) -> Result<(), BatchError> {
    if header.records_count <= 0 || header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::BadCount {
            count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(())
}

/// Rewrites the broker-owned fields that lie outside the CRC.
pub fn set_base_offset_and_epoch(bytes: &mut [u8], base_offset: i64, leader_epoch: i32) {
    bytes[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    bytes[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Stamps LogAppendTime on a batch whose 61-byte header is `header` and whose records follow
/// in `body`: sets the timestamp-type attribute and the max timestamp, then recomputes the CRC
/// (both fields are inside it, as in Kafka).
pub fn set_log_append_time_split(header: &mut [u8; HEADER_SIZE_BYTES], body: &[u8], now_ms: i64) {
    let attributes = read_i16(header, ATTRIBUTES) | ATTRIBUTE_LOG_APPEND_TIME;
    header[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    header[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[ATTRIBUTES..]), body);
    header[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Iterates over whole batches in a buffer, validating each; stops at the first error.
pub struct BatchIter<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> BatchIter<'a> {
    pub fn new(bytes: &'a [u8]) -> BatchIter<'a> {
        BatchIter { bytes, position: 0 }
    }

    /// Byte position of the next batch.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl Iterator for BatchIter<'_> {
    /// (position of the batch in the buffer, header)
    type Item = Result<(usize, BatchHeader), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.position >= self.bytes.len() {
            return None;
        }
        let start = self.position;
        match validate(&self.bytes[start..]) {
            Ok(header) => {
                self.position += header.size_bytes();
                Some(Ok((start, header)))
            }
            Err(error) => {
                self.position = self.bytes.len();
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid uncompressed batch with `count` records of `value_size_bytes` each.
    pub fn sample_batch(count: i32, value_size_bytes: usize, timestamp_ms: i64) -> Vec<u8> {
        crate::record::builder::BatchBuilder::new(timestamp_ms)
            .records((0..count).map(|i| {
                (
                    None,
                    Some(vec![i as u8; value_size_bytes]),
                    timestamp_ms + i64::from(i),
                )
            }))
            .build()
    }

    #[test]
    fn valid_batch_round_trips() {
        let mut batch = sample_batch(3, 10, 1_000);
        let header = validate(&batch).unwrap();
        validate_produced(&header).unwrap();
        assert_eq!(header.records_count, 3);
        assert_eq!(header.size_bytes(), batch.len());
        set_base_offset_and_epoch(&mut batch, 42, 7);
        let header = validate(&batch).unwrap();
        assert_eq!(
            (
                header.base_offset,
                header.partition_leader_epoch,
                header.last_offset()
            ),
            (42, 7, 44)
        );
    }

    #[test]
    fn corruption_is_detected() {
        let mut batch = sample_batch(2, 10, 1_000);
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        assert!(matches!(
            validate(&batch),
            Err(BatchError::CorruptCrc { .. })
        ));
        assert_eq!(validate(&batch[..30]), Err(BatchError::Truncated));
        let mut batch = sample_batch(2, 10, 1_000);
        batch[16] = 1;
        assert_eq!(validate(&batch), Err(BatchError::BadMagic(1)));
    }

    #[test]
    fn log_append_time_keeps_crc_valid() {
        let batch = sample_batch(2, 10, 1_000);
        let mut header_bytes: [u8; HEADER_SIZE_BYTES] =
            batch[..HEADER_SIZE_BYTES].try_into().unwrap();
        set_log_append_time_split(&mut header_bytes, &batch[HEADER_SIZE_BYTES..], 99_999);
        let stamped = [&header_bytes[..], &batch[HEADER_SIZE_BYTES..]].concat();
        let header = validate(&stamped).unwrap();
        assert_eq!(header.max_timestamp, 99_999);
        assert_ne!(header.attributes & ATTRIBUTE_LOG_APPEND_TIME, 0);
    }
}
