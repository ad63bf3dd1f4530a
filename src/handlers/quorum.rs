//! The controller listener and the quorum's APIs: Vote, BeginQuorumEpoch, EndQuorumEpoch,
//! Fetch of `__cluster_metadata`-0, FetchSnapshot (handed to the quorum driver),
//! DescribeQuorum, AllocateProducerIds, AlterPartition, and the admin requests brokers forward
//! to the active
//! controller. Also the forwarding itself: a broker that is not the active controller relays
//! CreateTopics, DeleteTopics, CreatePartitions, (Incremental)AlterConfigs, DescribeQuorum,
//! ElectLeaders and the partition reassignment APIs to it as the same Kafka request and relays the answer.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node as NodeEndpoints, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    AllocateProducerIdsRequest, AllocateProducerIdsResponse, ApiKey, BeginQuorumEpochRequest,
    BeginQuorumEpochResponse, BrokerId, DescribeQuorumResponse, EndQuorumEpochRequest,
    EndQuorumEpochResponse, FetchRequest, FetchSnapshotRequest, TopicName, VoteRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;

use crate::controller::alter_partition::{AlterPartition, IsrChange};
use crate::controller::wire;
use crate::controller::{ActiveController, ACTIVE_CONTROLLER_WAIT, METADATA_TOPIC};
use crate::coordinator::producer_ids::PRODUCER_ID_BLOCK_SIZE;
use crate::handlers;
use crate::handlers::context::RequestContext;
use crate::handlers::Handled;
use crate::node::Node;
use crate::protocol::api_versions::{self, CONTROLLER_SUPPORTED};
use crate::protocol::{
    decode, encode_response, encode_response_header, Chunk, Request, RequestError, ResponseFrame,
};
use crate::raft::{Message, NodeId};
use crate::security::{Operation, Resource};

/// Time a forwarded request is given beyond the controller's own bound for it (the hop).
const PEER_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// One request on the controller listener.
pub async fn route(
    broker: &Arc<Node>,
    context: &Arc<RequestContext>,
    frame: Bytes,
) -> Result<Handled, RequestError> {
    let request = crate::protocol::parse_request_in(frame, api_versions::controller_supported)?;
    let response = |frame: Result<ResponseFrame, RequestError>| frame.map(Handled::Response);
    match request.api_key {
        ApiKey::ApiVersions => response(handlers::api_versions::handle_with(
            &request,
            CONTROLLER_SUPPORTED,
        )),
        ApiKey::Vote => vote(broker, request),
        ApiKey::BeginQuorumEpoch => begin_quorum_epoch(broker, request),
        ApiKey::EndQuorumEpoch => end_quorum_epoch(broker, request),
        ApiKey::Fetch => fetch(broker, request),
        ApiKey::FetchSnapshot => fetch_snapshot(broker, request),
        ApiKey::DescribeQuorum => Ok(describe_quorum(broker, context, request)),
        ApiKey::DescribeCluster => response(describe_controllers(broker, request)),
        ApiKey::AllocateProducerIds
        | ApiKey::AlterPartition
        | ApiKey::BrokerRegistration
        | ApiKey::BrokerHeartbeat
        | ApiKey::CreateTopics
        | ApiKey::DeleteTopics
        | ApiKey::CreatePartitions
        | ApiKey::AlterConfigs
        | ApiKey::IncrementalAlterConfigs
        | ApiKey::CreateAcls
        | ApiKey::DeleteAcls
        | ApiKey::AlterUserScramCredentials
        | ApiKey::AlterClientQuotas
        | ApiKey::ElectLeaders
        | ApiKey::AlterPartitionReassignments
        | ApiKey::ListPartitionReassignments => {
            // They wait for a metadata commit: on the blocking pool, never on a runtime worker.
            let (broker, context) = (broker.clone(), context.clone());
            tokio::task::spawn_blocking(move || commit_request(&broker, &context, request))
                .await
                .map_err(|error| RequestError::Malformed(format!("handler failed: {error}")))?
        }
        other => Err(RequestError::UnknownApiKey(other as i16)),
    }
}

