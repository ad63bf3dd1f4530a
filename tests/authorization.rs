//! Authorization and SCRAM credential administration against a real `dlog` process with
//! `authorizer.class.name` set to Kafka's StandardAuthorizer. Over PLAINTEXT every client is
//! `User:ANONYMOUS`; ACLs denying it topics, a group and a transactional id must give
//! librdkafka the error codes Kafka gives (TOPIC_/GROUP_/TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
//! for produce, consume, group join, offset commit, transactions and an admin call, while the
//! rest stays usable. ACL and credential requests with bad input get Kafka's error codes, and
//! both survive a restart (they live in the metadata log).

mod common;
mod raw;

use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey, CreateAclsRequest,
    CreateAclsResponse, DescribeAclsRequest, DescribeAclsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use raw::RawClient;

const STANDARD_AUTHORIZER: &str =
    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer";
const TIMEOUT: Duration = Duration::from_secs(30);

// Kafka's codes (ResourceType, PatternType, AclOperation, AclPermissionType).
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const TRANSACTIONAL_ID: i8 = 5;
const PATTERN_ANY: i8 = 1;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const ALL: i8 = 2;
const CREATE: i8 = 5;
const ALTER: i8 = 7;
const DENY: i8 = 2;
const ALLOW: i8 = 3;
const READ: i8 = 3;
const WRITE: i8 = 4;
const DESCRIBE: i8 = 8;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn acl(resource_type: i8, name: &str, pattern: i8, operation: i8, permission: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(s(name))
        .with_resource_pattern_type(pattern)
        .with_principal(s("User:ANONYMOUS"))
        .with_host(s("*"))
        .with_operation(operation)
        .with_permission_type(permission)
}

fn create_acls(client: &mut RawClient, creations: Vec<AclCreation>) -> Vec<i16> {
    let response: CreateAclsResponse = client.call(
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(creations),
    );
    response.results.iter().map(|r| r.error_code).collect()
}

fn describe_all_acls(client: &mut RawClient) -> DescribeAclsResponse {
    client.call(
        ApiKey::DescribeAcls,
        3,
        &DescribeAclsRequest::default()
            .with_resource_type_filter(1)
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_pattern_type_filter(PATTERN_ANY)
            .with_operation(1)
            .with_permission_type(1),
    )
}

fn producer(bootstrap: &str) -> BaseProducer<DeliveryErrors> {
    producer_config(bootstrap)
        .set("message.timeout.ms", "10000")
        .create_with_context(DeliveryErrors::default())
        .expect("producer")
}

/// Records the error of every failed delivery.
#[derive(Default)]
struct DeliveryErrors(std::sync::Mutex<Vec<RDKafkaErrorCode>>);

impl rdkafka::ClientContext for DeliveryErrors {}

impl rdkafka::producer::ProducerContext for DeliveryErrors {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((KafkaError::MessageProduction(code), _)) = result {
            self.0.lock().unwrap().push(*code);
        }
    }
}

fn delivery_errors(producer: &BaseProducer<DeliveryErrors>, topic: &str) -> Vec<RDKafkaErrorCode> {
    producer
        .send(BaseRecord::<(), str>::to(topic).partition(0).payload("v"))
        .expect("enqueue");
    let _ = producer.flush(TIMEOUT);
    std::mem::take(&mut *producer.context().0.lock().unwrap())
}

