//! Reading a JWT's claims the way Kafka's validators do (`ClaimValidationUtils`,
//! `OAuthBearerUnsecuredJws`): the principal claim, the scope, and the times.

use serde_json::{Map, Value};

use super::{TokenRejected, ValidToken};

pub type Claims = Map<String, Value>;

/// The principal: a non-blank string claim named `name`, trimmed.
pub fn principal(claims: &Claims, name: &str) -> Result<String, TokenRejected> {
    match claims.get(name) {
        Some(Value::String(value)) if !value.trim().is_empty() => Ok(value.trim().to_string()),
        Some(_) => Err(TokenRejected::invalid(format!(
            "the principal claim {name} is not a non-empty string"
        ))),
        None => Err(TokenRejected::invalid(format!("no principal claim {name}"))),
    }
}

/// The scope claim: one string is one scope (Kafka does not split it), a list holds several;
/// absent is empty.
pub fn scope(claims: &Claims, name: &str) -> Result<Vec<String>, TokenRejected> {
    let not_text = || TokenRejected::invalid(format!("the scope claim {name} is not text"));
    match claims.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(value)) if value.trim().is_empty() => Ok(Vec::new()),
        Some(Value::String(value)) => Ok(vec![value.trim().to_string()]),
        Some(Value::Array(values)) => {
            let mut scope = Vec::new();
            for value in values {
                let Value::String(value) = value else {
                    return Err(not_text());
                };
                if !value.trim().is_empty() && !scope.iter().any(|s| s == value.trim()) {
                    scope.push(value.trim().to_string());
                }
            }
            Ok(scope)
        }
        Some(_) => Err(not_text()),
    }
}

/// A NumericDate claim (seconds since the epoch, possibly fractional) in ms; None when absent.
pub fn time_ms(claims: &Claims, name: &str) -> Result<Option<i64>, TokenRejected> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(seconds)) => match seconds.as_f64() {
            Some(seconds) if seconds.is_finite() && seconds.abs() < 1e14 => {
                Ok(Some((seconds * 1000.0) as i64))
            }
            _ => Err(TokenRejected::invalid(format!("claim {name} out of range"))),
        },
        Some(_) => Err(TokenRejected::invalid(format!(
            "claim {name} is not a number"
        ))),
    }
}

/// The expiration time, which every token must have, in ms.
pub fn expiration_ms(claims: &Claims) -> Result<i64, TokenRejected> {
    time_ms(claims, "exp")?.ok_or_else(|| TokenRejected::invalid("no exp claim"))
}

/// Checks `exp`, `iat` and `nbf` against `now_ms` with `skew_ms` of tolerance; returns `exp`.
pub fn check_times(claims: &Claims, now_ms: i64, skew_ms: i64) -> Result<i64, TokenRejected> {
    let expires_at_ms = expiration_ms(claims)?;
    if now_ms > expires_at_ms.saturating_add(skew_ms) {
        return Err(TokenRejected::invalid(format!(
            "expired: now {now_ms} ms is past exp {expires_at_ms} ms (clock skew {skew_ms} ms)"
        )));
    }
    if let Some(issued_at_ms) = time_ms(claims, "iat")? {
        if issued_at_ms > now_ms.saturating_add(skew_ms) {
            return Err(TokenRejected::invalid("issued in the future"));
        }
        if expires_at_ms <= issued_at_ms {
            return Err(TokenRejected::invalid("exp is not after iat"));
        }
    }
    if let Some(not_before_ms) = time_ms(claims, "nbf")? {
        if not_before_ms > now_ms.saturating_add(skew_ms) {
            return Err(TokenRejected::invalid("not valid yet (nbf)"));
        }
    }
    Ok(expires_at_ms)
}

/// The token both validators accept once the JWS itself is good: its principal and scope
/// claims, and times that hold at `now_ms` within `skew_ms`.
pub fn valid_token(
    claims: &Claims,
    principal_claim: &str,
    scope_claim: &str,
    now_ms: i64,
    skew_ms: i64,
) -> Result<ValidToken, TokenRejected> {
    Ok(ValidToken {
        principal: principal(claims, principal_claim)?,
        scope: scope(claims, scope_claim)?,
        expires_at_ms: check_times(claims, now_ms, skew_ms)?,
    })
}
