//! The SASL gate of a connection (Kafka's `SaslServerAuthenticator`): on a SASL listener only
//! ApiVersions, SaslHandshake (API 17) and SaslAuthenticate (API 36) are answered until the
//! client has authenticated; any other request closes the connection, as Kafka does. A failed
//! authentication is answered with SASL_AUTHENTICATION_FAILED (58) and the connection closes.
//! Frames before authentication are bounded by `sasl.server.max.receive.size`.
//!
//! Sessions (KIP-368): with `connections.max.reauth.ms` set, SaslAuthenticate v1+ tells the
//! client its `session_lifetime_ms`; the client re-authenticates on the live connection
//! (SaslHandshake + SaslAuthenticate again, same principal and mechanism), and a connection
//! that sends anything else past its session's end is closed. A credential that expires (an
//! OAUTHBEARER token) ends the session at its expiry even without that setting, as in Kafka.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::protocol::{self, encode_response, ResponseFrame};
use crate::security::listener::SaslSettings;
use crate::security::sasl::{self, Mechanism, SaslServer, Step};
use crate::security::Principal;

/// What the connection does with a frame after the gate looked at it.
pub enum Verdict {
    /// Not the gate's: dispatch it as usual.
    Pass,
    /// Answer with this response and go on.
    Answer(ResponseFrame),
    /// Authentication completed: answer, and from now on requests run as `principal`.
    Authenticated(ResponseFrame, Principal),
    /// Answer, then close the connection (`reason` is logged).
    AnswerAndClose(ResponseFrame, String),
    /// Close without answering.
    Close(String),
}

enum State {
    /// Waiting for SaslHandshake (ApiVersions may come first).
    Handshake,
    /// Mechanism chosen; SaslAuthenticate tokens go to `server`.
    Authenticate {
        mechanism: Mechanism,
        server: Box<dyn SaslServer>,
    },
    Authenticated,
}

/// The authenticated session, kept across re-authentications.
struct Session {
    principal: Principal,
    mechanism: Mechanism,
    /// When the session ends (`connections.max.reauth.ms` after authentication); None = never.
    expires_at: Option<Instant>,
}

pub struct Authenticator {
    settings: Arc<SaslSettings>,
    listener: String,
    state: State,
    session: Option<Session>,
}

fn sasl_handshake_response(
    version: i16,
    correlation_id: i32,
    error: Option<ResponseError>,
    mechanisms: &[Mechanism],
) -> ResponseFrame {
    let body = SaslHandshakeResponse::default()
        .with_error_code(error.map_or(0, |e| e.code()))
        .with_mechanisms(
            mechanisms
                .iter()
                .map(|m| StrBytes::from_static_str(m.name()))
                .collect(),
        );
    encode_response(ApiKey::SaslHandshake, version, correlation_id, &body)
}

fn sasl_authenticate_response(
    version: i16,
    correlation_id: i32,
    error: Option<(ResponseError, String)>,
    auth_bytes: Vec<u8>,
    session_lifetime_ms: i64,
) -> ResponseFrame {
    let (code, message) = match error {
        Some((error, message)) => (error.code(), Some(StrBytes::from_string(message))),
        None => (0, None),
    };
    let body = SaslAuthenticateResponse::default()
        .with_error_code(code)
        .with_error_message(message)
        .with_auth_bytes(Bytes::from(auth_bytes))
        .with_session_lifetime_ms(session_lifetime_ms);
    encode_response(ApiKey::SaslAuthenticate, version, correlation_id, &body)
}

/// SaslHandshake / SaslAuthenticate on a listener without SASL: Kafka answers
/// ILLEGAL_SASL_STATE.
pub fn refuse_without_sasl(frame: &Bytes) -> Verdict {
    let Ok(request) = protocol::parse_request(frame.clone()) else {
        return Verdict::Close("malformed SASL request".into());
    };
    let correlation_id = request.header.correlation_id;
    let response = match request.api_key {
        ApiKey::SaslHandshake => sasl_handshake_response(
            request.version,
            correlation_id,
            Some(ResponseError::IllegalSaslState),
            &[],
        ),
        _ => sasl_authenticate_response(
            request.version,
            correlation_id,
            Some((
                ResponseError::IllegalSaslState,
                "SASL is not enabled on this listener".into(),
            )),
            Vec::new(),
            0,
        ),
    };
    Verdict::Answer(response)
}

