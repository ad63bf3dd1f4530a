//! ACL administration: DescribeAcls (API 29) from this node's metadata image, CreateAcls (30)
//! and DeleteAcls (31) committed by the active controller (forwarded from elsewhere).
//! DESCRIBE on the cluster to list, ALTER on the cluster to change, as in Kafka. A request
//! that names an unknown resource type, pattern type, operation or permission gets
//! INVALID_REQUEST for that binding or filter.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::controller::ApiError;
use crate::handlers::context::RequestContext;
use crate::handlers::Handled;
use crate::node::Node;
use crate::protocol::{decode, encode_response, Request, RequestError, ResponseFrame};
use crate::security::acl::{
    AclBinding, AclFilter, AclOperation, PatternType, Permission, ResourceType,
};
use crate::security::{Operation, Resource};

fn str_bytes(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

fn invalid(what: &str, code: i8) -> ApiError {
    ApiError::new(
        ResponseError::InvalidRequest,
        format!("Unknown {what} {code}"),
    )
}

/// Kafka's answer to the ACL APIs on a broker without an authorizer.
fn security_disabled() -> ApiError {
    ApiError::new(
        ResponseError::SecurityDisabled,
        "No Authorizer is configured.",
    )
}

fn cluster_denied() -> ApiError {
    ApiError::new(
        ResponseError::ClusterAuthorizationFailed,
        "Cluster authorization failed.",
    )
}

/// A filter from its wire codes; an unknown code (0 is UNKNOWN) is INVALID_REQUEST.
#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    resource_name: &Option<StrBytes>,
    pattern_type: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, ApiError> {
    Ok(AclFilter {
        resource_type: ResourceType::from_code(resource_type)
            .ok_or_else(|| invalid("resource type", resource_type))?,
        pattern_type: PatternType::from_code(pattern_type)
            .ok_or_else(|| invalid("pattern type", pattern_type))?,
        resource_name: resource_name.as_ref().map(|s| s.to_string()),
        principal: principal.as_ref().map(|s| s.to_string()),
        host: host.as_ref().map(|s| s.to_string()),
        operation: AclOperation::from_code(operation)
            .ok_or_else(|| invalid("operation", operation))?,
        permission: Permission::from_code(permission)
            .ok_or_else(|| invalid("permission type", permission))?,
    })
}

pub fn describe_acls(
    broker: &Node,
    context: &RequestContext,
    mut request: Request,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: DescribeAclsRequest = decode(&mut request.body, version)?;
    let outcome = if !broker.authorizer.enforces() {
        Err(security_disabled())
    } else if context.authorized(Operation::Describe, Resource::Cluster) {
        filter(
            body.resource_type_filter,
            &body.resource_name_filter,
            body.pattern_type_filter,
            &body.principal_filter,
            &body.host_filter,
            body.operation,
            body.permission_type,
        )
    } else {
        Err(cluster_denied())
    };
    let mut response = DescribeAclsResponse::default();
    match outcome {
        Err(error) => {
            response = response
                .with_error_code(error.error.code())
                .with_error_message(Some(str_bytes(error.message)));
        }
        Ok(filter) => {
            // Grouped by resource pattern, as Kafka answers.
            let image = broker.image();
            let mut resources: BTreeMap<(ResourceType, PatternType, &str), Vec<AclDescription>> =
                BTreeMap::new();
            for (_, acl) in image.acls.iter().filter(|(_, acl)| filter.matches(acl)) {
                resources
                    .entry((acl.resource_type, acl.pattern_type, &acl.resource_name))
                    .or_default()
                    .push(
                        AclDescription::default()
                            .with_principal(str_bytes(acl.principal.clone()))
                            .with_host(str_bytes(acl.host.clone()))
                            .with_operation(acl.operation.code())
                            .with_permission_type(acl.permission.code()),
                    );
            }
            response = response.with_resources(
                resources
                    .into_iter()
                    .map(|((kind, pattern, name), acls)| {
                        DescribeAclsResource::default()
                            .with_resource_type(kind.code())
                            .with_pattern_type(pattern.code())
                            .with_resource_name(str_bytes(name))
                            .with_acls(acls)
                    })
                    .collect(),
            );
        }
    }
    Ok(encode_response(
        ApiKey::DescribeAcls,
        version,
        request.header.correlation_id,
        &response,
    ))
}

/// Refused here when the principal may not alter the cluster; otherwise made by the active
/// controller (forwarded when that is another node).
pub fn create_acls(
    broker: &Arc<Node>,
    context: &Arc<RequestContext>,
    request: Request,
) -> Result<Handled, RequestError> {
    if !broker.authorizer.enforces() {
        return create_here(broker, request, Err(security_disabled())).map(Handled::Response);
    }
    if !context.authorized(Operation::Alter, Resource::Cluster) {
        return create_here(broker, request, Err(cluster_denied())).map(Handled::Response);
    }
    crate::handlers::quorum::forward_to_controller(broker, context, request, |b, _, r| {
        create_here(b, r, Ok(())).map(Handled::Response)
    })
}

/// `allowed`: Ok, or why every binding is refused.
fn create_here(
    broker: &Node,
    mut request: Request,
    allowed: Result<(), ApiError>,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: CreateAclsRequest = decode(&mut request.body, version)?;
    let bindings: Vec<Result<AclBinding, ApiError>> = body
        .creations
        .iter()
        .map(|c| {
            allowed.clone()?;
            Ok(AclBinding {
                resource_type: ResourceType::from_code(c.resource_type)
                    .ok_or_else(|| invalid("resource type", c.resource_type))?,
                pattern_type: PatternType::from_code(c.resource_pattern_type)
                    .ok_or_else(|| invalid("pattern type", c.resource_pattern_type))?,
                resource_name: c.resource_name.to_string(),
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: AclOperation::from_code(c.operation)
                    .ok_or_else(|| invalid("operation", c.operation))?,
                permission: Permission::from_code(c.permission_type)
                    .ok_or_else(|| invalid("permission type", c.permission_type))?,
            })
        })
        .collect();
    let valid: Vec<AclBinding> = bindings.iter().filter_map(|b| b.clone().ok()).collect();
    let mut created = broker.controller.create_acls(&valid).into_iter();
    let results = bindings
        .into_iter()
        .map(|binding| {
            let outcome = binding.and_then(|_| created.next().expect("one outcome per binding"));
            match outcome {
                Ok(()) => AclCreationResult::default(),
                Err(error) => AclCreationResult::default()
                    .with_error_code(error.error.code())
                    .with_error_message(Some(str_bytes(error.message))),
            }
        })
        .collect();
    let response = CreateAclsResponse::default().with_results(results);
    Ok(encode_response(
        ApiKey::CreateAcls,
        version,
        request.header.correlation_id,
        &response,
    ))
}

pub fn delete_acls(
    broker: &Arc<Node>,
    context: &Arc<RequestContext>,
    request: Request,
) -> Result<Handled, RequestError> {
    if !broker.authorizer.enforces() {
        return delete_here(broker, request, Err(security_disabled())).map(Handled::Response);
    }
    if !context.authorized(Operation::Alter, Resource::Cluster) {
        return delete_here(broker, request, Err(cluster_denied())).map(Handled::Response);
    }
    crate::handlers::quorum::forward_to_controller(broker, context, request, |b, _, r| {
        delete_here(b, r, Ok(())).map(Handled::Response)
    })
}

/// `allowed`: Ok, or why every filter is refused.
fn delete_here(
    broker: &Node,
    mut request: Request,
    allowed: Result<(), ApiError>,
) -> Result<ResponseFrame, RequestError> {
    let version = request.version;
    let body: DeleteAclsRequest = decode(&mut request.body, version)?;
    let filters: Vec<Result<AclFilter, ApiError>> = body
        .filters
        .iter()
        .map(|f| {
            allowed.clone()?;
            filter(
                f.resource_type_filter,
                &f.resource_name_filter,
                f.pattern_type_filter,
                &f.principal_filter,
                &f.host_filter,
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclFilter> = filters.iter().filter_map(|f| f.clone().ok()).collect();
    let deleted = if valid.is_empty() {
        Ok(Vec::new())
    } else {
        broker.controller.delete_acls(&valid)
    };
    let mut deleted_each = match &deleted {
        Ok(each) => each.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let results = filters
        .into_iter()
        .map(|f| {
            let outcome = f.and_then(|_| match &deleted {
                Ok(_) => Ok(deleted_each.next().expect("one answer per filter")),
                Err(error) => Err(error.clone()),
            });
            match outcome {
                Ok(acls) => DeleteAclsFilterResult::default().with_matching_acls(
                    acls.into_iter()
                        .map(|acl| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(acl.resource_type.code())
                                .with_resource_name(str_bytes(acl.resource_name))
                                .with_pattern_type(acl.pattern_type.code())
                                .with_principal(str_bytes(acl.principal))
                                .with_host(str_bytes(acl.host))
                                .with_operation(acl.operation.code())
                                .with_permission_type(acl.permission.code())
                        })
                        .collect(),
                ),
                Err(error) => DeleteAclsFilterResult::default()
                    .with_error_code(error.error.code())
                    .with_error_message(Some(str_bytes(error.message))),
            }
        })
        .collect();
    let response = DeleteAclsResponse::default().with_filter_results(results);
    Ok(encode_response(
        ApiKey::DeleteAcls,
        version,
        request.header.correlation_id,
        &response,
    ))
}
