//! SCRAM credential administration (KIP-554): DescribeUserScramCredentials (API 50), answered
//! from this node's metadata image, and AlterUserScramCredentials (API 51), committed by the
//! active controller (forwarded from elsewhere). Both are cluster-level: DESCRIBE and ALTER on
//! the cluster resource, as in Kafka.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::controller::security::ScramUpsertion;
use crate::handlers::context::RequestContext;
use crate::handlers::Handled;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};
use crate::security::{Operation, Resource};

fn str_bytes(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

pub fn describe_user_scram_credentials(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: DescribeUserScramCredentialsRequest = decode(&mut request.body, version)?;
    let mut response = DescribeUserScramCredentialsResponse::default();
    if !context.authorized(Operation::Describe, Resource::Cluster) {
        response = response
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes("Cluster authorization failed.".to_string())));
    } else {
        let image = broker.image();
        let describe = |user: &str| {
            let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user));
            match image.scram_credentials.get(user) {
                Some(credentials) => result.with_credential_infos(
                    credentials
                        .iter()
                        .map(|(mechanism, c)| {
                            CredentialInfo::default()
                                .with_mechanism(*mechanism)
                                .with_iterations(c.iterations)
                        })
                        .collect(),
                ),
                None => result
                    .with_error_code(ResponseError::ResourceNotFound.code())
                    .with_error_message(Some(str_bytes(format!(
                        "Attempt to describe a user credential that does not exist: {user}"
                    )))),
            }
        };
        let results = match &body.users {
            // No list (or an empty one): every user with a credential.
            None => image
                .scram_credentials
                .keys()
                .map(|u| describe(u))
                .collect(),
            Some(users) if users.is_empty() => image
                .scram_credentials
                .keys()
                .map(|u| describe(u))
                .collect(),
            Some(users) => {
                let mut times_named: HashMap<&str, usize> = HashMap::new();
                for user in users {
                    *times_named.entry(user.name.as_str()).or_default() += 1;
                }
                let mut answered = std::collections::HashSet::new();
                users
                    .iter()
                    .map(|u| u.name.as_str())
                    .filter(|u| answered.insert(*u))
                    .map(|user| {
                        if times_named[user] > 1 {
                            DescribeUserScramCredentialsResult::default()
                                .with_user(str_bytes(user))
                                .with_error_code(ResponseError::DuplicateResource.code())
                                .with_error_message(Some(str_bytes(format!(
                                    "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                                ))))
                        } else {
                            describe(user)
                        }
                    })
                    .collect()
            }
        };
        response = response.with_results(results);
    }
    Ok(encode_response(
        ApiKey::DescribeUserScramCredentials,
        version,
        request.header.correlation_id,
        &response,
    ))
}

/// Refused here when the principal may not alter the cluster; otherwise made by the active
/// controller (forwarded when that is another node).
pub fn alter_user_scram_credentials(
    broker: &Arc<Node>,
    context: &Arc<RequestContext>,
    request: Request,
) -> Result<Handled, RequestError> {
    if !context.authorized(Operation::Alter, Resource::Cluster) {
        return alter_refused(request).map(Handled::Response);
    }
    crate::handlers::quorum::forward_to_controller(broker, context, request, |b, _, r| {
        alter_here(b, r).map(Handled::Response)
    })
}

fn alter_refused(mut request: Request) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: AlterUserScramCredentialsRequest = decode(&mut request.body, version)?;
    let mut users: Vec<&StrBytes> = Vec::new();
    for name in body
        .deletions
        .iter()
        .map(|d| &d.name)
        .chain(body.upsertions.iter().map(|u| &u.name))
    {
        if !users.contains(&name) {
            users.push(name);
        }
    }
    let results = users
        .into_iter()
        .map(|user| {
            AlterUserScramCredentialsResult::default()
                .with_user(user.clone())
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                .with_error_message(Some(str_bytes("Cluster authorization failed.")))
        })
        .collect();
    let response = AlterUserScramCredentialsResponse::default().with_results(results);
    Ok(encode_response(
        ApiKey::AlterUserScramCredentials,
        version,
        request.header.correlation_id,
        &response,
    ))
}

fn alter_here(broker: &Node, mut request: Request) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: AlterUserScramCredentialsRequest = decode(&mut request.body, version)?;
    let deletions: Vec<(String, i8)> = body
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism))
        .collect();
    let upsertions: Vec<ScramUpsertion> = body
        .upsertions
        .iter()
        .map(|u| ScramUpsertion {
            name: u.name.to_string(),
            mechanism: u.mechanism,
            iterations: u.iterations,
            salt: u.salt.to_vec(),
            salted_password: u.salted_password.to_vec(),
        })
        .collect();
    let results = broker
        .controller
        .alter_user_scram_credentials(&deletions, &upsertions)
        .into_iter()
        .map(|(user, outcome)| {
            let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(user));
            match outcome {
                Ok(()) => result,
                Err(error) => result
                    .with_error_code(error.error.code())
                    .with_error_message(Some(str_bytes(error.message))),
            }
        })
        .collect();
    let response = AlterUserScramCredentialsResponse::default().with_results(results);
    Ok(encode_response(
        ApiKey::AlterUserScramCredentials,
        version,
        request.header.correlation_id,
        &response,
    ))
}
