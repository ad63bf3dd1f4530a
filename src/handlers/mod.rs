//! One file per API family; each decodes its request, asks the owner of the state (the replica
//! layer, a coordinator, the controller), and encodes its response at the request's version.
//! Every handler receives the request's [`context::RequestContext`].

pub mod acls;
pub mod admin;
pub mod api_versions;
pub mod broker_registration;
pub mod client_quotas;
pub mod configs;
pub mod context;
pub mod fetch;
pub mod groups;
pub mod list_offsets;
pub mod log_dirs;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod quorum;
pub mod reassignment;
pub mod scram;
pub mod share;
pub mod share_offsets;
pub mod txn;

use std::future::Future;
use std::pin::Pin;

use crate::protocol::ResponseFrame;

pub type DeferredResponse = Pin<Box<dyn Future<Output = Option<ResponseFrame>> + Send>>;

/// What a handler made of a request.
pub enum Handled {
    Response(ResponseFrame),
    /// acks=0 produce: the client expects nothing back.
    NoResponse,
    /// A response that may wait (a long-polling fetch, an acks=all produce); None closes the
    /// connection.
    Deferred(DeferredResponse),
}
