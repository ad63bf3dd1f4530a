"""The clients of a run, each a thread with its own confluent-kafka (librdkafka) client, writing
every operation to the history.

queue workload (a non-transactional topic):
  QueueProducer   idempotent producer (acks=all, enable.idempotence), unique integer values to
                  random partitions; "crashed" every few seconds (purge + drop, a new producer id)
  AssignReader    assign() of every partition from the beginning; replaced every few seconds
  GroupReader     subscribe() in a group (classic or KIP-848 `consumer` protocol), commits its
                  position synchronously after each poll; "crashed" (closed without committing
                  its last poll) every few seconds
transaction workload (a second topic):
  TxnProducer     transactional producer: 1-4 writes to random partitions per transaction,
                  commit (70 %) or abort; sometimes crashes in the middle of a transaction (the
                  next producer with the same transactional.id fences it)
  AssignReader    read_committed and read_uncommitted
consume-transform-produce (queue topic -> a third topic):
  Transformer     group consumer + transactional producer, offsets committed in the transaction
Values are unique integers from one counter shared by all producers.
"""

import itertools
import os
import random
import sys
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

VALUES = itertools.count(1)

COMMON = {
    "socket.timeout.ms": 10000,
    "reconnect.backoff.max.ms": 1000,
    "topic.metadata.refresh.interval.ms": 2000,
    "metadata.max.age.ms": 6000,
    "log_level": 3,  # librdkafka errors only on stderr: disconnects are the point of the exercise
}


# CHAOS_CTP_DEBUG=eos,protocol: librdkafka debug logs of the transformers' producers on stderr.
DEBUG = {"debug": os.environ["CHAOS_CTP_DEBUG"], "log_level": 7} if os.environ.get("CHAOS_CTP_DEBUG") else {}
# CHAOS_PRODUCER_DEBUG=msg,eos: librdkafka debug logs of the idempotent queue producers on stderr
# (which broker took which batch, IMPLICITACK: a batch acknowledged by a later one's success).
PRODUCER_DEBUG = ({"debug": os.environ["CHAOS_PRODUCER_DEBUG"], "log_level": 7}
                  if os.environ.get("CHAOS_PRODUCER_DEBUG") else {})


def flush(producer, timeout_s):
    """producer.flush, with a fatal error raised as a KafkaException. confluent-kafka 2.16's flush
    raises a fatal error (e.g. OUT_OF_ORDER_SEQUENCE_NUMBER after the reorder nemesis) as the
    KafkaError object itself, which is no Exception subclass: `except Exception` misses it."""
    try:
        return producer.flush(timeout_s)
    except KafkaException:
        raise
    except:  # noqa: E722 - the KafkaError object, see above
        error = sys.exc_info()[1]
        if isinstance(error, KafkaError):
            raise KafkaException(error) from None
        raise


class Client(threading.Thread):
    def __init__(self, name, history, bootstrap, stop, rng):
        super().__init__(name=name, daemon=True)
        self.process = name
        self.history = history
        self.bootstrap = bootstrap
        self.stop_event = stop
        self.rng = rng
        self.session = 0
        self.errors = 0
        self.crashes = 0

    def config(self, **extra):
        conf = dict(COMMON)
        conf["bootstrap.servers"] = self.bootstrap
        conf["error_cb"] = self._error
        conf.update(extra)
        return conf

    def _error(self, err):
        self.errors += 1

    def stopping(self):
        return self.stop_event.is_set()


