//! SASL mechanisms as pure state machines (Kafka's `SaslServer`s): each takes the client's
//! tokens in order and answers a challenge, a completion with the authenticated user, or a
//! failure. No I/O here: the connection's authenticator (`server::authenticator`) frames the
//! tokens in SaslAuthenticate and decides what a failure does to the connection.

pub mod jaas;
pub mod oauthbearer;
pub mod plain;
pub mod scram;

use std::sync::Arc;

use super::{CredentialStore, ScramMechanism};

/// The mechanisms dlog serves, by their SASL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
    OAuthBearer,
}

impl Mechanism {
    /// The mechanism of a SASL name; None for one dlog does not serve (GSSAPI).
    pub fn parse(name: &str) -> Option<Mechanism> {
        match name.trim() {
            "PLAIN" => Some(Mechanism::Plain),
            "SCRAM-SHA-256" => Some(Mechanism::Scram(ScramMechanism::Sha256)),
            "SCRAM-SHA-512" => Some(Mechanism::Scram(ScramMechanism::Sha512)),
            "OAUTHBEARER" => Some(Mechanism::OAuthBearer),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(scram) => scram.sasl_name(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// What a mechanism answers to one client token.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge and wait for the client's next token.
    Challenge(Vec<u8>),
    /// Authenticated as `user`; `response` is the mechanism's last message (may be empty).
    Complete { user: String, response: Vec<u8> },
}

/// A refused authentication, with the message the client is told (Kafka's wording, never
/// saying whether the user exists).
#[derive(Debug, PartialEq, Eq)]
pub struct AuthenticationFailed(pub String);

impl AuthenticationFailed {
    pub fn new(message: impl Into<String>) -> AuthenticationFailed {
        AuthenticationFailed(message.into())
    }
}

/// One authentication exchange of one mechanism.
pub trait SaslServer: Send {
    fn evaluate(&mut self, token: &[u8]) -> Result<Step, AuthenticationFailed>;

    /// When the credential just authenticated stops being valid (ms since the epoch), for
    /// mechanisms whose credentials expire (OAUTHBEARER's token `exp`): the session may not
    /// outlive it (KIP-368). None: the credential does not expire.
    fn credential_expires_at_ms(&self) -> Option<i64> {
        None
    }
}

/// Where a listener's mechanisms find their users: PLAIN's from the JAAS config, SCRAM's
/// from the credential store (the replicated metadata), OAUTHBEARER's in the token its
/// validator accepts (None when OAUTHBEARER is not enabled on the listener).
#[derive(Clone)]
pub struct Users {
    pub plain: Arc<jaas::PlainUsers>,
    pub scram: Arc<dyn CredentialStore>,
    pub oauthbearer: Option<Arc<dyn oauthbearer::TokenValidator>>,
}

/// A fresh exchange of `mechanism`.
pub fn server(mechanism: Mechanism, users: &Users) -> Box<dyn SaslServer> {
    match mechanism {
        Mechanism::Plain => Box::new(plain::PlainServer::new(users.plain.clone())),
        Mechanism::Scram(scram) => Box::new(scram::ScramServer::new(scram, users.scram.clone())),
        Mechanism::OAuthBearer => Box::new(oauthbearer::OAuthBearerServer::new(
            users.oauthbearer.clone(),
        )),
    }
}
