//! Kafka's secured OAUTHBEARER validator (KIP-768, `OAuthBearerValidatorCallbackHandler` with
//! its `BrokerJwtValidator`): a signed JWT whose signature verifies with a key of the JWKS
//! ([`super::jwks`]), with `exp` required, `iat`/`nbf` checked, the expected audience and
//! issuer when configured, and the principal and scope claims Kafka reads. Unsigned tokens
//! (`alg` "none") and HMAC ones are refused. Every refusal is `invalid_token`, as in Kafka.

use std::collections::HashSet;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Validation};

use super::claims::{self, Claims};
use super::jwks::Jwks;
use super::{TokenRejected, TokenValidator, ValidToken};

/// The settings of the secured validator (the `sasl.oauthbearer.*` properties).
pub struct SecuredValidator {
    pub jwks: Arc<Jwks>,
    /// `sasl.oauthbearer.expected.audience`: the token's `aud` must hold one of these; empty
    /// means no audience is expected, and a token that names one is refused (jose4j's rule).
    pub expected_audience: Vec<String>,
    /// `sasl.oauthbearer.expected.issuer`: the token's `iss` must be this, when set.
    pub expected_issuer: Option<String>,
    /// `sasl.oauthbearer.clock.skew.seconds`.
    pub clock_skew_seconds: i64,
    /// `sasl.oauthbearer.scope.claim.name`.
    pub scope_claim: String,
    /// `sasl.oauthbearer.sub.claim.name`.
    pub sub_claim: String,
}

impl SecuredValidator {
    /// What jsonwebtoken checks for us: the signature with `algorithm`, the audience and the
    /// issuer. The times are checked by [`claims::check_times`] against the caller's clock.
    fn validation(&self, algorithm: jsonwebtoken::Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims = HashSet::new();
        if !self.expected_audience.is_empty() {
            validation.set_audience(&self.expected_audience);
            validation.required_spec_claims.insert("aud".to_string());
        }
        if let Some(issuer) = &self.expected_issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".to_string());
        }
        validation
    }
}

impl TokenValidator for SecuredValidator {
    fn validate(&self, token: &str, now_ms: i64) -> Result<ValidToken, TokenRejected> {
        // An unsigned token ("none") does not even parse as a header here.
        let header = decode_header(token)
            .map_err(|e| TokenRejected::invalid(format!("bad JWS header: {e}")))?;
        let algorithm = header.alg;
        let mut keys = self.jwks.keys();
        let fitting = |keys: &[super::jwks::VerificationKey]| -> Vec<usize> {
            keys.iter()
                .enumerate()
                .filter(|(_, key)| key.fits(algorithm))
                .filter(|(_, key)| header.kid.is_none() || key.key_id == header.kid)
                .map(|(index, _)| index)
                .collect()
        };
        let mut candidates = fitting(&keys);
        if candidates.is_empty() && header.kid.is_some() && self.jwks.reload_for_unknown_key() {
            keys = self.jwks.keys();
            candidates = fitting(&keys);
        }
        if candidates.is_empty() {
            return Err(TokenRejected::invalid(format!(
                "no key in the JWKS for kid {:?} and algorithm {algorithm:?}",
                header.kid
            )));
        }
        let validation = self.validation(algorithm);
        let mut last_error = None;
        let mut verified: Option<Claims> = None;
        for index in candidates {
            match decode::<Claims>(token, &keys[index].key, &validation) {
                Ok(data) => {
                    verified = Some(data.claims);
                    break;
                }
                // Without a key id several keys may fit; only a bad signature tries the next.
                Err(error) if *error.kind() == ErrorKind::InvalidSignature => {
                    last_error = Some(error)
                }
                Err(error) => return Err(TokenRejected::invalid(format!("{error}"))),
            }
        }
        let Some(claims) = verified else {
            return Err(TokenRejected::invalid(format!(
                "signature does not verify: {last_error:?}"
            )));
        };
        claims::valid_token(
            &claims,
            &self.sub_claim,
            &self.scope_claim,
            now_ms,
            self.clock_skew_seconds.saturating_mul(1000),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::jwks::{JwksLocation, JwksSchedule};
    use super::*;
    use base64::Engine;
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    use serde_json::{json, Value};

    const NOW_MS: i64 = 1_700_000_000_000;
    const EXP: i64 = 1_700_003_600;

    fn fixtures() -> Value {
        serde_json::from_str(include_str!("testdata/test_keys.json")).unwrap()
    }

    fn der(name: &str) -> Vec<u8> {
        let text = fixtures()[name].as_str().unwrap().to_string();
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap()
    }

    fn sign(algorithm: Algorithm, key: &str, kid: Option<&str>, claims: Value) -> String {
        let key = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_der(&der(key)),
            _ => EncodingKey::from_rsa_der(&der(key)),
        };
        let mut header = Header::new(algorithm);
        header.kid = kid.map(str::to_string);
        encode(&header, &claims, &key).unwrap()
    }

    fn rs256(kid: Option<&str>, claims: Value) -> String {
        sign(Algorithm::RS256, "rsa_pkcs1_der", kid, claims)
    }

    /// A validator over the fixture key set, written to a temporary file as an operator
    /// would point `sasl.oauthbearer.jwks.endpoint.url` at it.
    fn validator(audience: &[&str], issuer: Option<&str>) -> (SecuredValidator, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, fixtures()["jwks"].to_string()).unwrap();
        let url = format!("file://{}", path.display());
        let jwks = Jwks::open(
            JwksLocation::parse(&url, None).unwrap(),
            JwksSchedule::from_ms(3_600_000, 0, 0),
        )
        .unwrap();
        let validator = SecuredValidator {
            jwks: Arc::new(jwks),
            expected_audience: audience.iter().map(|a| a.to_string()).collect(),
            expected_issuer: issuer.map(str::to_string),
            clock_skew_seconds: 30,
            scope_claim: "scope".into(),
            sub_claim: "sub".into(),
        };
        (validator, dir)
    }

