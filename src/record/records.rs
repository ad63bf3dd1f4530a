//! Records inside a v2 batch: varint framing, decoded only off the hot path (offset-for-time
//! lookups, the metadata log, tests). Every length is checked against the bytes present.

use anyhow::{bail, Context, Result};

use super::batch::{BatchHeader, HEADER_SIZE_BYTES};
use super::codec::{self, Codec};

/// Reads an unsigned LEB128 varint of at most `max_bytes` bytes.
fn read_unsigned(bytes: &[u8], position: &mut usize, max_bytes: usize) -> Result<u64> {
    let mut value = 0u64;
    for index in 0..max_bytes {
        let byte = *bytes.get(*position).context("truncated varint")?;
        *position += 1;
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!("varint too long")
}

pub fn read_varint(bytes: &[u8], position: &mut usize) -> Result<i32> {
    let raw = read_unsigned(bytes, position, 5)? as u32;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

pub fn read_varlong(bytes: &[u8], position: &mut usize) -> Result<i64> {
    let raw = read_unsigned(bytes, position, 10)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

pub fn write_varint(output: &mut Vec<u8>, value: i32) {
    write_varlong(output, i64::from(value));
}

pub fn write_varlong(output: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        output.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    output.push(raw as u8);
}

/// One decoded record, borrowing from the (decompressed) records section.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
    /// The whole encoded record (length prefix included): copied as is when a batch is
    /// rewritten with a subset of its records (compaction).
    pub raw: &'a [u8],
}

fn read_bytes<'a>(bytes: &'a [u8], position: &mut usize) -> Result<Option<&'a [u8]>> {
    let length = read_varint(bytes, position)?;
    if length < 0 {
        return Ok(None);
    }
    let end = position
        .checked_add(length as usize)
        .context("length overflow")?;
    let slice = bytes
        .get(*position..end)
        .context("truncated record field")?;
    *position = end;
    Ok(Some(slice))
}

/// Upper bound on the decompressed size of one batch's records; matches the largest request.
pub const DECOMPRESSED_BYTES_MAX: usize = 128 * 1024 * 1024;

/// The records section of a batch, decompressed.
pub fn records_section(batch: &[u8], header: &BatchHeader) -> Result<Vec<u8>> {
    let body = batch
        .get(HEADER_SIZE_BYTES..header.size_bytes())
        .context("truncated batch")?;
    codec::decompress(
        Codec::from_attributes(header.attributes)?,
        body,
        DECOMPRESSED_BYTES_MAX,
    )
}

/// Decodes `header.records_count` records from a decompressed records section.
pub fn decode<'a>(section: &'a [u8], header: &BatchHeader) -> Result<Vec<Record<'a>>> {
    let mut records = Vec::new();
    let mut position = 0usize;
    for _ in 0..header.records_count.max(0) {
        let record_start = position;
        let length = read_varint(section, &mut position)?;
        if length < 0 {
            bail!("negative record length");
        }
        let end = position
            .checked_add(length as usize)
            .context("length overflow")?;
        let record = section.get(position..end).context("truncated record")?;
        position = end;
        let mut at = 1usize; // attributes byte, unused in v2
        let timestamp_delta = read_varlong(record, &mut at)?;
        let offset_delta = read_varint(record, &mut at)?;
        let key = read_bytes(record, &mut at)?;
        let value = read_bytes(record, &mut at)?;
        let header_count = read_varint(record, &mut at)?;
        if header_count < 0 || header_count as usize > record.len() {
            bail!("bad header count {header_count}");
        }
        let mut headers = Vec::with_capacity(header_count as usize);
        for _ in 0..header_count {
            let name = read_bytes(record, &mut at)?.context("null header key")?;
            headers.push((name, read_bytes(record, &mut at)?));
        }
        records.push(Record {
            offset: header.base_offset + i64::from(offset_delta),
            timestamp_ms: header.base_timestamp + timestamp_delta,
            key,
            value,
            headers,
            raw: &section[record_start..end],
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for value in [
            0i64,
            1,
            -1,
            63,
            -64,
            300,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut output = Vec::new();
            write_varlong(&mut output, value);
            let mut position = 0;
            assert_eq!(read_varlong(&output, &mut position).unwrap(), value);
            assert_eq!(position, output.len());
        }
    }
}
