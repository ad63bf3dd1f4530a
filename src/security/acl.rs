//! ACLs with the semantics of Kafka's `StandardAuthorizer` (KIP-801): bindings of a resource
//! pattern to an access control entry, the filters DescribeAcls / DeleteAcls match them with,
//! and the decision `authorize` makes. Pure: the set lives in the metadata image (records
//! AccessControlEntry / RemoveAccessControlEntry) and is handed to the authorizer.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Authorizer, Operation, Principal, Resource};

/// The name of the cluster resource, as Kafka spells it.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal resource name matching every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";
/// A principal matching every user.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// A host matching every client address.
pub const WILDCARD_HOST: &str = "*";

/// Kafka's `ResourceType` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    Any,
    Topic,
    Group,
    Cluster,
    TransactionalId,
    DelegationToken,
    User,
}

impl ResourceType {
    pub fn from_code(code: i8) -> Option<ResourceType> {
        Some(match code {
            1 => ResourceType::Any,
            2 => ResourceType::Topic,
            3 => ResourceType::Group,
            4 => ResourceType::Cluster,
            5 => ResourceType::TransactionalId,
            6 => ResourceType::DelegationToken,
            7 => ResourceType::User,
            _ => return None,
        })
    }

    pub fn code(self) -> i8 {
        match self {
            ResourceType::Any => 1,
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
            ResourceType::DelegationToken => 6,
            ResourceType::User => 7,
        }
    }
}

/// Kafka's `PatternType` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PatternType {
    /// Filters only: any pattern type, the name compared as written.
    Any,
    /// Filters only: every binding that applies to the named resource.
    Match,
    Literal,
    Prefixed,
}

impl PatternType {
    pub fn from_code(code: i8) -> Option<PatternType> {
        Some(match code {
            1 => PatternType::Any,
            2 => PatternType::Match,
            3 => PatternType::Literal,
            4 => PatternType::Prefixed,
            _ => return None,
        })
    }

    pub fn code(self) -> i8 {
        match self {
            PatternType::Any => 1,
            PatternType::Match => 2,
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }
}

/// Kafka's `AclOperation` codes (what an ACL grants or denies).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AclOperation {
    /// Filters only.
    Any,
    All,
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
    CreateTokens,
    DescribeTokens,
    TwoPhaseCommit,
}

impl AclOperation {
    pub fn from_code(code: i8) -> Option<AclOperation> {
        use AclOperation::*;
        Some(match code {
            1 => Any,
            2 => All,
            3 => Read,
            4 => Write,
            5 => Create,
            6 => Delete,
            7 => Alter,
            8 => Describe,
            9 => ClusterAction,
            10 => DescribeConfigs,
            11 => AlterConfigs,
            12 => IdempotentWrite,
            13 => CreateTokens,
            14 => DescribeTokens,
            15 => TwoPhaseCommit,
            _ => return None,
        })
    }

    pub fn code(self) -> i8 {
        use AclOperation::*;
        match self {
            Any => 1,
            All => 2,
            Read => 3,
            Write => 4,
            Create => 5,
            Delete => 6,
            Alter => 7,
            Describe => 8,
            ClusterAction => 9,
            DescribeConfigs => 10,
            AlterConfigs => 11,
            IdempotentWrite => 12,
            CreateTokens => 13,
            DescribeTokens => 14,
            TwoPhaseCommit => 15,
        }
    }

    fn of(operation: Operation) -> AclOperation {
        match operation {
            Operation::Read => AclOperation::Read,
            Operation::Write => AclOperation::Write,
            Operation::Create => AclOperation::Create,
            Operation::Delete => AclOperation::Delete,
            Operation::Alter => AclOperation::Alter,
            Operation::Describe => AclOperation::Describe,
            Operation::ClusterAction => AclOperation::ClusterAction,
            Operation::DescribeConfigs => AclOperation::DescribeConfigs,
            Operation::AlterConfigs => AclOperation::AlterConfigs,
            Operation::IdempotentWrite => AclOperation::IdempotentWrite,
        }
    }

