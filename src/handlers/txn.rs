//! Producer-id and transaction APIs: InitProducerId (idempotent producers; transactional ids
//! once the transaction coordinator is in).

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};

/// InitProducerId without a transactional id: a fresh producer id at epoch 0, as Kafka does
/// for idempotent producers (a client that wants to reset its sequences asks for a new id).
pub fn init_producer_id(
    broker: &Broker,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: InitProducerIdRequest = decode(&mut request.body, version)?;
    let mut response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if body
        .transactional_id
        .as_ref()
        .is_some_and(|id| id.is_empty())
    {
        // As Kafka: an empty transactional id is neither idempotent-only nor a transaction.
        response = response.with_error_code(ResponseError::InvalidRequest.code());
    } else if body.transactional_id.is_some() {
        response = response.with_error_code(ResponseError::CoordinatorNotAvailable.code());
    } else {
        match broker.producer_ids.next_producer_id(&broker.controller) {
            Ok(id) => {
                response = response
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(0);
            }
            Err(error) => {
                tracing::error!(message = error.message, "producer id allocation failed");
                response = response.with_error_code(error.error.code());
            }
        }
    }
    Ok(encode_response(
        ApiKey::InitProducerId,
        version,
        request.header.correlation_id,
        &response,
    ))
}
