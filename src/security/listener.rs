//! What a listener demands of its connections, built once at start from the properties:
//! the SASL mechanisms and their users, the TLS server config. Anything dlog cannot honour
//! is an error naming the setting, so the broker does not start (fail closed).

use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::config::{self, ListenerConfig, Properties, SecurityProtocol};

use super::sasl::oauthbearer::{jwks, jwt, unsecured, TokenValidator};
use super::sasl::{jaas, Mechanism, Users};
use super::CredentialStore;

/// SASL on a listener (SASL_PLAINTEXT, SASL_SSL).
pub struct SaslSettings {
    /// `sasl.enabled.mechanisms`, in the order given.
    pub mechanisms: Vec<Mechanism>,
    pub users: Users,
    /// `sasl.server.max.receive.size`: the largest frame before authentication completes.
    pub receive_size_bytes_max: usize,
    /// `connections.max.reauth.ms`: 0 = sessions never expire (KIP-368).
    pub reauthentication_ms: i64,
}

/// A listener with its security.
pub struct ListenerSecurity {
    pub listener: ListenerConfig,
    pub sasl: Option<Arc<SaslSettings>>,
    pub tls: Option<Arc<super::tls::TlsSettings>>,
}

impl ListenerSecurity {
    pub fn new(
        properties: &Properties,
        listener: &ListenerConfig,
        credentials: Arc<dyn CredentialStore>,
    ) -> Result<ListenerSecurity> {
        let sasl = if listener.protocol.uses_sasl() {
            Some(Arc::new(sasl_settings(properties, listener, credentials)?))
        } else {
            None
        };
        let tls = if listener.protocol.uses_tls() {
            Some(Arc::new(super::tls::TlsSettings::new(
                properties,
                &listener.name,
            )?))
        } else {
            None
        };
        if listener.controller && listener.protocol != SecurityProtocol::Plaintext {
            // The quorum's own client (controller::peer) speaks PLAINTEXT only.
            bail!(
                "{}: controller listener {} must be PLAINTEXT (secured controller traffic is not supported yet)",
                config::LISTENER_SECURITY_PROTOCOL_MAP.name(),
                listener.name
            );
        }
        Ok(ListenerSecurity {
            listener: listener.clone(),
            sasl,
            tls,
        })
    }

    /// A listener without security (tests, the default PLAINTEXT listener).
    pub fn plaintext(listener: ListenerConfig) -> ListenerSecurity {
        ListenerSecurity {
            listener,
            sasl: None,
            tls: None,
        }
    }
}

fn sasl_settings(
    properties: &Properties,
    listener: &ListenerConfig,
    credentials: Arc<dyn CredentialStore>,
) -> Result<SaslSettings> {
    let name = &listener.name;
    let enabled = properties.get_for_listener(name, config::SASL_ENABLED_MECHANISMS);
    let mut mechanisms = Vec::new();
    for mechanism in enabled.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let Some(parsed) = Mechanism::parse(mechanism) else {
            bail!(
                "{}: mechanism {mechanism} on listener {name} is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)",
                config::SASL_ENABLED_MECHANISMS.name()
            );
        };
        if !mechanisms.contains(&parsed) {
            mechanisms.push(parsed);
        }
    }
    if mechanisms.is_empty() {
        bail!(
            "{}: listener {name} is {} but no mechanism is enabled",
            config::SASL_ENABLED_MECHANISMS.name(),
            listener.protocol.name()
        );
    }
    let plain = if mechanisms.contains(&Mechanism::Plain) {
        let setting = format!(
            "listener.name.{}.plain.sasl.jaas.config",
            name.to_ascii_lowercase()
        );
        let text = properties
            .get_explicit(&setting)
            .unwrap_or_else(|| properties.get_for_listener(name, config::SASL_JAAS_CONFIG));
        if text.trim().is_empty() {
            bail!(
                "{setting}: PLAIN is enabled on listener {name} but no JAAS config names its users"
            );
        }
        let modules = jaas::parse(text)
            .map_err(anyhow::Error::msg)
            .with_context(|| {
                format!("{setting} (or sasl.jaas.config): cannot parse the JAAS config")
            })?;
        let users = jaas::PlainUsers::from_modules(&modules);
        if users.is_empty() {
            bail!(
                "{setting}: no user_<name>=\"<password>\" option in a {}",
                jaas::PLAIN_LOGIN_MODULE
            );
        }
        users
    } else {
        jaas::PlainUsers::default()
    };
    for mechanism in &mechanisms {
        let handler = mechanism_setting(
            properties,
            name,
            *mechanism,
            "sasl.server.callback.handler.class",
        );
        if *mechanism != Mechanism::OAuthBearer && handler.is_some_and(|h| !h.trim().is_empty()) {
            bail!(
                "listener.name.{}.{}.sasl.server.callback.handler.class: custom callback handlers are not supported",
                name.to_ascii_lowercase(),
                mechanism.name().to_ascii_lowercase()
            );
        }
    }
    let oauthbearer = if mechanisms.contains(&Mechanism::OAuthBearer) {
        Some(oauthbearer_validator(properties, name)?)
    } else {
        None
    };
    Ok(SaslSettings {
        mechanisms,
        users: Users {
            plain: Arc::new(plain),
            scram: credentials,
            oauthbearer,
        },
        receive_size_bytes_max: properties.get_i64(config::SASL_SERVER_MAX_RECEIVE_SIZE) as usize,
        reauthentication_ms: properties.get_i64(config::CONNECTIONS_MAX_REAUTH_MS),
    })
}

