//! The dispatch table: api key → handler. Every API listed in
//! `protocol::api_versions::SUPPORTED` has an arm here.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use crate::handlers::admin;
use crate::handlers::client_quotas::QuotaClient;
use crate::handlers::quorum::forward_authorized;
use crate::handlers::{self, context::RequestContext, Handled};
use crate::node::Node;
use crate::protocol::{self, RequestError};

/// Handles one request frame. An Err closes the connection: the request could not be
/// understood well enough to answer it (unknown api, unsupported version, malformed bytes).
/// Every request is counted and timed here, by API and outcome, and its handling time is
/// charged to the client's `request_percentage` quota (Kafka's ClientRequestQuotaManager).
pub async fn handle(
    broker: &Arc<Node>,
    context: &Arc<RequestContext>,
    kind: super::ListenerKind,
    frame: Bytes,
) -> Result<Handled, String> {
    let timer = crate::metrics::RequestTimer::start(&frame);
    let quota_subject = request_quota_subject(broker, context, kind, &frame);
    let started = std::time::Instant::now();
    let routed = match kind {
        super::ListenerKind::Broker => route(broker, context, frame).await,
        super::ListenerKind::Controller => handlers::quorum::route(broker, context, frame).await,
    };
    // The time the handler ran (for a deferred response, until it handed off its wait, as
    // Kafka counts thread time and not purgatory time): a throttle raises the response's
    // throttle_time_ms and mutes the connection.
    let request_throttle = quota_subject.map(|(api_key, version, client)| {
        let handling_ns = started.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        let throttle_ms = client.record_request_time(broker, handling_ns);
        (api_key, version, throttle_ms)
    });
    let raise_throttle = move |response: &mut protocol::ResponseFrame| {
        if let Some((api_key, version, throttle_ms)) = request_throttle {
            protocol::throttle_time::raise(response, api_key, version, throttle_ms);
        }
    };
    match routed {
        Ok(Handled::Response(mut response)) => {
            raise_throttle(&mut response);
            timer.answered(response.size_bytes());
            Ok(Handled::Response(response))
        }
        Ok(Handled::NoResponse) => {
            timer.answered(0);
            Ok(Handled::NoResponse)
        }
        Ok(Handled::Deferred(future)) => Ok(Handled::Deferred(Box::pin(async move {
            let mut response = future.await;
            if let Some(response) = &mut response {
                raise_throttle(response);
            }
            match &response {
                Some(response) => timer.answered(response.size_bytes()),
                None => timer.failed("UNKNOWN_SERVER_ERROR"),
            }
            response
        }))),
        Err(error) => {
            timer.failed(match error {
                RequestError::UnsupportedVersion { .. } => "UNSUPPORTED_VERSION",
                _ => "INVALID_REQUEST",
            });
            Err(error.to_string())
        }
    }
}

/// Who a request's handling time counts against, and the API and version its response is
/// patched for: None when no quota could apply (the controller listener's trusted traffic,
/// an exempt connection, no client quota configured at all, a header that does not parse).
/// ApiVersions and SASL before authentication never come here: the authenticator answers them.
fn request_quota_subject(
    broker: &Node,
    context: &RequestContext,
    kind: super::ListenerKind,
    frame: &Bytes,
) -> Option<(ApiKey, i16, QuotaClient)> {
    if kind != super::ListenerKind::Broker
        || context.quota_exempt
        || broker.image().client_quotas.is_empty()
    {
        return None;
    }
    let request = protocol::parse_request(frame.clone()).ok()?;
    // Kafka exempts the inter-broker APIs it authorizes as CLUSTER_ACTION.
    if request.api_key == ApiKey::WriteTxnMarkers {
        return None;
    }
    let client_id = request.header.client_id.as_deref().unwrap_or("");
    Some((
        request.api_key,
        request.version,
        QuotaClient::of_client_id(context, client_id),
    ))
}

async fn route(
    broker: &Arc<Node>,
    context: &Arc<RequestContext>,
    frame: Bytes,
) -> Result<Handled, RequestError> {
    let request = protocol::parse_request(frame)?;
    match request.api_key {
        // The data path never waits for the controller: it runs on the connection's task.
        ApiKey::ApiVersions
        | ApiKey::Produce
        | ApiKey::Fetch
        | ApiKey::ListOffsets
        | ApiKey::OffsetForLeaderEpoch
        | ApiKey::ShareFetch
        | ApiKey::ShareAcknowledge => route_sync(broker, context, request),
        // Anything else may wait for the controller (a metadata commit, an internal topic's
        // creation, a producer id block) or for another broker: it runs on the blocking pool,
        // and the connection waits for it in order, so no runtime worker does.
        _ => {
            let (broker, context) = (broker.clone(), context.clone());
            tokio::task::spawn_blocking(move || route_sync(&broker, &context, request))
                .await
                .map_err(|error| RequestError::Malformed(format!("handler failed: {error}")))?
        }
    }
}