    /// Whether an ALLOW entry for `self` grants `requested`: the same operation, ALL, or one
    /// that implies it (READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies
    /// DESCRIBE_CONFIGS). DENY entries imply nothing but through ALL.
    fn allows(self, requested: AclOperation) -> bool {
        use AclOperation::*;
        self == requested
            || self == All
            || (requested == Describe && matches!(self, Read | Write | Delete | Alter))
            || (requested == DescribeConfigs && self == AlterConfigs)
    }
}

/// Kafka's `AclPermissionType` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// Filters only.
    Any,
    Deny,
    Allow,
}

impl Permission {
    pub fn from_code(code: i8) -> Option<Permission> {
        Some(match code {
            1 => Permission::Any,
            2 => Permission::Deny,
            3 => Permission::Allow,
            _ => return None,
        })
    }

    pub fn code(self) -> i8 {
        match self {
            Permission::Any => 1,
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }
}

/// One ACL (Kafka's `AclBinding`): who (principal, host) may or may not do what (operation)
/// on which resources (type, pattern, name).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub pattern_type: PatternType,
    pub resource_name: String,
    /// `Type:name`, or `User:*` for everyone.
    pub principal: String,
    /// An IP address, a CIDR range, or `*`.
    pub host: String,
    pub operation: AclOperation,
    pub permission: Permission,
}

impl AclBinding {
    /// Kafka's `AclControlManager.validateNewAcl`: what CreateAcls refuses with
    /// INVALID_REQUEST (the message is Kafka's).
    pub fn validate_new(&self) -> Result<(), String> {
        match self.pattern_type {
            PatternType::Literal | PatternType::Prefixed => {}
            other => return Err(format!("Invalid patternType {other:?}")),
        }
        if matches!(self.operation, AclOperation::Any) {
            return Err("Invalid operation ANY".to_string());
        }
        if matches!(self.permission, Permission::Any) {
            return Err("Invalid permissionType ANY".to_string());
        }
        if matches!(self.resource_type, ResourceType::Any) {
            return Err("Invalid resourceType ANY".to_string());
        }
        if self.resource_name.is_empty() {
            return Err("Resource name should not be empty".to_string());
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => {
                return Err(format!(
                    "Could not parse principal from `{}` (no colon is found separating the principal type from the principal name)",
                    self.principal
                ))
            }
        }
        if self.host != WILDCARD_HOST && HostPattern::parse(&self.host).is_none() {
            return Err(format!("Invalid host {}", self.host));
        }
        Ok(())
    }
}

/// What DescribeAcls and DeleteAcls select by (Kafka's `AclBindingFilter`): None matches any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: ResourceType,
    pub pattern_type: PatternType,
    pub resource_name: Option<String>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: AclOperation,
    pub permission: Permission,
}

impl AclFilter {
    pub fn matches(&self, acl: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != acl.resource_type {
            return false;
        }
        let name_matches = match (&self.pattern_type, &self.resource_name) {
            (PatternType::Any, None) | (PatternType::Match, None) => true,
            (PatternType::Any, Some(name)) => *name == acl.resource_name,
            (PatternType::Match, Some(name)) => match acl.pattern_type {
                PatternType::Literal => {
                    acl.resource_name == *name || acl.resource_name == WILDCARD_RESOURCE
                }
                PatternType::Prefixed => name.starts_with(acl.resource_name.as_str()),
                _ => false,
            },
            (pattern, name) => {
                *pattern == acl.pattern_type
                    && name.as_ref().is_none_or(|name| *name == acl.resource_name)
            }
        };
        name_matches
            && self.principal.as_ref().is_none_or(|p| *p == acl.principal)
            && self.host.as_ref().is_none_or(|h| *h == acl.host)
            && (self.operation == AclOperation::Any || self.operation == acl.operation)
            && (self.permission == Permission::Any || self.permission == acl.permission)
    }
}

/// An ACL's host: `*`, one address, or a CIDR range (Kafka 4.3).
#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Any,
    Address(IpAddr),
    Range(ipnet::IpNet),
}

