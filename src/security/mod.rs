//! Who is asking and what they may do: principals and the authorizer hook every handler asks
//! through its request context. Today there is no authentication (every connection is
//! `User:ANONYMOUS`, as on a Kafka PLAINTEXT listener) and the authorizer allows everything;
//! SASL, TLS principals and ACLs plug in here without touching the handlers.

use std::fmt;

/// An authenticated identity, in Kafka's `Type:name` form (`User:alice`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    pub principal_type: String,
    pub name: String,
}

impl Principal {
    /// Kafka's principal of unauthenticated connections.
    pub fn anonymous() -> Principal {
        Principal {
            principal_type: "User".to_string(),
            name: "ANONYMOUS".to_string(),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

/// Kafka's ACL operations (`AclOperation`), those the handlers ask about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

/// Kafka's ACL resource types (`ResourceType`) with the resource's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource<'a> {
    Topic(&'a str),
    Group(&'a str),
    Cluster,
    TransactionalId(&'a str),
}

/// Decides whether a principal may perform an operation on a resource.
pub trait Authorizer: Send + Sync {
    fn authorize(
        &self,
        principal: &Principal,
        operation: Operation,
        resource: Resource<'_>,
    ) -> bool;
}

/// The authorizer of a broker without `authorizer.class.name`: everything is allowed.
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _: &Principal, _: Operation, _: Resource<'_>) -> bool {
        true
    }
}

/// The SCRAM mechanisms Kafka serves (KIP-84): the hash behind `SCRAM-SHA-256` / `SCRAM-SHA-512`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    /// The SASL mechanism name a client asks for in SaslHandshake.
    pub fn sasl_name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }
}

/// A user's SCRAM credential as Kafka stores it (RFC 5802 §3): salt, iteration count and the
/// two derived keys; never the password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramCredential {
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

/// Where the SASL server looks up SCRAM credentials. The broker's store reads the replicated
/// metadata image (credentials managed with AlterUserScramCredentials); tests may use a map.
pub trait CredentialStore: Send + Sync {
    fn scram(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential>;
}

pub mod listener;
pub mod sasl;
pub mod tls;
