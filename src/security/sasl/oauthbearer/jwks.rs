//! The verification keys of the secured validator: a JSON Web Key Set (RFC 7517) read from
//! `sasl.oauthbearer.jwks.endpoint.url` and read again every
//! `sasl.oauthbearer.jwks.endpoint.refresh.ms` (Kafka's `RefreshingHttpsJwks`), and sooner
//! when a token names a key id the set lacks (a rotated key), at most once per
//! `sasl.oauthbearer.jwks.endpoint.retry.backoff.ms`.
//!
//! Only `file://` URLs are served (Kafka reads those once; dlog re-reads them on the same
//! schedule as a remote set, so a rotated file is picked up without a restart).

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksLocation {
    File(PathBuf),
}

impl JwksLocation {
    pub fn parse(url: &str) -> Result<JwksLocation, String> {
        let url = url.trim();
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "{url}: a file URL needs an absolute path (file:///…)"
                ));
            }
            return Ok(JwksLocation::File(PathBuf::from(path)));
        }
        Err(format!(
            "{url}: only file:// key sets are supported (not https:// yet)"
        ))
    }

    /// Reads the set, at most [`JWKS_BYTES_MAX`] bytes.
    fn read(&self) -> Result<Vec<u8>, String> {
        let JwksLocation::File(path) = self;
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut bytes = Vec::new();
        file.take(JWKS_BYTES_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if bytes.len() as u64 > JWKS_BYTES_MAX {
            return Err(format!(
                "{}: larger than {JWKS_BYTES_MAX} bytes",
                path.display()
            ));
        }
        Ok(bytes)
    }

    fn load(&self) -> Result<Vec<VerificationKey>, String> {
        parse(&self.read()?)
    }
}

/// The current key set, reloaded on schedule. Reads happen outside the locks: a token being
/// checked never waits for a reload.
pub struct Jwks {
    location: JwksLocation,
    refresh: Duration,
    retry_backoff: Duration,
    keys: RwLock<Arc<Vec<VerificationKey>>>,
    /// When the set was last read (successfully or not).
    last_attempt: Mutex<Instant>,
    /// Set while one thread reloads, so concurrent logins do not all read the file.
    reloading: AtomicBool,
}

impl Jwks {
    /// Reads the set once; a set that cannot be read or holds no usable key is an error
    /// (the broker does not start, as Kafka's file resolver refuses it at configure time).
    pub fn open(
        location: JwksLocation,
        refresh_ms: u64,
        retry_backoff_ms: u64,
    ) -> Result<Jwks, String> {
        let keys = location.load()?;
        Ok(Jwks {
            location,
            refresh: Duration::from_millis(refresh_ms),
            retry_backoff: Duration::from_millis(retry_backoff_ms),
            keys: RwLock::new(Arc::new(keys)),
            last_attempt: Mutex::new(Instant::now()),
            reloading: AtomicBool::new(false),
        })
    }

    /// The keys in force, reloaded first when the refresh interval has passed.
    pub fn keys(&self) -> Arc<Vec<VerificationKey>> {
        self.reload_if_older_than(self.refresh);
        self.current()
    }

    /// A token named a key id the set lacks: reload unless the last read was within the
    /// retry backoff. Returns whether the set was read again.
    pub fn reload_for_unknown_key(&self) -> bool {
        self.reload_if_older_than(self.retry_backoff)
    }

    fn current(&self) -> Arc<Vec<VerificationKey>> {
        self.keys.read().expect("JWKS lock").clone()
    }

    fn reload_if_older_than(&self, age: Duration) -> bool {
        let due = self.last_attempt.lock().expect("JWKS lock").elapsed() >= age;
        if !due || self.reloading.swap(true, Ordering::AcqRel) {
            return false;
        }
        let loaded = self.location.load();
        *self.last_attempt.lock().expect("JWKS lock") = Instant::now();
        match loaded {
            Ok(keys) => *self.keys.write().expect("JWKS lock") = Arc::new(keys),
            // Keep the keys we have: a half-written file must not lock every client out.
            Err(error) => tracing::warn!(%error, "JWKS reload failed; keeping the previous keys"),
        }
        self.reloading.store(false, Ordering::Release);
        true
    }
}