impl HostPattern {
    fn parse(host: &str) -> Option<HostPattern> {
        if host == WILDCARD_HOST {
            return Some(HostPattern::Any);
        }
        if let Ok(address) = host.parse::<IpAddr>() {
            return Some(HostPattern::Address(address));
        }
        host.parse::<ipnet::IpNet>().ok().map(HostPattern::Range)
    }

    fn matches(&self, client: Option<IpAddr>) -> bool {
        match (self, client) {
            (HostPattern::Any, _) => true,
            (HostPattern::Address(address), Some(client)) => *address == client,
            (HostPattern::Range(range), Some(client)) => range.contains(&client),
            (_, None) => false,
        }
    }
}

/// An ACL as the authorizer checks it: the binding with its host parsed once.
#[derive(Clone, Debug)]
struct Entry {
    principal: String,
    host: HostPattern,
    operation: AclOperation,
    permission: Permission,
}

/// Every ACL of the cluster, by id (what the metadata records name), indexed for `authorize`:
/// literal names by (type, name), prefixes by (type, prefix) with the prefix lengths in use,
/// so one check costs a few hash lookups whatever the number of ACLs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(
    from = "BTreeMap<uuid::Uuid, AclBinding>",
    into = "BTreeMap<uuid::Uuid, AclBinding>"
)]
pub struct AclSet {
    by_id: BTreeMap<uuid::Uuid, AclBinding>,
    literal: HashMap<(ResourceType, String), Vec<(uuid::Uuid, Entry)>>,
    prefixed: HashMap<(ResourceType, String), Vec<(uuid::Uuid, Entry)>>,
    /// Per resource type, the lengths (bytes) of the prefixes some ACL uses.
    prefix_lengths: HashMap<ResourceType, BTreeSet<usize>>,
}

impl From<BTreeMap<uuid::Uuid, AclBinding>> for AclSet {
    fn from(by_id: BTreeMap<uuid::Uuid, AclBinding>) -> AclSet {
        let mut set = AclSet::default();
        for (id, acl) in by_id {
            set.insert(id, acl);
        }
        set
    }
}

impl From<AclSet> for BTreeMap<uuid::Uuid, AclBinding> {
    fn from(set: AclSet) -> Self {
        set.by_id
    }
}

