//! What a listener demands of its connections, built once at start from the properties:
//! the SASL mechanisms and their users, the TLS server config. Anything dlog cannot honour
//! is an error naming the setting, so the broker does not start (fail closed).

use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::config::{self, ListenerConfig, Properties, SecurityProtocol};

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
                "{}: mechanism {mechanism} on listener {name} is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)",
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
    Ok(SaslSettings {
        mechanisms,
        users: Users {
            plain: Arc::new(plain),
            scram: credentials,
        },
        receive_size_bytes_max: properties.get_i64(config::SASL_SERVER_MAX_RECEIVE_SIZE) as usize,
        reauthentication_ms: properties.get_i64(config::CONNECTIONS_MAX_REAUTH_MS),
    })
}
