"""confluent-kafka (librdkafka 2.x) against the broker at $BOOTSTRAP.

Consumers use assign() with explicit offsets only: no subscribe(), no commits.
Producers run with enable.idempotence=true; one test uses a transactional producer.
"""

import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import ConfigResource, NewTopic, OffsetSpec, ResourceType

import compat_helpers as h

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


# ------------------------------------------------------------------ admin


def test_admin_create_validate_only_describe_delete(bootstrap, admin):
    name = h.unique_topic("ck-admin")

    # validate_only: accepted, but the topic must not come into existence.
    fut = admin.create_topics([NewTopic(name, 3, 1)], validate_only=True,
                              request_timeout=30, operation_timeout=30)[name]
    assert fut.result(timeout=35) is None
    time.sleep(1)
    md = admin.list_topics(timeout=10)
    assert name not in md.topics or md.topics[name].error is not None

    try:
        fut = admin.create_topics([NewTopic(name, 3, 1, config={"retention.ms": "3600000"})],
                                  request_timeout=30, operation_timeout=30)[name]
        assert fut.result(timeout=35) is None
        h.wait_for(lambda: h.topic_partitions_ready(admin, name, 3), what="3 partitions")

        # Creating it again fails with TOPIC_ALREADY_EXISTS.
        fut = admin.create_topics([NewTopic(name, 3, 1)], request_timeout=30)[name]
        with pytest.raises(KafkaException) as ei:
            fut.result(timeout=35)
        assert ei.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

        # describe_configs on the topic, including the override we set.
        res = ConfigResource(ResourceType.TOPIC, name)
        configs = admin.describe_configs([res], request_timeout=30)[res].result(timeout=35)
        assert configs["retention.ms"].value == "3600000"
        assert not configs["retention.ms"].is_default
        assert "cleanup.policy" in configs
        assert configs["cleanup.policy"].value in ("delete", "compact", "delete,compact")

        # describe_configs on the broker.
        md = admin.list_topics(timeout=10)
        broker_id = str(next(iter(md.brokers)))
        bres = ConfigResource(ResourceType.BROKER, broker_id)
        bconfigs = admin.describe_configs([bres], request_timeout=30)[bres].result(timeout=35)
        assert bconfigs, "broker has no configs"
        well_known = {"num.partitions", "log.retention.hours", "log.retention.ms",
                      "message.max.bytes", "auto.create.topics.enable"}
        assert well_known & set(bconfigs), sorted(bconfigs)[:50]
        for entry in bconfigs.values():
            assert entry.name and entry.source is not None

        # Delete; it disappears from metadata.
        fut = admin.delete_topics([name], request_timeout=30, operation_timeout=30)[name]
        assert fut.result(timeout=35) is None
        h.wait_for(lambda: name not in admin.list_topics(timeout=10).topics,
                   what=f"{name} to disappear from metadata")
    finally:
        h.delete_topics_quietly(admin, [name])


@pytest.mark.parametrize("bad", ["bad name with spaces", "..", "x" * 250, "a/b"])
def test_admin_invalid_topic_name(admin, bad):
    fut = admin.create_topics([NewTopic(bad, 1, 1)], request_timeout=30)[bad]
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout=35)
    assert ei.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, ei.value


def test_admin_invalid_partitions(admin):
    name = h.unique_topic("ck-badparts")
    try:
        fut = admin.create_topics([NewTopic(name, 0, 1)], request_timeout=30)[name]
        with pytest.raises(Exception):
            fut.result(timeout=35)
    finally:
        h.delete_topics_quietly(admin, [name])


def test_admin_delete_unknown_topic(admin):
    name = h.unique_topic("ck-nonexist")
    fut = admin.delete_topics([name], request_timeout=30)[name]
    with pytest.raises(KafkaException) as ei:
        fut.result(timeout=35)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


# ------------------------------------------------------- produce/consume


def _records(topic, codec, n, partition=0):
    base_ts = 1_700_000_000_000
    recs = []
    for i in range(n):
        rec = {
            "topic": topic,
            "partition": partition,
            "key": f"k{i}".encode() if i % 7 else None,
            "value": (f"v{i}-{codec}-" + "z" * (i % 97)).encode() if i % 11 else b"",
            "timestamp": base_ts + i,
        }
        if i % 3 == 0:
            rec["headers"] = [("h-a", f"{i}".encode()), ("h-b", b""), ("h-a", b"dup")]
        recs.append(rec)
    return recs


