//! Compression codecs of record batches (attribute bits 0–2), with a cap on decompressed size.
//!
//! Decompression output is bounded: a small compressed batch must not inflate into gigabytes.
//! Snappy comes in two framings: Kafka clients (Java especially) send xerial-framed snappy,
//! others raw snappy blocks; both are accepted.

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Codec {
    pub fn from_attributes(attributes: i16) -> Result<Codec> {
        Ok(match attributes & 0x07 {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            other => bail!("unknown compression codec {other}"),
        })
    }

    /// The codec named by a `compression.type` value (`producer` is not a codec).
    pub fn from_name(name: &str) -> Option<Codec> {
        Some(match name {
            "uncompressed" | "none" => Codec::None,
            "gzip" => Codec::Gzip,
            "snappy" => Codec::Snappy,
            "lz4" => Codec::Lz4,
            "zstd" => Codec::Zstd,
            _ => return None,
        })
    }
}

const XERIAL_MAGIC: &[u8] = &[0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_BYTES: usize = 16;

/// Reads at most `output_bytes_max` bytes from `reader`; more is an error, not a truncation.
fn read_bounded(reader: impl Read, output_bytes_max: usize) -> Result<Vec<u8>> {
    let mut output = Vec::new();
    let read = reader
        .take(output_bytes_max as u64 + 1)
        .read_to_end(&mut output)?;
    if read > output_bytes_max {
        bail!("decompressed size exceeds {output_bytes_max} bytes");
    }
    Ok(output)
}

fn snappy_block(block: &[u8], output_bytes_max: usize, output: &mut Vec<u8>) -> Result<()> {
    let length = snap::raw::decompress_len(block)?;
    if output.len() + length > output_bytes_max {
        bail!("decompressed size exceeds {output_bytes_max} bytes");
    }
    let start = output.len();
    output.resize(start + length, 0);
    snap::raw::Decoder::new().decompress(block, &mut output[start..])?;
    Ok(())
}

/// Decompresses `input` (the records section of a batch), producing at most `output_bytes_max`.
pub fn decompress(codec: Codec, input: &[u8], output_bytes_max: usize) -> Result<Vec<u8>> {
    match codec {
        Codec::None => Ok(input.to_vec()),
        Codec::Gzip => read_bounded(flate2::read::GzDecoder::new(input), output_bytes_max),
        Codec::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(input), output_bytes_max),
        Codec::Zstd => read_bounded(zstd::stream::read::Decoder::new(input)?, output_bytes_max),
        Codec::Snappy => {
            let mut output = Vec::new();
            if input.starts_with(XERIAL_MAGIC) {
                let mut rest = input
                    .get(XERIAL_HEADER_BYTES..)
                    .context("short xerial header")?;
                while !rest.is_empty() {
                    let length_bytes: [u8; 4] =
                        rest.get(..4).context("short xerial block")?.try_into()?;
                    let length = u32::from_be_bytes(length_bytes) as usize;
                    let block = rest.get(4..4 + length).context("short xerial block")?;
                    snappy_block(block, output_bytes_max, &mut output)?;
                    rest = &rest[4 + length..];
                }
            } else {
                snappy_block(input, output_bytes_max, &mut output)?;
            }
            Ok(output)
        }
    }
}

/// Compresses `input` with `codec` in the framing Kafka clients read (gzip stream, LZ4 frame,
/// xerial snappy, zstd frame).
pub fn compress(codec: Codec, input: &[u8]) -> Result<Vec<u8>> {
    match codec {
        Codec::None => Ok(input.to_vec()),
        Codec::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(input)?;
            Ok(encoder.finish()?)
        }
        Codec::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(input)?;
            Ok(encoder.finish()?)
        }
        Codec::Zstd => Ok(zstd::bulk::compress(input, 3)?),
        Codec::Snappy => {
            // xerial framing: magic, version 1, compatible version 1, then length-prefixed blocks.
            const BLOCK_BYTES: usize = 32 * 1024;
            let mut output = Vec::with_capacity(XERIAL_HEADER_BYTES + input.len());
            output.extend_from_slice(XERIAL_MAGIC);
            output.extend_from_slice(&1i32.to_be_bytes());
            output.extend_from_slice(&1i32.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for block in input.chunks(BLOCK_BYTES) {
                let compressed = encoder.compress_vec(block)?;
                output.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                output.extend_from_slice(&compressed);
            }
            Ok(output)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_is_bounded() {
        let input: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for codec in [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ] {
            let compressed = compress(codec, &input).unwrap();
            assert_eq!(
                decompress(codec, &compressed, input.len()).unwrap(),
                input,
                "{codec:?}"
            );
            if codec != Codec::None {
                assert!(
                    decompress(codec, &compressed, input.len() - 1).is_err(),
                    "{codec:?} not bounded"
                );
            }
        }
    }

    #[test]
    fn raw_snappy_is_accepted() {
        let input = b"hello hello hello hello".repeat(10);
        let raw = snap::raw::Encoder::new().compress_vec(&input).unwrap();
        assert_eq!(decompress(Codec::Snappy, &raw, 1 << 20).unwrap(), input);
    }
}