/// Polls until an error arrives (or the deadline): its code.
fn consumer_error(consumer: &BaseConsumer, within: Duration) -> Option<RDKafkaErrorCode> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(error)) => return error.rdkafka_error_code(),
            _ => continue,
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_operations_get_kafkas_error_codes() {
    // With no ACL on a resource everyone may use it; DENY ACLs then close parts of it.
    let broker = Broker::start_with(&[STANDARD_AUTHORIZER, "allow.everyone.if.no.acl.found=true"]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "open", 1, &[]).await;
    create_topic(&bootstrap, "secret", 1, &[]).await;
    create_topic(&bootstrap, "hidden", 1, &[]).await;
    let mut client = RawClient::connect(broker.addr());
    let errors = create_acls(
        &mut client,
        vec![
            // READ and WRITE denied, DESCRIBE allowed: clients see the topic, and Produce and
            // Fetch themselves refuse. (Any ACL on a resource ends "no ACL found" for it.)
            acl(TOPIC, "secret", LITERAL, DESCRIBE, ALLOW),
            acl(TOPIC, "secret", LITERAL, READ, DENY),
            acl(TOPIC, "secret", LITERAL, WRITE, DENY),
            acl(TOPIC, "hidden", LITERAL, ALL, DENY),
            // The group may be found (DESCRIBE) but not used (READ): JoinGroup and
            // OffsetCommit themselves refuse.
            acl(GROUP, "closed-", PREFIXED, DESCRIBE, ALLOW),
            acl(GROUP, "closed-", PREFIXED, READ, DENY),
            acl(TRANSACTIONAL_ID, "closed-txn", LITERAL, ALL, DENY),
            acl(TOPIC, "nocreate-", PREFIXED, CREATE, DENY),
            // An ACL on the cluster ends "no ACL found" for it: ALTER (which implies
            // DESCRIBE) keeps the ACL APIs usable.
            acl(CLUSTER, "kafka-cluster", LITERAL, CREATE, DENY),
            acl(CLUSTER, "kafka-cluster", LITERAL, ALTER, ALLOW),
        ],
    );
    assert_eq!(errors, vec![0; 10]);
    // Grouped by resource pattern: ACLs of one pattern share it.
    assert_eq!(describe_all_acls(&mut client).resources.len(), 6);

    // Produce: TOPIC_AUTHORIZATION_FAILED for the denied topic, the open one still works.
    let producer = producer(&bootstrap);
    assert_eq!(delivery_errors(&producer, "open"), vec![]);
    assert_eq!(
        delivery_errors(&producer, "secret"),
        vec![RDKafkaErrorCode::TopicAuthorizationFailed]
    );

    // Consume: the same for a fetch of the denied topic.
    let consumer = consumer(&bootstrap);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("secret", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    assert_eq!(
        consumer_error(&consumer, TIMEOUT),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    drop(consumer);

    // Group join: GROUP_AUTHORIZATION_FAILED.
    let grouped: BaseConsumer = consumer_config(&bootstrap)
        .set("group.id", "closed-group")
        .create()
        .unwrap();
    grouped.subscribe(&["open"]).unwrap();
    assert_eq!(
        consumer_error(&grouped, TIMEOUT),
        Some(RDKafkaErrorCode::GroupAuthorizationFailed)
    );
    // Offset commit in that group: refused the same way.
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("open", 0, Offset::Offset(0))
        .unwrap();
    let commit = grouped.commit(&offsets, CommitMode::Sync);
    assert!(
        matches!(
            &commit,
            Err(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::GroupAuthorizationFailed
            ))
        ),
        "{commit:?}"
    );
    drop(grouped);

    // Transactions: InitProducerId of a denied transactional id.
    let transactional: BaseProducer = producer_config(&bootstrap)
        .set("enable.idempotence", "true")
        .set("transactional.id", "closed-txn")
        .create()
        .unwrap();
    let init = transactional.init_transactions(TIMEOUT);
    assert!(
        matches!(&init, Err(KafkaError::Transaction(e)) if e.code() == RDKafkaErrorCode::TransactionalIdAuthorizationFailed),
        "{init:?}"
    );

    // Admin: CreateTopics without CREATE on the cluster or the topic.
    let created = admin(&bootstrap)
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                "nocreate-1",
                1,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &admin_options(),
        )
        .await
        .unwrap();
    assert!(
        matches!(
            &created[0],
            Err((_, RDKafkaErrorCode::TopicAuthorizationFailed))
        ),
        "{created:?}"
    );

    // Metadata of all topics leaves the denied one out.
    let metadata = admin(&bootstrap)
        .inner()
        .fetch_metadata(None, TIMEOUT)
        .unwrap();
    let names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    assert!(
        names.contains(&"open") && !names.contains(&"hidden"),
        "{names:?}"
    );

    // Bad input: pattern type ANY, an unknown resource type, a principal without a type.
    let bad = create_acls(
        &mut client,
        vec![
            acl(TOPIC, "x", PATTERN_ANY, READ, ALLOW),
            acl(99, "x", LITERAL, READ, ALLOW),
            acl(TOPIC, "x", LITERAL, READ, ALLOW).with_principal(s("ANONYMOUS")),
            acl(TOPIC, "x", LITERAL, 1, ALLOW),
        ],
    );
    assert_eq!(bad, vec![42; 4], "INVALID_REQUEST for each");

    // The ACLs are metadata: a restart keeps them.
    drop(client);
    let mut broker = broker;
    broker.stop_clean();
    broker.restart();
    let mut client = RawClient::connect(broker.addr());
    assert_eq!(describe_all_acls(&mut client).resources.len(), 6);
}

