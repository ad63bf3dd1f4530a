//! Named listeners and their security protocols, as Kafka spells them: `listeners`,
//! `advertised.listeners`, `listener.security.protocol.map`, `inter.broker.listener.name`
//! (or `security.inter.broker.protocol`) and `controller.listener.names`.
//!
//! Fail closed: a listener whose protocol is unknown, or whose security dlog cannot provide,
//! stops the broker at start with a message naming the setting — never a port that serves
//! plaintext where the operator asked for protection.

use std::net::SocketAddr;

use anyhow::{bail, Context, Result};

use super::{Properties, CONTROLLER_LISTENER_NAMES, LISTENERS, LISTENER_SECURITY_PROTOCOL_MAP};

/// Kafka's `SecurityProtocol`: what a listener asks of its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        match name.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Kafka's wire id of the protocol (BrokerRegistration's listener `security_protocol`).
    pub fn id(self) -> i16 {
        match self {
            SecurityProtocol::Plaintext => 0,
            SecurityProtocol::Ssl => 1,
            SecurityProtocol::SaslPlaintext => 2,
            SecurityProtocol::SaslSsl => 3,
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// One entry of `listeners`, with its protocol and the address clients are told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Upper-case listener name (`PLAINTEXT`, `CLIENT`, `CONTROLLER`).
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind_address: SocketAddr,
    /// From `advertised.listeners` (same name), else the bind host (127.0.0.1 for a wildcard).
    pub advertised_host: String,
    pub advertised_port: u16,
    /// Named in `controller.listener.names`: serves the quorum, not clients.
    pub controller: bool,
}

/// The `NAME://host:port` entries of a listeners list; an entry without a name is PLAINTEXT.
pub(super) fn named_listeners(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| match item.split_once("://") {
            Some((name, address)) => (name.trim().to_ascii_uppercase(), address.to_string()),
            None => ("PLAINTEXT".to_string(), item.to_string()),
        })
        .collect()
}

/// `listener.security.protocol.map` as Kafka reads it: `NAME:PROTOCOL,…`. Unset, Kafka maps
/// each protocol name to itself and (KRaft) the controller listeners to PLAINTEXT.
fn protocol_map(
    properties: &Properties,
    controller_names: &[String],
) -> Result<Vec<(String, SecurityProtocol)>> {
    let setting = LISTENER_SECURITY_PROTOCOL_MAP.name();
    let text = properties.get(LISTENER_SECURITY_PROTOCOL_MAP).trim();
    let mut map = Vec::new();
    if text.is_empty() {
        for protocol in [
            SecurityProtocol::Plaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::SaslSsl,
        ] {
            map.push((protocol.name().to_string(), protocol));
        }
        for name in controller_names {
            if SecurityProtocol::parse(name).is_none() {
                map.push((name.clone(), SecurityProtocol::Plaintext));
            }
        }
        return Ok(map);
    }
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, protocol) = item
            .split_once(':')
            .with_context(|| format!("{setting}: '{item}' is not NAME:PROTOCOL"))?;
        let protocol = SecurityProtocol::parse(protocol).with_context(|| {
            format!("{setting}: unknown security protocol '{protocol}' (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)")
        })?;
        map.push((name.trim().to_ascii_uppercase(), protocol));
    }
    Ok(map)
}