/// A setting Kafka takes per listener and mechanism
/// (`listener.name.<listener>.<mechanism>.<setting>`), when set.
fn mechanism_setting<'a>(
    properties: &'a Properties,
    listener: &str,
    mechanism: Mechanism,
    setting: &str,
) -> Option<&'a str> {
    properties.get_explicit(&format!(
        "listener.name.{}.{}.{setting}",
        listener.to_ascii_lowercase(),
        mechanism.name().to_ascii_lowercase()
    ))
}

/// Kafka's default OAUTHBEARER validator: unsigned tokens (development only).
const UNSECURED_VALIDATOR: &str =
    "org.apache.kafka.common.security.oauthbearer.internals.unsecured.OAuthBearerUnsecuredValidatorCallbackHandler";
/// KIP-768's validator of signed tokens, and its pre-4.0 name.
const SECURED_VALIDATORS: [&str; 2] = [
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
    "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerValidatorCallbackHandler",
];

/// The `sasl.oauthbearer.jwt.validator.class` values dlog serves (both as BrokerJwtValidator).
const JWT_VALIDATORS: [&str; 2] = [
    "org.apache.kafka.common.security.oauthbearer.DefaultJwtValidator",
    "org.apache.kafka.common.security.oauthbearer.BrokerJwtValidator",
];

