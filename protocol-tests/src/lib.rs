//! Helpers for byte-level protocol cases; the cases live in tests/.
//!
//! - [`Broker`]: a `dlog` process on a free 127.0.0.1 port with a temporary data directory,
//!   killed when dropped.
//! - [`Conn`]: a raw TCP connection that writes size-prefixed request frames and reads
//!   response frames, every read bounded by [`IO_TIMEOUT`].
//! - Frame builders over `kafka-protocol`'s message types, plus hand-laid Produce v0–2
//!   (the codec starts at v3) and record batches from `dlog::record::builder::BatchBuilder`.

use std::fmt::Debug;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub use dlog::record::builder::BatchBuilder;
pub use dlog::record::codec::Codec;

/// Upper bound on every socket read and write, and on waiting for the broker to listen.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The client id every request carries.
pub const CLIENT_ID: &str = "dlog-protocol-tests";

// ---------------------------------------------------------------------------------------------
// The broker process
// ---------------------------------------------------------------------------------------------

/// Path of the broker binary: `../target/release/dlog` from this package (or `$DLOG_BIN`).
pub fn broker_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("DLOG_BIN") {
        return PathBuf::from(path);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("release")
        .join("dlog")
}

/// A running `dlog` on its own port and data directory; SIGKILLed and reaped on drop.
pub struct Broker {
    child: Child,
    pub addr: SocketAddr,
    data_dir: tempfile::TempDir,
    log_path: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Whether a broker at `addr` answers an ApiVersions v0 request. A bare connect is not
/// enough: while nothing listens on a port in the ephemeral range, a connect to it can
/// succeed by connecting the socket to itself (TCP simultaneous open).
fn answers_api_versions(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    if stream.local_addr().ok() == stream.peer_addr().ok() {
        return false;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let frame = request_frame(
        ApiKey::ApiVersions,
        0,
        0x5eed,
        &ApiVersionsRequest::default(),
    );
    if stream.write_all(&with_size_prefix(&frame)).is_err() {
        return false;
    }
    let mut header = [0u8; 8];
    matches!(read_full(&mut stream, &mut header), Ok(true))
        && i32::from_be_bytes(header[4..8].try_into().unwrap()) == 0x5eed
}

impl Broker {
    /// Starts a broker with default properties.
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// Starts a broker with `--set KEY=VALUE` for each of `properties`.
    pub fn start_with(properties: &[&str]) -> Broker {
        let binary = broker_binary();
        assert!(
            binary.is_file(),
            "dlog binary not found at {}: run `cargo build --release` in the workspace root \
             first (or point DLOG_BIN at a binary)",
            binary.display()
        );
        // The port is picked by binding :0 and releasing it, so another process may take it
        // before the broker binds: retry with a fresh port when the broker exits early.
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let data_dir = tempfile::Builder::new()
                .prefix("dlog-protocol-tests")
                .tempdir()
                .expect("create a temporary data directory");
            let log_path = data_dir.path().join("broker.stderr");
            let log_file = std::fs::File::create(&log_path).expect("create broker log file");
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let mut command = Command::new(&binary);
            command
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--data-dir")
                .arg(data_dir.path().join("data"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log_file))
                .env(
                    "RUST_LOG",
                    std::env::var("DLOG_TEST_LOG").unwrap_or("info".into()),
                );
            for property in properties {
                command.arg("--set").arg(property);
            }
            let child = command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let mut broker = Broker {
                child,
                addr,
                data_dir,
                log_path,
            };
            let deadline = Instant::now() + IO_TIMEOUT;
            loop {
                if let Ok(Some(status)) = broker.child.try_wait() {
                    last_log = broker.log();
                    eprintln!("dlog exited during startup ({status}); retrying:\n{last_log}");
                    break;
                }
                if answers_api_versions(addr) {
                    return broker;
                }
                if Instant::now() > deadline {
                    panic!(
                        "dlog did not listen on {addr} within {IO_TIMEOUT:?}; its log:\n{}",
                        broker.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("dlog failed to start five times; last log:\n{last_log}");
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The broker's data directory (`log.dirs`).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.path().join("data")
    }

    /// What the broker wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A new connection to the broker.
    pub fn connect(&self) -> Conn {
        Conn::connect(self.addr)
    }

    /// Asserts that the process is running and answers ApiVersions on a new connection.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("dlog is not running ({status}); its log:\n{}", self.log());
        }
        let mut conn = self.connect();
        let response: ApiVersionsResponse =
            conn.request(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
        assert_eq!(response.error_code, 0, "ApiVersions on a fresh connection");
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("dlog is not running ({status}); its log:\n{}", self.log());
        }
    }

    /// Creates a topic with CreateTopics v7 and asserts it worked.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        use kafka_protocol::messages::create_topics_request::CreatableTopic;
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1)])
            .with_timeout_ms(5000);
        let response: CreateTopicsResponse =
            self.connect().request(ApiKey::CreateTopics, 7, &request);
        assert_eq!(response.topics.len(), 1);
        assert_eq!(
            response.topics[0].error_code, 0,
            "create topic {name}: {:?}",
            response.topics[0].error_message
        );
    }

    /// The topic's id, from Metadata v12.
    pub fn topic_id(&self, name: &str) -> uuid::Uuid {
        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(name)))
            ]))
            .with_allow_auto_topic_creation(false);
        let response: MetadataResponse = self.connect().request(ApiKey::Metadata, 12, &request);
        assert_eq!(response.topics[0].error_code, 0, "metadata for {name}");
        response.topics[0].topic_id
    }

    /// Produces `records` (one or more v2 batches) to a partition with Produce v9, acks=-1,
    /// and returns the base offset.
    pub fn produce(&self, topic: &str, partition: i32, records: &[u8]) -> i64 {
        let response: ProduceResponse = self.connect().request(
            ApiKey::Produce,
            9,
            &produce_request(topic, partition, -1, records),
        );
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(
            partition.error_code, 0,
            "produce: {:?}",
            partition.error_message
        );
        partition.base_offset
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- dlog log ({}) ----\n{}", self.addr, self.log());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A raw connection
// ---------------------------------------------------------------------------------------------

/// How a connection ended when the test expected it to end.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// Orderly end of stream.
    Eof,
    /// The broker reset the connection (it closed with our bytes unread).
    Reset,
}

