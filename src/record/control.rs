//! Transaction markers: the control batches (COMMIT / ABORT) the transaction coordinator writes
//! into every partition of a transaction. One record; key = version i16 (0) + type i16
//! (0 abort, 1 commit), value = version i16 (0) + coordinator epoch i32, as Kafka's
//! EndTransactionMarker. The batch carries the producer id and epoch, sequence -1, and the
//! transactional and control attribute bits.

use super::batch::{BatchHeader, ATTRIBUTE_CONTROL, ATTRIBUTE_TRANSACTIONAL};
use super::builder::BatchBuilder;
use super::records;

pub const CONTROL_TYPE_ABORT: i16 = 0;
pub const CONTROL_TYPE_COMMIT: i16 = 1;

/// A marker batch with base offset 0 (the log assigns the offset).
pub fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
    timestamp_ms: i64,
) -> Vec<u8> {
    let control_type = if commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    };
    let mut key = 0i16.to_be_bytes().to_vec();
    key.extend_from_slice(&control_type.to_be_bytes());
    let mut value = 0i16.to_be_bytes().to_vec();
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let mut batch = BatchBuilder::new(timestamp_ms)
        .record(Some(&key), Some(&value), timestamp_ms)
        .build();
    let attributes = ATTRIBUTE_TRANSACTIONAL | ATTRIBUTE_CONTROL;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// Whether a control batch (whole bytes) is a COMMIT marker; None if it is not a readable
/// transaction marker.
pub fn is_commit(batch: &[u8], header: &BatchHeader) -> Option<bool> {
    let section = records::records_section(batch, header).ok()?;
    let decoded = records::decode(&section, header).ok()?;
    let key = decoded.first()?.key?;
    if key.len() < 4 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        CONTROL_TYPE_COMMIT => Some(true),
        CONTROL_TYPE_ABORT => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_validate_and_read_back() {
        for commit in [true, false] {
            let batch = marker_batch(42, 3, 0, commit, 1_000);
            let header = crate::record::batch::validate(&batch).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
            assert_eq!(is_commit(&batch, &header), Some(commit));
        }
    }
}
