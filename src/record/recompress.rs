//! Re-encoding a batch with another codec, for topics whose `compression.type` names a codec
//! (not `producer`): the one produce-path case where the broker looks inside a batch.

use anyhow::Result;

use super::batch::{
    BatchHeader, ATTRIBUTE_COMPRESSION_MASK, HEADER_SIZE_BYTES, LOG_OVERHEAD_BYTES,
};
use super::codec::{self, Codec};
use super::records;

/// The batch at the start of `batch` re-encoded with `codec`: same header fields and records,
/// new codec bits, length and CRC.
pub fn recompress(batch: &[u8], header: &BatchHeader, codec: Codec) -> Result<Vec<u8>> {
    let section = records::records_section(batch, header)?;
    let body = codec::compress(codec, &section)?;
    let mut output = Vec::with_capacity(HEADER_SIZE_BYTES + body.len());
    output.extend_from_slice(&batch[..HEADER_SIZE_BYTES]);
    output.extend_from_slice(&body);
    let batch_length = (output.len() - LOG_OVERHEAD_BYTES) as i32;
    output[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = (header.attributes & !ATTRIBUTE_COMPRESSION_MASK) | codec as i16;
    output[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&output[21..]);
    output[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(output)
}

/// The batch at the start of `batch` with only `kept` of its records (raw encodings, in order,
/// a non-empty subset): the compaction rewrite. Base offset, last offset delta, base
/// timestamp and producer fields stay, so every kept record keeps its offset and timestamp
/// and the batch keeps its place in producer state; the count, max timestamp, codec body,
/// length and CRC are recomputed.
pub fn retain_records(
    batch: &[u8],
    header: &BatchHeader,
    kept: &[(&[u8], i64)],
) -> Result<Vec<u8>> {
    assert!(!kept.is_empty(), "a batch keeps at least one record");
    let mut section = Vec::with_capacity(kept.iter().map(|(raw, _)| raw.len()).sum());
    let mut max_timestamp_ms = i64::MIN;
    for (raw, timestamp_ms) in kept {
        section.extend_from_slice(raw);
        max_timestamp_ms = max_timestamp_ms.max(*timestamp_ms);
    }
    if header.attributes & super::batch::ATTRIBUTE_LOG_APPEND_TIME != 0 {
        max_timestamp_ms = header.max_timestamp;
    }
    let body = codec::compress(Codec::from_attributes(header.attributes)?, &section)?;
    let mut output = Vec::with_capacity(HEADER_SIZE_BYTES + body.len());
    output.extend_from_slice(&batch[..HEADER_SIZE_BYTES]);
    output.extend_from_slice(&body);
    let batch_length = (output.len() - LOG_OVERHEAD_BYTES) as i32;
    output[8..12].copy_from_slice(&batch_length.to_be_bytes());
    output[35..43].copy_from_slice(&max_timestamp_ms.to_be_bytes());
    output[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&output[21..]);
    output[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::batch;
    use crate::record::builder::BatchBuilder;

    #[test]
    fn retained_records_keep_offsets_and_timestamps() {
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let mut original = BatchBuilder::new(100)
                .codec(codec)
                .record(Some(b"a"), Some(b"1"), 100)
                .record(Some(b"b"), Some(b"2"), 150)
                .record(Some(b"a"), None, 120)
                .build();
            original[..8].copy_from_slice(&40i64.to_be_bytes());
            let header = batch::validate(&original).unwrap();
            let section = records::records_section(&original, &header).unwrap();
            let decoded = records::decode(&section, &header).unwrap();
            let kept: Vec<(&[u8], i64)> = [&decoded[1], &decoded[2]]
                .iter()
                .map(|r| (r.raw, r.timestamp_ms))
                .collect();
            let rewritten = retain_records(&original, &header, &kept).unwrap();
            let new_header = batch::validate(&rewritten).unwrap();
            assert_eq!(new_header.base_offset, 40);
            assert_eq!(new_header.last_offset(), 42);
            assert_eq!(new_header.records_count, 2);
            assert_eq!(new_header.max_timestamp, 150);
            let section = records::records_section(&rewritten, &new_header).unwrap();
            let records = records::decode(&section, &new_header).unwrap();
            let summary: Vec<_> = records
                .iter()
                .map(|r| (r.offset, r.timestamp_ms, r.key, r.value))
                .collect();
            assert_eq!(
                summary,
                vec![
                    (41, 150, Some(&b"b"[..]), Some(&b"2"[..])),
                    (42, 120, Some(&b"a"[..]), None)
                ]
            );
        }
    }

    #[test]
    fn recompressed_batches_keep_their_records() {
        let original = BatchBuilder::new(5)
            .codec(Codec::Gzip)
            .record(Some(b"k"), Some(b"value"), 5)
            .record(None, None, 9)
            .build();
        let header = batch::validate(&original).unwrap();
        for codec in [Codec::None, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let converted = recompress(&original, &header, codec).unwrap();
            let converted_header = batch::validate(&converted).unwrap();
            assert_eq!(converted_header.compression_codec(), codec as i16);
            let section = records::records_section(&converted, &converted_header).unwrap();
            let decoded = records::decode(&section, &converted_header).unwrap();
            assert_eq!(decoded.len(), 2);
            assert_eq!(decoded[0].value, Some(&b"value"[..]));
            assert_eq!(decoded[1].timestamp_ms, 9);
        }
    }
}
