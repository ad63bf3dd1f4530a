#!/usr/bin/env python3
"""Standalone reproduction of the consume-transform-produce hang (README, "Finding:
send_offsets_to_transaction hangs after a kill -9"): one broker, a transactional producer and a
group consumer; the broker is killed -9 between produce and send_offsets_to_transaction and
restarted after --down seconds. Prints whether send_offsets_to_transaction returned.

  compat/chaos/ctp_hang.py [--target dlog|kafka] [--down S] [--timeout S] [--rebootstrap]

--rebootstrap leaves librdkafka's default metadata.recovery.strategy (rebootstrap), which hangs
whenever the broker is back before the call's timeout (librdkafka#5511); without it the
transformers' workaround (none) is used and the call returns. --timeout is both the
transaction timeout and send_offsets_to_transaction's (Kafka takes ~15-20 s to restart here:
give it 60). Exit code 0 if the call returned, 3 if it hung. Same environment as run.py
(DLOG_BIN, KAFKA_LIB); ports from CHAOS_BASE_PORT (default 21900).
"""

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

import cluster as clusters  # noqa: E402
from proxy import Proxy  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", choices=["dlog", "kafka"], default="dlog")
    parser.add_argument("--down", type=float, default=1.0, help="seconds between the kill and the restart")
    parser.add_argument("--timeout", type=int, default=10)
    parser.add_argument("--rebootstrap", action="store_true", help="librdkafka's default recovery strategy")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="ctp-hang-")
    base = int(os.environ.get("CHAOS_BASE_PORT", "21900"))
    cluster = (clusters.DlogCluster if args.target == "dlog" else clusters.KafkaCluster)(1, work, base)
    proxy = Proxy(0)
    proxy.listen(cluster.proxy_port(1), cluster.client_port(1))
    cluster.start()
    boot = cluster.bootstrap()
    try:
        admin = AdminClient({"bootstrap.servers": boot})  # kept: a collected client fails its futures
        for future in admin.create_topics([NewTopic("src", 2, 1), NewTopic("out", 2, 1)]).values():
            future.result(60)
        seed = Producer({"bootstrap.servers": boot})
        for i in range(500):
            seed.produce("src", str(i).encode(), partition=i % 2)
        seed.flush(30)
        consumer = Consumer({"bootstrap.servers": boot, "group.id": "g", "enable.auto.commit": False,
                             "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
        consumer.subscribe(["src"])
        producer = Producer({"bootstrap.servers": boot, "transactional.id": "t", "linger.ms": 5,
                             "transaction.timeout.ms": args.timeout * 1000, "request.timeout.ms": 5000,
                             **({} if args.rebootstrap else {"metadata.recovery.strategy": "none"})})
        producer.init_transactions(60)

        def batch():
            messages = []
            while not messages:
                messages = [m for m in consumer.consume(50, 2) if not m.error()]
            producer.begin_transaction()
            for m in messages:
                producer.produce("out", m.value(), partition=m.partition())
            return [TopicPartition("src", m.partition(), m.offset() + 1) for m in messages]

        # One full transaction first: the group coordinator is then in the producer's cache.
        producer.send_offsets_to_transaction(batch(), consumer.consumer_group_metadata(), args.timeout)
        producer.commit_transaction(60)
        offsets = batch()
        producer.flush(10)
        cluster.kill(1)
        proxy.drop_connections()
        start = time.monotonic()
        threading.Timer(args.down, cluster.restart, (1,)).start()
        result = {}

        def send():
            try:
                producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), args.timeout)
                result["outcome"] = "ok"
            except KafkaException as exc:
                result["outcome"] = exc.args[0].name()
            result["after_s"] = round(time.monotonic() - start, 1)

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        thread.join(args.timeout + 40)
        print(f"{args.target} down={args.down}s rebootstrap={args.rebootstrap}: "
              f"send_offsets_to_transaction {result or 'HUNG'}", flush=True)
        code = 0 if result else 3
    finally:
        cluster.kill(1)
        proxy.close()
        shutil.rmtree(work, ignore_errors=True)
    # A hung librdkafka handle would block the interpreter's exit.
    os._exit(code)


if __name__ == "__main__":
    main()
