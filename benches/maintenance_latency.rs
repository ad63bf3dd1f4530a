//! Produce latency while log maintenance runs: the log cleaner compacting a topic full of
//! dirty data and retention deleting segments, against the same workload with both idle.
//!
//! Each run starts a fresh `dlog` (the release binary cargo built for this bench) on a free
//! port and a temporary data directory, with either
//!
//! - **active**: `log.cleaner.enable=true`, `log.cleaner.backoff.ms=100`,
//!   `log.retention.check.interval.ms=500`, or
//! - **idle**: `log.cleaner.enable=false`, `log.retention.check.interval.ms=3600000`,
//!
//! and three topics: `dirty` (`cleanup.policy=compact`, 4 partitions, 1 MiB segments,
//! `min.cleanable.dirty.ratio=0.01`, `delete.retention.ms=0`), `expiring` (`delete`,
//! 2 partitions, 256 KiB segments, `retention.bytes=2 MiB`, `file.delete.delay.ms=0`) and
//! `probe` (1 partition, defaults). Then:
//!
//! 1. prefill: `PREFILL_MB` of 1 KB values over `KEYS` keys into `dirty`, as fast as it goes;
//! 2. measured, `SECONDS` long: a background producer keeps writing dirty data (`dirty`, same
//!    keys) and expiring data (`expiring`) at `BACKGROUND_MB_PER_S` in total, while a probe
//!    producer (acks=all, linger.ms=0) sends 1 KB records to `probe` at `PROBE_RATE` per
//!    second. Latency = delivery report time − scheduled send time (so a stalled sender
//!    counts), 2 s of warm-up dropped.
//!
//! Runs alternate idle/active/active/idle… (`RUNS` per mode) so drift hits both; medians per
//! mode. The broker's CPU time and the cleaner passes and retired segments it logged during the
//! measured window are reported, to show the maintenance really ran.
//!
//! `cargo bench --bench maintenance_latency` (about 3 minutes with the defaults);
//! `RUNS=1 SECONDS=10 PREFILL_MB=32 cargo bench --bench maintenance_latency` for a quick look.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const VALUE_BYTES: usize = 1000;
const WARM_UP: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Idle,
    Active,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Idle => "idle (cleaner off, retention check 1 h)",
            Mode::Active => "active (cleaner + retention running)",
        }
    }

    /// The broker settings of the mode; `ACTIVE_SETTINGS` (comma-separated `key=value`)
    /// replaces the active ones, to take the cleaner and retention apart.
    fn settings(self) -> Vec<String> {
        if let (Mode::Active, Ok(custom)) = (self, std::env::var("ACTIVE_SETTINGS")) {
            return custom.split(',').map(str::to_string).collect();
        }
        let settings: &[&str] = match self {
            Mode::Idle => &[
                "log.cleaner.enable=false",
                "log.retention.check.interval.ms=3600000",
            ],
            Mode::Active => &[
                "log.cleaner.enable=true",
                "log.cleaner.backoff.ms=100",
                "log.retention.check.interval.ms=500",
            ],
        };
        settings.iter().map(|s| s.to_string()).collect()
    }
}

struct Dlog {
    child: Child,
    bootstrap: String,
    _dir: tempfile::TempDir,
    stderr_path: std::path::PathBuf,
}

impl Dlog {
    fn start(mode: Mode) -> Dlog {
        let dir = tempfile::Builder::new()
            .prefix("dlog-bench-maint-")
            .tempdir()
            .expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bootstrap = format!("127.0.0.1:{port}");
        let stderr_path = dir.path().join("dlog.stderr");
        let mut command = Command::new(env!("CARGO_BIN_EXE_dlog"));
        command
            .arg("--listen")
            .arg(&bootstrap)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        for setting in mode.settings() {
            command.arg("--set").arg(setting);
        }
        let child = command.spawn().expect("spawn dlog");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&bootstrap).is_err() {
            assert!(Instant::now() < deadline, "dlog did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Dlog {
            child,
            bootstrap,
            _dir: dir,
            stderr_path,
        }
    }

    /// User + system CPU seconds of the broker so far.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }

    /// (cleaner passes over a log, bytes the cleaner read, segments retired by retention)
    /// logged so far.
    fn maintenance_logged(&self) -> (u64, u64, u64) {
        let file = std::fs::File::open(&self.stderr_path).unwrap();
        let (mut passes, mut bytes_read, mut retired) = (0, 0, 0);
        for line in BufReader::new(file).lines().map_while(Result::ok) {
            if line.contains("cleaned log") {
                passes += 1;
                bytes_read += field(&line, "bytes_read=");
            } else if line.contains("retired segments") {
                retired += field(&line, "segments=");
            }
        }
        (passes, bytes_read, retired)
    }
}

