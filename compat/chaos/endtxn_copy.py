#!/usr/bin/env python3
"""Standalone probe of a late duplicated EndTxn (README, "Nemeses": `duplicate`): one broker, one
transactional producer running short transactions back to back (one record each, commit or abort
at random), and the proxy sending a copy of every EndTxn (only EndTxn) 0 to --late-ms later, so
that copies land while the producer runs its next transaction. Then a read_committed consumer
reads the topic and the probe says, for each transaction, whether what it read matches what the
producer was told:

  committed (commit_transaction returned)      its record must be read
  aborted (abort_transaction returned)         its record must not be read
  failed (an error; abort attempted)           either, reported as "unknown"

  compat/chaos/endtxn_copy.py [--target dlog|kafka] [--txns N] [--late-ms MS]

Exit code 0 when every committed record was read and no aborted one was; 1 otherwise. Same
environment as run.py (DLOG_BIN, KAFKA_LIB); ports from CHAOS_BASE_PORT (default 21950).
"""

import argparse
import collections
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition  # noqa: E402

import probe  # noqa: E402
import proxy as proxies  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", choices=["dlog", "kafka"], default="dlog")
    parser.add_argument("--txns", type=int, default=200)
    parser.add_argument("--late-ms", type=int, default=100, help="a copy is sent 0 to this many ms after its EndTxn")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    proxies.DUPLICATED_APIS = {26: "EndTxn"}  # this probe copies EndTxn only
    rng = random.Random(args.seed)
    outcomes = {}  # value -> committed | aborted | unknown
    errors = collections.Counter()
    code = 1
    with probe.one_broker(args.target, 21950, args.seed, [("t", 1)], "endtxn-copy-") as (cluster, proxy, boot):
        def new_producer():
            producer = Producer({"bootstrap.servers": boot, "transactional.id": "endtxn-copy", "linger.ms": 0,
                                 "transaction.timeout.ms": 10000, "request.timeout.ms": 5000})
            producer.init_transactions(30)
            return producer
        producer = new_producer()
        proxy.set_duplicate(cluster.proxy_port(1), 1.0, args.late_ms)
        for value in range(args.txns):
            commit = rng.random() < 0.7
            try:
                producer.begin_transaction()
                producer.produce("t", str(value).encode(), partition=0)
                producer.flush(10)
                if commit:
                    producer.commit_transaction(10)
                    outcomes[value] = "committed"
                else:
                    producer.abort_transaction(10)
                    outcomes[value] = "aborted"
            except KafkaException as exc:
                err = exc.args[0]
                errors[err.name()] += 1
                outcomes[value] = "unknown"
                try:
                    if err.txn_requires_abort():
                        producer.abort_transaction(10)
                    else:
                        raise exc
                except KafkaException:
                    producer = new_producer()
        proxy.set_duplicate(cluster.proxy_port(1), 0)
        time.sleep(1)
        consumer = Consumer({"bootstrap.servers": boot, "group.id": "endtxn-copy-reader", "enable.auto.commit": False,
                             "isolation.level": "read_committed"})
        consumer.assign([TopicPartition("t", 0, OFFSET_BEGINNING)])
        read = set()
        idle = time.monotonic()
        while time.monotonic() - idle < 5:
            for m in consumer.consume(500, 0.5):
                if not m.error():
                    read.add(int(m.value()))
                    idle = time.monotonic()
        consumer.close()
        counts = collections.Counter(outcomes.values())
        lost = sorted(v for v, o in outcomes.items() if o == "committed" and v not in read)
        aborted_read = sorted(v for v, o in outcomes.items() if o == "aborted" and v in read)
        unknown_read = sum(1 for v, o in outcomes.items() if o == "unknown" and v in read)
        print(f"{args.target} late<= {args.late_ms} ms: {len(outcomes)} transactions {dict(counts)}, "
              f"errors {dict(errors)}, EndTxn copies {proxy.copies_sent}; committed but not read: {lost[:10]} "
              f"({len(lost)}); aborted but read: {aborted_read[:10]} ({len(aborted_read)}); "
              f"unknown outcome read: {unknown_read}; EndTxn versions sent "
              f"{sorted(v for (k, v) in proxy.request_versions if k == 26)}", flush=True)
        code = 0 if not lost and not aborted_read else 1
    os._exit(code)


if __name__ == "__main__":
    main()