    #[test]
    fn accepts_tokens_signed_by_a_key_of_the_set() {
        let (v, _dir) = validator(&["kafka"], Some("https://issuer"));
        let claims = json!({"sub": "alice", "exp": EXP, "iat": EXP - 3600, "aud": "kafka",
                            "iss": "https://issuer", "scope": "produce"});
        let token = v
            .validate(&rs256(Some("rsa-1"), claims.clone()), NOW_MS)
            .unwrap();
        assert_eq!(token.principal, "alice");
        assert_eq!(token.expires_at_ms, EXP * 1000);
        assert_eq!(token.scope, vec!["produce".to_string()]);
        // No kid: every fitting key is tried. ES256 with the EC key.
        assert!(v.validate(&rs256(None, claims.clone()), NOW_MS).is_ok());
        let es = sign(
            Algorithm::ES256,
            "ec_pkcs8_der",
            Some("ec-1"),
            claims.clone(),
        );
        assert!(v.validate(&es, NOW_MS).is_ok());
        // A list audience with one expected value passes.
        let listed =
            json!({"sub": "alice", "exp": EXP, "aud": ["other", "kafka"], "iss": "https://issuer"});
        assert!(v.validate(&rs256(Some("rsa-1"), listed), NOW_MS).is_ok());
    }