/// The number after `name` in a log line (0 if absent).
fn field(line: &str, name: &str) -> u64 {
    line.split(name)
        .nth(1)
        .and_then(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

impl Drop for Dlog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create_topics(bootstrap: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let topics = [
        NewTopic::new("dirty", 4, TopicReplication::Fixed(1))
            .set("cleanup.policy", "compact")
            .set("segment.bytes", "1048576")
            .set("min.cleanable.dirty.ratio", "0.01")
            .set("delete.retention.ms", "0"),
        NewTopic::new("expiring", 2, TopicReplication::Fixed(1))
            .set("cleanup.policy", "delete")
            .set("segment.bytes", "262144")
            .set("retention.bytes", "2097152")
            .set("file.delete.delay.ms", "0"),
        NewTopic::new("probe", 1, TopicReplication::Fixed(1)),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(20)));
    for result in runtime
        .block_on(admin.create_topics(&topics, &options))
        .expect("CreateTopics")
    {
        result.expect("create topic");
    }
    std::thread::sleep(Duration::from_millis(500));
}

/// Records each delivery's latency from the scheduled send time carried as the opaque.
struct LatencyContext {
    samples: Mutex<Vec<Duration>>,
    failures: std::sync::atomic::AtomicU64,
}

impl ClientContext for LatencyContext {}

impl ProducerContext for LatencyContext {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, scheduled: Box<Instant>) {
        match result {
            Ok(_) => self.samples.lock().unwrap().push(scheduled.elapsed()),
            Err(_) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn producer<C: ProducerContext>(
    bootstrap: &str,
    context: C,
    linger_ms: &str,
) -> ThreadedProducer<C> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("linger.ms", linger_ms)
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "60000")
        .create_with_context(context)
        .expect("producer")
}

/// A deterministic 1 KB value (xorshift bytes, so no codec could shrink it).
fn value(seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..VALUE_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

struct Producers {
    plain: ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
}

impl Producers {
    fn send(&self, topic: &str, key: &str, payload: &[u8]) {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match self.plain.send(record) {
                Ok(()) => return,
                Err((_, returned)) => {
                    // Queue full: wait for deliveries.
                    record = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

struct RunResult {
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    samples: usize,
    failures: u64,
    broker_cpu_s: f64,
    cleaner_passes: u64,
    cleaner_mb_read: f64,
    segments_retired: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1e3
}

fn run(
    mode: Mode,
    seconds: u64,
    prefill_mb: u64,
    keys: u64,
    probe_rate: u64,
    background_mb_per_s: f64,
) -> RunResult {
    let dlog = Dlog::start(mode);
    create_topics(&dlog.bootstrap);
    let background = Producers {
        plain: producer(
            &dlog.bootstrap,
            rdkafka::producer::DefaultProducerContext,
            "5",
        ),
    };
    let values: Vec<Vec<u8>> = (0..64).map(value).collect();
    // 1. Prefill: dirty data, every key written several times.
    let prefill_records = prefill_mb * 1_000_000 / VALUE_BYTES as u64;
    for i in 0..prefill_records {
        let key = format!("key-{}", (i * 7919) % keys);
        background.send("dirty", &key, &values[(i % 64) as usize]);
    }
    background
        .plain
        .flush(Duration::from_secs(120))
        .expect("prefill flush");
    // 2. Measured window: background dirty + expiring data, and the probe.
    let stop = Arc::new(AtomicBool::new(false));
    let background_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let records_per_tick =
                (background_mb_per_s * 1e6 / VALUE_BYTES as f64 / 100.0).max(1.0);
            let started = Instant::now();
            let mut sent = 0u64;
            let mut tick = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick += 1;
                let due = (tick as f64 * records_per_tick) as u64;
                while sent < due {
                    let topic = if sent.is_multiple_of(2) {
                        "dirty"
                    } else {
                        "expiring"
                    };
                    let key = format!("key-{}", (sent * 104_729 + prefill_records) % keys);
                    background.send(topic, &key, &values[(sent % 64) as usize]);
                    sent += 1;
                }
                let next = started + Duration::from_millis(10 * tick);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            background.plain.flush(Duration::from_secs(60)).ok();
        })
    };
    let context = LatencyContext {
        samples: Mutex::new(Vec::new()),
        failures: Default::default(),
    };
    let probe = producer(&dlog.bootstrap, context, "0");
    let interval = Duration::from_secs_f64(1.0 / probe_rate as f64);
    let probe_value = value(99);
    let started = Instant::now();
    let mut measured_from: Option<(f64, (u64, u64, u64))> = None;
    let mut index = 0u32;
    loop {
        let scheduled = started + interval * index;
        if scheduled >= started + WARM_UP && measured_from.is_none() {
            probe.context().samples.lock().unwrap().clear();
            measured_from = Some((dlog.cpu_seconds(), dlog.maintenance_logged()));
        }
        if scheduled >= started + WARM_UP + Duration::from_secs(seconds) {
            break;
        }
        if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let record = BaseRecord::with_opaque_to("probe", Box::new(scheduled))
            .key("probe")
            .payload(&probe_value[..]);
        if probe.send(record).is_err() {
            probe.context().failures.fetch_add(1, Ordering::Relaxed);
        }
        index += 1;
    }
    probe.flush(Duration::from_secs(60)).expect("probe flush");
    let (cpu_before, (passes_before, read_before, retired_before)) =
        measured_from.expect("measured");
    let cpu_after = dlog.cpu_seconds();
    let (passes_after, read_after, retired_after) = dlog.maintenance_logged();
    stop.store(true, Ordering::Relaxed);
    background_thread.join().unwrap();
    let mut samples = std::mem::take(&mut *probe.context().samples.lock().unwrap());
    samples.sort_unstable();
    assert!(!samples.is_empty(), "no probe deliveries");
    RunResult {
        p50_ms: percentile(&samples, 0.50),
        p99_ms: percentile(&samples, 0.99),
        p999_ms: percentile(&samples, 0.999),
        max_ms: samples.last().unwrap().as_secs_f64() * 1e3,
        samples: samples.len(),
        failures: probe.context().failures.load(Ordering::Relaxed),
        broker_cpu_s: cpu_after - cpu_before,
        cleaner_passes: passes_after - passes_before,
        cleaner_mb_read: (read_after - read_before) as f64 / 1e6,
        segments_retired: retired_after - retired_before,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` passes nothing: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runs: usize = env_or("RUNS", 3);
    let seconds: u64 = env_or("SECONDS", 20);
    let prefill_mb: u64 = env_or("PREFILL_MB", 64);
    let keys: u64 = env_or("KEYS", 20_000);
    let probe_rate: u64 = env_or("PROBE_RATE", 500);
    let background_mb_per_s: f64 = env_or("BACKGROUND_MB_PER_S", 4.0);
    assert!(Path::new(env!("CARGO_BIN_EXE_dlog")).exists());
    println!(
        "maintenance latency: {runs} runs per mode, {seconds} s measured, prefill {prefill_mb} MB over {keys} keys, \
         probe {probe_rate}/s × 1 KB (acks=all, linger 0), background {background_mb_per_s} MB/s; load average {}",
        load_average()
    );
    let mut results: Vec<(Mode, RunResult)> = Vec::new();
    for round in 0..runs {
        let order = if round % 2 == 0 {
            [Mode::Idle, Mode::Active]
        } else {
            [Mode::Active, Mode::Idle]
        };
        for mode in order {
            let result = run(
                mode,
                seconds,
                prefill_mb,
                keys,
                probe_rate,
                background_mb_per_s,
            );
            println!(
                "  run {round} {:<40} p50 {:6.2} ms  p99 {:7.2} ms  p99.9 {:7.2} ms  max {:7.1} ms  \
                 ({} samples, {} failed)  broker CPU {:.1} s  cleaner {} passes / {:.0} MB read  \
                 retention {} segments  [load {}]",
                mode.name(),
                result.p50_ms,
                result.p99_ms,
                result.p999_ms,
                result.max_ms,
                result.samples,
                result.failures,
                result.broker_cpu_s,
                result.cleaner_passes,
                result.cleaner_mb_read,
                result.segments_retired,
                load_average()
            );
            results.push((mode, result));
        }
    }
    println!("medians per mode:");
    for mode in [Mode::Idle, Mode::Active] {
        let of = |f: fn(&RunResult) -> f64| {
            median(
                results
                    .iter()
                    .filter(|(m, _)| *m == mode)
                    .map(|(_, r)| f(r))
                    .collect(),
            )
        };
        println!(
            "  {:<40} p50 {:6.2} ms  p99 {:7.2} ms  p99.9 {:7.2} ms  broker CPU {:.1} s  cleaner {:.0} MB read  retention {:.0} segments",
            mode.name(),
            of(|r| r.p50_ms),
            of(|r| r.p99_ms),
            of(|r| r.p999_ms),
            of(|r| r.broker_cpu_s),
            of(|r| r.cleaner_mb_read),
            of(|r| r.segments_retired as f64),
        );
    }
}
