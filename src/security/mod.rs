//! Who is asking and what they may do: principals and the authorizer hook every handler asks
//! through its request context. Without `authorizer.class.name` everything is allowed; with
//! Kafka's StandardAuthorizer the ACLs of the metadata image decide ([`acl`]). SCRAM
//! credentials ([`scram`]) live in the metadata image too.

pub mod acl;
pub mod quota;
pub mod scram;

use std::fmt;
use std::net::IpAddr;

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

impl Operation {
    /// Kafka's name of the operation (`AclOperation`), for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Read => "READ",
            Operation::Write => "WRITE",
            Operation::Create => "CREATE",
            Operation::Delete => "DELETE",
            Operation::Alter => "ALTER",
            Operation::Describe => "DESCRIBE",
            Operation::ClusterAction => "CLUSTER_ACTION",
            Operation::DescribeConfigs => "DESCRIBE_CONFIGS",
            Operation::AlterConfigs => "ALTER_CONFIGS",
            Operation::IdempotentWrite => "IDEMPOTENT_WRITE",
        }
    }
}

/// Kafka's ACL resource types (`ResourceType`) with the resource's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource<'a> {
    Topic(&'a str),
    Group(&'a str),
    Cluster,
    TransactionalId(&'a str),
    DelegationToken(&'a str),
}

impl Resource<'_> {
    /// Kafka's name of the resource type, for logs and metrics.
    pub fn type_name(&self) -> &'static str {
        match self {
            Resource::Topic(_) => "TOPIC",
            Resource::Group(_) => "GROUP",
            Resource::Cluster => "CLUSTER",
            Resource::TransactionalId(_) => "TRANSACTIONAL_ID",
            Resource::DelegationToken(_) => "DELEGATION_TOKEN",
        }
    }
}

/// Decides whether a principal, connected from `host` (None: unknown), may perform an
/// operation on a resource. ACLs may name hosts, so the client's address is part of the ask.
pub trait Authorizer: Send + Sync {
    fn authorize(
        &self,
        principal: &Principal,
        host: Option<IpAddr>,
        operation: Operation,
        resource: Resource<'_>,
    ) -> bool;

    /// Kafka's `authorizeByResourceType`: whether the principal may perform `operation` on
    /// at least one resource of `resource`'s type (its name is ignored). InitProducerId of an
    /// idempotent producer asks it for WRITE on any topic.
    fn authorize_any(
        &self,
        principal: &Principal,
        host: Option<IpAddr>,
        operation: Operation,
        resource: Resource<'_>,
    ) -> bool;

    /// Whether this authorizer may refuse anything (false: every check passes, so callers
    /// may skip work done only to filter).
    fn enforces(&self) -> bool {
        true
    }
}

/// The authorizer of a broker without `authorizer.class.name`: everything is allowed.
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _: &Principal, _: Option<IpAddr>, _: Operation, _: Resource<'_>) -> bool {
        true
    }

    fn authorize_any(
        &self,
        _: &Principal,
        _: Option<IpAddr>,
        _: Operation,
        _: Resource<'_>,
    ) -> bool {
        true
    }

    fn enforces(&self) -> bool {
        false
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

/// A store known only once the node has opened: listeners' security is built (and refused
/// when unhonourable) before the logs recover, and no listener accepts a client before
/// `set` is called, so an unset store answering "no such user" is never observed by one.
#[derive(Default)]
pub struct DeferredCredentials(std::sync::OnceLock<std::sync::Arc<dyn CredentialStore>>);

impl DeferredCredentials {
    /// Sets the store once; later calls are ignored.
    pub fn set(&self, store: std::sync::Arc<dyn CredentialStore>) {
        let _ = self.0.set(store);
    }
}

impl CredentialStore for DeferredCredentials {
    fn scram(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.0.get()?.scram(user, mechanism)
    }
}

pub mod listener;
pub mod sasl;
pub mod tls;