/// The controller-listener requests that change metadata (and so wait for the commit).
fn commit_request(
    broker: &Arc<Node>,
    context: &Arc<RequestContext>,
    request: Request,
) -> Result<Handled, RequestError> {
    let response = |frame: Result<ResponseFrame, RequestError>| frame.map(Handled::Response);
    match request.api_key {
        ApiKey::AllocateProducerIds => response(allocate_producer_ids(broker, request)),
        ApiKey::AlterPartition => response(alter_partition(broker, request)),
        ApiKey::BrokerRegistration => response(handlers::broker_registration::broker_registration(
            broker, context, request,
        )),
        ApiKey::BrokerHeartbeat => response(handlers::broker_registration::broker_heartbeat(
            broker, context, request,
        )),
        // Served here by the active controller; anyone else answers NOT_CONTROLLER from the
        // commit (a forwarder never forwards twice).
        ApiKey::CreateTopics => response(handlers::admin::create_topics(broker, context, request)),
        ApiKey::DeleteTopics => response(handlers::admin::delete_topics(broker, context, request)),
        ApiKey::CreatePartitions => {
            response(handlers::admin::create_partitions(broker, context, request))
        }
        ApiKey::AlterConfigs => {
            response(handlers::configs::alter_configs(broker, context, request))
        }
        ApiKey::IncrementalAlterConfigs => response(handlers::configs::incremental_alter_configs(
            broker, context, request,
        )),
        ApiKey::CreateAcls => handlers::acls::create_acls(broker, context, request),
        ApiKey::DeleteAcls => handlers::acls::delete_acls(broker, context, request),
        ApiKey::AlterUserScramCredentials => {
            handlers::scram::alter_user_scram_credentials(broker, context, request)
        }
        ApiKey::AlterClientQuotas => {
            handlers::client_quotas::alter_client_quotas(broker, context, request)
        }
        ApiKey::ElectLeaders => handlers::reassignment::elect_leaders(broker, context, request),
        ApiKey::AlterPartitionReassignments => {
            handlers::reassignment::alter_partition_reassignments(broker, context, request)
        }
        // Not a commit, but answered by the active controller like the others.
        ApiKey::ListPartitionReassignments => {
            handlers::reassignment::list_partition_reassignments(broker, context, request)
        }
        other => Err(RequestError::UnknownApiKey(other as i16)),
    }
}

fn respond<T: Encodable>(request: &Request, body: &T) -> ResponseFrame {
    encode_response(
        request.api_key,
        request.version,
        request.header.correlation_id,
        body,
    )
}

/// One quorum RPC: decode, check the cluster id and the sender, hand the request to the
/// driver and answer with what the Raft node says — or, when it says nothing in time, with
/// REQUEST_TIMED_OUT. `parse` names the sender and builds the Raft message (or the error
/// code for the whole request).
fn quorum_request<Req, Resp>(
    broker: &Arc<Node>,
    mut request: Request,
    cluster_id: fn(&Req) -> &Option<StrBytes>,
    parse: fn(&Req, i16) -> Result<(NodeId, Message), i16>,
    answer: fn(Message) -> Option<Resp>,
    error: fn(i16) -> Resp,
) -> Result<Handled, RequestError>
where
    Req: Decodable,
    Resp: Encodable + Send + 'static,
{
    let body: Req = decode(&mut request.body, request.version)?;
    let parsed = parse(&body, request.version).and_then(|(from, message)| {
        check_sender(broker, cluster_id(&body), from).map(|()| (from, message))
    });
    let (from, message) = match parsed {
        Ok(parsed) => parsed,
        Err(code) => return Ok(Handled::Response(respond(&request, &error(code)))),
    };
    let quorum = broker.controller.quorum().clone();
    let (api_key, version, correlation_id) = (
        request.api_key,
        request.version,
        request.header.correlation_id,
    );
    Ok(Handled::Deferred(Box::pin(async move {
        let body = quorum
            .inbound(from, message)
            .await
            .and_then(answer)
            .unwrap_or_else(|| error(ResponseError::RequestTimedOut.code()));
        Some(encode_response(api_key, version, correlation_id, &body))
    })))
}

fn check_sender(broker: &Node, cluster_id: &Option<StrBytes>, from: NodeId) -> Result<(), i16> {
    if !wire::cluster_matches(cluster_id, &broker.cluster_id) {
        tracing::warn!(
            from,
            ?cluster_id,
            "quorum request from another cluster refused"
        );
        return Err(wire::INCONSISTENT_CLUSTER_ID);
    }
    if from == broker.config.node_id || from < 0 {
        return Err(wire::INVALID_REQUEST);
    }
    Ok(())
}

fn vote(broker: &Arc<Node>, request: Request) -> Result<Handled, RequestError> {
    quorum_request(
        broker,
        request,
        |body: &VoteRequest| &body.cluster_id,
        |body, _| wire::from_vote_request(body).map(|r| (r.candidate_id, Message::VoteRequest(r))),
        |answer| match answer {
            Message::VoteResponse(r) => Some(wire::vote_response(&r)),
            _ => None,
        },
        wire::vote_error_response,
    )
}

