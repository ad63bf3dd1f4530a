//! A native load generator (librdkafka through the `rdkafka` crate): on these 2-core machines
//! Kafka's Java client tools limit throughput before either broker does.
//!
//! ```sh
//! cargo bench --bench load_gen -- produce --bootstrap 127.0.0.1:32092 --topic load \
//!     --record-bytes 1024 --rate 10000 --acks all --linger-ms 0 --seconds 30 \
//!     [--warmup-seconds 3] [--partitions 1] [--topics 1] [--topic-config flush.messages=1 ...]
//! ```
//!
//! With `--topics N` (N > 1) it produces to N topics `TOPIC-0000` … round robin, each with
//! `--partitions` partitions (the partition-scale bench: 1,000 topics × 10 partitions).
//! Creates the topics if they do not exist (with `--partitions` and each `--topic-config`), warms
//! up, then produces for `--seconds`: at a fixed `--rate` records/s (0: as fast as the client
//! queue takes them). Latency is from the send (for a fixed rate, the *scheduled* send time, so
//! that a stalled broker is not hidden by a stalled sender) to the delivery report. Prints one
//! line of `key=value` pairs: records/s, MB/s (10^6 bytes of record values), latency
//! p50/p99/p99.9/max in ms, records delivered in the window, sent in it and in all (warm-up
//! included, for CPU per byte), failures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

/// Latency samples kept at most (a run past it keeps the first ones): 16 bytes each.
const SAMPLES_MAX: usize = 20_000_000;
/// The client's queue (librdkafka `queue.buffering.max.kbytes`): bounds what is in flight.
const CLIENT_QUEUE_KBYTES: &str = "262144";

struct Options {
    bootstrap: String,
    topic: String,
    record_bytes: usize,
    rate_per_s: u64,
    acks: String,
    linger_ms: String,
    seconds: u64,
    warmup_seconds: u64,
    partitions: i32,
    topics: usize,
    topic_configs: Vec<(String, String)>,
}

impl Options {
    /// The topics produced to: `--topic` itself, or N numbered ones.
    fn topic_names(&self) -> Vec<String> {
        match self.topics {
            1 => vec![self.topic.clone()],
            count => (0..count)
                .map(|i| format!("{}-{i:04}", self.topic))
                .collect(),
        }
    }
}

