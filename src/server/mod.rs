//! The TCP listener: accepts connections up to `max.connections` and serves each on its own
//! task until shutdown; a listener returns only once its connections have finished (their
//! in-flight requests answered), so the node closes its logs after the last append.

pub mod authenticator;
pub mod connection;
pub mod connection_quotas;
pub mod dispatch;
pub mod request_memory;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::node::Node;
use crate::security::listener::ListenerSecurity;

/// Which APIs a listener serves: the client-facing table, or the controller listener's
/// (quorum RPCs, DescribeQuorum, requests forwarded to the active controller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    Broker,
    Controller,
}

impl ListenerKind {
    /// Kafka's default listener names for the two kinds.
    pub fn listener_name(self) -> &'static str {
        match self {
            ListenerKind::Broker => "PLAINTEXT",
            ListenerKind::Controller => "CONTROLLER",
        }
    }
}

/// Accepts connections on a PLAINTEXT client listener until the broker's shutdown flag flips.
pub async fn run(broker: Arc<Node>, listener: TcpListener) {
    let security = Arc::new(ListenerSecurity::plaintext(plaintext_listener(
        &listener,
        ListenerKind::Broker,
    )));
    run_listener(broker, listener, ListenerKind::Broker, security).await
}

/// The description of an unsecured listener bound at `listener`'s address.
pub fn plaintext_listener(
    listener: &TcpListener,
    kind: ListenerKind,
) -> crate::config::ListenerConfig {
    let address = listener
        .local_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    crate::config::ListenerConfig {
        name: kind.listener_name().to_string(),
        protocol: crate::config::SecurityProtocol::Plaintext,
        bind_address: address,
        advertised_host: address.ip().to_string(),
        advertised_port: address.port(),
        controller: kind == ListenerKind::Controller,
    }
}

/// Longest wait at shutdown for connections to answer their in-flight requests.
const CONNECTIONS_DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(3);

/// Accepts connections for a listener of `kind` until the broker's shutdown flag flips.
pub async fn run_listener(
    broker: Arc<Node>,
    listener: TcpListener,
    kind: ListenerKind,
    security: Arc<ListenerSecurity>,
) {
    let permits = Arc::new(Semaphore::new(
        broker.config.connections_max.min(Semaphore::MAX_PERMITS),
    ));
    let mut shutdown = broker.shutdown.subscribe();
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            // Finished connections are reaped as they end, so the set stays bounded by
            // max.connections.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = shutdown.changed() => break,
        };
        let Some(per_ip) = broker.connection_quotas.try_open(peer.ip()) else {
            tracing::warn!(%peer, "max.connections.per.ip reached; closing new connection");
            crate::metrics::connection_refused_per_ip();
            drop(stream);
            continue;
        };
        // KIP-612's per-address connection_creation_rate (client quotas on ip entities); the
        // controller listener is the quorum's own traffic and is not limited.
        if kind != ListenerKind::Controller
            && !broker.quotas.record_connection(
                &broker.image().client_quotas,
                peer.ip(),
                crate::clock::now_ms().max(0) as u64,
            )
        {
            tracing::debug!(%peer, "connection_creation_rate exceeded; closing new connection");
            crate::metrics::connection_refused_creation_rate();
            drop(stream);
            continue;
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "max.connections reached; closing new connection");
            crate::metrics::connection_refused_max_connections();
            drop(stream);
            continue;
        };
        let (broker, security) = (broker.clone(), security.clone());
        let counted = crate::metrics::connection_accepted();
        connections.spawn(async move {
            connection::serve(broker, stream, kind, security).await;
            drop(counted);
            drop(permit);
            drop(per_ip);
        });
    }
    // Every connection stops reading at shutdown and answers what it has in flight; one
    // that cannot finish in time (a peer not reading its responses) is cut off.
    let drained = tokio::time::timeout(CONNECTIONS_DRAIN_MAX, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "connections still busy at shutdown; closing them"
        );
        connections.shutdown().await;
    }
}
