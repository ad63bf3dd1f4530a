"""Run-time administration with confluent-kafka (librdkafka 2.x) against $BOOTSTRAP:
IncrementalAlterConfigs and AlterConfigs on topics and the broker, CreatePartitions,
DeleteRecords. The same file runs against Apache Kafka in the differential run, so every
outcome asserted here is Kafka's own.
"""

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    ResourceType,
)

import compat_helpers as h

BROKER_ID = "1"


def _describe(admin, resource_type, name):
    resource = ConfigResource(resource_type, name)
    return admin.describe_configs([resource])[resource].result(timeout=h.WAIT)


def _incremental(admin, resource_type, name, entries, validate_only=False):
    resource = ConfigResource(resource_type, name, incremental_configs=entries)
    future = admin.incremental_alter_configs([resource], validate_only=validate_only)[resource]
    return future.result(timeout=h.WAIT)


def _error_code(excinfo):
    return excinfo.value.args[0].code()


def test_incremental_alter_topic_configs(admin, topic_factory):
    topic = topic_factory("ck-cfg")
    _incremental(admin, ResourceType.TOPIC, topic, [
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ])
    configs = _describe(admin, ResourceType.TOPIC, topic)
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert sorted(configs["cleanup.policy"].value.split(",")) == ["compact", "delete"]

    _incremental(admin, ResourceType.TOPIC, topic, [
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT),
    ])
    configs = _describe(admin, ResourceType.TOPIC, topic)
    assert configs["retention.ms"].value == "604800000"
    assert configs["retention.ms"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["cleanup.policy"].value == "compact"

    # validate_only changes nothing.
    _incremental(admin, ResourceType.TOPIC, topic, [
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET),
    ], validate_only=True)
    assert _describe(admin, ResourceType.TOPIC, topic)["retention.ms"].value == "604800000"


@pytest.mark.parametrize("name,value", [
    ("retention.ms", "soon"),
    ("no.such.config", "1"),
    ("cleanup.policy", "sometimes"),
])
def test_invalid_topic_config_refused(admin, topic_factory, name, value):
    topic = topic_factory("ck-badcfg")
    with pytest.raises(KafkaException) as excinfo:
        _incremental(admin, ResourceType.TOPIC, topic, [
            ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET),
        ])
    assert _error_code(excinfo) == KafkaError.INVALID_CONFIG
    assert _describe(admin, ResourceType.TOPIC, topic)["retention.ms"].value == "604800000"


def test_append_to_a_non_list_config_refused(admin, topic_factory):
    topic = topic_factory("ck-append")
    with pytest.raises(KafkaException) as excinfo:
        _incremental(admin, ResourceType.TOPIC, topic, [
            ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.APPEND),
        ])
    assert _error_code(excinfo) == KafkaError.INVALID_CONFIG


def test_alter_configs_of_unknown_topic(admin):
    with pytest.raises(KafkaException) as excinfo:
        _incremental(admin, ResourceType.TOPIC, h.unique_topic("ck-nosuch"), [
            ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET),
        ])
    assert _error_code(excinfo) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_dynamic_broker_config(admin, topic_factory):
    topic = topic_factory("ck-brokercfg")
    _incremental(admin, ResourceType.BROKER, BROKER_ID, [
        ConfigEntry("log.retention.bytes", "987654321", incremental_operation=AlterConfigOpType.SET),
    ])
    try:
        # Kafka applies dynamic broker configs asynchronously (through its metadata log).
        h.wait_for(lambda: _describe(admin, ResourceType.TOPIC, topic)["retention.bytes"].value
                   == "987654321", what="dynamic broker config in force")
        configs = _describe(admin, ResourceType.TOPIC, topic)
        assert configs["retention.bytes"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
        broker = _describe(admin, ResourceType.BROKER, BROKER_ID)
        assert broker["log.retention.bytes"].value == "987654321"
        assert broker["log.retention.bytes"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    finally:
        _incremental(admin, ResourceType.BROKER, BROKER_ID, [
            ConfigEntry("log.retention.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
        ])
    h.wait_for(lambda: _describe(admin, ResourceType.TOPIC, topic)["retention.bytes"].value == "-1",
               what="dynamic broker config removed")


def test_create_partitions_then_produce_to_new_ones(bootstrap, admin, topic_factory):
    topic = topic_factory("ck-grow", partitions=3)
    admin.create_partitions([NewPartitions(topic, 6)])[topic].result(timeout=h.WAIT)
    h.wait_for(lambda: h.topic_partitions_ready(admin, topic, 6), what="6 partitions")
    p = h.producer(bootstrap)
    delivered = h.produce_all(p, [{"topic": topic, "partition": i, "value": b"v"} for i in range(6)])
    assert sorted(m.partition() for m in delivered) == list(range(6))

    for count, code in [(4, KafkaError.INVALID_PARTITIONS), (6, KafkaError.INVALID_PARTITIONS)]:
        with pytest.raises(KafkaException) as excinfo:
            admin.create_partitions([NewPartitions(topic, count)])[topic].result(timeout=h.WAIT)
        assert _error_code(excinfo) == code


def test_delete_records(bootstrap, admin, topic_factory):
    topic = topic_factory("ck-trim")
    p = h.producer(bootstrap)
    h.produce_all(p, [{"topic": topic, "partition": 0, "value": b"%d" % i} for i in range(50)])
    result = admin.delete_records([TopicPartition(topic, 0, 20)])
    low = list(result.values())[0].result(timeout=h.WAIT)
    assert low.low_watermark == 20
    c = h.consumer(bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=h.WAIT) == (20, 50)
    finally:
        c.close()
    with pytest.raises(KafkaException) as excinfo:
        result = admin.delete_records([TopicPartition(topic, 0, 500)])
        list(result.values())[0].result(timeout=h.WAIT)
    assert _error_code(excinfo) == KafkaError.OFFSET_OUT_OF_RANGE


def test_keyless_record_refused_on_compacted_topic(bootstrap, topic_factory):
    topic = topic_factory("ck-compacted", config={"cleanup.policy": "compact"})
    p = h.producer(bootstrap, **{"message.timeout.ms": 10000})
    errors = []
    p.produce(topic, partition=0, value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(h.WAIT) == 0
    assert [e.code() for e in errors] == [KafkaError.INVALID_RECORD]
    delivered = h.produce_all(p, [{"topic": topic, "partition": 0, "key": b"k", "value": b"v"}])
    assert delivered[0].offset() == 0