fn begin_quorum_epoch(broker: &Arc<Node>, request: Request) -> Result<Handled, RequestError> {
    quorum_request(
        broker,
        request,
        |body: &BeginQuorumEpochRequest| &body.cluster_id,
        |body, _| {
            wire::from_begin_quorum_epoch_request(body)
                .map(|r| (r.leader_id, Message::BeginQuorumEpochRequest(r)))
        },
        |answer| match answer {
            Message::BeginQuorumEpochResponse(r) => Some(wire::begin_quorum_epoch_response(&r)),
            _ => None,
        },
        |code| BeginQuorumEpochResponse::default().with_error_code(code),
    )
}

fn end_quorum_epoch(broker: &Arc<Node>, request: Request) -> Result<Handled, RequestError> {
    quorum_request(
        broker,
        request,
        |body: &EndQuorumEpochRequest| &body.cluster_id,
        |body, _| {
            wire::from_end_quorum_epoch_request(body)
                .map(|r| (r.leader_id, Message::EndQuorumEpochRequest(r)))
        },
        |answer| match answer {
            Message::EndQuorumEpochResponse(r) => Some(wire::end_quorum_epoch_response(&r)),
            _ => None,
        },
        |code| EndQuorumEpochResponse::default().with_error_code(code),
    )
}

fn fetch(broker: &Arc<Node>, request: Request) -> Result<Handled, RequestError> {
    quorum_request(
        broker,
        request,
        |body: &FetchRequest| &body.cluster_id,
        |body, version| {
            if !wire::is_metadata_fetch(body) {
                return Err(wire::UNKNOWN_TOPIC_OR_PARTITION);
            }
            wire::from_fetch_request(body, version, crate::node::QUORUM_TICK_MS)
                .map(|r| (r.replica_id, Message::FetchRequest(r)))
        },
        |answer| match answer {
            Message::FetchResponse(r) => Some(wire::fetch_response(&r, crate::clock::now_ms())),
            _ => None,
        },
        wire::fetch_error_response,
    )
}

fn fetch_snapshot(broker: &Arc<Node>, request: Request) -> Result<Handled, RequestError> {
    quorum_request(
        broker,
        request,
        |body: &FetchSnapshotRequest| &body.cluster_id,
        |body, _| {
            wire::from_fetch_snapshot_request(body)
                .map(|r| (r.replica_id, Message::FetchSnapshotRequest(r)))
        },
        |answer| match answer {
            Message::FetchSnapshotResponse(r) => Some(wire::fetch_snapshot_response(&r)),
            _ => None,
        },
        wire::fetch_snapshot_error_response,
    )
}

/// DescribeQuorum from this node's view. The leader knows every replica's progress; a
/// follower reports leader and epoch with what it knows of itself (brokers forward the
/// request to the leader first, see [`forward_to_controller`]).
/// DescribeQuorum needs DESCRIBE on the cluster (checked before forwarding).
pub fn describe_quorum_authorized(_: &Node, context: &RequestContext, _: &Request) -> bool {
    context.authorized(Operation::Describe, Resource::Cluster)
}

pub fn describe_quorum(broker: &Node, context: &RequestContext, request: Request) -> Handled {
    if !context.authorized(Operation::Describe, Resource::Cluster) {
        let response = DescribeQuorumResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
        return Handled::Response(respond(&request, &response));
    }
    let quorum = broker.controller.quorum();
    let status = quorum.status();
    let now_ms = crate::clock::now_ms();
    let is_leader = status.leader_id == Some(status.node_id);
    let replica = |id: NodeId| {
        let known = status.replicas.iter().find(|r| r.node_id == id);
        let (log_end_offset, last_fetch_ms) = if id == status.node_id {
            (status.log_end_offset, now_ms)
        } else {
            known.map_or((-1, -1), |r| (r.log_end_offset, r.last_fetch_ms))
        };
        let caught_up = log_end_offset >= status.high_watermark && last_fetch_ms >= 0;
        ReplicaState::default()
            .with_replica_id(BrokerId(id))
            .with_log_end_offset(log_end_offset)
            .with_last_fetch_timestamp(last_fetch_ms)
            .with_last_caught_up_timestamp(if caught_up { last_fetch_ms } else { -1 })
    };
    let voters: Vec<ReplicaState> = status.voters.iter().map(|id| replica(*id)).collect();
    let observers: Vec<ReplicaState> = if is_leader {
        status
            .replicas
            .iter()
            .filter(|r| !status.voters.contains(&r.node_id))
            .map(|r| replica(r.node_id))
            .collect()
    } else {
        Vec::new()
    };
    let mut partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(BrokerId(status.leader_id.unwrap_or(-1)))
        .with_leader_epoch(status.epoch)
        .with_high_watermark(status.high_watermark)
        .with_current_voters(voters)
        .with_observers(observers);
    if status.leader_id.is_none() {
        partition = partition.with_error_code(ResponseError::NotLeaderOrFollower.code());
    }
    let mut response = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
        .with_partitions(vec![partition])]);
    if request.version >= 2 {
        let config = quorum.config();
        let nodes = config
            .voters
            .iter()
            .filter_map(|(id, address)| {
                let (host, port) = address.rsplit_once(':')?;
                Some(
                    NodeEndpoints::default()
                        .with_node_id(BrokerId(*id))
                        .with_listeners(vec![Listener::default()
                            .with_name(StrBytes::from_static_str("CONTROLLER"))
                            .with_host(StrBytes::from_string(host.to_string()))
                            .with_port(port.parse().ok()?)]),
                )
            })
            .collect();
        response = response.with_nodes(nodes);
    }
    Handled::Response(respond(&request, &response))
}