#[test]
fn acl_apis_without_an_authorizer_answer_security_disabled() {
    let broker = Broker::start();
    let mut client = RawClient::connect(broker.addr());
    assert_eq!(describe_all_acls(&mut client).error_code, 54);
    assert_eq!(
        create_acls(&mut client, vec![acl(TOPIC, "t", LITERAL, READ, ALLOW)]),
        vec![54]
    );
}

#[test]
fn only_the_standard_authorizer_starts() {
    let mut broker = Broker::spawn_with_args(
        free_port(),
        vec![
            "--set".into(),
            "authorizer.class.name=com.example.Custom".into(),
        ],
    );
    let deadline = Instant::now() + TIMEOUT;
    while broker.is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !broker.is_running(),
        "an unknown authorizer must stop the broker"
    );
}

fn upsertion(
    name: &str,
    mechanism: i8,
    iterations: i32,
    password: &str,
) -> ScramCredentialUpsertion {
    let salt = b"a-salt-of-16-byt".to_vec();
    let salted: Vec<u8> = match mechanism {
        2 => pbkdf2::pbkdf2_hmac_array::<sha2::Sha512, 64>(
            password.as_bytes(),
            &salt,
            iterations.max(1) as u32,
        )
        .to_vec(),
        _ => pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, 32>(
            password.as_bytes(),
            &salt,
            iterations.max(1) as u32,
        )
        .to_vec(),
    };
    ScramCredentialUpsertion::default()
        .with_name(s(name))
        .with_mechanism(mechanism)
        .with_iterations(iterations)
        .with_salt(salt.into())
        .with_salted_password(salted.into())
}

fn alter(
    client: &mut RawClient,
    deletions: Vec<(&str, i8)>,
    upsertions: Vec<ScramCredentialUpsertion>,
) -> Vec<(String, i16)> {
    let response: AlterUserScramCredentialsResponse = client.call(
        ApiKey::AlterUserScramCredentials,
        0,
        &AlterUserScramCredentialsRequest::default()
            .with_deletions(
                deletions
                    .into_iter()
                    .map(|(name, mechanism)| {
                        ScramCredentialDeletion::default()
                            .with_name(s(name))
                            .with_mechanism(mechanism)
                    })
                    .collect(),
            )
            .with_upsertions(upsertions),
    );
    response
        .results
        .iter()
        .map(|r| (r.user.to_string(), r.error_code))
        .collect()
}

fn describe(
    client: &mut RawClient,
    users: Option<&[&str]>,
) -> DescribeUserScramCredentialsResponse {
    client.call(
        ApiKey::DescribeUserScramCredentials,
        0,
        &DescribeUserScramCredentialsRequest::default().with_users(users.map(|users| {
            users
                .iter()
                .map(|u| UserName::default().with_name(s(u)))
                .collect()
        })),
    )
}