def _expected(rec, offset):
    return (rec["partition"], offset, rec["key"], rec["value"], rec.get("headers") or [])


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_codec(bootstrap, topic_factory, codec):
    topic = topic_factory(f"ck-{codec}")
    n = 500
    recs = _records(topic, codec, n)
    p = h.producer(bootstrap, **{"compression.type": codec, "linger.ms": 20})
    delivered = h.produce_all(p, recs)
    assert [m.offset() for m in delivered] == list(range(n))

    got = h.consume_partitions(bootstrap, topic, [0], n)[0]
    assert [h.msg_tuple(m) for m in got] == [_expected(r, i) for i, r in enumerate(recs)]
    for r, m in zip(recs, got):
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, r["timestamp"])


def test_empty_and_null_keys_values(bootstrap, topic_factory):
    topic = topic_factory("ck-empty")
    recs = [
        {"topic": topic, "partition": 0, "key": None, "value": None},
        {"topic": topic, "partition": 0, "key": b"", "value": b""},
        {"topic": topic, "partition": 0, "key": b"k", "value": None},
        {"topic": topic, "partition": 0, "key": None, "value": b"v"},
        {"topic": topic, "partition": 0, "key": b"\x00\xff", "value": b"\x00\x01\x02\xfe\xff"},
        {"topic": topic, "partition": 0, "value": b"h", "headers": [("empty", b""), ("none", None)]},
    ]
    h.produce_all(h.producer(bootstrap), recs)
    got = h.consume_partitions(bootstrap, topic, [0], len(recs))[0]
    assert [(m.key(), m.value()) for m in got] == [
        (None, None), (b"", b""), (b"k", None), (None, b"v"), (b"\x00\xff", b"\x00\x01\x02\xfe\xff"),
        (None, b"h")]
    assert got[5].headers() == [("empty", b""), ("none", None)]


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_large_value(bootstrap, topic_factory, codec):
    topic = topic_factory(f"ck-large-{codec}")
    import os
    big = os.urandom(450 * 1024) * 2  # ~900 KB; half repeats so zstd shrinks it
    recs = [
        {"topic": topic, "partition": 0, "key": b"small-before", "value": b"x"},
        {"topic": topic, "partition": 0, "key": b"big", "value": big},
        {"topic": topic, "partition": 0, "key": b"small-after", "value": b"y"},
    ]
    p = h.producer(bootstrap, **{"compression.type": codec, "linger.ms": 0})
    h.produce_all(p, recs)
    got = h.consume_partitions(bootstrap, topic, [0], 3)[0]
    assert [(m.offset(), m.key(), m.value()) for m in got] == [
        (0, b"small-before", b"x"), (1, b"big", big), (2, b"small-after", b"y")]


def test_many_partitions(bootstrap, topic_factory):
    nparts = 24
    topic = topic_factory("ck-many", partitions=nparts)
    recs = []
    for p in range(nparts):
        for i in range(p % 5 + 1):
            recs.append({"topic": topic, "partition": p, "key": f"{p}-{i}".encode(),
                         "value": f"val-{p}-{i}".encode()})
    delivered = h.produce_all(h.producer(bootstrap, **{"compression.type": "lz4"}), recs)
    assert all(m.partition() == r["partition"] for m, r in zip(delivered, recs))

    got = h.consume_partitions(bootstrap, topic, list(range(nparts)), len(recs))
    for p in range(nparts):
        assert [(m.offset(), m.key(), m.value()) for m in got[p]] == [
            (i, f"{p}-{i}".encode(), f"val-{p}-{i}".encode()) for i in range(p % 5 + 1)]


def test_keyed_partitioner_spreads(bootstrap, topic_factory):
    """Default partitioner (murmur2_random in librdkafka): same key -> same partition."""
    topic = topic_factory("ck-keyed", partitions=3)
    recs = [{"topic": topic, "key": f"key-{i % 10}".encode(), "value": str(i).encode()}
            for i in range(100)]
    delivered = h.produce_all(h.producer(bootstrap), recs)
    by_key = {}
    for m in delivered:
        by_key.setdefault(m.key(), set()).add(m.partition())
    assert all(len(v) == 1 for v in by_key.values())
    got = h.consume_partitions(bootstrap, topic, [0, 1, 2], 100)
    consumed = sorted((m.partition(), m.offset(), m.key(), m.value()) for ms in got.values() for m in ms)
    produced = sorted((m.partition(), m.offset(), m.key(), m.value()) for m in delivered)
    assert consumed == produced