fn route_sync(
    broker: &Arc<Node>,
    context: &Arc<RequestContext>,
    request: protocol::Request,
) -> Result<Handled, RequestError> {
    let result: Result<Handled, RequestError> = match request.api_key {
        ApiKey::ApiVersions => handlers::api_versions::handle(&request).map(Handled::Response),
        ApiKey::Metadata => {
            handlers::metadata::handle(broker, context, request).map(Handled::Response)
        }
        ApiKey::DescribeTopicPartitions => {
            handlers::metadata::describe_topic_partitions(broker, context, request)
                .map(Handled::Response)
        }
        ApiKey::Produce => handlers::produce::handle(broker, context, request),
        ApiKey::Fetch => handlers::fetch::handle(broker, context, request),
        ApiKey::ListOffsets => {
            handlers::list_offsets::handle(broker, context, request).map(Handled::Response)
        }
        ApiKey::OffsetForLeaderEpoch => {
            handlers::offset_for_leader_epoch::handle(broker, context, request)
                .map(Handled::Response)
        }
        // Metadata changes: made by the active controller, forwarded to it from elsewhere.
        ApiKey::CreateTopics => forward_authorized(
            broker,
            context,
            request,
            admin::create_topics_authorized,
            |b, c, r| handlers::admin::create_topics(b, c, r).map(Handled::Response),
        ),
        ApiKey::DeleteTopics => forward_authorized(
            broker,
            context,
            request,
            admin::delete_topics_authorized,
            |b, c, r| handlers::admin::delete_topics(b, c, r).map(Handled::Response),
        ),
        ApiKey::CreatePartitions => forward_authorized(
            broker,
            context,
            request,
            admin::create_partitions_authorized,
            |b, c, r| handlers::admin::create_partitions(b, c, r).map(Handled::Response),
        ),
        ApiKey::DescribeQuorum => forward_authorized(
            broker,
            context,
            request,
            handlers::quorum::describe_quorum_authorized,
            |b, c, r| Ok(handlers::quorum::describe_quorum(b, c, r)),
        ),
        ApiKey::DescribeConfigs => {
            handlers::configs::describe_configs(broker, context, request).map(Handled::Response)
        }
        ApiKey::AlterConfigs => forward_authorized(
            broker,
            context,
            request,
            handlers::configs::alter_configs_authorized,
            |b, c, r| handlers::configs::alter_configs(b, c, r).map(Handled::Response),
        ),
        ApiKey::IncrementalAlterConfigs => forward_authorized(
            broker,
            context,
            request,
            handlers::configs::incremental_alter_configs_authorized,
            |b, c, r| handlers::configs::incremental_alter_configs(b, c, r).map(Handled::Response),
        ),
        ApiKey::DeleteRecords => {
            handlers::log_dirs::delete_records(broker, context, request).map(Handled::Response)
        }
        ApiKey::DescribeLogDirs => {
            handlers::log_dirs::describe_log_dirs(broker, context, request).map(Handled::Response)
        }
        ApiKey::DescribeCluster => {
            handlers::admin::describe_cluster(broker, context, request).map(Handled::Response)
        }
        ApiKey::FindCoordinator => {
            handlers::groups::find_coordinator(broker, context, request).map(Handled::Response)
        }
        ApiKey::JoinGroup => handlers::groups::join_group(broker, context, request),
        ApiKey::SyncGroup => handlers::groups::sync_group(broker, context, request),
        ApiKey::Heartbeat => {
            handlers::groups::heartbeat(broker, context, request).map(Handled::Response)
        }
        ApiKey::LeaveGroup => {
            handlers::groups::leave_group(broker, context, request).map(Handled::Response)
        }
        ApiKey::OffsetCommit => {
            handlers::groups::offset_commit(broker, context, request).map(Handled::Response)
        }
        ApiKey::OffsetFetch => {
            handlers::groups::offset_fetch(broker, context, request).map(Handled::Response)
        }
        ApiKey::OffsetDelete => {
            handlers::groups::offset_delete(broker, context, request).map(Handled::Response)
        }
        ApiKey::DescribeGroups => {
            handlers::groups::describe_groups(broker, context, request).map(Handled::Response)
        }
        ApiKey::ListGroups => {
            handlers::groups::list_groups(broker, context, request).map(Handled::Response)
        }
        ApiKey::ConsumerGroupHeartbeat => {
            handlers::groups::consumer_group_heartbeat(broker, context, request)
                .map(Handled::Response)
        }
        ApiKey::ConsumerGroupDescribe => {
            handlers::groups::consumer_group_describe(broker, context, request)
                .map(Handled::Response)
        }
        ApiKey::ShareGroupHeartbeat => {
            handlers::share::share_group_heartbeat(broker, context, request).map(Handled::Response)
        }
        ApiKey::ShareGroupDescribe => {
            handlers::share::share_group_describe(broker, context, request).map(Handled::Response)
        }
        ApiKey::DescribeShareGroupOffsets => {
            handlers::share_offsets::describe_share_group_offsets(broker, context, request)
                .map(Handled::Response)
        }
        ApiKey::AlterShareGroupOffsets => {
            handlers::share_offsets::alter_share_group_offsets(broker, context, request)
                .map(Handled::Response)
        }
        ApiKey::DeleteShareGroupOffsets => {
            handlers::share_offsets::delete_share_group_offsets(broker, context, request)
                .map(Handled::Response)
        }
        ApiKey::ShareFetch => handlers::share::share_fetch(broker, context, request),
        ApiKey::ShareAcknowledge => {
            handlers::share::share_acknowledge(broker, context, request).map(Handled::Response)
        }
        ApiKey::DeleteGroups => {
            handlers::groups::delete_groups(broker, context, request).map(Handled::Response)
        }
        ApiKey::InitProducerId => {
            handlers::txn::init_producer_id(broker, context, request).map(Handled::Response)
        }
        ApiKey::AddPartitionsToTxn => {
            handlers::txn::add_partitions_to_txn(broker, context, request).map(Handled::Response)
        }
        ApiKey::AddOffsetsToTxn => {
            handlers::txn::add_offsets_to_txn(broker, context, request).map(Handled::Response)
        }
        ApiKey::EndTxn => handlers::txn::end_txn(broker, context, request).map(Handled::Response),
        ApiKey::DescribeTransactions => {
            handlers::txn::describe_transactions(broker, context, request).map(Handled::Response)
        }
        ApiKey::DescribeProducers => {
            handlers::txn::describe_producers(broker, context, request).map(Handled::Response)
        }
        ApiKey::ListTransactions => {
            handlers::txn::list_transactions(broker, context, request).map(Handled::Response)
        }
        ApiKey::TxnOffsetCommit => {
            handlers::txn::txn_offset_commit(broker, context, request).map(Handled::Response)
        }
        ApiKey::WriteTxnMarkers => {
            handlers::txn::write_txn_markers(broker, context, request).map(Handled::Response)
        }
        ApiKey::DescribeClientQuotas => {
            handlers::client_quotas::describe_client_quotas(broker, context, request)
                .map(Handled::Response)
        }
        ApiKey::AlterClientQuotas => {
            handlers::client_quotas::alter_client_quotas(broker, context, request)
        }
        ApiKey::DescribeAcls => {
            handlers::acls::describe_acls(broker, context, request).map(Handled::Response)
        }
        ApiKey::CreateAcls => handlers::acls::create_acls(broker, context, request),
        ApiKey::DeleteAcls => handlers::acls::delete_acls(broker, context, request),
        ApiKey::DescribeUserScramCredentials => {
            handlers::scram::describe_user_scram_credentials(broker, context, request)
                .map(Handled::Response)
        }
        ApiKey::AlterUserScramCredentials => {
            handlers::scram::alter_user_scram_credentials(broker, context, request)
        }
        ApiKey::ElectLeaders => handlers::reassignment::elect_leaders(broker, context, request),
        ApiKey::AlterPartitionReassignments => {
            handlers::reassignment::alter_partition_reassignments(broker, context, request)
        }
        ApiKey::ListPartitionReassignments => {
            handlers::reassignment::list_partition_reassignments(broker, context, request)
        }
        // The connection's authenticator answers these before dispatch.
        ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => Err(RequestError::Malformed(
            "SASL requests are answered by the connection's authenticator".into(),
        )),
        other => Err(RequestError::UnknownApiKey(other as i16)),
    };
    result
}