class QueueProducer(Client):
    def __init__(self, name, history, bootstrap, stop, rng, topic, partitions, interval_s=0.01):
        super().__init__(name, history, bootstrap, stop, rng)
        self.topic, self.partitions, self.interval_s = topic, partitions, interval_s
        self.outstanding = {}

    def _on_delivery(self, base, err, msg):
        self.outstanding.pop(base["value"], None)
        if err is None:
            self.history.complete(self.process, "ok", "send", dict(base, offset=msg.offset()))
        elif err.code() == KafkaError._PURGE_QUEUE:
            # Never handed to a broker: certainly not written.
            self.history.complete(self.process, "fail", "send", dict(base, error=err.name()))
        else:
            self.history.complete(self.process, "info", "send", dict(base, error=err.name()))

    def _drop(self, producer, flush_s):
        try:
            if flush_s:
                flush(producer, flush_s)
            else:
                producer.purge()
                flush(producer, 2)
        except KafkaException:
            pass  # a fatal producer: what it did not report is indeterminate (below)
        for base in list(self.outstanding.values()):
            self.history.complete(self.process, "info", "send", dict(base, error="client-crashed"))
        self.outstanding.clear()

    def run(self):
        while not self.stopping():
            self.session += 1
            producer = Producer(self.config(**{"enable.idempotence": True, "acks": "all", "linger.ms": 5,
                                                "message.timeout.ms": 20000, "request.timeout.ms": 5000,
                                                "retry.backoff.ms": 100, **PRODUCER_DEBUG}))
            crash_at = time.monotonic() + self.rng.uniform(4, 10)
            fatal = None
            while not self.stopping() and time.monotonic() < crash_at and fatal is None:
                value = next(VALUES)
                partition = self.rng.randrange(self.partitions)
                base = {"topic": self.topic, "partition": partition, "value": value, "session": self.session}
                self.history.invoke(self.process, "send", base)
                self.outstanding[value] = base
                try:
                    producer.produce(self.topic, value=str(value).encode(), partition=partition,
                                     on_delivery=lambda err, msg, base=base: self._on_delivery(base, err, msg))
                except (BufferError, KafkaException) as exc:
                    self.outstanding.pop(value, None)
                    self.history.complete(self.process, "fail", "send", dict(base, error=str(exc)[:80]))
                    if isinstance(exc, KafkaException) and exc.args[0].fatal():
                        fatal = exc.args[0].name()
                    time.sleep(0.1)
                try:
                    producer.poll(0)
                except KafkaException as exc:
                    # A fatal error ends the producer (e.g. OUT_OF_ORDER_SEQUENCE_NUMBER, which a
                    # broker answers to requests the reorder nemesis shuffled): crashed and replaced.
                    self.errors += 1
                    if exc.args[0].fatal():
                        fatal = exc.args[0].name()
                time.sleep(self.interval_s)
            if self.stopping() and fatal is None:
                self._drop(producer, flush_s=30)
            else:
                self.crashes += 1
                crash = {"session": self.session, **({"fatal": fatal} if fatal else {})}
                self.history.invoke(self.process, "crash", crash)
                self._drop(producer, flush_s=0)
                self.history.complete(self.process, "info", "crash", crash)
            del producer


class Reader(Client):
    """Shared poll loop: records each non-empty poll as an invoke/ok pair."""

    isolation = "read_uncommitted"

    def record_poll(self, started_ns, messages):
        records = []
        for message in messages:
            if message.error():
                if message.error().code() != KafkaError._PARTITION_EOF:
                    self.errors += 1
                continue
            raw = message.value()
            try:
                value = int(raw)
            except (TypeError, ValueError):
                value = repr(raw)
            records.append([message.partition(), message.offset(), value])
        if not records:
            return None
        base = {"topic": self.topic, "isolation": self.isolation, "session": f"{self.instance}.{self.session}"}
        self.history.invoke(self.process, "poll", base, time_ns=started_ns)
        return self.history.complete(self.process, "ok", "poll", dict(base, records=records))


class AssignReader(Reader):
    def __init__(self, name, history, bootstrap, stop, rng, topic, partitions, isolation, replace_s=(5, 12)):
        super().__init__(name, history, bootstrap, stop, rng)
        self.topic, self.partitions, self.isolation, self.replace_s = topic, partitions, isolation, replace_s
        self.instance = 0

    def run(self):
        while not self.stopping():
            self.instance += 1
            consumer = Consumer(self.config(**{"group.id": f"chaos-unused-{self.process}",
                                               "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                               "isolation.level": self.isolation, "fetch.wait.max.ms": 200}))
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self.partitions)])
            replace_at = time.monotonic() + self.rng.uniform(*self.replace_s)
            while not self.stopping() and time.monotonic() < replace_at:
                started = self.history.now()
                try:
                    messages = consumer.consume(num_messages=500, timeout=0.5)
                except KafkaException:
                    self.errors += 1
                    continue
                self.record_poll(started, messages)
            consumer.close()
            self.crashes += 1