def test_acks_variants(bootstrap, topic_factory):
    topic = topic_factory("ck-acks")
    recs = []
    c = h.consumer(bootstrap)
    try:
        for acks in ("0", "1", "all"):
            # Idempotence requires acks=all; the other variants are plain producers.
            extra = {} if acks == "all" else {"enable.idempotence": False}
            p = h.producer(bootstrap, acks=acks, **extra)
            batch = [{"topic": topic, "partition": 0, "value": f"{acks}-{i}".encode()}
                     for i in range(20)]
            h.produce_all(p, batch)
            recs += batch
            # acks=0 gives no completion signal: wait until the broker has appended the
            # batch so that the next producer's records land after it.
            h.wait_for(lambda: c.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[1]
                       == len(recs), what=f"high watermark {len(recs)} after acks={acks}")
    finally:
        c.close()
    got = h.consume_partitions(bootstrap, topic, [0], len(recs))[0]
    assert [m.value() for m in got] == [r["value"] for r in recs]
    assert [m.offset() for m in got] == list(range(len(recs)))


# ------------------------------------------------------------- consumer


def test_assign_from_offsets_and_seek(bootstrap, topic_factory):
    topic = topic_factory("ck-seek")
    recs = [{"topic": topic, "partition": 0, "value": f"m{i}".encode()} for i in range(50)]
    h.produce_all(h.producer(bootstrap), recs)

    c = h.consumer(bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, 30)])
        vals = []
        deadline = time.monotonic() + h.WAIT
        while len(vals) < 20 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                assert m is None or m.error().code() == KafkaError._PARTITION_EOF
                continue
            vals.append((m.offset(), m.value()))
        assert vals == [(i, f"m{i}".encode()) for i in range(30, 50)]

        # Seek back and read again.
        c.seek(TopicPartition(topic, 0, 5))
        vals = []
        deadline = time.monotonic() + h.WAIT
        while len(vals) < 3 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            vals.append((m.offset(), m.value()))
        assert vals == [(i, f"m{i}".encode()) for i in range(5, 8)]
        assert c.position([TopicPartition(topic, 0)])[0].offset >= 8

        # OFFSET_END yields nothing until something new arrives.
        c.assign([TopicPartition(topic, 0, OFFSET_END)])
        for _ in range(3):
            m = c.poll(0.3)
            assert m is None or (m.error() and m.error().code() == KafkaError._PARTITION_EOF)
        h.produce_all(h.producer(bootstrap), [{"topic": topic, "partition": 0, "value": b"new"}])
        deadline = time.monotonic() + h.WAIT
        got = None
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got = m
        assert got is not None and got.value() == b"new" and got.offset() == 50
    finally:
        c.close()


def test_fetch_waits_for_new_data(bootstrap, topic_factory):
    """Long-poll: an empty fetch returns when data arrives (fetch.wait.max.ms)."""
    topic = topic_factory("ck-longpoll")
    c = h.consumer(bootstrap, **{"fetch.wait.max.ms": 2000})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        t0 = time.monotonic()
        # Nothing there yet.
        while time.monotonic() - t0 < 1.5:
            m = c.poll(0.3)
            assert m is None or m.error()
        h.produce_all(h.producer(bootstrap), [{"topic": topic, "partition": 0, "value": b"late"}])
        deadline = time.monotonic() + h.WAIT
        got = None
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got = m
        assert got is not None and got.value() == b"late"
    finally:
        c.close()


# --------------------------------------------------------------- offsets


def _setup_timestamped(bootstrap, topic):
    base = int(time.time() * 1000) - 600_000
    ts = [base + 1000 * i for i in range(10)]
    # One out-of-order (older) timestamp at offset 7; max timestamp is at offset 9.
    ts[7] = base - 5000
    recs = [{"topic": topic, "partition": 0, "value": f"t{i}".encode(), "timestamp": t}
            for i, t in enumerate(ts)]
    h.produce_all(h.producer(bootstrap, **{"linger.ms": 0}), recs)
    return ts


