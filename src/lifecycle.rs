//! The broker's side of registration (Kafka's BrokerLifecycleManager): register with the
//! active controller, heartbeat every `broker.heartbeat.interval.ms`, register again when the
//! controller forgot us (a stale epoch), and shut down in a controlled way: ask to be fenced
//! and wait (boundedly) until the controller moved our leaderships to other in-sync replicas,
//! so that clients are redirected before the listener closes. The active controller also
//! fences brokers whose heartbeats stopped.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::broker_registration_request::Listener;
use kafka_protocol::messages::{BrokerHeartbeatRequest, BrokerId, BrokerRegistrationRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::controller::records::BrokerEndpoint;
use crate::controller::registration::{Heartbeat, HeartbeatReply, Registration};
use crate::controller::ApiError;
use crate::node::Node;

/// Kafka's security protocol id of PLAINTEXT.
const SECURITY_PROTOCOL_PLAINTEXT: i16 = 0;
/// Versions sent to the controller (Kafka 4.x brokers send these).
const REGISTRATION_VERSION: i16 = 4;
const HEARTBEAT_VERSION: i16 = 1;
/// Registration retry interval while no controller has accepted us yet.
const REGISTRATION_RETRY_MS: u64 = 200;
/// How long a controlled shutdown waits for the controller to move leadership away before
/// the broker stops anyway (Kafka's broker waits for its controller similarly, boundedly).
const CONTROLLED_SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// Interval of the shutdown heartbeats while waiting.
const CONTROLLED_SHUTDOWN_RETRY: Duration = Duration::from_millis(100);

fn remote_error(code: i16, what: &str) -> ApiError {
    let error = ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError);
    ApiError::new(error, format!("{what}: {error:?}"))
}

/// This process's registration state.
#[derive(Debug)]
pub struct BrokerLifecycle {
    /// New at every start: tells a restart apart from a retried registration.
    pub incarnation_id: Uuid,
    /// -1 until registered.
    epoch: AtomicI64,
    /// Set once a controlled shutdown began: every heartbeat from then on asks to shut down,
    /// so that a periodic one cannot unfence the broker again.
    shutting_down: AtomicBool,
    /// True once the controller unfenced this broker: its metadata has caught up with the
    /// quorum as of its registration (Kafka's RUNNING state). Clients are served from then on.
    running: tokio::sync::watch::Sender<bool>,
}

impl BrokerLifecycle {
    pub fn is_running(&self) -> bool {
        *self.running.borrow()
    }

    /// Waits (at most `timeout`) until the broker runs; whether it does.
    pub async fn wait_running(&self, timeout: Duration) -> bool {
        let mut running = self.running.subscribe();
        tokio::time::timeout(timeout, running.wait_for(|running| *running))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }
}

impl Default for BrokerLifecycle {
    fn default() -> Self {
        BrokerLifecycle {
            incarnation_id: Uuid::new_v4(),
            epoch: AtomicI64::new(-1),
            shutting_down: AtomicBool::new(false),
            running: tokio::sync::watch::channel(false).0,
        }
    }
}

impl BrokerLifecycle {
    pub fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::Acquire)
    }
}

impl Node {
    /// What this broker registers: its id, incarnation, client listener and rack.
    pub fn registration(&self) -> Registration {
        let rack = self
            .config
            .properties
            .get(crate::config::BROKER_RACK)
            .trim()
            .to_string();
        Registration {
            broker_id: self.config.node_id,
            incarnation_id: self.lifecycle.incarnation_id,
            endpoints: self.registered_endpoints(),
            rack: (!rack.is_empty()).then_some(rack),
        }
    }

