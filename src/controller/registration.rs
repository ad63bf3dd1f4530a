//! Broker registration and heartbeats, the controller's side (Kafka's
//! BrokerHeartbeatManager): a broker registers (a RegisterBroker record; its epoch is the
//! record's offset), starts fenced, is unfenced by its first heartbeat once it has caught up
//! with the metadata log up to its own registration, and is fenced again when its heartbeats
//! stop for `broker.session.timeout.ms` or it asks to shut down. Heartbeat times live only in
//! the active controller's memory: a new controller gives every broker a fresh session.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::records::{BrokerEndpoint, MetadataRecord};
use super::{ApiError, Controller};

/// Registered brokers a controller tracks heartbeats for; ids are bounded by `node.id`'s
/// range, this bounds the map against a flood of registrations.
const BROKERS_MAX: usize = 10_000;

#[derive(Clone, Debug)]
pub struct Registration {
    pub broker_id: i32,
    pub incarnation_id: Uuid,
    pub endpoints: Vec<BrokerEndpoint>,
    pub rack: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub want_fence: bool,
    pub want_shutdown: bool,
    /// The offset of the last metadata record the broker applied.
    pub metadata_offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub should_shutdown: bool,
}

/// Last heartbeat of each registered broker, as this controller saw it.
#[derive(Debug, Default)]
pub struct HeartbeatTimes {
    last_seen: HashMap<i32, Instant>,
}

impl HeartbeatTimes {
    fn touch(&mut self, broker_id: i32, now: Instant) {
        if self.last_seen.len() >= BROKERS_MAX && !self.last_seen.contains_key(&broker_id) {
            return;
        }
        self.last_seen.insert(broker_id, now);
    }

    /// Whether the broker heartbeated to this controller within `session`. A broker this
    /// controller never heard from has no session: its id may be registered again at once
    /// (a restart after kill -9 of a one-node cluster).
    fn has_session(&self, broker_id: i32, now: Instant, session: Duration) -> bool {
        self.last_seen
            .get(&broker_id)
            .is_some_and(|seen| now.duration_since(*seen) < session)
    }

    /// Whether the broker's session expired; one never heard from gets a session starting
    /// now, so a newly active controller does not fence brokers that heartbeated to its
    /// predecessor.
    fn expired(&mut self, broker_id: i32, now: Instant, session: Duration) -> bool {
        if self.last_seen.len() < BROKERS_MAX {
            self.last_seen.entry(broker_id).or_insert(now);
        }
        !self.has_session(broker_id, now, session)
    }
}

impl Controller {
    fn session_timeout(&self) -> Duration {
        Duration::from_millis(
            self.broker_properties
                .get_i64(crate::config::BROKER_SESSION_TIMEOUT_MS)
                .max(1) as u64,
        )
    }

    /// BrokerRegistration: returns the broker epoch.
    pub fn register_broker(&self, registration: &Registration) -> Result<i64, ApiError> {
        let _guard = self.lock_commits();
        let now = Instant::now();
        let image = self.image();
        if let Some(existing) = image.brokers.get(&registration.broker_id) {
            // The same process retrying its registration gets the same epoch.
            if existing.incarnation_id == registration.incarnation_id {
                return Ok(existing.epoch);
            }
            let heartbeats = self.heartbeats.lock().expect("heartbeats lock");
            if !existing.fenced
                && heartbeats.has_session(registration.broker_id, now, self.session_timeout())
            {
                return Err(ApiError::new(
                    ResponseError::DuplicateBrokerRegistration,
                    format!(
                        "Another broker is registered with broker id {} (incarnation {}).",
                        registration.broker_id, existing.incarnation_id
                    ),
                ));
            }
        }
        self.commit(&[MetadataRecord::RegisterBroker {
            broker_id: registration.broker_id,
            incarnation_id: registration.incarnation_id,
            endpoints: registration.endpoints.clone(),
            rack: registration.rack.clone(),
        }])?;
        self.heartbeats
            .lock()
            .expect("heartbeats lock")
            .touch(registration.broker_id, now);
        let epoch = self
            .image()
            .brokers
            .get(&registration.broker_id)
            .expect("registered broker in the image")
            .epoch;
        tracing::info!(
            broker_id = registration.broker_id,
            epoch,
            "broker registered"
        );
        Ok(epoch)
    }

    /// BrokerHeartbeat: keeps the broker's session alive and fences or unfences it.
    pub fn broker_heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatReply, ApiError> {
        let _guard = self.lock_commits();
        let image = self.image();
        let Some(broker) = image.brokers.get(&heartbeat.broker_id) else {
            return Err(ApiError::new(
                ResponseError::BrokerIdNotRegistered,
                format!("Broker {} is not registered.", heartbeat.broker_id),
            ));
        };
        if broker.epoch != heartbeat.broker_epoch {
            return Err(ApiError::new(
                ResponseError::StaleBrokerEpoch,
                format!(
                    "Broker {} has epoch {}, not {}.",
                    heartbeat.broker_id, broker.epoch, heartbeat.broker_epoch
                ),
            ));
        }
        self.heartbeats
            .lock()
            .expect("heartbeats lock")
            .touch(heartbeat.broker_id, Instant::now());
        let is_caught_up = heartbeat.metadata_offset >= broker.epoch;
        let fence = heartbeat.want_fence || heartbeat.want_shutdown;
        let fenced = match (broker.fenced, fence) {
            (true, false) if is_caught_up => false,
            (false, true) => true,
            (current, _) => current,
        };
        if fenced != broker.fenced {
            self.commit(&[MetadataRecord::BrokerFencing {
                broker_id: broker.id,
                broker_epoch: broker.epoch,
                fenced,
            }])?;
            tracing::info!(broker_id = broker.id, fenced, "broker fencing changed");
        }
        Ok(HeartbeatReply {
            is_caught_up,
            is_fenced: fenced,
            should_shutdown: heartbeat.want_shutdown,
        })
    }

    /// Fences every unfenced broker whose heartbeats stopped for the session timeout. Run
    /// periodically by the active controller; returns the fenced ids.
    pub fn fence_stale_brokers(&self) -> Result<Vec<i32>, ApiError> {
        let _guard = self.lock_commits();
        let now = Instant::now();
        let session = self.session_timeout();
        let image = self.image();
        let records: Vec<MetadataRecord> = {
            let mut heartbeats = self.heartbeats.lock().expect("heartbeats lock");
            image
                .live_brokers()
                .filter(|broker| heartbeats.expired(broker.id, now, session))
                .map(|broker| MetadataRecord::BrokerFencing {
                    broker_id: broker.id,
                    broker_epoch: broker.epoch,
                    fenced: true,
                })
                .collect()
        };
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.commit(&records)?;
        let fenced: Vec<i32> = records
            .iter()
            .filter_map(|record| match record {
                MetadataRecord::BrokerFencing { broker_id, .. } => Some(*broker_id),
                _ => None,
            })
            .collect();
        tracing::warn!(?fenced, "fenced brokers whose heartbeats stopped");
        Ok(fenced)
    }
}