    #[test]
    fn refuses_wrong_signatures_keys_and_claims() {
        let (v, _dir) = validator(&["kafka"], Some("https://issuer"));
        let good = json!({"sub": "alice", "exp": EXP, "aud": "kafka", "iss": "https://issuer"});
        let other_key = sign(
            Algorithm::RS256,
            "other_rsa_pkcs1_der",
            Some("rsa-1"),
            good.clone(),
        );
        assert!(v.validate(&other_key, NOW_MS).is_err(), "wrong signature");
        let unknown_kid = rs256(Some("nope"), good.clone());
        assert!(v.validate(&unknown_kid, NOW_MS).is_err(), "unknown kid");
        let enc_kid = sign(
            Algorithm::RS256,
            "other_rsa_pkcs1_der",
            Some("enc-1"),
            good.clone(),
        );
        assert!(v.validate(&enc_kid, NOW_MS).is_err(), "encryption key");
        // The RSA key's JWK says RS256: a PS256 token with it is refused.
        let ps = sign(
            Algorithm::PS256,
            "rsa_pkcs1_der",
            Some("rsa-1"),
            good.clone(),
        );
        assert!(
            v.validate(&ps, NOW_MS).is_err(),
            "algorithm the key does not name"
        );
        let tampered = {
            let token = rs256(Some("rsa-1"), good.clone());
            let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
            let forged =
                json!({"sub": "admin", "exp": EXP, "aud": "kafka", "iss": "https://issuer"});
            parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string());
            parts.join(".")
        };
        assert!(v.validate(&tampered, NOW_MS).is_err(), "tampered claims");
        for (what, claims) in [
            (
                "wrong audience",
                json!({"sub": "alice", "exp": EXP, "aud": "other", "iss": "https://issuer"}),
            ),
            (
                "no audience",
                json!({"sub": "alice", "exp": EXP, "iss": "https://issuer"}),
            ),
            (
                "wrong issuer",
                json!({"sub": "alice", "exp": EXP, "aud": "kafka", "iss": "https://evil"}),
            ),
            (
                "no issuer",
                json!({"sub": "alice", "exp": EXP, "aud": "kafka"}),
            ),
            (
                "expired",
                json!({"sub": "alice", "exp": 1_699_999_900, "aud": "kafka", "iss": "https://issuer"}),
            ),
            (
                "no exp",
                json!({"sub": "alice", "aud": "kafka", "iss": "https://issuer"}),
            ),
            (
                "no sub",
                json!({"exp": EXP, "aud": "kafka", "iss": "https://issuer"}),
            ),
            (
                "not yet",
                json!({"sub": "alice", "exp": EXP, "nbf": 1_700_000_100, "aud": "kafka", "iss": "https://issuer"}),
            ),
        ] {
            assert!(
                v.validate(&rs256(Some("rsa-1"), claims), NOW_MS).is_err(),
                "{what}"
            );
        }
        // Within the 30 s clock skew an expired token still passes.
        let just_expired =
            json!({"sub": "alice", "exp": 1_699_999_990, "aud": "kafka", "iss": "https://issuer"});
        assert!(v
            .validate(&rs256(Some("rsa-1"), just_expired), NOW_MS)
            .is_ok());
    }

    #[test]
    fn refuses_unsigned_hmac_and_garbage_tokens() {
        let (v, _dir) = validator(&[], None);
        // No audience expected: a token naming one is refused, one without passes.
        let plain = json!({"sub": "alice", "exp": EXP});
        assert!(v
            .validate(&rs256(Some("rsa-1"), plain.clone()), NOW_MS)
            .is_ok());
        let with_aud = json!({"sub": "alice", "exp": EXP, "aud": "kafka"});
        assert!(v.validate(&rs256(Some("rsa-1"), with_aud), NOW_MS).is_err());
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = engine.encode(plain.to_string());
        let none = format!("{}.{claims}.", engine.encode(br#"{"alg":"none"}"#));
        assert!(v.validate(&none, NOW_MS).is_err(), "alg none");
        let hmac = encode(
            &Header::new(Algorithm::HS256),
            &plain,
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(v.validate(&hmac, NOW_MS).is_err(), "HMAC");
        for garbage in [
            "",
            "a",
            "a.b",
            "a.b.c",
            "...",
            "eyJhbGciOiJSUzI1NiJ9.e30.AAAA",
        ] {
            assert!(v.validate(garbage, NOW_MS).is_err(), "{garbage}");
        }
    }

    #[test]
    fn reloads_the_set_for_a_new_key_id() {
        let (v, dir) = validator(&[], None);
        let rotated = rs256(Some("rsa-2"), json!({"sub": "alice", "exp": EXP}));
        assert!(v.validate(&rotated, NOW_MS).is_err());
        let mut set = fixtures()["jwks"].clone();
        set["keys"][0]["kid"] = json!("rsa-2");
        std::fs::write(dir.path().join("jwks.json"), set.to_string()).unwrap();
        // Retry backoff 0: the unknown kid reads the file again.
        assert!(v.validate(&rotated, NOW_MS).is_ok());
    }

    /// A one-route HTTP server on loopback answering every GET with the current `body`
    /// (an identity provider's JWKS endpoint), counting the requests.
    fn jwks_endpoint(
        body: Arc<std::sync::Mutex<String>>,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let text = body.lock().unwrap().clone();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        (url, served)
    }

    #[test]
    fn a_remote_set_is_refreshed_by_its_thread_when_a_key_id_is_unknown() {
        let body = Arc::new(std::sync::Mutex::new(fixtures()["jwks"].to_string()));
        let (url, served) = jwks_endpoint(body.clone());
        let jwks = Jwks::open(
            JwksLocation::parse(&url, None).unwrap(),
            JwksSchedule::from_ms(3_600_000, 0, 1_000),
        )
        .unwrap();
        let v = SecuredValidator {
            jwks: Arc::new(jwks),
            expected_audience: Vec::new(),
            expected_issuer: None,
            clock_skew_seconds: 30,
            scope_claim: "scope".into(),
            sub_claim: "sub".into(),
        };
        let current = rs256(Some("rsa-1"), json!({"sub": "alice", "exp": EXP}));
        assert!(v.validate(&current, NOW_MS).is_ok(), "read at open");
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 1);
        let mut set = fixtures()["jwks"].clone();
        set["keys"][0]["kid"] = json!("rsa-2");
        *body.lock().unwrap() = set.to_string();
        let rotated = rs256(Some("rsa-2"), json!({"sub": "alice", "exp": EXP}));
        // The login that names the new key id is refused (the set is read on the refresher
        // thread, not on the login path) and wakes the refresher; a later login gets in.
        assert!(v.validate(&rotated, NOW_MS).is_err());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while v.validate(&rotated, NOW_MS).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the set was not refreshed"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            v.validate(&current, NOW_MS).is_err(),
            "the old key id left the set"
        );
    }

    #[test]
    fn key_sets_are_bounded_and_checked() {
        assert!(super::super::jwks::parse(b"{}").is_err());
        assert!(super::super::jwks::parse(b"not json").is_err());
        assert!(super::super::jwks::parse(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).is_err());
        let many: Vec<Value> = (0..=super::super::jwks::JWKS_KEYS_MAX)
            .map(|_| fixtures()["jwks"]["keys"][0].clone())
            .collect();
        assert!(super::super::jwks::parse(json!({"keys": many}).to_string().as_bytes()).is_err());
        assert!(JwksLocation::parse("ftp://idp/jwks", None).is_err());
        assert!(JwksLocation::parse("file://relative", None).is_err());
        assert!(JwksLocation::parse("https://idp/jwks", Some(b"no certificate")).is_err());
        let schedule = JwksSchedule::from_ms(1, 0, 0);
        assert!(Jwks::open(
            JwksLocation::File("/nonexistent/jwks.json".into()),
            schedule
        )
        .is_err());
    }
}
