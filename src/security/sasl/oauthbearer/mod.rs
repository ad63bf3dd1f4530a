//! SASL/OAUTHBEARER (RFC 7628, KIP-255): the client's one message carries a bearer token,
//! which the listener's validator checks (Kafka's `OAuthBearerSaslServer`):
//!
//! - an unparsable message fails at once, with Kafka's generic wording (its parser errors
//!   never reach the client);
//! - a token the validator refuses is answered with RFC 7628's error JSON as a challenge
//!   (`{"status":"invalid_token"}`); the client acknowledges with a lone `\x01` and the
//!   exchange fails with that JSON as the message, as Kafka's `SaslAuthenticationException`;
//! - a valid token authenticates its principal claim; its `exp` bounds the session (KIP-368).
//!
//! Two validators, as in Kafka: [`unsecured`] (unsigned tokens, Kafka's default) and
//! [`jwt`] (signed tokens checked against a JWKS, KIP-768).

mod claims;
pub mod jwks;
pub mod jwt;
pub mod unsecured;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{AuthenticationFailed, SaslServer, Step};

/// Longest bearer token accepted. Kafka sets none; the frame is already bounded by
/// `sasl.server.max.receive.size`, and no real JWT comes near this.
pub const TOKEN_BYTES_MAX: usize = 64 * 1024;
/// Most key=value pairs (extensions) in one client message.
const KEY_VALUE_PAIRS_MAX: usize = 64;

/// What Kafka tells a client whose message does not parse (its `SaslException`s are never
/// shown, as they could reveal what the broker accepts).
const INVALID_CREDENTIALS: &str =
    "Authentication failed during authentication due to invalid credentials with SASL mechanism OAUTHBEARER";

/// The client's first message: GS2 header and key/value pairs (RFC 7628 §3.1).
#[derive(Debug, PartialEq, Eq)]
pub struct ClientInitialResponse {
    /// The GS2 `a=` authorization id, as sent (`=2C`/`=3D` escapes kept, as Kafka keeps
    /// them); empty when absent.
    pub authorization_id: String,
    /// The bearer token of `auth=Bearer <token>`.
    pub token: String,
    /// SASL extensions (KIP-342): the other pairs. Accepted and not used, as Kafka's
    /// default validators accept every extension.
    pub extensions: Vec<(String, String)>,
}

impl ClientInitialResponse {
    /// Parses `n,[a=<authzid>],\x01auth=Bearer <token>\x01[<key>=<value>\x01]*\x01` with
    /// Kafka's grammar (`OAuthBearerClientInitialResponse`); anything else is refused.
    pub fn parse(message: &[u8]) -> Result<ClientInitialResponse, &'static str> {
        let message = std::str::from_utf8(message).map_err(|_| "not UTF-8")?;
        let rest = message
            .strip_prefix("n,")
            .ok_or("no 'n,' GS2 header (channel binding is not supported)")?;
        let (authorization, rest) = rest.split_once(',').ok_or("GS2 header not terminated")?;
        let authorization_id = if authorization.is_empty() {
            String::new()
        } else {
            let name = authorization
                .strip_prefix("a=")
                .ok_or("bad GS2 authorization id")?;
            if !is_sasl_name(name) {
                return Err("bad GS2 authorization id");
            }
            name.to_string()
        };
        let pairs = rest
            .strip_prefix('\u{1}')
            .and_then(|r| r.strip_suffix('\u{1}'))
            .ok_or("key/value pairs not framed by \\x01")?;
        // Every pair ends with \x01: the text after the last one is empty.
        let mut fields: Vec<&str> = pairs.split('\u{1}').collect();
        if fields.pop() != Some("") || fields.is_empty() {
            return Err("no key/value pair");
        }
        if fields.len() > KEY_VALUE_PAIRS_MAX {
            return Err("too many key/value pairs");
        }
        let mut auth = None;
        let mut extensions: Vec<(String, String)> = Vec::new();
        for field in fields {
            let (key, value) = field.split_once('=').ok_or("key/value pair without '='")?;
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err("bad key");
            }
            if value.is_empty() || !value.bytes().all(is_value_byte) {
                return Err("bad value");
            }
            let duplicate = key == "auth" && auth.is_some()
                || extensions.iter().any(|(existing, _)| existing == key);
            if duplicate {
                return Err("duplicate key");
            }
            if key == "auth" {
                auth = Some(value);
            } else {
                extensions.push((key.to_string(), value.to_string()));
            }
        }
        let auth = auth.ok_or("'auth' not specified")?;
        let (scheme, token) = auth.split_once(' ').ok_or("invalid 'auth' format")?;
        let token = token.trim_start_matches(' ');
        let scheme_ok = !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let token_ok = !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !scheme_ok || !token_ok {
            return Err("invalid 'auth' format");
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err("invalid scheme");
        }
        if token.len() > TOKEN_BYTES_MAX {
            return Err("token too long");
        }
        Ok(ClientInitialResponse {
            authorization_id,
            token: token.to_string(),
            extensions,
        })
    }
}

