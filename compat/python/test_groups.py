"""Consumer groups with confluent-kafka (librdkafka) and kafka-python against $BOOTSTRAP.

Group consumers subscribe, split the partitions, commit, and a later member of the same
group resumes after the commits; the admin APIs list, describe, read, alter and delete
groups and their offsets.
"""

import time
import uuid

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from kafka import KafkaAdminClient, KafkaConsumer
from kafka import TopicPartition as KpTopicPartition
from kafka.structs import OffsetAndMetadata

import compat_helpers as h

PARTITIONS = 4
RECORDS = 200


def produce_spread(bootstrap, topic):
    p = h.producer(bootstrap)
    h.produce_all(p, [dict(topic=topic, partition=i % PARTITIONS, value=str(i).encode())
                      for i in range(RECORDS)])


def ck_group_consumer(bootstrap, group, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "socket.timeout.ms": 10000,
    }
    conf.update(extra)
    return Consumer(conf)


@pytest.mark.parametrize("assignor", ["range", "roundrobin", "cooperative-sticky"])
def test_confluent_group_splits_commits_and_resumes(bootstrap, topic_factory, admin, assignor):
    topic = topic_factory(f"ck-group-{assignor}", partitions=PARTITIONS)
    produce_spread(bootstrap, topic)
    group = f"ck-group-{uuid.uuid4().hex[:8]}"
    members = [ck_group_consumer(bootstrap, group, **{"partition.assignment.strategy": assignor})
               for _ in range(2)]
    for c in members:
        c.subscribe([topic])
    seen = {}
    owners = {}
    deadline = time.monotonic() + 60
    while len(seen) < RECORDS and time.monotonic() < deadline:
        for index, c in enumerate(members):
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            seen[(m.partition(), m.offset())] = m.value()
            owners.setdefault(m.partition(), set()).add(index)
            c.commit(message=m, asynchronous=False)
    assert len(seen) == RECORDS, f"consumed {len(seen)}/{RECORDS}"
    # Both members took part, and the assignment held them apart after it settled.
    assignments = [{tp.partition for tp in c.assignment()} for c in members]
    assert assignments[0] | assignments[1] == set(range(PARTITIONS)), assignments
    assert not assignments[0] & assignments[1], assignments
    assert all(assignments), assignments
    for c in members:
        c.close()

    # Committed offsets are the end of every partition; a new member has nothing to read.
    committed = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])]
    )[group].result(timeout=30)
    assert {tp.partition: tp.offset for tp in committed.topic_partitions} == \
        {p: RECORDS // PARTITIONS for p in range(PARTITIONS)}
    late = ck_group_consumer(bootstrap, group)
    late.subscribe([topic])
    h.wait_for(lambda: late.poll(0.2) is None and len(late.assignment()) == PARTITIONS,
               timeout=30, what="late member assigned everything")
    assert all(late.poll(0.3) is None for _ in range(5))
    late.close()

    # Admin: the group is listed and described as empty, then deleted.
    listed = admin.list_consumer_groups().result(timeout=30)
    assert group in {g.group_id for g in listed.valid}
    described = admin.describe_consumer_groups([group])[group].result(timeout=30)
    assert described.group_id == group
    assert str(described.state).endswith("EMPTY"), described.state
    assert admin.delete_consumer_groups([group])[group].result(timeout=30) is None
    listed = admin.list_consumer_groups().result(timeout=30)
    assert group not in {g.group_id for g in listed.valid}


def test_confluent_describe_active_group_members(bootstrap, topic_factory, admin):
    topic = topic_factory("ck-describe", partitions=PARTITIONS)
    group = f"ck-describe-{uuid.uuid4().hex[:8]}"
    c = ck_group_consumer(bootstrap, group, **{"client.id": "describer"})
    c.subscribe([topic])
    h.wait_for(lambda: c.poll(0.2) is None and len(c.assignment()) == PARTITIONS,
               timeout=30, what="member assigned")
    described = admin.describe_consumer_groups([group])[group].result(timeout=30)
    assert str(described.state).endswith("STABLE"), described.state
    assert len(described.members) == 1
    member = described.members[0]
    assert member.client_id == "describer"
    assert {tp.partition for tp in member.assignment.topic_partitions} == set(range(PARTITIONS))
    # A group with members cannot be deleted.
    with pytest.raises(Exception):
        admin.delete_consumer_groups([group])[group].result(timeout=30)
    c.close()


def test_kafka_python_group_commits_and_admin(bootstrap, topic_factory):
    topic = topic_factory("kp-group", partitions=PARTITIONS)
    produce_spread(bootstrap, topic)
    group = f"kp-group-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=10000, heartbeat_interval_ms=1000,
                             request_timeout_ms=30000, consumer_timeout_ms=5000)
    seen = set()
    deadline = time.monotonic() + 60
    while len(seen) < RECORDS and time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=500)
        for records in batch.values():
            for r in records:
                seen.add((r.partition, r.offset))
        if batch:
            consumer.commit()
    assert len(seen) == RECORDS
    assert consumer.assignment() == {KpTopicPartition(topic, p) for p in range(PARTITIONS)}
    for p in range(PARTITIONS):
        assert consumer.committed(KpTopicPartition(topic, p)) == RECORDS // PARTITIONS
    consumer.close()

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    try:
        listed = {g["group_id"]: g for g in admin.list_groups()}
        assert listed[group]["protocol_type"] == "consumer"
        assert listed[group]["group_state"] == "Empty"
        offsets = admin.list_group_offsets({group: None})[group]
        assert {tp.partition: om.offset for tp, om in offsets.items()} == \
            {p: RECORDS // PARTITIONS for p in range(PARTITIONS)}
        # A non-member (generation -1) rewinds one partition, with commit metadata.
        rewind = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                               enable_auto_commit=False, request_timeout_ms=30000)
        rewind.commit({KpTopicPartition(topic, 0): OffsetAndMetadata(3, "rewound", -1)})
        rewind.close()
        offsets = admin.list_group_offsets({group: None})[group]
        assert offsets[KpTopicPartition(topic, 0)].offset == 3
        assert offsets[KpTopicPartition(topic, 0)].metadata == "rewound"
        described = admin.describe_groups([group])[group]
        assert described["group_state"] == "Empty" and described["error"] is None
        # OffsetDelete of one partition, then the whole group.
        deleted = admin.delete_group_offsets(group, [KpTopicPartition(topic, 1)])
        assert all(e.errno == 0 for e in deleted.values()), deleted
        offsets = admin.list_group_offsets({group: None})[group]
        assert KpTopicPartition(topic, 1) not in offsets
        assert admin.delete_groups([group]) == {group: "OK"}
        assert group not in {g["group_id"] for g in admin.list_groups()}
    finally:
        admin.close()


