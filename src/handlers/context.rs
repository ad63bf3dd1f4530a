//! The request context (Kafka's `RequestContext`): the facts of the connection a request came
//! on, built once per connection by the server and passed to every handler, so that no
//! handler reads task-locals or reaches for the socket.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::SecurityProtocol;
use crate::security::{AllowAll, Authorizer, Operation, Principal, Resource};

pub struct RequestContext {
    /// The client's address; None when the socket could not say.
    pub peer: Option<SocketAddr>,
    /// The listener the connection arrived on (Kafka's listener name, e.g. `PLAINTEXT`).
    pub listener: String,
    /// The listener's security protocol (Kafka's `RequestContext.securityProtocol`).
    pub security_protocol: SecurityProtocol,
    pub principal: Principal,
    authorizer: Arc<dyn Authorizer>,
    /// When the connection may be read from again after a quota throttle; shared by every
    /// context of the connection (it outlives re-authentication).
    mute: Arc<ConnectionMute>,
    /// Requests of this connection count against no request or mutation quota: Kafka exempts
    /// inter-broker and controller traffic (here: the controller listener's connections).
    pub quota_exempt: bool,
}

/// Kafka's muted channel (KIP-219): a client over its quota is answered with a throttle time
/// and the connection reads no further request until it passed. The handler that measured the
/// rate sets it; the connection's read loop waits for it, asynchronously.
#[derive(Debug, Default)]
pub struct ConnectionMute {
    until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl ConnectionMute {
    /// Mutes for `throttle_ms` from now (a longer mute already set stays).
    pub fn mute_for(&self, throttle_ms: u64) {
        if throttle_ms == 0 {
            return;
        }
        let until = tokio::time::Instant::now() + std::time::Duration::from_millis(throttle_ms);
        let mut current = self.until.lock().expect("mute lock");
        if current.is_none_or(|current| current < until) {
            *current = Some(until);
        }
    }

    /// Until when reading waits, if it does; a past mute is cleared.
    pub fn muted_until(&self) -> Option<tokio::time::Instant> {
        let mut current = self.until.lock().expect("mute lock");
        if current.is_some_and(|until| until <= tokio::time::Instant::now()) {
            *current = None;
        }
        *current
    }
}

impl RequestContext {
    pub fn new(
        peer: Option<SocketAddr>,
        listener: impl Into<String>,
        principal: Principal,
        authorizer: Arc<dyn Authorizer>,
    ) -> RequestContext {
        RequestContext {
            peer,
            listener: listener.into(),
            security_protocol: SecurityProtocol::Plaintext,
            principal,
            authorizer,
            mute: Arc::default(),
            quota_exempt: false,
        }
    }

    /// A connection of `listener` (with its protocol) whose client is `principal` (from its
    /// TLS certificate, or ANONYMOUS until SASL authenticates it), checked by `authorizer`.
    pub fn authenticated(
        peer: Option<SocketAddr>,
        listener: impl Into<String>,
        security_protocol: SecurityProtocol,
        principal: Principal,
        authorizer: Arc<dyn Authorizer>,
    ) -> RequestContext {
        RequestContext {
            peer,
            listener: listener.into(),
            security_protocol,
            principal,
            authorizer,
            mute: Arc::default(),
            quota_exempt: false,
        }
    }

    /// The same connection after SASL authenticated `principal`.
    pub fn with_principal(&self, principal: Principal) -> RequestContext {
        RequestContext {
            peer: self.peer,
            listener: self.listener.clone(),
            security_protocol: self.security_protocol,
            principal,
            authorizer: self.authorizer.clone(),
            mute: self.mute.clone(),
            quota_exempt: self.quota_exempt,
        }
    }

    /// An anonymous connection with every operation allowed (tests, in-process callers).
    pub fn anonymous(peer: Option<SocketAddr>, listener: impl Into<String>) -> RequestContext {
        RequestContext::new(peer, listener, Principal::anonymous(), Arc::new(AllowAll))
    }

    /// Whether this request's principal, from this client's host, may perform `operation`
    /// on `resource`. Every refusal is counted.
    pub fn authorized(&self, operation: Operation, resource: Resource<'_>) -> bool {
        let host = self.peer.map(|peer| peer.ip());
        let allowed = self
            .authorizer
            .authorize(&self.principal, host, operation, resource);
        if !allowed {
            metrics::counter!(
                crate::metrics::AUTHORIZATION_DENIALS,
                "operation" => operation.name(),
                "resource" => resource.type_name()
            )
            .increment(1);
        }
        allowed
    }

    /// Kafka's `authorizeByResourceType`: `operation` on at least one resource of
    /// `resource`'s type (its name is ignored).
    pub fn authorized_any(&self, operation: Operation, resource: Resource<'_>) -> bool {
        let host = self.peer.map(|peer| peer.ip());
        self.authorizer
            .authorize_any(&self.principal, host, operation, resource)
    }

    /// Whether any check may be refused (false without an authorizer): callers skip work
    /// done only to filter.
    pub fn enforces_authorization(&self) -> bool {
        self.authorizer.enforces()
    }

    /// The connection's mute, which a handler that throttled this client sets.
    pub fn mute(&self) -> &Arc<ConnectionMute> {
        &self.mute
    }

    /// The user Kafka's quotas know this client by: the principal's name (ANONYMOUS
    /// unauthenticated, so `--entity-default` users quotas apply to it too).
    pub fn quota_user(&self) -> &str {
        &self.principal.name
    }

    /// The client host Kafka records for group members: the peer's IP address.
    pub fn client_host(&self) -> String {
        self.peer
            .map(|peer| format!("/{}", peer.ip()))
            .unwrap_or_else(|| "/unknown".to_string())
    }
}
