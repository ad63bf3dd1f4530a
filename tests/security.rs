//! Issue 14, the connection side, against a real `dlog` process: named listeners with
//! SASL_PLAINTEXT / SSL / SASL_SSL, SASL PLAIN with the rdkafka (librdkafka) client, TLS with a
//! client certificate (mutual TLS), and the bad inputs the SASL gate and TLS must refuse
//! cheaply while the broker keeps serving others. Certificates are made here with rcgen.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::*;
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, RequestHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const JAAS: &str = r#"org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice-secret" user_bob="bob-secret";"#;

/// Broker logs at debug for the server layer: the tests read the principal it logs.
fn debug_server_logs() {
    std::env::set_var("DLOG_TEST_LOG", "info,dlog::server=debug");
}

/// A broker with its harness PLAINTEXT listener plus a SASL_PLAINTEXT one on `sasl_port`.
fn sasl_broker(sasl_port: u16, extra: &[&str]) -> Broker {
    let listeners = format!("listeners=SASL_PLAINTEXT://127.0.0.1:{sasl_port}");
    let jaas = format!("listener.name.sasl_plaintext.plain.sasl.jaas.config={JAAS}");
    let mut settings = vec![
        listeners.as_str(),
        "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        jaas.as_str(),
    ];
    settings.extend_from_slice(extra);
    debug_server_logs();
    Broker::start_with(&settings)
}

fn sasl_client(config: &mut ClientConfig, protocol: &str, user: &str, password: &str) {
    config
        .set("security.protocol", protocol)
        .set("sasl.mechanisms", "PLAIN")
        .set("sasl.username", user)
        .set("sasl.password", password);
}

fn produce_one(mut config: ClientConfig, topic: &str, value: &str) {
    let producer: ThreadedProducer<DefaultProducerContext> = config
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer");
    producer
        .send(BaseRecord::<(), str>::to(topic).payload(value))
        .map_err(|(e, _)| e)
        .expect("enqueue");
    producer
        .flush(CLIENT_TIMEOUT)
        .expect("flush: the record was not acknowledged");
}

fn consume_values(config: ClientConfig, topic: &str) -> Vec<String> {
    let mut config = config;
    let consumer = config
        .set("group.id", "dlog-it-assign-only")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consume_all_with(consumer, topic, 1)[&0]
        .iter()
        .map(|m| String::from_utf8(rdkafka::Message::payload(m).unwrap().to_vec()).unwrap())
        .collect()
}

