//! The TCP listener: accepts connections up to `max.connections` and serves each on its own
//! task until shutdown.

pub mod connection;
pub mod dispatch;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::node::Node;

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

/// Accepts connections until the broker's shutdown flag flips.
pub async fn run(broker: Arc<Node>, listener: TcpListener) {
    run_listener(broker, listener, ListenerKind::Broker).await
}

/// Accepts connections for a listener of `kind` until the broker's shutdown flag flips.
pub async fn run_listener(broker: Arc<Node>, listener: TcpListener, kind: ListenerKind) {
    let permits = Arc::new(Semaphore::new(
        broker.config.connections_max.min(Semaphore::MAX_PERMITS),
    ));
    let mut shutdown = broker.shutdown.subscribe();
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
            _ = shutdown.changed() => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "max.connections reached; closing new connection");
            crate::metrics::connection_refused_max_connections();
            drop(stream);
            continue;
        };
        let broker = broker.clone();
        let counted = crate::metrics::connection_accepted();
        tokio::spawn(async move {
            connection::serve(broker, stream, kind).await;
            drop(counted);
            drop(permit);
        });
    }
}