#[test]
fn scram_credentials_are_validated_stored_and_kept() {
    let mut broker = Broker::start();
    let mut client = RawClient::connect(broker.addr());
    // Both mechanisms for one user in one request are fine; a (user, mechanism) twice is not.
    assert_eq!(
        alter(
            &mut client,
            vec![],
            vec![
                upsertion("alice", 1, 8192, "alice-secret"),
                upsertion("alice", 2, 4096, "x")
            ]
        ),
        vec![("alice".to_string(), 0)]
    );
    assert_eq!(
        alter(
            &mut client,
            vec![],
            vec![
                upsertion("bob", 1, 100, "x"),     // too few iterations
                upsertion("carol", 1, 20000, "x"), // too many
                upsertion("dave", 0, 4096, "x"),   // unknown mechanism
                upsertion("erin", 1, 4096, "x"),
                upsertion("erin", 1, 4096, "y"), // twice
                upsertion("", 1, 4096, "x"),     // no name
            ]
        ),
        vec![
            ("bob".to_string(), 93),
            ("carol".to_string(), 93),
            ("dave".to_string(), 33),
            ("erin".to_string(), 92),
            ("".to_string(), 93),
        ]
    );
    assert_eq!(
        alter(&mut client, vec![("nobody", 1)], vec![]),
        vec![("nobody".to_string(), 91)]
    );
    let described = describe(&mut client, Some(&["alice", "nobody", "alice"]));
    let codes: Vec<(String, i16)> = described
        .results
        .iter()
        .map(|r| (r.user.to_string(), r.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![("alice".to_string(), 92), ("nobody".to_string(), 91)]
    );
    let check_alice = |client: &mut RawClient| {
        let all = describe(client, None);
        assert_eq!(all.results.len(), 1);
        let infos: Vec<(i8, i32)> = all.results[0]
            .credential_infos
            .iter()
            .map(|c| (c.mechanism, c.iterations))
            .collect();
        assert_eq!(infos, vec![(1, 8192), (2, 4096)]);
    };
    check_alice(&mut client);
    drop(client);
    broker.stop_clean();
    broker.restart();
    let mut client = RawClient::connect(broker.addr());
    check_alice(&mut client);
    assert_eq!(
        alter(&mut client, vec![("alice", 2)], vec![]),
        vec![("alice".to_string(), 0)]
    );
    assert_eq!(
        describe(&mut client, None).results[0]
            .credential_infos
            .len(),
        1
    );
}

/// Both halves of issue 14 together, as a Kafka operator uses them: SCRAM users created with
/// AlterUserScramCredentials (kafka-configs) log in over a SASL_PLAINTEXT listener with
/// librdkafka, and the ACLs of their principal decide what they may do. A deleted credential
/// logs in no more.
#[test]
fn scram_users_from_the_metadata_log_log_in_and_their_acls_decide() {
    let sasl_port = free_port();
    let listeners = format!("listeners=SASL_PLAINTEXT://127.0.0.1:{sasl_port}");
    // The harness's PLAINTEXT listener is the operator's: ANONYMOUS is a super user there.
    let broker = Broker::start_with(&[
        listeners.as_str(),
        "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512",
        STANDARD_AUTHORIZER,
        "super.users=User:ANONYMOUS",
        "allow.everyone.if.no.acl.found=false",
    ]);
    let mut admin = RawClient::connect(broker.addr());
    let stored = alter(
        &mut admin,
        vec![],
        vec![
            upsertion("alice", 2, 4096, "alice-secret"),
            upsertion("bob", 1, 4096, "bob-secret"),
        ],
    );
    assert_eq!(stored, vec![("alice".into(), 0), ("bob".into(), 0)]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(create_topic(&broker.bootstrap(), "scram-acl", 1, &[]));
    let alice_may_write = AclCreation::default()
        .with_resource_type(TOPIC)
        .with_resource_name(s("scram-acl"))
        .with_resource_pattern_type(LITERAL)
        .with_principal(s("User:alice"))
        .with_host(s("*"))
        .with_operation(WRITE)
        .with_permission_type(ALLOW);
    assert_eq!(create_acls(&mut admin, vec![alice_may_write]), vec![0]);

    let bootstrap = format!("127.0.0.1:{sasl_port}");
    let scram_producer = |mechanism: &str, user: &str, password: &str| {
        producer_config(&bootstrap)
            .set("message.timeout.ms", "10000")
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanisms", mechanism)
            .set("sasl.username", user)
            .set("sasl.password", password)
            .create_with_context::<_, BaseProducer<DeliveryErrors>>(DeliveryErrors::default())
            .expect("producer")
    };
    // alice logs in with the credential stored above and may write (WRITE implies DESCRIBE).
    let alice = scram_producer("SCRAM-SHA-512", "alice", "alice-secret");
    assert_eq!(delivery_errors(&alice, "scram-acl"), vec![]);
    // bob logs in too, but no ACL lets him write.
    let bob = scram_producer("SCRAM-SHA-256", "bob", "bob-secret");
    assert_eq!(
        delivery_errors(&bob, "scram-acl"),
        vec![RDKafkaErrorCode::TopicAuthorizationFailed]
    );
    // A wrong password, and alice's credential once deleted: no login, so no metadata.
    let refused = |producer: BaseProducer<DeliveryErrors>| {
        producer
            .client()
            .fetch_metadata(Some("scram-acl"), Duration::from_secs(5))
            .is_err()
    };
    assert!(refused(scram_producer("SCRAM-SHA-512", "alice", "wrong")));
    assert_eq!(
        alter(&mut admin, vec![("alice", 2)], vec![]),
        vec![("alice".into(), 0)]
    );
    assert!(refused(scram_producer(
        "SCRAM-SHA-512",
        "alice",
        "alice-secret"
    )));
}

/// Moving partitions and leaders is cluster administration (Kafka: ALTER on the cluster for
/// ElectLeaders and AlterPartitionReassignments, DESCRIBE for ListPartitionReassignments):
/// allowed, they reach the controller; denied, they answer CLUSTER_AUTHORIZATION_FAILED.
#[test]
fn elections_and_reassignments_need_cluster_permissions() {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
        ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
        ListPartitionReassignmentsResponse, TopicName,
    };
    const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    let broker = Broker::start_with(&[STANDARD_AUTHORIZER, "allow.everyone.if.no.acl.found=true"]);
    let mut client = RawClient::connect(broker.addr());
    let elect = |client: &mut RawClient| -> ElectLeadersResponse {
        client.call(
            ApiKey::ElectLeaders,
            2,
            &ElectLeadersRequest::default()
                .with_election_type(0)
                .with_topic_partitions(Some(vec![TopicPartitions::default()
                    .with_topic(TopicName(s("absent")))
                    .with_partitions(vec![0])]))
                .with_timeout_ms(10_000),
        )
    };
    let reassign = |client: &mut RawClient| -> AlterPartitionReassignmentsResponse {
        client.call(
            ApiKey::AlterPartitionReassignments,
            0,
            &AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![ReassignableTopic::default()
                    .with_name(TopicName(s("absent")))
                    .with_partitions(vec![ReassignablePartition::default()
                        .with_partition_index(0)
                        .with_replicas(Some(vec![BrokerId(1)]))])]),
        )
    };
    let list = |client: &mut RawClient| -> ListPartitionReassignmentsResponse {
        client.call(
            ApiKey::ListPartitionReassignments,
            0,
            &ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000),
        )
    };
    let elected = elect(&mut client);
    assert_eq!(elected.error_code, 0);
    assert_eq!(
        elected.replica_election_results[0].partition_result[0].error_code,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    let reassigned = reassign(&mut client);
    assert_eq!(reassigned.error_code, 0);
    assert_eq!(
        reassigned.responses[0].partitions[0].error_code,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(list(&mut client).error_code, 0);

    assert_eq!(
        create_acls(
            &mut client,
            vec![
                acl(CLUSTER, "kafka-cluster", LITERAL, ALTER, DENY),
                acl(CLUSTER, "kafka-cluster", LITERAL, DESCRIBE, DENY),
            ],
        ),
        vec![0, 0]
    );
    let elected = elect(&mut client);
    assert_eq!(elected.error_code, CLUSTER_AUTHORIZATION_FAILED);
    assert_eq!(
        elected.replica_election_results[0].partition_result[0].error_code,
        CLUSTER_AUTHORIZATION_FAILED
    );
    assert_eq!(
        reassign(&mut client).error_code,
        CLUSTER_AUTHORIZATION_FAILED
    );
    assert_eq!(list(&mut client).error_code, CLUSTER_AUTHORIZATION_FAILED);
}
