//! Shared harness for integration tests: a real `dlog` process on a free port and a temporary
//! data directory, plus rdkafka client builders and raw-socket helpers.
//!
//! Every wait here is bounded; a broker still running when its `Broker` is dropped is killed.
//! When a test panics, the tail of the broker's stderr is printed to help diagnose it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

/// How long a broker may take to start listening, or to exit after SIGTERM.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound for any single client operation (metadata, admin, watermarks).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// The marker a clean shutdown leaves in the data directory.
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";

extern "C" {
    fn kill(pid: i32, signal: i32) -> i32;
}
const SIGTERM: i32 = 15;

/// A `dlog` process with its own port and data directory; restartable on the same directory.
pub struct Broker {
    pub port: u16,
    /// Holds the data directory and the stderr logs of every run; removed on drop.
    temp: tempfile::TempDir,
    /// `temp/data` unless the test gave its own (e.g. a small tmpfs, tests/disk_full.rs).
    data_dir: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
    runs: usize,
}

/// A port the OS considers free right now (bind to port 0, read it, release it). With
/// `DLOG_TEST_PORTS=LOW-HIGH` set, one from that range instead (a shared machine where each
/// user keeps to a range): the next one that binds, walking from a per-process start.
pub fn free_port() -> u16 {
    if let Some((low, high)) = std::env::var("DLOG_TEST_PORTS").ok().and_then(|range| {
        let (low, high) = range.split_once('-')?;
        Some((
            low.trim().parse::<u16>().ok()?,
            high.trim().parse::<u16>().ok()?,
        ))
    }) {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let span = u32::from(high.saturating_sub(low)) + 1;
        let start = std::process::id().wrapping_mul(7919);
        for _ in 0..span {
            let offset = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % span;
            let port = low + offset as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
        panic!("no free port in DLOG_TEST_PORTS={low}-{high}");
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

impl Broker {
    /// Starts a broker with default settings.
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// Starts a process with `args` (after `--listen` and `--data-dir`) on `port`, without
    /// waiting for it to listen: nodes of a cluster may wait for each other before they do.
    pub fn spawn_with_args(port: u16, args: Vec<String>) -> Broker {
        let temp = tempfile::Builder::new()
            .prefix("dlog-it-")
            .tempdir()
            .expect("temp dir");
        let mut broker = Broker {
            port,
            data_dir: temp.path().join("data"),
            temp,
            extra_args: args,
            child: None,
            runs: 0,
        };
        broker.spawn_process();
        broker
    }

    /// Starts a broker with `--set key=value` for each of `settings`.
    pub fn start_with(settings: &[&str]) -> Broker {
        let temp = tempfile::Builder::new()
            .prefix("dlog-it-")
            .tempdir()
            .expect("temp dir");
        let mut extra_args = Vec::new();
        for setting in settings {
            extra_args.push("--set".to_string());
            extra_args.push(setting.to_string());
        }
        let mut broker = Broker {
            port: free_port(),
            data_dir: temp.path().join("data"),
            temp,
            extra_args,
            child: None,
            runs: 0,
        };
        broker.spawn();
        broker
    }

    /// Starts a broker on `port` with its data in `data_dir` (the caller's, kept after the
    /// broker is dropped) and `--set key=value` for each of `settings`.
    pub fn start_in(port: u16, data_dir: &Path, settings: &[&str]) -> Broker {
        let temp = tempfile::Builder::new()
            .prefix("dlog-it-")
            .tempdir()
            .expect("temp dir");
        let mut extra_args = Vec::new();
        for setting in settings {
            extra_args.push("--set".to_string());
            extra_args.push(setting.to_string());
        }
        let mut broker = Broker {
            port,
            temp,
            data_dir: data_dir.to_path_buf(),
            extra_args,
            child: None,
            runs: 0,
        };
        broker.spawn();
        broker
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker not running").id()
    }

    fn log_path(&self, run: usize) -> PathBuf {
        self.temp.path().join(format!("broker-{run}.stderr"))
    }

    fn spawn(&mut self) {
        self.spawn_process();
        self.wait_listening();
    }

    fn spawn_process(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        self.runs += 1;
        let log = File::create(self.log_path(self.runs)).expect("create stderr log");
        let child = Command::new(env!("CARGO_BIN_EXE_dlog"))
            .arg("--listen")
            .arg(self.bootstrap())
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("DLOG_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn dlog");
        self.child = Some(child);
    }

    /// Starts the process again on the same port and data directory, without waiting.
    pub fn restart_nowait(&mut self) {
        self.spawn_process();
    }

    /// Waits until a TCP connect succeeds (bounded), failing fast if the process exits.
    pub fn wait_listening(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "dlog exited during startup with {status}; stderr:\n{}",
                    self.stderr_tail(60)
                );
            }
            if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(500)).is_ok() {
                // The probe connection is closed now; give the broker a moment to notice, so
                // the probe does not count against `max.connections` in a test's first moves.
                std::thread::sleep(Duration::from_millis(100));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dlog not listening on {} after {START_TIMEOUT:?}; stderr:\n{}",
                self.addr(),
                self.stderr_tail(60)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the broker again on the same port and data directory.
    pub fn restart(&mut self) {
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(child) => child.try_wait().unwrap().is_none(),
        }
    }

    /// SIGTERM and wait (bounded) for the exit; returns the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid() as i32;
        // SAFETY: plain libc kill(2) on our own child's pid.
        let rc = unsafe { kill(pid, SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.as_mut().unwrap().kill();
                let _ = self.child.as_mut().unwrap().wait();
                self.child = None;
                panic!(
                    "dlog did not exit within {STOP_TIMEOUT:?} of SIGTERM; stderr:\n{}",
                    self.stderr_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and require a clean exit that leaves the clean-shutdown marker.
    pub fn stop_clean(&mut self) {
        let status = self.terminate();
        assert!(
            status.success(),
            "dlog exited with {status} after SIGTERM; stderr:\n{}",
            self.stderr_tail(60)
        );
        assert!(
            self.data_dir().join(CLEAN_SHUTDOWN_FILE).exists(),
            "no {CLEAN_SHUTDOWN_FILE} after a clean shutdown"
        );
    }

    /// SIGKILL and reap.
    /// SIGSTOP (`true`) or SIGCONT (`false`): a paused broker, as a long GC pause or a
    /// stalled host looks to its peers.
    pub fn pause(&self, stop: bool) {
        const SIGSTOP: i32 = 19;
        const SIGCONT: i32 = 18;
        let child = self.child.as_ref().expect("running");
        let signal = if stop { SIGSTOP } else { SIGCONT };
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { kill(child.id() as i32, signal) }, 0);
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("broker not running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait after SIGKILL");
    }

    /// The last `lines` lines of every run's stderr, newest run last.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for run in 1..=self.runs {
            let text = std::fs::read_to_string(self.log_path(run)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            // What a backtrace would push out of the tail: the panic or error that ended the run.
            // (A panic's message is on the line after "panicked at".)
            for (index, line) in all[..start].iter().enumerate() {
                if line.contains("panicked at") || line.starts_with("Error:") {
                    let message = all.get(index + 1).copied().unwrap_or_default();
                    out.push_str(&format!("--- run {run}, earlier: {line} {message}\n"));
                }
            }
            out.push_str(&format!(
                "--- run {run} (last {} lines) ---\n",
                all.len() - start
            ));
            for line in &all[start..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "dlog on port {} stderr:\n{}",
                self.port,
                self.stderr_tail(40)
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// rdkafka clients

/// Producer settings shared by all tests: acks=all, no idempotence (idempotent and
/// transactional producers have their own tests: tests/idempotence.rs, tests/transactions.rs),
/// bounded timeouts.
pub fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "30000")
        .set("request.timeout.ms", "15000")
        .set("linger.ms", "5")
        .set("socket.timeout.ms", "15000");
    config
}

/// Consumer settings for assign()-only use: no commits, no subscribe. librdkafka refuses
/// assign() without a group.id ("Unknown group"), so one is set, but no group protocol is used.
pub fn consumer_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "dlog-it-assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .set("socket.timeout.ms", "15000");
    config
}

/// A consumer from [`consumer_config`].
pub fn consumer(bootstrap: &str) -> BaseConsumer {
    consumer_config(bootstrap)
        .create()
        .expect("create consumer")
}

pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.timeout.ms", "15000")
        .create()
        .expect("create admin client")
}

pub fn admin_options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(CLIENT_TIMEOUT))
}

