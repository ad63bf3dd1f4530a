//! Client quotas: DescribeClientQuotas (API 48), answered from this node's metadata image with
//! Kafka's filter semantics, and AlterClientQuotas (API 49), committed by the active controller
//! (forwarded from elsewhere) as `ClientQuota` records. Kafka's checks: DESCRIBE_CONFIGS and
//! ALTER_CONFIGS on the cluster. Enforcement lives in `security::quota::QuotaManager`, asked by
//! Produce and Fetch (byte rates), the dispatcher (request time) and the topic admin APIs
//! (controller mutations), each through a [`QuotaClient`].

use std::sync::Arc;

use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlterEntityData, EntryData as AlterEntryData,
};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::controller::security::QuotaAlteration;
use crate::controller::ApiError;
use crate::handlers::context::{ConnectionMute, RequestContext};
use crate::handlers::Handled;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};
use crate::security::quota::{
    ControllerMutationQuota, MatchType, QuotaType, ENTITY_CLIENT_ID, ENTITY_IP, ENTITY_USER,
};
use crate::security::{Operation, Resource};

/// Kafka's filter match types (`ClientQuotaFilterComponent`).
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_SPECIFIED: i8 = 2;

fn str_bytes(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// Kafka's checks of a describe filter (ClientQuotasImage.describe): the components it asks
/// for, or the error code and message to answer.
fn filter_components(
    body: &DescribeClientQuotasRequest,
) -> Result<Vec<(String, MatchType)>, (ResponseError, String)> {
    let invalid = |m: String| (ResponseError::InvalidRequest, m);
    let mut components: Vec<(String, MatchType)> = Vec::with_capacity(body.components.len());
    for component in &body.components {
        let entity_type = component.entity_type.as_str();
        if entity_type.is_empty() {
            return Err(invalid("Invalid empty entity type.".to_string()));
        }
        if components.iter().any(|(t, _)| t == entity_type) {
            return Err(invalid(format!(
                "Entity type {entity_type} cannot appear more than once in the filter."
            )));
        }
        if ![ENTITY_USER, ENTITY_CLIENT_ID, ENTITY_IP].contains(&entity_type) {
            return Err((
                ResponseError::UnsupportedVersion,
                format!("Unsupported entity type {entity_type}"),
            ));
        }
        let name = component._match.as_ref().map(|m| m.to_string());
        let match_type =
            match component.match_type {
                MATCH_EXACT => match name {
                    Some(name) => MatchType::Exact(Some(name)),
                    None => {
                        return Err(invalid(
                            "Request specified MATCH_TYPE_EXACT, but set match string to null."
                                .to_string(),
                        ))
                    }
                },
                MATCH_DEFAULT if name.is_none() => MatchType::Exact(None),
                MATCH_DEFAULT => {
                    return Err(invalid(
                        "Request specified MATCH_TYPE_DEFAULT, but also specified a match string."
                            .to_string(),
                    ))
                }
                MATCH_SPECIFIED if name.is_none() => MatchType::Specified,
                MATCH_SPECIFIED => return Err(invalid(
                    "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string."
                        .to_string(),
                )),
                other => {
                    return Err((
                        ResponseError::UnsupportedVersion,
                        format!("Unknown match type {other}"),
                    ))
                }
            };
        components.push((entity_type.to_string(), match_type));
    }
    let has = |t: &str| components.iter().any(|(entity_type, _)| entity_type == t);
    if has(ENTITY_IP) && (has(ENTITY_USER) || has(ENTITY_CLIENT_ID)) {
        return Err(invalid("Invalid entity filter component combination. IP filter component should not be used with user or clientId filter component.".to_string()));
    }
    Ok(components)
}

pub fn describe_client_quotas(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: DescribeClientQuotasRequest = decode(&mut request.body, version)?;
    let refused = |error: ResponseError, message: String| {
        DescribeClientQuotasResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)))
    };
    let response = if !context.authorized(Operation::DescribeConfigs, Resource::Cluster) {
        refused(
            ResponseError::ClusterAuthorizationFailed,
            "Cluster authorization failed.".to_string(),
        )
    } else {
        match filter_components(&body) {
            Err((error, message)) => refused(error, message),
            Ok(components) => {
                let image = broker.image();
                let entries = image
                    .client_quotas
                    .describe(&components, body.strict)
                    .map(|(entity, values)| {
                        EntryData::default()
                            .with_entity(
                                entity
                                    .parts()
                                    .iter()
                                    .map(|(entity_type, name)| {
                                        EntityData::default()
                                            .with_entity_type(str_bytes(entity_type.clone()))
                                            .with_entity_name(name.clone().map(str_bytes))
                                    })
                                    .collect(),
                            )
                            .with_values(
                                values
                                    .iter()
                                    .map(|(key, value)| {
                                        ValueData::default()
                                            .with_key(str_bytes(key.clone()))
                                            .with_value(*value)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                DescribeClientQuotasResponse::default().with_entries(Some(entries))
            }
        }
    };
    Ok(encode_response(
        ApiKey::DescribeClientQuotas,
        version,
        request.header.correlation_id,
        &response,
    ))
}

/// Refused here when the principal may not alter the cluster's configs; otherwise made by the
/// active controller (forwarded when that is another node).
pub fn alter_client_quotas(
    broker: &Arc<Node>,
    context: &Arc<RequestContext>,
    request: Request,
) -> Result<Handled, RequestError> {
    if !context.authorized(Operation::AlterConfigs, Resource::Cluster) {
        return alter_answer(request, |_| {
            Err((
                ResponseError::ClusterAuthorizationFailed,
                "Cluster authorization failed.".to_string(),
            ))
        })
        .map(Handled::Response);
    }
    crate::handlers::quorum::forward_to_controller(broker, context, request, |b, _, r| {
        alter_here(b, r).map(Handled::Response)
    })
}

fn alter_here(broker: &Node, request: Request) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: AlterClientQuotasRequest = decode(&mut request.body.clone(), version)?;
    let alterations: Vec<QuotaAlteration> = body
        .entries
        .iter()
        .map(|entry| QuotaAlteration {
            entity: entry
                .entity
                .iter()
                .map(|e| {
                    (
                        e.entity_type.to_string(),
                        e.entity_name.as_ref().map(|n| n.to_string()),
                    )
                })
                .collect(),
            operations: entry
                .ops
                .iter()
                .map(|op| (op.key.to_string(), (!op.remove).then_some(op.value)))
                .collect(),
        })
        .collect();
    let mut outcomes = broker
        .controller
        .alter_client_quotas(&alterations, body.validate_only)
        .into_iter();
    alter_answer(request, |_| match outcomes.next() {
        Some(Ok(())) | None => Ok(()),
        Some(Err(error)) => Err((error.error, error.message)),
    })
}

/// The response: one entry per request entry, its entity echoed, its outcome from `outcome`.
fn alter_answer(
    mut request: Request,
    mut outcome: impl FnMut(usize) -> Result<(), (ResponseError, String)>,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: AlterClientQuotasRequest = decode(&mut request.body, version)?;
    let entries = body
        .entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let answer = AlterEntryData::default().with_entity(
                entry
                    .entity
                    .iter()
                    .map(|e| {
                        AlterEntityData::default()
                            .with_entity_type(e.entity_type.clone())
                            .with_entity_name(e.entity_name.clone())
                    })
                    .collect(),
            );
            match outcome(index) {
                Ok(()) => answer,
                Err((error, message)) => answer
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(message))),
            }
        })
        .collect();
    let response = AlterClientQuotasResponse::default().with_entries(entries);
    Ok(encode_response(
        ApiKey::AlterClientQuotas,
        version,
        request.header.correlation_id,
        &response,
    ))
}

