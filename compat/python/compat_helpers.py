"""Helpers shared by the compat tests (topic management, bounded consume loops)."""

import shutil
import subprocess
import time
import uuid

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

# Default bound for any single wait in the suite (seconds).
WAIT = 30.0

# librdkafka consumer settings used everywhere: manual assignment only, no
# offset commits.  group.id is set because confluent-kafka's Consumer
# historically insisted on one; it is never used for subscribe()/commit().
CONSUMER_NO_GROUP = {
    "group.id": "dlog-compat-unused-group",
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "enable.partition.eof": True,
    "session.timeout.ms": 10000,
    "socket.timeout.ms": 10000,
}


def unique_topic(prefix="t"):
    return f"compat-{prefix}-{uuid.uuid4().hex[:12]}"


def admin_client(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def wait_for(cond, timeout=WAIT, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            result = cond()
            if result:
                return result
        except (KafkaException, OSError) as exc:  # transient until the topic propagates
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})")


def topic_partitions_ready(admin, name, partitions):
    md = admin.list_topics(topic=name, timeout=10)
    t = md.topics.get(name)
    if t is None or t.error is not None:
        return False
    if len(t.partitions) != partitions:
        return False
    return all(p.error is None and p.leader >= 0 for p in t.partitions.values())


def create_topic(admin, name, partitions=1, config=None, replication_factor=1):
    fut = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor,
                  config=config or {})],
        request_timeout=WAIT,
        operation_timeout=WAIT,
    )[name]
    fut.result(timeout=WAIT + 5)
    wait_for(lambda: topic_partitions_ready(admin, name, partitions),
             what=f"topic {name} with {partitions} partitions in metadata")
    return name


def delete_topics_quietly(admin, names):
    try:
        futs = admin.delete_topics(list(names), request_timeout=WAIT, operation_timeout=WAIT)
        for f in futs.values():
            try:
                f.result(timeout=WAIT + 5)
            except Exception:
                pass
    except Exception:
        pass


def producer(bootstrap, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 30000,
        "socket.timeout.ms": 10000,
    }
    conf.update(extra)
    return Producer(conf)


def produce_all(p, records, timeout=WAIT):
    """Produce dicts of Producer.produce kwargs; return delivered messages in input order.

    Raises on any delivery error.
    """
    results = [None] * len(records)
    errors = []

    def cb_for(i):
        def cb(err, msg):
            if err is not None:
                errors.append((i, err))
            else:
                results[i] = msg
        return cb

    for i, rec in enumerate(records):
        while True:
            try:
                p.produce(on_delivery=cb_for(i), **rec)
                break
            except BufferError:
                p.poll(0.1)
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout}s"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert all(m is not None for m in results)
    return results


def consumer(bootstrap, **extra):
    conf = {"bootstrap.servers": bootstrap}
    conf.update(CONSUMER_NO_GROUP)
    conf.update(extra)
    return Consumer(conf)


def consume_partitions(bootstrap, topic, partitions, expected_count, timeout=WAIT, **extra):
    """assign() the given partitions from the beginning and read until EOF on all of them
    and at least expected_count messages were read.  Returns {partition: [Message...]}."""
    c = consumer(bootstrap, **extra)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out = {p: [] for p in partitions}
        eof = set()
        n = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    eof.add(msg.partition())
                    if len(eof) == len(partitions) and n >= expected_count:
                        break
                    continue
                raise AssertionError(f"consume error: {err}")
            out[msg.partition()].append(msg)
            n += 1
            eof.discard(msg.partition())
            if n >= expected_count and len(eof) == len(partitions):
                break
        else:
            raise AssertionError(
                f"timed out after {timeout}s: consumed {n}/{expected_count} from {topic}, "
                f"EOF on {sorted(eof)} of {sorted(partitions)}")
        return out
    finally:
        c.close()


def msg_tuple(m):
    """Everything observable about a consumed/delivered confluent-kafka Message."""
    return (m.partition(), m.offset(), m.key(), m.value(), m.headers() or [])


# ---------------------------------------------------------------- kcat

def kcat_path():
    path = shutil.which("kcat") or shutil.which("kafkacat")
    assert path, "kcat is not installed (run compat/python/install.sh)"
    return path


def kcat(bootstrap, args, stdin=None, timeout=60):
    cmd = [kcat_path(), "-b", bootstrap, "-X", "socket.timeout.ms=10000"] + list(args)
    proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"kcat {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout[-2000:]!r}\n"
            f"stderr: {proc.stderr[-4000:]!r}")
    return proc