/// Creates a topic via CreateTopics (with optional topic configs) and waits until metadata
/// shows all its partitions with a leader.
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    create_replicated_topic(bootstrap, name, partitions, 1, configs).await
}

/// [`create_topic`] with `replication_factor` replicas per partition.
pub async fn create_replicated_topic(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
) {
    let admin = admin(bootstrap);
    let mut topic = NewTopic::new(
        name,
        partitions,
        TopicReplication::Fixed(replication_factor),
    );
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = tokio::time::timeout(
        CLIENT_TIMEOUT,
        admin.create_topics([&topic], &admin_options()),
    )
    .await
    .expect("CreateTopics timed out")
    .expect("CreateTopics request failed");
    for result in results {
        result.unwrap_or_else(|(topic, code)| panic!("create topic {topic}: {code:?}"));
    }
    wait_for_topic(bootstrap, name, partitions);
}

/// Polls metadata until `topic` has `partitions` partitions each with a leader (bounded).
pub fn wait_for_topic(bootstrap: &str, topic: &str, partitions: i32) {
    let consumer = consumer(bootstrap);
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        if let Ok(metadata) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            if let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) {
                if t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
                {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "topic {topic} not ready in metadata"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (low, high) watermarks of one partition.
pub fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    consumer(bootstrap)
        .fetch_watermarks(topic, partition, CLIENT_TIMEOUT)
        .unwrap_or_else(|e| panic!("watermarks {topic}-{partition}: {e}"))
}

/// ListOffsets by timestamp for one partition: the first offset with timestamp >= `ts`
/// (`Offset::End` when there is none).
pub fn offset_for_time(bootstrap: &str, topic: &str, partition: i32, ts: i64) -> Offset {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(ts))
        .unwrap();
    let result = consumer(bootstrap)
        .offsets_for_times(list, CLIENT_TIMEOUT)
        .unwrap_or_else(|e| panic!("offsets_for_times {topic}-{partition} ts {ts}: {e}"));
    let element = result
        .find_partition(topic, partition)
        .expect("partition in result");
    assert!(
        element.error().is_ok(),
        "offsets_for_times {topic}-{partition} ts {ts}: {:?}",
        element.error()
    );
    element.offset()
}

