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

    /// The client host Kafka records for group members: the peer's IP address.
    pub fn client_host(&self) -> String {
        self.peer
            .map(|peer| format!("/{}", peer.ip()))
            .unwrap_or_else(|| "/unknown".to_string())
    }
}
