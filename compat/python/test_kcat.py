"""kcat (Debian's build, librdkafka 2.0.2) against the broker at $BOOTSTRAP."""

import json

import pytest

import compat_helpers as h

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def kcat_consume(bootstrap, topic, partition, count):
    """Read a partition from the beginning to its end; return the parsed JSON envelopes."""
    proc = h.kcat(bootstrap, ["-C", "-t", topic, "-p", str(partition), "-o", "beginning",
                              "-e", "-c", str(count + 1), "-J", "-q"])
    out = []
    for line in proc.stdout.decode().splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def test_metadata_lists_topic(bootstrap, topic_factory):
    topic = topic_factory("kcat-md", partitions=3)

    proc = h.kcat(bootstrap, ["-L", "-J", "-t", topic])
    md = json.loads(proc.stdout)
    assert md["brokers"], md
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics, md
    t = topics[topic]
    assert "error" not in t or not t["error"], t
    assert sorted(p["partition"] for p in t["partitions"]) == [0, 1, 2]
    broker_ids = {b["id"] for b in md["brokers"]}
    for p in t["partitions"]:
        assert p["leader"] in broker_ids, p

    # Full listing (no -t) also contains the topic.
    proc = h.kcat(bootstrap, ["-L", "-J"])
    md = json.loads(proc.stdout)
    assert topic in {t["topic"] for t in md["topics"]}

    # Plain-text listing mentions it as well.
    proc = h.kcat(bootstrap, ["-L", "-t", topic])
    assert f'topic "{topic}" with 3 partitions' in proc.stdout.decode()


@pytest.mark.parametrize("codec", CODECS)
def test_produce_consume_keys_codec(bootstrap, topic_factory, codec):
    topic = topic_factory(f"kcat-{codec}")
    n = 300
    lines = [f"key-{i}:value-{i}-{codec}-" + ("abc" * (i % 40)) for i in range(n)]
    h.kcat(bootstrap, ["-P", "-t", topic, "-p", "0", "-K:", "-z", codec,
                       "-X", "linger.ms=20", "-X", "batch.num.messages=50"],
           stdin=("\n".join(lines) + "\n").encode())

    got = kcat_consume(bootstrap, topic, 0, n)
    assert len(got) == n, got[-3:]
    for i, (line, m) in enumerate(zip(lines, got)):
        key, value = line.split(":", 1)
        assert m["topic"] == topic
        assert m["partition"] == 0
        assert m["offset"] == i
        assert m["key"] == key
        assert m["payload"] == value
        assert m["tstype"] == "create"
        assert m["ts"] > 0


def test_headers(bootstrap, topic_factory):
    topic = topic_factory("kcat-hdr")
    lines = ["k1:v1", "k2:v2", "k3:v3"]
    h.kcat(bootstrap, ["-P", "-t", topic, "-p", "0", "-K:",
                       "-H", "h1=hv1", "-H", "h2=", "-H", "h1=dup"],
           stdin=("\n".join(lines) + "\n").encode())

    got = kcat_consume(bootstrap, topic, 0, len(lines))
    assert [(m["key"], m["payload"]) for m in got] == [tuple(l.split(":")) for l in lines]
    for m in got:
        assert m["headers"] == ["h1", "hv1", "h2", "", "h1", "dup"], m

    # Also via a format string.
    proc = h.kcat(bootstrap, ["-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q",
                              "-f", "%o|%k|%s|%h\n"])
    assert proc.stdout.decode().splitlines() == [
        f"{i}|k{i + 1}|v{i + 1}|h1=hv1,h2=,h1=dup" for i in range(3)]


def test_multiple_partitions(bootstrap, topic_factory):
    topic = topic_factory("kcat-parts", partitions=3)
    for p in range(3):
        lines = [f"p{p}k{i}:p{p}v{i}" for i in range(10 + p)]
        h.kcat(bootstrap, ["-P", "-t", topic, "-p", str(p), "-K:", "-z", "lz4"],
               stdin=("\n".join(lines) + "\n").encode())
    for p in range(3):
        got = kcat_consume(bootstrap, topic, p, 10 + p)
        assert [(m["offset"], m["key"], m["payload"]) for m in got] == [
            (i, f"p{p}k{i}", f"p{p}v{i}") for i in range(10 + p)]

    # Offset queries (-Q): -1 = latest (high watermark), -2 = earliest.
    proc = h.kcat(bootstrap, ["-Q", "-t", f"{topic}:0:-1", "-t", f"{topic}:2:-2"])
    text = proc.stdout.decode()
    assert text.splitlines() == [f"{topic} [0] offset 10", f"{topic} [2] offset 0"], text


def test_empty_and_null_values(bootstrap, topic_factory):
    topic = topic_factory("kcat-null")
    # Without -Z an empty value is produced as an empty (non-null) value;
    # with -Z it becomes NULL.  Same for keys.
    h.kcat(bootstrap, ["-P", "-t", topic, "-p", "0", "-K:"], stdin=b"k0:\n:v1\n")
    h.kcat(bootstrap, ["-P", "-t", topic, "-p", "0", "-K:", "-Z"], stdin=b"k2:\n:v3\n")
    got = kcat_consume(bootstrap, topic, 0, 4)
    assert [(m["key"], m["payload"]) for m in got] == [
        ("k0", ""), ("", "v1"), ("k2", None), (None, "v3")]


def test_auto_create_on_produce(bootstrap, admin):
    """Producing to an unknown topic auto-creates it (broker default num.partitions)."""
    topic = h.unique_topic("kcat-auto")
    try:
        h.kcat(bootstrap, ["-P", "-t", topic, "-K:", "-X", "topic.metadata.refresh.interval.ms=500",
                           "-X", "message.timeout.ms=30000"],
               stdin=b"a:1\nb:2\nc:3\n")
        md = admin.list_topics(topic=topic, timeout=10)
        assert topic in md.topics and md.topics[topic].error is None
        nparts = len(md.topics[topic].partitions)
        assert nparts >= 1
        got = []
        for p in range(nparts):
            got += kcat_consume(bootstrap, topic, p, 3)
        assert sorted((m["key"], m["payload"]) for m in got) == [("a", "1"), ("b", "2"), ("c", "3")]
    finally:
        h.delete_topics_quietly(admin, [topic])
