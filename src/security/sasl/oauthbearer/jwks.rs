//! The verification keys of the secured validator: a JSON Web Key Set (RFC 7517) read from
//! `sasl.oauthbearer.jwks.endpoint.url` and read again every
//! `sasl.oauthbearer.jwks.endpoint.refresh.ms` (Kafka's `RefreshingHttpsJwks`), and sooner
//! when a token names a key id the set lacks (a rotated key), at most once per
//! `sasl.oauthbearer.jwks.endpoint.retry.backoff.ms`.
//!
//! A `file://` set is read on the login path (Kafka reads one once; dlog re-reads it on the
//! same schedule as a remote set, so a rotated file is picked up without a restart). An
//! `https://` (or `http://`) set is read by a refresher thread of its own, so that no login
//! waits on the network: on schedule, retried after a failure with a backoff doubling from
//! `…retry.backoff.ms` to `…retry.backoff.max.ms`, and sooner when a token names an unknown
//! key id — that token is refused, the next login finds the new key (Kafka's
//! `RefreshingHttpsJwks` does the same). The TLS trust of the endpoint comes from the
//! `ssl.truststore.*` options of the listener's OAuthBearerLoginModule JAAS entry, as in Kafka
//! (PEM only); without them the webpki roots are trusted. Host names are always verified.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// Largest key set read; real ones are a few KiB.
pub const JWKS_BYTES_MAX: u64 = 1024 * 1024;
/// Most keys in a set: every token may be tried against all keys without a key id.
pub const JWKS_KEYS_MAX: usize = 100;

/// The kind of key, which decides the algorithms it verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    EllipticCurve,
    Edwards,
}

impl KeyFamily {
    /// The family that verifies `algorithm`; None for HMAC, which a public key set cannot
    /// serve (accepting it would let a token signed with the public key as secret pass).
    pub fn of(algorithm: Algorithm) -> Option<KeyFamily> {
        use Algorithm::*;
        match algorithm {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(KeyFamily::Rsa),
            ES256 | ES384 => Some(KeyFamily::EllipticCurve),
            EdDSA => Some(KeyFamily::Edwards),
            HS256 | HS384 | HS512 => None,
        }
    }
}

/// One verification key of the set.
pub struct VerificationKey {
    pub key_id: Option<String>,
    /// The JWK's `alg`, when it names one: the key verifies that algorithm only.
    pub algorithm: Option<String>,
    pub family: KeyFamily,
    pub key: DecodingKey,
}

impl VerificationKey {
    /// Whether this key may verify a token signed with `algorithm`.
    pub fn fits(&self, algorithm: Algorithm) -> bool {
        KeyFamily::of(algorithm) == Some(self.family)
            && self
                .algorithm
                .as_deref()
                .is_none_or(|named| Some(named) == algorithm_name(algorithm).as_deref())
    }
}

/// An algorithm's JOSE name (`RS256`).
pub fn algorithm_name(algorithm: Algorithm) -> Option<String> {
    match serde_json::to_value(algorithm) {
        Ok(Value::String(name)) => Some(name),
        _ => None,
    }
}

/// Parses a key set, keeping the signature keys dlog can use (RSA, EC, Ed25519) and skipping
/// the others (encryption keys, symmetric keys, unknown types), as Kafka's key selector does.
pub fn parse(text: &[u8]) -> Result<Vec<VerificationKey>, String> {
    let set: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    let Some(Value::Array(entries)) = set.get("keys") else {
        return Err("no \"keys\" array".into());
    };
    if entries.len() > JWKS_KEYS_MAX {
        return Err(format!(
            "{} keys, more than the {JWKS_KEYS_MAX} accepted",
            entries.len()
        ));
    }
    let mut keys = Vec::new();
    for entry in entries {
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
            tracing::debug!("JWKS entry skipped: not a key type dlog verifies with");
            continue;
        };
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
            AlgorithmParameters::EllipticCurve(_) => KeyFamily::EllipticCurve,
            AlgorithmParameters::OctetKeyPair(_) => KeyFamily::Edwards,
            AlgorithmParameters::OctetKey(_) => continue,
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            tracing::debug!(kid = ?jwk.common.key_id, "JWKS entry skipped: bad key material");
            continue;
        };
        let algorithm = jwk
            .common
            .key_algorithm
            .and_then(|a| match serde_json::to_value(a) {
                Ok(Value::String(name)) => Some(name),
                _ => None,
            });
        keys.push(VerificationKey {
            key_id: jwk.common.key_id.clone(),
            algorithm,
            family,
            key,
        });
    }
    if keys.is_empty() {
        return Err("no signature verification key".into());
    }
    Ok(keys)
}