impl AclSet {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&uuid::Uuid, &AclBinding)> {
        self.by_id.iter()
    }

    /// The id of an identical binding, if one exists (CreateAcls of an existing ACL is a
    /// no-op, as in Kafka).
    pub fn find(&self, acl: &AclBinding) -> Option<uuid::Uuid> {
        let key = (acl.resource_type, acl.resource_name.clone());
        let bucket = match acl.pattern_type {
            PatternType::Literal => self.literal.get(&key),
            PatternType::Prefixed => self.prefixed.get(&key),
            _ => None,
        }?;
        bucket
            .iter()
            .map(|(id, _)| id)
            .find(|id| self.by_id.get(id) == Some(acl))
            .copied()
    }

    /// Adds a binding validated by [`AclBinding::validate_new`]; one of another pattern type
    /// cannot be stored and is ignored.
    pub fn insert(&mut self, id: uuid::Uuid, acl: AclBinding) {
        let Some(host) = HostPattern::parse(&acl.host) else {
            return;
        };
        let entry = Entry {
            principal: acl.principal.clone(),
            host,
            operation: acl.operation,
            permission: acl.permission,
        };
        let key = (acl.resource_type, acl.resource_name.clone());
        match acl.pattern_type {
            PatternType::Literal => self.literal.entry(key).or_default().push((id, entry)),
            PatternType::Prefixed => {
                self.prefix_lengths
                    .entry(acl.resource_type)
                    .or_default()
                    .insert(acl.resource_name.len());
                self.prefixed.entry(key).or_default().push((id, entry))
            }
            _ => return,
        }
        self.by_id.insert(id, acl);
    }

    pub fn remove(&mut self, id: &uuid::Uuid) -> Option<AclBinding> {
        let acl = self.by_id.remove(id)?;
        let key = (acl.resource_type, acl.resource_name.clone());
        let index = match acl.pattern_type {
            PatternType::Literal => &mut self.literal,
            _ => &mut self.prefixed,
        };
        if let Some(bucket) = index.get_mut(&key) {
            bucket.retain(|(entry_id, _)| entry_id != id);
            if bucket.is_empty() {
                index.remove(&key);
                if acl.pattern_type == PatternType::Prefixed {
                    let length = acl.resource_name.len();
                    let still_used = self
                        .prefixed
                        .keys()
                        .any(|(kind, name)| *kind == acl.resource_type && name.len() == length);
                    if !still_used {
                        if let Some(lengths) = self.prefix_lengths.get_mut(&acl.resource_type) {
                            lengths.remove(&length);
                        }
                    }
                }
            }
        }
        Some(acl)
    }

    /// Every entry that applies to the resource `(kind, name)`: literal ones of that name and
    /// of `*`, prefixed ones whose prefix starts the name.
    fn entries_for<'a>(
        &'a self,
        kind: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        let literal = [name, WILDCARD_RESOURCE]
            .into_iter()
            .filter_map(move |n| self.literal.get(&(kind, n.to_string())));
        let prefixed = self
            .prefix_lengths
            .get(&kind)
            .into_iter()
            .flatten()
            .filter(move |&&length| length <= name.len() && name.is_char_boundary(length))
            .filter_map(move |&length| self.prefixed.get(&(kind, name[..length].to_string())));
        literal.chain(prefixed).flatten().map(|(_, entry)| entry)
    }

    /// StandardAuthorizer's rule for one resource: a matching DENY wins, else a matching ALLOW
    /// (with implied operations) allows; with no ACL on the resource at all, `no_acl_allows`.
    pub fn authorize(
        &self,
        principal: &str,
        host: Option<IpAddr>,
        operation: AclOperation,
        kind: ResourceType,
        name: &str,
        no_acl_allows: bool,
    ) -> bool {
        let mut any_acl = false;
        let mut allowed = false;
        for entry in self.entries_for(kind, name) {
            any_acl = true;
            if (entry.principal != principal && entry.principal != WILDCARD_PRINCIPAL)
                || !entry.host.matches(host)
            {
                continue;
            }
            match entry.permission {
                Permission::Deny
                    if entry.operation == operation || entry.operation == AclOperation::All =>
                {
                    return false
                }
                Permission::Allow if entry.operation.allows(operation) => allowed = true,
                _ => {}
            }
        }
        allowed || (!any_acl && no_acl_allows)
    }

    /// Kafka's `authorizeByResourceType`: some ALLOW entry of type `kind` grants `operation`
    /// to the principal from this host, and no DENY for it covers every resource of the type
    /// (a literal `*`); with no ACL of the type at all, `no_acl_allows`.
    pub fn authorize_by_type(
        &self,
        principal: &str,
        host: Option<IpAddr>,
        operation: AclOperation,
        kind: ResourceType,
        no_acl_allows: bool,
    ) -> bool {
        let applies = |entry: &Entry| {
            (entry.principal == principal || entry.principal == WILDCARD_PRINCIPAL)
                && entry.host.matches(host)
        };
        let denied_everywhere = self
            .literal
            .get(&(kind, WILDCARD_RESOURCE.to_string()))
            .into_iter()
            .flatten()
            .any(|(_, e)| {
                applies(e)
                    && e.permission == Permission::Deny
                    && (e.operation == operation || e.operation == AclOperation::All)
            });
        if denied_everywhere {
            return false;
        }
        let mut any_acl = false;
        for ((entry_kind, _), entries) in self.literal.iter().chain(self.prefixed.iter()) {
            if *entry_kind != kind {
                continue;
            }
            any_acl = true;
            if entries.iter().any(|(_, e)| {
                applies(e) && e.permission == Permission::Allow && e.operation.allows(operation)
            }) {
                return true;
            }
        }
        !any_acl && no_acl_allows
    }
}

/// Kafka's `org.apache.kafka.metadata.authorizer.StandardAuthorizer`: super users may do
/// anything; everyone else needs an ACL (or no ACL on the resource and
/// `allow.everyone.if.no.acl.found`). The ACLs come from the metadata image on every call.
pub struct StandardAuthorizer {
    super_users: HashSet<String>,
    allow_everyone_if_no_acl_found: bool,
    acls: Box<dyn Fn() -> Arc<AclSet> + Send + Sync>,
}

