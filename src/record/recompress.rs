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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::batch;
    use crate::record::builder::BatchBuilder;

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