/// The OAUTHBEARER validator of a listener, chosen as Kafka chooses it: by
/// `listener.name.<l>.oauthbearer.sasl.server.callback.handler.class` (or the broker-wide
/// `sasl.server.callback.handler.class`), the unsecured one when unset.
fn oauthbearer_validator(
    properties: &Properties,
    listener: &str,
) -> Result<Arc<dyn TokenValidator>> {
    let handler = mechanism_setting(
        properties,
        listener,
        Mechanism::OAuthBearer,
        "sasl.server.callback.handler.class",
    )
    .unwrap_or_else(|| {
        properties.get_for_listener(listener, config::SASL_SERVER_CALLBACK_HANDLER_CLASS)
    })
    .trim();
    let jaas_setting = format!(
        "listener.name.{}.oauthbearer.sasl.jaas.config",
        listener.to_ascii_lowercase()
    );
    let text = mechanism_setting(
        properties,
        listener,
        Mechanism::OAuthBearer,
        "sasl.jaas.config",
    )
    .unwrap_or_else(|| properties.get_for_listener(listener, config::SASL_JAAS_CONFIG));
    // Kafka demands an OAuthBearerLoginModule entry; its options are all optional, so
    // dlog takes the defaults when there is none.
    let modules = if text.trim().is_empty() {
        Vec::new()
    } else {
        jaas::parse(text)
            .map_err(anyhow::Error::msg)
            .with_context(|| {
                format!("{jaas_setting} (or sasl.jaas.config): cannot parse the JAAS config")
            })?
    };
    let empty = Default::default();
    let options = modules
        .iter()
        .find(|m| m.class == jaas::OAUTHBEARER_LOGIN_MODULE)
        .map_or(&empty, |m| &m.options);
    if handler.is_empty() || handler == UNSECURED_VALIDATOR {
        let validator = unsecured::UnsecuredValidator::from_options(options)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{jaas_setting}: bad OAuthBearerLoginModule option"))?;
        tracing::warn!(listener, "OAUTHBEARER accepts unsigned tokens (Kafka's unsecured validator): for development only");
        return Ok(Arc::new(validator));
    }
    if !SECURED_VALIDATORS.contains(&handler) {
        bail!("listener.name.{}.oauthbearer.sasl.server.callback.handler.class: {handler} is not supported ({UNSECURED_VALIDATOR} or {})",
            listener.to_ascii_lowercase(), SECURED_VALIDATORS[0]);
    }
    let get = |key: config::Key| properties.get_for_listener(listener, key).trim();
    // Kafka 4.1's default JWT validator checks signatures on a broker only when handed a key
    // resolver, which its callback handler does not do (a forged or expired token passes);
    // naming BrokerJwtValidator makes Kafka check them. dlog always checks, as
    // BrokerJwtValidator does, under either name; the client-side one is refused.
    let jwt_validator = get(config::SASL_OAUTHBEARER_JWT_VALIDATOR_CLASS);
    if !JWT_VALIDATORS.contains(&jwt_validator) {
        bail!(
            "{}: {jwt_validator} is not supported ({})",
            config::SASL_OAUTHBEARER_JWT_VALIDATOR_CLASS.name(),
            JWT_VALIDATORS.join(" or ")
        );
    }
    let url = get(config::SASL_OAUTHBEARER_JWKS_ENDPOINT_URL);
    if url.is_empty() {
        bail!(
            "{}: the secured OAUTHBEARER validator on listener {listener} needs a key set",
            config::SASL_OAUTHBEARER_JWKS_ENDPOINT_URL.name()
        );
    }
    let number = |key: config::Key| -> Result<u64> {
        get(key)
            .parse::<u64>()
            .with_context(|| format!("{}: not a non-negative number", key.name()))
    };
    let trusted_pem = jwks_truststore(options)
        .with_context(|| format!("{jaas_setting}: the key set endpoint's truststore"))?;
    let location = jwks::JwksLocation::parse(url, trusted_pem.as_deref())
        .map_err(anyhow::Error::msg)
        .with_context(|| config::SASL_OAUTHBEARER_JWKS_ENDPOINT_URL.name())?;
    let key_set = jwks::Jwks::open(
        location,
        jwks::JwksSchedule::from_ms(
            number(config::SASL_OAUTHBEARER_JWKS_ENDPOINT_REFRESH_MS)?,
            number(config::SASL_OAUTHBEARER_JWKS_ENDPOINT_RETRY_BACKOFF_MS)?,
            number(config::SASL_OAUTHBEARER_JWKS_ENDPOINT_RETRY_BACKOFF_MAX_MS)?,
        ),
    )
    .map_err(anyhow::Error::msg)
    .with_context(|| {
        format!(
            "{}: cannot load the key set",
            config::SASL_OAUTHBEARER_JWKS_ENDPOINT_URL.name()
        )
    })?;
    let issuer = get(config::SASL_OAUTHBEARER_EXPECTED_ISSUER);
    let text_or = |key: config::Key, default: &str| {
        let value = get(key);
        if value.is_empty() {
            default.to_string()
        } else {
            value.to_string()
        }
    };
    Ok(Arc::new(jwt::SecuredValidator {
        jwks: Arc::new(key_set),
        expected_audience: get(config::SASL_OAUTHBEARER_EXPECTED_AUDIENCE)
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect(),
        expected_issuer: (!issuer.is_empty()).then(|| issuer.to_string()),
        clock_skew_seconds: number(config::SASL_OAUTHBEARER_CLOCK_SKEW_SECONDS)? as i64,
        scope_claim: text_or(config::SASL_OAUTHBEARER_SCOPE_CLAIM_NAME, "scope"),
        sub_claim: text_or(config::SASL_OAUTHBEARER_SUB_CLAIM_NAME, "sub"),
    }))
}

/// The certificates (PEM) an https key set endpoint must chain to, from the `ssl.truststore.*`
/// options of the OAuthBearerLoginModule entry, where Kafka reads its client TLS settings for
/// that endpoint (`JaasOptionsUtils`); None (no truststore option) trusts the webpki roots.
fn jwks_truststore(
    options: &std::collections::BTreeMap<String, String>,
) -> Result<Option<Vec<u8>>> {
    let option = |name: &str| {
        options
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let location = option("ssl.truststore.location");
    let inline = option("ssl.truststore.certificates");
    if location.is_none() && inline.is_none() {
        return Ok(None);
    }
    let truststore_type = option("ssl.truststore.type").unwrap_or("JKS");
    if !truststore_type.eq_ignore_ascii_case("PEM") {
        bail!("ssl.truststore.type {truststore_type} is not supported; use PEM");
    }
    match (location, inline) {
        (Some(path), None) => {
            Ok(Some(std::fs::read(path).with_context(|| {
                format!("ssl.truststore.location {path}")
            })?))
        }
        (None, Some(text)) => Ok(Some(text.replace("\\n", "\n").into_bytes())),
        _ => bail!("set ssl.truststore.location or ssl.truststore.certificates, not both"),
    }
}