/// RFC 7628's saslname: 0x01–0x7F except `=` and `,`, which come escaped as `=2C`/`=3D`.
fn is_sasl_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'=' if bytes[index..].starts_with(b"=2C") || bytes[index..].starts_with(b"=3D") => {
                index += 3;
            }
            b'=' | b',' | 0 | 0x80.. => return false,
            _ => index += 1,
        }
    }
    !bytes.is_empty()
}

/// RFC 7628's value: printable ASCII, space, tab, CR, LF.
fn is_value_byte(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte) || b" \t\r\n".contains(&byte)
}

/// A token a validator accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidToken {
    /// The principal claim (`sub` unless configured otherwise): the user ACLs name.
    pub principal: String,
    /// `exp`, in ms since the epoch: the session ends then (KIP-368).
    pub expires_at_ms: i64,
    /// The scope claim's values.
    pub scope: Vec<String>,
}

/// A refused token, as RFC 7628 §3.2.2 reports it to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRejected {
    /// `invalid_token` or `insufficient_scope`.
    pub status: &'static str,
    /// The scope that was required, for `insufficient_scope`.
    pub scope: Option<String>,
    /// Why, for the broker's log only.
    pub reason: String,
}

impl TokenRejected {
    pub fn invalid(reason: impl Into<String>) -> TokenRejected {
        TokenRejected {
            status: "invalid_token",
            scope: None,
            reason: reason.into(),
        }
    }

    /// The error JSON sent as the server's challenge, in Kafka's exact layout.
    pub fn json(&self) -> String {
        let mut json = format!("{{\"status\":\"{}\"", self.status);
        if let Some(scope) = &self.scope {
            // Scopes are RFC 6749 scope tokens (no quote or backslash), but a configured one
            // is escaped anyway so the JSON stays well formed.
            json.push_str(", \"scope\":");
            json.push_str(&serde_json::Value::String(scope.clone()).to_string());
        }
        json.push('}');
        json
    }
}

/// Checks a bearer token (Kafka's validator callback handlers).
pub trait TokenValidator: Send + Sync {
    /// Validates `token` at wall-clock time `now_ms` (ms since the epoch).
    fn validate(&self, token: &str, now_ms: i64) -> Result<ValidToken, TokenRejected>;
}

/// The wall clock in ms since the epoch: tokens carry absolute times.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

enum State {
    Initial,
    /// The error JSON was sent; the client's `\x01` ends the exchange.
    ErrorSent(String),
    Done,
}

/// One OAUTHBEARER exchange.
pub struct OAuthBearerServer {
    validator: Option<Arc<dyn TokenValidator>>,
    state: State,
    expires_at_ms: Option<i64>,
}

impl OAuthBearerServer {
    /// `validator` None (OAUTHBEARER not configured on the listener) refuses every token.
    pub fn new(validator: Option<Arc<dyn TokenValidator>>) -> OAuthBearerServer {
        OAuthBearerServer {
            validator,
            state: State::Initial,
            expires_at_ms: None,
        }
    }
}

