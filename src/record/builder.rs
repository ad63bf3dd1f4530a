//! Builds v2 record batches: for the metadata log, for tests and benches. (Produced batches
//! are never rebuilt; they are stored as the client sent them.)

use super::batch::{HEADER_SIZE_BYTES, MAGIC_V2};
use super::codec::{self, Codec};
use super::records::{write_varint, write_varlong};

pub struct BatchBuilder {
    base_timestamp_ms: i64,
    codec: Codec,
    records: Vec<u8>,
    count: i32,
    max_timestamp_ms: i64,
    /// (producer id, producer epoch, first sequence); (-1, -1, -1) when not idempotent.
    producer: (i64, i16, i32),
    transactional: bool,
}

/// (key, value, timestamp)
pub type RecordParts = (Option<Vec<u8>>, Option<Vec<u8>>, i64);

impl BatchBuilder {
    pub fn new(base_timestamp_ms: i64) -> BatchBuilder {
        BatchBuilder {
            base_timestamp_ms,
            codec: Codec::None,
            records: Vec::new(),
            count: 0,
            max_timestamp_ms: -1,
            producer: (-1, -1, -1),
            transactional: false,
        }
    }

    /// Stamps the batch as an idempotent producer's: its id, epoch and first sequence.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, first_sequence: i32) -> Self {
        self.producer = (producer_id, producer_epoch, first_sequence);
        self
    }

    /// Sets the transactional attribute bit (the batch belongs to an open transaction).
    pub fn transactional(mut self) -> BatchBuilder {
        self.transactional = true;
        self
    }

    pub fn codec(mut self, codec: Codec) -> BatchBuilder {
        self.codec = codec;
        self
    }

    pub fn record(
        mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp_ms: i64,
    ) -> BatchBuilder {
        let mut body = vec![0u8]; // attributes
        write_varlong(&mut body, timestamp_ms - self.base_timestamp_ms);
        write_varint(&mut body, self.count);
        for field in [key, value] {
            match field {
                Some(bytes) => {
                    write_varint(&mut body, bytes.len() as i32);
                    body.extend_from_slice(bytes);
                }
                None => write_varint(&mut body, -1),
            }
        }
        write_varint(&mut body, 0); // no headers
        write_varint(&mut self.records, body.len() as i32);
        self.records.extend_from_slice(&body);
        self.count += 1;
        self.max_timestamp_ms = self.max_timestamp_ms.max(timestamp_ms);
        self
    }

    pub fn records(self, records: impl IntoIterator<Item = RecordParts>) -> BatchBuilder {
        records
            .into_iter()
            .fold(self, |builder, (key, value, timestamp_ms)| {
                builder.record(key.as_deref(), value.as_deref(), timestamp_ms)
            })
    }

    /// The finished batch with base offset 0 (the log assigns offsets on append).
    pub fn build(self) -> Vec<u8> {
        assert!(self.count > 0, "a batch holds at least one record");
        let body = codec::compress(self.codec, &self.records).expect("in-memory compression");
        let mut batch = Vec::with_capacity(HEADER_SIZE_BYTES + body.len());
        batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
        batch.extend_from_slice(&((HEADER_SIZE_BYTES - 12 + body.len()) as i32).to_be_bytes());
        batch.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
        batch.push(MAGIC_V2 as u8);
        batch.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
        let attributes = self.codec as i16 | if self.transactional { 0x10 } else { 0 };
        batch.extend_from_slice(&attributes.to_be_bytes());
        batch.extend_from_slice(&(self.count - 1).to_be_bytes());
        batch.extend_from_slice(&self.base_timestamp_ms.to_be_bytes());
        batch.extend_from_slice(&self.max_timestamp_ms.to_be_bytes());
        let (producer_id, producer_epoch, first_sequence) = self.producer;
        batch.extend_from_slice(&producer_id.to_be_bytes());
        batch.extend_from_slice(&producer_epoch.to_be_bytes());
        batch.extend_from_slice(&first_sequence.to_be_bytes());
        batch.extend_from_slice(&self.count.to_be_bytes());
        batch.extend_from_slice(&body);
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{batch, records};

    #[test]
    fn built_batches_decode_with_every_codec() {
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let bytes = BatchBuilder::new(1000)
                .codec(codec)
                .record(Some(b"k1"), Some(b"v1"), 1000)
                .record(None, None, 1005)
                .build();
            let header = batch::validate(&bytes).unwrap();
            let section = records::records_section(&bytes, &header).unwrap();
            let decoded = records::decode(&section, &header).unwrap();
            assert_eq!(decoded.len(), 2);
            assert_eq!(
                (decoded[0].key, decoded[0].value),
                (Some(&b"k1"[..]), Some(&b"v1"[..]))
            );
            assert_eq!(
                (decoded[1].offset, decoded[1].timestamp_ms, decoded[1].value),
                (1, 1005, None)
            );
        }
    }
}
