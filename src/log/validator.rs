//! Batch validation on append (Kafka's `LogValidator`): what a client's batches must pass
//! before a byte is written, the topic's `compression.type` applied, and the offset
//! assignment that rewrites each batch header in place.
//!
//! Invariants:
//! - Validation only reads. Headers and CRCs are always checked; records are decoded only
//!   where the topic's config asks (a compacted topic's keys, a `compression.type` the batch
//!   does not use).
//! - All or nothing: every batch of a request passes, or the request is refused with the
//!   first failure, before anything reaches a segment.
//! - Offset assignment touches only headers: base offset and partition leader epoch (outside
//!   the CRC) and, under LogAppendTime, the timestamp type, max timestamp and CRC. Record
//!   bytes are written as the client sent them, or as the recompression produced them.

use std::borrow::Cow;
use std::io::IoSlice;

use crate::record::batch::{self, BatchError, BatchHeader, BatchIter, HEADER_SIZE_BYTES};
use crate::record::codec::Codec;
use crate::record::{recompress, records};

use super::error::AppendError;
use super::log_config::LogConfig;

/// Batches that passed validation: the bytes to write (the client's own, or the recompressed
/// copy) and the position of each batch in them with its header.
pub struct ValidBatches<'a> {
    pub records: Cow<'a, [u8]>,
    pub headers: Vec<(usize, BatchHeader)>,
}

/// Validates `records` (one or more v2 batches as a producer sent them) against the topic's
/// config at `now_ms`, recompressing them when the topic's `compression.type` asks.
pub fn validate_from_client<'a>(
    records: &'a [u8],
    config: &LogConfig,
    now_ms: i64,
) -> Result<ValidBatches<'a>, AppendError> {
    let mut headers: Vec<(usize, BatchHeader)> = Vec::new();
    for item in BatchIter::new(records) {
        let (position, header) = item.map_err(|error| match error {
            BatchError::BadCount { .. } | BatchError::BadCodec(_) | BatchError::BadMagic(_) => {
                AppendError::InvalidRecord(error.to_string())
            }
            other => AppendError::Corrupt(other),
        })?;
        batch::validate_produced(&header).map_err(|e| AppendError::InvalidRecord(e.to_string()))?;
        if header.is_control() {
            return Err(AppendError::InvalidRecord(
                "clients may not write control batches".into(),
            ));
        }
        if header.size_bytes() > config.max_message_bytes {
            return Err(AppendError::MessageTooLarge {
                size_bytes: header.size_bytes(),
                limit_bytes: config.max_message_bytes,
            });
        }
        if !config.log_append_time {
            check_timestamp(config, &header, now_ms)?;
        }
        if config.compact {
            check_keyed(&records[position..position + header.size_bytes()], &header)?;
        }
        headers.push((position, header));
    }
    if headers.is_empty() {
        return Err(AppendError::InvalidRecord("no record batches".into()));
    }
    match Codec::from_name(&config.compression_type) {
        Some(codec)
            if headers
                .iter()
                .any(|(_, h)| h.compression_codec() != codec as i16) =>
        {
            let converted = recompress_all(records, &headers, codec)?;
            let headers: Vec<(usize, BatchHeader)> = BatchIter::new(&converted)
                .collect::<Result<_, _>>()
                .map_err(AppendError::Corrupt)?;
            if let Some((_, too_big)) = headers
                .iter()
                .find(|(_, h)| h.size_bytes() > config.max_message_bytes)
            {
                return Err(AppendError::MessageTooLarge {
                    size_bytes: too_big.size_bytes(),
                    limit_bytes: config.max_message_bytes,
                });
            }
            Ok(ValidBatches {
                records: Cow::Owned(converted),
                headers,
            })
        }
        _ => Ok(ValidBatches {
            records: Cow::Borrowed(records),
            headers,
        }),
    }
}

/// The headers of batches the broker itself wrote (markers, coordinator and metadata
/// records): only framing and CRC are checked.
pub fn parse_trusted(records: &[u8]) -> Result<Vec<(usize, BatchHeader)>, AppendError> {
    BatchIter::new(records)
        .collect::<Result<_, _>>()
        .map_err(AppendError::Corrupt)
}

/// Headers rewritten for the log, to be written each followed by its untouched body.
pub struct AssignedBatches {
    /// Each batch's rewritten 61-byte header, in order.
    rewritten: Vec<[u8; HEADER_SIZE_BYTES]>,
    /// Each batch's position relative to the start of the write, with its rewritten header.
    pub placed: Vec<(u64, BatchHeader)>,
    /// The offset after the last batch.
    pub next_offset: i64,
}

/// Assigns offsets from `first_offset` to the batches `headers` of `records`, stamps
/// `leader_epoch` on them and, when `log_append_time_ms` is set (LogAppendTime), that time.
pub fn assign_offsets(
    records: &[u8],
    headers: &[(usize, BatchHeader)],
    first_offset: i64,
    leader_epoch: i32,
    log_append_time_ms: Option<i64>,
) -> AssignedBatches {
    let mut next_offset = first_offset;
    let mut rewritten: Vec<[u8; HEADER_SIZE_BYTES]> = Vec::with_capacity(headers.len());
    let mut placed: Vec<(u64, BatchHeader)> = Vec::with_capacity(headers.len());
    let mut relative_position = 0u64;
    for &(position, header) in headers {
        let mut header_bytes: [u8; HEADER_SIZE_BYTES] = records
            [position..position + HEADER_SIZE_BYTES]
            .try_into()
            .expect("61 bytes");
        batch::set_base_offset_and_epoch(&mut header_bytes, next_offset, leader_epoch);
        if let Some(now_ms) = log_append_time_ms {
            let body = &records[position + HEADER_SIZE_BYTES..position + header.size_bytes()];
            batch::set_log_append_time_split(&mut header_bytes, body, now_ms);
        }
        let header = BatchHeader::parse(&header_bytes).expect("61 bytes");
        placed.push((relative_position, header));
        relative_position += header.size_bytes() as u64;
        next_offset = header.last_offset() + 1;
        rewritten.push(header_bytes);
    }
    AssignedBatches {
        rewritten,
        placed,
        next_offset,
    }
}