/// Who a request's bytes count against (the principal's user, the header's client id) and
/// the connection to mute when it is over its quota. Cloned into deferred responses.
#[derive(Clone)]
pub struct QuotaClient {
    user: String,
    client_id: String,
    mute: Arc<ConnectionMute>,
    exempt: bool,
}

impl QuotaClient {
    pub fn of(context: &RequestContext, request: &Request) -> QuotaClient {
        QuotaClient {
            user: context.quota_user().to_string(),
            client_id: request
                .header
                .client_id
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default(),
            mute: context.mute().clone(),
            exempt: context.quota_exempt,
        }
    }

    /// The client of a request of `client_id` on `context`'s connection (the dispatcher's,
    /// which reads the client id before the handler decodes the request).
    pub fn of_client_id(context: &RequestContext, client_id: &str) -> QuotaClient {
        QuotaClient {
            user: context.quota_user().to_string(),
            client_id: client_id.to_string(),
            mute: context.mute().clone(),
            exempt: context.quota_exempt,
        }
    }

    /// Records `handling_ns` spent handling a request against this client's
    /// `request_percentage` and returns the throttle time (ms) for the response; when it is
    /// not 0 the connection is muted that long and it is counted.
    pub fn record_request_time(&self, broker: &Node, handling_ns: u64) -> i32 {
        if self.exempt {
            return 0;
        }
        let image = broker.image();
        let throttle_ms = broker.quotas.record_request_time(
            &image.client_quotas,
            &self.user,
            &self.client_id,
            handling_ns,
            crate::clock::now_ms().max(0) as u64,
        );
        self.throttled(QuotaType::Request, throttle_ms)
    }

