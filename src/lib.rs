//! dlog: a Kafka-compatible commit log. A single binary that speaks Kafka's binary protocol.
//! `ARCHITECTURE.md` at the root describes the layers and the dependencies that must never exist.
//!
//! Reading order, top to bottom:
//! - [`server`]: accepts connections, frames requests, builds each connection's request
//!   context and routes requests to their handler.
//! - [`protocol`]: decodes requests safely and owns the ApiVersions table.
//! - [`handlers`]: one file per API family; decode, ask the owner of the state, encode.
//! - [`security`]: principals and the authorizer every handler asks through its context.
//! - [`replica`]: owns every hosted partition: its role, leader epoch, high watermark, the
//!   requests waiting for data, and fetch sessions.
//! - [`coordinator`]: the group and transaction coordinators, as shards loaded per internal
//!   partition this node leads, writing through a narrow port.
//! - [`controller`]: the metadata quorum around [`raft`], the metadata image, registration,
//!   placement, and partition changes (elections on fencing, ISR changes by AlterPartition).
//! - [`log`] and [`record`]: storage (segments, indexes, cleaner) and record batches.
//! - [`share`]: share groups' data side: share-partitions (acquired records, locks,
//!   delivery counts) and share sessions of the partitions this node leads.
//! - [`rebalance`]: `dlog rebalance`, a client of the protocol that plans and executes
//!   reassignments evening out replicas, leaders and disk bytes per broker.
//! - [`node`]: wiring only: builds the owners, starts their tasks, shuts them down in order.

pub mod clock;
pub mod config;
pub mod controller;
pub mod coordinator;
pub mod handlers;
pub mod lifecycle;
pub mod log;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod raft;
pub mod rebalance;
pub mod record;
pub mod replica;
pub mod security;
pub mod server;
pub mod share;
