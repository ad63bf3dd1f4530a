//! Connection-level limits against a real `dlog` process over raw TCP: bad frame sizes,
//! idle timeouts and the connection cap. The broker must keep serving through all of them.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::Consumer;

fn connect(broker: &Broker) -> TcpStream {
    let stream =
        TcpStream::connect_timeout(&broker.addr(), Duration::from_secs(5)).expect("connect");
    stream.set_nodelay(true).unwrap();
    stream
}

/// The broker answers a fresh raw connection and a real client's metadata request.
fn assert_serving(broker: &mut Broker, context: &str) {
    assert!(broker.is_running(), "{context}: dlog process exited");
    let mut stream = connect(broker);
    api_versions_roundtrip(&mut stream, 4242, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{context}: ApiVersions on a new connection: {e}"));
    let metadata = consumer(&broker.bootstrap())
        .fetch_metadata(None, CLIENT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{context}: metadata: {e}"));
    assert_eq!(metadata.brokers().len(), 1, "{context}");
}

#[test]
fn bad_frame_sizes_close_the_connection() {
    let mut broker = Broker::start();
    // socket.request.max.bytes defaults to 104857600.
    let sizes: [(i32, &str); 5] = [
        (0x7fff_ffff, "0x7fffffff"),
        (-1, "-1"),
        (i32::MIN, "i32::MIN"),
        (-100, "-100"),
        (104_857_601, "socket.request.max.bytes + 1"),
    ];
    for (size, name) in sizes {
        let mut stream = connect(&broker);
        // A working connection first, so the close is about the bad frame.
        api_versions_roundtrip(&mut stream, 1, Duration::from_secs(5)).expect("ApiVersions");
        stream.write_all(&size.to_be_bytes()).unwrap();
        let started = Instant::now();
        assert!(
            wait_closed(&mut stream, Duration::from_secs(5)),
            "size prefix {name}: connection still open after 5 s"
        );
        eprintln!("size prefix {name}: closed after {:?}", started.elapsed());
        assert_serving(&mut broker, &format!("after size prefix {name}"));
    }
}

#[test]
fn hostile_bodies_do_not_crash_the_broker() {
    let mut broker = Broker::start();
    let mut frames: Vec<(&str, Vec<u8>)> = Vec::new();

    // Metadata v1 whose topics array claims 0x7fffffff entries (see DESIGN.md pitfalls).
    let mut body = Vec::new();
    body.extend_from_slice(&3i16.to_be_bytes()); // Metadata
    body.extend_from_slice(&1i16.to_be_bytes()); // v1
    body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    body.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    body.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
    frames.push(("Metadata v1 with array count 0x7fffffff", body));

    // Metadata v12 (flexible) with a compact array length of 2^31.
    let mut body = Vec::new();
    body.extend_from_slice(&3i16.to_be_bytes());
    body.extend_from_slice(&12i16.to_be_bytes());
    body.extend_from_slice(&8i32.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes());
    body.push(0); // no header tagged fields
    body.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x08]); // uvarint 2^31
    frames.push(("Metadata v12 with compact array length 2^31", body));

    // Unknown API key.
    let mut body = Vec::new();
    body.extend_from_slice(&0x7fffi16.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&9i32.to_be_bytes());
    body.extend_from_slice(&(-1i16).to_be_bytes());
    frames.push(("unknown api key 0x7fff", body));

    // A frame too short to hold a request header.
    frames.push(("3-byte frame", vec![0, 18, 0]));

    for (name, body) in frames {
        let mut stream = connect(&broker);
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        stream.write_all(&frame).unwrap();
        // Kafka closes the connection on a request it cannot parse; at the very least the
        // broker must not leave the client hanging or fall over.
        let outcome = wait_read(&mut stream, Duration::from_secs(5));
        assert_ne!(
            outcome,
            ReadOutcome::Open,
            "{name}: no answer and no close within 5 s"
        );
        eprintln!("{name}: {outcome:?}");
        assert_serving(&mut broker, &format!("after {name}"));
    }
}

