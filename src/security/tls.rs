//! TLS for SSL and SASL_SSL listeners (rustls), configured with Kafka's PEM keystore settings:
//! `ssl.keystore.type=PEM` with `ssl.keystore.location` (a PEM file holding the key and its
//! chain) or inline `ssl.keystore.certificate.chain` / `ssl.keystore.key`; the truststore
//! (`ssl.truststore.type=PEM`, `ssl.truststore.location` or `ssl.truststore.certificates`)
//! checks client certificates when `ssl.client.auth` asks for them. The principal of a client
//! certificate is its subject in RFC 2253 form, as Kafka's `ssl.principal.mapping.rules=DEFAULT`
//! gives it (`User:CN=alice,O=example`).

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::{self, Key, Properties};

/// `ssl.client.auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

pub struct TlsSettings {
    pub server_config: Arc<ServerConfig>,
    pub client_auth: ClientAuth,
}

impl TlsSettings {
    pub fn new(properties: &Properties, listener: &str) -> Result<TlsSettings> {
        let get = |key: Key| properties.get_for_listener(listener, key).trim();
        let keystore_type = get(config::SSL_KEYSTORE_TYPE);
        if !keystore_type.eq_ignore_ascii_case("PEM") {
            bail!(
                "{}: {keystore_type} keystores are not supported on listener {listener}; use PEM",
                config::SSL_KEYSTORE_TYPE.name()
            );
        }
        if !get(config::SSL_KEY_PASSWORD).is_empty()
            || !get(config::SSL_KEYSTORE_PASSWORD).is_empty()
        {
            bail!(
                "{}: encrypted private keys are not supported; give an unencrypted PEM key",
                config::SSL_KEY_PASSWORD.name()
            );
        }
        let location = get(config::SSL_KEYSTORE_LOCATION);
        // The error names the settings the keystore came from.
        let keystore_source = match location {
            "" => format!(
                "{} and {}",
                config::SSL_KEYSTORE_CERTIFICATE_CHAIN.name(),
                config::SSL_KEYSTORE_KEY.name()
            ),
            _ => config::SSL_KEYSTORE_LOCATION.name().to_string(),
        };
        let keystore_text = match location {
            "" => {
                let chain = get(config::SSL_KEYSTORE_CERTIFICATE_CHAIN);
                let key = get(config::SSL_KEYSTORE_KEY);
                if chain.is_empty() || key.is_empty() {
                    bail!(
                        "{}: listener {listener} uses TLS but neither {} nor {} and {} are set",
                        config::SSL_KEYSTORE_LOCATION.name(),
                        config::SSL_KEYSTORE_LOCATION.name(),
                        config::SSL_KEYSTORE_CERTIFICATE_CHAIN.name(),
                        config::SSL_KEYSTORE_KEY.name()
                    );
                }
                format!("{chain}\n{key}\n")
            }
            location => std::fs::read_to_string(location).with_context(|| {
                format!(
                    "{}: cannot read {location}",
                    config::SSL_KEYSTORE_LOCATION.name()
                )
            })?,
        };
        let (chain, key) = parse_keystore(&keystore_text)
            .with_context(|| format!("{keystore_source} of listener {listener}"))?;
        let client_auth = match get(config::SSL_CLIENT_AUTH_KEY)
            .to_ascii_lowercase()
            .as_str()
        {
            "required" => ClientAuth::Required,
            "requested" => ClientAuth::Requested,
            _ => ClientAuth::None,
        };
        let rules = get(config::SSL_PRINCIPAL_MAPPING_RULES);
        if rules != "DEFAULT" {
            bail!(
                "{}: only DEFAULT is supported, got '{rules}'",
                config::SSL_PRINCIPAL_MAPPING_RULES.name()
            );
        }
        // ring: a pure-Rust-buildable provider (aws-lc-rs needs cmake and a long C build).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = if client_auth == ClientAuth::None {
            builder.with_no_client_auth()
        } else {
            let roots = truststore(properties, listener)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if client_auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder
                .with_client_cert_verifier(verifier.build().context("client certificate verifier")?)
        };
        let server_config = builder.with_single_cert(chain, key).with_context(|| {
            format!(
                "{}: the key does not match the certificate",
                config::SSL_KEYSTORE_KEY.name()
            )
        })?;
        Ok(TlsSettings {
            server_config: Arc::new(server_config),
            client_auth,
        })
    }
}

fn parse_keystore(text: &str) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    if text.contains("ENCRYPTED PRIVATE KEY") {
        bail!("encrypted private keys are not supported");
    }
    let chain = rustls_pemfile::certs(&mut text.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .context("bad PEM certificate")?;
    if chain.is_empty() {
        bail!("no certificate in the keystore");
    }
    let key = rustls_pemfile::private_key(&mut text.as_bytes())
        .context("bad PEM private key")?
        .context("no private key in the keystore")?;
    Ok((chain, key))
}

fn truststore(properties: &Properties, listener: &str) -> Result<RootCertStore> {
    let get = |key: Key| properties.get_for_listener(listener, key).trim();
    let truststore_type = get(config::SSL_TRUSTSTORE_TYPE);
    if !truststore_type.eq_ignore_ascii_case("PEM") {
        bail!(
            "{}: {truststore_type} truststores are not supported on listener {listener}; use PEM",
            config::SSL_TRUSTSTORE_TYPE.name()
        );
    }
    let text = match get(config::SSL_TRUSTSTORE_LOCATION) {
        "" => get(config::SSL_TRUSTSTORE_CERTIFICATES).to_string(),
        location => std::fs::read_to_string(location).with_context(|| {
            format!(
                "{}: cannot read {location}",
                config::SSL_TRUSTSTORE_LOCATION.name()
            )
        })?,
    };
    let mut roots = RootCertStore::empty();
    for certificate in rustls_pemfile::certs(&mut text.as_bytes()) {
        roots
            .add(certificate.context("bad PEM certificate in the truststore")?)
            .context("unusable truststore certificate")?;
    }
    if roots.is_empty() {
        bail!(
            "{}: {} asks for client certificates but the truststore of listener {listener} is empty",
            config::SSL_TRUSTSTORE_LOCATION.name(),
            config::SSL_CLIENT_AUTH_KEY.name()
        );
    }
    Ok(roots)
}

/// The subject of a DER certificate as Java's `X500Principal.getName()` writes it (RFC 2253:
/// last RDN first, `,` between them, `+` inside a multi-valued RDN). None if it does not parse.
pub fn subject_name(certificate: &[u8]) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let mut rdns = Vec::new();
    for rdn in parsed.subject().iter_rdn() {
        let mut attributes = Vec::new();
        for attribute in rdn.iter() {
            let oid = attribute.attr_type().to_id_string();
            let keyword = match oid.as_str() {
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.6" => "C".to_string(),
                "2.5.4.7" => "L".to_string(),
                "2.5.4.8" => "ST".to_string(),
                "2.5.4.10" => "O".to_string(),
                "2.5.4.11" => "OU".to_string(),
                "2.5.4.9" => "STREET".to_string(),
                "0.9.2342.19200300.100.1.25" => "DC".to_string(),
                "0.9.2342.19200300.100.1.1" => "UID".to_string(),
                other => other.to_string(),
            };
            let value = attribute.as_str().ok()?;
            attributes.push(format!("{keyword}={}", escape_rfc2253(value)));
        }
        rdns.push(attributes.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (index, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (index == 0 && (c == '#' || c == ' '))
            || (index + 1 == value.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
