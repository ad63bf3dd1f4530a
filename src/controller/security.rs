//! Security metadata the controller validates and commits: SCRAM credentials
//! (AlterUserScramCredentials, Kafka's ScramControlManager) and ACLs (CreateAcls / DeleteAcls,
//! Kafka's AclControlManager). Every node applies the records to its image; the SASL server
//! reads credentials through [`CredentialStore`], the authorizer reads the image's ACL set.

use std::collections::{BTreeSet, HashMap};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::records::MetadataRecord;
use super::{ApiError, Controller, RECORDS_PER_COMMIT_MAX};
use crate::security::acl::{AclBinding, AclFilter};
use crate::security::quota::{QuotaEntity, QuotaValue};
use crate::security::scram::{credential_from_salted_password, ITERATIONS_MAX, ITERATIONS_MIN};
use crate::security::{CredentialStore, ScramCredential, ScramMechanism};

/// One entry of AlterClientQuotas: the entity as named ((type, name), None = default) and
/// its operations (key, Some(value) to set, None to remove).
pub struct QuotaAlteration {
    pub entity: Vec<(String, Option<String>)>,
    pub operations: Vec<(String, Option<f64>)>,
}

/// One upsertion of AlterUserScramCredentials: the client already salted the password.
pub struct ScramUpsertion {
    pub name: String,
    pub mechanism: i8,
    pub iterations: i32,
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
}

impl Controller {
    /// AlterUserScramCredentials: one outcome per user named, in the order first named. A
    /// user's operations succeed or fail together: a (user, mechanism) named twice, an empty
    /// name, an unknown mechanism, iterations out of bounds or the deletion of a missing
    /// credential fails every operation of that user; the other users commit together.
    pub fn alter_user_scram_credentials(
        &self,
        deletions: &[(String, i8)],
        upsertions: &[ScramUpsertion],
    ) -> Vec<(String, Result<(), ApiError>)> {
        let _guard = self.lock_commits();
        let image = self.image();
        let mut times_named: HashMap<(&str, i8), usize> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        for (name, mechanism) in deletions
            .iter()
            .map(|(name, mechanism)| (name.as_str(), *mechanism))
            .chain(upsertions.iter().map(|u| (u.name.as_str(), u.mechanism)))
        {
            if !order.contains(&name) {
                order.push(name);
            }
            *times_named.entry((name, mechanism)).or_default() += 1;
        }
        let unacceptable = |m: &str| ApiError::new(ResponseError::UnacceptableCredential, m);
        let unknown_mechanism = || {
            ApiError::new(
                ResponseError::UnsupportedSaslMechanism,
                "Unknown SCRAM mechanism",
            )
        };
        let mut outcomes: HashMap<String, Result<Vec<MetadataRecord>, ApiError>> = HashMap::new();
        let mut judge = |name: &str, judged: Result<MetadataRecord, ApiError>| {
            let slot = outcomes
                .entry(name.to_string())
                .or_insert_with(|| Ok(Vec::new()));
            match (slot.as_mut(), judged) {
                (Ok(records), Ok(record)) => records.push(record),
                (Ok(_), Err(error)) => *slot = Err(error),
                (Err(_), _) => {}
            }
        };
        for (name, mechanism) in deletions {
            let judged = if times_named[&(name.as_str(), *mechanism)] > 1 {
                Err(duplicate())
            } else if name.is_empty() {
                Err(unacceptable("Username must not be empty"))
            } else if ScramMechanism::from_code(*mechanism).is_none() {
                Err(unknown_mechanism())
            } else if !image
                .scram_credentials
                .get(name)
                .is_some_and(|c| c.contains_key(mechanism))
            {
                Err(ApiError::new(
                    ResponseError::ResourceNotFound,
                    "Attempt to delete a user credential that does not exist",
                ))
            } else {
                Ok(MetadataRecord::RemoveUserScramCredential {
                    name: name.clone(),
                    mechanism: *mechanism,
                })
            };
            judge(name, judged);
        }
        for upsertion in upsertions {
            let name = upsertion.name.as_str();
            let judged = if times_named[&(name, upsertion.mechanism)] > 1 {
                Err(duplicate())
            } else if name.is_empty() {
                Err(unacceptable("Username must not be empty"))
            } else if let Some(mechanism) = ScramMechanism::from_code(upsertion.mechanism) {
                if upsertion.iterations < ITERATIONS_MIN {
                    Err(unacceptable("Too few iterations"))
                } else if upsertion.iterations > ITERATIONS_MAX {
                    Err(unacceptable("Too many iterations"))
                } else if upsertion.salt.is_empty() || upsertion.salted_password.is_empty() {
                    Err(unacceptable("Salt and salted password must not be empty"))
                } else {
                    let credential = credential_from_salted_password(
                        mechanism,
                        &upsertion.salt,
                        &upsertion.salted_password,
                        upsertion.iterations,
                    );
                    Ok(MetadataRecord::UserScramCredential {
                        name: name.to_string(),
                        mechanism: upsertion.mechanism,
                        salt: credential.salt,
                        stored_key: credential.stored_key,
                        server_key: credential.server_key,
                        iterations: credential.iterations,
                    })
                }
            } else {
                Err(unknown_mechanism())
            };
            judge(name, judged);
        }
        let records: Vec<MetadataRecord> = order
            .iter()
            .filter_map(|name| outcomes[*name].as_ref().ok())
            .flatten()
            .cloned()
            .collect();
        let committed = self.commit_in_chunks(&records);
        order
            .into_iter()
            .map(|name| {
                let outcome = match outcomes.remove(name).expect("every user judged") {
                    Ok(_) => committed.clone(),
                    Err(error) => Err(error),
                };
                (name.to_string(), outcome)
            })
            .collect()
    }