/// The class name `authorizer.class.name` must spell to enable ACLs.
pub const STANDARD_AUTHORIZER_CLASS: &str =
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer";

impl StandardAuthorizer {
    /// `super_users` as Kafka's `super.users`: `User:admin;User:bob`.
    pub fn new(
        super_users: &str,
        allow_everyone_if_no_acl_found: bool,
        acls: Box<dyn Fn() -> Arc<AclSet> + Send + Sync>,
    ) -> StandardAuthorizer {
        StandardAuthorizer {
            super_users: super_users
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            allow_everyone_if_no_acl_found,
            acls,
        }
    }
}

fn acl_resource(resource: Resource<'_>) -> (ResourceType, &str) {
    match resource {
        Resource::Topic(name) => (ResourceType::Topic, name),
        Resource::Group(name) => (ResourceType::Group, name),
        Resource::Cluster => (ResourceType::Cluster, CLUSTER_NAME),
        Resource::TransactionalId(name) => (ResourceType::TransactionalId, name),
        Resource::DelegationToken(name) => (ResourceType::DelegationToken, name),
    }
}

impl Authorizer for StandardAuthorizer {
    fn authorize_any(
        &self,
        principal: &Principal,
        host: Option<IpAddr>,
        operation: Operation,
        resource: Resource<'_>,
    ) -> bool {
        let principal = principal.to_string();
        self.super_users.contains(&principal)
            || (self.acls)().authorize_by_type(
                &principal,
                host,
                AclOperation::of(operation),
                acl_resource(resource).0,
                self.allow_everyone_if_no_acl_found,
            )
    }