/// How long a session lasts (KIP-368, Kafka's `ReauthInfo`): `connections.max.reauth.ms`
/// when set (> 0), cut short by the credential's own expiry (an OAUTHBEARER token's `exp`);
/// never negative. None: the session never ends (no limit, no expiring credential).
fn session_lifetime_ms(
    reauthentication_ms: i64,
    credential_expires_at_ms: Option<i64>,
    now_ms: i64,
) -> Option<i64> {
    let credential_ms = credential_expires_at_ms.map(|end| end.saturating_sub(now_ms));
    let configured_ms = (reauthentication_ms > 0).then_some(reauthentication_ms);
    let lifetime_ms = match (credential_ms, configured_ms) {
        (None, None) => return None,
        (Some(credential), None) => credential,
        (None, Some(configured)) => configured,
        (Some(credential), Some(configured)) => credential.min(configured),
    };
    Some(lifetime_ms.max(0))
}

/// The api key of a frame, if it has one dlog knows.
pub fn api_key_of(frame: &[u8]) -> Option<ApiKey> {
    let code = i16::from_be_bytes([*frame.first()?, *frame.get(1)?]);
    ApiKey::try_from(code).ok()
}

impl Authenticator {
    pub fn new(settings: Arc<SaslSettings>, listener: &str) -> Authenticator {
        Authenticator {
            settings,
            listener: listener.to_string(),
            state: State::Handshake,
            session: None,
        }
    }

    /// The largest frame this connection may send now: small until authenticated.
    pub fn frame_size_bytes_max(&self, authenticated_max: usize) -> usize {
        match self.state {
            State::Authenticated => authenticated_max,
            _ => self.settings.receive_size_bytes_max.min(authenticated_max),
        }
    }

    pub fn on_frame(&mut self, frame: &Bytes) -> Verdict {
        let api_key = api_key_of(frame);
        let session_over = self
            .session
            .as_ref()
            .and_then(|s| s.expires_at)
            .is_some_and(|end| Instant::now() >= end);
        match (&self.state, api_key) {
            // Re-authentication starts with a handshake; anything else past the session's
            // end closes the connection (Kafka's expired-connection kill).
            (State::Authenticated, Some(ApiKey::SaslHandshake)) => self.handshake(frame),
            (State::Authenticated, _) if session_over => {
                crate::metrics::expired_session_closed(&self.listener);
                Verdict::Close("SASL session expired".into())
            }
            (State::Authenticated, Some(ApiKey::SaslAuthenticate)) => {
                Verdict::Close("SaslAuthenticate without a handshake".into())
            }
            (State::Authenticated, _) => Verdict::Pass,
            (State::Handshake, Some(ApiKey::ApiVersions)) => Verdict::Pass,
            (State::Handshake, Some(ApiKey::SaslHandshake)) => self.handshake(frame),
            (State::Authenticate { .. }, Some(ApiKey::SaslAuthenticate)) => {
                self.authenticate(frame)
            }
            (_, other) => Verdict::Close(format!(
                "unexpected request {other:?} during SASL authentication"
            )),
        }
    }

    fn handshake(&mut self, frame: &Bytes) -> Verdict {
        let request = match protocol::parse_request(frame.clone()) {
            Ok(request) => request,
            Err(error) => return Verdict::Close(format!("bad SaslHandshake: {error}")),
        };
        let (version, correlation_id) = (request.version, request.header.correlation_id);
        let mut body = request.body;
        let handshake: SaslHandshakeRequest = match protocol::decode(&mut body, version) {
            Ok(handshake) => handshake,
            Err(error) => return Verdict::Close(format!("bad SaslHandshake: {error}")),
        };
        let enabled = &self.settings.mechanisms;
        let requested = Mechanism::parse(&handshake.mechanism).filter(|m| enabled.contains(m));
        let Some(mechanism) = requested else {
            let response = sasl_handshake_response(
                version,
                correlation_id,
                Some(ResponseError::UnsupportedSaslMechanism),
                enabled,
            );
            return Verdict::AnswerAndClose(
                response,
                format!("unsupported SASL mechanism {}", &*handshake.mechanism),
            );
        };
        if let Some(session) = &self.session {
            if session.mechanism != mechanism {
                return Verdict::Close("re-authentication may not change the mechanism".into());
            }
        }
        // v0 handshakes are followed by raw tokens, not SaslAuthenticate; no client in the
        // matrix needs that framing, so those clients see a closed connection at their token.
        self.state = State::Authenticate {
            mechanism,
            server: sasl::server(mechanism, &self.settings.users),
        };
        Verdict::Answer(sasl_handshake_response(
            version,
            correlation_id,
            None,
            enabled,
        ))
    }