/// What a read on a connection found.
#[derive(Debug)]
pub enum Received {
    Frame(Bytes),
    Closed(Closed),
}

pub struct Conn {
    pub stream: TcpStream,
    next_correlation_id: i32,
}

impl Conn {
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            next_correlation_id: 1,
        }
    }

    /// A fresh correlation id (increasing, starting at 1).
    pub fn next_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id += 1;
        id
    }

    /// Writes bytes as they are (no size prefix). Errors are returned: the broker may have
    /// closed the connection already.
    pub fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Writes one frame with its 4-byte size prefix.
    pub fn send_frame(&mut self, frame: &[u8]) {
        self.write_raw(&with_size_prefix(frame))
            .expect("write request frame");
    }

    /// Encodes and sends a request; returns its correlation id.
    pub fn send<T: Encodable>(&mut self, api_key: ApiKey, version: i16, body: &T) -> i32 {
        let correlation_id = self.next_correlation_id();
        let frame = request_frame(api_key, version, correlation_id, body);
        self.send_frame(&frame);
        correlation_id
    }

    /// Reads one response frame (without its size prefix), or how the connection closed.
    /// Panics on a timeout.
    pub fn receive(&mut self) -> Received {
        let mut size = [0u8; 4];
        match read_full(&mut self.stream, &mut size) {
            Ok(true) => {}
            Ok(false) => return Received::Closed(Closed::Eof),
            Err(e) if is_reset(&e) => return Received::Closed(Closed::Reset),
            Err(e) => panic!("reading a response size: {e}"),
        }
        let size = i32::from_be_bytes(size);
        assert!(
            (0..=256 << 20).contains(&size),
            "implausible response frame size {size}"
        );
        let mut frame = vec![0u8; size as usize];
        match read_full(&mut self.stream, &mut frame) {
            Ok(true) => Received::Frame(Bytes::from(frame)),
            Ok(false) => panic!("connection closed inside a {size}-byte response frame"),
            Err(e) => panic!("reading a {size}-byte response frame: {e}"),
        }
    }

    /// Reads one response frame; panics if the connection closed instead.
    pub fn receive_frame(&mut self) -> Bytes {
        match self.receive() {
            Received::Frame(frame) => frame,
            Received::Closed(how) => panic!("connection closed ({how:?}) instead of a response"),
        }
    }

    /// Reads a response of `api_key`/`version`, checks its correlation id, decodes the body
    /// and checks that the frame held nothing more.
    pub fn receive_response<R: Decodable + Debug>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> R {
        let frame = self.receive_frame();
        decode_response(api_key, version, correlation_id, frame)
    }

    /// Sends a request and reads its response.
    pub fn request<T: Encodable, R: Decodable + Debug>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &T,
    ) -> R {
        let correlation_id = self.send(api_key, version, body);
        self.receive_response(api_key, version, correlation_id)
    }

    /// Asserts that the broker closes the connection (end of stream or reset) without
    /// sending anything, within [`IO_TIMEOUT`].
    pub fn expect_closed(&mut self, what: &str) -> Closed {
        match self.receive() {
            Received::Closed(how) => how,
            Received::Frame(frame) => panic!(
                "{what}: expected the broker to close the connection, got a {}-byte frame {:02x?}",
                frame.len(),
                &frame[..frame.len().min(64)]
            ),
        }
    }

    /// Half-closes our side (the broker sees end of stream).
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Fills `buffer`; Ok(false) on end of stream before the first byte, Err on one in the middle.
fn read_full(stream: &mut TcpStream, buffer: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buffer.len() {
        match stream.read(&mut buffer[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    format!("end of stream after {filled} of {} bytes", buffer.len()),
                ))
            }
            Ok(read) => filled += read,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(std::io::Error::new(
                    ErrorKind::TimedOut,
                    format!(
                        "no data within {IO_TIMEOUT:?} ({filled} of {} bytes)",
                        buffer.len()
                    ),
                ))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn is_reset(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

pub fn with_size_prefix(frame: &[u8]) -> Vec<u8> {
    let mut output = Vec::with_capacity(frame.len() + 4);
    output.extend_from_slice(&(frame.len() as i32).to_be_bytes());
    output.extend_from_slice(frame);
    output
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// The request header for `api_key`/`version` at the header version the API uses.
pub fn request_header(api_key: ApiKey, version: i16, correlation_id: i32) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(str_bytes(CLIENT_ID)))
}

/// Encodes `header` at `header_version` into `output`.
pub fn encode_header(output: &mut BytesMut, header: &RequestHeader, header_version: i16) {
    header
        .encode(output, header_version)
        .unwrap_or_else(|e| panic!("encode request header v{header_version}: {e}"));
}

/// A request frame (header and body, no size prefix).
pub fn request_frame<T: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> BytesMut {
    let mut output = BytesMut::new();
    encode_header(
        &mut output,
        &request_header(api_key, version, correlation_id),
        api_key.request_header_version(version),
    );
    body.encode(&mut output, version)
        .unwrap_or_else(|e| panic!("encode {api_key:?} v{version} request: {e}"));
    output
}

/// A request frame with a hand-made body.
pub fn raw_request_frame(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &[u8],
) -> BytesMut {
    let mut output = BytesMut::new();
    encode_header(
        &mut output,
        &request_header(api_key, version, correlation_id),
        api_key.request_header_version(version),
    );
    output.put_slice(body);
    output
}

/// Decodes a response frame: header at the API's response header version (correlation id
/// checked), then the body, which must use the frame's every byte.
pub fn decode_response<R: Decodable + Debug>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    frame: Bytes,
) -> R {
    let mut buffer = frame.clone();
    let header = ResponseHeader::decode(&mut buffer, api_key.response_header_version(version))
        .unwrap_or_else(|e| panic!("{api_key:?} v{version} response header: {e}"));
    assert_eq!(
        header.correlation_id, correlation_id,
        "{api_key:?} v{version}: correlation id echoed"
    );
    let body = R::decode(&mut buffer, version).unwrap_or_else(|e| {
        panic!(
            "{api_key:?} v{version} response body does not decode: {e}; frame {:02x?}",
            &frame[..frame.len().min(256)]
        )
    });
    assert_eq!(
        buffer.remaining(),
        0,
        "{api_key:?} v{version} response has {} trailing bytes after {body:?}",
        buffer.remaining()
    );
    body
}