fn parse(arguments: &[String]) -> Options {
    let mut options = Options {
        bootstrap: "127.0.0.1:9092".into(),
        topic: "load".into(),
        record_bytes: 1024,
        rate_per_s: 0,
        acks: "all".into(),
        linger_ms: "0".into(),
        seconds: 30,
        warmup_seconds: 3,
        partitions: 1,
        topics: 1,
        topic_configs: Vec::new(),
    };
    let mut rest = arguments.iter();
    while let Some(flag) = rest.next() {
        let mut value = || {
            rest.next()
                .unwrap_or_else(|| panic!("{flag} needs a value"))
                .clone()
        };
        let number = |v: String| -> u64 { v.parse().unwrap_or_else(|_| panic!("{flag}: {v}")) };
        match flag.as_str() {
            "--bootstrap" => options.bootstrap = value(),
            "--topic" => options.topic = value(),
            "--record-bytes" => options.record_bytes = number(value()) as usize,
            "--rate" => options.rate_per_s = number(value()),
            "--acks" => options.acks = value(),
            "--linger-ms" => options.linger_ms = value(),
            "--seconds" => options.seconds = number(value()),
            "--warmup-seconds" => options.warmup_seconds = number(value()),
            "--partitions" => options.partitions = number(value()) as i32,
            "--topics" => options.topics = number(value()) as usize,
            "--topic-config" => {
                let pair = value();
                let (key, value) = pair.split_once('=').expect("--topic-config KEY=VALUE");
                options.topic_configs.push((key.into(), value.into()));
            }
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(options.record_bytes > 0 && options.seconds > 0 && options.topics > 0);
    options
}

/// Records the latency of each delivery of a record sent in the measured window, from the
/// send time carried as the opaque (None: a warm-up record).
struct LatencyContext {
    samples: Mutex<Vec<Duration>>,
    failures: AtomicU64,
}

impl ClientContext for LatencyContext {}

impl ProducerContext for LatencyContext {
    type DeliveryOpaque = Box<Option<Instant>>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Option<Instant>>) {
        let Some(sent) = *sent else {
            return;
        };
        match result {
            Ok(_) => {
                let mut samples = self.samples.lock().unwrap();
                if samples.len() < SAMPLES_MAX {
                    samples.push(sent.elapsed());
                }
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Topics per CreateTopics request when creating many.
const CREATE_BATCH_TOPICS: usize = 100;

fn create_topics(options: &Options, names: &[String]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &options.bootstrap)
        .create()
        .expect("admin client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let admin_options = AdminOptions::new().request_timeout(Some(Duration::from_secs(120)));
    for batch in names.chunks(CREATE_BATCH_TOPICS) {
        let topics: Vec<NewTopic<'_>> = batch
            .iter()
            .map(|name| {
                let mut topic = NewTopic::new(name, options.partitions, TopicReplication::Fixed(1));
                for (key, value) in &options.topic_configs {
                    topic = topic.set(key, value);
                }
                topic
            })
            .collect();
        let results = runtime
            .block_on(admin.create_topics(&topics, &admin_options))
            .expect("CreateTopics");
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, error)) => panic!("create topic {name}: {error}"),
            }
        }
    }
    // Leadership reaches the client's metadata a moment after creation.
    std::thread::sleep(Duration::from_secs(1));
}

/// A 1 KB-ish value of xorshift bytes, so that no codec could shrink it.
fn value(bytes: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1e3
}

fn produce(options: &Options) {
    let topics = options.topic_names();
    create_topics(options, &topics);
    let context = LatencyContext {
        samples: Mutex::new(Vec::new()),
        failures: AtomicU64::new(0),
    };
    let producer: ThreadedProducer<LatencyContext> = ClientConfig::new()
        .set("bootstrap.servers", &options.bootstrap)
        .set("acks", &options.acks)
        .set("linger.ms", &options.linger_ms)
        .set("enable.idempotence", "false")
        .set("compression.type", "none")
        .set("queue.buffering.max.kbytes", CLIENT_QUEUE_KBYTES)
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "120000")
        .create_with_context(context)
        .expect("producer");
    let values: Vec<Vec<u8>> = (0..16).map(|i| value(options.record_bytes, i)).collect();
    let warmup = Duration::from_secs(options.warmup_seconds);
    let window = Duration::from_secs(options.seconds);
    let interval = match options.rate_per_s {
        0 => None,
        rate => Some(Duration::from_secs_f64(1.0 / rate as f64)),
    };
    let started = Instant::now();
    let mut measured_from: Option<Instant> = None;
    let mut sent_measured = 0u64;
    let mut index = 0u64;
    loop {
        let now = Instant::now();
        let send_at = match interval {
            Some(interval) => started + interval * index as u32,
            None => now,
        };
        if measured_from.is_none() && send_at >= started + warmup {
            measured_from = Some(send_at);
        }
        if send_at >= started + warmup + window {
            break;
        }
        if let Some(wait) = send_at.checked_duration_since(now) {
            std::thread::sleep(wait);
        }
        let payload = &values[(index % values.len() as u64) as usize];
        let measured_send = measured_from.map(|_| send_at);
        let mut record: BaseRecord<'_, (), [u8], Box<Option<Instant>>> =
            BaseRecord::with_opaque_to(
                &topics[(index % topics.len() as u64) as usize],
                Box::new(measured_send),
            )
            .payload(&payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((error, _)) => panic!("send: {error}"),
            }
        }
        if measured_from.is_some() {
            sent_measured += 1;
        }
        index += 1;
    }
    let send_ended = Instant::now();
    producer
        .flush(Duration::from_secs(120))
        .expect("outstanding deliveries");
    let delivered_by = Instant::now();
    let measured_from = measured_from.expect("a measured window");
    let mut samples = std::mem::take(&mut *producer.context().samples.lock().unwrap());
    samples.sort_unstable();
    assert!(!samples.is_empty(), "no deliveries measured");
    // Throughput over the window until the last measured record was delivered.
    let window_s = delivered_by
        .duration_since(measured_from)
        .as_secs_f64()
        .max(send_ended.duration_since(measured_from).as_secs_f64());
    let records_per_s = samples.len() as f64 / window_s;
    println!(
        "records_per_s={:.0} mb_per_s={:.2} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3} records={} sent={} sent_total={} failures={} window_s={:.2}",
        records_per_s,
        records_per_s * options.record_bytes as f64 / 1e6,
        percentile_ms(&samples, 0.50),
        percentile_ms(&samples, 0.99),
        percentile_ms(&samples, 0.999),
        samples.last().unwrap().as_secs_f64() * 1e3,
        samples.len(),
        sent_measured,
        index,
        producer.context().failures.load(Ordering::Relaxed),
        window_s,
    );
}

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match arguments.first().map(String::as_str) {
        Some("produce") => produce(&parse(&arguments[1..])),
        _ => {
            eprintln!("usage: load_gen produce --bootstrap HOST:PORT [--topic T] [--record-bytes N] [--rate N|0] [--acks all|1|0] [--linger-ms N] [--seconds N] [--warmup-seconds N] [--partitions N] [--topics N] [--topic-config K=V ...]");
            std::process::exit(2);
        }
    }
}