    /// This request's controller mutation quota (KIP-599): strict from the request version
    /// that may answer THROTTLING_QUOTA_EXCEEDED, permissive before; none when exempt.
    pub fn mutation_quota(&self, broker: &Node, strict: bool) -> ControllerMutationQuota {
        let image = broker.image();
        let none = crate::security::quota::ClientQuotas::default();
        let quotas = if self.exempt {
            &none
        } else {
            &image.client_quotas
        };
        broker
            .quotas
            .mutation_quota(quotas, &self.user, &self.client_id, strict)
    }

    /// Charges `partitions` created or deleted; Err: refused (strict, the bucket is empty),
    /// with Kafka's THROTTLING_QUOTA_EXCEEDED.
    pub fn record_mutation(
        &self,
        broker: &Node,
        quota: &mut ControllerMutationQuota,
        partitions: u32,
    ) -> Result<(), ApiError> {
        let now_ms = crate::clock::now_ms().max(0) as u64;
        broker
            .quotas
            .record_mutation(quota, partitions, now_ms)
            .map_err(|_| {
                ApiError::new(
                    ResponseError::ThrottlingQuotaExceeded,
                    "The throttling quota has been exceeded.",
                )
            })
    }

    /// The response's throttle time after the request's mutations; mutes and counts as
    /// [`QuotaClient::record`] does.
    pub fn mutation_throttle_ms(&self, quota: &ControllerMutationQuota) -> i32 {
        self.throttled(QuotaType::ControllerMutation, quota.throttle_ms())
    }

    fn throttled(&self, quota: QuotaType, throttle_ms: u64) -> i32 {
        if throttle_ms > 0 {
            self.mute.mute_for(throttle_ms);
            crate::metrics::quota_throttled(quota.name(), throttle_ms);
        }
        throttle_ms.min(i32::MAX as u64) as i32
    }

    /// Records `bytes` against this client's `quota` and returns the throttle time (ms) for
    /// the response; when it is not 0 the connection is muted that long and it is counted.
    pub fn record(&self, broker: &Node, quota: QuotaType, bytes: u64) -> i32 {
        let image = broker.image();
        let throttle_ms = broker.quotas.record(
            &image.client_quotas,
            quota,
            &self.user,
            &self.client_id,
            bytes,
            crate::clock::now_ms().max(0) as u64,
        );
        self.throttled(quota, throttle_ms)
    }

    /// The most bytes one response may carry under this client's `quota` (None: no quota).
    pub fn max_bytes_in_window(&self, broker: &Node, quota: QuotaType) -> Option<u64> {
        let image = broker.image();
        broker
            .quotas
            .max_bytes_in_window(&image.client_quotas, quota, &self.user, &self.client_id)
    }

    /// Takes back bytes recorded but not sent (a throttled fetch answers no records).
    pub fn unrecord(&self, broker: &Node, quota: QuotaType, bytes: u64) {
        let image = broker.image();
        broker.quotas.unrecord(
            &image.client_quotas,
            quota,
            &self.user,
            &self.client_id,
            bytes,
            crate::clock::now_ms().max(0) as u64,
        );
    }
}
