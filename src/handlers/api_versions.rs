//! ApiVersions: the versions served, from `protocol::api_versions::SUPPORTED`. A request of a
//! version newer than served is answered in the v0 layout with UNSUPPORTED_VERSION and the
//! list, so the client can retry with a version both sides know.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use crate::protocol::api_versions::{self, SUPPORTED};
use crate::protocol::{encode_response, Request, RequestError, ResponseFrame};

pub fn handle(request: &Request) -> Result<ResponseFrame, RequestError> {
    let served = api_versions::supported(ApiKey::ApiVersions).expect("ApiVersions is served");
    let api_keys = SUPPORTED
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
    let body = ApiVersionsResponse::default().with_api_keys(api_keys);
    Ok(encode_response(
        ApiKey::ApiVersions,
        request.version,
        correlation_id,
        &body,
    ))
}
