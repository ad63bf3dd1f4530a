//! The dispatch table: api key → handler. Every API listed in
//! `protocol::api_versions::SUPPORTED` has an arm here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use crate::broker::Broker;
use crate::handlers;
use crate::protocol::{self, RequestError, ResponseFrame};

pub type DeferredResponse = Pin<Box<dyn Future<Output = Option<ResponseFrame>> + Send>>;

pub enum Handled {
    Response(ResponseFrame),
    /// acks=0 produce: the client expects nothing back.
    NoResponse,
    /// A response that may wait (a long-polling fetch); None closes the connection.
    Deferred(DeferredResponse),
}

/// Handles one request frame. An Err closes the connection: the request could not be
/// understood well enough to answer it (unknown api, unsupported version, malformed bytes).
pub async fn handle(broker: &Arc<Broker>, frame: Bytes) -> Result<Handled, String> {
    let request = protocol::parse_request(frame).map_err(|e| e.to_string())?;
    let result: Result<Handled, RequestError> = match request.api_key {
        ApiKey::ApiVersions => handlers::api_versions::handle(&request).map(Handled::Response),
        ApiKey::Metadata => handlers::metadata::handle(broker, request).map(Handled::Response),
        ApiKey::Produce => handlers::produce::handle(broker, request),
        ApiKey::Fetch => handlers::fetch::handle(broker, request),
        ApiKey::ListOffsets => {
            handlers::list_offsets::handle(broker, request).map(Handled::Response)
        }
        ApiKey::CreateTopics => {
            handlers::admin::create_topics(broker, request).map(Handled::Response)
        }
        ApiKey::DeleteTopics => {
            handlers::admin::delete_topics(broker, request).map(Handled::Response)
        }
        ApiKey::DescribeConfigs => {
            handlers::admin::describe_configs(broker, request).map(Handled::Response)
        }
        ApiKey::DescribeCluster => {
            handlers::admin::describe_cluster(broker, request).map(Handled::Response)
        }
        ApiKey::FindCoordinator => {
            handlers::groups::find_coordinator(broker, request).map(Handled::Response)
        }
        ApiKey::InitProducerId => {
            handlers::txn::init_producer_id(broker, request).map(Handled::Response)
        }
        ApiKey::AddPartitionsToTxn => {
            handlers::txn::add_partitions_to_txn(broker, request).map(Handled::Response)
        }
        ApiKey::AddOffsetsToTxn => {
            handlers::txn::add_offsets_to_txn(broker, request).map(Handled::Response)
        }
        ApiKey::EndTxn => handlers::txn::end_txn(broker, request).map(Handled::Response),
        ApiKey::DescribeTransactions => {
            handlers::txn::describe_transactions(broker, request).map(Handled::Response)
        }
        ApiKey::DescribeProducers => {
            handlers::txn::describe_producers(broker, request).map(Handled::Response)
        }
        ApiKey::ListTransactions => {
            handlers::txn::list_transactions(broker, request).map(Handled::Response)
        }
        ApiKey::TxnOffsetCommit => {
            handlers::txn::txn_offset_commit(broker, request).map(Handled::Response)
        }
        other => Err(RequestError::UnknownApiKey(other as i16)),
    };
    result.map_err(|e| e.to_string())
}
