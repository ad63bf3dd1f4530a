//! Record batches as a producer sends them (or as they lie in a segment file): header
//! validation for every batch in the buffer, then, for each batch whose header is valid,
//! decompression (bounded) and record decoding, as the broker does off the hot path.
//!
//! The input is run twice: as it is, and with every batch's CRC32C recomputed first, so that
//! mutations inside a batch reach the codecs and the record decoder instead of stopping at
//! the checksum.
#![no_main]

use dlog::record::batch::{BatchHeader, BatchIter, HEADER_SIZE_BYTES, LOG_OVERHEAD_BYTES};
use dlog::record::records;
use libfuzzer_sys::fuzz_target;

const CRC_START: usize = 21;
const CRC_FIELD: std::ops::Range<usize> = 17..21;

fn check(data: &[u8]) {
    for item in BatchIter::new(data) {
        let Ok((position, header)) = item else { break };
        let batch_bytes = &data[position..];
        if let Ok(section) = records::records_section(batch_bytes, &header) {
            let _ = records::decode(&section, &header);
        }
    }
}

/// Rewrites the stored CRC of each batch whose length field fits in the buffer.
fn fix_crcs(data: &mut [u8]) {
    let mut position = 0usize;
    while let Ok(header) = BatchHeader::parse(&data[position..]) {
        let length = header.batch_length;
        if length < (HEADER_SIZE_BYTES - LOG_OVERHEAD_BYTES) as i32 {
            break;
        }
        let end = position + LOG_OVERHEAD_BYTES + length as usize;
        if end > data.len() {
            break;
        }
        let crc = crc32c_bitwise(&data[position + CRC_START..end]);
        data[position + CRC_FIELD.start..position + CRC_FIELD.end]
            .copy_from_slice(&crc.to_be_bytes());
        position = end;
    }
}

/// CRC32C (Castagnoli) without a dependency of our own; inputs are small.
fn crc32c_bitwise(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut fixed = data.to_vec();
    fix_crcs(&mut fixed);
    check(&fixed);
});