    /// CreateAcls: one outcome per binding. Bindings already present are not added twice.
    pub fn create_acls(&self, acls: &[AclBinding]) -> Vec<Result<(), ApiError>> {
        let _guard = self.lock_commits();
        let image = self.image();
        let mut seen = BTreeSet::new();
        let mut records = Vec::new();
        let mut outcomes: Vec<Result<(), ApiError>> = acls
            .iter()
            .map(|acl| {
                acl.validate_new()
                    .map_err(|m| ApiError::new(ResponseError::InvalidRequest, m))?;
                if image.acls.find(acl).is_none() && seen.insert(acl.clone()) {
                    records.push(MetadataRecord::AccessControlEntry {
                        id: Uuid::new_v4(),
                        acl: acl.clone(),
                    });
                }
                Ok(())
            })
            .collect();
        if let Err(error) = self.commit_in_chunks(&records) {
            for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                *outcome = Err(error.clone());
            }
        }
        outcomes
    }

    /// DeleteAcls: for each filter, the bindings it removed (an ACL matched by several filters
    /// is removed once and reported under each).
    pub fn delete_acls(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, ApiError> {
        let _guard = self.lock_commits();
        let image = self.image();
        let mut removed = BTreeSet::new();
        let mut records = Vec::new();
        let matches = filters
            .iter()
            .map(|filter| {
                image
                    .acls
                    .iter()
                    .filter(|(_, acl)| filter.matches(acl))
                    .map(|(id, acl)| {
                        if removed.insert(*id) {
                            records.push(MetadataRecord::RemoveAccessControlEntry { id: *id });
                        }
                        acl.clone()
                    })
                    .collect()
            })
            .collect();
        self.commit_in_chunks(&records)?;
        Ok(matches)
    }

    /// AlterClientQuotas (Kafka's ClientQuotaControlManager): one outcome per entry, each
    /// entry judged alone. An entry whose entity is not one Kafka accepts, that names an
    /// unknown key for its entity, a value of the wrong kind or a key twice fails with
    /// INVALID_REQUEST; the others commit together (nothing with `validate_only`).
    pub fn alter_client_quotas(
        &self,
        entries: &[QuotaAlteration],
        validate_only: bool,
    ) -> Vec<Result<(), ApiError>> {
        let _guard = self.lock_commits();
        let image = self.image();
        let invalid = |m: String| ApiError::new(ResponseError::InvalidRequest, m);
        let mut records = Vec::new();
        let mut outcomes: Vec<Result<(), ApiError>> = entries
            .iter()
            .map(|entry| {
                let entity = QuotaEntity::new(entry.entity.clone()).map_err(invalid)?;
                let mut keys = BTreeSet::new();
                let mut entry_records = Vec::with_capacity(entry.operations.len());
                for (key, value) in &entry.operations {
                    if !keys.insert(key.as_str()) {
                        return Err(invalid(format!(
                            "Configuration {key} appears more than once in the entry"
                        )));
                    }
                    // A removal is checked like a setting (Kafka validates the key either way).
                    entity
                        .validate(key, value.unwrap_or(1.0))
                        .map_err(invalid)?;
                    let present = image
                        .client_quotas
                        .get(&entity)
                        .is_some_and(|values| values.contains_key(key));
                    if value.is_some() || present {
                        entry_records.push(MetadataRecord::ClientQuota {
                            entity: entity.clone(),
                            key: key.clone(),
                            value: value.map(QuotaValue),
                        });
                    }
                }
                records.extend(entry_records);
                Ok(())
            })
            .collect();
        if validate_only {
            return outcomes;
        }
        if let Err(error) = self.commit_in_chunks(&records) {
            for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                *outcome = Err(error.clone());
            }
        }
        outcomes
    }

    /// Commits `records` in entries of at most `RECORDS_PER_COMMIT_MAX`; nothing when empty.
    fn commit_in_chunks(&self, records: &[MetadataRecord]) -> Result<(), ApiError> {
        for chunk in records.chunks(RECORDS_PER_COMMIT_MAX) {
            self.commit(chunk)?;
        }
        Ok(())
    }
}

fn duplicate() -> ApiError {
    ApiError::new(
        ResponseError::DuplicateResource,
        "A user credential cannot be altered twice in the same request",
    )
}

/// The broker's credential store: the replicated metadata image, current at every lookup.
impl CredentialStore for Controller {
    fn scram(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        let image = self.image();
        let stored = image.scram_credentials.get(user)?.get(&mechanism.code())?;
        Some(ScramCredential {
            mechanism,
            salt: stored.salt.clone(),
            stored_key: stored.stored_key.clone(),
            server_key: stored.server_key.clone(),
            iterations: stored.iterations,
        })
    }
}
