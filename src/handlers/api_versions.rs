//! ApiVersions: the versions served, from `protocol::api_versions::SUPPORTED`. A request of a
//! version newer than served is answered in the v0 layout with UNSUPPORTED_VERSION and the
//! list, so the client can retry with a version both sides know.

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::protocol::api_versions::{self, SUPPORTED};
use crate::protocol::{encode_response, Request, RequestError, ResponseFrame};

const GROUP_VERSION_FEATURE: &str = "group.version";
const GROUP_VERSION: i16 = 1;
const FEATURES_EPOCH: i64 = 1;

pub fn handle(request: &Request) -> Result<ResponseFrame, RequestError> {
    handle_with(request, SUPPORTED)
}

/// ApiVersions for a listener serving `table` (the broker's, or the controller listener's).
pub fn handle_with(
    request: &Request,
    table: &[(ApiKey, api_versions::VersionRange)],
) -> Result<ResponseFrame, RequestError> {
    let served = api_versions::supported(ApiKey::ApiVersions).expect("ApiVersions is served");
    let api_keys = table
        .iter()
        .map(|(key, versions)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(versions.min)
                .with_max_version(versions.max)
        })
        .collect();
    let correlation_id = request.header.correlation_id;
    if request.version > served.max {
        let body = ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(api_keys);
        return Ok(encode_response(
            ApiKey::ApiVersions,
            0,
            correlation_id,
            &body,
        ));
    }
    let mut body = ApiVersionsResponse::default().with_api_keys(api_keys);
    if request.version >= 3 {
        // group.version 1 (KIP-848): Kafka 4 clients use the consumer group protocol only
        // where the cluster has finalized it. The feature is fixed here, not set by an admin,
        // so its epoch is constant.
        body = body
            .with_supported_features(vec![SupportedFeatureKey::default()
                .with_name(StrBytes::from_static_str(GROUP_VERSION_FEATURE))
                .with_min_version(0)
                .with_max_version(GROUP_VERSION)])
            .with_finalized_features_epoch(FEATURES_EPOCH)
            .with_finalized_features(vec![FinalizedFeatureKey::default()
                .with_name(StrBytes::from_static_str(GROUP_VERSION_FEATURE))
                .with_min_version_level(GROUP_VERSION)
                .with_max_version_level(GROUP_VERSION)]);
    }
    Ok(encode_response(
        ApiKey::ApiVersions,
        request.version,
        correlation_id,
        &body,
    ))
}