/// DescribeCluster on the controller listener (KIP-919, what `--bootstrap-controller` admin
/// clients ask first): the controllers and which of them is active.
fn describe_controllers(
    broker: &Node,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};
    const ENDPOINT_TYPE_CONTROLLERS: i8 = 2;
    let _body: DescribeClusterRequest = decode(&mut request.body, request.version)?;
    let quorum = broker.controller.quorum();
    let status = quorum.status();
    let controllers = quorum
        .config()
        .voters
        .iter()
        .filter_map(|(id, address)| {
            let (host, port) = address.rsplit_once(':')?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(*id))
                    .with_host(StrBytes::from_string(host.to_string()))
                    .with_port(port.parse().ok()?),
            )
        })
        .collect();
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(status.leader_id.unwrap_or(-1)))
        .with_cluster_authorized_operations(i32::MIN)
        .with_brokers(controllers);
    if request.version >= 1 {
        response = response.with_endpoint_type(ENDPOINT_TYPE_CONTROLLERS);
    }
    Ok(respond(&request, &response))
}

/// AllocateProducerIds (a broker asking the active controller for a block).
fn allocate_producer_ids(
    broker: &Node,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let _body: AllocateProducerIdsRequest = decode(&mut request.body, request.version)?;
    let response = match broker
        .controller
        .allocate_producer_ids(PRODUCER_ID_BLOCK_SIZE)
    {
        Ok(first) => AllocateProducerIdsResponse::default()
            .with_producer_id_start(first.into())
            .with_producer_id_len(PRODUCER_ID_BLOCK_SIZE as i32),
        Err(error) => AllocateProducerIdsResponse::default().with_error_code(error.error.code()),
    };
    Ok(respond(&request, &response))
}