    /// Every client listener with its advertised address, the inter-broker one first (other
    /// brokers reach this one through the first endpoint).
    fn registered_endpoints(&self) -> Vec<BrokerEndpoint> {
        let config = &self.config;
        let mut endpoints: Vec<BrokerEndpoint> = config
            .listeners
            .iter()
            .filter(|l| !l.controller)
            .map(|l| BrokerEndpoint {
                name: l.name.clone(),
                host: l.advertised_host.clone(),
                port: l.advertised_port,
                security_protocol: l.protocol.id(),
            })
            .collect();
        if let Some(inter) = &config.inter_broker_listener {
            if let Some(index) = endpoints.iter().position(|e| &e.name == inter) {
                let first = endpoints.remove(index);
                endpoints.insert(0, first);
            }
        }
        if endpoints.is_empty() {
            // A node whose only listener is the controller's (tests, controller-only roles
            // registering anyway): what it was configured with before named listeners.
            endpoints.push(BrokerEndpoint {
                name: "PLAINTEXT".to_string(),
                host: config.advertised_host.clone(),
                port: u16::try_from(config.advertised_port).unwrap_or(0),
                security_protocol: SECURITY_PROTOCOL_PLAINTEXT,
            });
        }
        endpoints
    }

    fn heartbeat_request(&self, want_shutdown: bool) -> Heartbeat {
        Heartbeat {
            broker_id: self.config.node_id,
            broker_epoch: self.lifecycle.epoch(),
            want_fence: false,
            want_shutdown: want_shutdown || self.lifecycle.shutting_down.load(Ordering::Acquire),
            metadata_offset: self.image().applied_offset,
        }
    }

    /// Registers (when not yet) and heartbeats once, with the active controller: this node's
    /// own when it is the active one, else over the controller listener.
    pub fn register_and_heartbeat(&self, want_shutdown: bool) -> Result<HeartbeatReply, ApiError> {
        if self.lifecycle.epoch() < 0 {
            let epoch = self.send_registration()?;
            self.lifecycle.epoch.store(epoch, Ordering::Release);
        }
        let reply = self.send_heartbeat(&self.heartbeat_request(want_shutdown));
        if let Ok(reply) = &reply {
            if reply.is_caught_up && !reply.is_fenced && !self.lifecycle.is_running() {
                tracing::info!(
                    epoch = self.lifecycle.epoch(),
                    "broker caught up and unfenced: running"
                );
                self.lifecycle.running.send_replace(true);
                // What the shards loaded meanwhile hold prepared (off this thread: it may send
                // markers to other brokers).
                if let (Ok(handle), Some(node)) =
                    (tokio::runtime::Handle::try_current(), self.this())
                {
                    handle.spawn_blocking(move || node.complete_prepared_if_running());
                }
            }
        }
        if let Err(error) = &reply {
            // The controller lost our registration (or saw a newer one): start over.
            if matches!(
                error.error,
                ResponseError::StaleBrokerEpoch | ResponseError::BrokerIdNotRegistered
            ) {
                self.lifecycle.epoch.store(-1, Ordering::Release);
            }
        }
        reply
    }

    fn send_registration(&self) -> Result<i64, ApiError> {
        let registration = self.registration();
        if self.controller.is_local() {
            return self.controller.register_broker(&registration);
        }
        let request = BrokerRegistrationRequest::default()
            .with_broker_id(BrokerId(registration.broker_id))
            .with_cluster_id(StrBytes::from_string(self.cluster_id.clone()))
            .with_incarnation_id(registration.incarnation_id)
            .with_listeners(
                registration
                    .endpoints
                    .iter()
                    .map(|e| {
                        Listener::default()
                            .with_name(StrBytes::from_string(e.name.clone()))
                            .with_host(StrBytes::from_string(e.host.clone()))
                            .with_port(e.port)
                            .with_security_protocol(e.security_protocol)
                    })
                    .collect(),
            )
            .with_rack(registration.rack.map(StrBytes::from_string));
        let response = self
            .controller
            .call_active(REGISTRATION_VERSION, &request)?;
        match response.error_code {
            0 => Ok(response.broker_epoch),
            code => Err(remote_error(code, "broker registration refused")),
        }
    }

