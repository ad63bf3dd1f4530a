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