def test_watermarks_and_offsets_for_times(bootstrap, topic_factory):
    topic = topic_factory("ck-offsets", partitions=2)
    ts = _setup_timestamped(bootstrap, topic)
    c = h.consumer(bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 10)
        assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=10) == (0, 0)
        # Cached variant needs a fetch to have happened; only check it does not raise.
        c.get_watermark_offsets(TopicPartition(topic, 0), cached=True)

        def oft(t, p=0):
            res = c.offsets_for_times([TopicPartition(topic, p, t)], timeout=10)
            assert res[0].error is None, res[0].error
            return res[0].offset

        assert oft(ts[0]) == 0
        assert oft(ts[0] + 1) == 1          # first offset with timestamp >= target
        assert oft(ts[3]) == 3
        assert oft(ts[6] + 1) == 8          # offset 7's older timestamp is skipped
        assert oft(ts[0] - 100_000) == 0    # before everything -> earliest
        assert oft(ts[9] + 1) == -1         # after everything -> end (-1, OFFSET_END)
        assert oft(ts[0], p=1) == -1        # empty partition
    finally:
        c.close()


def test_admin_list_offsets(bootstrap, admin, topic_factory):
    topic = topic_factory("ck-listoffs")
    ts = _setup_timestamped(bootstrap, topic)
    tp = TopicPartition(topic, 0)

    def lo(spec):
        res = admin.list_offsets({tp: spec}, request_timeout=30)
        return res[tp].result(timeout=35)

    assert lo(OffsetSpec.earliest()).offset == 0
    assert lo(OffsetSpec.latest()).offset == 10
    r = lo(OffsetSpec.for_timestamp(ts[2]))
    assert (r.offset, r.timestamp) == (2, ts[2])
    r = lo(OffsetSpec.for_timestamp(ts[6] + 1))
    assert (r.offset, r.timestamp) == (8, ts[8])
    assert lo(OffsetSpec.for_timestamp(ts[9] + 1)).offset == -1
    r = lo(OffsetSpec.max_timestamp())
    assert (r.offset, r.timestamp) == (9, ts[9])


def test_list_offsets_empty_and_unknown(bootstrap, admin, topic_factory):
    topic = topic_factory("ck-listoffs-empty")
    tp = TopicPartition(topic, 0)
    for spec in (OffsetSpec.earliest(), OffsetSpec.latest()):
        assert admin.list_offsets({tp: spec}, request_timeout=30)[tp].result(timeout=35).offset == 0

    c = h.consumer(bootstrap)
    try:
        with pytest.raises(KafkaException):
            c.get_watermark_offsets(TopicPartition(topic, 5), timeout=5)
    finally:
        c.close()


# ------------------------------------------------------------- transactions


def test_transactions_commit_abort_and_fencing(bootstrap, topic_factory):
    """A transactional producer's commits are visible to read_committed consumers, its aborts
    only to read_uncommitted ones; a second producer with the same transactional.id fences the
    first."""
    topic = topic_factory("ck-txn")
    txn_id = f"{topic}-id"
    p = h.producer(bootstrap, **{"transactional.id": txn_id})
    p.init_transactions(h.WAIT)
    for round_, commit in ((0, True), (1, False), (2, True)):
        p.begin_transaction()
        for i in range(5):
            p.produce(topic, f"r{round_}-{i}".encode(), partition=0)
        p.flush(h.WAIT)
        if commit:
            p.commit_transaction(h.WAIT)
        else:
            p.abort_transaction(h.WAIT)
    p.begin_transaction()
    p.produce(topic, b"zombie", partition=0)
    p.flush(h.WAIT)
    successor = h.producer(bootstrap, **{"transactional.id": txn_id})
    successor.init_transactions(h.WAIT)
    with pytest.raises(KafkaException):
        p.commit_transaction(h.WAIT)
    successor.begin_transaction()
    successor.produce(topic, b"successor", partition=0)
    successor.commit_transaction(h.WAIT)

    expected = [f"r{r}-{i}".encode() for r in (0, 2) for i in range(5)] + [b"successor"]
    committed = h.consume_partitions(bootstrap, topic, [0], len(expected),
                                     **{"isolation.level": "read_committed"})[0]
    assert [m.value() for m in committed] == expected
    everything = h.consume_partitions(bootstrap, topic, [0], 17,
                                      **{"isolation.level": "read_uncommitted"})[0]
    assert len(everything) == 17  # 15 + zombie + successor; markers are not records