/// AlterPartition (a partition leader asking the active controller to change an ISR).
/// Topics are named by id (v2+); one the image does not know is UNKNOWN_TOPIC_ID.
fn alter_partition(broker: &Node, mut request: Request) -> Result<ResponseFrame, RequestError> {
    use kafka_protocol::messages::alter_partition_response::{
        PartitionData as PartitionAnswer, TopicData as TopicAnswer,
    };
    use kafka_protocol::messages::{AlterPartitionRequest, AlterPartitionResponse};
    let body: AlterPartitionRequest = decode(&mut request.body, request.version)?;
    let image = broker.controller.image();
    // The changes asked for, each with where its answer goes (topic index, partition index).
    let mut changes: Vec<IsrChange> = Vec::new();
    let mut answers: Vec<TopicAnswer> = Vec::with_capacity(body.topics.len());
    let mut slots: Vec<(usize, usize)> = Vec::new();
    for (topic_index, topic) in body.topics.iter().enumerate() {
        let name = image.topic_by_id(&topic.topic_id).map(|t| t.name.clone());
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for (partition_index, partition) in topic.partitions.iter().enumerate() {
            let answer = PartitionAnswer::default().with_partition_index(partition.partition_index);
            let Some(name) = &name else {
                partitions.push(answer.with_error_code(ResponseError::UnknownTopicId.code()));
                continue;
            };
            let (new_isr, new_isr_broker_epochs) = match request.version {
                2 => (
                    partition.new_isr.iter().map(|id| id.0).collect(),
                    Vec::new(),
                ),
                _ => partition
                    .new_isr_with_epochs
                    .iter()
                    .map(|member| (member.broker_id.0, member.broker_epoch))
                    .unzip(),
            };
            changes.push(IsrChange {
                topic: name.clone(),
                partition: partition.partition_index,
                leader_epoch: partition.leader_epoch,
                partition_epoch: partition.partition_epoch,
                new_isr,
                new_isr_broker_epochs,
            });
            slots.push((topic_index, partition_index));
            partitions.push(answer);
        }
        answers.push(
            TopicAnswer::default()
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    let asked = AlterPartition {
        broker_id: body.broker_id.0,
        broker_epoch: body.broker_epoch,
        changes,
    };
    let response = match broker.controller.alter_partition_here(&asked) {
        Err(error) => AlterPartitionResponse::default().with_error_code(error.error.code()),
        Ok(outcomes) => {
            for ((topic_index, partition_index), outcome) in slots.into_iter().zip(outcomes) {
                let answer = &mut answers[topic_index].partitions[partition_index];
                match outcome {
                    Ok(state) => {
                        answer.leader_id = BrokerId(state.leader);
                        answer.leader_epoch = state.leader_epoch;
                        answer.isr = state.isr.iter().map(|id| BrokerId(*id)).collect();
                        answer.partition_epoch = state.partition_epoch;
                    }
                    Err(error) => answer.error_code = error.error.code(),
                }
            }
            AlterPartitionResponse::default().with_topics(answers)
        }
    };
    Ok(respond(&request, &response))
}

/// Runs a controller request here when this node is the active controller (or no other
/// controller can be reached, so that the local handler answers with NOT_CONTROLLER / a
/// timeout in the API's own response), else relays it to the active controller's listener.
/// [`forward_to_controller`] for a request the principal may not be allowed all of: the
/// controller listener trusts what brokers forward, so this node checks first. A request
/// with a refused part is answered here by `local`, which refuses those parts (the others
/// fail as a non-controller's commit does and are retried by the client).
pub fn forward_authorized(
    broker: &Arc<Node>,
    context: &Arc<RequestContext>,
    request: Request,
    authorized: fn(&Node, &RequestContext, &Request) -> bool,
    local: fn(&Arc<Node>, &RequestContext, Request) -> Result<Handled, RequestError>,
) -> Result<Handled, RequestError> {
    if context.enforces_authorization() && !authorized(broker, context, &request) {
        return local(broker, context, request);
    }
    forward_to_controller(broker, context, request, local)
}

pub fn forward_to_controller(
    broker: &Arc<Node>,
    context: &Arc<RequestContext>,
    request: Request,
    local: fn(&Arc<Node>, &RequestContext, Request) -> Result<Handled, RequestError>,
) -> Result<Handled, RequestError> {
    let quorum = broker.controller.quorum();
    if quorum.config().is_single_node() || quorum.is_active() {
        return local(broker, context, request);
    }
    let broker = broker.clone();
    let context = context.clone();
    Ok(Handled::Deferred(Box::pin(async move {
        let active = broker
            .controller
            .active_controller(ACTIVE_CONTROLLER_WAIT)
            .await;
        if let ActiveController::Peer(id, peer) = active {
            let (api_key, version) = (request.api_key, request.version);
            // A CreateTopics waits on the controller up to its own timeout_ms (bounded there).
            let timeout = match api_key {
                ApiKey::CreateTopics => crate::controller::CREATE_TOPICS_TIMEOUT_MAX + PEER_MARGIN,
                _ => crate::controller::peer::REQUEST_TIMEOUT,
            };
            match peer
                .send_raw_within(api_key, version, request.body.clone(), timeout)
                .await
            {
                Ok(body) => {
                    let mut output = BytesMut::with_capacity(body.len() + 16);
                    encode_response_header(
                        &mut output,
                        api_key,
                        version,
                        request.header.correlation_id,
                    );
                    output.extend_from_slice(&body);
                    return Some(ResponseFrame {
                        chunks: vec![Chunk::Bytes(output.freeze())],
                    });
                }
                Err(error) => {
                    tracing::warn!(controller = id, %error, ?api_key, "forwarding failed");
                }
            }
        }
        // Answer here: the commit fails with the API's own NOT_CONTROLLER / timeout error.
        let handled = tokio::task::spawn_blocking(move || local(&broker, &context, request).ok())
            .await
            .ok()??;
        match handled {
            Handled::Response(response) => Some(response),
            Handled::Deferred(future) => future.await,
            Handled::NoResponse => None,
        }
    })))
}