/// `PLAINTEXT://host:port` or `host:port` → (host, port).
pub(super) fn parse_listener(listener: &str) -> Result<(String, u16)> {
    let first = listener.split(',').next().unwrap_or_default().trim();
    let address = first
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(first);
    let (host, port) = address
        .rsplit_once(':')
        .with_context(|| format!("listener '{first}' has no port"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("listener '{first}': bad port"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

pub(super) fn controller_listener_names(properties: &Properties) -> Vec<String> {
    properties
        .get(CONTROLLER_LISTENER_NAMES)
        .split(',')
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Every listener of `listeners`, in the order given, with protocol and advertised address.
pub fn listeners(properties: &Properties) -> Result<Vec<ListenerConfig>> {
    let controller_names = controller_listener_names(properties);
    let map = protocol_map(properties, &controller_names)?;
    let advertised = named_listeners(properties.get(super::ADVERTISED_LISTENERS));
    let mut listeners: Vec<ListenerConfig> = Vec::new();
    for (name, address) in named_listeners(properties.get(LISTENERS)) {
        let protocol = map
            .iter()
            .find(|(mapped, _)| *mapped == name)
            .map(|(_, protocol)| *protocol)
            .with_context(|| {
                format!(
                    "listeners: listener {name} has no security protocol in {}",
                    LISTENER_SECURITY_PROTOCOL_MAP.name()
                )
            })?;
        if listeners.iter().any(|l| l.name == name) {
            bail!("listeners: listener name {name} appears twice");
        }
        let (host, port) = parse_listener(&address)?;
        let bind_host = if host.is_empty() {
            "0.0.0.0".to_string()
        } else {
            host.clone()
        };
        let bind_address = super::tokio_resolve(&bind_host, port)?;
        let (advertised_host, advertised_port) = match advertised
            .iter()
            .find(|(advertised, _)| *advertised == name)
        {
            Some((_, address)) => parse_listener(address)?,
            None => (
                if host.is_empty() || host == "0.0.0.0" {
                    "127.0.0.1".to_string()
                } else {
                    host
                },
                port,
            ),
        };
        listeners.push(ListenerConfig {
            controller: controller_names.contains(&name),
            name,
            protocol,
            bind_address,
            advertised_host,
            advertised_port,
        });
    }
    // A name in advertised.listeners that no listener has is a typo Kafka refuses too.
    for (name, _) in &advertised {
        if !listeners.iter().any(|l| l.name == *name) {
            bail!("advertised.listeners: {name} is not a listener in listeners");
        }
    }
    Ok(listeners)
}

/// The listener other brokers reach this one on: `inter.broker.listener.name`, else the one
/// named after `security.inter.broker.protocol`, else the first client listener.
pub fn inter_broker_listener<'a>(
    properties: &Properties,
    listeners: &'a [ListenerConfig],
) -> Result<Option<&'a ListenerConfig>> {
    let clients = || listeners.iter().filter(|l| !l.controller);
    let named = properties
        .get(super::INTER_BROKER_LISTENER_NAME)
        .trim()
        .to_ascii_uppercase();
    if !named.is_empty() {
        return match clients().find(|l| l.name == named) {
            Some(listener) => Ok(Some(listener)),
            None => bail!(
                "{}: {named} is not a broker listener in listeners",
                super::INTER_BROKER_LISTENER_NAME.name()
            ),
        };
    }
    let protocol = properties.get(super::SECURITY_INTER_BROKER_PROTOCOL);
    let protocol = SecurityProtocol::parse(protocol).with_context(|| {
        format!(
            "{}: unknown security protocol '{protocol}'",
            super::SECURITY_INTER_BROKER_PROTOCOL.name()
        )
    })?;
    Ok(clients()
        .find(|l| l.name == protocol.name())
        .or_else(|| clients().next()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn properties(pairs: &[(&str, &str)]) -> Properties {
        let mut properties = Properties::default();
        for (name, value) in pairs {
            properties.set(name, value).unwrap();
        }
        properties
    }

    #[test]
    fn several_named_listeners_with_a_protocol_map() {
        let properties = properties(&[
            (
                "listeners",
                "CLIENT://127.0.0.1:9093,INTERNAL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9094",
            ),
            (
                "listener.security.protocol.map",
                "CLIENT:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ),
            ("inter.broker.listener.name", "INTERNAL"),
            ("advertised.listeners", "CLIENT://broker.example:19093"),
        ]);
        let listeners = listeners(&properties).unwrap();
        assert_eq!(listeners.len(), 3);
        assert_eq!(listeners[0].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(listeners[0].advertised_host, "broker.example");
        assert_eq!(listeners[0].advertised_port, 19093);
        assert_eq!(listeners[1].advertised_port, 9092);
        assert!(listeners[2].controller);
        let inter = inter_broker_listener(&properties, &listeners).unwrap();
        assert_eq!(inter.unwrap().name, "INTERNAL");
    }

    #[test]
    fn default_map_and_unknown_protocols() {
        let plain = properties(&[(
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9093",
        )]);
        let listeners = listeners(&plain).unwrap();
        assert_eq!(listeners[1].protocol, SecurityProtocol::SaslPlaintext);
        let unmapped = properties(&[("listeners", "CLIENT://127.0.0.1:9092")]);
        let error = super::listeners(&unmapped).unwrap_err().to_string();
        assert!(error.contains("listener.security.protocol.map"), "{error}");
        let bad = properties(&[
            ("listeners", "CLIENT://127.0.0.1:9092"),
            ("listener.security.protocol.map", "CLIENT:KERBEROS"),
        ]);
        let error = super::listeners(&bad).unwrap_err().to_string();
        assert!(error.contains("KERBEROS"), "{error}");
    }
}
