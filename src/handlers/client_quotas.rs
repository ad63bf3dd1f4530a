//! DescribeClientQuotas (API 48). dlog enforces no client quotas yet and AlterClientQuotas is
//! not served, so no quota is ever set: every describe answers with no entries. It is served
//! because Kafka's tools ask it before anything else about users (`kafka-configs --describe
//! --entity-type users` lists quotas, then SCRAM credentials).

use kafka_protocol::messages::{ApiKey, DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::handlers::context::RequestContext;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};
use crate::security::{Operation, Resource};

/// Kafka's quota entity types and filter match types.
const ENTITY_TYPES: &[&str] = &["user", "client-id", "ip"];
const MATCH_EXACT: i8 = 0;
const MATCH_SPECIFIED: i8 = 2;

pub fn describe_client_quotas(
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: DescribeClientQuotasRequest = decode(&mut request.body, version)?;
    let refused = |error: ResponseError, message: String| {
        DescribeClientQuotasResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    let invalid = body.components.iter().find_map(|c| {
        if !ENTITY_TYPES.contains(&c.entity_type.as_str()) {
            Some(format!("Unexpected quota entity type {}", c.entity_type.as_str()))
        } else if !(MATCH_EXACT..=MATCH_SPECIFIED).contains(&c.match_type) {
            Some(format!("Unexpected match type {}", c.match_type))
        } else {
            None
        }
    });
    // Kafka: DESCRIBE_CONFIGS on the cluster.
    let response = if !context.authorized(Operation::DescribeConfigs, Resource::Cluster) {
        refused(
            ResponseError::ClusterAuthorizationFailed,
            "Cluster authorization failed.".to_string(),
        )
    } else if let Some(message) = invalid {
        refused(ResponseError::InvalidRequest, message)
    } else {
        DescribeClientQuotasResponse::default().with_entries(Some(Vec::new()))
    };
    Ok(encode_response(
        ApiKey::DescribeClientQuotas,
        version,
        request.header.correlation_id,
        &response,
    ))
}
