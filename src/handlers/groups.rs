//! Consumer-group APIs. The group coordinator is issue 3; until it exists FindCoordinator is
//! served and answers COORDINATOR_NOT_AVAILABLE (retriable, what Kafka answers while its
//! coordinator is loading), for two reasons: clients that only assign partitions keep
//! working, and librdkafka enables LZ4 only for brokers that advertise FindCoordinator.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};

/// First version that looks up a batch of keys.
const BATCHED_VERSION: i16 = 4;

pub fn find_coordinator(
    broker: &crate::broker::Broker,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: FindCoordinatorRequest = decode(&mut request.body, version)?;
    // Transactional ids (key type 1) are served by the transaction coordinator (issue 4).
    if body.key_type == crate::handlers::txn::COORDINATOR_KEY_TYPE_TRANSACTION {
        return Ok(crate::handlers::txn::find_transaction_coordinator(
            broker,
            &body,
            version,
            request.header.correlation_id,
        ));
    }
    let error = ResponseError::CoordinatorNotAvailable;
    let message = || {
        Some(StrBytes::from_static_str(
            "The coordinator is not available.",
        ))
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= BATCHED_VERSION {
        let coordinators = body
            .coordinator_keys
            .iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(error.code())
                    .with_error_message(message())
            })
            .collect();
        response = response.with_coordinators(coordinators);
    } else {
        response = response
            .with_error_code(error.code())
            .with_node_id(BrokerId(-1))
            .with_port(-1);
        if version >= 1 {
            response = response.with_error_message(message());
        }
    }
    Ok(encode_response(
        ApiKey::FindCoordinator,
        version,
        request.header.correlation_id,
        &response,
    ))
}