    fn authenticate(&mut self, frame: &Bytes) -> Verdict {
        let request = match protocol::parse_request(frame.clone()) {
            Ok(request) => request,
            Err(error) => return Verdict::Close(format!("bad SaslAuthenticate: {error}")),
        };
        let (version, correlation_id) = (request.version, request.header.correlation_id);
        let mut body = request.body;
        let authenticate: SaslAuthenticateRequest = match protocol::decode(&mut body, version) {
            Ok(authenticate) => authenticate,
            Err(error) => return Verdict::Close(format!("bad SaslAuthenticate: {error}")),
        };
        let State::Authenticate { mechanism, server } = &mut self.state else {
            unreachable!("authenticate only in the Authenticate state");
        };
        let mechanism = *mechanism;
        let fail = |listener: &str, message: String| {
            crate::metrics::authentication(listener, mechanism.name(), false);
            let response = sasl_authenticate_response(
                version,
                correlation_id,
                Some((ResponseError::SaslAuthenticationFailed, message.clone())),
                Vec::new(),
                0,
            );
            Verdict::AnswerAndClose(response, message)
        };
        match server.evaluate(&authenticate.auth_bytes) {
            Ok(Step::Challenge(challenge)) => Verdict::Answer(sasl_authenticate_response(
                version,
                correlation_id,
                None,
                challenge,
                0,
            )),
            Ok(Step::Complete { user, response }) => {
                let principal = Principal {
                    principal_type: "User".to_string(),
                    name: user,
                };
                if let Some(session) = &self.session {
                    if session.principal != principal {
                        return fail(
                            &self.listener,
                            "Authentication failed: re-authentication changed the principal".into(),
                        );
                    }
                }
                crate::metrics::authentication(&self.listener, mechanism.name(), true);
                tracing::debug!(listener = self.listener, mechanism = mechanism.name(), %principal, "SASL authentication succeeded");
                let lifetime_ms = session_lifetime_ms(
                    self.settings.reauthentication_ms,
                    server.credential_expires_at_ms(),
                    crate::security::sasl::oauthbearer::now_ms(),
                );
                let expires_at =
                    lifetime_ms.map(|ms| Instant::now() + Duration::from_millis(ms as u64));
                self.session = Some(Session {
                    principal: principal.clone(),
                    mechanism,
                    expires_at,
                });
                self.state = State::Authenticated;
                let lifetime_ms = lifetime_ms.unwrap_or(0);
                Verdict::Authenticated(
                    sasl_authenticate_response(
                        version,
                        correlation_id,
                        None,
                        response,
                        lifetime_ms,
                    ),
                    principal,
                )
            }
            Err(failed) => fail(&self.listener, failed.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::session_lifetime_ms;

    #[test]
    fn a_token_expiry_bounds_the_session() {
        assert_eq!(session_lifetime_ms(0, None, 1_000), None);
        assert_eq!(session_lifetime_ms(60_000, None, 1_000), Some(60_000));
        assert_eq!(session_lifetime_ms(0, Some(31_000), 1_000), Some(30_000));
        assert_eq!(
            session_lifetime_ms(10_000, Some(31_000), 1_000),
            Some(10_000)
        );
        assert_eq!(
            session_lifetime_ms(60_000, Some(31_000), 1_000),
            Some(30_000)
        );
        // Expired by the time authentication ended: a zero-length session.
        assert_eq!(session_lifetime_ms(0, Some(500), 1_000), Some(0));
    }
}
