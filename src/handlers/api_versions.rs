//! ApiVersions: the versions served, from `protocol::api_versions::SUPPORTED`. A request of a
//! version newer than served is answered in the v0 layout with UNSUPPORTED_VERSION and the
//! list, so the client can retry with a version both sides know.

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::coordinator::transaction::{
    TRANSACTION_VERSION_FINALIZED, TRANSACTION_VERSION_SUPPORTED_MAX,
};
use crate::protocol::api_versions::{self, SUPPORTED};
use crate::protocol::{encode_response, Request, RequestError, ResponseFrame};

const GROUP_VERSION_FEATURE: &str = "group.version";
const GROUP_VERSION: i16 = 1;
/// share.version 1 (KIP-932): Kafka 4.1+ serves share groups once it is finalized at 1.
const SHARE_VERSION_FEATURE: &str = "share.version";
const SHARE_VERSION: i16 = 1;
const FEATURES_EPOCH: i64 = 1;
/// transaction.version (KIP-890): at 2 Kafka 4 clients use transactions v2 (no
/// AddPartitionsToTxn for produce, EndTxn v5 with an epoch bump per transaction).
const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";

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
        // share.version 1 likewise: the share-group APIs are advertised with it.
        // (name, supported max, finalized level)
        let features = [
            (GROUP_VERSION_FEATURE, GROUP_VERSION, GROUP_VERSION),
            (SHARE_VERSION_FEATURE, SHARE_VERSION, SHARE_VERSION),
            (
                TRANSACTION_VERSION_FEATURE,
                TRANSACTION_VERSION_SUPPORTED_MAX,
                TRANSACTION_VERSION_FINALIZED,
            ),
        ];
        body = body
            .with_supported_features(
                features
                    .iter()
                    .map(|(name, max, _)| {
                        SupportedFeatureKey::default()
                            .with_name(StrBytes::from_static_str(name))
                            .with_min_version(0)
                            .with_max_version(*max)
                    })
                    .collect(),
            )
            .with_finalized_features_epoch(FEATURES_EPOCH)
            .with_finalized_features(
                features
                    .iter()
                    // Kafka lists only features finalized above 0.
                    .filter(|(_, _, level)| *level > 0)
                    .map(|(name, _, level)| {
                        FinalizedFeatureKey::default()
                            .with_name(StrBytes::from_static_str(name))
                            .with_min_version_level(*level)
                            .with_max_version_level(*level)
                    })
                    .collect(),
            );
    }
    Ok(encode_response(
        ApiKey::ApiVersions,
        request.version,
        correlation_id,
        &body,
    ))
}
