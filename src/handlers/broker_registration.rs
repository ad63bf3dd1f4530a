//! BrokerRegistration and BrokerHeartbeat: brokers joining the cluster and keeping their
//! session with the active controller (served on the controller listener).

use kafka_protocol::messages::{
    ApiKey, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerRegistrationRequest,
    BrokerRegistrationResponse,
};
use kafka_protocol::ResponseError;

use crate::controller::records::BrokerEndpoint;
use crate::controller::registration::{Heartbeat, Registration};
use crate::handlers::context::RequestContext;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};

/// Listeners one registration may carry; Kafka brokers have a handful.
const LISTENERS_MAX: usize = 16;
/// Kafka's limit on a listener name or host; also bounds what lands in the metadata log.
const NAME_LENGTH_MAX: usize = 255;

pub fn broker_registration(
    broker: &Node,
    _context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: BrokerRegistrationRequest = decode(&mut request.body, version)?;
    let result = if body.cluster_id.as_str() != broker.cluster_id {
        tracing::warn!(
            broker_id = body.broker_id.0,
            cluster_id = body.cluster_id.as_str(),
            "registration from another cluster refused"
        );
        Err(ResponseError::InconsistentClusterId)
    } else if body.broker_id.0 < 0
        || body.listeners.is_empty()
        || body.listeners.len() > LISTENERS_MAX
        || body.listeners.iter().any(|l| {
            l.name.len() > NAME_LENGTH_MAX || l.host.len() > NAME_LENGTH_MAX || l.port == 0
        })
        || body
            .rack
            .as_ref()
            .is_some_and(|r| r.len() > NAME_LENGTH_MAX)
    {
        Err(ResponseError::InvalidRequest)
    } else {
        let registration = Registration {
            broker_id: body.broker_id.0,
            incarnation_id: body.incarnation_id,
            endpoints: body
                .listeners
                .iter()
                .map(|l| BrokerEndpoint {
                    name: l.name.to_string(),
                    host: l.host.to_string(),
                    port: l.port,
                    security_protocol: l.security_protocol,
                })
                .collect(),
            rack: body.rack.as_ref().map(|r| r.to_string()),
        };
        broker
            .controller
            .register_broker(&registration)
            .map_err(|error| {
                tracing::warn!(
                    broker_id = body.broker_id.0,
                    message = error.message,
                    "registration refused"
                );
                error.error
            })
    };
    let response = match result {
        Ok(epoch) => BrokerRegistrationResponse::default().with_broker_epoch(epoch),
        Err(error) => BrokerRegistrationResponse::default()
            .with_error_code(error.code())
            .with_broker_epoch(-1),
    };
    Ok(encode_response(
        ApiKey::BrokerRegistration,
        version,
        request.header.correlation_id,
        &response,
    ))
}

pub fn broker_heartbeat(
    broker: &Node,
    _context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: BrokerHeartbeatRequest = decode(&mut request.body, version)?;
    let heartbeat = Heartbeat {
        broker_id: body.broker_id.0,
        broker_epoch: body.broker_epoch,
        want_fence: body.want_fence,
        want_shutdown: body.want_shut_down,
        metadata_offset: body.current_metadata_offset,
    };
    let response = match broker.controller.broker_heartbeat(&heartbeat) {
        Ok(reply) => BrokerHeartbeatResponse::default()
            .with_is_caught_up(reply.is_caught_up)
            .with_is_fenced(reply.is_fenced)
            .with_should_shut_down(reply.should_shutdown),
        Err(error) => BrokerHeartbeatResponse::default()
            .with_error_code(error.error.code())
            .with_is_fenced(true),
    };
    Ok(encode_response(
        ApiKey::BrokerHeartbeat,
        version,
        request.header.correlation_id,
        &response,
    ))
}