/// Where the key set is read from.
pub enum JwksLocation {
    File(PathBuf),
    /// An `https://` or `http://` endpoint, read with `agent` (its TLS trust, its timeout).
    Remote {
        url: String,
        agent: ureq::Agent,
    },
}

impl std::fmt::Debug for JwksLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksLocation::File(path) => write!(f, "File({})", path.display()),
            JwksLocation::Remote { url, .. } => write!(f, "Remote({url})"),
        }
    }
}

/// Bound on one read of a remote set (connect, TLS, request and body together).
const REMOTE_READ_TIMEOUT: Duration = Duration::from_secs(10);

impl JwksLocation {
    /// `trusted_pem`: the certificates (PEM) a remote endpoint's chain must end in; None
    /// trusts the webpki roots.
    pub fn parse(url: &str, trusted_pem: Option<&[u8]>) -> Result<JwksLocation, String> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "{url}: a file URL needs an absolute path (file:///…)"
                ));
            }
            return Ok(JwksLocation::File(PathBuf::from(path)));
        }
        let lowered = url.to_ascii_lowercase();
        if !(lowered.starts_with("https://") || lowered.starts_with("http://")) {
            return Err(format!(
                "{url}: a key set URL is file://, https:// or http://"
            ));
        }
        let mut tls = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::Rustls);
        if let Some(pem) = trusted_pem {
            let mut certificates = Vec::new();
            for item in ureq::tls::parse_pem(pem) {
                match item {
                    Ok(ureq::tls::PemItem::Certificate(certificate)) => {
                        certificates.push(certificate)
                    }
                    Ok(_) => {}
                    Err(error) => return Err(format!("truststore: bad PEM: {error}")),
                }
            }
            if certificates.is_empty() {
                return Err("truststore: no certificate".into());
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certificates));
        }
        let config = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .timeout_global(Some(REMOTE_READ_TIMEOUT))
            .build();
        Ok(JwksLocation::Remote {
            url: url.to_string(),
            agent: ureq::Agent::new_with_config(config),
        })
    }

    fn is_remote(&self) -> bool {
        matches!(self, JwksLocation::Remote { .. })
    }

    /// Reads the set, at most [`JWKS_BYTES_MAX`] bytes.
    fn read(&self) -> Result<Vec<u8>, String> {
        let bytes = match self {
            JwksLocation::File(path) => {
                let file =
                    std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let mut bytes = Vec::new();
                file.take(JWKS_BYTES_MAX + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                bytes
            }
            JwksLocation::Remote { url, agent } => {
                let mut response = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
                response
                    .body_mut()
                    .with_config()
                    .limit(JWKS_BYTES_MAX + 1)
                    .read_to_vec()
                    .map_err(|e| format!("{url}: {e}"))?
            }
        };
        if bytes.len() as u64 > JWKS_BYTES_MAX {
            return Err(format!("{self:?}: larger than {JWKS_BYTES_MAX} bytes"));
        }
        Ok(bytes)
    }

    fn load(&self) -> Result<Vec<VerificationKey>, String> {
        parse(&self.read()?)
    }
}

/// How a key set is re-read: `refresh` on schedule; after a failure (remote sets) from
/// `retry_backoff` doubling to `retry_backoff_max`; on an unknown key id at most once per
/// `retry_backoff`.
#[derive(Clone, Copy, Debug)]
pub struct JwksSchedule {
    pub refresh: Duration,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
}

impl JwksSchedule {
    pub fn from_ms(refresh_ms: u64, retry_backoff_ms: u64, retry_backoff_max_ms: u64) -> Self {
        JwksSchedule {
            refresh: Duration::from_millis(refresh_ms),
            retry_backoff: Duration::from_millis(retry_backoff_ms),
            retry_backoff_max: Duration::from_millis(retry_backoff_max_ms.max(retry_backoff_ms)),
        }
    }

    /// The wait after `failures` failed reads in a row (0: the refresh interval).
    fn wait_after(&self, failures: u32) -> Duration {
        if failures == 0 {
            return self.refresh;
        }
        let doubled = self
            .retry_backoff
            .saturating_mul(1u32 << (failures - 1).min(20));
        doubled
            .min(self.retry_backoff_max)
            .max(Duration::from_millis(1))
    }
}

/// The current key set, reloaded on schedule. Reads happen outside the locks: a token being
/// checked never waits for a reload.
pub struct Jwks {
    state: Arc<KeySetState>,
}