/// The correlation id of a response frame (the first four bytes of every header version).
pub fn correlation_id_of(frame: &[u8]) -> i32 {
    i32::from_be_bytes(frame[..4].try_into().expect("a response header"))
}

/// A Produce request for one partition.
pub fn produce_request(topic: &str, partition: i32, acks: i16, records: &[u8]) -> ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::copy_from_slice(records)))])])
}

/// The body of a Produce v0–2 request: v3's without the (null) transactional id. The
/// records field is still a v2 batch; the broker refuses the version before looking at it.
pub fn legacy_produce_body(request: &ProduceRequest) -> Vec<u8> {
    assert!(request.transactional_id.is_none());
    let mut v3 = BytesMut::new();
    request.encode(&mut v3, 3).expect("encode produce v3");
    assert_eq!(&v3[..2], &[0xff, 0xff], "null transactional id");
    v3[2..].to_vec()
}

/// A partition of a Produce v0–2 response, laid out by hand.
#[derive(Debug, PartialEq, Eq)]
pub struct LegacyProducePartition {
    pub index: i32,
    pub error_code: i16,
    pub base_offset: i64,
    /// v2 only.
    pub log_append_time_ms: Option<i64>,
}

/// Decodes a Produce v0–2 response body: [(topic, [partition])], then throttle time (v1+).
pub fn decode_legacy_produce_response(
    version: i16,
    mut body: Bytes,
) -> (Vec<(String, Vec<LegacyProducePartition>)>, Option<i32>) {
    let mut topics = Vec::new();
    let topic_count = body.get_i32();
    for _ in 0..topic_count {
        let name_length = body.get_i16() as usize;
        let name = String::from_utf8(body.split_to(name_length).to_vec()).expect("utf-8 name");
        let partition_count = body.get_i32();
        let mut partitions = Vec::new();
        for _ in 0..partition_count {
            partitions.push(LegacyProducePartition {
                index: body.get_i32(),
                error_code: body.get_i16(),
                base_offset: body.get_i64(),
                log_append_time_ms: (version >= 2).then(|| body.get_i64()),
            });
        }
        topics.push((name, partitions));
    }
    let throttle_time_ms = (version >= 1).then(|| body.get_i32());
    assert_eq!(
        body.remaining(),
        0,
        "trailing bytes in produce v{version} response"
    );
    (topics, throttle_time_ms)
}

