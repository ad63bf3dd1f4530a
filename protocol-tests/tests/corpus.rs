//! The fuzz seed corpus (protocol-tests/fuzz/corpus/): real client frames captured with
//! fuzz/capture/capture.sh must decode, and the captured batches must validate. Also an
//! ignored test that (re)writes synthetic seeds for API versions no captured client used:
//!     cargo test --release -p dlog-protocol-tests --test corpus -- --ignored

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use dlog::protocol::api_versions::SUPPORTED;
use dlog::protocol::decode_request_frame;
use dlog::record::{batch, records};
use dlog_protocol_tests::*;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, FetchRequest, FindCoordinatorRequest, ListOffsetsRequest,
    MetadataRequest,
};
use kafka_protocol::protocol::Encodable;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus")
        .join(target)
}

fn files(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir(target))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| {
                    (
                        entry.file_name().to_string_lossy().into_owned(),
                        std::fs::read(entry.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn captured_request_frames_decode() {
    let files = files("request_frame");
    assert!(
        !files.is_empty(),
        "no seeds in {}",
        corpus_dir("request_frame").display()
    );
    let total_bytes: usize = files.iter().map(|(_, bytes)| bytes.len()).sum();
    assert!(
        files.len() <= 300,
        "{} seed files; keep at most 300",
        files.len()
    );
    assert!(
        total_bytes <= 2 << 20,
        "{total_bytes} seed bytes; keep at most 2 MiB"
    );
    for (name, frame) in files {
        let result = decode_request_frame(Bytes::from(frame));
        assert!(result.is_ok(), "{name}: {result:?}");
    }
}

#[test]
fn captured_batches_validate_and_decode() {
    for (name, bytes) in files("batch") {
        let header = batch::validate(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        batch::validate_produced(&header).unwrap_or_else(|e| panic!("{name}: {e}"));
        let section =
            records::records_section(&bytes, &header).unwrap_or_else(|e| panic!("{name}: {e}"));
        let decoded = records::decode(&section, &header).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded.len() as i32, header.records_count, "{name}");
    }
}

fn synthetic_body(api_key: ApiKey, version: i16) -> Option<Vec<u8>> {
    fn encode<T: Encodable>(body: &T, version: i16) -> Vec<u8> {
        let mut output = BytesMut::new();
        body.encode(&mut output, version).unwrap();
        output.to_vec()
    }
    let produce = produce_request("seed", 0, 1, &batch(3, 1_700_000_000_000));
    Some(match api_key {
        ApiKey::Produce if version < 3 => legacy_produce_body(&produce),
        ApiKey::Produce => encode(&produce, version),
        ApiKey::Fetch => encode(&FetchRequest::default(), version),
        ApiKey::ListOffsets => encode(&ListOffsetsRequest::default(), version),
        ApiKey::Metadata => encode(&MetadataRequest::default(), version),
        ApiKey::ApiVersions => encode(&ApiVersionsRequest::default(), version),
        ApiKey::CreateTopics => encode(&CreateTopicsRequest::default(), version),
        ApiKey::DeleteTopics => encode(&DeleteTopicsRequest::default(), version),
        ApiKey::DescribeConfigs => encode(&DescribeConfigsRequest::default(), version),
        ApiKey::DescribeCluster => encode(&DescribeClusterRequest::default(), version),
        ApiKey::FindCoordinator => encode(&FindCoordinatorRequest::default(), version),
        _ => return None,
    })
}

/// Writes `synthetic-<key>-v<version>.bin` for each served (api, version) that no captured
/// frame covers, so that the fuzzer starts from every version's layout.
#[test]
#[ignore]
fn write_synthetic_request_frame_seeds() {
    let dir = corpus_dir("request_frame");
    let captured: Vec<String> = files("request_frame")
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !name.starts_with("synthetic-"))
        .collect();
    let mut written = 0;
    for (api_key, versions) in SUPPORTED {
        for version in versions.min..=versions.max {
            let prefix = format!("{:02}-v{version:02}-", *api_key as i16);
            if captured.iter().any(|name| name.starts_with(&prefix)) {
                continue;
            }
            let Some(body) = synthetic_body(*api_key, version) else {
                eprintln!("no synthetic body for {api_key:?}; add one");
                continue;
            };
            let frame = raw_request_frame(*api_key, version, 1, &body);
            assert!(
                decode_request_frame(frame.clone().freeze()).is_ok(),
                "{prefix}"
            );
            let name = format!("synthetic-{:02}-v{version:02}.bin", *api_key as i16);
            std::fs::write(dir.join(name), &frame).unwrap();
            written += 1;
        }
    }
    eprintln!("wrote {written} synthetic seeds to {}", dir.display());
}
