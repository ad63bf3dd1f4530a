"""kafka-python (pure Python client) against the broker at $BOOTSTRAP.

The producer keeps kafka-python 3.x's default, enable_idempotence=True; consumers have group_id=None and use assign() + seek only.
"""

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import InvalidTopicError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

import compat_helpers as h

# kafka-python's codecs; snappy/lz4/zstd come from python-snappy, lz4, zstandard.
CODECS = [None, "gzip", "snappy", "lz4", "zstd"]
TIMEOUT_MS = 30000


def kp_producer(bootstrap, **extra):
    conf = dict(bootstrap_servers=bootstrap, acks="all",
                request_timeout_ms=TIMEOUT_MS, max_block_ms=TIMEOUT_MS,
                delivery_timeout_ms=TIMEOUT_MS + 5000, linger_ms=5)
    conf.update(extra)
    return KafkaProducer(**conf)


def kp_consumer(bootstrap, **extra):
    conf = dict(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", request_timeout_ms=TIMEOUT_MS,
                consumer_timeout_ms=5000, fetch_max_wait_ms=200)
    conf.update(extra)
    return KafkaConsumer(**conf)


def kp_admin(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)


def consume_n(consumer, n, timeout=h.WAIT):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=500)
        for tp in sorted(batch, key=lambda tp: (tp.topic, tp.partition)):
            out.extend(batch[tp])
    assert len(out) >= n, f"consumed {len(out)}/{n} within {timeout}s"
    # Nothing beyond what was expected.
    extra = consumer.poll(timeout_ms=500)
    assert not any(extra.values()), extra
    return out


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c or "none")
def test_produce_consume_codec(bootstrap, topic_factory, codec):
    topic = topic_factory(f"kp-{codec or 'none'}")
    n = 400
    base_ts = 1_700_000_000_000
    sent = []
    p = kp_producer(bootstrap, compression_type=codec, linger_ms=20)
    try:
        futs = []
        for i in range(n):
            key = f"k{i}".encode() if i % 5 else None
            value = (f"value-{i}-" + "q" * (i % 113)).encode() if i % 9 else b""
            headers = [("h1", f"{i}".encode()), ("h2", b"")] if i % 4 == 0 else []
            sent.append((key, value, headers, base_ts + i))
            futs.append(p.send(topic, value=value, key=key, headers=headers, partition=0,
                               timestamp_ms=base_ts + i))
        p.flush(timeout=30)
        metas = [f.get(timeout=30) for f in futs]
    finally:
        p.close(timeout=10)
    assert [m.offset for m in metas] == list(range(n))
    assert all(m.partition == 0 and m.topic == topic for m in metas)

    c = kp_consumer(bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = consume_n(c, n)
    finally:
        c.close()
    assert [(r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in got] == [
        (i, k, v, hd, ts) for i, (k, v, hd, ts) in enumerate(sent)]
    assert all(r.timestamp_type == 0 for r in got)  # CreateTime


def test_large_value_and_many_partitions(bootstrap, topic_factory):
    nparts = 12
    topic = topic_factory("kp-many", partitions=nparts)
    big = bytes(range(256)) * 3500  # ~900 KB
    p = kp_producer(bootstrap, max_request_size=2_000_000, compression_type="gzip")
    try:
        futs = [p.send(topic, key=f"p{q}".encode(), value=f"v{q}".encode(), partition=q)
                for q in range(nparts)]
        futs.append(p.send(topic, key=b"big", value=big, partition=3))
        p.flush(timeout=30)
        for f in futs:
            f.get(timeout=30)
    finally:
        p.close(timeout=10)

    c = kp_consumer(bootstrap, max_partition_fetch_bytes=2_000_000)
    try:
        tps = [TopicPartition(topic, q) for q in range(nparts)]
        c.assign(tps)
        c.seek_to_beginning()
        got = consume_n(c, nparts + 1)
    finally:
        c.close()
    seen = sorted((r.partition, r.offset, r.key, r.value) for r in got)
    expected = sorted([(q, 0, f"p{q}".encode(), f"v{q}".encode()) for q in range(nparts)]
                      + [(3, 1, b"big", big)])
    assert seen == expected


def test_seek_and_offset_lookups(bootstrap, topic_factory):
    topic = topic_factory("kp-offsets", partitions=2)
    base = int(time.time() * 1000) - 300_000
    ts = [base + 1000 * i for i in range(8)]
    p = kp_producer(bootstrap, linger_ms=0)
    try:
        for i, t in enumerate(ts):
            p.send(topic, value=f"m{i}".encode(), partition=0, timestamp_ms=t).get(timeout=30)
    finally:
        p.close(timeout=10)

    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    c = kp_consumer(bootstrap)
    try:
        assert c.beginning_offsets([tp0, tp1], timeout_ms=TIMEOUT_MS) == {tp0: 0, tp1: 0}
        assert c.end_offsets([tp0, tp1], timeout_ms=TIMEOUT_MS) == {tp0: 8, tp1: 0}

        res = c.offsets_for_times({tp0: ts[3], tp1: ts[0]}, timeout_ms=TIMEOUT_MS)
        assert res[tp0].offset == 3 and res[tp0].timestamp == ts[3]
        assert res[tp1] is None  # empty partition
        res = c.offsets_for_times({tp0: ts[3] + 1}, timeout_ms=TIMEOUT_MS)
        assert (res[tp0].offset, res[tp0].timestamp) == (4, ts[4])
        res = c.offsets_for_times({tp0: ts[-1] + 1}, timeout_ms=TIMEOUT_MS)
        assert res[tp0] is None  # beyond the last record
        res = c.offsets_for_times({tp0: 0}, timeout_ms=TIMEOUT_MS)
        assert res[tp0].offset == 0

        c.assign([tp0])
        c.seek(tp0, 5)
        got = consume_n(c, 3)
        assert [(r.offset, r.value) for r in got] == [(i, f"m{i}".encode()) for i in range(5, 8)]
        assert c.position(tp0) == 8

        c.seek_to_beginning(tp0)
        assert c.position(tp0) == 0
        got = consume_n(c, 8)
        assert [r.value for r in got] == [f"m{i}".encode() for i in range(8)]

        c.seek_to_end(tp0)
        assert c.position(tp0) == 8
        assert c.highwater(tp0) == 8
    finally:
        c.close()


def test_admin_create_describe_delete(bootstrap, admin):
    name = h.unique_topic("kp-admin")
    adm = kp_admin(bootstrap)
    try:
        # validate_only leaves nothing behind.
        adm.create_topics({name: {"num_partitions": 3, "replication_factor": 1}},
                          validate_only=True, timeout_ms=TIMEOUT_MS)
        time.sleep(1)
        assert name not in adm.list_topics()

        adm.create_topics({name: {"num_partitions": 3, "replication_factor": 1,
                                  "configs": {"retention.ms": "7200000"}}},
                          timeout_ms=TIMEOUT_MS, wait_for_metadata=True)
        assert name in adm.list_topics()
        desc = adm.describe_topics([name])
        assert len(desc) == 1 and desc[0]["name"] == name and desc[0]["error_code"] == 0
        assert sorted(p["partition_index"] for p in desc[0]["partitions"]) == [0, 1, 2]
        assert all(p["error_code"] == 0 and p["leader_id"] >= 0 for p in desc[0]["partitions"])

        with pytest.raises(TopicAlreadyExistsError):
            adm.create_topics({name: {"num_partitions": 3, "replication_factor": 1}},
                              timeout_ms=TIMEOUT_MS)

        # Default filter ('modified'): only the override we set.
        cfg = adm.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        assert cfg["topic"][name]["retention.ms"]["value"] == "7200000", cfg
        cfg = adm.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)],
                                   config_filter="all")
        topic_cfg = cfg["topic"][name]
        assert topic_cfg["retention.ms"]["value"] == "7200000"
        assert "cleanup.policy" in topic_cfg, sorted(topic_cfg)

        adm.delete_topics([name], timeout_ms=TIMEOUT_MS)
        h.wait_for(lambda: name not in adm.list_topics(), what=f"{name} deleted")

        with pytest.raises(UnknownTopicOrPartitionError):
            adm.delete_topics([name], timeout_ms=TIMEOUT_MS)
    finally:
        adm.close()
        h.delete_topics_quietly(admin, [name])


def test_admin_invalid_topic_name(bootstrap):
    adm = kp_admin(bootstrap)
    try:
        with pytest.raises(InvalidTopicError):
            adm.create_topics({"bad name!": {"num_partitions": 1, "replication_factor": 1}},
                              timeout_ms=TIMEOUT_MS)
    finally:
        adm.close()