fn metadata_error(config: ClientConfig) -> String {
    let producer: ThreadedProducer<DefaultProducerContext> = config.create().expect("producer");
    match producer
        .client()
        .fetch_metadata(None, Duration::from_secs(5))
    {
        Ok(_) => panic!("metadata answered to a client that should not be authenticated"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn sasl_plain_over_a_sasl_plaintext_listener() {
    let sasl_port = free_port();
    let broker = sasl_broker(sasl_port, &[]);
    let bootstrap = format!("127.0.0.1:{sasl_port}");
    let mut config = producer_config(&bootstrap);
    sasl_client(&mut config, "SASL_PLAINTEXT", "alice", "alice-secret");
    produce_one(config, "secured", "over SASL");
    let mut consumer = ClientConfig::new();
    consumer.set("bootstrap.servers", &bootstrap);
    sasl_client(&mut consumer, "SASL_PLAINTEXT", "bob", "bob-secret");
    assert_eq!(consume_values(consumer, "secured"), vec!["over SASL"]);
    // The principal came from SASL.
    let log = broker.stderr_tail(400);
    assert!(log.contains("principal=User:alice"), "{log}");
    // Wrong password and unknown user: refused, no metadata.
    for (user, password) in [("alice", "wrong"), ("mallory", "alice-secret")] {
        let mut config = producer_config(&bootstrap);
        sasl_client(&mut config, "SASL_PLAINTEXT", user, password);
        let error = metadata_error(config);
        assert!(!error.is_empty());
    }
    // A plaintext client on the SASL port is refused; the PLAINTEXT listener still serves.
    let error = metadata_error(producer_config(&bootstrap));
    assert!(!error.is_empty());
    let plain: ThreadedProducer<DefaultProducerContext> =
        producer_config(&broker.bootstrap()).create().unwrap();
    let metadata = plain
        .client()
        .fetch_metadata(Some("secured"), CLIENT_TIMEOUT)
        .unwrap();
    // Metadata over a listener advertises that listener's port.
    assert_eq!(metadata.brokers()[0].port() as u16, broker.port);
    let log = broker.stderr_tail(400);
    assert!(log.contains("Invalid username or password"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// Raw frames: what a client that breaks the rules sees.

fn frame<T: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Vec<u8> {
    let mut bytes = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("raw-test")))
        .encode(&mut bytes, api_key.request_header_version(version))
        .unwrap();
    body.encode(&mut bytes, version).unwrap();
    let mut framed = (bytes.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    framed
}

/// Reads one response and decodes its body (after the correlation id and header tags).
fn response<T: Decodable>(stream: &mut TcpStream, api_key: ApiKey, version: i16) -> T {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("response size");
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).expect("response body");
    let mut body = Bytes::from(body);
    kafka_protocol::messages::ResponseHeader::decode(
        &mut body,
        api_key.response_header_version(version),
    )
    .unwrap();
    T::decode(&mut body, version).unwrap()
}

fn handshake(stream: &mut TcpStream, mechanism: &'static str) -> SaslHandshakeResponse {
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
    stream
        .write_all(&frame(ApiKey::SaslHandshake, 1, 1, &request))
        .unwrap();
    response(stream, ApiKey::SaslHandshake, 1)
}

fn authenticate(stream: &mut TcpStream, token: &'static [u8]) -> SaslAuthenticateResponse {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(token));
    stream
        .write_all(&frame(ApiKey::SaslAuthenticate, 2, 2, &request))
        .unwrap();
    response(stream, ApiKey::SaslAuthenticate, 2)
}

fn metadata_request() -> Vec<u8> {
    frame(ApiKey::Metadata, 12, 3, &MetadataRequest::default())
}

#[test]
fn the_sasl_gate_refuses_what_breaks_the_rules() {
    let sasl_port = free_port();
    let broker = sasl_broker(sasl_port, &["connections.max.reauth.ms=1500"]);
    let connect = || TcpStream::connect(("127.0.0.1", sasl_port)).unwrap();

    // ApiVersions is answered before authentication.
    let mut stream = connect();
    api_versions_roundtrip(&mut stream, 7, CLIENT_TIMEOUT).unwrap();
    // A client that skips the handshake and sends a request: closed without an answer.
    stream.write_all(&metadata_request()).unwrap();
    assert!(
        wait_closed(&mut stream, CLIENT_TIMEOUT),
        "served a request before SASL"
    );

    // An absurd frame size before authentication (above sasl.server.max.receive.size).
    let mut stream = connect();
    stream.write_all(&(90_000_000i32).to_be_bytes()).unwrap();
    assert!(
        wait_closed(&mut stream, CLIENT_TIMEOUT),
        "a 90 MB frame was accepted"
    );

    // An unsupported mechanism: UNSUPPORTED_SASL_MECHANISM (33) with the enabled list, closed.
    let mut stream = connect();
    let answer = handshake(&mut stream, "GSSAPI");
    assert_eq!(answer.error_code, 33);
    let names: Vec<&str> = answer.mechanisms.iter().map(|m| &**m).collect();
    assert_eq!(names, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    assert!(wait_closed(&mut stream, CLIENT_TIMEOUT));

    // A wrong password: SASL_AUTHENTICATION_FAILED (58), then closed.
    let mut stream = connect();
    assert_eq!(handshake(&mut stream, "PLAIN").error_code, 0);
    let answer = authenticate(&mut stream, b"\0alice\0nope");
    assert_eq!(answer.error_code, 58);
    assert!(wait_closed(&mut stream, CLIENT_TIMEOUT));

    // SCRAM for a user the credential store does not know: refused the same way.
    let mut stream = connect();
    assert_eq!(handshake(&mut stream, "SCRAM-SHA-256").error_code, 0);
    let answer = authenticate(&mut stream, b"n,,n=alice,r=abcdefgh");
    assert_eq!(answer.error_code, 58);
    assert!(wait_closed(&mut stream, CLIENT_TIMEOUT));

    // A good login gets the session lifetime (KIP-368), is served, re-authenticates on the
    // live connection, and is closed when it sends a request after its session ended.
    let mut stream = connect();
    assert_eq!(handshake(&mut stream, "PLAIN").error_code, 0);
    let answer = authenticate(&mut stream, b"\0alice\0alice-secret");
    assert_eq!(answer.error_code, 0);
    assert_eq!(answer.session_lifetime_ms, 1500);
    stream.write_all(&metadata_request()).unwrap();
    let metadata: MetadataResponse = response(&mut stream, ApiKey::Metadata, 12);
    assert_eq!(metadata.brokers.len(), 1);
    std::thread::sleep(Duration::from_millis(1700));
    assert_eq!(handshake(&mut stream, "PLAIN").error_code, 0);
    assert_eq!(
        authenticate(&mut stream, b"\0alice\0alice-secret").error_code,
        0
    );
    // Re-authenticating as someone else is refused.
    assert_eq!(handshake(&mut stream, "PLAIN").error_code, 0);
    assert_eq!(
        authenticate(&mut stream, b"\0bob\0bob-secret").error_code,
        58
    );
    assert!(wait_closed(&mut stream, CLIENT_TIMEOUT));
    let mut stream = connect();
    assert_eq!(handshake(&mut stream, "PLAIN").error_code, 0);
    assert_eq!(
        authenticate(&mut stream, b"\0alice\0alice-secret").error_code,
        0
    );
    std::thread::sleep(Duration::from_millis(1700));
    stream.write_all(&metadata_request()).unwrap();
    assert!(
        wait_closed(&mut stream, CLIENT_TIMEOUT),
        "served past the session's end"
    );

    // Through all of it, the broker kept serving.
    let mut stream = TcpStream::connect(broker.addr()).unwrap();
    api_versions_roundtrip(&mut stream, 9, CLIENT_TIMEOUT).unwrap();
    // SASL on the PLAINTEXT listener: ILLEGAL_SASL_STATE (34), as Kafka answers.
    assert_eq!(handshake(&mut stream, "PLAIN").error_code, 34);
}

const OAUTH_SECURED: &str =
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler";

fn authenticate_with(stream: &mut TcpStream, token: Vec<u8>) -> SaslAuthenticateResponse {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    stream
        .write_all(&frame(ApiKey::SaslAuthenticate, 2, 2, &request))
        .unwrap();
    response(stream, ApiKey::SaslAuthenticate, 2)
}

/// An unsecured JWT (Kafka's default OAUTHBEARER tokens) for `sub`, expiring at `exp_s`,
/// in the client's first message.
fn unsecured_bearer(header: &str, sub: &str, exp_s: u64) -> Vec<u8> {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = format!(r#"{{"sub":"{sub}","exp":{exp_s}}}"#);
    let token = format!("{}.{}.", engine.encode(header), engine.encode(claims));
    format!("n,,\u{1}auth=Bearer {token}\u{1}\u{1}").into_bytes()
}

/// SASL/OAUTHBEARER with Kafka's unsecured validator, frame by frame: garbage fails at once,
/// a refused token gets RFC 7628's error JSON and then SASL_AUTHENTICATION_FAILED, a good one
/// authenticates its `sub` with a session that ends at the token's `exp`.
#[test]
fn oauthbearer_exchange_and_token_lifetime() {
    let sasl_port = free_port();
    let listeners = format!("listeners=SASL_PLAINTEXT://127.0.0.1:{sasl_port}");
    let broker = Broker::start_with(&[listeners.as_str(), "sasl.enabled.mechanisms=OAUTHBEARER"]);
    let connect = || TcpStream::connect(("127.0.0.1", sasl_port)).unwrap();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let mut stream = connect();
    let answer = handshake(&mut stream, "OAUTHBEARER");
    assert_eq!(answer.error_code, 0);
    let names: Vec<&str> = answer.mechanisms.iter().map(|m| &**m).collect();
    assert_eq!(names, ["OAUTHBEARER"]);
    assert_eq!(
        authenticate(&mut stream, b"n,,\x01garbage\x01\x01").error_code,
        58
    );
    assert!(wait_closed(&mut stream, CLIENT_TIMEOUT));

    // A signed-looking token is not an unsecured one: the error JSON, then on the client's
    // \x01 the failure carrying it.
    let mut stream = connect();
    assert_eq!(handshake(&mut stream, "OAUTHBEARER").error_code, 0);
    let answer = authenticate_with(
        &mut stream,
        unsecured_bearer(r#"{"alg":"RS256"}"#, "alice", now_s + 60),
    );
    assert_eq!(answer.error_code, 0);
    assert_eq!(&answer.auth_bytes[..], br#"{"status":"invalid_token"}"#);
    let answer = authenticate(&mut stream, b"\x01");
    assert_eq!(answer.error_code, 58);
    assert_eq!(
        answer.error_message.as_deref(),
        Some(r#"{"status":"invalid_token"}"#)
    );
    assert!(wait_closed(&mut stream, CLIENT_TIMEOUT));

    // An expired token is refused the same way.
    let mut stream = connect();
    assert_eq!(handshake(&mut stream, "OAUTHBEARER").error_code, 0);
    let answer = authenticate_with(
        &mut stream,
        unsecured_bearer(r#"{"alg":"none"}"#, "alice", now_s - 60),
    );
    assert_eq!(&answer.auth_bytes[..], br#"{"status":"invalid_token"}"#);

    // A good token: served, told the session ends at exp, closed once it has.
    let mut stream = connect();
    assert_eq!(handshake(&mut stream, "OAUTHBEARER").error_code, 0);
    let answer = authenticate_with(
        &mut stream,
        unsecured_bearer(r#"{"alg":"none"}"#, "alice", now_s + 3),
    );
    assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
    assert!(
        answer.session_lifetime_ms > 0 && answer.session_lifetime_ms <= 3000,
        "session lifetime {} ms",
        answer.session_lifetime_ms
    );
    stream.write_all(&metadata_request()).unwrap();
    let metadata: MetadataResponse = response(&mut stream, ApiKey::Metadata, 12);
    assert_eq!(metadata.brokers.len(), 1);
    std::thread::sleep(Duration::from_millis(
        answer.session_lifetime_ms as u64 + 300,
    ));
    stream.write_all(&metadata_request()).unwrap();
    assert!(
        wait_closed(&mut stream, CLIENT_TIMEOUT),
        "served past the token's exp"
    );
    let mut stream = TcpStream::connect(broker.addr()).unwrap();
    api_versions_roundtrip(&mut stream, 9, CLIENT_TIMEOUT).unwrap();
}

// ---------------------------------------------------------------------------------------------
// TLS

struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    /// A CA, a server certificate for 127.0.0.1/localhost and a client certificate whose
    /// subject is O=example, CN=alice.
    fn new() -> Certificates {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        };
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "dlog test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // Subject sequence O, CN (rcgen's default DN would put its CN first).
        client_params.distinguished_name = rcgen::DistinguishedName::new();
        client_params
            .distinguished_name
            .push(DnType::OrganizationName, "example");
        client_params
            .distinguished_name
            .push(DnType::CommonName, "alice");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", ca.pem());
        write(
            "server-keystore.pem",
            format!("{}{}", server.pem(), server_key.serialize_pem()),
        );
        write("client.pem", client.pem());
        write("client.key", client_key.serialize_pem());
        Certificates { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
}

fn tls_client(
    config: &mut ClientConfig,
    certificates: &Certificates,
    with_client_certificate: bool,
) {
    config.set("ssl.ca.location", certificates.path("ca.pem"));
    if with_client_certificate {
        config
            .set("ssl.certificate.location", certificates.path("client.pem"))
            .set("ssl.key.location", certificates.path("client.key"));
    }
}

#[test]
fn tls_listeners_with_mutual_tls_and_sasl_ssl() {
    let certificates = Certificates::new();
    let (ssl_port, sasl_ssl_port) = (free_port(), free_port());
    let listeners =
        format!("listeners=SSL://127.0.0.1:{ssl_port},SASL_SSL://127.0.0.1:{sasl_ssl_port}");
    let keystore = format!(
        "ssl.keystore.location={}",
        certificates.path("server-keystore.pem")
    );
    let truststore = format!("ssl.truststore.location={}", certificates.path("ca.pem"));
    let jaas = format!("sasl.jaas.config={JAAS}");
    debug_server_logs();
    let broker = Broker::start_with(&[
        &listeners,
        "ssl.keystore.type=PEM",
        &keystore,
        "ssl.truststore.type=PEM",
        &truststore,
        // Required on the SSL listener only (Kafka's listener prefix).
        "listener.name.ssl.ssl.client.auth=required",
        "sasl.enabled.mechanisms=PLAIN",
        &jaas,
    ]);

    // Mutual TLS: the producer's certificate is its principal.
    let ssl_bootstrap = format!("127.0.0.1:{ssl_port}");
    let mut config = producer_config(&ssl_bootstrap);
    config.set("security.protocol", "SSL");
    tls_client(&mut config, &certificates, true);
    produce_one(config, "over-tls", "encrypted");
    let log = broker.stderr_tail(400);
    assert!(log.contains("principal=User:CN=alice,O=example"), "{log}");
    // Without a client certificate the SSL listener refuses (client auth required).
    let mut config = producer_config(&ssl_bootstrap);
    config.set("security.protocol", "SSL");
    tls_client(&mut config, &certificates, false);
    metadata_error(config);

    // SASL_SSL: TLS without a client certificate, then PLAIN; fetch over TLS reads the segment.
    let mut consumer = ClientConfig::new();
    consumer.set("bootstrap.servers", format!("127.0.0.1:{sasl_ssl_port}"));
    consumer.set("security.protocol", "SASL_SSL");
    consumer
        .set("sasl.mechanisms", "PLAIN")
        .set("sasl.username", "bob")
        .set("sasl.password", "bob-secret");
    tls_client(&mut consumer, &certificates, false);
    assert_eq!(consume_values(consumer, "over-tls"), vec!["encrypted"]);

    // A TLS handshake that stalls is cut off after a bounded time; others are served meanwhile.
    let mut stalled = TcpStream::connect(("127.0.0.1", ssl_port)).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).unwrap(); // the start of a ClientHello, then nothing
    let started = Instant::now();
    let mut plain = TcpStream::connect(broker.addr()).unwrap();
    api_versions_roundtrip(&mut plain, 11, CLIENT_TIMEOUT).unwrap();
    assert!(
        wait_closed(&mut stalled, Duration::from_secs(30)),
        "stalled handshake kept open"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn settings_dlog_cannot_honour_stop_the_broker() {
    let port = free_port();
    for (settings, named) in [
        (
            vec![format!("listeners=SASL_SSL://127.0.0.1:{port}")],
            "sasl.enabled.mechanisms",
        ),
        (
            vec![
                format!("listeners=SASL_PLAINTEXT://127.0.0.1:{port}"),
                "sasl.enabled.mechanisms=GSSAPI".to_string(),
            ],
            "sasl.enabled.mechanisms",
        ),
        (
            // The secured OAUTHBEARER validator without a key set, with one over https, with
            // one that does not exist; a callback handler dlog does not have.
            vec![
                format!("listeners=SASL_PLAINTEXT://127.0.0.1:{port}"),
                "sasl.enabled.mechanisms=OAUTHBEARER".to_string(),
                format!("listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class={OAUTH_SECURED}"),
            ],
            "sasl.oauthbearer.jwks.endpoint.url",
        ),
        (
            vec![
                format!("listeners=SASL_PLAINTEXT://127.0.0.1:{port}"),
                "sasl.enabled.mechanisms=OAUTHBEARER".to_string(),
                format!("listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class={OAUTH_SECURED}"),
                "sasl.oauthbearer.jwks.endpoint.url=https://idp.invalid/jwks".to_string(),
            ],
            "sasl.oauthbearer.jwks.endpoint.url",
        ),
        (
            vec![
                format!("listeners=SASL_PLAINTEXT://127.0.0.1:{port}"),
                "sasl.enabled.mechanisms=OAUTHBEARER".to_string(),
                format!("listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class={OAUTH_SECURED}"),
                "sasl.oauthbearer.jwks.endpoint.url=file:///nonexistent/jwks.json".to_string(),
            ],
            "sasl.oauthbearer.jwks.endpoint.url",
        ),
        (
            vec![
                format!("listeners=SASL_PLAINTEXT://127.0.0.1:{port}"),
                "sasl.enabled.mechanisms=OAUTHBEARER".to_string(),
                "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class=com.example.Custom".to_string(),
            ],
            "sasl.server.callback.handler.class",
        ),
        (
            vec![
                format!("listeners=SASL_PLAINTEXT://127.0.0.1:{port}"),
                "sasl.enabled.mechanisms=PLAIN".to_string(),
            ],
            "sasl.jaas.config",
        ),
        (
            vec![format!("listeners=SSL://127.0.0.1:{port}")],
            "ssl.keystore.type",
        ),
        (
            vec!["ssl.cipher.suites=TLS_AES_128_GCM_SHA256".to_string()],
            "ssl.cipher.suites",
        ),
        (
            vec![format!("listeners=CLIENT://127.0.0.1:{port}")],
            "listener.security.protocol.map",
        ),
        (
            // A cluster whose brokers would reach each other on a SASL listener.
            vec![
                format!(
                    "listeners=SASL_PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{}",
                    port + 1
                ),
                "sasl.enabled.mechanisms=SCRAM-SHA-256".to_string(),
                "process.roles=broker,controller".to_string(),
                "node.id=1".to_string(),
                format!("controller.quorum.voters=1@127.0.0.1:{}", port + 1),
            ],
            "inter.broker.listener.name",
        ),
    ] {
        let data = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_dlog"));
        command.arg("--data-dir").arg(data.path());
        for setting in &settings {
            command.arg("--set").arg(setting);
        }
        let output = command.output().expect("run dlog");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{settings:?} started");
        assert!(stderr.contains(named), "{settings:?}: {stderr}");
    }
}

/// SCRAM-SHA-256 and SCRAM-SHA-512 with librdkafka. The credentials are managed with
/// AlterUserScramCredentials in the metadata log (the authorization side of issue 14); this
/// test does not depend on that: it runs the broker's own node and listener in this process
/// with a credential store it fills itself (a test-only path, inside this test binary).
#[test]
fn scram_sha_256_and_512_with_librdkafka() {
    use dlog::security::listener::ListenerSecurity;
    use dlog::security::sasl::scram::{self, MemoryCredentials};
    use dlog::security::ScramMechanism;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut properties = dlog::config::Properties::default();
    for (name, value) in [
        ("listeners", format!("SASL_PLAINTEXT://127.0.0.1:{port}")),
        (
            "sasl.enabled.mechanisms",
            "SCRAM-SHA-256,SCRAM-SHA-512".to_string(),
        ),
        ("log.dirs", dir.path().to_string_lossy().into_owned()),
    ] {
        properties.set(name, &value).unwrap();
    }
    let config = dlog::config::BrokerConfig::from_properties(properties).unwrap();
    let store = Arc::new(MemoryCredentials::default());
    store.insert(
        "alice",
        scram::credential(ScramMechanism::Sha256, "alice-256", b"salt-of-256", 4096),
    );
    store.insert(
        "alice",
        scram::credential(ScramMechanism::Sha512, "alice-512", b"salt-of-512", 8192),
    );
    let security =
        Arc::new(ListenerSecurity::new(&config.properties, &config.listeners[0], store).unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let node = runtime
        .block_on(async {
            tokio::task::spawn_blocking(move || dlog::node::Node::open(config)).await
        })
        .unwrap()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .unwrap();
    let server = runtime.spawn(dlog::server::run_listener(
        node.clone(),
        listener,
        dlog::server::ListenerKind::Broker,
        security,
    ));

    let bootstrap = format!("127.0.0.1:{port}");
    let scram_client = |mechanism: &str, password: &str| {
        let mut config = producer_config(&bootstrap);
        config
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanisms", mechanism)
            .set("sasl.username", "alice")
            .set("sasl.password", password);
        config
    };
    produce_one(
        scram_client("SCRAM-SHA-256", "alice-256"),
        "scram",
        "sha-256",
    );
    produce_one(
        scram_client("SCRAM-SHA-512", "alice-512"),
        "scram",
        "sha-512",
    );
    assert_eq!(
        consume_values(scram_client("SCRAM-SHA-512", "alice-512"), "scram"),
        vec!["sha-256", "sha-512"]
    );
    // The other mechanism's password, and a wrong one: refused.
    metadata_error(scram_client("SCRAM-SHA-256", "alice-512"));
    metadata_error(scram_client("SCRAM-SHA-512", "wrong"));

    let _ = node.shutdown.send(true);
    runtime.block_on(server).unwrap();
    node.close().unwrap();
}