impl SaslServer for OAuthBearerServer {
    fn evaluate(&mut self, message: &[u8]) -> Result<Step, AuthenticationFailed> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Done => Err(AuthenticationFailed::new(
                "Unexpected SASL token after OAUTHBEARER authentication completed",
            )),
            // The client's acknowledgement of our error (RFC 7628 §3.2.3): Kafka fails with
            // the error JSON as the message. Anything else after an error fails the same
            // way; Kafka would start over, which no client does.
            State::ErrorSent(json) => Err(AuthenticationFailed::new(json)),
            State::Initial => {
                let response = ClientInitialResponse::parse(message).map_err(|reason| {
                    tracing::debug!(reason, "invalid OAUTHBEARER client message");
                    AuthenticationFailed::new(INVALID_CREDENTIALS)
                })?;
                let validated = match &self.validator {
                    Some(validator) => validator.validate(&response.token, now_ms()),
                    None => Err(TokenRejected::invalid("no validator on this listener")),
                };
                let token = match validated {
                    Ok(token) => token,
                    Err(rejected) => {
                        tracing::debug!(reason = rejected.reason, "OAUTHBEARER token refused");
                        let json = rejected.json();
                        self.state = State::ErrorSent(json.clone());
                        return Ok(Step::Challenge(json.into_bytes()));
                    }
                };
                if !response.authorization_id.is_empty()
                    && response.authorization_id != token.principal
                {
                    return Err(AuthenticationFailed::new(format!(
                        "Authentication failed: Client requested an authorization id ({}) that is different from the token's principal name ({})",
                        response.authorization_id, token.principal
                    )));
                }
                self.expires_at_ms = Some(token.expires_at_ms);
                Ok(Step::Complete {
                    user: token.principal,
                    response: Vec::new(),
                })
            }
        }
    }

    fn credential_expires_at_ms(&self) -> Option<i64> {
        self.expires_at_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(token: &str) -> Vec<u8> {
        format!("n,,\u{1}auth=Bearer {token}\u{1}\u{1}").into_bytes()
    }

    #[test]
    fn parses_kafkas_client_message() {
        let parsed = ClientInitialResponse::parse(
            b"n,a=alice,\x01auth=Bearer abc.def-_.\x01traceId=123 x=y\x01\x01",
        )
        .unwrap();
        assert_eq!(parsed.authorization_id, "alice");
        assert_eq!(parsed.token, "abc.def-_.");
        assert_eq!(
            parsed.extensions,
            vec![("traceId".to_string(), "123 x=y".to_string())]
        );
        let bare = ClientInitialResponse::parse(&message("t")).unwrap();
        assert_eq!(bare.authorization_id, "");
        assert_eq!(bare.token, "t");
        assert!(ClientInitialResponse::parse(b"n,,\x01auth=bearer   t\x01\x01").is_ok());
    }

    #[test]
    fn refuses_garbage() {
        let too_long = "a".repeat(TOKEN_BYTES_MAX + 1);
        for bad in [
            &b""[..],
            b"\x01",
            b"n,,",
            b"n,,\x01\x01",
            b"y,,\x01auth=Bearer t\x01\x01",
            b"p=tls-unique,,\x01auth=Bearer t\x01\x01",
            b"n,,auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"n,,\x01auth=Basic t\x01\x01",
            b"n,,\x01auth=Bearer\x01\x01",
            b"n,,\x01auth=Bearer t t\x01\x01",
            b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01",
            b"n,,\x01x=1\x01\x01",
            b"n,,\x01auth=Bearer t\x01bad key=1\x01\x01",
            b"n,,\x01auth=Bearer t\x01k=\x01\x01",
            b"n,,\x01auth=Bearer t\x01k=\x00\x01\x01",
            b"n,a=x=y,\x01auth=Bearer t\x01\x01",
            b"n,a=,\x01auth=Bearer t\x01\x01",
            b"n,b=x,\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\xff\x01\x01",
            &message(&too_long),
        ] {
            assert!(
                ClientInitialResponse::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let many: String = (0..=KEY_VALUE_PAIRS_MAX).map(|_| "k=v\u{1}").collect();
        let crowded = format!("n,,\u{1}auth=Bearer t\u{1}{many}\u{1}");
        assert!(ClientInitialResponse::parse(crowded.as_bytes()).is_err());
    }

    struct Fixed(Result<ValidToken, TokenRejected>);

    impl TokenValidator for Fixed {
        fn validate(&self, _: &str, _: i64) -> Result<ValidToken, TokenRejected> {
            self.0.clone()
        }
    }

    fn server(result: Result<ValidToken, TokenRejected>) -> OAuthBearerServer {
        OAuthBearerServer::new(Some(Arc::new(Fixed(result))))
    }

    fn alice() -> ValidToken {
        ValidToken {
            principal: "alice".into(),
            expires_at_ms: 42_000,
            scope: Vec::new(),
        }
    }

    #[test]
    fn a_valid_token_authenticates_its_principal() {
        let mut exchange = server(Ok(alice()));
        assert_eq!(
            exchange.evaluate(&message("t")),
            Ok(Step::Complete {
                user: "alice".into(),
                response: Vec::new()
            })
        );
        assert_eq!(exchange.credential_expires_at_ms(), Some(42_000));
        assert!(exchange.evaluate(&message("t")).is_err());
        // An authorization id must name the token's principal.
        let mut other = server(Ok(alice()));
        assert!(other
            .evaluate(b"n,a=bob,\x01auth=Bearer t\x01\x01")
            .is_err());
        let mut same = server(Ok(alice()));
        assert!(same
            .evaluate(b"n,a=alice,\x01auth=Bearer t\x01\x01")
            .is_ok());
    }

    #[test]
    fn a_refused_token_gets_the_error_json_then_fails_with_it() {
        let mut exchange = server(Err(TokenRejected::invalid("expired")));
        assert_eq!(
            exchange.evaluate(&message("t")),
            Ok(Step::Challenge(br#"{"status":"invalid_token"}"#.to_vec()))
        );
        assert_eq!(
            exchange.evaluate(b"\x01"),
            Err(AuthenticationFailed::new(r#"{"status":"invalid_token"}"#))
        );
        assert_eq!(exchange.credential_expires_at_ms(), None);
        let scope = TokenRejected {
            status: "insufficient_scope",
            scope: Some("read write".into()),
            reason: String::new(),
        };
        assert_eq!(
            scope.json(),
            r#"{"status":"insufficient_scope", "scope":"read write"}"#
        );
        // Garbage fails at once with Kafka's generic message; no validator refuses all.
        assert_eq!(
            server(Ok(alice())).evaluate(b"garbage"),
            Err(AuthenticationFailed::new(INVALID_CREDENTIALS))
        );
        let mut unconfigured = OAuthBearerServer::new(None);
        assert!(matches!(
            unconfigured.evaluate(&message("t")),
            Ok(Step::Challenge(_))
        ));
    }
}