def test_confluent_consumer_protocol_kip848(bootstrap, topic_factory, admin):
    """librdkafka with group.protocol=consumer: the broker assigns (KIP-848)."""
    topic = topic_factory("ck-848", partitions=PARTITIONS)
    produce_spread(bootstrap, topic)
    group = f"ck-848-{uuid.uuid4().hex[:8]}"
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "socket.timeout.ms": 10000,
    }
    members = [Consumer(conf) for _ in range(2)]
    for c in members:
        c.subscribe([topic])
    seen = set()
    deadline = time.monotonic() + 60
    while len(seen) < RECORDS and time.monotonic() < deadline:
        for c in members:
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            seen.add((m.partition(), m.offset()))
            c.commit(message=m, asynchronous=False)
    assert len(seen) == RECORDS, f"consumed {len(seen)}/{RECORDS}"
    h.wait_for(lambda: [c.poll(0.1) for c in members] and
               sum(len(c.assignment()) for c in members) == PARTITIONS and
               all(c.assignment() for c in members),
               timeout=30, what="both members assigned")
    described = admin.describe_consumer_groups([group])[group].result(timeout=30)
    assert len(described.members) == 2
    assert str(described.type).endswith("CONSUMER"), described.type
    for c in members:
        c.close()
    committed = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])]
    )[group].result(timeout=30)
    assert {tp.partition: tp.offset for tp in committed.topic_partitions} == \
        {p: RECORDS // PARTITIONS for p in range(PARTITIONS)}