// ---------------------------------------------------------------------------------------------
// Record batches
// ---------------------------------------------------------------------------------------------

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// A v2 batch of `count` records `key-i`/`value-i` stamped from `timestamp_ms` on.
pub fn batch(count: i32, timestamp_ms: i64) -> Vec<u8> {
    batch_with_codec(count, timestamp_ms, Codec::None)
}

pub fn batch_with_codec(count: i32, timestamp_ms: i64, codec: Codec) -> Vec<u8> {
    let mut builder = BatchBuilder::new(timestamp_ms).codec(codec);
    for i in 0..count {
        let key = format!("key-{i}");
        let value = format!("value-{i}-{}", "x".repeat(i as usize % 7));
        builder = builder.record(
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            timestamp_ms + i64::from(i),
        );
    }
    builder.build()
}

/// A batch whose records carry exactly `timestamps_ms` (the first is the base timestamp).
pub fn batch_with_timestamps(timestamps_ms: &[i64]) -> Vec<u8> {
    let mut builder = BatchBuilder::new(timestamps_ms[0]);
    for (i, timestamp) in timestamps_ms.iter().enumerate() {
        builder = builder.record(None, Some(format!("t{i}").as_bytes()), *timestamp);
    }
    builder.build()
}

/// Recomputes a batch's CRC32C after a test edited bytes inside it.
pub fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// CRC32C (Castagnoli), bitwise: small inputs only.
pub fn crc32c(bytes: &[u8]) -> u32 {
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

/// Splits a run of batches into (base offset, batch bytes) and checks each batch's framing.
pub fn split_batches(mut bytes: &[u8]) -> Vec<(i64, Vec<u8>)> {
    let mut batches = Vec::new();
    while !bytes.is_empty() {
        assert!(
            bytes.len() >= 61,
            "partial batch header: {} bytes",
            bytes.len()
        );
        let base_offset = i64::from_be_bytes(bytes[..8].try_into().unwrap());
        let length = i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize + 12;
        assert!(
            bytes.len() >= length,
            "partial batch: {} of {length} bytes",
            bytes.len()
        );
        batches.push((base_offset, bytes[..length].to_vec()));
        bytes = &bytes[length..];
    }
    batches
}

/// A copy of `batch` with its base offset set to zero (what a producer sends).
pub fn with_base_offset_zero(batch: &[u8]) -> Vec<u8> {
    let mut copy = batch.to_vec();
    copy[..8].copy_from_slice(&0i64.to_be_bytes());
    copy
}

// ---------------------------------------------------------------------------------------------
// Deterministic pseudo-random bytes (no dependency; reproducible from the seed)
// ---------------------------------------------------------------------------------------------

pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in 0..bound (bound > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    pub fn bytes(&mut self, length: usize) -> Vec<u8> {
        (0..length).map(|_| self.next_u64() as u8).collect()
    }

    /// `input` with a few bytes overwritten, inserted or cut.
    pub fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut output = input.to_vec();
        let edits = 1 + self.below(4);
        for _ in 0..edits {
            match self.below(4) {
                0 | 1 if !output.is_empty() => {
                    let at = self.below(output.len() as u64) as usize;
                    output[at] = match self.below(4) {
                        0 => 0xff,
                        1 => 0x7f,
                        2 => 0x00,
                        _ => self.next_u64() as u8,
                    };
                }
                2 => {
                    let at = self.below(output.len() as u64 + 1) as usize;
                    output.insert(at, self.next_u64() as u8);
                }
                _ if !output.is_empty() => {
                    let keep = self.below(output.len() as u64) as usize;
                    output.truncate(keep);
                }
                _ => output.push(self.next_u64() as u8),
            }
        }
        output
    }
}