#[test]
fn idle_connections_are_closed() {
    let mut broker = Broker::start_with(&["connections.max.idle.ms=500"]);

    // An idle connection, after one good request.
    let mut idle = connect(&broker);
    api_versions_roundtrip(&mut idle, 1, Duration::from_secs(5)).expect("ApiVersions");
    let idle_since = Instant::now();

    // A connection stalled in the middle of a frame.
    let mut stalled = connect(&broker);
    stalled.write_all(&100i32.to_be_bytes()).unwrap();
    stalled.write_all(&[0u8; 10]).unwrap();
    let stalled_since = Instant::now();

    // A busy connection: a request every 150 ms for 2 s must keep it open.
    let mut busy = connect(&broker);
    for i in 0..14 {
        api_versions_roundtrip(&mut busy, 100 + i, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("busy connection, request {i}: {e}"));
        std::thread::sleep(Duration::from_millis(150));
    }

    // By now (≈2 s) the idle connections must be gone; allow a few seconds in all.
    assert!(
        wait_closed(&mut idle, Duration::from_secs(4)),
        "idle connection still open {:?} after its last request",
        idle_since.elapsed()
    );
    assert!(
        wait_closed(&mut stalled, Duration::from_secs(4)),
        "connection stalled mid-frame still open after {:?}",
        stalled_since.elapsed()
    );

    // Not closed early: a fresh idle connection is still open 200 ms in.
    let mut fresh = connect(&broker);
    api_versions_roundtrip(&mut fresh, 2, Duration::from_secs(5)).expect("ApiVersions");
    let started = Instant::now();
    assert_eq!(
        wait_read(&mut fresh, Duration::from_millis(200)),
        ReadOutcome::Open,
        "connection closed before connections.max.idle.ms=500"
    );
    assert!(
        wait_closed(&mut fresh, Duration::from_secs(5)),
        "fresh idle connection never closed"
    );
    let closed_after = started.elapsed();
    eprintln!("idle connection closed after {closed_after:?}");
    assert_serving(&mut broker, "after idle closes");
}

#[test]
fn max_connections_refuses_extra_connections() {
    let mut broker = Broker::start_with(&["max.connections=2"]);

    // The two allowed connections (retry briefly in case the startup probe is still counted).
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut first, mut second) = loop {
        let mut first = connect(&broker);
        let mut second = connect(&broker);
        let ok = api_versions_roundtrip(&mut first, 1, Duration::from_secs(2)).is_ok()
            && api_versions_roundtrip(&mut second, 2, Duration::from_secs(2)).is_ok();
        if ok {
            break (first, second);
        }
        assert!(
            Instant::now() < deadline,
            "two connections never both served"
        );
        drop((first, second));
        std::thread::sleep(Duration::from_millis(200));
    };

    // A third is closed straight away.
    let mut third = connect(&broker);
    let started = Instant::now();
    assert!(
        wait_closed(&mut third, Duration::from_secs(3)),
        "third connection with max.connections=2 still open after 3 s"
    );
    eprintln!("third connection closed after {:?}", started.elapsed());
    assert!(
        api_versions_roundtrip(&mut third, 3, Duration::from_secs(1)).is_err(),
        "third connection was served"
    );

    // The first two still work.
    api_versions_roundtrip(&mut first, 4, Duration::from_secs(5)).expect("first after refusal");
    api_versions_roundtrip(&mut second, 5, Duration::from_secs(5)).expect("second after refusal");

    // Freeing a slot lets a new connection in.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect(&broker);
        if api_versions_roundtrip(&mut again, 6, Duration::from_secs(2)).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slot freed by closing a connection never reused"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    api_versions_roundtrip(&mut second, 7, Duration::from_secs(5)).expect("second at the end");
    assert!(broker.is_running());
}

