//! Kafka's default OAUTHBEARER validator (`OAuthBearerUnsecuredValidatorCallbackHandler`):
//! unsigned JWTs (`alg` "none", empty signature), for development and Kafka's quick start.
//! Its options come from the listener's OAuthBearerLoginModule JAAS entry:
//! `unsecuredValidatorPrincipalClaimName` (default `sub`), `unsecuredValidatorScopeClaimName`
//! (default `scope`), `unsecuredValidatorRequiredScope` (space-separated scopes every token
//! must hold) and `unsecuredValidatorAllowableClockSkewMs` (default 0).

use std::collections::BTreeMap;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde_json::Value;

use super::claims::{self, Claims};
use super::{TokenRejected, TokenValidator, ValidToken};

/// Base64url as Java's URL decoder reads it: padding optional.
const BASE64_URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Debug, PartialEq, Eq)]
pub struct UnsecuredValidator {
    principal_claim: String,
    scope_claim: String,
    required_scope: Vec<String>,
    allowable_clock_skew_ms: i64,
}

impl UnsecuredValidator {
    /// From the JAAS options of the listener's OAuthBearerLoginModule (others are ignored,
    /// as Kafka ignores them); a bad option is an error naming it.
    pub fn from_options(options: &BTreeMap<String, String>) -> Result<UnsecuredValidator, String> {
        let text = |name: &str, default: &str| {
            options
                .get(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        let allowable_clock_skew_ms = match options.get("unsecuredValidatorAllowableClockSkewMs") {
            None => 0,
            Some(value) => value
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|ms| *ms >= 0)
                .ok_or("unsecuredValidatorAllowableClockSkewMs: not a non-negative integer")?,
        };
        Ok(UnsecuredValidator {
            principal_claim: text("unsecuredValidatorPrincipalClaimName", "sub"),
            scope_claim: text("unsecuredValidatorScopeClaimName", "scope"),
            required_scope: options
                .get("unsecuredValidatorRequiredScope")
                .map(|s| s.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            allowable_clock_skew_ms,
        })
    }
}

/// A base64url JSON object of a compact serialization.
fn json_object(part: &str, what: &str) -> Result<Claims, TokenRejected> {
    let bytes = BASE64_URL
        .decode(part)
        .map_err(|_| TokenRejected::invalid(format!("{what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(TokenRejected::invalid(format!(
            "{what} is not a JSON object"
        ))),
    }
}

impl TokenValidator for UnsecuredValidator {
    fn validate(&self, token: &str, now_ms: i64) -> Result<ValidToken, TokenRejected> {
        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, signature] = parts[..] else {
            return Err(TokenRejected::invalid(
                "an unsecured JWS has 3 dot-separated parts",
            ));
        };
        if header.is_empty() || payload.is_empty() {
            return Err(TokenRejected::invalid("empty JWS part"));
        }
        let header = json_object(header, "JWS header")?;
        if header.get("alg") != Some(&Value::String("none".into())) {
            return Err(TokenRejected::invalid(
                "an unsecured JWS must have 'none' for an algorithm",
            ));
        }
        if !signature.is_empty() {
            return Err(TokenRejected::invalid(
                "an unsecured JWS must not contain a signature",
            ));
        }
        let claims = json_object(payload, "JWT claims")?;
        let token = claims::valid_token(
            &claims,
            &self.principal_claim,
            &self.scope_claim,
            now_ms,
            self.allowable_clock_skew_ms,
        )?;
        if let Some(missing) = self
            .required_scope
            .iter()
            .find(|s| !token.scope.contains(s))
        {
            return Err(TokenRejected {
                status: "insufficient_scope",
                scope: Some(self.required_scope.join(" ")),
                reason: format!("scope {missing} is required"),
            });
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_700_000_000_000;

    fn token(claims: serde_json::Value) -> String {
        let header = BASE64_URL.encode(br#"{"alg":"none"}"#);
        let claims = BASE64_URL.encode(claims.to_string());
        format!("{header}.{claims}.")
    }

    fn validator(options: &[(&str, &str)]) -> UnsecuredValidator {
        let options = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        UnsecuredValidator::from_options(&options).unwrap()
    }

    #[test]
    fn accepts_what_kafkas_unsecured_login_makes() {
        // OAuthBearerUnsecuredLoginCallbackHandler: sub, iat, exp (seconds), scope optional.
        let good =
            token(serde_json::json!({"sub": "alice", "iat": 1_699_999_990, "exp": 1_700_003_600}));
        assert_eq!(
            validator(&[]).validate(&good, NOW_MS),
            Ok(ValidToken {
                principal: "alice".into(),
                expires_at_ms: 1_700_003_600_000,
                scope: Vec::new()
            })
        );
    }

    #[test]
    fn refuses_bad_tokens() {
        let v = validator(&[]);
        let exp = 1_700_003_600;
        let expired = token(serde_json::json!({"sub": "alice", "exp": 1_699_999_999}));
        assert!(v.validate(&expired, NOW_MS).is_err());
        // Within the allowed skew it passes.
        let skewed = validator(&[("unsecuredValidatorAllowableClockSkewMs", "5000")]);
        assert!(skewed.validate(&expired, NOW_MS).is_ok());
        for claims in [
            serde_json::json!({"exp": exp}),
            serde_json::json!({"sub": "", "exp": exp}),
            serde_json::json!({"sub": 7, "exp": exp}),
            serde_json::json!({"sub": "alice"}),
            serde_json::json!({"sub": "alice", "exp": "soon"}),
            serde_json::json!({"sub": "alice", "exp": exp, "iat": exp}),
            serde_json::json!({"sub": "alice", "exp": exp, "iat": 1_700_000_100}),
            serde_json::json!({"sub": "alice", "exp": exp, "scope": 3}),
        ] {
            assert!(
                v.validate(&token(claims.clone()), NOW_MS).is_err(),
                "{claims}"
            );
        }
        let claims = BASE64_URL.encode(serde_json::json!({"sub": "a", "exp": exp}).to_string());
        let signed_header = BASE64_URL.encode(br#"{"alg":"RS256"}"#);
        let none_header = BASE64_URL.encode(br#"{"alg":"none"}"#);
        for bad in [
            "".to_string(),
            "garbage".to_string(),
            format!("{none_header}.{claims}"),
            format!("{none_header}.{claims}.sig"),
            format!("{signed_header}.{claims}."),
            format!("{none_header}..{claims}"),
            format!("{none_header}.!!!."),
            format!("{none_header}.{claims}.."),
            format!("{}.{claims}.", BASE64_URL.encode(b"[1]")),
        ] {
            assert!(v.validate(&bad, NOW_MS).is_err(), "{bad}");
        }
    }

    #[test]
    fn honours_the_jaas_options() {
        let v = validator(&[
            ("unsecuredValidatorPrincipalClaimName", "client_id"),
            ("unsecuredValidatorScopeClaimName", "scp"),
            ("unsecuredValidatorRequiredScope", "read write"),
        ]);
        let exp = 1_700_003_600;
        let both =
            token(serde_json::json!({"client_id": "svc", "scp": ["read", "write"], "exp": exp}));
        assert_eq!(v.validate(&both, NOW_MS).unwrap().principal, "svc");
        let one = token(serde_json::json!({"client_id": "svc", "scp": "read", "exp": exp}));
        let refused = v.validate(&one, NOW_MS).unwrap_err();
        assert_eq!(refused.status, "insufficient_scope");
        assert_eq!(refused.scope.as_deref(), Some("read write"));
        let bad_skew = [(
            "unsecuredValidatorAllowableClockSkewMs".to_string(),
            "-1".to_string(),
        )];
        assert!(UnsecuredValidator::from_options(&bad_skew.into_iter().collect()).is_err());
    }
}