    fn send_heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatReply, ApiError> {
        if self.controller.is_local() {
            return self.controller.broker_heartbeat(heartbeat);
        }
        let request = BrokerHeartbeatRequest::default()
            .with_broker_id(BrokerId(heartbeat.broker_id))
            .with_broker_epoch(heartbeat.broker_epoch)
            .with_current_metadata_offset(heartbeat.metadata_offset)
            .with_want_fence(heartbeat.want_fence)
            .with_want_shut_down(heartbeat.want_shutdown);
        let response = self.controller.call_active(HEARTBEAT_VERSION, &request)?;
        match response.error_code {
            0 => Ok(HeartbeatReply {
                is_caught_up: response.is_caught_up,
                is_fenced: response.is_fenced,
                should_shutdown: response.should_shut_down,
            }),
            code => Err(remote_error(code, "broker heartbeat refused")),
        }
    }

    /// Heartbeats until shutdown, then asks to be fenced. The active controller also fences
    /// brokers whose heartbeats stopped.
    pub async fn run_lifecycle(self: Arc<Node>) {
        let mut shutdown = self.shutdown.subscribe();
        let interval = Duration::from_millis(
            self.config
                .properties
                .get_i64(crate::config::BROKER_HEARTBEAT_INTERVAL_MS)
                .max(1) as u64,
        );
        // Until registered, retry often: a broker is invisible to clients until then.
        let retry = interval.min(Duration::from_millis(REGISTRATION_RETRY_MS));
        let mut first = true;
        loop {
            // Until registered and running, retry often: clients wait for it.
            let starting = self.lifecycle.epoch() < 0 || !self.lifecycle.is_running();
            let wait = match (first, starting) {
                (true, _) => Duration::ZERO,
                (false, true) => retry,
                (false, false) => interval,
            };
            first = false;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break,
            }
            let broker = self.clone();
            let result = tokio::task::spawn_blocking(move || {
                let reply = match broker.config.roles.broker {
                    true => broker.register_and_heartbeat(false).map(|_| ()),
                    false => Ok(()),
                };
                // Only the active controller decides fencing.
                let fenced = match broker.controller.is_local() {
                    true => broker.controller.fence_stale_brokers().map(|_| ()),
                    false => Ok(()),
                };
                (reply, fenced)
            })
            .await;
            match result {
                Ok((Err(error), _)) | Ok((_, Err(error))) => {
                    tracing::warn!(message = error.message, "broker heartbeat failed")
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "heartbeat task failed"),
            }
        }
    }

    /// Controlled shutdown, before the quorum and the listeners stop: asks the controller to
    /// fence this broker, which moves every leadership another in-sync replica can take, and
    /// waits until it answers `should_shutdown` (or `CONTROLLED_SHUTDOWN_WAIT` passed).
    /// Meanwhile the listener keeps serving: clients get NOT_LEADER_OR_FOLLOWER, refresh
    /// their metadata and move on, rather than losing a connection with requests in flight.
    /// Skipped when no other broker is live: there is nobody to hand leadership to, and
    /// fencing would only take every partition offline until the restart.
    pub async fn controlled_shutdown(self: &Arc<Node>) {
        if !self.config.roles.broker || self.lifecycle.epoch() < 0 {
            return;
        }
        let me = self.config.node_id;
        if !self.image().live_brokers().any(|b| b.id != me) {
            return;
        }
        self.lifecycle.shutting_down.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + CONTROLLED_SHUTDOWN_WAIT;
        loop {
            let broker = self.clone();
            let reply =
                tokio::task::spawn_blocking(move || broker.register_and_heartbeat(true)).await;
            match reply {
                Ok(Ok(reply)) if reply.should_shutdown => {
                    tracing::info!("controlled shutdown: leadership moved away");
                    return;
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(
                        message = error.message,
                        "controlled shutdown heartbeat failed"
                    )
                }
                Err(error) => tracing::error!(%error, "controlled shutdown heartbeat task failed"),
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("controlled shutdown timed out: stopping with leaderships");
                return;
            }
            tokio::time::sleep(CONTROLLED_SHUTDOWN_RETRY).await;
        }
    }
}