/// The first record a fresh consumer assigned at `offset` receives (bounded wait).
pub fn first_at(bootstrap: &str, topic: &str, partition: i32, offset: i64) -> OwnedMessage {
    let consumer = consumer(bootstrap);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap();
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        assert!(
            Instant::now() < deadline,
            "nothing fetched from {topic}-{partition}@{offset}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(message)) => return message.detach(),
            Some(Err(error)) => panic!("fetch {topic}-{partition}@{offset}: {error}"),
        }
    }
}

/// Reads every partition of `topic` from the beginning up to its high watermark at call time,
/// with assign() only. Returns the messages per partition in fetch order.
pub fn consume_all(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Vec<OwnedMessage>> {
    consume_all_with(consumer(bootstrap), topic, partitions)
}

/// [`consume_all`] with a caller-built consumer (e.g. with small fetch sizes).
pub fn consume_all_with(
    consumer: BaseConsumer,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Vec<OwnedMessage>> {
    let mut targets = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, CLIENT_TIMEOUT)
            .unwrap_or_else(|e| panic!("watermarks {topic}-{partition}: {e}"));
        targets.insert(partition, high);
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).expect("assign");
    let mut out: BTreeMap<i32, Vec<OwnedMessage>> =
        (0..partitions).map(|p| (p, Vec::new())).collect();
    let done = |out: &BTreeMap<i32, Vec<OwnedMessage>>| {
        targets.iter().all(|(p, high)| {
            *high == 0
                || out[p]
                    .last()
                    .map(|m| m.offset() >= high - 1)
                    .unwrap_or(false)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&out) {
        assert!(
            Instant::now() < deadline,
            "consume {topic}: timed out; targets {targets:?}, got {:?}",
            out.iter()
                .map(|(p, m)| (*p, m.last().map(|m| m.offset())))
                .collect::<Vec<_>>()
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(message)) => {
                let partition = message.partition();
                // Records past the target (produced after the watermark was read) are ignored.
                if message.offset() < targets[&partition] {
                    out.get_mut(&partition).unwrap().push(message.detach());
                }
            }
            Some(Err(error)) => panic!("consume {topic}: {error}"),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Payloads

/// Deterministic, incompressible bytes (xorshift64*), so compression cannot shrink big values.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------------------------
// Raw protocol over TCP

/// An ApiVersions v0 request frame (size prefix included).
/// A connection to `broker` from the local address `source` (any 127.0.0.x is this host):
/// for limits kept per client address.
pub fn connect_from(broker: &Broker, source: &str) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let source: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    socket
        .bind(&source.into())
        .expect("bind the source address");
    socket.connect(&broker.addr().into()).expect("connect");
    socket.into()
}

pub fn api_versions_request(correlation_id: i32) -> Vec<u8> {
    let client_id = b"raw-test";
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // api key: ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes()); // api version
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    body.extend_from_slice(client_id);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Sends ApiVersions v0 and reads the response; Ok if a well-formed response with the same
/// correlation id and error code 0 arrives within `timeout`.
pub fn api_versions_roundtrip(
    stream: &mut TcpStream,
    correlation_id: i32,
    timeout: Duration,
) -> Result<(), String> {
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream
        .write_all(&api_versions_request(correlation_id))
        .map_err(|e| format!("write: {e}"))?;
    let mut size = [0u8; 4];
    stream
        .read_exact(&mut size)
        .map_err(|e| format!("read size: {e}"))?;
    let size = i32::from_be_bytes(size);
    if !(6..=1_000_000).contains(&size) {
        return Err(format!("response size {size}"));
    }
    let mut body = vec![0u8; size as usize];
    stream
        .read_exact(&mut body)
        .map_err(|e| format!("read body: {e}"))?;
    let got = i32::from_be_bytes(body[0..4].try_into().unwrap());
    if got != correlation_id {
        return Err(format!("correlation id {got}, expected {correlation_id}"));
    }
    let error = i16::from_be_bytes(body[4..6].try_into().unwrap());
    if error != 0 {
        return Err(format!("ApiVersions error code {error}"));
    }
    Ok(())
}

/// What a blocking read saw within a deadline.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The peer closed (EOF) or reset the connection.
    Closed,
    /// Bytes arrived.
    Data(usize),
    /// Nothing within the deadline; the connection is still open.
    Open,
}

/// Waits up to `timeout` for the peer to close or send something.
pub fn wait_read(stream: &mut TcpStream, timeout: Duration) -> ReadOutcome {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(0) => ReadOutcome::Closed,
        Ok(n) => ReadOutcome::Data(n),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            ReadOutcome::Open
        }
        Err(_) => ReadOutcome::Closed,
    }
}

/// Reads until the peer closes (discarding data) or `timeout` elapses; true if it closed.
pub fn wait_closed(stream: &mut TcpStream, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match wait_read(stream, left) {
            ReadOutcome::Closed => return true,
            ReadOutcome::Data(_) => continue,
            ReadOutcome::Open => return false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Storage files

/// The segment `.log` files of one partition, sorted by base offset.
pub fn segment_logs(data_dir: &Path, topic: &str, partition: i32) -> Vec<PathBuf> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().map(|e| e == "log").unwrap_or(false))
        .collect();
    logs.sort();
    logs
}

/// The compression codec (attributes & 7) of every record batch in a `.log` file, read
/// straight from the on-disk (= wire) format.
pub fn batch_codecs(log: &Path) -> Vec<u8> {
    let bytes = std::fs::read(log).unwrap_or_else(|e| panic!("read {}: {e}", log.display()));
    let mut codecs = Vec::new();
    let mut position = 0usize;
    while position + 61 <= bytes.len() {
        let length = i32::from_be_bytes(bytes[position + 8..position + 12].try_into().unwrap());
        assert!(
            length >= 49,
            "{}: batch length {length} at {position}",
            log.display()
        );
        let attributes =
            i16::from_be_bytes(bytes[position + 21..position + 23].try_into().unwrap());
        codecs.push((attributes & 7) as u8);
        position += 12 + length as usize;
    }
    assert_eq!(position, bytes.len(), "{}: trailing bytes", log.display());
    codecs
}

// ---------------------------------------------------------------------------------------------
// Exactly-once consume-transform-produce

/// Offsets `consumer`'s group committed for partitions `0..partitions` of `topic`.
pub fn group_committed_offsets(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> BTreeMap<i32, i64> {
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    consumer
        .committed_offsets(list, timeout)
        .expect("committed offsets")
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect()
}

/// One round of an exactly-once copier: polls up to `batch_max` records of `input` (waiting
/// for the first until `deadline`), begins a transaction of `producer`, writes each as
/// `out-<value>` to the same partition of `output`, and sends the consumer's next offsets to
/// the transaction. Returns the batch size and those offsets; the caller commits or aborts.
pub fn transform_round(
    producer: &rdkafka::producer::BaseProducer,
    consumer: &BaseConsumer,
    (input, output): (&str, &str),
    batch_max: usize,
    deadline: Instant,
    timeout: Duration,
) -> (usize, BTreeMap<i32, i64>) {
    use rdkafka::producer::{BaseRecord, Producer};
    // One batch: up to `batch_max` records, or what arrived before a quiet poll.
    let mut batch = Vec::new();
    while batch.len() < batch_max {
        match consumer.poll(Duration::from_millis(300)) {
            None if batch.is_empty() => {}
            None => break,
            Some(Ok(message)) => batch.push((
                message.partition(),
                message.offset(),
                String::from_utf8(message.payload().unwrap_or_default().to_vec()).unwrap(),
            )),
            Some(Err(error)) => panic!("consume {input}: {error}"),
        }
        assert!(Instant::now() < deadline, "no input within the deadline");
    }
    let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
    producer.begin_transaction().unwrap();
    for (partition, offset, value) in &batch {
        producer
            .send(
                BaseRecord::<(), str>::to(output)
                    .partition(*partition)
                    .payload(&format!("out-{value}")),
            )
            .expect("enqueue");
        offsets.insert(*partition, offset + 1);
    }
    // BaseProducer: delivery reports are served by flush, which abort needs too.
    producer.flush(timeout).expect("flush");
    let mut list = TopicPartitionList::new();
    for (partition, offset) in &offsets {
        list.add_partition_offset(input, *partition, Offset::Offset(*offset))
            .unwrap();
    }
    let group_metadata = consumer
        .group_metadata()
        .expect("group metadata of a subscribed consumer");
    producer
        .send_offsets_to_transaction(&list, &group_metadata, timeout)
        .expect("send_offsets_to_transaction");
    (batch.len(), offsets)
}