    fn authorize(
        &self,
        principal: &Principal,
        host: Option<IpAddr>,
        operation: Operation,
        resource: Resource<'_>,
    ) -> bool {
        let principal = principal.to_string();
        if self.super_users.contains(&principal) {
            return true;
        }
        let (kind, name) = acl_resource(resource);
        (self.acls)().authorize(
            &principal,
            host,
            AclOperation::of(operation),
            kind,
            name,
            self.allow_everyone_if_no_acl_found,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(
        kind: ResourceType,
        pattern: PatternType,
        name: &str,
        principal: &str,
        host: &str,
        operation: AclOperation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: kind,
            pattern_type: pattern,
            resource_name: name.into(),
            principal: principal.into(),
            host: host.into(),
            operation,
            permission,
        }
    }

    fn allow_topic(name: &str, pattern: PatternType, operation: AclOperation) -> AclBinding {
        acl(
            ResourceType::Topic,
            pattern,
            name,
            "User:alice",
            "*",
            operation,
            Permission::Allow,
        )
    }

    fn set(acls: Vec<AclBinding>) -> AclSet {
        let mut set = AclSet::default();
        for a in acls {
            a.validate_new().unwrap();
            set.insert(uuid::Uuid::new_v4(), a);
        }
        set
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn check(set: &AclSet, principal: &str, host: &str, op: AclOperation, topic: &str) -> bool {
        set.authorize(principal, ip(host), op, ResourceType::Topic, topic, false)
    }

    #[test]
    fn literal_allow_and_default_deny() {
        let s = set(vec![allow_topic(
            "t",
            PatternType::Literal,
            AclOperation::Read,
        )]);
        assert!(check(&s, "User:alice", "1.2.3.4", AclOperation::Read, "t"));
        assert!(!check(&s, "User:bob", "1.2.3.4", AclOperation::Read, "t"));
        assert!(!check(
            &s,
            "User:alice",
            "1.2.3.4",
            AclOperation::Write,
            "t"
        ));
        assert!(!check(
            &s,
            "User:alice",
            "1.2.3.4",
            AclOperation::Read,
            "t2"
        ));
    }

    #[test]
    fn prefixed_and_wildcard_resources() {
        let s = set(vec![
            allow_topic("pay", PatternType::Prefixed, AclOperation::Write),
            allow_topic("*", PatternType::Literal, AclOperation::Describe),
        ]);
        assert!(check(
            &s,
            "User:alice",
            "1.1.1.1",
            AclOperation::Write,
            "payments"
        ));
        assert!(check(
            &s,
            "User:alice",
            "1.1.1.1",
            AclOperation::Write,
            "pay"
        ));
        assert!(!check(
            &s,
            "User:alice",
            "1.1.1.1",
            AclOperation::Write,
            "pa"
        ));
        assert!(check(
            &s,
            "User:alice",
            "1.1.1.1",
            AclOperation::Describe,
            "other"
        ));
        // A literal `*` is not a prefix: "*x" names nothing special.
        let s = set(vec![allow_topic(
            "*",
            PatternType::Prefixed,
            AclOperation::Read,
        )]);
        assert!(!check(&s, "User:alice", "1.1.1.1", AclOperation::Read, "t"));
        assert!(check(&s, "User:alice", "1.1.1.1", AclOperation::Read, "*t"));
    }

    #[test]
    fn deny_wins_over_allow() {
        let mut acls = vec![allow_topic("t", PatternType::Literal, AclOperation::All)];
        acls.push(acl(
            ResourceType::Topic,
            PatternType::Prefixed,
            "t",
            "User:*",
            "*",
            AclOperation::Write,
            Permission::Deny,
        ));
        let s = set(acls);
        assert!(!check(
            &s,
            "User:alice",
            "1.1.1.1",
            AclOperation::Write,
            "t"
        ));
        assert!(check(&s, "User:alice", "1.1.1.1", AclOperation::Read, "t"));
    }

    #[test]
    fn implied_operations() {
        for granted in [
            AclOperation::Read,
            AclOperation::Write,
            AclOperation::Delete,
            AclOperation::Alter,
        ] {
            let s = set(vec![allow_topic("t", PatternType::Literal, granted)]);
            assert!(check(
                &s,
                "User:alice",
                "1.1.1.1",
                AclOperation::Describe,
                "t"
            ));
            assert!(!check(
                &s,
                "User:alice",
                "1.1.1.1",
                AclOperation::DescribeConfigs,
                "t"
            ));
        }
        let s = set(vec![allow_topic(
            "t",
            PatternType::Literal,
            AclOperation::AlterConfigs,
        )]);
        assert!(check(
            &s,
            "User:alice",
            "1.1.1.1",
            AclOperation::DescribeConfigs,
            "t"
        ));
        assert!(!check(
            &s,
            "User:alice",
            "1.1.1.1",
            AclOperation::Describe,
            "t"
        ));
        let s = set(vec![allow_topic(
            "t",
            PatternType::Literal,
            AclOperation::All,
        )]);
        assert!(check(
            &s,
            "User:alice",
            "1.1.1.1",
            AclOperation::IdempotentWrite,
            "t"
        ));
        // A DENY of READ does not deny DESCRIBE.
        let s = set(vec![
            allow_topic("t", PatternType::Literal, AclOperation::Describe),
            acl(
                ResourceType::Topic,
                PatternType::Literal,
                "t",
                "User:alice",
                "*",
                AclOperation::Read,
                Permission::Deny,
            ),
        ]);
        assert!(check(
            &s,
            "User:alice",
            "1.1.1.1",
            AclOperation::Describe,
            "t"
        ));
        assert!(!check(&s, "User:alice", "1.1.1.1", AclOperation::Read, "t"));
    }

    #[test]
    fn hosts_exact_and_cidr() {
        let host_acl = |host: &str| {
            acl(
                ResourceType::Topic,
                PatternType::Literal,
                "t",
                "User:alice",
                host,
                AclOperation::Read,
                Permission::Allow,
            )
        };
        let s = set(vec![host_acl("10.0.0.1")]);
        assert!(check(&s, "User:alice", "10.0.0.1", AclOperation::Read, "t"));
        assert!(!check(
            &s,
            "User:alice",
            "10.0.0.2",
            AclOperation::Read,
            "t"
        ));
        let s = set(vec![host_acl("192.168.0.0/16"), host_acl("2001:db8::/32")]);
        assert!(check(
            &s,
            "User:alice",
            "192.168.7.9",
            AclOperation::Read,
            "t"
        ));
        assert!(!check(
            &s,
            "User:alice",
            "192.169.0.1",
            AclOperation::Read,
            "t"
        ));
        assert!(check(
            &s,
            "User:alice",
            "2001:db8::1",
            AclOperation::Read,
            "t"
        ));
        assert!(!s.authorize(
            "User:alice",
            None,
            AclOperation::Read,
            ResourceType::Topic,
            "t",
            false
        ));
        assert!(host_acl("not-a-host").validate_new().is_err());
    }

    #[test]
    fn no_acl_found_setting() {
        let s = set(vec![allow_topic(
            "t",
            PatternType::Literal,
            AclOperation::Read,
        )]);
        // No ACL on "other": the setting decides.
        assert!(s.authorize(
            "User:bob",
            ip("1.1.1.1"),
            AclOperation::Read,
            ResourceType::Topic,
            "other",
            true
        ));
        assert!(!s.authorize(
            "User:bob",
            ip("1.1.1.1"),
            AclOperation::Read,
            ResourceType::Topic,
            "other",
            false
        ));
        // An ACL exists on "t" (for someone else): the setting does not apply.
        assert!(!s.authorize(
            "User:bob",
            ip("1.1.1.1"),
            AclOperation::Read,
            ResourceType::Topic,
            "t",
            true
        ));
    }

    #[test]
    fn resource_types_are_separate() {
        let s = set(vec![acl(
            ResourceType::Group,
            PatternType::Literal,
            "t",
            "User:alice",
            "*",
            AclOperation::Read,
            Permission::Allow,
        )]);
        assert!(!check(&s, "User:alice", "1.1.1.1", AclOperation::Read, "t"));
        assert!(s.authorize(
            "User:alice",
            ip("1.1.1.1"),
            AclOperation::Read,
            ResourceType::Group,
            "t",
            false
        ));
    }

    #[test]
    fn super_users_and_authorizer_trait() {
        let s = Arc::new(set(vec![allow_topic(
            "t",
            PatternType::Literal,
            AclOperation::Read,
        )]));
        let authorizer =
            StandardAuthorizer::new("User:admin; User:bob", false, Box::new(move || s.clone()));
        let user = |name: &str| Principal {
            principal_type: "User".into(),
            name: name.into(),
        };
        let host = ip("127.0.0.1");
        assert!(authorizer.authorize(&user("admin"), host, Operation::Delete, Resource::Cluster));
        assert!(authorizer.authorize(&user("bob"), host, Operation::Write, Resource::Topic("x")));
        assert!(authorizer.authorize(&user("alice"), host, Operation::Read, Resource::Topic("t")));
        assert!(!authorizer.authorize(&user("alice"), host, Operation::Read, Resource::Group("g")));
        assert!(!authorizer.authorize(&user("carol"), host, Operation::Read, Resource::Topic("t")));
    }

    #[test]
    fn by_resource_type() {
        let s = set(vec![allow_topic(
            "pay",
            PatternType::Prefixed,
            AclOperation::Write,
        )]);
        let any = |s: &AclSet, principal: &str, op| {
            s.authorize_by_type(principal, ip("1.1.1.1"), op, ResourceType::Topic, false)
        };
        assert!(any(&s, "User:alice", AclOperation::Write));
        assert!(!any(&s, "User:bob", AclOperation::Write));
        assert!(!any(&s, "User:alice", AclOperation::Read));
        let mut acls = vec![allow_topic(
            "pay",
            PatternType::Prefixed,
            AclOperation::Write,
        )];
        acls.push(acl(
            ResourceType::Topic,
            PatternType::Literal,
            "*",
            "User:alice",
            "*",
            AclOperation::Write,
            Permission::Deny,
        ));
        assert!(!any(&set(acls), "User:alice", AclOperation::Write));
        assert!(AclSet::default().authorize_by_type(
            "User:x",
            None,
            AclOperation::Write,
            ResourceType::Topic,
            true
        ));
    }

    #[test]
    fn filters() {
        let literal = allow_topic("payments", PatternType::Literal, AclOperation::Read);
        let prefixed = allow_topic("pay", PatternType::Prefixed, AclOperation::Write);
        let wildcard = allow_topic("*", PatternType::Literal, AclOperation::Read);
        let filter = |pattern, name: Option<&str>| AclFilter {
            resource_type: ResourceType::Any,
            pattern_type: pattern,
            resource_name: name.map(str::to_string),
            principal: None,
            host: None,
            operation: AclOperation::Any,
            permission: Permission::Any,
        };
        let matching = |f: &AclFilter| {
            [&literal, &prefixed, &wildcard]
                .iter()
                .filter(|a| f.matches(a))
                .count()
        };
        assert_eq!(matching(&filter(PatternType::Any, None)), 3);
        assert_eq!(matching(&filter(PatternType::Match, Some("payments"))), 3);
        assert_eq!(matching(&filter(PatternType::Match, Some("other"))), 1);
        assert_eq!(matching(&filter(PatternType::Any, Some("pay"))), 1);
        assert_eq!(matching(&filter(PatternType::Literal, None)), 2);
        assert_eq!(matching(&filter(PatternType::Prefixed, Some("pay"))), 1);
        let mut by_principal = filter(PatternType::Any, None);
        by_principal.principal = Some("User:bob".into());
        assert_eq!(matching(&by_principal), 0);
        let mut by_op = filter(PatternType::Any, None);
        by_op.operation = AclOperation::Write;
        assert_eq!(matching(&by_op), 1);
    }

    #[test]
    fn validation_refuses_what_kafka_refuses() {
        let good = allow_topic("t", PatternType::Literal, AclOperation::Read);
        assert!(good.validate_new().is_ok());
        for bad in [
            AclBinding {
                pattern_type: PatternType::Any,
                ..good.clone()
            },
            AclBinding {
                pattern_type: PatternType::Match,
                ..good.clone()
            },
            AclBinding {
                operation: AclOperation::Any,
                ..good.clone()
            },
            AclBinding {
                permission: Permission::Any,
                ..good.clone()
            },
            AclBinding {
                resource_type: ResourceType::Any,
                ..good.clone()
            },
            AclBinding {
                principal: "alice".into(),
                ..good.clone()
            },
            AclBinding {
                resource_name: String::new(),
                ..good.clone()
            },
        ] {
            assert!(bad.validate_new().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn remove_and_serde_round_trip() {
        let mut s = AclSet::default();
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        s.insert(
            a,
            allow_topic("pay", PatternType::Prefixed, AclOperation::Read),
        );
        s.insert(
            b,
            allow_topic("t", PatternType::Literal, AclOperation::Read),
        );
        assert_eq!(
            s.find(&allow_topic("t", PatternType::Literal, AclOperation::Read)),
            Some(b)
        );
        let json = serde_json::to_string(&s).unwrap();
        let back: AclSet = serde_json::from_str(&json).unwrap();
        assert!(check(
            &back,
            "User:alice",
            "1.1.1.1",
            AclOperation::Read,
            "payx"
        ));
        s.remove(&a);
        assert!(!check(
            &s,
            "User:alice",
            "1.1.1.1",
            AclOperation::Read,
            "payx"
        ));
        assert!(check(&s, "User:alice", "1.1.1.1", AclOperation::Read, "t"));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn many_acls_stay_cheap_to_check() {
        let mut s = AclSet::default();
        for i in 0..10_000 {
            s.insert(
                uuid::Uuid::new_v4(),
                allow_topic(
                    &format!("topic-{i}"),
                    PatternType::Literal,
                    AclOperation::Read,
                ),
            );
        }
        s.insert(
            uuid::Uuid::new_v4(),
            allow_topic("pre", PatternType::Prefixed, AclOperation::Read),
        );
        assert!(check(
            &s,
            "User:alice",
            "1.1.1.1",
            AclOperation::Read,
            "topic-9999"
        ));
        assert!(check(
            &s,
            "User:alice",
            "1.1.1.1",
            AclOperation::Read,
            "prefix"
        ));
        assert!(!check(
            &s,
            "User:alice",
            "1.1.1.1",
            AclOperation::Read,
            "topic-10000"
        ));
    }
}