#[test]
fn max_connections_per_ip_refuses_extra_connections_from_one_address() {
    // 127.0.0.2 may hold 2 connections, 127.0.0.3 none; 127.0.0.1 (the test harness and the
    // broker's own clients) keeps the default.
    let mut broker =
        Broker::start_with(&["max.connections.per.ip.overrides=127.0.0.2:2,127.0.0.3:0"]);
    let mut first = connect_from(&broker, "127.0.0.2");
    let mut second = connect_from(&broker, "127.0.0.2");
    api_versions_roundtrip(&mut first, 1, Duration::from_secs(5)).expect("first from .2");
    api_versions_roundtrip(&mut second, 2, Duration::from_secs(5)).expect("second from .2");
    let mut third = connect_from(&broker, "127.0.0.2");
    assert!(
        wait_closed(&mut third, Duration::from_secs(3)),
        "a third connection from 127.0.0.2 still open after 3 s"
    );
    let mut refused = connect_from(&broker, "127.0.0.3");
    assert!(
        wait_closed(&mut refused, Duration::from_secs(3)),
        "a connection from 127.0.0.3 (limit 0) still open after 3 s"
    );
    // Other addresses are not affected, and the two stay served.
    let mut local = connect(&broker);
    api_versions_roundtrip(&mut local, 3, Duration::from_secs(5)).expect("127.0.0.1 served");
    api_versions_roundtrip(&mut first, 4, Duration::from_secs(5)).expect("first after refusal");
    // Closing one frees its slot for the address.
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from(&broker, "127.0.0.2");
        if api_versions_roundtrip(&mut again, 5, Duration::from_secs(2)).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "a freed slot was never reused");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(broker.is_running());
}

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Many connections each sending a 90 MB request at once (the limit per frame is 100 MiB):
/// with `queued.max.request.bytes` the broker reads those bodies a pool's worth at a time, so
/// its peak memory stays near one request however many arrive (measured: 189 MB peak with the
/// pool, 709 MB with `queued.max.request.bytes=-1`), and small requests keep being answered
/// meanwhile.
#[test]
fn queued_request_bytes_bound_the_memory_of_large_requests() {
    const CONNECTIONS: usize = 12;
    const FRAME_BYTES: usize = 90_000_000;
    let mut broker = Broker::start_with(&["queued.max.request.bytes=100000000"]);
    let before = peak_rss_bytes(broker.pid());
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let mut stream = connect(&broker);
            std::thread::spawn(move || {
                stream
                    .set_write_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let chunk = vec![0u8; 1 << 20];
                let mut sent = 0usize;
                let _ = stream.write_all(&(FRAME_BYTES as i32).to_be_bytes());
                while sent < FRAME_BYTES {
                    let n = chunk.len().min(FRAME_BYTES - sent);
                    if stream.write_all(&chunk[..n]).is_err() {
                        break;
                    }
                    sent += n;
                }
                sent
            })
        })
        .collect();
    // Small requests are not held back by the large ones.
    std::thread::sleep(Duration::from_millis(500));
    let mut stream = connect(&broker);
    api_versions_roundtrip(&mut stream, 77, Duration::from_secs(10))
        .expect("ApiVersions answered while large requests wait");
    let sent: usize = senders.into_iter().map(|s| s.join().unwrap()).sum();
    let peak = peak_rss_bytes(broker.pid());
    eprintln!(
        "sent {} MB over {CONNECTIONS} connections; peak RSS {} MB (before {} MB)",
        sent / 1_000_000,
        peak / 1_000_000,
        before / 1_000_000
    );
    assert!(
        sent >= 3 * FRAME_BYTES,
        "the broker read only {sent} bytes: large requests were not served one after another"
    );
    assert!(
        peak < 400_000_000,
        "peak RSS {} MB: large request bodies were not bounded",
        peak / 1_000_000
    );
    assert_serving(&mut broker, "after the large requests");
}
