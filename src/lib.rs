//! dlog: a Kafka-compatible commit log. A single binary that speaks Kafka's binary protocol.
//!
//! Reading order: [`server`] accepts connections and frames requests; [`protocol`] decodes
//! them safely and owns the ApiVersions table; [`handlers`] holds one file per API family;
//! [`log`] and [`record`] are the storage; [`controller`] owns metadata (the metadata log and
//! the image every handler reads); [`broker`] wires them into a node.

pub mod broker;
pub mod clock;
pub mod config;
pub mod controller;
pub mod coordinator;
pub mod handlers;
pub mod lifecycle;
pub mod log;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod raft;
pub mod record;
pub mod server;