struct KeySetState {
    location: JwksLocation,
    schedule: JwksSchedule,
    keys: RwLock<Arc<Vec<VerificationKey>>>,
    /// When the set was last read (successfully or not).
    last_attempt: Mutex<Instant>,
    /// Set while one thread reloads a file, so concurrent logins do not all read it.
    reloading: AtomicBool,
    /// Remote sets: raised to wake the refresher early (an unknown key id).
    expedite: Mutex<bool>,
    wake: Condvar,
}

impl Jwks {
    /// Reads the set once; a set that cannot be read or holds no usable key is an error
    /// (the broker does not start, as Kafka's resolvers refuse it at configure time). A
    /// remote set is tried for up to `retry_backoff_max` first (an identity provider still
    /// starting), then handed to its refresher thread.
    pub fn open(location: JwksLocation, schedule: JwksSchedule) -> Result<Jwks, String> {
        let keys = match location.is_remote() {
            false => location.load()?,
            true => {
                let started = Instant::now();
                let mut failures = 0;
                loop {
                    match location.load() {
                        Ok(keys) => break keys,
                        Err(error) if started.elapsed() >= schedule.retry_backoff_max => {
                            return Err(error)
                        }
                        Err(error) => {
                            failures += 1;
                            tracing::warn!(%error, "JWKS read failed; retrying");
                            std::thread::sleep(schedule.wait_after(failures));
                        }
                    }
                }
            }
        };
        let state = Arc::new(KeySetState {
            location,
            schedule,
            keys: RwLock::new(Arc::new(keys)),
            last_attempt: Mutex::new(Instant::now()),
            reloading: AtomicBool::new(false),
            expedite: Mutex::new(false),
            wake: Condvar::new(),
        });
        if state.location.is_remote() {
            let weak = Arc::downgrade(&state);
            std::thread::Builder::new()
                .name("jwks-refresh".into())
                .spawn(move || refresh_remote(weak))
                .map_err(|e| format!("starting the JWKS refresher: {e}"))?;
        }
        Ok(Jwks { state })
    }

    /// The keys in force; a file set is reloaded first when the refresh interval has passed
    /// (a remote one is kept fresh by its thread).
    pub fn keys(&self) -> Arc<Vec<VerificationKey>> {
        if !self.state.location.is_remote() {
            self.state
                .reload_file_if_older_than(self.state.schedule.refresh);
        }
        self.state.current()
    }

    /// A token named a key id the set lacks. A file set is read again now unless the last
    /// read was within the retry backoff; returns whether it was. A remote set's refresher is
    /// woken (under the same backoff) and false returned: this token is judged on the keys in
    /// force, the next one on the new set.
    pub fn reload_for_unknown_key(&self) -> bool {
        let state = &self.state;
        if !state.location.is_remote() {
            return state.reload_file_if_older_than(state.schedule.retry_backoff);
        }
        if state.last_attempt.lock().expect("JWKS lock").elapsed() >= state.schedule.retry_backoff {
            *state.expedite.lock().expect("JWKS lock") = true;
            state.wake.notify_one();
        }
        false
    }
}

impl KeySetState {
    fn current(&self) -> Arc<Vec<VerificationKey>> {
        self.keys.read().expect("JWKS lock").clone()
    }

    /// Reads the set and installs it; on failure keeps the keys in force (a half-written
    /// file or an identity provider down must not lock every client out).
    fn reload(&self) -> bool {
        let loaded = self.location.load();
        *self.last_attempt.lock().expect("JWKS lock") = Instant::now();
        match loaded {
            Ok(keys) => {
                *self.keys.write().expect("JWKS lock") = Arc::new(keys);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "JWKS reload failed; keeping the previous keys");
                false
            }
        }
    }

    fn reload_file_if_older_than(&self, age: Duration) -> bool {
        let due = self.last_attempt.lock().expect("JWKS lock").elapsed() >= age;
        if !due || self.reloading.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.reload();
        self.reloading.store(false, Ordering::Release);
        true
    }
}

/// The refresher of a remote set: reads it every refresh interval, after a failure again
/// with a growing backoff, and early when woken. Ends at its first wake-up after the set
/// is dropped.
fn refresh_remote(state: Weak<KeySetState>) {
    let mut failures: u32 = 0;
    loop {
        let Some(strong) = state.upgrade() else {
            return;
        };
        let wait = strong.schedule.wait_after(failures);
        let expedite = strong.expedite.lock().expect("JWKS lock");
        let (mut expedite, _) = strong
            .wake
            .wait_timeout_while(expedite, wait, |raised| !*raised)
            .expect("JWKS lock");
        *expedite = false;
        drop(expedite);
        failures = match strong.reload() {
            true => 0,
            false => failures.saturating_add(1),
        };
        drop(strong);
    }
}
