#!/usr/bin/env python3
"""Standalone probe of reordered first batches of an idempotent producer (README, "Nemeses":
`reorder`): one broker, the proxy shuffling requests in windows of --window; each round a new
idempotent producer (a new producer id; a first record to another partition acquires it) sends
--messages records to one partition, each in its own batch (linger.ms=0, 5 ms apart, max 5 in
flight), so its first Produce requests to that partition reach the broker in a shuffled order. The broker has no state for the new producer id: Kafka 4.x accepts whatever
sequence comes first (ProducerAppendInfo.checkSequence; dlog's ProducerStateManager::check does
the same), and refuses the earlier sequences that follow with OUT_OF_ORDER_SEQUENCE_NUMBER.

For each round the probe says whether an acknowledged record follows records of the same
producer that were not written (a gap in the producer's order: "later acknowledged, earlier
refused"), and checks with a reader that every acknowledged record is in the log and in send
order (no lost acknowledged write, no out-of-order append among acknowledged records).

  compat/chaos/reorder_first.py [--target dlog|kafka] [--rounds N] [--messages M] [--window W]

Exit code 0 when no acknowledged record is missing or out of order (gaps are reported, not
failed on: both brokers make them by design); 1 otherwise. Same environment as run.py
(DLOG_BIN, KAFKA_LIB); ports from CHAOS_BASE_PORT (default 21940).
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402

import probe  # noqa: E402
import workloads  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", choices=["dlog", "kafka"], default="dlog")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    code = 1
    with probe.one_broker(args.target, 21940, args.seed, [("r", 2)], "reorder-first-") as (cluster, proxy, boot):
        Producer({"bootstrap.servers": boot}).list_topics("r", timeout=10)
        acked = {}  # value -> offset
        rounds_with_gap = 0
        refused = 0
        for round_ in range(args.rounds):
            producer = Producer({"bootstrap.servers": boot, "enable.idempotence": True, "acks": "all",
                                 "linger.ms": 0, "max.in.flight.requests.per.connection": 5,
                                 "message.timeout.ms": 10000, "log_level": 0,
                                 **({"debug": os.environ["PROBE_DEBUG"], "log_level": 7} if os.environ.get("PROBE_DEBUG") else {})})
            # A first record to partition 1: the producer id is acquired and the connection up, and
            # partition 0 still has no state for the producer id.
            producer.produce("r", b"warm", partition=1)
            workloads.flush(producer, 10)
            proxy.set_reorder(cluster.proxy_port(1), args.window, hold_ms=200)
            results = {}
            values = [round_ * 1000 + i for i in range(args.messages)]
            for v in values:
                producer.produce("r", str(v).encode(), partition=0,
                                 on_delivery=lambda err, msg, v=v: results.__setitem__(v, (err, msg.offset())))
                producer.poll(0)
                time.sleep(0.005)  # one batch each
            try:
                workloads.flush(producer, 10)
            except Exception:  # noqa: BLE001 - a fatal OUT_OF_ORDER_SEQUENCE_NUMBER: reported per record
                pass
            proxy.set_reorder(cluster.proxy_port(1), 0)
            ok = [v for v in values if v in results and results[v][0] is None]
            for v in ok:
                acked[v] = results[v][1]
            failed = [v for v in values if v not in ok]
            refused += len(failed)
            if ok and any(f < max(ok) for f in failed):
                rounds_with_gap += 1
            del producer
        time.sleep(1)
        consumer = Consumer({"bootstrap.servers": boot, "group.id": "reorder-first-reader", "enable.auto.commit": False})
        consumer.assign([TopicPartition("r", 0, OFFSET_BEGINNING)])
        log = []
        idle = time.monotonic()
        while time.monotonic() - idle < 5:
            for m in consumer.consume(500, 0.5):
                if not m.error() and m.value() != b"warm":
                    log.append((m.offset(), int(m.value())))
                    idle = time.monotonic()
        consumer.close()
        in_log = {v: o for o, v in log}
        missing = sorted(v for v in acked if v not in in_log)
        misplaced = sorted(v for v, o in acked.items() if in_log.get(v, o) != o)
        # Within a round (one producer), acknowledged values must be in the log in send order.
        disorder = 0
        for round_ in range(args.rounds):
            offsets = [in_log[v] for v in sorted(acked) if v // 1000 == round_ and v in in_log]
            disorder += sum(1 for a, b in zip(offsets, offsets[1:]) if b <= a)
        print(f"{args.target} window {args.window}: {args.rounds} new producers x {args.messages} records; "
              f"acknowledged {len(acked)}, refused {refused}; rounds with a gap (later acknowledged, earlier "
              f"refused) {rounds_with_gap}; windows shuffled {proxy.reordered_windows}; acknowledged but not in "
              f"the log {len(missing)} {missing[:5]}; at another offset {len(misplaced)}; out of send order "
              f"{disorder}", flush=True)
        for v in missing[:5]:
            print(f"  acknowledged, not in the log: {v} at offset {acked[v]}; its round's log: "
                  f"{[(o, x) for o, x in log if x // 1000 == v // 1000]}", flush=True)
        code = 0 if not missing and not misplaced and not disorder else 1
    os._exit(code)


if __name__ == "__main__":
    main()