class GroupReader(Reader):
    def __init__(self, name, history, bootstrap, stop, rng, topic, group, protocol):
        super().__init__(name, history, bootstrap, stop, rng)
        self.topic, self.group, self.protocol = topic, group, protocol
        self.instance = 0
        self.commits_ok = 0

    def _rebalance(self, _consumer, _partitions):
        # A new assignment starts a new session: the position may restart at the committed offset.
        self.session += 1

    def run(self):
        while not self.stopping():
            self.instance += 1
            self.session = 0
            extra = {"group.id": self.group, "group.protocol": self.protocol, "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "fetch.wait.max.ms": 200}
            if self.protocol == "classic":
                extra.update({"session.timeout.ms": 10000, "heartbeat.interval.ms": 1000})
            consumer = Consumer(self.config(**extra))
            consumer.subscribe([self.topic], on_assign=self._rebalance, on_revoke=self._rebalance,
                               on_lost=self._rebalance)
            crash_at = time.monotonic() + self.rng.uniform(6, 14)
            while not self.stopping() and time.monotonic() < crash_at:
                started = self.history.now()
                try:
                    messages = consumer.consume(num_messages=500, timeout=0.5)
                except KafkaException:
                    self.errors += 1
                    continue
                if self.record_poll(started, messages) is None:
                    continue
                positions = {}
                for m in messages:
                    if not m.error():
                        positions[m.partition()] = m.offset() + 1
                offsets = [[p, o] for p, o in sorted(positions.items())]
                self.history.invoke(self.process, "commit", {"group": self.group, "offsets": offsets})
                try:
                    consumer.commit(offsets=[TopicPartition(self.topic, p, o) for p, o in offsets], asynchronous=False)
                    self.history.complete(self.process, "ok", "commit", {"group": self.group, "offsets": offsets})
                    self.commits_ok += 1
                except KafkaException as exc:
                    self.history.complete(self.process, "info", "commit",
                                          {"group": self.group, "offsets": offsets, "error": exc.args[0].name()})
            if not self.stopping():
                self.crashes += 1
            try:
                consumer.close()
            except (KafkaException, RuntimeError):
                pass


class TxnProducer(Client):
    def __init__(self, name, history, bootstrap, stop, rng, topic, partitions, txn_id, interval_s=0.05):
        super().__init__(name, history, bootstrap, stop, rng)
        self.topic, self.partitions, self.txn_id, self.interval_s = topic, partitions, txn_id, interval_s

    def _new_producer(self, attempts_when_stopping=0):
        """A producer with its transactions initialized. After a crash it is made even when the
        run is stopping: its InitProducerId fences the crashed one and aborts its open
        transaction, so that the final read_committed drain is not held at the last stable offset."""
        attempt = 0
        while not self.stopping() or attempt < attempts_when_stopping:
            attempt += 1
            self.session += 1
            producer = Producer(self.config(**{"transactional.id": self.txn_id, "enable.idempotence": True,
                                                "acks": "all", "linger.ms": 5, "transaction.timeout.ms": 10000,
                                                "message.timeout.ms": 9000, "request.timeout.ms": 5000}))
            self.history.invoke(self.process, "init", {"session": self.session})
            try:
                producer.init_transactions(20)
                self.history.complete(self.process, "ok", "init", {"session": self.session})
                return producer
            except KafkaException as exc:
                self.history.complete(self.process, "fail", "init", {"session": self.session, "error": exc.args[0].name()})
                time.sleep(0.5)
        return None

    def run(self):
        producer = self._new_producer()
        while producer is not None and not self.stopping():
            crash = self._transaction(producer)
            if crash:
                self.crashes += 1
                self.history.invoke(self.process, "crash", {"session": self.session})
                producer.purge()
                del producer
                self.history.complete(self.process, "info", "crash", {"session": self.session})
                producer = self._new_producer(attempts_when_stopping=3)
            time.sleep(self.interval_s)
        if producer is not None:
            try:
                flush(producer, 10)
            except KafkaException:
                pass  # fatal: its open transaction is aborted by the next producer or times out

    def _transaction(self, producer):
        """One transaction; returns True when the producer is to be crashed and replaced."""
        intent = "commit" if self.rng.random() < 0.7 else "abort"
        planned = [[self.rng.randrange(self.partitions), next(VALUES)] for _ in range(self.rng.randint(1, 4))]
        crash_midway = self.rng.random() < 0.05
        base = {"topic": self.topic, "intent": intent, "session": self.session, "writes": planned}
        self.history.invoke(self.process, "txn", base)
        offsets = {}

        def delivered(err, msg):
            if err is None:
                offsets[int(msg.value())] = msg.offset()

        def finish(type_, outcome, commit_time=None, error=None):
            writes = [[p, offsets.get(v), v] for p, v in planned]
            done = dict(base, writes=writes, outcome=outcome, commit_time=commit_time)
            if error:
                done["error"] = error
            self.history.complete(self.process, type_, "txn", done)

        commit_time = None
        try:
            producer.begin_transaction()
            for partition, value in planned:
                producer.produce(self.topic, value=str(value).encode(), partition=partition, on_delivery=delivered)
            producer.poll(0)
            if crash_midway:
                flush(producer, 2)
                finish("info", None, error="client-crashed-before-commit")
                return True
            if intent == "commit":
                commit_time = self.history.now()
                for attempt in range(3):
                    try:
                        producer.commit_transaction(15)
                        break
                    except KafkaException as exc:
                        if exc.args[0].retriable() and attempt < 2:
                            continue
                        raise
                finish("ok", "commit", commit_time)
            else:
                flush(producer, 10)
                producer.abort_transaction(15)
                finish("ok", "abort")
            return False
        except KafkaException as exc:
            err = exc.args[0]
            if err.txn_requires_abort():
                try:
                    producer.abort_transaction(15)
                    finish("fail", "abort", commit_time, error=err.name())
                    return False
                except KafkaException as exc2:
                    finish("info", None, commit_time, error=f"{err.name()}; abort: {exc2.args[0].name()}")
                    return True
            finish("info", None, commit_time, error=err.name())
            return True


def final_drain(history, bootstrap, topic, partitions, isolation, timeout_s=45, idle_s=8):
    """Reads every partition from the beginning to its end offset (the high watermark, or the
    last stable offset for read_committed) with a fresh consumer. Returns (whether it got there,
    the end offsets, the positions reached)."""
    process = f"final-{topic}-{isolation}"
    reader = Reader(process, history, bootstrap, threading.Event(), random.Random(0))
    reader.topic, reader.isolation, reader.instance = topic, isolation, "final"
    consumer = Consumer(reader.config(**{"group.id": f"chaos-unused-{process}", "enable.auto.commit": False,
                                         "auto.offset.reset": "earliest", "isolation.level": isolation}))
    ends = {}
    deadline = time.monotonic() + timeout_s
    for p in range(partitions):
        while p not in ends and time.monotonic() < deadline:
            try:
                ends[p] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
            except KafkaException:
                time.sleep(0.5)
    # The checker uses the read_uncommitted end offsets (high watermarks): a write below its
    # partition's end that the drain did not read, or at or past it, is gone (vanished-write).
    history.complete(process, "ok", "drain-end", {"topic": topic, "isolation": isolation,
                                                  "end_offsets": {str(p): e for p, e in sorted(ends.items())}})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    reached = False
    positions = []
    last_progress = time.monotonic()
    while time.monotonic() < deadline:
        started = history.now()
        messages = consumer.consume(num_messages=1000, timeout=0.5)
        if reader.record_poll(started, messages) is not None:
            last_progress = time.monotonic()
        try:
            positions = consumer.position([TopicPartition(topic, p) for p in range(partitions)])
        except KafkaException:
            continue
        if len(ends) == partitions and all(tp.offset >= ends[tp.partition] for tp in positions):
            reached = True
            break
        if time.monotonic() - last_progress > idle_s and len(ends) == partitions:
            # Nothing more comes. The caller reports positions short of the end offsets; what
            # matters for the checker is that every acknowledged write was read (else it reports
            # an unseen write).
            break
    consumer.close()
    return reached, ends, {tp.partition: tp.offset for tp in positions}


class Transformer(Client):
    """Consume-transform-produce, exactly once: reads the queue topic in a group (read_committed,
    classic protocol), writes one new value per record read to an output topic in a transaction
    that also commits the group's offsets (send_offsets_to_transaction, KIP-447 fencing by group
    metadata). Any error: the transaction is aborted if it can be, and the consumer and the
    producer are replaced (the next consumer resumes at the committed offsets). The history's
    txn operations carry their sources, [partition, offset, value] of each record read."""

    def __init__(self, name, history, bootstrap, stop, rng, source_topic, topic, partitions, group, txn_id):
        super().__init__(name, history, bootstrap, stop, rng)
        self.source_topic, self.topic, self.partitions = source_topic, topic, partitions
        self.group, self.txn_id = group, txn_id

    def _clients(self):
        consumer = Consumer(self.config(**{"group.id": self.group, "enable.auto.commit": False,
                                           "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                                           "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000,
                                           "fetch.wait.max.ms": 200}))
        consumer.subscribe([self.source_topic])
        self.session += 1
        # metadata.recovery.strategy=none: librdkafka bug (confluentinc/librdkafka#5511, fix
        # proposed in #5512). Once every broker is down (a kill -9 of a 1-node cluster) the
        # client re-bootstraps and decommissions its broker handles, but its group-coordinator
        # cache keeps the dead handle, so the TxnOffsetCommit step of
        # send_offsets_to_transaction waits forever for it to come up — whenever the broker is
        # back soon enough for AddOffsetsToTxn to succeed within the call's timeout (see README).
        producer = Producer(self.config(**{"transactional.id": self.txn_id, "enable.idempotence": True, "acks": "all",
                                           "linger.ms": 5, "transaction.timeout.ms": 10000,
                                           "message.timeout.ms": 9000, "request.timeout.ms": 5000,
                                           "metadata.recovery.strategy": "none", **DEBUG}))
        producer.init_transactions(20)
        return consumer, producer

    def run(self):
        consumer = producer = None
        while not self.stopping():
            if consumer is None:
                try:
                    consumer, producer = self._clients()
                except KafkaException:
                    self.errors += 1
                    if consumer is not None:
                        consumer.close()
                    consumer = producer = None
                    time.sleep(0.5)
                    continue
            try:
                messages = [m for m in consumer.consume(num_messages=50, timeout=0.5) if not m.error()]
            except KafkaException:
                messages = []
            if not messages:
                continue
            if not self._transform(consumer, producer, messages) or self.rng.random() < 0.03:
                self.crashes += 1
                try:
                    consumer.close()
                except (KafkaException, RuntimeError):
                    pass
                producer.purge()
                consumer = producer = None
        if consumer is not None:
            consumer.close()
            try:
                flush(producer, 10)
            except KafkaException:
                pass

    def _transform(self, consumer, producer, messages):
        sources = [[m.partition(), m.offset(), int(m.value())] for m in messages]
        planned = [[m.partition() % self.partitions, next(VALUES)] for m in messages]
        base = {"topic": self.topic, "intent": "commit", "session": self.session, "writes": planned,
                "sources": sources, "source_topic": self.source_topic}
        self.history.invoke(self.process, "txn", base)
        offsets = {}

        def delivered(err, msg):
            if err is None:
                offsets[int(msg.value())] = msg.offset()

        def finish(type_, outcome, commit_time=None, error=None):
            done = dict(base, writes=[[p, offsets.get(v), v] for p, v in planned], outcome=outcome,
                        commit_time=commit_time)
            if error:
                done["error"] = error
            self.history.complete(self.process, type_, "txn", done)

        commit_time = None
        try:
            producer.begin_transaction()
            for partition, value in planned:
                producer.produce(self.topic, value=str(value).encode(), partition=partition, on_delivery=delivered)
            next_offsets = {}
            for m in messages:
                next_offsets[m.partition()] = m.offset() + 1
            producer.send_offsets_to_transaction(
                [TopicPartition(self.source_topic, p, o) for p, o in next_offsets.items()],
                consumer.consumer_group_metadata(), 15)
            commit_time = self.history.now()
            producer.commit_transaction(15)
            finish("ok", "commit", commit_time)
            return True
        except KafkaException as exc:
            err = exc.args[0]
            if err.txn_requires_abort():
                try:
                    producer.abort_transaction(15)
                    finish("fail", "abort", commit_time, error=err.name())
                    return False
                except KafkaException as exc2:
                    finish("info", None, commit_time, error=f"{err.name()}; abort: {exc2.args[0].name()}")
                    return False
            finish("info", None, commit_time, error=err.name())
            return False