impl AssignedBatches {
    /// The bytes to write in one `pwritev`, without copying the records: each rewritten
    /// header, then its batch's body from `records` (the buffer `headers` point into).
    pub fn io_slices<'b>(
        &'b self,
        records: &'b [u8],
        headers: &[(usize, BatchHeader)],
    ) -> Vec<IoSlice<'b>> {
        let mut parts: Vec<IoSlice<'b>> = Vec::with_capacity(headers.len() * 2);
        for (header_bytes, &(position, header)) in self.rewritten.iter().zip(headers) {
            parts.push(IoSlice::new(header_bytes));
            parts.push(IoSlice::new(
                &records[position + HEADER_SIZE_BYTES..position + header.size_bytes()],
            ));
        }
        parts
    }
}

/// Every batch of `records` in `codec` (topic `compression.type`), as one buffer.
fn recompress_all(
    records: &[u8],
    headers: &[(usize, BatchHeader)],
    codec: Codec,
) -> Result<Vec<u8>, AppendError> {
    let mut converted = Vec::with_capacity(records.len());
    for &(position, header) in headers {
        let batch = &records[position..position + header.size_bytes()];
        if header.compression_codec() == codec as i16 {
            converted.extend_from_slice(batch);
        } else {
            let recompressed = recompress::recompress(batch, &header, codec)
                .map_err(|e| AppendError::InvalidRecord(e.to_string()))?;
            converted.extend_from_slice(&recompressed);
        }
    }
    Ok(converted)
}

/// A compacted log keeps the latest record per key, so a record without a key has no place in
/// it: Kafka refuses such batches with INVALID_RECORD. Needs the records decoded (and
/// decompressed), which only compacted topics pay for.
fn check_keyed(batch: &[u8], header: &BatchHeader) -> Result<(), AppendError> {
    let invalid = |e: anyhow::Error| AppendError::InvalidRecord(e.to_string());
    let section = records::records_section(batch, header).map_err(invalid)?;
    let decoded = records::decode(&section, header).map_err(invalid)?;
    if decoded.iter().any(|record| record.key.is_none()) {
        return Err(AppendError::InvalidRecord(
            "Compacted topic cannot accept message without key.".into(),
        ));
    }
    Ok(())
}

/// CreateTime batches must lie within `message.timestamp.before/after.max.ms` of now.
fn check_timestamp(
    config: &LogConfig,
    header: &BatchHeader,
    now_ms: i64,
) -> Result<(), AppendError> {
    let too_old = now_ms.saturating_sub(header.base_timestamp) > config.timestamp_before_max_ms;
    let too_new = header.max_timestamp.saturating_sub(now_ms) > config.timestamp_after_max_ms;
    if too_old || too_new {
        let timestamp_ms = if too_old {
            header.base_timestamp
        } else {
            header.max_timestamp
        };
        return Err(AppendError::InvalidTimestamp { timestamp_ms });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::partition::tests::{batch, config};
    use crate::log::partition::{Checkpoints, PartitionLog};

    #[test]
    fn topic_compression_type_recompresses() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::clock::now_ms();
        let log = PartitionLog::open(
            dir.path(),
            "t",
            0,
            config(&[("compression.type", "zstd")]),
            Checkpoints::default(),
            false,
        )
        .unwrap();
        log.append(&batch(5, Codec::Gzip, now), now).unwrap();
        let bytes = log
            .read(0, 1 << 20, true)
            .unwrap()
            .unwrap()
            .unwrap()
            .read_to_vec()
            .unwrap();
        let header = batch::validate(&bytes).unwrap();
        assert_eq!(header.compression_codec(), Codec::Zstd as i16);
        let section = records::records_section(&bytes, &header).unwrap();
        assert_eq!(
            records::decode(&section, &header).unwrap()[4].value,
            Some(&b"value-4"[..])
        );
    }

    #[test]
    fn invalid_batches_are_refused_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::clock::now_ms();
        let log = PartitionLog::open(
            dir.path(),
            "t",
            0,
            config(&[("max.message.bytes", "100")]),
            Checkpoints::default(),
            false,
        )
        .unwrap();
        let mut corrupt = batch(1, Codec::None, now);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert!(matches!(
            log.append(&corrupt, now),
            Err(AppendError::Corrupt(_))
        ));
        assert!(matches!(
            log.append(&batch(20, Codec::None, now), now),
            Err(AppendError::MessageTooLarge { .. })
        ));
        assert!(matches!(
            log.append(&batch(1, Codec::None, now + 7_200_000), now),
            Err(AppendError::InvalidTimestamp { .. })
        ));
        assert!(matches!(
            log.append(&[], now),
            Err(AppendError::InvalidRecord(_))
        ));
        assert_eq!(log.offsets().log_end_offset, 0);
    }
}
